r"""The two routes of preference fine-tuning, each solved to its global optimum.

Notation as in ``paper-notes.md`` §2, with ``(x_i, y_i⁺, y_i⁻)`` the ``N`` pairs (used only
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
For finite classes, :func:`dpo_path`, :func:`reward_mle_path` and :func:`rm_rl_path` fit every
prefix ``data.head(n)`` of one pair stream at once: one log-sigmoid per (member, unique
*unordered* pair) — the reversed pair has margin ``−z`` and ``log σ(−z) = log σ(z) − z`` share
``log1p(e^{−|z|})``; pairs ``y⁺ = y⁻`` are included (``log σ(0)`` for a finite member) — then one
multiply-add per (segment between sizes, ordered pair in it), so the cost stops growing with
``n`` once every distinct pair has been seen (``_kernels.class_bt_loglik_stream``); the RL step
runs once for all distinct ``r̂`` of the path (one pass over the members). They return, for each
``n``, the result :func:`dpo` / :func:`reward_mle` / :func:`rm_rl` return on ``data.head(n)``
(same pick; objectives equal up to summation order and the ~1e-15 relative error of the
vectorised log-sigmoid); ``wall_time`` is the path's time divided by the number of sizes.

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

import itertools
import time

import numpy as np

from .. import _kernels
from .._solve import finite_pick
from .._validation import check_beta
from ..policy import Policy
from ..preferences import Preferences, pair_keys
from ..runcache import RunCache, cache_key
from . import finite, linear, soft_optimal, tabular  # noqa: F401  (the class families register their solvers)
from .base import DEFAULT_L2, FitResult, as_counts, check_ref, timed
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
def rl_fit(res, reward, wall_time: float = 0.0) -> FitResult:
    """The :class:`FitResult` of an RL step from the class's :class:`~genver.classes.RLResult`
    (``converged``: exact, or the optimiser's gradient norm ≤ 1e-6).

    Parameters
    ----------
    res : RLResult
        The class's RL result.
    reward : array_like
        The reward the step maximised against, shape ``(P, T)``.
    wall_time : float
        Seconds to report.

    Returns
    -------
    FitResult
        ``estimator = "rl_step"``, ``extra["residual_kl"]``.
    """
    return FitResult("rl_step", res.objective, policy=res.policy, reward=np.asarray(reward),
                     policy_index=res.index, params=res.params, iterations=res.iterations,
                     converged=res.params is None or res.grad_norm <= 1e-6,
                     grad_norm=res.grad_norm, wall_time=wall_time, extra={"residual_kl": res.residual_kl})


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


# -- nested sample sizes --------------------------------------------------------------------
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
    """:func:`dpo` over a finite class on every prefix ``data.head(n)``, ``n`` in ``sizes``.

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
        One fit per size, in order (the same picks as :func:`dpo` on each prefix).
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
    """:func:`reward_mle` over a finite class on every prefix ``data.head(n)``.

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
    """:func:`rm_rl` with a finite ``R`` on every prefix; the RL step runs once per distinct
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
