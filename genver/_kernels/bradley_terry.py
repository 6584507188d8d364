r"""Bradley–Terry log-likelihoods and gradients over pair counts (private).

Math
----
* Log-likelihood of the scores ``f_k`` of class member ``k`` on pair counts ``(i⁺_j, i⁻_j, c_j)``:
  ``ℓ_k = Σ_j c_j log σ(s·(f_k[i⁺_j] − f_k[i⁻_j]) + o_j)``; DPO uses ``f_k = log π_k``, ``s = β``
  and ``o_j = −β(log π_ref[i⁺_j] − log π_ref[i⁻_j])``. Reversing a pair negates its margin
  exactly, so the two orientations of an unordered pair share ``log1p(e^{−|z|})``:
  ``log σ(±z) = min(±z, 0) − log1p(e^{−|z|})`` (the stream kernel).
* One score vector (tabular fits): ``ℓ(f) = Σ_j c_j log σ(d_j)``, ``d_j = s (f[i⁺_j] − f[i⁻_j])``,
  and ``∂ℓ/∂f[i⁺_j] = +c_j s σ(−d_j)``, ``∂ℓ/∂f[i⁻_j] = −c_j s σ(−d_j)``.
* Expected log-likelihood under the true preferences, over groups ``g`` of equal ``(r, r*)`` with
  μ-masses ``M_g``: ``Σ_{g,h} M_g M_h [σ(r*_g − r*_h) log σ(r_g − r_h) + σ(r*_h − r*_g) log σ(r_h − r_g)]``.

The dispatchers (``class_bt_loglik``, ``class_bt_loglik_stream``, ``grouped_bt_loglik``) are in
``genver._kernels``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .base import FASTMATH, FASTMATH_ORDERED, FASTMATH_POLY, log_sigmoid, sigmoid
from .poly import softplus_neg_abs_block


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _class_bt_group(b, scores, pos, neg, offset, count, scale, out):
    """Members ``4b … 4b+3`` of :func:`class_bt_loglik`."""
    K = scores.shape[0]
    M = pos.shape[0]
    B = 256
    G = 4
    k0 = b * G
    g = min(G, K - k0)
    z = np.empty((G, B))
    acc = np.zeros(G)
    for j0 in range(0, M, B):
        m = min(B, M - j0)
        for j in range(m):
            p = pos[j0 + j]
            q = neg[j0 + j]
            o = offset[j0 + j]
            for i in range(g):
                z[i, j] = scale * (scores[k0 + i, p] - scores[k0 + i, q]) + o
        for i in range(g):
            s = 0.0
            for j in range(m):
                zj = z[i, j]
                s += count[j0 + j] * (min(zj, 0.0) - math.log(1.0 + math.exp(-abs(zj))))
            acc[i] += s
    for i in range(g):
        out[k0 + i] = acc[i]


@njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)
def _class_bt_par(scores, pos, neg, offset, count, scale, out):
    for b in prange((scores.shape[0] + 3) // 4):
        _class_bt_group(b, scores, pos, neg, offset, count, scale, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _class_bt_ser(scores, pos, neg, offset, count, scale, out):
    for b in range((scores.shape[0] + 3) // 4):
        _class_bt_group(b, scores, pos, neg, offset, count, scale, out)


_GRAD_BLOCK = 512  # pairs per block of bt_loglik_grad: its buffer (4 KiB) stays in L1


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def bt_loglik_grad(scores, pos, neg, count, scale, grad_out):
    """Bradley–Terry log-likelihood of one score vector (flat (x,y)) and its gradient with
    respect to the scores: ``Σ_j c_j log σ(d_j)``, ``d_j = s·(f[pos_j] − f[neg_j])``, and
    d/df[pos] += c·s·σ(−d), d/df[neg] −= the same (libm's ``exp``/``log1p``: :func:`log_sigmoid`,
    :func:`sigmoid`).

    In blocks of ``_GRAD_BLOCK`` pairs: one loop gathers the margins (loads only, so many are in
    flight at once: the scores are read at random, from DRAM at large ``T``), one evaluates the
    terms and adds the log-likelihood in pair order, one scatters the gradient in pair order — the
    arithmetic, hence the bits, of one loop doing all three per pair, at half its time at
    ``T = 2^18 … 2^20``. Serial: the same bits whatever the thread count."""
    for i in range(grad_out.shape[0]):
        grad_out[i] = 0.0
    B = _GRAD_BLOCK
    db = np.empty(B)  # the margins, then the gradient terms
    total = 0.0
    M = pos.shape[0]
    for j0 in range(0, M, B):
        m = min(B, M - j0)
        for j in range(m):
            db[j] = scale * (scores[pos[j0 + j]] - scores[neg[j0 + j]])
        for j in range(m):
            d = db[j]
            total += count[j0 + j] * log_sigmoid(d)
            db[j] = count[j0 + j] * scale * sigmoid(-d)
        for j in range(m):
            g = db[j]
            grad_out[pos[j0 + j]] += g
            grad_out[neg[j0 + j]] -= g
    return total


_STREAM_G = 64  # members per prange item: the block's log-sigmoids (2U × 64 doubles) stay in L2
_SP_PIECE = 512  # softplus scratch length


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _stream_block(b, scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out):
    """Members ``64b … 64b+63`` of :func:`class_bt_loglik_stream`."""
    K, F = scores.shape
    U = pos.shape[0]
    S = seg_ptr.shape[0] - 1
    G = _STREAM_G
    UG = U * G
    k0 = b * G
    g = min(G, K - k0)
    sT = np.empty((F, G))
    for i in range(G):
        if i < g:
            for f in range(F):
                sT[f, i] = scores[k0 + i, f]
        else:
            for f in range(F):
                sT[f, i] = 0.0
    sTf = sT.ravel()
    L = np.empty(2 * UG)  # [0, UG): log σ(z), [UG, 2UG): log σ(−z); row u holds the block
    for u in range(U):
        p = pos[u]
        q = neg[u]
        o = offset[u]
        ub = max(u, 0) * G  # indices provably ≥ 0 (no wrap-around tests): LLVM vectorises
        pb = max(p, 0) * G
        qb = max(q, 0) * G
        for i in range(G):
            L[ub + i] = scale * (sTf[pb + i] - sTf[qb + i]) + o
    sp = np.empty(_SP_PIECE)
    b1 = np.empty(_SP_PIECE, np.int64)
    b2 = np.empty(_SP_PIECE, np.int64)
    for j0 in range(0, UG, _SP_PIECE):
        m = min(_SP_PIECE, UG - j0)
        softplus_neg_abs_block(L[j0 : j0 + m], sp[:m], b1, b2)
        jb = max(j0, 0)
        jc = max(UG + j0, 0)
        for j in range(m):
            zj = L[jb + j]
            s_ = sp[j]
            L[jb + j] = min(zj, 0.0) - s_
            L[jc + j] = min(-zj, 0.0) - s_
    acc = np.zeros(G)
    for t in range(S):
        for e in range(seg_ptr[t], seg_ptr[t + 1]):
            w = seg_cnt[e]
            base = max(seg_idx[e], 0) * G  # provably ≥ 0: no wrap-around test, so LLVM vectorises
            for i in range(G):
                acc[i] += w * L[base + i]
        for i in range(g):
            out[t, k0 + i] = acc[i]


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy", parallel=True)
def _stream_par(scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out):
    for b in prange((scores.shape[0] + _STREAM_G - 1) // _STREAM_G):
        _stream_block(b, scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH_POLY, error_model="numpy")
def _stream_ser(scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out):
    for b in range((scores.shape[0] + _STREAM_G - 1) // _STREAM_G):
        _stream_block(b, scores, pos, neg, offset, seg_idx, seg_cnt, seg_ptr, scale, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH_ORDERED)
def class_bt_loglik_exact(scores, members, pos, neg, offset, count, scale, out):
    """:func:`class_bt_loglik` for the listed ``members`` only (``out[i]`` for member
    ``members[i]``), with libm's ``log1p`` (:func:`log_sigmoid`): every term accurate *relative*
    to itself, also where ``log σ(z) ≈ −e^{−z}`` is far below the vectorised kernel's absolute
    3e-16 (the saturated members of a finite class, e.g. −1e-19, −1e-59, −1e-119, which that
    kernel rounds to the same 0). Serial and scalar: for the few members a pick leaves tied."""
    for i in range(members.shape[0]):
        k = members[i]
        s = 0.0
        for j in range(pos.shape[0]):
            s += count[j] * log_sigmoid(scale * (scores[k, pos[j]] - scores[k, neg[j]]) + offset[j])
        out[i] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH_ORDERED)
def _grouped_bt_loglik_prompt(p, r_model, r_true, mass, starts, out):
    s = 0.0
    for i in range(starts[p], starts[p + 1]):
        if mass[i] == 0.0:
            continue
        inner = 0.0
        for j in range(starts[p], starts[p + 1]):
            d = r_model[i] - r_model[j]
            dt = r_true[i] - r_true[j]
            inner += mass[j] * (sigmoid(dt) * log_sigmoid(d) + sigmoid(-dt) * log_sigmoid(-d))
        s += mass[i] * inner
    out[p] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)
def _grouped_bt_loglik_par(r_model, r_true, mass, starts, out):
    for p in prange(out.shape[0]):
        _grouped_bt_loglik_prompt(p, r_model, r_true, mass, starts, out)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _grouped_bt_loglik_ser(r_model, r_true, mass, starts, out):
    for p in range(out.shape[0]):
        _grouped_bt_loglik_prompt(p, r_model, r_true, mass, starts, out)
