r"""The two routes of preference fine-tuning, each solved to its global optimum.

Notation as in ``docs/concepts.md`` (*The two routes*), with ``(x_i, y_i⁺, y_i⁻)`` the ``N`` pairs (used only
through their counts) and ``r_π = β log π/π_ref`` the local (implicit) reward.

* **Offline (DPO):** ``π̂_off ∈ argmax_{π∈Π} Σ_i log σ(r_π(x_i,y_i⁺) − r_π(x_i,y_i⁻)) − pen(π)``.
* **IPO:** ``argmin_{π∈Π} Σ_i (h_π(i) − 1/(2τ))²`` (finite: enumeration; tabular: the same
  centred ridge on ``log π/π_ref`` as DPO; log-linear: ridge ``(λ/2)‖θ‖²``, L-BFGS) with
  ``h_π(i) = log π(y⁺)/π_ref(y⁺) − log π(y⁻)/π_ref(y⁻)`` (``average="sequence"``) or the same
  divided by the length ``H`` (``average="token"``, length-averaged log-probabilities).
* **Reward MLE:** ``r̂ ∈ argmax_{r∈R} Σ_i log σ(r(x_i,y_i⁺) − r(x_i,y_i⁻)) − pen(r)``.
* **Online (RM + RL):** ``π̂_on ∈ argmax_{π∈Π} J_β(π; r̂)`` (exact; see
  :mod:`genver.classes.policies`).

Nested sample sizes (``*_path``)
--------------------------------
:func:`dpo_path`, :func:`reward_mle_path` and :func:`rm_rl_path` fit, for finite classes,
every prefix ``data.head(n)`` of one pair stream at once; they live in
:mod:`genver.estimators.mle_paths` (with their shared-stream machinery) and are re-exported
here.

Solvers and well-posedness rules
--------------------------------
The functions here are front doors: they validate the data, the reference and ``β``, then call
the solver the class family registered (:mod:`genver.estimators.solvers`), each documented
with its math in the family's module: :mod:`genver.estimators.finite` (exhaustive enumeration,
lowest index among ties), :mod:`genver.estimators.tabular` (the reward-scale ridge, exact
Newton on the pair-graph Laplacian), :mod:`genver.estimators.linear` (ridge-logistic Newton
for linear rewards, L-BFGS for log-linear policies) and :mod:`genver.estimators.soft_optimal`
(``Π(R)``). The RL step is the class's own :meth:`rl_argmax` (:mod:`genver.classes`).
"""
from __future__ import annotations

from .._validation import check_beta
from ..policy import Policy
from . import finite, linear, soft_optimal, tabular  # noqa: F401  (the class families register their solvers)
from .base import DEFAULT_L2, FitResult, as_counts, check_ref, rl_fit, timed
from .mle_paths import dpo_path, reward_mle_path, rm_rl_path
from .solvers import dpo_solver, ipo_solver, reward_mle_solver
from .tabular import dpo_tabular_objective

__all__ = ["dpo", "ipo", "reward_mle", "rl_step", "rm_rl", "DEFAULT_L2", "dpo_path", "reward_mle_path",
           "rm_rl_path", "dpo_tabular_objective", "rl_fit"]


@timed
def reward_mle(data, reward_class, *, l2: float | None = None) -> FitResult:
    """Bradley–Terry maximum likelihood over a reward class (finite, linear or tabular).

    Parameters
    ----------
    data : Preferences or PairCounts
        The preference pairs (a stream, or its sufficient statistics).
    reward_class : RewardClass
        The reward class ``R`` (finite, linear or tabular).
    l2 : float or None
        Ridge weight ``λ``; ``None``: the class family's default (:data:`DEFAULT_L2` for the
        tabular classes).

    Returns
    -------
    FitResult
        ``reward`` = ``r̂`` and its penalised log-likelihood.
    """
    c = as_counts(data)
    if reward_class.space != c.space:
        raise ValueError("data and reward_class live on different spaces")
    return reward_mle_solver(reward_class, c, l2)


# -- RL step and the online route ---------------------------------------------------------

@timed
def rl_step(reward, policy_class, ref: Policy, beta: float, prompt_weights=None) -> FitResult:
    """``argmax_{π∈Π} J_β(π; r)`` (exact: enumeration, backward induction or L-BFGS).

    Parameters
    ----------
    reward : array_like
        The reward ``r``, shape ``(P, T)``.
    policy_class : PolicyClass
        The policy class ``Π`` (finite, soft-optimal, tabular or log-linear).
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.

    Returns
    -------
    FitResult
        The maximiser and its ``J_β``; ``extra["residual_kl"] = E_x KL(π̂ ‖ π*_r)``.
    """
    return rl_fit(policy_class.rl_argmax(reward, ref, beta, prompt_weights), reward)


