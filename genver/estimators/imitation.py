r"""Imitation from demonstrations: SFT, MaxEnt-IRL + soft RL, and a SPIN-style iteration.

Notation as in ``docs/concepts.md``. Demonstrations are ``N`` pairs ``(x_i, y_i)``, used
only through their counts ``C(x, y)`` (``N_x = Σ_y C(x, y)``); ``r_π = β log π/π_ref`` is the
reward induced by a policy.

* **SFT (one stage):** ``π̂_SFT ∈ argmax_{π∈Π} Σ_i log π(y_i|x_i) − pen(π)``.
* **MaxEnt IRL (stage 1 of the two-stage route):**
  ``r̂ ∈ argmax_{r∈R} Σ_i log π*_r(y_i|x_i) − pen(r)`` with the soft-optimal likelihood
  ``log π*_r(y|x) = log π_ref(y|x) + r(x,y)/β − log Z_r(x)``;
  then exact soft RL ``π̂ ∈ argmax_{π∈Π} J_β(π; r̂)`` (:func:`genver.estimators.mle.rl_step`).
* **SPIN-style iteration:** ``π_0 = π_ref``; round ``t`` pairs each demonstration ``y_i`` (preferred)
  with ``n_synthetic`` draws ``y' ~ π_t(·|x_i)`` (dispreferred) and either runs DPO with ``π_t``
  as the reference (offline) or fits the Bradley–Terry reward MLE and runs exact RL with
  reference ``π_t`` (online).

Theorem 2.3 (tested): with ``R = R(Π)`` — ``induced_reward_class(Π, π_ref, β)`` for a finite
``Π``, the tabular pair with the same ``l2`` — SFT and MaxEnt-IRL + RL return the same policy
for every ``N``, and both SPIN routes coincide round by round.

Solvers and well-posedness rules (the same conventions as :mod:`genver.estimators.mle`)
-----------------------------------------------------------------------------------------
* Finite classes (``FinitePolicyClass``, ``SoftOptimalPolicyClass`` of a finite ``R``,
  ``FiniteRewardClass``): every member's log-likelihood is computed in one vectorised
  gather. The chosen member is the **lowest index among the members within a relative
  1e-12 of the maximum** (so two routes whose objectives agree up to rounding pick the same
  member); ``set_valued`` is True when a tied member induces a different policy.
* Tabular classes: the likelihood is maximised at infinity for completions never
  demonstrated, so both tabular routes use the same ridge penalty on the reward scale,
  invariant to per-prompt constants: ``pen = (λ/2) Σ_x Σ_y (r(x,y) − r̄(x))²`` with ``r̄(x)``
  the mean over the ``T`` completions, applied to ``r_π`` for SFT (optimised over logits
  ``z`` of ``π = softmax(log π_ref + z)``) and to ``r`` for MaxEnt IRL (optimised over the
  reward table). Since ``r_{π*_r} = r − β log Z_r`` the two objectives are the same function
  modulo per-prompt constants, strictly concave there, with one solution. ``λ = l2``
  (default :data:`~genver.estimators.mle.DEFAULT_L2`) must be ``> 0``; ``π_ref`` needs full
  support. The returned IRL reward is centred (``r̄(x) = 0``). ``identified`` marks the
  prompts with at least one demonstration (the unpenalised MLE there is the empirical
  distribution; other prompts fall back to ``π_ref``).
* Linear rewards (MaxEnt IRL) and ``SoftOptimalPolicyClass`` of a linear ``R`` (SFT; the same
  problem): ``pen = (λ/2)‖w‖²`` (``λ ≥ 0``, default 0), concave; gradient
  ``Σ_x Σ_y C(x,y) (φ(x,y) − E_{π*_w(·|x)} φ)/β − λ w``.
* Log-linear policies (SFT): ``pen = (λ/2)‖θ‖²`` (``λ ≥ 0``, default 0); ``Σ_i log π_θ(y_i|x_i)``
  is concave in ``θ``; gradient from :meth:`LogLinearPolicyClass.contract_score`.
* Tabular solver: exact damped Newton (:func:`genver._solve.newton`) to ``max|∇| ≤ 1e-13·max(1, N)``
  or the float64 floor of the gradient (L-BFGS stalled at ~3e-6 in ``log π``). Write the
  objective in the reward-scale variable ``u`` (``u = βz`` for SFT, ``u = r`` for IRL),
  ``π_x = softmax(log π_ref(·|x) + u_x/β)``, ``N_x = Σ_y C(x,y)``:
  ``F(u) = Σ_x [Σ_y C(x,y) log π_x(y) − (λ/2) ‖C_T u_x‖²]`` (``C_T = I − 11ᵀ/T``), with
  ``∇_{u_x} F = (C(x,·) − N_x π_x)/β − λ C_T u_x`` (sums to 0 within each prompt) and, per prompt,
  ``−∇²_{u_x} F = (N_x/β²)(diag π_x − π_x π_xᵀ) + λ C_T`` — positive semi-definite (the
  softmax covariance plus a ridge), singular only along the per-prompt constants, which change
  neither ``π`` nor the penalty: ``F`` is concave and strictly concave modulo constants. Both
  terms map ``1⊥`` to itself, where ``C_T = I``, so the Newton step solves, per prompt,
  ``(M − k π πᵀ) d = g`` with ``k = N_x/β²``, ``M = diag(k π + λ)`` (Sherman–Morrison, O(T)):
  ``d = M⁻¹g + k (πᵀM⁻¹g) M⁻¹π / (1 − k πᵀM⁻¹π)``, the denominator computed as
  ``Σ_y π_y λ/(kπ_y + λ) > 0`` (no cancellation); ``g`` is projected onto ``1⊥`` before and
  ``d`` after (rounding only). In SFT's logits ``z = u/β`` the gradient is ``β∇_u F`` and the
  Hessian ``β²∇²_u F``. Prompts without demonstrations have ``k = 0``: ``d = g/λ``, one step to
  ``u_x = const`` (``π = π_ref``). Everything is ``(P, T)`` vectors: ``O(P·T)`` memory and work
  per step, no ``T × T`` matrix (``benchmarks/bench_fit_scale.py``: ``T = 2^20`` with ``10^7``
  demonstrations fits in 0.32 GiB peak, 0.24 GiB of it the demonstrations).
* Linear / log-linear classes: L-BFGS (``gtol = 1e-9``, ``ftol = 0``) with exact gradients;
  ``grad_norm`` is the max-abs gradient at the solution and ``converged`` is True when that
  gradient is ``≤ 1e-6·max(1, N)``.

The solvers live with their class families (:mod:`genver.estimators.finite`,
:mod:`~genver.estimators.tabular`, :mod:`~genver.estimators.linear`,
:mod:`~genver.estimators.soft_optimal`); the functions here validate and dispatch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import as_generator, check_beta, check_positive_int, check_prompt_weights
from ..classes import induced_reward_class
from ..policy import Policy
from ..preferences import Preferences, sample_completions
from ..spaces import TreeSpace
from . import mle
from .base import FitResult, timed
from .solvers import irl_solver, sft_solver

__all__ = ["Demonstrations", "sample_demonstrations", "sft", "maxent_irl", "maxent_irl_rl", "spin"]


# -- data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Demonstrations:
    """``N`` demonstrations: prompt indices ``x`` and completion indices ``y`` (int64)."""

    space: TreeSpace
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @classmethod
    def from_array(cls, space: TreeSpace, demos, name: str = "demos") -> Demonstrations:
        """From an ``(N, 2)`` integer array of (prompt, completion).

        Parameters
        ----------
        space : TreeSpace
            The tree.
        demos : array_like of int
            Rows ``(x, y)``, shape ``(N, 2)``.
        name : str
            The argument's name, used in the error messages.

        Returns
        -------
        Demonstrations
            The demonstrations, in the given order.
        """
        if not isinstance(space, TreeSpace):
            raise ValueError(f"space must be a TreeSpace, got {type(space).__name__}")
        a = np.asarray(demos)
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"{name} must have shape (N, 2), got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if a.shape[0] and (a[:, 0].min() < 0 or a[:, 0].max() >= space.P):
            raise ValueError(f"{name}[:, 0] (prompt) must lie in [0, {space.P - 1}]")
        if a.shape[0] and (a[:, 1].min() < 0 or a[:, 1].max() >= space.T):
            raise ValueError(f"{name}[:, 1] (completion) must lie in [0, {space.T - 1}]")
        return cls(space, a[:, 0].copy(), a[:, 1].copy())

    def as_array(self) -> np.ndarray:
        """The demonstrations as rows ``(x, y)``.

        Returns
        -------
        np.ndarray
            Shape ``(N, 2)``, int64.
        """
        return np.stack([self.x, self.y], axis=1)

    def head(self, n: int) -> Demonstrations:
        """The first ``n`` demonstrations of the stream (nested sample sizes).

        Parameters
        ----------
        n : int
            How many, ``0 ≤ n ≤ N``.

        Returns
        -------
        Demonstrations
            Views of the first ``n`` rows.
        """
        n = check_positive_int(n, "n", minimum=0)
        if n > len(self):
            raise ValueError(f"n = {n} exceeds the {len(self)} demonstrations available")
        return Demonstrations(self.space, self.x[:n], self.y[:n])

    def counts(self) -> np.ndarray:
        """``C(x, y)``: number of demonstrations of each (prompt, completion).

        Returns
        -------
        np.ndarray
            Float64 counts, shape ``(P, T)``.
        """
        sp = self.space
        flat = self.x * sp.T + self.y
        return np.bincount(flat, minlength=sp.P * sp.T).astype(np.float64).reshape(sp.shape)


def sample_demonstrations(policy: Policy, n: int, random_state=None, prompt_weights=None) -> Demonstrations:
    """Draw ``n`` demonstrations ``x ~ ρ``, ``y ~ π(·|x)`` (prompts first, then one uniform per
    completion, from one generator: the same seed gives the same stream, and ``head`` gives
    nested data sets).

    Parameters
    ----------
    policy : Policy
        The demonstrator ``π``.
    n : int
        Number of demonstrations, ``≥ 0``.
    random_state : None, int, SeedSequence or Generator
        Seed.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.

    Returns
    -------
    Demonstrations
        The ``n`` draws, in order.
    """
    if not isinstance(policy, Policy):
        raise ValueError(f"policy must be a genver Policy, got {type(policy).__name__}")
    sp = policy.space
    n = check_positive_int(n, "n", minimum=0)
    rho = check_prompt_weights(prompt_weights, sp.P)
    rng = as_generator(random_state)
    x = rng.choice(sp.P, size=n, p=rho).astype(np.int64)
    y = sample_completions(policy.probs, x, rng.random(n)).astype(np.int64)
    return Demonstrations(sp, x, y)


# -- shared helpers -----------------------------------------------------------------------
def _check_demos(demos) -> Demonstrations:
    if not isinstance(demos, Demonstrations):
        raise ValueError(f"demos must be Demonstrations, got {type(demos).__name__}")
    return demos


def _check_ref(ref, space: TreeSpace) -> Policy:
    if not isinstance(ref, Policy) or ref.space != space:
        raise ValueError(f"ref must be a Policy on the demonstrations' space {space!r}")
    return ref


def _check_class_space(name: str, cls, space: TreeSpace):
    if not isinstance(getattr(cls, "space", None), TreeSpace):
        raise ValueError(f"{name} must be a genver class with a space, got {type(cls).__name__}")
    if cls.space != space:
        raise ValueError(f"{name} lives on a different space than the demonstrations ({space!r})")


# -- SFT ----------------------------------------------------------------------------------
@timed
def sft(demos: Demonstrations, policy_class, ref: Policy, beta: float, *, l2: float | None = None) -> FitResult:
    """Supervised fine-tuning: ``argmax_{π∈Π} Σ_i log π(y_i|x_i) − pen(π)`` (see module docstring).

    Parameters
    ----------
    demos : Demonstrations
        The demonstrations ``(x_i, y_i)``.
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
        The fitted ``π̂`` and its penalised log-likelihood.
    """
    demos = _check_demos(demos)
    sp = demos.space
    beta = check_beta(beta)
    ref = _check_ref(ref, sp)
    _check_class_space("policy_class", policy_class, sp)
    return sft_solver(policy_class, demos.counts(), len(demos), ref, beta, l2)


# -- MaxEnt IRL (+ RL) ---------------------------------------------------------------------
@timed
def maxent_irl(demos: Demonstrations, reward_class, ref: Policy, beta: float, *,
               l2: float | None = None) -> FitResult:
    """Stage 1: ``r̂ ∈ argmax_{r∈R} Σ_i log π*_r(y_i|x_i) − pen(r)``. ``policy`` is the IRL
    model ``π*_{r̂}`` (soft-optimal with respect to ``ref`` — not yet projected onto a class).

    Parameters
    ----------
    demos : Demonstrations
        The demonstrations ``(x_i, y_i)``.
    reward_class : RewardClass
        The reward class ``R`` (finite, linear or tabular).
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
        ``reward`` = ``r̂``, ``policy`` = ``π*_{r̂}``.
    """
    demos = _check_demos(demos)
    sp = demos.space
    beta = check_beta(beta)
    ref = _check_ref(ref, sp)
    _check_class_space("reward_class", reward_class, sp)
    return irl_solver(reward_class, demos.counts(), len(demos), ref, beta, l2)


@timed
def maxent_irl_rl(demos: Demonstrations, reward_class, policy_class, ref: Policy, beta: float, *,
                  l2: float | None = None, prompt_weights=None) -> FitResult:
    """The two-stage imitation route: MaxEnt-IRL reward over ``R``, then exact RL over ``Π``
    against ``r̂`` (reference ``ref``, weight ``beta``).

    Parameters
    ----------
    demos : Demonstrations
        The demonstrations ``(x_i, y_i)``.
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
        ``reward`` = ``r̂``, ``policy`` = the RL step's ``π̂``; ``extra`` holds the RL objective,
        its ``residual_kl`` and the IRL model (``irl_policy``).
    """
    irl = maxent_irl(demos, reward_class, ref, beta, l2=l2)
    _check_class_space("policy_class", policy_class, demos.space)
    check_prompt_weights(prompt_weights, demos.space.P)
    rl = mle.rl_step(irl.reward, policy_class, ref, beta, prompt_weights)
    return FitResult("maxent_irl_rl", irl.objective, policy=rl.policy, reward=irl.reward,
                     policy_index=rl.policy_index, reward_index=irl.reward_index, params=irl.params,
                     converged=irl.converged, iterations=irl.iterations + rl.iterations,
                     grad_norm=max(irl.grad_norm, rl.grad_norm), set_valued=irl.set_valued,
                     identified=irl.identified,
                     extra={"rl_objective": rl.objective, "residual_kl": rl.extra["residual_kl"],
                            "irl_policy": irl.policy, **irl.extra})


# -- SPIN ---------------------------------------------------------------------------------
@timed
def spin(demos: Demonstrations, policy_class, ref: Policy, beta: float, *, rounds: int = 3,
         n_synthetic: int = 1, random_state=None, route: str = "offline", reward_class=None,
         l2: float | None = None) -> FitResult:
    """SPIN-style self-play imitation (see module docstring).

    Round ``t = 0..rounds-1`` draws, with one generator and in a fixed order (demonstration
    ``i`` major, synthetic draw ``j`` minor; one uniform each), ``y'_{ij} ~ π_t(·|x_i)`` and
    forms the pairs ``(x_i, y_i ≻ y'_{ij})`` (a draw equal to ``y_i`` gives a constant term).
    ``route="offline"``: ``π_{t+1} = dpo(pairs, Π, π_t, β)``. ``route="online"``:
    ``r̂ = reward_mle(pairs, R)`` with ``R = reward_class`` or, when ``None``,
    ``R(Π) = induced_reward_class(Π, π_t, β)`` recomputed each round, then
    ``π_{t+1} = rl_step(r̂, Π, π_t, β)``. Supported ``Π``: finite, ``Π(R)`` of a finite ``R``
    (handled as its finite member list), tabular.

    Parameters
    ----------
    demos : Demonstrations
        The demonstrations ``(x_i, y_i)``.
    policy_class : PolicyClass
        The policy class ``Π`` (finite, soft-optimal, tabular or log-linear).
    ref : Policy
        The reference ``π_ref = π_0`` (full support).
    beta : float
        The KL weight ``β > 0``.
    rounds : int
        Number of self-play rounds, ``≥ 1``.
    n_synthetic : int
        Synthetic completions per demonstration and round, ``≥ 1``.
    random_state : None, int, SeedSequence or Generator
        Seed of the synthetic draws.
    route : {"offline", "online"}
        DPO, or reward MLE + RL, in each round.
    reward_class : RewardClass or None
        ``R`` of the online route; ``None``: ``R(Π)``.
    l2 : float or None
        Ridge weight ``λ``; ``None``: the class family's default (:data:`DEFAULT_L2` for the
        tabular classes).

    Returns
    -------
    FitResult
        The last round's fit; ``extra`` holds ``policies`` (π_1..π_T), ``pairs`` (the
        Preferences of each round) and ``rounds`` (per-round summaries).
    """
    demos = _check_demos(demos)
    sp = demos.space
    beta = check_beta(beta)
    ref = _check_ref(ref, sp)
    _check_class_space("policy_class", policy_class, sp)
    rounds = check_positive_int(rounds, "rounds")
    n_synthetic = check_positive_int(n_synthetic, "n_synthetic")
    if route not in ("offline", "online"):
        raise ValueError(f"route must be 'offline' or 'online', got {route!r}")
    if route == "offline" and reward_class is not None:
        raise ValueError("reward_class is only used by route='online'")
    if reward_class is not None:
        _check_class_space("reward_class", reward_class, sp)
    ref.require_full_support("ref")
    fin = policy_class.as_finite()
    pclass = fin if fin is not None else policy_class
    if fin is None and pclass.kind != "tabular":  # R(Π) (the online route) exists for these only
        raise ValueError(f"spin: unsupported policy class {type(policy_class).__name__} "
                         "(finite, soft-optimal of a finite R, or tabular)")
    if fin is not None and not np.isfinite(fin.logp).all():
        raise ValueError("spin: every member of policy_class needs full support (each serves as a reference)")
    rng = as_generator(random_state)
    xs = np.repeat(demos.x, n_synthetic)
    ys = np.repeat(demos.y, n_synthetic)
    pi_t = ref
    policies: list[Policy] = []
    pair_sets: list[Preferences] = []
    info: list[dict[str, Any]] = []
    fit: FitResult | None = None
    for t in range(rounds):
        u = rng.random(xs.size)
        y_syn = sample_completions(pi_t.probs, xs, u).astype(np.int64)
        pairs = Preferences(sp, xs.copy(), ys.copy(), y_syn)
        if route == "offline":
            fit = mle.dpo(pairs, pclass, pi_t, beta, l2=l2)
            r_index = None
        else:
            R = reward_class if reward_class is not None else induced_reward_class(pclass, pi_t, beta)
            rm = mle.reward_mle(pairs, R, l2=l2)
            rl = mle.rl_step(rm.reward, pclass, pi_t, beta)
            fit = FitResult("spin_online_round", rm.objective, policy=rl.policy, reward=rm.reward,
                            policy_index=rl.policy_index, reward_index=rm.reward_index,
                            converged=rm.converged, iterations=rm.iterations + rl.iterations,
                            grad_norm=max(rm.grad_norm, rl.grad_norm), set_valued=rm.set_valued)
            r_index = rm.reward_index
        assert fit.policy is not None  # dpo and rl_step always return a policy
        pi_t = fit.policy
        policies.append(pi_t)
        pair_sets.append(pairs)
        info.append({"round": t, "objective": fit.objective, "policy_index": fit.policy_index,
                     "reward_index": r_index, "set_valued": fit.set_valued, "converged": fit.converged,
                     "grad_norm": fit.grad_norm, "iterations": fit.iterations, "n_pairs": len(pairs)})
    assert fit is not None  # rounds >= 1
    return FitResult("spin", fit.objective, policy=pi_t, reward=fit.reward, policy_index=fit.policy_index,
                     reward_index=fit.reward_index, converged=all(d["converged"] for d in info),
                     iterations=sum(d["iterations"] for d in info),
                     grad_norm=max(d["grad_norm"] for d in info), set_valued=fit.set_valued,
                     extra={"route": route, "rounds": info, "policies": policies, "pairs": pair_sets})
