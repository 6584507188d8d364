"""Solver plumbing shared by every estimator: one L-BFGS entry point, a damped Newton method
with the block Laplacian-plus-ridge solve of the tabular problems, the convergence certificate,
the ridge-weight check and the finite-class argmax rule.

* :func:`lbfgs` runs scipy's L-BFGS-B with exact gradients, ``ftol = 0`` (stop on the gradient
  only) and BLAS limited to one thread (:func:`blas_one_thread`, through threadpoolctl):
  genver's problems make many tiny BLAS calls, and a multi-threaded BLAS on a busy 2-core
  machine turned a 0.18 s sweep unit into 2–12 s (measured), without ever helping.
* :func:`newton` minimises a smooth convex ``F`` by damped Newton steps ``x ← x − t H(x)⁻¹∇F(x)``
  (globally convergent: Armijo backtracking on ``F``, ``t ∈ {1, ½, ¼, …}``). L-BFGS's line
  searches compare objective values, which float64 cannot resolve once the predicted decrease
  ``½ gᵀH⁻¹g`` falls below the rounding error of ``F`` (a summed objective of size ``|F|``): it
  stalls at ``|g| ≈ sqrt(ε |F| h)`` for curvature ``h`` (a few 1e-7 on genver's tabular fits).
  Newton does not: once ``gᵀH⁻¹g ≤ 1e-9 (1 + |F|)`` — a region where the full step is the
  right one — steps are accepted when they reduce ``max|g|`` instead. It stops once both
  ``max|g| ≤ gtol`` and the Newton step ``max|H⁻¹g| ≤ 1e-12 (1 + max|x|)`` (with a small ridge
  the curvature is tiny and a small gradient alone does not pin ``x`` down), or when ``max|g|``
  no longer decreases (the rounding floor of the gradient, ~1e-16 times the summed counts).
  With ``inexact=True`` it is an inexact Newton method for iterative inner solvers: far from
  the optimum the step's linear system is solved only to a relative residual ``η_k`` (the
  Eisenstat–Walker forcing term, 0.5 at first and tightening like ``(‖g_k‖/‖g_{k−1}‖)²``), and
  once ``max|g| ≤ gtol`` just accurately enough that the stop test holds for the *exact* step
  (a residual bound through a lower bound on the Hessian, ``hess_min``); the stopping rules and
  the certificate are unchanged. On the tabular fits' sparse pair graphs this cut conjugate-
  gradient iterations ~7× at the same optimum (``benchmarks/bench_fit_scale.py``, ``forcing``).
* :class:`LaplacianRidge` solves ``(L_w + λI) u = b`` for a block-diagonal weighted graph
  Laplacian ``L_w = Σ_k w_k (e_{a_k} − e_{b_k})(e_{a_k} − e_{b_k})ᵀ`` (blocks = prompts), the
  Hessian of every tabular Bradley–Terry/IPO problem (see :mod:`genver.estimators.mle`), in
  ``O(coordinates + distinct pairs)`` memory. A prompt of at most :data:`DENSE_MAX` touched
  coordinates is one dense ``(m × m)`` solve, prompts of similar size batched into one padded
  array. A larger prompt is split into the connected components of its pair graph (the matrix
  is block diagonal over them); components up to :data:`DENSE_MAX` join the dense batches, larger
  ones are solved by Jacobi-preconditioned conjugate gradients on the matrix in CSR storage, to
  relative residual :data:`CG_RTOL` (or a looser forcing term from :func:`newton`). :data:`DENSE_MAX` is the measured
  crossover of the two
  (``benchmarks/bench_fit_scale.py``); :func:`laplacian_dense_max` overrides it (tests,
  benchmarks). The inner solves are inexact (by ``CG_RTOL`` or the forcing term): :func:`newton`
  certifies by the exactly evaluated gradient, so the certificate does not depend on the path.
* :func:`converged`: max-abs gradient ≤ ``1e-6·max(1, N)`` for an objective summed over ``N``
  samples (L-BFGS-B's own flag also reports line-search stalls at machine precision).
* :func:`finite_pick`: the lowest index among members within ``TIE_RTOL = 1e-12`` of the best
  value ``v*`` — so rounding differences between two routes never change the pick — and whether
  a tied member is a *different* policy (then the optimum is a set). The tolerance is
  ``1e-12·|v*|`` when every value is ``≤ 0`` (log-likelihoods and minus losses: sums of terms
  of one sign, whose rounding error is relative to the sum, however small: at a saturated
  likelihood ``−1e-119`` is the exact maximum and ``−1e-19`` is not close to it), else
  ``1e-12·max(1, |v*|)`` (values of mixed sign, such as ``J_β``, round relative to their terms).
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import linalg, optimize, sparse
from scipy.sparse import csgraph
from threadpoolctl import ThreadpoolController

from . import _kernels

GTOL = 1e-9
TIE_RTOL = 1e-12
SAME_POLICY_ATOL = 1e-12
_controller = None


def blas_one_thread():
    """Context manager limiting every BLAS library loaded in this process to one thread
    (threadpoolctl's ``limit(limits=1, user_api="blas")``; one shared
    ``ThreadpoolController``), restored on exit. The limit is process-wide: callers that run
    fits in several threads (``genver.experiments.executors``) hold it around all of them.
    See the module docstring for why genver's solvers want it."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def lbfgs(fun, x0, gtol: float = GTOL, max_iter: int = 20000):
    """Minimise ``fun(x) -> (value, gradient)``; returns ``(result, max-abs gradient)``."""
    with blas_one_thread():
        res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                                options={"gtol": gtol, "ftol": 0.0, "maxiter": max_iter, "maxcor": 30})
    gnorm = float(np.abs(res.jac).max()) if res.jac.size else 0.0
    return res, gnorm


