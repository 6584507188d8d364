r"""Best-of-N sampling, exactly.

For a base policy ``π_0`` and a reward ``r``, best-of-N draws ``N`` i.i.d. completions
``y_1..y_N ~ π_0(·|x)`` and returns one with the largest reward, **ties broken uniformly at
random among the tied draws**. Its exact distribution, per prompt: with
``F(v) = P_{π_0}(r ≤ v)`` and ``F(v⁻) = P_{π_0}(r < v)``, the reward level ``v`` receives mass
``F(v)^N − F(v⁻)^N``, split among the completions of that level in proportion to their base
mass (by symmetry of the tie-breaking). Completions with zero base mass keep zero mass.

Computed in log space: with ``m_v`` the base mass of level ``v``,
``log(F(v)^N − F(v⁻)^N) = N log F(v) + log(1 − (1 − m_v/F(v))^N)``, the last term evaluated
stably (``log1mexp`` and a series once ``m_v/F(v)`` underflows), so a completion with tiny
positive base mass keeps a positive, accurate mass.

:func:`best_of_n_kl_bound` is the analytical ``log N − (N − 1)/N``: exact for continuous
(atomless, tie-free) reward distributions and an upper bound on ``KL(π_BoN ‖ π_0)`` in general
(uniform tie-breaking is a reward-ordered argmax over ``(r(y), U)`` with independent uniforms
``U``, whose KL equals the bound; dropping ``U`` can only decrease KL).
"""
from __future__ import annotations

import numpy as np

from .._validation import check_positive_int
from ..policy import Policy
from ..softrl import kl_rows
from .base import FitResult, timed

__all__ = ["best_of_n", "best_of_n_kl_bound"]


def _log1mexp(a: np.ndarray) -> np.ndarray:
    """``log(1 − e^a)`` for ``a ≤ 0`` (``−inf`` at ``a = 0``, ``0`` at ``a = −inf``)."""
    a = np.asarray(a, dtype=np.float64)
    out = np.empty_like(a)
    near = a > -np.log(2.0)
    with np.errstate(divide="ignore"):
        out[near] = np.log(-np.expm1(a[near]))
        out[~near] = np.log1p(-np.exp(a[~near]))
    return out


def _log_one_minus_pow(d: np.ndarray, N: int) -> np.ndarray:
    """``log(1 − (1 − e^d)^N)`` for ``d ≤ 0``, accurate when ``e^d`` underflows: with
    ``b = log(−N log(1 − e^d))`` it is ``log1mexp(−e^b)``, and ``b − e^b/2`` once ``b < −30``
    (``log(1 − e^d) ≈ −e^d``, so ``b ≈ log N + d`` for very negative ``d``)."""
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(divide="ignore"):
        L = np.where(d < -20.0, d + 0.5 * np.exp(np.minimum(d, 0.0)), np.log(-_log1mexp(np.maximum(d, -20.0))))
    b = np.log(N) + L
    with np.errstate(over="ignore", invalid="ignore"):
        eb = np.exp(b)
        return np.where(b < -30.0, b - 0.5 * eb, _log1mexp(-eb))


def best_of_n_kl_bound(N: int) -> float:
    """``log N − (N − 1)/N``: the KL of best-of-N from its base for tie-free rewards, and an
    upper bound otherwise.

    Parameters
    ----------
    N : int
        The number of draws, ``≥ 1``.

    Returns
    -------
    float
        The bound (0 at ``N = 1``).
    """
    N = check_positive_int(N, "N")
    return float(np.log(N) - (N - 1) / N)


def _bon_row(lp: np.ndarray, r: np.ndarray, N: int) -> np.ndarray:
    out = np.full(lp.shape, -np.inf)
    supp = np.flatnonzero(np.isfinite(lp))
    vals, inv = np.unique(r[supp], return_inverse=True)  # levels in increasing reward
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(vals.size))
    logm = np.logaddexp.reduceat(lp[supp][order], starts)  # log base mass of each level
    logF = np.logaddexp.accumulate(logm)  # log F(v), unnormalised
    # log(F^N − F⁻^N) = N log F + log(1 − (1 − m/F)^N)
    level = N * (logF - logF[-1]) + _log_one_minus_pow(np.minimum(logm - logF, 0.0), N)
    out[supp] = lp[supp] - logm[inv] + level[inv]
    return out


@timed
def best_of_n(base: Policy, reward, N: int) -> FitResult:
    """Exact distribution of best-of-``N`` sampling from ``base`` under ``reward`` (P, T).

    Parameters
    ----------
    base : Policy
        The base policy ``π_0``.
    reward : array_like
        The reward ``r``, shape ``(P, T)``.
    N : int
        The number of draws, ``≥ 1``.

    Returns
    -------
    FitResult
        ``policy`` = ``π_BoN``, ``objective`` = its expected reward (prompts uniform), and
        ``extra``: ``N``, ``kl`` (uniform-prompt mean of ``KL(π_BoN ‖ base)``),
        ``kl_per_prompt`` and ``kl_bound`` (``log N − (N−1)/N``).
    """
    if not isinstance(base, Policy):
        raise ValueError(f"base must be a genver Policy, got {type(base).__name__}")
    sp = base.space
    r = sp.check_array("reward", reward)
    N = check_positive_int(N, "N")
    if N == 1:
        logp = base.logp.copy()
    else:
        logp = np.stack([_bon_row(base.logp[x], r[x], N) for x in range(sp.P)])
    pol = Policy(sp, logp, name="best-of-N log-probabilities")
    klp = kl_rows(pol.logp, base.logp)
    return FitResult("best_of_n", float(np.mean((pol.probs * r).sum(axis=1))), policy=pol, reward=r,
                     extra={"N": N, "kl": float(klp.mean()), "kl_per_prompt": klp,
                            "kl_bound": best_of_n_kl_bound(N)})
