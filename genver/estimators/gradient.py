r"""Budget-limited (optimiser-dynamics) versions of the offline route.

**DPO by gradient ascent** (``dpo_gd``): the same objective as the exact tabular
:func:`genver.estimators.dpo` — Bradley–Terry log-likelihood of the local reward
``f = r_π = β log π/π_ref`` minus the reward-scale ridge ``(λ/2) Σ_x Σ_y (f − f̄(x))²`` — divided
by the number of pairs ``N`` (the mean loss, so a learning rate means the same at every ``N``),
maximised by ``steps`` plain gradient-ascent steps of size ``lr`` on the logits ``z`` of
``π = softmax(log π_ref + z)`` from ``z = 0`` (``π_0 = π_ref``). With enough steps it reaches the
exact DPO solution (tested); with few it stops early, as a budget-limited optimiser does (H3).
``normalise=True`` replaces the step by ``lr·g/max|g|`` (sign-preserving normalised ascent:
each logit moves by at most ``lr`` per step), the same rule as
:func:`genver.estimators.online.policy_gradient`'s ``normalise``, so that a fixed budget of
steps compares the *directions* of two objectives rather than their gradient scales.
The gradient is exact: ``∂obj/∂z = β (g − π Σ_y g)`` with ``g = ∂obj/∂f``.

The objective is :func:`genver.estimators.tabular.dpo_tabular_objective`, the one the exact
:func:`genver.estimators.dpo` maximises.
"""
from __future__ import annotations

import numpy as np

from .._validation import check_beta, check_positive_int
from ..policy import Policy, logsumexp_rows
from . import mle  # noqa: F401  (the class families register their solvers)
from .base import FitResult, as_counts, check_ref, timed
from .solvers import dpo_gd_solver

__all__ = ["dpo_gd"]


@timed
def dpo_gd(data, policy_class, ref: Policy, beta: float, *, steps: int = 100, lr: float = 1.0,
           l2: float | None = None, normalise: bool = False) -> FitResult:
    """DPO on the tabular class by ``steps`` gradient-ascent steps of size ``lr`` on the mean
    objective, starting at ``π_ref`` (see the module docstring). ``normalise=True`` takes
    steps ``lr·g/max|g|`` (every logit moves by at most ``lr`` per step), which makes step
    budgets comparable across objectives whose gradients have different scales.

    Parameters
    ----------
    data : Preferences or PairCounts
        The preference pairs (a stream, or its sufficient statistics).
    policy_class : TabularPolicyClass
        The class (only the tabular family registers this solver).
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    steps : int
        Number of ascent steps, ``≥ 0``.
    lr : float
        Step size ``> 0``.
    l2 : float or None
        Ridge weight ``λ``; ``None``: the class family's default (:data:`DEFAULT_L2` for the
        tabular classes).
    normalise : bool
        Sign-preserving normalised steps ``lr·g/max|g|``.

    Returns
    -------
    FitResult
        ``policy`` after ``steps`` steps, ``reward = β log π/π_ref``, ``converged = False`` (a
        budget, not a certificate) and ``extra["objective_history"]`` (mean objective per step).
    """
    c = as_counts(data)
    sp = c.space
    beta = check_beta(beta)
    steps = check_positive_int(steps, "steps", minimum=0)
    lr = check_beta(lr, "lr")
    check_ref(ref, sp)
    f, l2 = dpo_gd_solver(policy_class, c, ref, beta, l2)  # the class's DPO objective of the logits z
    N = max(float(c.count.sum()), 1.0)
    z = np.zeros(sp.shape)
    history = []
    for _ in range(steps):
        obj, gz, _ = f(z)
        history.append(obj / N)
        if normalise:
            gmax = float(np.abs(gz).max())
            z = z + (lr * gz / gmax if gmax > 0 else 0.0)
        else:
            z = z + lr * gz / N
    obj, gz, logp = f(z)
    pol = Policy(sp, logp - logsumexp_rows(logp)[:, None])
    return FitResult("dpo_gd", float(obj), policy=pol, reward=beta * (pol.logp - ref.logp), converged=False,
                     iterations=steps, grad_norm=float(np.abs(gz).max()),
                     extra={"l2": l2, "lr": lr, "normalise": normalise, "objective_history": history})
