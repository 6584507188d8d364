r"""The per-class solvers of the estimators: one ``functools.singledispatch`` function per
estimator, dispatching on the class it fits over. The public estimators
(:func:`genver.estimators.dpo`, …) validate their arguments and call these; each class family
registers its solvers in its own module:

===========================  =====================================================  =======================
solver                       arguments (after the class)                            registered by
===========================  =====================================================  =======================
``dpo_solver(Π, …)``         ``counts, ref, β, l2``                                 all four families
``ipo_solver(Π, …)``         ``counts, ref, s, target, l2, average`` (s: 1 or 1/H)  all four families
``reward_mle_solver(R, …)``  ``counts, l2``                                         finite, tabular, linear
``sft_solver(Π, …)``         ``C, N, ref, β, l2`` (demonstration counts C, (P, T))  all four families
``irl_solver(R, …)``         ``C, N, ref, β, l2``                                   finite, tabular, linear
``gradient_solver(Π, …)``    ``ref`` → :class:`PolicyParametrisation`               tabular, linear
``dpo_gd_solver(Π, …)``      ``counts, ref, β, l2`` → the tabular DPO objective     tabular
===========================  =====================================================  =======================

(the four families: finite, tabular, linear, soft_optimal; ``gradient_solver`` returns the
policy-gradient parametrisation, ``dpo_gd_solver`` the tabular DPO objective of ``z``)

``counts`` is :class:`~genver.preferences.PairCounts`, validated by the front door (as are
``ref``, ``β`` and the class's space); ``l2 = None`` means the family's default. Each solver
returns a :class:`~genver.estimators.base.FitResult` without ``wall_time`` (the front door's
:func:`~genver.estimators.base.timed` writes it). A class no family registered is a
``ValueError`` naming the estimator and the class.

Adding a class family: one module with ``@dpo_solver.register(MyClass)`` (and whichever other
solvers it supports), imported by :mod:`genver.estimators` so the registrations run.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .base import unsupported

__all__ = ["dpo_solver", "ipo_solver", "reward_mle_solver", "sft_solver", "irl_solver", "gradient_solver",
           "dpo_gd_solver", "PolicyParametrisation", "flat_counts"]

dpo_solver = unsupported("dpo", "policy")
ipo_solver = unsupported("ipo", "policy")
reward_mle_solver = unsupported("reward_mle", "reward")
sft_solver = unsupported("sft", "policy")
irl_solver = unsupported("maxent_irl", "reward")
gradient_solver = unsupported("policy_gradient", "policy")
dpo_gd_solver = unsupported("dpo_gd", "policy")


class PolicyParametrisation(NamedTuple):
    """A differentiable parametrisation of a policy class, for first-order estimators:
    ``params0`` (the start, ``π_ref``), ``cond_of(params)`` the flat token conditionals
    ``log π(a|x,s)`` (P, n_internal, V) and ``grad_of(cond, g)`` the contraction
    ``Σ_x Σ_y g(x,y) ∇_params log π(y|x)``; ``reports_params``: whether the fit reports
    ``params`` (parametric classes) or only the policy."""

    params0: np.ndarray
    cond_of: Callable
    grad_of: Callable
    reports_params: bool


def flat_counts(C: np.ndarray):
    """The nonzero entries of demonstration counts ``C`` (P, T).

    Parameters
    ----------
    C : np.ndarray
        Counts ``C(x, y)``, shape ``(P, T)``.

    Returns
    -------
    tuple of (np.ndarray, np.ndarray)
        ``(flat indices x·T + y, counts)`` of the nonzero entries.
    """
    flat = C.ravel()
    idx = np.flatnonzero(flat)
    return idx, flat[idx]
