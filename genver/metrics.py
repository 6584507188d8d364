r"""Exact evaluation of a learned policy or reward against the true reward ``r*``.

All quantities are sums over every completion (no sampling):

* suboptimality ``J_β(π*; r*) − J_β(π̂; r*)``, which by the reverse-KL identity equals
  ``β E_x KL(π̂ ‖ π*)`` with ``π* = π*_{r*}``;
* ``KL(π̂ ‖ π*)``, ``E_{π̂} r*`` and ``KL(π̂ ‖ π_ref)``;
* win rate against the reference under the Bradley–Terry model of ``r*``:
  ``E_x Σ_{y,y'} π̂(y|x) π_ref(y'|x) σ(r*(x,y) − r*(x,y'))``. Completions with equal reward
  are grouped first (exact), so the cost is ``O(U²)`` per prompt for ``U`` distinct reward
  values — small for feature-based verifiers;
* Bradley–Terry log-likelihood of a reward ``r``: on held-out pairs (an estimate from data,
  mean per pair), or its exact expectation under ``μ`` with labels from ``r*``:
  ``E_x Σ_{y1,y2} μ μ [σ(Δ*) log σ(Δ) + σ(−Δ*) log σ(−Δ)]``, ``Δ = r(y1) − r(y2)``.
"""
from __future__ import annotations

import numpy as np

from . import _kernels
from ._validation import check_beta, check_prompt_weights
from .policy import Policy
from .preferences import Preferences
from .softrl import _check_policy, expected_reward, kl, kl_rows, rho_weighted, soft_optimal

__all__ = ["suboptimality", "kl_to_optimal", "kl_to_reference", "expected_reward", "win_rate",
           "heldout_bt_loglik", "expected_bt_loglik", "evaluate"]

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


def _group(values: np.ndarray, mass: np.ndarray):
    """Per row: unique values and their total mass; flat arrays plus row starts."""
    vals, masses, starts = [], [], [0]
    for v, m in zip(values, mass):
        u, inv = np.unique(v, return_inverse=True)
        vals.append(u)
        masses.append(np.bincount(inv, weights=m, minlength=u.size))
        starts.append(starts[-1] + u.size)
    return np.concatenate(vals), np.concatenate(masses), np.asarray(starts, dtype=np.int64)


def win_rate(policy: Policy, ref: Policy, reward, prompt_weights=None) -> float:
    """``E_x P_{y~π̂, y'~π_ref}(y ≻ y')`` under Bradley–Terry with ``r*`` (exact)."""
    if not isinstance(policy, Policy) or not isinstance(ref, Policy):
        raise ValueError("policy and ref must be genver Policy objects")
    sp = policy.space
    if ref.space != sp:
        raise ValueError("policy and ref live on different spaces")
    r = sp.check_array("reward", reward)
    rho = check_prompt_weights(prompt_weights, sp.P)
    va, ma, sa = _group(r, policy.probs)
    vb, mb, sb = _group(r, ref.probs)
    work = int(np.max(np.diff(sa))) ** 2 * sp.P
    if work > MAX_PAIR_WORK:
        raise ValueError(f"win_rate: {work} reward-value pairs exceed the exact-evaluation limit {MAX_PAIR_WORK}")
    out = np.empty(sp.P)
    _kernels.grouped_win_rate(va, ma, vb, mb, sa, sb, out)
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
