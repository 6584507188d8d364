r"""Backward induction on the prefix tree: token-level soft RL (private).

Math
----
In units of β: ``v_H = r/β``; ``v_h(s) = log Σ_a π_ref(a|s) e^{v_{h+1}(s·a)}``;
``log π*(a|s) = log π_ref(a|s) + v_{h+1}(s·a) − v_h(s)``; ``V_h = β v_h``; and by a forward pass
``log π*(y) = Σ_h log π*(a_h|s_h)``. Each node: ``t_a = log π_ref(a|s) + v_{h+1}(s·a)``,
``m = max_a t_a``, ``v_h = m + log Σ_a e^{t_a − m}`` (``−∞`` when every ``t_a`` is; then
``π*(·|s)`` is uniform, ``−log V``), swept in subtrees of at most ``_BI_LEAVES`` leaves so the
sweep touches each input and output once; each level of a subtree is one fused, vectorised pass
over its nodes with the polynomial ``e^x`` and ``log x`` of :mod:`genver._kernels.poly` inlined;
for ``V = 2`` one exponential per node (``e^{t_max − m} = e^0 = 1`` exactly). The dispatcher is
``genver._kernels.backward_induction``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .base import FASTMATH_POLY
from .poly import _add_rounded, _exp_poly, _log_poly

# -- backward induction (token-level soft RL) ------------------------------------------------
# Each level of a subtree is ONE pass over its nodes: t_a = log π_ref(a|s) + v(s·a), the max, the
# exponentials, their sum, the log and log π*(a|s) for a node's V children, with the polynomial
# e^x and log x of exp_block / log_block inlined (same operations, same bits). Three passes:
# V = 2 (:func:`_bi_level_pair`, vectorised across nodes; one exponential per node, since the
# larger child's e^{t − m} is e^0 = 1 exactly), 8 ≤ V ≤ 16 (:func:`_bi_level_rows`, node-major
# blocks) and any other V (:func:`_bi_level`, blocks of _BI_NODES nodes transposed token-major
# in L1). The tree is swept in rounds of subtrees of at most _BI_LEAVES leaves, so each input
# and output is read or written once (log π*(a|s) once more by the forward pass); the subtrees
# of one round are independent (each writes its own slice of the outputs and one root), so they
# are the parallel driver's items. Every node's arithmetic is the same whatever the blocking,
# the pass, the driver or the thread count: m = max_a t_a (exact in any order), s = Σ_a
# e^{t_a − m} (a in order, each term rounded before it is added: :func:`_add_rounded`),
# v = m + log s; the results are bit for bit those of the previous 16-pass kernel.
# Time: the polynomial e^x and log x dominate (~35 cycles per 8-wide AVX-512 vector each, so
# ~9 cycles per node at V = 2), and one core is compute-bound at V = 2 and V = 16, not
# memory-bound (profile in benchmarks/README.md).
_BI_LEAVES = 1 << 16  # long streams for the prefetcher (4,096 was 1.3–1.7× slower); scratch ≤ 384 KiB
_BI_NODES = 64  # nodes per block of the V > 2 passes: ≤ 3·V·64 doubles, in L1 for V ≤ 16


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", inline="always")
def _lse_pair(t0, t1):
    """``m + log(e^{t0 − m} + e^{t1 − m})``, ``m = max(t0, t1)`` (``0`` if both are ``−∞``, which
    gives ``−∞``): the larger term is ``e^0 = 1`` exactly, so one exponential."""
    m = max(t0, t1)
    lo = min(t0, t1)
    fin = m > -np.inf
    m = m if fin else 0.0
    s = _add_rounded(1.0, _exp_poly(lo - m)) if fin else 0.0
    return m + _log_poly(s)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_level_pair(x, div, scaled, rcs, lps, vs, vnext, n, beta, logV):
    """One level of ``n`` nodes, V = 2: children values ``x[2j + a]`` (``/ div`` if ``scaled``),
    ``rcs``/``lps`` the level's log π_ref / log π* conditionals (2n), ``vs`` its ``V_h`` (n) and
    ``vnext`` its ``v_h`` (units of β, the next level's children)."""
    if scaled:
        for j in range(n):
            q = max(2 * j, 0)  # provably ≥ 0: no wrap-around test, so LLVM vectorises
            t0 = rcs[q] + x[q] / div
            t1 = rcs[q + 1] + x[q + 1] / div
            ls = _lse_pair(t0, t1)
            fin = ls > -np.inf
            lps[q] = t0 - ls if fin else -logV
            lps[q + 1] = t1 - ls if fin else -logV
            vs[j] = beta * ls
            vnext[j] = ls
    else:
        for j in range(n):
            q = max(2 * j, 0)
            t0 = rcs[q] + x[q]
            t1 = rcs[q + 1] + x[q + 1]
            ls = _lse_pair(t0, t1)
            fin = ls > -np.inf
            lps[q] = t0 - ls if fin else -logV
            lps[q + 1] = t1 - ls if fin else -logV
            vs[j] = beta * ls
            vnext[j] = ls


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_level(x, div, scaled, rcs, lps, vs, vnext, n, V, beta, logV, t, mm, ss):
    """:func:`_bi_level_pair` for any V, in blocks of ``_BI_NODES`` nodes: ``t`` (V·_BI_NODES)
    holds the block token-major (entry (j, a) at ``a·_BI_NODES + j``), ``mm``/``ss`` the block's
    maxima and sums, so every loop runs across the block's nodes."""
    NB = _BI_NODES
    for j0 in range(0, n, NB):
        nb = min(NB, n - j0)
        xb = x[j0 * V : (j0 + nb) * V]
        rb = rcs[j0 * V : (j0 + nb) * V]
        lb = lps[j0 * V : (j0 + nb) * V]
        for a in range(V):
            ta = t[a * NB : a * NB + nb]
            if scaled:
                for j in range(nb):
                    q = max(j * V, 0) + a
                    ta[j] = rb[q] + xb[q] / div
            else:
                for j in range(nb):
                    q = max(j * V, 0) + a
                    ta[j] = rb[q] + xb[q]
            if a == 0:
                for j in range(nb):
                    mm[j] = ta[j]
            else:
                for j in range(nb):
                    mm[j] = max(mm[j], ta[j])
        for j in range(nb):
            mm[j] = mm[j] if mm[j] > -np.inf else 0.0  # all −∞: e^{t − 0} = 0, no NaN
            ss[j] = 0.0
        for a in range(V):
            ta = t[a * NB : a * NB + nb]
            for j in range(nb):
                ss[j] = _add_rounded(ss[j], _exp_poly(ta[j] - mm[j]))
        for j in range(nb):
            ls = mm[j] + _log_poly(ss[j])
            ss[j] = ls
            vs[j0 + j] = beta * ls
            vnext[j0 + j] = ls
        for a in range(V):
            ta = t[a * NB : a * NB + nb]
            for j in range(nb):
                ls = ss[j]
                lb[max(j * V, 0) + a] = ta[j] - ls if ls > -np.inf else -logV


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_level_rows(x, div, scaled, rcs, lps, vs, vnext, n, V, beta, logV, t, mm, ss):
    """:func:`_bi_level` with the block kept node-major (faster for 8 ≤ V ≤ 16): ``t`` (3·V·_BI_NODES)
    holds t, e^{t − m} and a per-entry copy of the node's m (then of its v), so the elementwise
    loops (t, e^{t − m}, log π*) run over the block's V·nb contiguous entries and only the max and
    the in-order sum run node by node."""
    NB = _BI_NODES
    for j0 in range(0, n, NB):
        nb = min(NB, n - j0)
        nbV = nb * V
        xb = x[j0 * V : (j0 + nb) * V]
        rb = rcs[j0 * V : (j0 + nb) * V]
        lb = lps[j0 * V : (j0 + nb) * V]
        tt = t[0:nbV]
        e = t[nbV : 2 * nbV]
        me = t[2 * nbV : 3 * nbV]
        if scaled:
            for i in range(nbV):
                tt[i] = rb[i] + xb[i] / div
        else:
            for i in range(nbV):
                tt[i] = rb[i] + xb[i]
        for j in range(nb):
            q = max(j * V, 0)
            m = tt[q]
            for a in range(1, V):
                m = max(m, tt[q + a])
            m = m if m > -np.inf else 0.0  # all −∞: e^{t − 0} = 0, no NaN
            mm[j] = m
            for a in range(V):
                me[q + a] = m
        for i in range(nbV):
            e[i] = _exp_poly(tt[i] - me[i])
        for j in range(nb):
            q = max(j * V, 0)
            s = 0.0
            for a in range(V):
                s = _add_rounded(s, e[q + a])
            ss[j] = s
        for j in range(nb):
            ls = mm[j] + _log_poly(ss[j])
            ss[j] = ls
            vs[j0 + j] = beta * ls
            vnext[j0 + j] = ls
        for j in range(nb):
            q = max(j * V, 0)
            ls = ss[j]
            for a in range(V):
                me[q + a] = ls
        for i in range(nbV):
            ls = me[i]
            lb[i] = tt[i] - ls if ls > -np.inf else -logV


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_subtree(src, div, scaled, rc, lpi, vals, beta, V, d_leaf, k, b, logV, w):
    """Backward induction over the ``k`` levels above the ``V**k`` leaves ``src`` (``/ div`` if
    ``scaled``, else already in units of β) at depth ``d_leaf``; the subtree's root is node ``b``
    at depth ``d_leaf − k``. Writes log π*(a|s) into ``lpi`` and ``V_h(s) = β v_h(s)`` into
    ``vals`` (the prompt's flat node layout) and returns ``v`` at the root. ``w``: scratch of
    ``V**(k−1) + V**(k−2) + (3V+2)·_BI_NODES`` doubles or more (:func:`_bi_items`)."""
    half = V ** (k - 1)
    NB = _BI_NODES
    va = w[0:half]  # even levels (n = V**(k-1), V**(k-3), …)
    vb = w[half : half + half // V]  # odd levels
    o = w.shape[0] - (3 * V + 2) * NB
    t = w[o : o + 3 * V * NB]
    mm = w[o + 3 * V * NB : o + 3 * V * NB + NB]
    ss = w[o + 3 * V * NB + NB : o + 3 * V * NB + 2 * NB]
    x = src
    n = half
    for lev in range(k):
        depth = d_leaf - 1 - lev
        g0 = (V**depth - 1) // (V - 1) + b * n  # flat index of the level's first node
        rcs = rc[g0 * V : (g0 + n) * V]
        lps = lpi[g0 * V : (g0 + n) * V]
        vs = vals[g0 : g0 + n]
        out = va if lev % 2 == 0 else vb
        sc = scaled and lev == 0
        if V == 2:
            _bi_level_pair(x, div, sc, rcs, lps, vs, out, n, beta, logV)
        elif 8 <= V <= 16:
            _bi_level_rows(x, div, sc, rcs, lps, vs, out, n, V, beta, logV, t, mm, ss)
        else:
            _bi_level(x, div, sc, rcs, lps, vs, out, n, V, beta, logV, t, mm, ss)
        x = out
        n //= V
    return x[0]


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_forward_subtree(root, lpi, dst, V, d_root, k, b, w):
    """Sequence log-probabilities below node ``b`` at depth ``d_root``, ``k`` levels down:
    ``dst[i] = root + Σ log π*(a|s)`` along the path to the subtree's leaf ``i``, added top-down in
    path order (prefix + next token). Intermediate levels live in ``w`` (≥ V**(k−1) + V**(k−2)):
    level ``k − 2`` in the first V**(k−1), ``k − 3`` after it, and so on alternately."""
    half = V ** (k - 1)
    wa = w[0:half]
    wb = w[half : half + half // V]
    cur = wb if k >= 2 and k % 2 == 0 else wa  # the buffer level 0 does not write
    cur[0] = root
    n = 1
    for lev in range(k):
        depth = d_root + lev
        g0 = (V**depth - 1) // (V - 1) + b * n
        lps = lpi[g0 * V : (g0 + n) * V]
        if lev == k - 1:
            out = dst
        elif (k - 2 - lev) % 2 == 0:
            out = wa
        else:
            out = wb
        if V == 2:
            for j in range(n):
                q = max(2 * j, 0)
                c = cur[j]
                out[q] = c + lps[q]
                out[q + 1] = c + lps[q + 1]
        else:
            for j in range(n):
                c = cur[j]
                q = max(j * V, 0)
                for a in range(V):
                    out[q + a] = c + lps[q + a]
        cur = out
        n *= V


@njit(cache=True, nogil=True)
def _bi_rounds(V, H, leaves):
    """The sweep's rounds, bottom-up, as one int64 array ``(3, nr + 1)`` and ``K``: round ``r``'s
    subtrees have ``rounds[0, r]`` levels, their leaves at depth ``rounds[1, r]`` and their roots'
    values at ``roots[rounds[2, r] : rounds[2, r + 1]]`` (``V**(depth of the roots)`` of them);
    ``K`` is the most levels with ``V**K ≤ leaves``."""
    K = 1
    while K < H and V ** (K + 1) <= leaves:
        K += 1
    nr = (H + K - 1) // K
    rounds = np.zeros((3, nr + 1), np.int64)
    d = H
    for r in range(nr):
        k = min(K, d)
        rounds[0, r] = k
        rounds[1, r] = d
        rounds[2, r + 1] = rounds[2, r] + V ** (d - k)
        d -= k
    return rounds, K


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_item(it, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out, logpi_out,
             logp_out, logV, w):
    """Subtree ``b`` of prompt ``p`` (``it = p·n_sub + b``) of round ``r``: backward (its values
    and conditionals, and its root's ``v`` into ``roots``) or forward (its sequence log-probs
    below its root's, read from ``roots``)."""
    k = rounds[0, r]
    dl = rounds[1, r]
    n_sub = V ** (dl - k)
    p = it // n_sub
    b = it - p * n_sub
    nl = V**k
    n_int = ref_cond.shape[1]
    rc = ref_cond[p].reshape(n_int * V)
    lpi = logpi_out[p].reshape(n_int * V)
    o = rounds[2, r]
    if backward:
        if r == 0:
            src = reward[p, b * nl : (b + 1) * nl]
            roots[p, o + b] = _bi_subtree(src, beta, True, rc, lpi, values_out[p], beta, V, dl, k, b, logV, w)
        else:
            o1 = rounds[2, r - 1]
            src = roots[p, o1 + b * nl : o1 + (b + 1) * nl]
            roots[p, o + b] = _bi_subtree(src, 1.0, False, rc, lpi, values_out[p], beta, V, dl, k, b, logV, w)
    else:
        if r == 0:
            dst = logp_out[p, b * nl : (b + 1) * nl]
        else:
            o1 = rounds[2, r - 1]
            dst = roots[p, o1 + b * nl : o1 + (b + 1) * nl]
        root = roots[p, o + b] if r < rounds.shape[1] - 2 else 0.0
        _bi_forward_subtree(root, lpi, dst, V, dl - k, k, b, w)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _bi_items(lo, hi, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out, logpi_out,
              logp_out, w):
    """Items ``lo … hi−1`` of round ``r`` with the scratch ``w`` (:func:`_bi_scratch` doubles)."""
    logV = math.log(V)
    for i in range(hi - lo):
        it = lo + i if backward else hi - 1 - i  # forward: last written first (still in L3)
        _bi_item(it, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out, logpi_out,
                 logp_out, logV, w)


@njit(cache=True, nogil=True, inline="always")
def _bi_scratch(V, K):
    """Scratch doubles of one run of items: V**(K−1) + V**(K−2) for the levels, (3V+2)·_BI_NODES
    for the blocks of the V > 2 passes."""
    half = V ** (K - 1)
    return half + half // V + (3 * V + 2) * _BI_NODES


_BI_CHUNKS = 4  # parallel items per round: contiguous runs of subtrees, one scratch buffer each


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", parallel=True)
def _backward_induction_par(reward, ref_cond, beta, V, H, values_out, logpi_out, logp_out, leaves=_BI_LEAVES):
    P = reward.shape[0]
    rounds, K = _bi_rounds(V, H, leaves)
    nr = rounds.shape[1] - 1
    ws = _bi_scratch(V, K)
    roots = np.empty((P, rounds[2, nr]))
    w0 = np.empty(ws)
    for step in range(2 * nr):  # rounds bottom-up (backward), then top-down (forward)
        backward = step < nr
        r = step if backward else 2 * nr - 1 - step
        n_it = P * V ** (rounds[1, r] - rounds[0, r])
        n_ch = min(n_it, _BI_CHUNKS)
        if n_ch == 1:
            _bi_items(0, n_it, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out,
                      logpi_out, logp_out, w0)
        else:
            for i in prange(n_ch):
                c = np.int64(i)
                if not backward:
                    c = n_ch - 1 - c
                w = np.empty(ws)
                _bi_items(c * n_it // n_ch, (c + 1) * n_it // n_ch, r, backward, reward, ref_cond, beta, V,
                          rounds, roots, values_out, logpi_out, logp_out, w)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _backward_induction_ser(reward, ref_cond, beta, V, H, values_out, logpi_out, logp_out, leaves=_BI_LEAVES):
    P = reward.shape[0]
    rounds, K = _bi_rounds(V, H, leaves)
    nr = rounds.shape[1] - 1
    R = rounds[2, nr]
    buf = np.empty(P * R + _bi_scratch(V, K))  # the roots, then the scratch: one allocation
    roots = buf[: P * R].reshape((P, R))
    w = buf[P * R :]
    for step in range(2 * nr):
        backward = step < nr
        r = step if backward else 2 * nr - 1 - step
        n_it = P * V ** (rounds[1, r] - rounds[0, r])
        _bi_items(0, n_it, r, backward, reward, ref_cond, beta, V, rounds, roots, values_out,
                  logpi_out, logp_out, w)
