"""The block Laplacian-plus-ridge solve of the tabular Newton fits (split from
:mod:`genver._solve`, whose :func:`~genver._solve.newton` calls it).

:class:`LaplacianRidge` solves ``(L_w + λI) u = b`` for a block-diagonal weighted graph
Laplacian ``L_w = Σ_k w_k (e_{a_k} − e_{b_k})(e_{a_k} − e_{b_k})ᵀ`` (blocks = prompts), the
Hessian of every tabular Bradley–Terry/IPO problem (see :mod:`genver.estimators.mle`), in
``O(coordinates + distinct pairs)`` memory. A prompt of at most :data:`DENSE_MAX` touched
coordinates is one dense ``(m × m)`` solve, prompts of similar size batched into one padded
array. A larger prompt is split into the connected components of its pair graph (the matrix
is block diagonal over them); components up to :data:`DENSE_MAX` join the dense batches, larger
ones are solved by Jacobi-preconditioned conjugate gradients on the matrix in CSR storage, to
relative residual :data:`CG_RTOL` (or a looser forcing term from :func:`genver._solve.newton`).
:data:`DENSE_MAX` is the measured crossover of the two (``benchmarks/bench_fit_scale.py``);
:func:`laplacian_dense_max` overrides it (tests, benchmarks). The inner solves are inexact (by
``CG_RTOL`` or the forcing term): :func:`genver._solve.newton` certifies by the exactly
evaluated gradient, so the certificate does not depend on the path.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import numpy as np
from numba import njit
from scipy import linalg, sparse
from scipy.sparse import csgraph

from . import _kernels

#: Prompts and pair-graph components of at most this many touched coordinates are solved dense
#: (batched Cholesky / LU); larger components by conjugate gradients on a sparse matrix. The
#: measured crossover of the two on random pair graphs (``benchmarks/bench_fit_scale.py``,
#: ``dense_threshold``); see :class:`LaplacianRidge`.
DENSE_MAX = 320
#: Relative residual ``‖b − (L_w + λI)u‖₂ ≤ CG_RTOL ‖b‖₂`` (per component) at which conjugate
#: gradients stop, and their iteration cap.
CG_RTOL = 1e-13
CG_MAX_ITER = 5000
_DENSE_MAX_OVERRIDE: contextvars.ContextVar = contextvars.ContextVar("laplacian_dense_max", default=None)


@contextlib.contextmanager
def laplacian_dense_max(m):
    """Within the ``with`` block (and this thread), :class:`LaplacianRidge` objects built without an
    explicit ``dense_max`` use ``m`` instead of :data:`DENSE_MAX`: ``math.inf`` keeps every
    prompt on the dense path (genver's solver before the sparse one), ``0`` sends every
    component with a pair to conjugate gradients. For tests and benchmarks."""
    m = float(m)
    if not (m >= 0):
        raise ValueError(f"dense_max must be >= 0, got {m}")
    token = _DENSE_MAX_OVERRIDE.set(m)
    try:
        yield
    finally:
        _DENSE_MAX_OVERRIDE.reset(token)


def _dense_batches(label, a, b, max_entries):
    """The padded dense batches of the blocks ``label ≥ 0`` (``label[i]`` = block of coordinate
    ``i``, ``−1``: not on the dense path; a pair lies inside one block or has both ends ``−1``).
    Blocks sorted by size (stable in the label) and batched while a batch holds at most
    ``max_entries`` matrix entries."""
    pool = np.flatnonzero(label >= 0)
    if pool.size == 0:
        return []
    ids, inv_p, sizes = np.unique(label[pool], return_inverse=True, return_counts=True)
    inv = np.full(label.size, -1, dtype=np.int64)  # block number of each coordinate, −1 off the pool
    inv[pool] = inv_p
    order = np.argsort(inv_p, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    local = np.zeros(label.size, dtype=np.int64)
    local[pool[order]] = np.arange(pool.size) - starts[inv_p[order]]
    pair_blk = inv[a]
    by_size = np.argsort(sizes, kind="stable")
    batches = []
    i = 0
    while i < by_size.size:
        j = i + 1
        m = int(sizes[by_size[i]])
        while j < by_size.size and (j - i + 1) * int(sizes[by_size[j]]) ** 2 <= max_entries:
            m = int(sizes[by_size[j]])
            j += 1
        blks = by_size[i:j]
        slot = np.full(ids.size + 1, -1, dtype=np.int64)  # slot[−1]: coordinates and pairs off the pool
        slot[blks] = np.arange(blks.size)
        B = blks.size
        coords = np.flatnonzero(slot[inv] >= 0)
        cpos = slot[inv[coords]] * m + local[coords]  # position in the (B, m) right-hand side
        pairs = np.flatnonzero(slot[pair_blk] >= 0)
        s = slot[pair_blk[pairs]] * (m * m)
        la, lb = local[a[pairs]], local[b[pairs]]
        idx4 = np.concatenate([s + la * (m + 1), s + lb * (m + 1), s + la * m + lb, s + lb * m + la])
        diag = (np.arange(B)[:, None] * (m * m) + np.arange(m)[None, :] * (m + 1)).ravel()
        batches.append((B, m, coords, cpos, pairs, idx4, diag))
        i = j
    return batches


class LaplacianRidge:
    """Solver for ``(L_w + λI) u = b`` with ``L_w = Σ_k w_k (e_{a_k} − e_{b_k})(e_{a_k} − e_{b_k})ᵀ``
    over ``n`` coordinates partitioned into blocks (``block[i]`` = block of coordinate ``i``;
    every pair ``(a_k, b_k)`` lies inside one block, so the matrix is block diagonal).

    The pair structure is fixed at construction; :meth:`solve` takes the weights ``w ≥ 0`` (one
    per pair; self-pairs ``a_k = b_k`` contribute nothing, repeated pairs add) and ``λ > 0``, so
    every block is symmetric positive definite. Two paths, chosen per block at construction:

    * **dense** — a block of at most ``dense_max`` coordinates (default :data:`DENSE_MAX`, the
      measured crossover): blocks sorted by size and batched, padded to the largest size of
      the batch (padding rows: ``λ`` on the diagonal, zero right-hand side), as long as a batch
      holds at most ``max_entries`` matrix entries; a batch of one block uses a Cholesky solve
      (LAPACK ``posv``), larger batches numpy's stacked LU solve.
    * **sparse** — a larger block is split into the connected components of its pair graph
      (``scipy.sparse.csgraph.connected_components``; the matrix is block diagonal over them
      too). Components of at most ``dense_max`` coordinates join the dense batches; each
      larger one is solved by Jacobi-preconditioned conjugate gradients on the matrix in
      sparse storage — the strict upper triangle ``U`` (one entry ``−Σ w`` per distinct
      unordered pair, CSR) and the diagonal, ``(L_w + λI) x = d ∘ x + U x + Uᵀ x`` — all
      components in one iteration with their own step lengths (per-component inner products;
      the whole loop is one serial numba kernel, ``_cg_kernel``, sums in index order),
      each stopped at ``‖r‖₂ ≤`` :data:`CG_RTOL` ``‖b‖₂``. Memory and work per iteration are
      ``O(coordinates + distinct pairs)``; no ``(m × m)`` array is formed. Why not a sparse
      Cholesky: pair graphs drawn from a spread-out ``π_ref`` are expanders (random graphs),
      whose factors fill in completely, while conjugate gradients converge in a number of
      iterations set by the spectrum of the Jacobi-scaled Laplacian, which for random pair
      graphs of a given mean degree does not grow with their size (measured: ~30 iterations
      at 8 pairs per coordinate, ~100 at 1, from ``T = 2^12`` to ``2^20``). Algebraic multigrid
      (``pyamg``) was 3–70× slower for one solve at ``T = 2^18``, its setup included.

    Conjugate gradients are inexact by ``CG_RTOL`` (or by the looser ``rtol`` that an
    inexact-Newton caller passes to :meth:`solve`): the Newton method that uses this solver
    (:func:`genver._solve.newton`) certifies its result by the exactly evaluated gradient, never by the
    step. ``last_cg`` holds ``(iterations, max relative residual)`` of the latest sparse solve,
    ``cg_iterations`` the iterations of all solves so far.
    """

    def __init__(self, block, a, b, max_entries: int = 1 << 21, dense_max=None):
        block = np.asarray(block, dtype=np.int64)
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if a.shape != b.shape or (a.size and (a.min() < 0 or b.min() < 0 or max(a.max(), b.max()) >= block.size)):
            raise ValueError("pair indices must lie in [0, n)")
        if a.size and not np.array_equal(block[a], block[b]):
            raise ValueError("every pair must lie inside one block")
        if dense_max is None:
            dense_max = _DENSE_MAX_OVERRIDE.get()
        dense_max = DENSE_MAX if dense_max is None else float(dense_max)
        if not dense_max >= 0:
            raise ValueError(f"dense_max must be >= 0, got {dense_max}")
        self.n = block.size
        self.last_cg = (0, 0.0)
        self.cg_iterations = 0
        _, label, sizes = np.unique(block, return_inverse=True, return_counts=True)
        label = label.ravel().astype(np.int64)
        self._cg: dict[str, Any] | None = None  # the conjugate-gradient system (_split_large)
        big = sizes > dense_max
        if big.any():
            label = self._split_large(label, big[label], sizes.size, a, b, dense_max)
        self._batches = _dense_batches(label, a, b, max_entries)

    def _split_large(self, label, in_big, n_blocks, a, b, dense_max):
        """Components of the large blocks: small ones become dense blocks (labels after the
        blocks'), large ones the conjugate-gradient system; returns the new labels."""
        big = np.flatnonzero(in_big)  # sorted
        nb = big.size
        loc = np.full(self.n, -1, dtype=np.int64)
        loc[big] = np.arange(nb)
        pairs = np.flatnonzero(in_big[a] & (a != b))
        la, lb = loc[a[pairs]], loc[b[pairs]]
        key = np.minimum(la, lb) * nb + np.maximum(la, lb)
        del la, lb
        # one entry per distinct unordered pair (lo < hi), sorted: the strict upper triangle in CSR
        edges, edge_of_pair = np.unique(key, return_inverse=True)
        del key
        edge_of_pair = edge_of_pair.ravel()
        itype = np.int32 if nb < 2**31 else np.int64
        elo, ehi = (edges // nb).astype(itype), (edges % nb).astype(itype)
        del edges
        U = self._upper(elo, ehi, nb)
        n_comp, comp = csgraph.connected_components(U, directed=False)
        large_comp = np.bincount(comp, minlength=n_comp) > dense_max
        on_cg = large_comp[comp]
        label = label.copy()
        label[big[~on_cg]] = n_blocks + comp[~on_cg]
        label[big[on_cg]] = -1
        if not on_cg.any():
            return label
        cg_comp = (np.cumsum(large_comp) - 1)[comp[on_cg]]  # components on this path: 0..K-1
        coords = big[on_cg]
        if coords.size < nb:  # drop the small components' coordinates and edges (renumbering
            # keeps the order, so the edges stay sorted)
            keep_edge = on_cg[elo]
            new_edge = np.cumsum(keep_edge) - 1
            keep_pair = keep_edge[edge_of_pair]
            pairs, edge_of_pair = pairs[keep_pair], new_edge[edge_of_pair[keep_pair]]
            renum = (np.cumsum(on_cg) - 1).astype(itype)
            elo, ehi = renum[elo[keep_edge]], renum[ehi[keep_edge]]
            U = self._upper(elo, ehi, coords.size)
        self._cg = {"coords": coords, "comp": cg_comp, "K": int(large_comp.sum()),
                    "pairs": None if pairs.size == a.size else pairs, "edge": edge_of_pair, "elo": elo,
                    "U": U}
        return label

    @staticmethod
    def _upper(elo, ehi, n):
        indptr = np.zeros(n + 1, dtype=np.int32 if ehi.size < 2**31 else np.int64)
        np.cumsum(np.bincount(elo, minlength=n), out=indptr[1:])
        return sparse.csr_array((np.zeros(ehi.size), ehi, indptr), shape=(n, n))

    def solve(self, w, lam: float, rhs, rtol=None) -> np.ndarray:
        """``u = (L_w + λI)⁻¹ rhs`` (``rhs`` of length ``n``). ``rtol``: the relative residual at
        which conjugate gradients may stop (an inexact-Newton forcing term); ``None`` or anything
        below :data:`CG_RTOL`: :data:`CG_RTOL`. The dense blocks are always solved exactly."""
        rhs = np.asarray(rhs, dtype=np.float64)
        rtol = CG_RTOL if rtol is None else max(float(rtol), CG_RTOL)
        w = np.asarray(w, dtype=np.float64)
        out = np.empty(self.n)
        for B, m, coords, cpos, pairs, idx4, diag in self._batches:
            wk = w[pairs]
            A = np.bincount(idx4, weights=np.concatenate([wk, wk, -wk, -wk]), minlength=B * m * m)
            A[diag] += lam
            R = np.zeros(B * m)
            R[cpos] = rhs[coords]
            if B == 1:
                X = linalg.solve(A.reshape(m, m), R, assume_a="pos", check_finite=False, overwrite_a=True,
                                 overwrite_b=True)
            else:
                X = np.linalg.solve(A.reshape(B, m, m), R.reshape(B, m, 1))
            out[coords] = X.ravel()[cpos]
        cg = self._cg
        if cg is not None:
            out[cg["coords"]] = self._conjugate_gradients(cg, w if cg["pairs"] is None else w[cg["pairs"]], lam,
                                                          rhs[cg["coords"]], rtol)
        return out

    def _conjugate_gradients(self, cg, w, lam, b, rtol):
        U, comp, K = cg["U"], cg["comp"], cg["K"]
        ns = b.size
        W = np.bincount(cg["edge"], weights=w, minlength=U.data.size)
        np.negative(W, out=U.data)
        diag = np.bincount(cg["elo"], weights=W, minlength=ns)
        diag += np.bincount(U.indices, weights=W, minlength=ns)
        diag += lam
        del W
        dinv = 1.0 / diag

        tol2 = (rtol * rtol) * np.bincount(comp, weights=b * b, minlength=K)
        x = np.empty(ns)
        rr = np.empty(K)
        it = _cg_kernel(U.indptr, U.indices, U.data, diag, dinv, comp, b, tol2, CG_MAX_ITER, x, rr)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.sqrt(rr / np.where(tol2 > 0, tol2, np.inf)) * rtol
        self.last_cg = (it, float(np.max(rel, initial=0.0)))
        self.cg_iterations += it
        return x


@njit(cache=True, nogil=True, fastmath=_kernels.FASTMATH)
def _cg_start(r, dinv, comp, x, z, p, rz, rr):
    """The start of :func:`_cg_kernel` from ``x = 0`` (``r = b``): ``z = p = D⁻¹ r`` and the
    per-component ``rz[k] = r_kᵀz_k``, ``rr[k] = ‖r_k‖₂²`` (``rz``, ``rr`` zero on entry)."""
    rr[:] = 0.0
    for i in range(r.shape[0]):
        x[i] = 0.0
        zi = r[i] * dinv[i]
        z[i] = zi
        p[i] = zi
        rz[comp[i]] += r[i] * zi
        rr[comp[i]] += r[i] * r[i]


@njit(cache=True, nogil=True, fastmath=_kernels.FASTMATH)
def _cg_direction(z, beta, comp, p):
    """The search-direction update of :func:`_cg_kernel`: ``p ← z + β_k p`` (``k = comp[i]``)."""
    if beta.shape[0] == 1:
        bt = beta[0]
        for i in range(p.shape[0]):
            p[i] = z[i] + bt * p[i]
    else:
        for i in range(p.shape[0]):
            p[i] = z[i] + beta[comp[i]] * p[i]


@njit(cache=True, nogil=True, fastmath=_kernels.FASTMATH)
def _cg_kernel(indptr, indices, data, diag, dinv, comp, b, tol2, max_iter, x, rr):
    """Jacobi-preconditioned conjugate gradients for ``(D + U + Uᵀ) x = b`` (see
    :class:`LaplacianRidge`) on ``K = tol2.size`` components at once (``comp[i]`` = component of
    coordinate ``i``): per-component inner products and step lengths, component ``k`` frozen once
    ``‖r_k‖₂² ≤ tol2[k]``. Writes ``x`` (from ``x = 0``) and the final ``rr[k] = ‖r_k‖₂²``;
    returns the iterations. One pass for the product (``_kernels.sym_upper_matvec``), one for
    ``pᵀq``, one for the ``x``, ``r``, ``z`` updates with ``‖r‖²`` and ``rᵀz``, one for ``p`` (:func:`_cg_direction`);
    serial, sums in index order: the same bits for any thread count."""
    ns = b.shape[0]
    K = tol2.shape[0]
    r = b.copy()
    z = np.empty(ns)
    p = np.empty(ns)
    q = np.empty(ns)
    rz = np.zeros(K)
    rzn = np.zeros(K)
    pq = np.zeros(K)
    alpha = np.zeros(K)
    beta = np.zeros(K)
    active = np.zeros(K, dtype=np.bool_)
    _cg_start(r, dinv, comp, x, z, p, rz, rr)
    n_active = 0
    for k in range(K):
        active[k] = rr[k] > tol2[k]
        n_active += active[k]
    it = 0
    while n_active > 0 and it < max_iter:
        _kernels.sym_upper_matvec(indptr, indices, data, diag, p, q)
        if K == 1:
            s = 0.0
            for i in range(ns):
                s += p[i] * q[i]
            pq[0] = s
        else:
            pq[:] = 0.0
            for i in range(ns):
                pq[comp[i]] += p[i] * q[i]
        for k in range(K):
            alpha[k] = rz[k] / pq[k] if active[k] else 0.0
        if K == 1:
            a = alpha[0]
            s_rr = 0.0
            s_rz = 0.0
            for i in range(ns):
                x[i] += a * p[i]
                ri = r[i] - a * q[i]
                r[i] = ri
                zi = ri * dinv[i]
                z[i] = zi
                s_rr += ri * ri
                s_rz += ri * zi
            rr[0] = s_rr
            rzn[0] = s_rz
        else:
            rr[:] = 0.0
            rzn[:] = 0.0
            for i in range(ns):
                k = comp[i]
                a = alpha[k]
                x[i] += a * p[i]
                ri = r[i] - a * q[i]
                r[i] = ri
                zi = ri * dinv[i]
                z[i] = zi
                rr[k] += ri * ri
                rzn[k] += ri * zi
        n_active = 0
        for k in range(K):
            active[k] = active[k] and rr[k] > tol2[k]
            beta[k] = rzn[k] / rz[k] if active[k] else 0.0
            rz[k] = rzn[k]
            n_active += active[k]
        _cg_direction(z, beta, comp, p)
        it += 1
    return it
