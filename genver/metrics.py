r"""Exact evaluation of a learned policy or reward against the true reward ``r*``.

All quantities are sums over every completion (no sampling):

* suboptimality ``J_β(π*; r*) − J_β(π̂; r*)``, which by the reverse-KL identity equals
  ``β E_x KL(π̂ ‖ π*)`` with ``π* = π*_{r*}``;
* ``KL(π̂ ‖ π*)``, ``E_{π̂} r*`` and ``KL(π̂ ‖ π_ref)``;
* win rate against the reference under the Bradley–Terry model of ``r*``:
  ``E_x Σ_{y,y'} π̂(y|x) π_ref(y'|x) σ(r*(x,y) − r*(x,y'))``. Completions with equal reward
  are grouped first (exact): with the distinct values ``v_1 < … < v_U`` of ``r*(x, ·)`` and
  the masses ``a_i = Σ_{y: r*(x,y) = v_i} π̂(y|x)``, ``b_j`` likewise for ``π_ref``, the sum
  is ``Σ_{i,j} a_i b_j σ(v_i − v_j)``, so the cost is ``O(U²)`` per prompt — small for
  feature-based verifiers. The levels ``v`` and the reference masses ``b`` depend only on
  ``(r*, π_ref)``: :func:`reward_levels` computes them once (:class:`RewardLevels`), and
  every policy evaluated against the same instance only sums its own masses ``a``;
* Bradley–Terry log-likelihood of a reward ``r``: on held-out pairs (an estimate from data,
  mean per pair), or its exact expectation under ``μ`` with labels from ``r*``:
  ``E_x Σ_{y1,y2} μ μ [σ(Δ*) log σ(Δ) + σ(−Δ*) log σ(−Δ)]``, ``Δ = r(y1) − r(y2)``; the
  expectation costs ``O(T²)`` per prompt and is refused above ``MAX_PAIR_WORK``.

Suboptimality, KL and expected reward read each ``(P, T)`` array once, prompt by prompt, in
one fused kernel (see :mod:`genver.softrl`); memory beyond the inputs stays ``O(1)`` per prompt
(plus π* itself when it is not passed as ``optimal``). The win rate forms the policy's
probabilities once (one ``(P, T)`` array, ``np.exp``: its numbers are bitwise those of the
per-call grouping, tested) before grouping them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kernels
from ._validation import check_beta, check_prompt_weights
from .policy import Policy
from .preferences import Preferences
from .softrl import _check_policy, expected_reward, kl, kl_rows, rho_weighted, soft_optimal

__all__ = ["suboptimality", "kl_to_optimal", "kl_to_reference", "expected_reward", "win_rate",
           "RewardLevels", "reward_levels", "heldout_bt_loglik", "expected_bt_loglik", "evaluate"]

#: Largest P·U² (win rate) or P·T² (expected log-likelihood) evaluated exactly.
MAX_PAIR_WORK = 2**33


def _opt_logp(reward, ref: Policy, beta):
    return soft_optimal(reward, ref, beta).policy.logp


def suboptimality(policy: Policy, reward, ref: Policy, beta: float, prompt_weights=None, *,
                  optimal: Policy | None = None) -> float:
    """``J_β(π*; r*) − J_β(π̂; r*) = β E_x KL(π̂ ‖ π*_{r*})`` (≥ 0). ``optimal`` may pass the
    precomputed ``π*_{r*}`` when many policies are evaluated against one instance."""
    return check_beta(beta) * kl_to_optimal(policy, reward, ref, beta, prompt_weights, optimal=optimal)


def kl_to_optimal(policy: Policy, reward, ref: Policy, beta: float, prompt_weights=None, *,
                  optimal: Policy | None = None) -> float:
    """``E_x KL(π̂ ‖ π*_{r*})`` (``optimal``: a precomputed ``π*_{r*}``)."""
    policy = _check_policy("policy", policy)
    _check_policy("ref", ref, policy.space)
    rho = check_prompt_weights(prompt_weights, policy.space.P)
    opt = _opt_logp(reward, ref, beta) if optimal is None else _check_policy("optimal", optimal, policy.space).logp
    return float(rho_weighted(kl_rows(policy.logp, opt), rho))


def kl_to_reference(policy: Policy, ref: Policy, prompt_weights=None) -> float:
    """``E_x KL(π̂ ‖ π_ref)``."""
    return kl(policy, ref, prompt_weights)


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class RewardLevels:
    """The policy-independent part of :func:`win_rate` for one ``(r*, π_ref)``: per prompt,
    the distinct reward values (sorted) and ``π_ref``'s mass on each. ``values``,
    ``ref_mass`` are flat over prompts, prompt ``x``'s levels at ``starts[x]:starts[x+1]``;
    ``level[x·T + y]`` is the flat level of completion ``y``. Built by :func:`reward_levels`
    (once per instance: ``Instance.reward_levels``)."""

    reward: np.ndarray  # (P, T) float64: a read-only copy of the r* it was built from
    ref_logp: np.ndarray  # (P, T): a read-only copy of log π_ref
    values: np.ndarray
    ref_mass: np.ndarray
    starts: np.ndarray  # (P + 1,) int64
    level: np.ndarray  # (P·T,) int64

    def mass(self, probs: np.ndarray) -> np.ndarray:
        """``a_i``: the mass of ``probs`` (P, T) on every level, flat like ``values``. Each
        level's terms are added in completion order, as ``np.bincount`` of one prompt's row."""
        return np.bincount(self.level, weights=probs.ravel(), minlength=self.values.size)

    def matches(self, reward: np.ndarray, ref: Policy) -> bool:
        """Whether these levels were built from this ``r*`` and ``π_ref`` (equal arrays;
        ``O(P·T)``, cheaper than regrouping)."""
        return np.array_equal(self.reward, reward) and np.array_equal(self.ref_logp, ref.logp)


def reward_levels(reward, ref: Policy) -> RewardLevels:
    """:class:`RewardLevels` of ``reward`` (= ``r*``) and the reference ``ref``."""
    if not isinstance(ref, Policy):
        raise ValueError("ref must be a genver Policy object")
    sp = ref.space
    r = sp.check_array("reward", reward)
    ref_probs = ref.probs
    vals, masses, levels, starts = [], [], [], [0]
    for x in range(sp.P):
        u, inv = np.unique(r[x], return_inverse=True)
        vals.append(u)
        masses.append(np.bincount(inv, weights=ref_probs[x], minlength=u.size))
        levels.append(inv + starts[-1])
        starts.append(starts[-1] + u.size)
    arrays = {"reward": r.copy(), "ref_logp": ref.logp.copy(),  # private copies: the levels cannot go stale
              "values": np.concatenate(vals), "ref_mass": np.concatenate(masses),
              "starts": np.asarray(starts, dtype=np.int64), "level": np.concatenate(levels).astype(np.int64)}
    for a in arrays.values():
        a.setflags(write=False)
    return RewardLevels(**arrays)


def win_rate(policy: Policy, ref: Policy, reward, prompt_weights=None, *, levels: RewardLevels | None = None) -> float:
    """``E_x P_{y~π̂, y'~π_ref}(y ≻ y')`` under Bradley–Terry with ``r*`` (exact). ``levels``
    may pass the precomputed :func:`reward_levels` of ``(reward, ref)`` when many policies are
    evaluated against one instance (the same number, to the bit)."""
    if not isinstance(policy, Policy) or not isinstance(ref, Policy):
        raise ValueError("policy and ref must be genver Policy objects")
    sp = policy.space
    if ref.space != sp:
        raise ValueError("policy and ref live on different spaces")
    r = sp.check_array("reward", reward)
    rho = check_prompt_weights(prompt_weights, sp.P)
    if levels is None:
        levels = reward_levels(r, ref)
    elif not isinstance(levels, RewardLevels) or not levels.matches(r, ref):
        raise ValueError("levels were not built from this reward and reference (see reward_levels)")
    work = int(np.max(np.diff(levels.starts))) ** 2 * sp.P
    if work > MAX_PAIR_WORK:
        raise ValueError(f"win_rate: {work} reward-value pairs exceed the exact-evaluation limit {MAX_PAIR_WORK}")
    out = np.empty(sp.P)
    v, s = levels.values, levels.starts
    _kernels.grouped_win_rate(v, levels.mass(policy.probs), v, levels.ref_mass, s, s, out)
    return float(out @ rho)


def heldout_bt_loglik(reward, data: Preferences) -> float:
    """Mean Bradley–Terry log-likelihood of ``reward`` on the pairs ``data`` (an estimate of
    the expected value from a finite sample)."""
    if not isinstance(data, Preferences):
        raise ValueError("data must be a Preferences object")
    if len(data) == 0:
        raise ValueError("data has no pairs")
    r = data.space.check_array("reward", reward)
    c = data.counts()
    grad = np.empty(r.size)
    total = _kernels.bt_loglik_grad(r.ravel(), c.pos_flat, c.neg_flat, c.count, 1.0, grad)
    return float(total / len(data))


def expected_bt_loglik(reward, reward_true, sampler: Policy, prompt_weights=None) -> float:
    """Exact expected per-pair Bradley–Terry log-likelihood of ``reward`` when pairs come from
    ``sampler`` (= μ) and labels from ``reward_true`` (= r*)."""
    if not isinstance(sampler, Policy):
        raise ValueError(f"sampler must be a genver Policy, got {type(sampler).__name__}")
    sp = sampler.space
    r = sp.check_array("reward", reward)
    rt = sp.check_array("reward_true", reward_true)
    rho = check_prompt_weights(prompt_weights, sp.P)
    if sp.P * sp.T * sp.T > MAX_PAIR_WORK:
        raise ValueError(
            f"expected_bt_loglik: P*T^2 = {sp.P * sp.T * sp.T} exceeds the exact-evaluation limit "
            f"{MAX_PAIR_WORK}; use heldout_bt_loglik on sampled pairs"
        )
    out = np.empty(sp.P)
    _kernels.expected_bt_loglik(r, rt, np.ascontiguousarray(sampler.probs), out)
    return float(out @ rho)


def evaluate(policy: Policy, reward, ref: Policy, beta: float, prompt_weights=None) -> dict:
    """Every exact policy metric in one dict (keys as the function names)."""
    beta = check_beta(beta)
    k = kl_to_optimal(policy, reward, ref, beta, prompt_weights)
    return {
        "suboptimality": beta * k,
        "kl_to_optimal": k,
        "kl_to_reference": kl_to_reference(policy, ref, prompt_weights),
        "expected_reward": expected_reward(policy, reward, prompt_weights),
        "win_rate": win_rate(policy, ref, reward, prompt_weights),
    }
