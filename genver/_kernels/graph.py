r"""Pair counts of nested sample sizes and products with the pair-graph Laplacian (private).

Math
----
* Pair keys ``(x·T + y⁺)·T + y⁻``, sorted and unique with summed counts, merged in one linear walk.
* ``q = (D + U + Uᵀ) p`` for a strictly upper-triangular CSR ``U`` (the Laplacian-plus-ridge
  Hessian of the tabular fits, used by conjugate gradients in ``genver._solve``).
* ``L_w φ`` for the weighted pair Laplacian ``L_w = Σ_k w_k (e_{a_k} − e_{b_k})(e_{a_k} − e_{b_k})ᵀ``
  (the linear reward MLE's Hessian ``φᵀ L_w φ``).
"""
from __future__ import annotations

from numba import njit

from .base import FASTMATH


# -- pair counts of nested sample sizes (genver.preferences.NestedCounts) --------------------
@njit(cache=True, nogil=True)
def sorted_common_count(a, b):
    """Number of values two sorted unique int64 arrays share (one linear walk)."""
    i = j = c = 0
    while i < a.size and j < b.size:
        if a[i] < b[j]:
            i += 1
        elif a[i] > b[j]:
            j += 1
        else:
            c += 1
            i += 1
            j += 1
    return c


@njit(cache=True, nogil=True)
def merge_pair_counts(keys, cnt, new, new_cnt, T, keys_out, cnt_out, x_out, pos_out, neg_out):
    """Merge the sorted unique keys ``keys`` (counts ``cnt``) with ``new`` (``new_cnt``) into
    ``keys_out``/``cnt_out`` (sorted, unique, counts summed; sized by
    :func:`sorted_common_count`) and decode each key ``(x·T + y⁺)·T + y⁻`` into ``x_out``,
    ``pos_out``, ``neg_out``. Counts are float64 integers (exact below 2**53)."""
    i = j = m = 0
    while i < keys.size or j < new.size:
        if j == new.size or (i < keys.size and keys[i] < new[j]):
            k, c = keys[i], cnt[i]
            i += 1
        elif i == keys.size or new[j] < keys[i]:
            k, c = new[j], float(new_cnt[j])
            j += 1
        else:
            k, c = keys[i], cnt[i] + float(new_cnt[j])
            i += 1
            j += 1
        keys_out[m] = k
        cnt_out[m] = c
        rest = k // T
        neg_out[m] = k - rest * T
        x = rest // T
        x_out[m] = x
        pos_out[m] = rest - x * T
        m += 1


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def sym_upper_matvec(indptr, indices, data, diag, p, q):
    """``q = (D + U + Uᵀ) p`` for a strictly upper-triangular CSR matrix ``U`` (``indptr``,
    ``indices``, ``data``) and a diagonal ``diag``, in one pass over ``U``'s entries: row ``i``
    gathers ``U[i, j] p[j]`` into ``q[i]`` and scatters ``U[i, j] p[i]`` into ``q[j]`` (the
    Laplacian-plus-ridge product of the conjugate-gradient path of ``genver._solve``). Serial:
    the same bits for any thread count."""
    n = p.size
    for i in range(n):
        q[i] = diag[i] * p[i]
    for i in range(n):
        pi = p[i]
        s = q[i]
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d = data[k]
            s += d * p[j]
            q[j] += d * pi
        q[i] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def pair_laplacian_times(pos, neg, w, phi, out):
    """``out = L_w φ`` for the weighted pair Laplacian ``L_w = Σ_k w_k (e_{a_k} − e_{b_k})(e_{a_k} −
    e_{b_k})ᵀ`` (``a = pos``, ``b = neg``; flat coordinates) and a dense ``φ`` of shape
    ``(n, d)``, in one pass over the pairs, ``O(pairs·d)`` time and no ``(pairs, d)`` array
    (the linear reward MLE's Hessian ``Dᵀ diag(w) D = φᵀ L_w φ`` with ``D = φ[a] − φ[b]``).
    Serial: the same bits for any thread count."""
    out[:] = 0.0
    d = phi.shape[1]
    for k in range(pos.shape[0]):
        a = pos[k]
        b = neg[k]
        wk = w[k]
        for j in range(d):
            t = wk * (phi[a, j] - phi[b, j])
            out[a, j] += t
            out[b, j] -= t
