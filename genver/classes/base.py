r"""What every policy class ``Π`` and reward class ``R`` provides: the protocols
:class:`PolicyClass` and :class:`RewardClass` (structural: a class need not inherit from them).

Every class lives on one ``TreeSpace`` (``space``) and reports its size the way the
finite-class bounds read it: ``size`` = ``|Π|`` or ``|R|`` for a finite class (``None`` for a
parametric one) and ``n_params`` = the number of free parameters (``None`` for a finite one);
``identifiable_dim`` is the part of ``n_params`` that Bradley–Terry data or the softmax can see
(a linear ``R``: the rank of its features centred within each prompt; a log-linear ``Π``: the
rank of its token features centred over each node's actions; otherwise ``n_params``).
``kind`` is a short label for tables and messages, never a dispatch key.

``as_finite()`` returns the class as an explicit member list when it is one (a finite class
itself; ``Π(R)`` of a finite ``R``), else ``None``: the estimators that enumerate members use it.

A policy class solves the RL step ``argmax_{π∈Π} J_β(π; r)`` (:meth:`PolicyClass.rl_argmax`);
several rewards at once with :meth:`PolicyClass.rl_argmax_many` (the same results as one call
per reward; a run's ``cache`` lets a finite class reuse its reward-independent parts). A reward class draws a member
for probes (:meth:`RewardClass.draw`).

The likelihood estimators (DPO, IPO, reward MLE, SFT, MaxEnt IRL, policy gradient) dispatch
on the class too, but their solvers live with the estimators (``genver.estimators``: one
``functools.singledispatch`` function per estimator, one module per class family), so this
layer never depends on the estimators'.

Shared by every policy family (:mod:`genver.classes.policies`,
:mod:`genver.classes.finite_policies`): :class:`RLResult`, the outcome of an RL step, with its
certificate, the reverse-KL residual ``E_x KL(π̂ ‖ π*_r) = Σ_x ρ_x KL(π̂(·|x) ‖ π*_r(·|x))`` —
zero iff the class contains the soft-optimal ``π*_r ∝ π_ref exp(r/β)`` and the step found it
(:func:`genver.softrl.soft_optimal`); the RL step's input checks (``ref`` on the class's space,
``β > 0``, ``r`` of shape ``(P, T)``, ``ρ`` a distribution over prompts); and the protocol's
default methods (no member list, every parameter identifiable, several rewards one at a time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from .._validation import check_beta, check_prompt_weights
from ..policy import Policy
from ..softrl import kl_rows, rho_weighted

if TYPE_CHECKING:  # annotations only
    from ..runcache import RunCache
    from ..spaces import TreeSpace
    from .finite_policies import FinitePolicyClass
    from .rewards import FiniteRewardClass

__all__ = ["PolicyClass", "RewardClass", "RLResult"]


@dataclass
class RLResult:
    """Outcome of an RL step ``argmax_{π∈Π} J_β(π; r)``.

    ``index`` is the chosen member (finite classes), ``params`` the parameters (parametric
    classes), ``objective`` the attained ``J_β``, ``residual_kl`` = ``E_x KL(π̂ ‖ π*_r)``
    (0 iff the class contains ``π*_r`` and it was found), ``grad_norm``/``iterations`` the
    optimiser's certificate where an optimiser ran.
    """

    policy: Policy
    objective: float
    residual_kl: float
    index: int | None = None
    params: np.ndarray | None = None
    grad_norm: float = 0.0
    iterations: int = 0



def check_rl_inputs(space, ref, reward, beta, prompt_weights):
    """The RL step's inputs checked (ValueError naming the bad one): ``(r, β, ρ)`` for ``ref`` a
    Policy on ``space``, ``β > 0``, ``r`` of shape ``(P, T)`` and ``ρ`` a distribution over prompts
    (shared by every policy family; not part of the package's API)."""
    if not isinstance(ref, Policy) or ref.space != space:
        raise ValueError(f"ref must be a Policy on {space!r}")
    beta = check_beta(beta)
    r = space.check_array("reward", reward)
    rho = check_prompt_weights(prompt_weights, space.P)
    return r, beta, rho


def reverse_kl_residual(policy: Policy, target_logp, rho) -> float:
    """``E_x KL(π̂ ‖ π*_r) = Σ_x ρ_x KL(π̂(·|x) ‖ π*_r(·|x))`` for ``target_logp`` = ``log π*_r`` of
    shape ``(P, T)``: the :class:`RLResult` certificate (shared by every policy family)."""
    return float(rho_weighted(kl_rows(policy.logp, target_logp), rho))


class PolicyClassDefaults:
    """What a :class:`~genver.classes.base.PolicyClass` provides unless the family knows better
    (the base of every policy family; not part of the package's API)."""

    def as_finite(self) -> FinitePolicyClass | None:
        """The class as an explicit member list, or ``None`` (not a finite class)."""
        return None

    @property
    def identifiable_dim(self: PolicyClass) -> float | None:
        """``n_params``: every parameter is identifiable unless the family says otherwise."""
        return self.n_params

    def rl_argmax_many(self: PolicyClass, rewards, ref: Policy, beta: float, prompt_weights=None, *,
                       cache: RunCache | None = None) -> list[RLResult]:
        """:meth:`rl_argmax` for each reward in turn (``cache``: a run's
        :class:`~genver.runcache.RunCache`, unused here)."""
        return [self.rl_argmax(r, ref, beta, prompt_weights) for r in rewards]



@runtime_checkable
class PolicyClass(Protocol):
    """A policy class ``Π`` (see the module docstring)."""

    space: TreeSpace
    kind: str

    @property
    def size(self) -> int | None:
        """``|Π|`` of a finite class; ``None`` for a parametric one."""

    @property
    def n_params(self) -> int | None:
        """Number of free parameters; ``None`` for a finite class."""

    @property
    def identifiable_dim(self) -> float | None:
        """The part of :attr:`n_params` the softmax can see (the rank of centred token features
        of a log-linear class); ``None`` for a finite class."""

    def as_finite(self) -> FinitePolicyClass | None:
        """The class as an explicit member list, when it is one.

        Returns
        -------
        FinitePolicyClass or None
            The members (a finite class itself), or ``None`` for a class that is not finite.
        """

    def rl_argmax(self, reward, ref: Policy, beta: float, prompt_weights=None) -> RLResult:
        """The RL step ``argmax_{π∈Π} J_β(π; r)``.

        Parameters
        ----------
        reward : array_like
            The reward ``r``, shape ``(P, T)``.
        ref : Policy
            The reference ``π_ref``.
        beta : float
            The KL weight ``β > 0``.
        prompt_weights : array_like or None
            ``ρ``, shape ``(P,)``; ``None``: uniform.

        Returns
        -------
        RLResult
            The maximiser, its ``J_β`` and the solver's certificate.
        """

    def rl_argmax_many(self, rewards, ref: Policy, beta: float, prompt_weights=None, *,
                       cache: RunCache | None = None) -> list[RLResult]:
        """:meth:`rl_argmax` for several rewards (the same results as one call per reward).

        Parameters
        ----------
        rewards : sequence of array_like
            The rewards, each of shape ``(P, T)``.
        ref : Policy
            The reference ``π_ref``.
        beta : float
            The KL weight ``β > 0``.
        prompt_weights : array_like or None
            ``ρ``, shape ``(P,)``; ``None``: uniform.
        cache : RunCache or None
            A run's memos, where the class can reuse its reward-independent parts.

        Returns
        -------
        list of RLResult
            One result per reward, in order.
        """


@runtime_checkable
class RewardClass(Protocol):
    """A reward class ``R`` (see the module docstring)."""

    space: TreeSpace
    kind: str

    @property
    def size(self) -> int | None:
        """``|R|`` of a finite class; ``None`` for a parametric one."""

    @property
    def n_params(self) -> int | None:
        """Number of free parameters; ``None`` for a finite class."""

    @property
    def identifiable_dim(self) -> float | None:
        """The part of :attr:`n_params` Bradley–Terry data can see (per-prompt constants are
        invisible); ``None`` for a finite class."""

    def as_finite(self) -> FiniteRewardClass | None:
        """The class as an explicit member list, when it is one.

        Returns
        -------
        FiniteRewardClass or None
            The members, or ``None`` for a class that is not finite.
        """

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A member drawn for probes.

        Parameters
        ----------
        rng : np.random.Generator
            The generator the draw consumes.

        Returns
        -------
        np.ndarray
            A reward table ``r``, shape ``(P, T)``.
        """