@timed
def rm_rl(data, reward_class, policy_class, ref: Policy, beta: float, *, l2: float | None = None,
          prompt_weights=None) -> FitResult:
    """The online route: reward MLE over ``R``, then exact RL over ``Π`` against ``r̂``.

    Parameters
    ----------
    data : Preferences or PairCounts
        The preference pairs (a stream, or its sufficient statistics).
    reward_class : RewardClass
        The reward class ``R`` (finite, linear or tabular).
    policy_class : PolicyClass
        The policy class ``Π`` (finite, soft-optimal, tabular or log-linear).
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    l2 : float or None
        Ridge weight ``λ``; ``None``: the class family's default (:data:`DEFAULT_L2` for the
        tabular classes).
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.

    Returns
    -------
    FitResult
        ``reward`` = ``r̂``, ``policy`` = the RL step's ``π̂``; ``objective`` is the reward
        MLE's, ``extra["rl_objective"]`` the RL step's.
    """
    rm = reward_mle(data, reward_class, l2=l2)
    rl = rl_step(rm.reward, policy_class, ref, beta, prompt_weights)
    return FitResult("rm_rl", rm.objective, policy=rl.policy, reward=rm.reward,
                     policy_index=rl.policy_index, reward_index=rm.reward_index, params=rm.params,
                     converged=rm.converged and rl.converged, iterations=rm.iterations + rl.iterations,
                     grad_norm=max(rm.grad_norm, rl.grad_norm), set_valued=rm.set_valued,
                     identified=rm.identified,
                     extra={"rl_objective": rl.objective, "residual_kl": rl.extra["residual_kl"], **rm.extra})


# -- offline: DPO and IPO -----------------------------------------------------------------
@timed
def dpo(data, policy_class, ref: Policy, beta: float, *, l2: float | None = None) -> FitResult:
    """Offline MLE (DPO) over a finite, soft-optimal (finite or linear ``R``), tabular or
    log-linear policy class.

    Parameters
    ----------
    data : Preferences or PairCounts
        The preference pairs (a stream, or its sufficient statistics).
    policy_class : PolicyClass
        The policy class ``Π`` (finite, soft-optimal, tabular or log-linear).
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    l2 : float or None
        Ridge weight ``λ``; ``None``: the class family's default (:data:`DEFAULT_L2` for the
        tabular classes).

    Returns
    -------
    FitResult
        ``policy`` = ``π̂`` and its penalised Bradley–Terry log-likelihood of ``β log π̂/π_ref``.

    Examples
    --------
    Two finite members on one prompt with two completions; 3 pairs prefer ``y = 1`` and 1
    prefers ``y = 0``. With ``β = 1`` and a uniform reference member ``k``'s log-likelihood is
    ``3 log σ(d_k) + log σ(−d_k)``, ``d_k = log π_k(1) − log π_k(0)``, largest for the member
    closest to ``π(1) = 3/4``:

    >>> import numpy as np
    >>> from genver.spaces import TreeSpace
    >>> from genver.policy import uniform_policy
    >>> from genver.preferences import Preferences
    >>> from genver.classes import FinitePolicyClass
    >>> sp = TreeSpace(P=1, V=2, H=1)
    >>> pairs = Preferences.from_array(sp, np.array([[0, 1, 0]] * 3 + [[0, 0, 1]]))
    >>> members = FinitePolicyClass(sp, np.log([[[0.5, 0.5]], [[0.3, 0.7]], [[0.1, 0.9]]]))
    >>> fit = dpo(pairs, members, uniform_policy(sp), beta=1.0)
    >>> fit.policy_index, fit.set_valued
    (1, False)
    >>> d = np.log(0.7 / 0.3)
    >>> bool(abs(fit.objective - (3 * np.log(1 / (1 + np.exp(-d))) + np.log(1 / (1 + np.exp(d))))) < 1e-12)
    True
    """
    c = as_counts(data)
    beta = check_beta(beta)
    check_ref(ref, c.space)
    return dpo_solver(policy_class, c, ref, beta, l2)


@timed
def ipo(data, policy_class, ref: Policy, beta: float = 1.0, *, tau: float = 1.0, average: str = "sequence",
        l2: float | None = None) -> FitResult:
    """IPO: least squares of the log-ratio margin ``h_π`` to the target ``1/(2τ)``.

    Parameters
    ----------
    data : Preferences or PairCounts
        The preference pairs (a stream, or its sufficient statistics).
    policy_class : PolicyClass
        The policy class ``Π`` (finite, soft-optimal, tabular or log-linear).
    ref : Policy
        The reference ``π_ref`` (full support).
    beta : float
        Unused by the IPO loss itself (kept for a uniform signature).
    tau : float
        IPO's ``τ > 0``: the margin target is ``1/(2τ)``.
    average : {"sequence", "token"}
        Summed or length-averaged (divided by ``H``) log-probabilities.
    l2 : float or None
        Ridge weight ``λ``; ``None``: the class family's default (:data:`DEFAULT_L2` for the
        tabular classes).

    Returns
    -------
    FitResult
        ``policy`` = ``π̂``, ``objective`` = minus its (penalised) loss.
    """
    c = as_counts(data)
    sp = c.space
    tau = check_beta(tau, "tau")
    check_ref(ref, sp)
    ref.require_full_support("ref")
    if average not in ("sequence", "token"):
        raise ValueError(f"average must be 'sequence' or 'token', got {average!r}")
    scale = 1.0 if average == "sequence" else 1.0 / sp.H
    return ipo_solver(policy_class, c, ref, scale, 1.0 / (2.0 * tau), l2, average)