@dataclass
class NewtonResult:
    """Outcome of :func:`newton`: the minimiser ``x``, ``fun = F(x)``, ``jac = ∇F(x)`` (the true
    gradient at the returned point), ``nit`` Newton steps taken, ``nfev`` evaluations of ``F``,
    ``grad_norm = max|jac|`` and ``status`` — ``"gtol"`` (``grad_norm ≤ gtol``), ``"rounding"``
    (``max|g|`` stopped decreasing in the rounding regime), ``"line search"`` (no step of the
    backtracking sequence decreased ``F``) or ``"max_iter"``. ``"gtol"`` also requires the Newton step
    ``max|H⁻¹g| ≤ xtol (1 + max|x|)``. ``nsolve_loose``: Newton systems solved to a forcing
    term rather than tightly (``inexact=True``)."""

    x: np.ndarray
    fun: float
    jac: np.ndarray
    nit: int
    nfev: int
    grad_norm: float
    status: str
    nsolve_loose: int = 0


#: Relative gradient target of :func:`newton` for objectives summed over ``N`` samples:
#: ``max|g| ≤ NEWTON_RTOL · max(1, N)`` — about 1000× the float64 rounding floor of such a gradient.
NEWTON_RTOL = 1e-13
_ARMIJO = 1e-4
_ROUNDING_DECREMENT = 1e-9  # gᵀH⁻¹g below this × (1 + |F|): F cannot judge the step; use max|g|
_MAX_HALVINGS = 60
_LOOSE_STOP_MIN = 1e-10  # a stop-test solve looser than this, or the tightest one


#: Inexact Newton (:func:`newton` with ``inexact=True``): the forcing term ``η_k`` — the relative
#: residual ``‖H d + g‖₂ ≤ η_k ‖g‖₂`` to which an iterative inner solve may stop — starts at
#: ``FORCING_MAX`` and follows Eisenstat & Walker's choice 2 (SIAM J. Sci. Comput. 17, 1996):
#: ``η_k = FORCING_GAMMA (‖g_k‖₂/‖g_{k−1}‖₂)²``, kept ≥ ``FORCING_GAMMA η_{k−1}²`` while that is
#: above 0.1 (no sudden over-solving after one lucky step), capped at ``FORCING_MAX``.
FORCING_MAX = 0.5
FORCING_GAMMA = 0.9


def _forcing(g2, g2_prev, eta_prev, gtol):
    """The Eisenstat–Walker forcing term (see :data:`FORCING_MAX`) for ``‖g_k‖₂ = g2``, floored at
    ``0.1·gtol/g2`` (a residual of 2-norm — hence max-norm — below a tenth of the gradient target
    buys nothing before the tight end game)."""
    if g2_prev is None:
        eta = FORCING_MAX
    else:
        eta = FORCING_GAMMA * (g2 / g2_prev) ** 2
        safeguard = FORCING_GAMMA * eta_prev * eta_prev
        if safeguard > 0.1:
            eta = max(eta, safeguard)
    return min(FORCING_MAX, max(eta, 0.1 * gtol / g2))


