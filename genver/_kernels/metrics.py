r"""Exact policy metrics by enumeration of the completions (private).

Math
----
* Win rate over grouped values: ``Σ_{i,j} a_i b_j σ(u_i − w_j)`` per prompt.
* ``J_β(π_k; r) = Σ_x ρ_x (Σ_y π_k(y|x) r(x, y) − β KL(π_k(·|x) ‖ π_ref(·|x)))`` over a finite
  class: the probabilities and KL terms do not depend on ``r`` and are computed once per (class,
  reference).
* Policy rows (:func:`_policy_row`): ``KL(p‖q) = Σ_{p>0} p (log p − log q)`` (``+∞`` if some
  ``p > 0 = q``) and ``Σ_y p r`` in one pass, pairwise-summed as numpy's ``sum``.
* Level masses ``a_i = Σ_{y: level(y) = i} w_y`` in completion order (:func:`level_mass_add`, as
  ``np.bincount``); each completion's level by a branch-free binary search (:func:`level_index`);
  groups of equal codes numbered by first appearance (:func:`first_appearance_groups`).
* Token conditionals ``log π(a|s) = M(s·a) − M(s)`` from the prefix marginals
  ``M(s) = log Σ_a e^{M(s·a)}``, bottom-up per prompt.

The dispatchers (``grouped_win_rate``, ``policy_row_stats``, ``token_conditionals``) are in
``genver._kernels``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .base import FASTMATH, FASTMATH_ORDERED, FASTMATH_POLY, sigmoid
from .poly import exp_block


@njit(cache=True, nogil=True, fastmath=FASTMATH_ORDERED)
def _grouped_win_rate_prompt(p, vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out):
    s = 0.0
    for i in range(starts_a[p], starts_a[p + 1]):
        inner = 0.0
        for j in range(starts_b[p], starts_b[p + 1]):
            inner += mass_b[j] * sigmoid(vals_a[i] - vals_b[j])
        s += mass_a[i] * inner
    out[p] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)
def _grouped_win_rate_par(vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out):
    for p in prange(out.shape[0]):
        _grouped_win_rate_prompt(p, vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _grouped_win_rate_ser(vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out):
    for p in range(out.shape[0]):
        _grouped_win_rate_prompt(p, vals_a, mass_a, vals_b, mass_b, starts_a, starts_b, out)


# -- RL step over a finite policy class -------------------------------------------------------
# The three kernels below are serial: on 2 cores their parallel versions were no faster
# (1-3 ms for 16,388 members, memory- and exp-bound) and cost ~1 s of compilation each.


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def finite_rl_parts(logp, ref_logp, probs_out, kl_out):
    """logp (K, P, T) members' sequence log-probs, ref_logp (P, T): probs_out = e^{logp}
    (:func:`exp_block`) and kl_out (K, P) = KL(π_k(·|x) ‖ π_ref(·|x)) with the conventions of
    ``softrl.kl_rows``: the support of π_k is read from ``logp > −∞``; +∞ where π_k has mass
    where π_ref has none; a value within ``8·eps·Σ_y p(|log p| + |log q|)`` of 0 is exactly 0.
    These are the reward-independent parts of ``J_β(π_k; r) = Σ_x ρ_x (Σ_y π_k r − β KL_k(x))``."""
    K, P, T = logp.shape
    PT = P * T
    eps8 = 8.0 * 2.220446049250313e-16
    CH = 4096  # exp in long vectorised runs over the flat array
    b1 = np.empty(CH, np.int64)
    b2 = np.empty(CH, np.int64)
    lpf = logp.ravel()
    prf = probs_out.ravel()
    for j0 in range(0, K * PT, CH):
        m = min(CH, K * PT - j0)
        exp_block(lpf[j0 : j0 + m], prf[j0 : j0 + m], b1[:m], b2[:m])
    for k in range(K):
        for x in range(P):
            s = 0.0
            scale = 0.0
            n_inf = 0
            for y in range(T):
                a = logp[k, x, y]
                q = ref_logp[x, y]
                p = probs_out[k, x, y]
                supp = a > -np.inf
                both = supp and q > -np.inf
                s += p * (a - q) if both else 0.0
                scale += p * (abs(a) + abs(q)) if both else 0.0
                n_inf += 1 if supp and not both else 0
            if n_inf > 0:
                kl_out[k, x] = np.inf
            elif abs(s) <= eps8 * scale:
                kl_out[k, x] = 0.0
            else:
                kl_out[k, x] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def finite_J(probs, kl, rewards, beta, rho, out):
    """out (m, K): ``out[j, k] = Σ_{x: ρ_x > 0} ρ_x (Σ_y probs[k, x, y] rewards[j, x, y] − β kl[k, x])``
    for m rewards at once (each member's probabilities are read once; prompts with ρ_x = 0 are
    skipped, so ``0·∞`` never gives NaN; rewards are finite)."""
    K, P, T = probs.shape
    m = rewards.shape[0]
    for k in range(K):
        for j in range(m):
            J = 0.0
            for x in range(P):
                if rho[x] == 0.0:
                    continue
                e = 0.0
                for y in range(T):
                    e += probs[k, x, y] * rewards[j, x, y]
                J += rho[x] * (e - beta * kl[k, x])
            out[j, k] = J


# -- exact policy metrics over completions ---------------------------------------------------
_PW_LEAF = 128  # pairwise summation: leaves of 128 terms (8 running sums each), as numpy's


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _leaf_sum8(x, m):
    """Σ x[:m] with 8 running sums then ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)), tail serial
    (numpy's pairwise leaf)."""
    if m < 8:
        s = 0.0
        for i in range(m):
            s += x[i]
        return s
    acc = np.empty(8)
    for lane in range(8):
        acc[lane] = x[lane]
    m8 = m - m % 8
    for i in range(8, m8, 8):
        for lane in range(8):
            acc[lane] += x[i + lane]
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    for i in range(m8, m):
        s += x[i]
    return s


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _policy_row(lp, lq, r, with_r, w):
    """One row of :func:`policy_row_stats`: returns (Σ p(log p − log q), Σ p(|log p| + |log q|),
    number of y with p > 0 = q, Σ p r) over the support of p (``lp > −∞``) where q > 0."""
    T = lp.shape[0]
    L = _PW_LEAF
    p = w[0]
    tk = w[1]
    ts = w[2]
    tr = w[3]
    b1 = w[4].view(np.int64)
    b2 = w[5].view(np.int64)
    stack = np.empty((3, 64))
    level = np.empty(64, np.int64)
    top = 0
    n_inf = 0
    for i0 in range(0, T, L):
        m = min(L, T - i0)
        lps = lp[i0 : i0 + m]
        lqs = lq[i0 : i0 + m]
        exp_block(lps, p[:m], b1[:m], b2[:m])
        for i in range(m):
            a = lps[i]
            q = lqs[i]
            supp = a > -np.inf
            both = supp and q > -np.inf
            tk[i] = p[i] * (a - q) if both else 0.0
            ts[i] = p[i] * (abs(a) + abs(q)) if both else 0.0
            n_inf += 1 if supp and not both else 0
        s0 = _leaf_sum8(tk, m)
        s1 = _leaf_sum8(ts, m)
        s2 = 0.0
        if with_r:
            rs = r[i0 : i0 + m]
            for i in range(m):
                tr[i] = p[i] * rs[i]
            s2 = _leaf_sum8(tr, m)
        lvl = 0
        while top > 0 and level[top - 1] == lvl:  # pairwise: merge equal-sized partial sums
            top -= 1
            s0 = stack[0, top] + s0
            s1 = stack[1, top] + s1
            s2 = stack[2, top] + s2
            lvl += 1
        stack[0, top] = s0
        stack[1, top] = s1
        stack[2, top] = s2
        level[top] = lvl
        top += 1
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    for k in range(top - 1, -1, -1):
        s0 = stack[0, k] + s0
        s1 = stack[1, k] + s1
        s2 = stack[2, k] + s2
    return s0, s1, n_inf, s2


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _policy_rows_item(i, lp, lq, r, with_r, kl_out, er_out):
    w = np.empty((6, _PW_LEAF))
    s, scale, n_inf, er = _policy_row(lp[i], lq[i % lq.shape[0]], r[i % r.shape[0]], with_r, w)
    if n_inf > 0:
        kl_out[i] = np.inf
    elif abs(s) <= 8.0 * 2.220446049250313e-16 * scale:
        kl_out[i] = 0.0
    else:
        kl_out[i] = s
    er_out[i] = er


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", parallel=True)
def _policy_rows_par(lp, lq, r, with_r, kl_out, er_out):
    for i in prange(lp.shape[0]):
        _policy_rows_item(i, lp, lq, r, with_r, kl_out, er_out)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _policy_rows_ser(lp, lq, r, with_r, kl_out, er_out):
    for i in range(lp.shape[0]):
        _policy_rows_item(i, lp, lq, r, with_r, kl_out, er_out)


@njit(cache=True, nogil=True)
def level_mass_add(level, w, mass):
    """``mass[level[i]] += w[i]`` for ``i`` in order (``np.bincount(level, weights=w)`` added
    into ``mass``, the same bits: each level's terms are summed in index order)."""
    for i in range(level.shape[0]):
        mass[level[i]] += w[i]


@njit(cache=True, nogil=True)
def first_appearance_groups(code, n_codes, gid_out):
    """Groups of equal ``code[y] ∈ [0, n_codes)`` numbered in order of first appearance:
    ``gid_out[y]`` = the group of ``y``; returns each group's first ``y`` (one pass, a table of
    ``n_codes`` entries)."""
    rank = np.full(n_codes, -1, np.int64)
    first = np.empty(min(n_codes, code.shape[0]), np.int64)
    n = 0
    for y in range(code.shape[0]):
        c = code[y]
        g = rank[c]
        if g < 0:
            g = n
            rank[c] = n
            first[n] = y
            n += 1
        gid_out[y] = g
    return first[:n]


@njit(cache=True, nogil=True, fastmath=FASTMATH_ORDERED)
def _token_cond_prompt(p, logp, V, H, logV, buf, cond_out):
    """Prefix marginals bottom-up (``buf`` holds depth ``h+1``'s, overwritten in place by depth
    ``h``'s: node ``j`` reads entries ``jV … jV+V−1 ≥ j``) and ``log π(a|s) = M(s·a) − M(s)``."""
    n_child = V**H
    src = logp[p]
    for h in range(H - 1, -1, -1):
        n = n_child // V
        off = (V**h - 1) // (V - 1)
        for j in range(n):
            m = -np.inf
            for a in range(V):
                m = max(m, src[j * V + a])
            ms = m if np.isfinite(m) else 0.0
            s = 0.0
            for a in range(V):
                s += math.exp(src[j * V + a] - ms)
            parent = math.log(s) + ms  # log 0 = −inf: every child has probability 0
            if np.isfinite(parent):
                for a in range(V):
                    cond_out[p, off + j, a] = src[j * V + a] - parent
            else:
                for a in range(V):
                    cond_out[p, off + j, a] = -logV
            buf[j] = parent
        src = buf
        n_child = n


@njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)
def _token_cond_par(logp, V, H, logV, cond_out):
    for p in prange(logp.shape[0]):
        _token_cond_prompt(p, logp, V, H, logV, np.empty(max(logp.shape[1] // V, 1)), cond_out)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _token_cond_ser(logp, V, H, logV, cond_out):
    buf = np.empty(max(logp.shape[1] // V, 1))
    for p in range(logp.shape[0]):
        _token_cond_prompt(p, logp, V, H, logV, buf, cond_out)


@njit(cache=True, nogil=True)
def level_index(u, row, offset, out):
    """``out[y] = offset + i`` with ``u[i] = row[y]`` for sorted distinct ``u`` holding every value
    of ``row`` (``np.searchsorted(u, row) + offset``): a branch-free binary search whose halving
    steps depend on ``len(u)`` only, run on 16 entries at a time so the searches overlap."""
    n = u.shape[0]
    T = row.shape[0]
    B = 16
    lo = np.zeros(B, np.int64)
    for y0 in range(0, T, B):
        m = min(B, T - y0)
        for k in range(m):
            lo[k] = 0
        length = n
        while length > 1:
            half = length >> 1
            for k in range(m):
                lo[k] += half * (u[lo[k] + half] <= row[y0 + k])
            length -= half
        for k in range(m):
            out[y0 + k] = lo[k] + offset
