r"""The likelihood routes on nested sample sizes: :func:`dpo_path`, :func:`reward_mle_path` and
:func:`rm_rl_path` fit, for finite classes, every prefix ``data.head(n)``, ``n ∈ sizes``, of one
pair stream ``(x_i, y_i⁺, y_i⁻)`` at once (notation as in ``docs/concepts.md``, *The two routes*).

For a finite class of score tables ``s_k`` (``s_k = β log π_k`` for DPO with offset
``−β (log π_ref(y⁺) − log π_ref(y⁻))``; ``s_k = r_k`` for reward MLE, offset 0) the
Bradley–Terry log-likelihood of member ``k`` on the first ``n`` pairs is
``ℓ_k(n) = Σ_{i<n} log σ(s_k(x_i,y_i⁺) − s_k(x_i,y_i⁻) + offset_i)``. It is computed with one
log-sigmoid per (member, unique *unordered* pair) — the reversed pair has margin ``−z`` and
``log σ(−z) = log σ(z) − z`` share ``log1p(e^{−|z|})``; pairs ``y⁺ = y⁻`` are included
(``log σ(0)`` for a finite member) — then one multiply-add per (segment between consecutive
sizes, ordered pair in it, with its count), ``ℓ_k(sizes[s]) = ℓ_k(sizes[s−1]) + Σ_{segment s}``,
so the cost stops growing with ``n`` once every distinct pair has been seen
(``_kernels.class_bt_loglik_stream``). Each size's pick is :func:`~genver._solve.finite_pick`'s
rule (lowest index among values within a relative ``1e-12`` of the best). The RL step of
:func:`rm_rl_path`, ``argmax_{π∈Π} J_β(π; r̂_n)``, runs once for all distinct ``r̂_n`` of the
path (one pass over the members of a finite ``Π``).

They return, for each ``n``, the result :func:`~genver.estimators.mle.dpo` /
:func:`~genver.estimators.mle.reward_mle` / :func:`~genver.estimators.mle.rm_rl` return on
``data.head(n)`` (same pick; objectives equal up to summation order and the ~1e-15 relative
error of the vectorised log-sigmoid); ``wall_time`` is the path's time divided by the number of
sizes. Given a run's :class:`~genver.runcache.RunCache` the paths of one stream share its
segments, its reward MLE path and the likelihood columns of nested classes of one lineage
(memo ``"stream_derived"``). Re-exported by :mod:`genver.estimators.mle`.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from .. import _kernels
from .._solve import finite_pick
from .._validation import check_beta
from ..policy import Policy
from ..preferences import Preferences, pair_keys
from ..runcache import RunCache, cache_key
from . import finite
from .base import FitResult, rl_fit

__all__ = ["dpo_path", "reward_mle_path", "rm_rl_path"]


def _stream(data: Preferences, sizes, cache: RunCache | None = None):
    """The stream's unique *unordered* pairs and its segments between consecutive sizes.

    Returns ``(pos, neg, (seg_idx, seg_cnt, seg_ptr), sizes)``: unordered pair ``u`` is
    ``(x, a ≤ b)`` with flat indices ``pos_u = x·T + a``, ``neg_u = x·T + b``; an ordered pair
    of the stream is entry ``u`` when ``a ≻ b`` and ``U + u`` when ``b ≻ a``. Segment ``s`` holds
    the ordered pairs first seen or repeated between ``sizes[s−1]`` and ``sizes[s]`` (in the
    order of their ordered keys) with their counts (see ``_kernels.class_bt_loglik_stream``).
    Given a run's ``cache`` the paths of one stream share them (see :func:`_derived`)."""
    if not isinstance(data, Preferences):
        raise ValueError(f"data must be Preferences (a pair stream), got {type(data).__name__}")
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or (np.diff(sizes) <= 0).any() or sizes[0] < 1:
        raise ValueError(f"sizes must be a non-empty increasing list of positive integers, got {sizes.tolist()}")
    if sizes[-1] > len(data):
        raise ValueError(f"sizes: {int(sizes[-1])} exceeds the {len(data)} pairs of the stream")
    return _segments(data, sizes, cache)