def newton(fun, solve, x0, gtol: float, xtol: float = 1e-12, max_iter: int = 200, *,
           inexact: bool = False, hess_min: float = 0.0) -> NewtonResult:
    """Minimise a smooth convex ``F`` by damped Newton.

    ``fun(x) -> (F(x), ∇F(x))``; ``solve(x, g) -> H(x)⁻¹ g`` for the Hessian ``H(x)`` (positive
    definite on the subspace the iterates move in; a direction in which ``F`` is flat, e.g. a
    per-prompt constant, may be left out of the solve). Step ``d = −H⁻¹g``; with the Newton
    decrement ``δ = gᵀH⁻¹g``: if ``δ > 1e-9 (1 + |F|)``, the first ``t = 2^{-j}`` with
    ``F(x + t d) ≤ F(x) − 1e-4 t δ`` (Armijo; globally convergent for convex ``F``), else the
    first with ``max|∇F(x + t d)| < max|∇F(x)|`` (once ``max|g| ≤ gtol``: only ``t = 1``, and
    only if it halves ``max|g|``). Stops at ``max|g| ≤ gtol`` and
    ``max|d| ≤ xtol (1 + max|x|)``, or when no step is accepted (see :class:`NewtonResult`). BLAS
    limited to one thread as in :func:`lbfgs`.

    ``inexact=True`` (inexact Newton, for iterative inner solvers): ``solve(x, g, rtol)`` may
    return ``d̃`` with ``‖H d̃ − g‖₂ ≤ rtol ‖g‖₂``; ``rtol=None`` asks for the solver's tightest
    solve (for :class:`LaplacianRidge`, :data:`CG_RTOL`, as with ``inexact=False``). While
    ``max|g| > gtol``, ``rtol`` is the forcing term ``η_k`` of :data:`FORCING_MAX`. Once
    ``max|g| ≤ gtol`` the solve serves the stop test, which must hold for the *exact* step
    ``d``: with ``hess_min > 0``, a lower bound on ``H``'s eigenvalues on the subspace the
    iterates move in, ``‖d̃ − d‖₂ ≤ rtol ‖g‖₂ / hess_min``, so the solve may stop at
    ``rtol = 0.1 · hess_min · xtol (1 + max|x|) / ‖g‖₂`` and the test reads
    ``max|d̃| + rtol ‖g‖₂ / hess_min ≤ xtol (1 + max|x|)`` (implying the exact one); where that
    ``rtol`` is below 1e-10, or ``hess_min = 0``, the solve is the tightest and the test as for
    ``inexact=False``. A loose step that no backtracking accepts is recomputed tightly before
    the method gives up. So the stopping rules and the certificate are those of the exact
    method; only the path is cheaper. ``nsolve_loose`` in the result counts the loose solves.
    """
    x = np.array(x0, dtype=np.float64)
    g2_prev = eta = None
    n_loose = 0
    with blas_one_thread():
        f, g = fun(x)
        nfev, nit = 1, 0
        gn = float(np.abs(g).max()) if g.size else 0.0
        status = "max_iter"
        while True:
            if gn == 0.0:
                status = "gtol"
                break
            if nit >= max_iter:
                break
            rtol = None
            xstop = xtol * (1.0 + float(np.abs(x).max()))
            if inexact:
                g2 = float(np.sqrt(g @ g))
                if gn > gtol:
                    eta = rtol = _forcing(g2, g2_prev, eta, gtol)
                    g2_prev = g2
                elif hess_min > 0.0 and 0.1 * hess_min * xstop / g2 >= _LOOSE_STOP_MIN:
                    rtol = min(FORCING_MAX, 0.1 * hess_min * xstop / g2)
            while True:  # once, or twice when a loose step is not accepted: then tightly
                d = -(solve(x, g, rtol) if inexact else solve(x, g))
                n_loose += rtol is not None
                d_err = 0.0 if rtol is None else rtol * g2 / hess_min if hess_min > 0.0 else np.inf
                if gn <= gtol and float(np.abs(d).max()) + d_err <= xstop:
                    status = "gtol"
                    break
                delta = -float(g @ d)
                by_value = delta > _ROUNDING_DECREMENT * (1.0 + abs(f))
                # below gtol only a full step that halves max|g| counts as progress (anything less
                # is rounding noise; without this rule noise steps could go on until max_iter)
                floor = not by_value and gn <= gtol
                t, accepted = 1.0, False
                for _ in range(1 if floor else _MAX_HALVINGS):
                    xn = x + t * d
                    fn, gnew = fun(xn)
                    nfev += 1
                    gnn = float(np.abs(gnew).max())
                    if by_value:
                        ok = np.isfinite(fn) and fn <= f - _ARMIJO * t * delta
                    else:
                        ok = np.isfinite(fn) and gnn <= (0.5 * gn if floor else gn) and gnn < gn
                    if ok:
                        accepted = True
                        break
                    t *= 0.5
                    if not by_value and t < 1e-3:
                        break
                if accepted or rtol is None:
                    break
                rtol = None
            if status == "gtol":
                break
            if not accepted:
                status = "line search" if by_value else "rounding"
                break
            x, f, g, gn = xn, fn, gnew, gnn
            nit += 1
    return NewtonResult(x=x, fun=float(f), jac=g, nit=nit, nfev=nfev, grad_norm=gn, status=status,
                        nsolve_loose=n_loose)


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
    (:func:`newton`) certifies its result by the exactly evaluated gradient, never by the
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
        self._cg = None
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
        if self._cg is not None:
            cg = self._cg
            out[cg["coords"]] = self._conjugate_gradients(w if cg["pairs"] is None else w[cg["pairs"]], lam,
                                                          rhs[cg["coords"]], rtol)
        return out

    def _conjugate_gradients(self, w, lam, b, rtol):
        cg = self._cg
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
def _cg_kernel(indptr, indices, data, diag, dinv, comp, b, tol2, max_iter, x, rr):
    """Jacobi-preconditioned conjugate gradients for ``(D + U + Uᵀ) x = b`` (see
    :class:`LaplacianRidge`) on ``K = tol2.size`` components at once (``comp[i]`` = component of
    coordinate ``i``): per-component inner products and step lengths, component ``k`` frozen once
    ``‖r_k‖₂² ≤ tol2[k]``. Writes ``x`` (from ``x = 0``) and the final ``rr[k] = ‖r_k‖₂²``;
    returns the iterations. One pass for the product (``_kernels.sym_upper_matvec``), one for
    ``pᵀq``, one for the ``x``, ``r``, ``z`` updates with ``‖r‖²`` and ``rᵀz``, one for ``p``;
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
    rr[:] = 0.0
    for i in range(ns):
        x[i] = 0.0
        zi = r[i] * dinv[i]
        z[i] = zi
        p[i] = zi
        rz[comp[i]] += r[i] * zi
        rr[comp[i]] += r[i] * r[i]
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
        if K == 1:
            bt = beta[0]
            for i in range(ns):
                p[i] = z[i] + bt * p[i]
        else:
            for i in range(ns):
                p[i] = z[i] + beta[comp[i]] * p[i]
        it += 1
    return it


def converged(grad_norm: float, n: float) -> bool:
    return bool(grad_norm <= 1e-6 * max(1.0, float(n)))


def check_l2(l2, *, positive: bool) -> float:
    l2 = float(l2)
    if not np.isfinite(l2) or l2 < 0 or (positive and l2 == 0):
        need = "> 0 (the tabular MLE can lie at infinity)" if positive else ">= 0"
        raise ValueError(f"l2 must be finite and {need}, got {l2}")
    return l2


def same_policy(a: np.ndarray, b: np.ndarray) -> bool:
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb):
        return False
    return bool(np.all(np.abs(a[fa] - b[fa]) <= SAME_POLICY_ATOL))


def tie_tolerance(values: np.ndarray, vmax: float) -> float:
    """How far below the best value ``vmax`` a member still ties (see the module docstring):
    relative, ``TIE_RTOL·|vmax|``, when every value is ``≤ 0``, else ``TIE_RTOL·max(1, |vmax|)``.
    Never larger than ``TIE_RTOL·max(1, |vmax|)``."""
    if np.all(values <= 0):
        return TIE_RTOL * abs(vmax)
    return TIE_RTOL * max(1.0, abs(vmax))


def finite_pick(values: np.ndarray, members: np.ndarray):
    """``(k, set_valued, n_maximisers)`` (see the module docstring)."""
    vmax = float(np.max(values))
    if vmax == -np.inf:
        ties = np.arange(values.size)
    else:
        ties = np.flatnonzero(values >= vmax - tie_tolerance(values, vmax))
    k = int(ties[0])
    distinct = any(not same_policy(members[j], members[k]) for j in ties[1:])
    return k, distinct, int(ties.size)
