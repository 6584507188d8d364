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
  double sum is exact over groups: completions with equal ``(r(x,y), r*(x,y))`` are one group
  ``g`` with μ-mass ``M_g``, and the sum is ``Σ_{g,h} M_g M_h [σ(r*_g − r*_h) log σ(r_g − r_h) +
  σ(r*_h − r*_g) log σ(r_h − r_g)]`` over the ``K`` distinct joint values of the prompt's
  completions with ``μ > 0`` (``O(K²)``: the untouched completions of a tabular fit share one
  value, feature-based rewards have few). Refused when ``Σ_x K_x² > MAX_PAIR_WORK``.

Argument order, every metric: the policy (or reward) evaluated, the true reward ``r*``, the
reference ``π_ref`` (or the sampler μ), β, then the prompt weights — e.g.
``win_rate(policy, reward, ref)``, ``suboptimality(policy, reward, ref, beta)``; each omits what
it does not take. A :class:`~genver.policy.Policy` passed where a reward belongs (the old
``win_rate(policy, ref, reward)``) raises ``TypeError`` naming the order.

Memory and the hot path, ``T`` completions per prompt: suboptimality, KL and expected reward
read each ``(P, T)`` array once, prompt by prompt, in one fused kernel (see
:mod:`genver.softrl`); memory beyond the inputs stays ``O(1)`` per prompt (plus π* itself when
it is not passed as ``optimal``). The win rate's masses ``a_i`` are summed block by block
(``_MASS_BLOCK`` completions: ``np.exp`` of the block into one small buffer, then a kernel adds
each term to its level in completion order, as ``np.bincount`` did), so no ``(P, T)`` array
of probabilities is formed and the numbers are bitwise those of ``np.bincount(level,
weights=np.exp(logp))``. :func:`reward_levels` finds each prompt's values with one sort
(``np.unique``) and each completion's level by binary search. :func:`expected_bt_loglik`
groups prompt by prompt (``O(T)`` temporaries); with no ties and every ``μ > 0`` its groups are
the completions in order and its sum is term for term the ungrouped one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kernels
from ._validation import check_beta, check_prompt_weights
from .policy import Policy, check_policy
from .preferences import Preferences
from .softrl import expected_reward, kl, kl_rows, rho_weighted, soft_optimal

__all__ = ["suboptimality", "kl_to_optimal", "kl_to_reference", "expected_reward", "win_rate",
           "RewardLevels", "reward_levels", "heldout_bt_loglik", "expected_bt_loglik", "evaluate"]

#: Largest number of value pairs evaluated exactly: ``P·U²`` (win rate, ``U`` reward levels of the
#: largest prompt) or ``Σ_x K_x²`` (expected log-likelihood, ``K_x`` joint values of prompt ``x``).
MAX_PAIR_WORK = 2**33
#: Completions per block of the level masses (one buffer of this many doubles per call).
_MASS_BLOCK = 1 << 16


def _check_order(fn: str, order: str, **rewards) -> None:
    """``TypeError`` when a Policy sits in one of ``fn``'s reward slots (``rewards``: name ->
    value): an argument order from before every metric took ``(policy, reward, ref, beta, …)``,
    e.g. the old ``win_rate(policy, ref, reward)``, refused rather than misread."""
    for name, value in rewards.items():
        if isinstance(value, Policy):
            raise TypeError(f"{fn}: {name} must be a reward array, got a Policy; the argument order is "
                            f"{fn}({order})")


def _level_mass(level: np.ndarray, logp: np.ndarray, n_levels: int) -> np.ndarray:
    """``Σ_{y in level i} e^{logp[y]}`` per level (``level``, ``logp`` flat), each level's terms
    added in completion order: ``np.bincount(level, weights=np.exp(logp), minlength=n_levels)``
    bit for bit, with ``np.exp`` of ``_MASS_BLOCK`` entries at a time instead of the whole array."""
    mass = np.zeros(n_levels)
    buf = np.empty(min(_MASS_BLOCK, level.size))
    for i0 in range(0, level.size, _MASS_BLOCK):
        i1 = min(i0 + _MASS_BLOCK, level.size)
        w = np.exp(logp[i0:i1], out=buf[: i1 - i0])
        _kernels.level_mass_add(level[i0:i1], w, mass)
    return mass