def _segments(data: Preferences, sizes: np.ndarray, cache: RunCache | None = None):
    """:func:`_stream` for validated ``sizes``, memoised in ``cache``."""
    if pair_keys(data, 0, 0) is None:
        T = data.space.T
        raise ValueError(f"nested sizes: P·T² = {data.space.P * T * T} ordered pairs overflow the int64 keys")
    return _derived(data, ("segments", sizes), lambda: _segments_of(data, sizes), cache)


def _segments_of(data: Preferences, sizes: np.ndarray):
    # per segment between consecutive sizes (pair i is in segment s when sizes[s−1] ≤ i < sizes[s]):
    # its unique ordered keys (sorted) and counts, one sort per segment; the stream's unique keys
    # are their union (no sort of the whole stream, no inverse index of length n)
    T = data.space.T
    bounds = np.concatenate([[0], sizes])
    seg_keys, seg_cnt = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        keys = pair_keys(data, int(lo), int(hi))
        assert keys is not None  # _segments checked that the keys fit in int64
        k, c = np.unique(keys, return_counts=True)
        seg_keys.append(k)
        seg_cnt.append(c)
    uniq = np.unique(np.concatenate(seg_keys))
    x, a, b = uniq // (T * T), (uniq // T) % T, uniq % T
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    upair, uinv = np.unique((x * T + lo) * T + hi, return_inverse=True)
    U = upair.size
    entry = uinv.ravel() + np.where(a <= b, 0, U)  # ordered unique pair -> entry in [0, 2U)
    pos = (upair // T).astype(np.int64)  # x·T + a
    neg = ((upair // (T * T)) * T + upair % T).astype(np.int64)  # x·T + b
    ptr = np.concatenate([[0], np.cumsum([k.size for k in seg_keys])]).astype(np.int64)
    segments = (entry[np.searchsorted(uniq, np.concatenate(seg_keys))].astype(np.int64),
                np.concatenate(seg_cnt).astype(np.float64), ptr)
    return (pos, neg, segments, sizes)


_STREAM_TOKENS = itertools.count()


def _stream_token(data: Preferences) -> int | None:
    """A token naming ``data`` for as long as it lives, or None when its arrays are writeable
    (values derived from it could go stale)."""
    if data.x.flags.writeable or data.y_pos.flags.writeable or data.y_neg.flags.writeable:
        return None
    tok = data.__dict__.get("_token")
    if tok is None:
        tok = next(_STREAM_TOKENS)
        object.__setattr__(data, "_token", tok)  # a frozen dataclass: a private slot
    return tok


def _stream_id(data: Preferences) -> tuple:
    """What names a stream in a cache key: its token while its arrays are read-only (a sweep's
    streams, ``genver.experiments.cells``: no pass over the pairs), else the pairs themselves."""
    tok = _stream_token(data)
    return ("stream token", tok) if tok is not None else ("stream pairs", data.x, data.y_pos, data.y_neg)


def _derived(data: Preferences, key: tuple, make, cache: RunCache | None):
    """``make()``, a function of the stream ``data`` (and ``key``), memoised in a run's
    ``cache`` (memo ``"stream_derived"``): a sweep's settings share one read-only stream per seed
    (``genver.experiments.cells``) and derive its segments, the reward MLE path and the
    likelihood paths of nested classes once. Without a cache it is computed afresh."""
    if cache is None:
        return make()
    return cache.get_or_make("stream_derived", cache_key(_stream_id(data), *key), make)


def _class_path(fin: finite.FinitePolicyClass, data: Preferences, pos, neg, offset, segments, sizes, scale,
                cache: RunCache | None = None):
    """:func:`_path` over the members of ``fin``; given a run's ``cache``, for a class of a
    lineage (its members the first ``K`` of a sequence shared by nested classes,
    ``FinitePolicyClass.lineage``) the columns of members already computed for a class of the
    same lineage on the same stream are reused and only the new members' columns computed (each
    member's column is computed alone by the kernel, so the values are the same bits)."""
    scores = fin.logp.reshape(fin.size, -1)
    if fin.lineage is None or cache is None:
        return _path(scores, pos, neg, offset, segments, sizes, scale)
    key = cache_key(_stream_id(data), "lineage_path", sizes, fin.lineage[0], offset, float(scale))
    have = cache.get("stream_derived", key)
    K, Kc = fin.size, 0 if have is None else have.shape[1]
    if Kc >= K:
        return have[:, :K]
    new = _path(scores[Kc:], pos, neg, offset, segments, sizes, scale)
    ll = new if have is None else np.concatenate([have, new], axis=1)
    ll.setflags(write=False)
    now = cache.get("stream_derived", key)
    if now is None or now.shape[1] < K:  # the longer path replaces the shorter
        cache.put("stream_derived", key, ll, ll.nbytes)
    return ll


def _pick_rows(ll: np.ndarray, members: np.ndarray):
    """:func:`finite_pick` of every row of ``ll`` (S, K): the same rule, the maxima and tie
    sets of all rows at once (``finite_pick`` itself runs only for rows with ties)."""
    from .._solve import TIE_RTOL
    vmax = ll.max(axis=1)
    with np.errstate(invalid="ignore"):  # −∞ − (−∞)
        ties = ll >= (vmax - TIE_RTOL * np.maximum(1.0, np.abs(vmax)))[:, None]
    ties[vmax == -np.inf] = True
    n_max = ties.sum(axis=1)
    first = ties.argmax(axis=1)
    return [(int(first[s]), False, 1) if n_max[s] == 1 else finite_pick(ll[s], members) for s in range(ll.shape[0])]


def _path(scores, pos, neg, offset, segments, sizes, scale):
    out = np.empty((sizes.size, scores.shape[0]))
    seg_idx, seg_cnt, seg_ptr = segments
    _kernels.class_bt_loglik_stream(np.ascontiguousarray(scores, dtype=np.float64), pos, neg,
                                    np.ascontiguousarray(offset, dtype=np.float64), seg_idx, seg_cnt, seg_ptr,
                                    float(scale), out)
    out[np.isnan(out)] = -np.inf  # as in dpo(): a member with π(y⁺) = π(y⁻) = 0 cannot explain the pair
    return out


def dpo_path(data: Preferences, sizes, policy_class, ref: Policy, beta: float, *,
             cache: RunCache | None = None) -> list[FitResult]:
    """:func:`~genver.estimators.mle.dpo` over a finite class on every prefix ``data.head(n)``,
    ``n`` in ``sizes``.

    Parameters
    ----------
    data : Preferences
        The pair stream.
    sizes : array_like of int
        Increasing prefix lengths ``n``, each ``≤ len(data)``.
    policy_class : PolicyClass
        A finite class, or ``Π(R)`` of a finite ``R``.
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    cache : RunCache or None
        A run's :class:`~genver.runcache.RunCache` for what the stream's other paths and nested
        classes share; ``None``: computed afresh.

    Returns
    -------
    list of FitResult
        One fit per size, in order (the same picks as :func:`~genver.estimators.mle.dpo` on each prefix).
    """
    t0 = time.perf_counter()
    beta = check_beta(beta)
    fin = policy_class.as_finite()
    if fin is None:
        raise ValueError("dpo_path needs a finite policy class (or Π(R) of a finite R)")
    pos, neg, segments, sizes = _stream(data, sizes, cache)
    lr = ref.logp.ravel()
    if not (np.isfinite(lr[pos]).all() and np.isfinite(lr[neg]).all()):
        raise ValueError("ref must give positive probability to every completion in the data")
    ll = _class_path(fin, data, pos, neg, -beta * (lr[pos] - lr[neg]), segments, sizes, beta, cache)
    rk = fin is not policy_class  # Π(R) of a finite R: member k is π*_{r_k}
    wall = (time.perf_counter() - t0) / sizes.size
    out, members = [], {}
    for row, (k, set_valued, n_max) in zip(ll, _pick_rows(ll, fin.logp)):
        if k not in members:  # one Policy object per picked member
            members[k] = fin.member(k)
        out.append(FitResult("dpo", float(row[k]), policy=members[k], policy_index=k,
                             reward_index=k if rk else None, set_valued=set_valued, wall_time=wall,
                             extra={"n_maximisers": n_max}))
    return out


def reward_mle_path(data: Preferences, sizes, reward_class, *, cache: RunCache | None = None) -> list[FitResult]:
    """:func:`~genver.estimators.mle.reward_mle` over a finite class on every prefix ``data.head(n)``.

    Parameters
    ----------
    data : Preferences
        The pair stream.
    sizes : array_like of int
        Increasing prefix lengths ``n``, each ``≤ len(data)``.
    reward_class : FiniteRewardClass
        A finite reward class.
    cache : RunCache or None
        A run's :class:`~genver.runcache.RunCache`; ``None``: computed afresh, nothing kept.

    Returns
    -------
    list of FitResult
        One fit per size, in order.
    """
    t0 = time.perf_counter()
    if reward_class.as_finite() is None:
        raise ValueError("reward_mle_path needs a finite reward class")
    pos, neg, segments, sizes = _stream(data, sizes, cache)
    K = reward_class.size

    def fit():
        ll = _path(reward_class.tables.reshape(K, -1), pos, neg, np.zeros(pos.size), segments, sizes, 1.0)
        return ll, _pick_rows(ll, reward_class.tables)

    ll, picks = _derived(data, ("reward_mle_path", sizes, reward_class.tables), fit, cache)
    wall = (time.perf_counter() - t0) / sizes.size
    out = []
    for row, (k, set_valued, n_max) in zip(ll, picks):
        out.append(FitResult("reward_mle", float(row[k]), reward=reward_class.tables[k], reward_index=k,
                             set_valued=set_valued, wall_time=wall, extra={"n_maximisers": n_max}))
    return out


def rm_rl_path(data: Preferences, sizes, reward_class, policy_class, ref: Policy, beta: float, *,
               prompt_weights=None, cache: RunCache | None = None) -> list[FitResult]:
    """:func:`~genver.estimators.mle.rm_rl` with a finite ``R`` on every prefix; the RL step runs once per distinct
    ``r̂``.

    Parameters
    ----------
    data : Preferences
        The pair stream.
    sizes : array_like of int
        Increasing prefix lengths ``n``, each ``≤ len(data)``.
    reward_class : FiniteRewardClass
        A finite reward class.
    policy_class : PolicyClass
        The policy class ``Π`` (finite, soft-optimal, tabular or log-linear).
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    prompt_weights : array_like or None
        ``ρ``, shape ``(P,)``; ``None``: uniform.
    cache : RunCache or None
        A run's :class:`~genver.runcache.RunCache`; ``None``: computed afresh, nothing kept.

    Returns
    -------
    list of FitResult
        One fit per size, in order.
    """
    t0 = time.perf_counter()
    rms = reward_mle_path(data, sizes, reward_class, cache=cache)
    need = list(dict.fromkeys(rm.reward_index for rm in rms))
    t1 = time.perf_counter()  # J_β against every distinct r̂ in one pass (finite Π), else one RL step each
    many = policy_class.rl_argmax_many([reward_class.tables[j] for j in need], ref, beta, prompt_weights, cache=cache)
    wall = (time.perf_counter() - t1) / len(need)
    rl_cache = {j: rl_fit(res, reward_class.tables[j], wall) for j, res in zip(need, many)}
    out = []
    for rm in rms:
        rl = rl_cache[rm.reward_index]
        out.append(FitResult("rm_rl", rm.objective, policy=rl.policy, reward=rm.reward,
                             policy_index=rl.policy_index, reward_index=rm.reward_index, params=rl.params,
                             converged=rl.converged, iterations=rl.iterations, grad_norm=rl.grad_norm,
                             set_valued=rm.set_valued, extra={"rl_objective": rl.objective,
                                                              "residual_kl": rl.extra["residual_kl"], **rm.extra}))
    wall = (time.perf_counter() - t0) / len(out)
    for r in out:
        r.wall_time = wall
    return out
