r"""Finite classes (``FinitePolicyClass``, ``FiniteRewardClass``): every estimator by exhaustive
enumeration of the members, registered as the finite solvers of :mod:`genver.estimators.solvers`
(``Π(R)`` of a finite ``R`` reaches them through :mod:`genver.estimators.soft_optimal`).

* Finite classes: exhaustive enumeration of every member's objective (numba kernel, one
  ``prange`` item per member); the first maximiser wins (lowest index); ``set_valued`` reports
  ties between members with different policies/rewards.
  Pairs: one Bradley–Terry log-likelihood per member, the vectorised kernel
  ``_kernels.class_bt_loglik`` (members tied after it recomputed term by term,
  :func:`finite_loglik_pick`); DPO's margins are ``β(log π_k(y⁺) − log π_k(y⁻)) −
  β(log π_ref(y⁺) − log π_ref(y⁻))``; IPO's squared residual ``(h_k − 1/(2τ))²`` is one gather.
  Demonstrations (SFT, MaxEnt IRL): ``Σ_y C(x, y) log π_k(y|x)`` in one gather, with
  ``π_k = π*_{r_k}`` for a reward member (see :mod:`genver.estimators.imitation`).
"""
from __future__ import annotations

import numpy as np

from .. import _kernels
from .._solve import finite_pick, tie_tolerance
from ..classes import FinitePolicyClass, FiniteRewardClass
from ..policy import Policy, logsumexp_rows
from ..preferences import PairCounts
from .base import FitResult
from .solvers import dpo_solver, flat_counts, ipo_solver, irl_solver, reward_mle_solver, sft_solver

__all__ = ["finite_loglik_pick", "pair_offsets", "dpo_members", "ipo_members", "sft_members"]


def finite_loglik_pick(scores: np.ndarray, members: np.ndarray, c: PairCounts, offset: np.ndarray, scale: float):
    """``(loglik_all, k, set_valued, n_maximisers)`` of a finite class: every member's
    Bradley–Terry log-likelihood by the vectorised kernel (absolute error ≤ 3e-16 a term), the
    pick of :func:`genver._solve.finite_pick`, and — where that leaves several members tied — the
    tied members recomputed with every term accurate relative to itself
    (``_kernels.class_bt_loglik_exact``) and picked again. So saturated members (log-likelihoods
    such as −1e-19, −1e-59, −1e-119, which the vectorised sum rounds to one 0) are told apart,
    while the common case costs nothing extra. A member with ``π(y⁺) = π(y⁻) = 0`` (NaN) scores
    ``−∞``: it cannot explain that pair.

    Parameters
    ----------
    scores : np.ndarray
        Each member's flat scores (log-probs or reward tables), shape ``(K, P·T)``.
    members : np.ndarray
        The members as compared for ties, shape ``(K, P, T)``.
    c : PairCounts
        The pair counts.
    offset : np.ndarray
        Per-pair margin offsets (:func:`pair_offsets`, or zeros), shape ``(n_unique,)``.
    scale : float
        The margin scale (``β`` for DPO, 1 for reward MLE).

    Returns
    -------
    tuple of (np.ndarray, int, bool, int)
        Every member's log-likelihood (shape ``(K,)``), the pick ``k``, whether the maximiser is
        a set of different policies, and the number of tied maximisers.
    """
    out = np.empty(scores.shape[0])
    _kernels.class_bt_loglik(scores, c.pos_flat, c.neg_flat, offset, c.count, scale, out)
    out[np.isnan(out)] = -np.inf
    k, set_valued, n_max = finite_pick(out, members)
    if n_max > 1 and np.isfinite(out[k]):
        vmax = float(out.max())
        ties = np.flatnonzero(out >= vmax - tie_tolerance(out, vmax))
        exact = np.empty(ties.size)
        _kernels.class_bt_loglik_exact(scores, ties, c.pos_flat, c.neg_flat, offset, c.count, float(scale), exact)
        exact[np.isnan(exact)] = -np.inf
        out = out.copy()
        out[ties] = exact
        k, set_valued, n_max = finite_pick(out, members)
    return out, k, set_valued, n_max


def pair_offsets(ref: Policy, c: PairCounts, beta: float) -> np.ndarray:
    """``−β (log π_ref(y⁺) − log π_ref(y⁻))`` per pair: DPO's margin offsets.

    Parameters
    ----------
    ref : Policy
        The reference ``π_ref``.
    c : PairCounts
        The pair counts.
    beta : float
        The KL weight ``β``.

    Returns
    -------
    np.ndarray
        The offsets, one per unique pair.
    """
    lr = ref.logp.ravel()
    return -beta * (lr[c.pos_flat] - lr[c.neg_flat])