def _row_levels(row: np.ndarray, out: np.ndarray | None = None, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(u, offset + inv)``: the sorted distinct values of ``row`` and each entry's index in them
    (``np.unique(row, return_inverse=True)``, by one sort and a binary search per entry,
    :func:`genver._kernels.level_index`), the indices written into ``out`` when given."""
    u = np.unique(row)
    out = np.empty(row.size, dtype=np.int64) if out is None else out
    _kernels.level_index(u, np.ascontiguousarray(row), offset, out)
    return u, out


def _opt_logp(reward, ref: Policy, beta):
    return soft_optimal(reward, ref, beta).policy.logp


def suboptimality(policy: Policy, reward, ref: Policy, beta: float, prompt_weights=None, *,
                  optimal: Policy | None = None) -> float:
    """``J_β(π*; r*) − J_β(π̂; r*) = β E_x KL(π̂ ‖ π*_{r*})`` (≥ 0).

    Parameters
    ----------
    policy : Policy
        The policy ``π̂`` evaluated.
    reward : array_like
        The true reward ``r*``, shape ``(P, T)``.
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.
    optimal : Policy or None
        The precomputed ``π*_{r*}``, when many policies are evaluated against one instance.

    Returns
    -------
    float
        The suboptimality, ``≥ 0`` (0 exactly at ``π̂ = π*``).

    Examples
    --------
    One prompt, two completions with ``r* = (0, 1)``, uniform reference, ``β = 1``: the
    reference's suboptimality is ``β log E_ref e^{r*/β} − E_ref r* = log((1 + e)/2) − 1/2``.

    >>> import numpy as np
    >>> from genver.spaces import TreeSpace
    >>> from genver.policy import uniform_policy
    >>> from genver.softrl import soft_optimal
    >>> sp = TreeSpace(P=1, V=2, H=1)
    >>> r, ref = np.array([[0.0, 1.0]]), uniform_policy(sp)
    >>> sub = suboptimality(ref, r, ref, 1.0)
    >>> round(sub, 10)
    0.120114507
    >>> bool(abs(sub - (np.log((1 + np.e) / 2) - 0.5)) < 1e-15)
    True
    >>> abs(suboptimality(soft_optimal(r, ref, 1.0).policy, r, ref, 1.0)) < 1e-15
    True
    """
    _check_order("suboptimality", "policy, reward, ref, beta, prompt_weights", reward=reward)
    return check_beta(beta) * kl_to_optimal(policy, reward, ref, beta, prompt_weights, optimal=optimal)


def kl_to_optimal(policy: Policy, reward, ref: Policy, beta: float, prompt_weights=None, *,
                  optimal: Policy | None = None) -> float:
    """``E_x KL(π̂ ‖ π*_{r*})``.

    Parameters
    ----------
    policy : Policy
        The policy ``π̂`` evaluated.
    reward : array_like
        The true reward ``r*``, shape ``(P, T)``.
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.
    optimal : Policy or None
        A precomputed ``π*_{r*}``.

    Returns
    -------
    float
        The ``ρ``-weighted KL divergence, ``≥ 0``.
    """
    _check_order("kl_to_optimal", "policy, reward, ref, beta, prompt_weights", reward=reward)
    policy = check_policy("policy", policy)
    check_policy("ref", ref, policy.space)
    rho = check_prompt_weights(prompt_weights, policy.space.P)
    opt = _opt_logp(reward, ref, beta) if optimal is None else check_policy("optimal", optimal, policy.space).logp
    return float(rho_weighted(kl_rows(policy.logp, opt), rho))


def kl_to_reference(policy: Policy, ref: Policy, prompt_weights=None) -> float:
    """``E_x KL(π̂ ‖ π_ref)``.

    Parameters
    ----------
    policy : Policy
        The policy ``π̂`` evaluated.
    ref : Policy
        The reference ``π_ref``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.

    Returns
    -------
    float
        The ``ρ``-weighted KL divergence, ``≥ 0``.
    """
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
        level's terms are added in completion order, as ``np.bincount`` of one prompt's row.

        Parameters
        ----------
        probs : np.ndarray
            Completion probabilities ``π̂(y|x)``, shape ``(P, T)``.

        Returns
        -------
        np.ndarray
            The level masses, shape ``values.shape``.
        """
        return np.bincount(self.level, weights=probs.ravel(), minlength=self.values.size)

    def mass_of(self, policy: Policy) -> np.ndarray:
        """``a_i`` of ``policy``: ``self.mass(policy.probs)`` bit for bit, without forming the
        ``(P, T)`` probabilities (:func:`_level_mass`).

        Parameters
        ----------
        policy : Policy
            The policy ``π̂`` whose masses are summed.

        Returns
        -------
        np.ndarray
            The level masses, shape ``values.shape``.
        """
        return _level_mass(self.level, policy.logp.ravel(), self.values.size)

    def matches(self, reward: np.ndarray, ref: Policy) -> bool:
        """Whether these levels were built from this ``r*`` and ``π_ref`` (equal arrays;
        ``O(P·T)``, cheaper than regrouping).

        Parameters
        ----------
        reward : np.ndarray
            A reward ``r*``, shape ``(P, T)``.
        ref : Policy
            A reference ``π_ref``.

        Returns
        -------
        bool
            True when both arrays equal the ones the levels were built from.
        """
        return np.array_equal(self.reward, reward) and np.array_equal(self.ref_logp, ref.logp)


def reward_levels(reward, ref: Policy) -> RewardLevels:
    """:class:`RewardLevels` of ``reward`` (= ``r*``) and the reference ``ref``.

    Parameters
    ----------
    reward : array_like
        The true reward ``r*``, shape ``(P, T)``.
    ref : Policy
        The reference ``π_ref``.

    Returns
    -------
    RewardLevels
        The per-prompt sorted reward values and ``π_ref``'s mass on each (read-only arrays).
    """
    _check_order("reward_levels", "reward, ref", reward=reward)
    if not isinstance(ref, Policy):
        raise ValueError("ref must be a genver Policy object")
    sp = ref.space
    r = sp.check_array("reward", reward)
    vals, starts = [], [0]
    level = np.empty(sp.P * sp.T, dtype=np.int64)
    for x in range(sp.P):
        u, _ = _row_levels(r[x], level[x * sp.T : (x + 1) * sp.T], starts[-1])
        vals.append(u)
        starts.append(starts[-1] + u.size)
    values = np.concatenate(vals)
    arrays = {"reward": r.copy(), "ref_logp": ref.logp.copy(),  # private copies: the levels cannot go stale
              "values": values, "ref_mass": _level_mass(level, ref.logp.ravel(), values.size),
              "starts": np.asarray(starts, dtype=np.int64), "level": level}
    for a in arrays.values():
        a.setflags(write=False)
    return RewardLevels(**arrays)


def win_rate(policy: Policy, reward, ref: Policy, prompt_weights=None, *, levels: RewardLevels | None = None) -> float:
    """``E_x P_{y~π̂, y'~π_ref}(y ≻ y')`` under Bradley–Terry with ``r*`` = ``reward`` (exact).

    Parameters
    ----------
    policy : Policy
        The policy ``π̂`` evaluated.
    reward : array_like
        The true reward ``r*``, shape ``(P, T)``.
    ref : Policy
        The reference ``π_ref`` it plays against.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.
    levels : RewardLevels or None
        The precomputed :func:`reward_levels` of ``(reward, ref)``, when many policies are
        evaluated against one instance (the same number, to the bit).

    Returns
    -------
    float
        The win rate in ``[0, 1]``.

    Examples
    --------
    Against itself any policy wins half the time; on two completions with ``r* = (0, 1)`` the
    policy that always answers ``y = 1`` beats the uniform reference with probability
    ``½ σ(1) + ½ σ(0)``.

    >>> import numpy as np
    >>> from genver.spaces import TreeSpace
    >>> from genver.policy import Policy, uniform_policy
    >>> sp = TreeSpace(P=1, V=2, H=1)
    >>> r, ref = np.array([[0.0, 1.0]]), uniform_policy(sp)
    >>> win_rate(ref, r, ref)
    0.5
    >>> best = Policy.from_probs(sp, [[0.0, 1.0]])
    >>> w = win_rate(best, r, ref)
    >>> round(w, 12)
    0.615529289315
    >>> bool(abs(w - (0.5 / (1 + np.exp(-1.0)) + 0.25)) < 1e-15)
    True
    """
    _check_order("win_rate", "policy, reward, ref, prompt_weights", reward=reward)
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
    _kernels.grouped_win_rate(v, levels.mass_of(policy), v, levels.ref_mass, s, s, out)
    return float(out @ rho)


def heldout_bt_loglik(reward, data: Preferences) -> float:
    """Mean Bradley–Terry log-likelihood of ``reward`` on the pairs ``data`` (an estimate of
    the expected value from a finite sample).

    Parameters
    ----------
    reward : array_like
        The reward ``r`` scored, shape ``(P, T)``.
    data : Preferences
        The held-out pairs (at least one).

    Returns
    -------
    float
        ``(1/N) Σ_i log σ(r(x_i, y⁺_i) − r(x_i, y⁻_i))``, ``≤ 0``.
    """
    if not isinstance(data, Preferences):
        raise ValueError("data must be a Preferences object")
    if len(data) == 0:
        raise ValueError("data has no pairs")
    r = data.space.check_array("reward", reward)
    c = data.counts()
    grad = np.empty(r.size)
    total = _kernels.bt_loglik_grad(r.ravel(), c.pos_flat, c.neg_flat, c.count, 1.0, grad)
    return float(total / len(data))


def _joint_groups(rm: np.ndarray, rt: np.ndarray, logmu: np.ndarray):
    """One prompt's groups of completions with ``μ > 0`` and equal ``(r, r*)``, in order of
    first appearance: ``(r_g, r*_g, M_g)`` with ``M_g = Σ_{y ∈ g} μ(y)`` in completion order.
    The joint value's index ``code = i*·U + i`` (``i``, ``i*``: the levels of ``r`` and ``r*``,
    ``U`` of them for ``r``) numbers the groups in one pass when ``U·U* ≤ 4T``; otherwise the
    codes are first compressed to their distinct values (one more sort)."""
    if not np.isfinite(logmu).all():
        keep = np.flatnonzero(logmu > -np.inf)
        rm, rt, logmu = rm[keep], rt[keep], logmu[keep]
    um, im = _row_levels(rm)
    ut, code = _row_levels(rt)
    code *= um.size
    code += im  # < T² ≤ 2**62 (TreeSpace's bound)
    del im
    n_codes = um.size * ut.size
    if n_codes > 4 * code.size:
        uc, code = _row_levels(code)
        n_codes = uc.size
    gid = np.empty(code.size, dtype=np.int64)
    first = _kernels.first_appearance_groups(code, n_codes, gid)
    return rm[first], rt[first], _level_mass(gid, logmu, first.size)


def expected_bt_loglik(reward, reward_true, sampler: Policy, prompt_weights=None) -> float:
    """Exact expected per-pair Bradley–Terry log-likelihood of ``reward`` when pairs come from
    ``sampler`` (= μ) and labels from ``reward_true`` (= r*), summed over the groups of equal
    ``(r, r*)`` (module docstring): ``O(Σ_x K_x²)`` for ``K_x`` joint values, refused above
    ``MAX_PAIR_WORK``.

    Parameters
    ----------
    reward : array_like
        The reward ``r`` scored, shape ``(P, T)``.
    reward_true : array_like
        The labelling reward ``r*``, shape ``(P, T)``.
    sampler : Policy
        The pair sampler ``μ`` (both completions drawn i.i.d. from it).
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.

    Returns
    -------
    float
        The expected log-likelihood per pair, ``≤ 0``.
    """
    _check_order("expected_bt_loglik", "reward, reward_true, sampler, prompt_weights",
                 reward=reward, reward_true=reward_true)
    if not isinstance(sampler, Policy):
        raise ValueError(f"sampler must be a genver Policy, got {type(sampler).__name__}")
    sp = sampler.space
    r = sp.check_array("reward", reward)
    rt = sp.check_array("reward_true", reward_true)
    rho = check_prompt_weights(prompt_weights, sp.P)
    groups = [_joint_groups(r[x], rt[x], sampler.logp[x]) for x in range(sp.P)]
    K = np.array([g[0].size for g in groups], dtype=np.int64)
    work = int((K * K).sum())
    if work > MAX_PAIR_WORK:
        raise ValueError(
            f"expected_bt_loglik: the prompts have up to K = {int(K.max())} distinct (reward, reward_true) "
            f"values among the completions with sampler mass > 0; the exact double sum over them costs "
            f"sum_x K_x^2 = {work} pair terms, above the exact-evaluation limit MAX_PAIR_WORK = {MAX_PAIR_WORK}; "
            f"use heldout_bt_loglik on sampled pairs"
        )
    starts = np.concatenate([[0], np.cumsum(K)])
    rm_g, rt_g, mass = (np.concatenate([g[i] for g in groups]) for i in range(3))
    out = np.empty(sp.P)
    _kernels.grouped_bt_loglik(rm_g, rt_g, mass, starts, work, out)
    return float(out @ rho)


def evaluate(policy: Policy, reward, ref: Policy, beta: float, prompt_weights=None) -> dict:
    """Every exact policy metric in one dict (keys as the function names).

    Parameters
    ----------
    policy : Policy
        The policy ``π̂`` evaluated.
    reward : array_like
        The true reward ``r*``, shape ``(P, T)``.
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.

    Returns
    -------
    dict
        ``{"suboptimality", "kl_to_optimal", "kl_to_reference", "expected_reward",
        "win_rate"}`` → float.
    """
    beta = check_beta(beta)
    k = kl_to_optimal(policy, reward, ref, beta, prompt_weights)
    return {
        "suboptimality": beta * k,
        "kl_to_optimal": k,
        "kl_to_reference": kl_to_reference(policy, ref, prompt_weights),
        "expected_reward": expected_reward(policy, reward, prompt_weights),
        "win_rate": win_rate(policy, reward, ref, prompt_weights),
    }
