r"""Optimisation residuals of trained networks: how far each route's own objective is from the
optimum of that objective over *all* policies (the tabular class), on the same data.

A neural row's statistical error (what genver measures) is confounded with its optimisation
error unless the second is known; on enumerable tasks it is, exactly:

==================  ============================================================================
RL (``rm_rl``,      ``J_β(π*_{r̂}; r̂) − J_β(π̂; r̂) = β E_x KL(π̂ ‖ π*_{r̂})`` (≥ 0), with ``r̂`` the
online DPO)         trained reward model enumerated as a table: the exact RL optimum is the
                    soft-optimal policy of ``r̂`` (the reverse-KL identity, ``docs/concepts.md``)
DPO                 ``(ℓ* − ℓ(π̂)) / Σ c``, ``ℓ(π) = Σ c log σ(β(Δ_π(y⁺) − Δ_π(y⁻)))`` the DPO
                    log-likelihood of the pairs and ``ℓ*`` its supremum over every full-support
                    policy (:func:`bt_supremum`: ``βΔ_π`` ranges over every reward table, so
                    ``ℓ*`` is the saturated Bradley–Terry supremum and does not depend on ``β``)
SFT                 ``(ℓ* − ℓ(π̂)) / Σ c`` with ``ℓ(π) = Σ c log π(y|x)`` and ``ℓ*`` its
                    supremum, the empirical conditionals: ``Σ c log(c_{x,y} / c_x)``
==================  ============================================================================

:func:`bt_supremum` — the supremum of ``Σ_e c_e log σ(f(a_e) − f(b_e))`` over all functions
``f`` of the completions, per prompt: decompose the directed graph "``a`` beat ``b``" into
strongly connected components. Between components every edge points the same way along a
topological order of the condensation, so scores that grow without bound along that order
send those terms to 0 (the supremum is not attained); inside a strongly connected component
the Bradley–Terry maximum likelihood exists and is finite (Zermelo 1929, Ford 1957) and is
solved by Newton's method. Pairs with ``y⁺ = y⁻`` contribute ``−log 2`` whatever ``f``.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..policy import Policy
from ..preferences import PairCounts

__all__ = ["bt_supremum", "dpo_residual", "sft_residual", "rl_residual"]


def _bt_component(a: np.ndarray, b: np.ndarray, c: np.ndarray, m: int) -> float:
    """Maximum of ``Σ c log σ(f_a − f_b)`` over ``f ∈ ℝ^m`` for a strongly connected pair graph
    (the maximum exists); ``f_0`` is fixed at 0 (the objective is shift-invariant)."""
    def full(z):
        return np.concatenate([[0.0], z])

    def neg(z):
        d = full(z)[a] - full(z)[b]
        ll = -(c * np.logaddexp(0.0, -d)).sum()
        s = c / (1.0 + np.exp(d))  # c σ(−d): derivative of c log σ(d)
        g = np.bincount(a, s, m) - np.bincount(b, s, m)
        return -ll, -g[1:]

    def hess(z):
        d = full(z)[a] - full(z)[b]
        w = c / (2.0 + 2.0 * np.cosh(d))  # c σ(d) σ(−d)
        L = np.zeros((m, m))
        np.add.at(L, (a, a), w)
        np.add.at(L, (b, b), w)
        np.add.at(L, (a, b), -w)
        np.add.at(L, (b, a), -w)
        return L[1:, 1:]

    if m == 1:
        return 0.0
    res = minimize(neg, np.zeros(m - 1), jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-10})
    return -float(res.fun)


def bt_supremum(data: PairCounts) -> float:
    """``sup_f Σ_i c_i log σ(f(x_i, y⁺_i) − f(x_i, y⁻_i))`` over every reward table ``f``
    (module docstring); a finite number ≤ 0.

    Parameters
    ----------
    data : PairCounts
        The preference triples with counts ``c``.

    Returns
    -------
    float
        The supremum of the Bradley–Terry log-likelihood (finite, ``≤ 0``).
    """
    total = 0.0
    same = data.y_pos == data.y_neg
    total -= np.log(2.0) * float(data.count[same].sum())
    for x in np.unique(data.x):
        k = (data.x == x) & ~same
        if not k.any():
            continue
        a, b, c = data.y_pos[k], data.y_neg[k], data.count[k]
        nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
        a, b = inv[: a.size], inv[a.size :]
        n = nodes.size
        g = coo_matrix((np.ones(a.size), (a, b)), shape=(n, n)).tocsr()
        n_comp, label = connected_components(g, directed=True, connection="strong")
        inside = label[a] == label[b]  # edges between components vanish in the supremum
        for comp in np.unique(label[a[inside]]):
            e = inside & (label[a] == comp)
            members = np.flatnonzero(label == comp)
            local = np.full(n, -1)
            local[members] = np.arange(members.size)
            total += _bt_component(local[a[e]], local[b[e]], c[e], members.size)
    return total


def dpo_residual(policy: Policy, data: PairCounts, ref: Policy, beta: float) -> float:
    """``(ℓ* − ℓ(π̂)) / Σ c`` for the DPO log-likelihood ``ℓ`` (module docstring), per pair.

    Parameters
    ----------
    policy : genver.policy.Policy
        The fitted policy ``π̂``.
    data : PairCounts
        The training pairs.
    ref : genver.policy.Policy
        The reference ``π_ref``.
    beta : float
        The KL strength β.

    Returns
    -------
    float
        The optimisation residual per pair (``≥ 0`` up to rounding).
    """
    from ..estimators.mle import dpo_tabular_objective

    obj = dpo_tabular_objective(data, ref, beta, 0.0)(policy.logp - ref.logp)[0]
    return (bt_supremum(data) - float(obj)) / float(data.count.sum())


def sft_residual(policy: Policy, x, y, weights) -> float:
    """``(ℓ* − ℓ(π̂)) / Σ c`` for the SFT log-likelihood of completions ``y`` at prompts ``x``
    with weights ``c`` (module docstring), per unit of weight.

    Parameters
    ----------
    policy : genver.policy.Policy
        The fitted policy ``π̂``.
    x, y : array_like of int, shape (B,)
        Prompt and completion indices of the demonstrations.
    weights : array_like of float, shape (B,)
        Their weights ``c``.

    Returns
    -------
    float
        The optimisation residual per unit of weight (``≥ 0`` up to rounding).
    """
    x, y, c = np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.int64), np.asarray(weights, dtype=np.float64)
    sp = policy.space
    cxy = np.zeros(sp.shape)
    np.add.at(cxy, (x, y), c)
    cx = cxy.sum(axis=1, keepdims=True)
    seen = cxy > 0
    sup = float((cxy[seen] * np.log((cxy / np.where(cx > 0, cx, 1.0))[seen])).sum())
    ll = float((c * policy.logp[x, y]).sum())
    return (sup - ll) / float(c.sum())


def rl_residual(policy: Policy, reward_table: np.ndarray, ref: Policy, beta: float, prompt_weights=None) -> float:
    """``J_β(π*_{r̂}; r̂) − J_β(π̂; r̂) = β E_x KL(π̂ ‖ π*_{r̂})`` (module docstring).

    Parameters
    ----------
    policy : genver.policy.Policy
        The fitted policy ``π̂``.
    reward_table : numpy.ndarray, shape (P, T)
        The reward ``r̂`` it was trained against.
    ref : genver.policy.Policy
        The reference ``π_ref``.
    beta : float
        The KL strength β.
    prompt_weights : array_like of float, shape (P,), or None
        The prompt distribution ρ (default uniform).

    Returns
    -------
    float
        The residual (``≥ 0``).
    """
    from ..metrics import suboptimality

    return suboptimality(policy, reward_table, ref, beta, prompt_weights)