def dpo_members(fin: FinitePolicyClass, c: PairCounts, ref: Policy, beta: float, *,
                reward_indexed: bool = False) -> FitResult:
    """DPO over the members of ``fin``.

    Parameters
    ----------
    fin : FinitePolicyClass
        The members.
    c : PairCounts
        The pair counts.
    ref : Policy
        The reference ``π_ref`` (positive on every completion of the data).
    beta : float
        The KL weight ``β``.
    reward_indexed : bool
        Member ``k`` is ``π*_{r_k}`` (``Π(R)``), so the pick is also reported as ``reward_index``.

    Returns
    -------
    FitResult
        The picked member, its log-likelihood and ``extra["loglik_all"]`` of every member.
    """
    if not (np.isfinite(ref.logp.ravel()[c.pos_flat]).all() and np.isfinite(ref.logp.ravel()[c.neg_flat]).all()):
        raise ValueError("ref must give positive probability to every completion in the data")
    out, k, set_valued, n_max = finite_loglik_pick(fin.logp.reshape(fin.size, -1), fin.logp, c,
                                                   pair_offsets(ref, c, beta), beta)
    return FitResult("dpo", float(out[k]), policy=fin.member(k), policy_index=k,
                     reward_index=k if reward_indexed else None, set_valued=set_valued,
                     extra={"n_maximisers": n_max, "loglik_all": out})


def ipo_members(fin: FinitePolicyClass, c: PairCounts, ref: Policy, scale: float, target: float,
                average: str) -> FitResult:
    """IPO over the members of ``fin``: the least-squares loss of every member, one gather.

    Parameters
    ----------
    fin : FinitePolicyClass
        The members.
    c : PairCounts
        The pair counts.
    ref : Policy
        The reference ``π_ref``.
    scale : float
        The log-ratio scale (1, or ``1/H`` for token-averaged IPO).
    target : float
        The margin target ``1/(2τ)``.
    average : str
        ``"sequence"`` or ``"token"`` (reported in ``extra``).

    Returns
    -------
    FitResult
        The picked member, ``objective`` = minus its loss.
    """
    lr = ref.logp.ravel()
    h = scale * ((fin.logp.reshape(fin.size, -1)[:, c.pos_flat] - lr[c.pos_flat])
                 - (fin.logp.reshape(fin.size, -1)[:, c.neg_flat] - lr[c.neg_flat]))
    loss = ((h - target) ** 2) @ c.count
    k, set_valued, n_max = finite_pick(-loss, fin.logp)
    return FitResult("ipo", -float(loss[k]), policy=fin.member(k), policy_index=k, set_valued=set_valued,
                     extra={"n_maximisers": n_max, "average": average})


def sft_members(fin: FinitePolicyClass, C: np.ndarray) -> FitResult:
    """SFT over the members of ``fin``: ``Σ_y C(x, y) log π_k(y|x)`` of every member.

    Parameters
    ----------
    fin : FinitePolicyClass
        The members.
    C : np.ndarray
        Demonstration counts ``C(x, y)``, shape ``(P, T)``.

    Returns
    -------
    FitResult
        The picked member, its log-likelihood and ``extra["loglik_all"]``.
    """
    idx, cnt = flat_counts(C)
    ll = fin.logp.reshape(fin.size, -1)[:, idx] @ cnt if idx.size else np.zeros(fin.size)
    k, set_valued, n_max = finite_pick(ll, fin.logp)
    return FitResult("sft", float(ll[k]), policy=fin.member(k), policy_index=k, set_valued=set_valued,
                     extra={"n_maximisers": n_max, "loglik_all": ll})


@dpo_solver.register(FinitePolicyClass)
def _dpo(policy_class, c, ref, beta, l2):
    return dpo_members(policy_class, c, ref, beta)


@ipo_solver.register(FinitePolicyClass)
def _ipo(policy_class, c, ref, scale, target, l2, average):
    return ipo_members(policy_class, c, ref, scale, target, average)


@reward_mle_solver.register(FiniteRewardClass)
def _reward_mle(reward_class, c, l2):
    out, k, set_valued, n_max = finite_loglik_pick(reward_class.tables.reshape(reward_class.size, -1),
                                                   reward_class.tables, c, np.zeros(c.count.size), 1.0)
    return FitResult("reward_mle", float(out[k]), reward=reward_class.tables[k], reward_index=k,
                     set_valued=set_valued, extra={"n_maximisers": n_max, "loglik_all": out})


@sft_solver.register(FinitePolicyClass)
def _sft(policy_class, C, n, ref, beta, l2):
    return sft_members(policy_class, C)


@irl_solver.register(FiniteRewardClass)
def _irl(reward_class, C, n, ref, beta, l2):
    sp = reward_class.space
    K = reward_class.size
    s = ref.logp[None] + reward_class.tables / beta  # (K, P, T)
    logp_all = s - logsumexp_rows(s)[..., None]
    idx, cnt = flat_counts(C)
    ll = logp_all.reshape(K, -1)[:, idx] @ cnt if idx.size else np.zeros(K)
    k, set_valued, n_max = finite_pick(ll, logp_all)
    return FitResult("maxent_irl", float(ll[k]), policy=Policy(sp, np.ascontiguousarray(logp_all[k])),
                     reward=reward_class.tables[k], reward_index=k, set_valued=set_valued,
                     extra={"n_maximisers": n_max, "loglik_all": ll})
