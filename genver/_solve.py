"""Solver plumbing shared by every estimator: one L-BFGS entry point, a damped Newton method
with the block Laplacian-plus-ridge solve of the tabular problems, the convergence certificate,
the ridge-weight check and the finite-class argmax rule.

* :func:`lbfgs` runs scipy's L-BFGS-B with exact gradients, ``ftol = 0`` (stop on the gradient
  only) and BLAS limited to one thread: genver's problems make many tiny BLAS calls, and a
  multi-threaded BLAS on a busy 2-core machine turned a 0.18 s sweep unit into 2–12 s
  (measured), without ever helping.
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
* :class:`LaplacianRidge` solves ``(L_w + λI) u = b`` for a block-diagonal weighted graph
  Laplacian ``L_w = Σ_k w_k (e_{a_k} − e_{b_k})(e_{a_k} − e_{b_k})ᵀ`` (blocks = prompts), the
  Hessian of every tabular Bradley–Terry/IPO problem (see :mod:`genver.estimators.mle`); dense
  ``(m × m)`` solves per block, blocks of similar size batched into one padded array.
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

from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize
from threadpoolctl import ThreadpoolController

GTOL = 1e-9
TIE_RTOL = 1e-12
SAME_POLICY_ATOL = 1e-12
_controller = None


def _blas_one_thread():
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def lbfgs(fun, x0, gtol: float = GTOL, max_iter: int = 20000):
    """Minimise ``fun(x) -> (value, gradient)``; returns ``(result, max-abs gradient)``."""
    with _blas_one_thread():
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
    ``max|H⁻¹g| ≤ xtol (1 + max|x|)``."""

    x: np.ndarray
    fun: float
    jac: np.ndarray
    nit: int
    nfev: int
    grad_norm: float
    status: str


#: Relative gradient target of :func:`newton` for objectives summed over ``N`` samples:
#: ``max|g| ≤ NEWTON_RTOL · max(1, N)`` — about 1000× the float64 rounding floor of such a gradient.
NEWTON_RTOL = 1e-13
_ARMIJO = 1e-4
_ROUNDING_DECREMENT = 1e-9  # gᵀH⁻¹g below this × (1 + |F|): F cannot judge the step; use max|g|
_MAX_HALVINGS = 60


def newton(fun, solve, x0, gtol: float, xtol: float = 1e-12, max_iter: int = 200) -> NewtonResult:
    """Minimise a smooth convex ``F`` by damped Newton.

    ``fun(x) -> (F(x), ∇F(x))``; ``solve(x, g) -> H(x)⁻¹ g`` for the Hessian ``H(x)`` (positive
    definite on the subspace the iterates move in; a direction in which ``F`` is flat, e.g. a
    per-prompt constant, may be left out of the solve). Step ``d = −H⁻¹g``; with the Newton
    decrement ``δ = gᵀH⁻¹g``: if ``δ > 1e-9 (1 + |F|)``, the first ``t = 2^{-j}`` with
    ``F(x + t d) ≤ F(x) − 1e-4 t δ`` (Armijo; globally convergent for convex ``F``), else the
    first with ``max|∇F(x + t d)| < max|∇F(x)|`` (once ``max|g| ≤ gtol``: only ``t = 1``, and
    only if it halves ``max|g|``). Stops at ``max|g| ≤ gtol`` and
    ``max|d| ≤ xtol (1 + max|x|)``, or when no step is accepted (see :class:`NewtonResult`). BLAS limited to one thread as in :func:`lbfgs`.
    """
    x = np.array(x0, dtype=np.float64)
    with _blas_one_thread():
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
            d = -solve(x, g)
            if gn <= gtol and float(np.abs(d).max()) <= xtol * (1.0 + float(np.abs(x).max())):
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
            if not accepted:
                status = "line search" if by_value else "rounding"
                break
            x, f, g, gn = xn, fn, gnew, gnn
            nit += 1
    return NewtonResult(x=x, fun=float(f), jac=g, nit=nit, nfev=nfev, grad_norm=gn, status=status)


class LaplacianRidge:
    """Solver for ``(L_w + λI) u = b`` with ``L_w = Σ_k w_k (e_{a_k} − e_{b_k})(e_{a_k} − e_{b_k})ᵀ``
    over ``n`` coordinates partitioned into blocks (``block[i]`` = block of coordinate ``i``;
    every pair ``(a_k, b_k)`` lies inside one block, so the matrix is block diagonal).

    The pair structure is fixed at construction; :meth:`solve` takes the weights ``w ≥ 0`` (one
    per pair; self-pairs ``a_k = b_k`` contribute nothing, repeated pairs add) and ``λ > 0``, so
    every block is symmetric positive definite. Blocks are sorted by size and batched, padded to
    the largest size of the batch (padding rows: ``λ`` on the diagonal, zero right-hand side),
    as long as a batch holds at most ``max_entries`` matrix entries; a batch of one block uses a
    Cholesky solve (LAPACK ``posv``), larger batches numpy's stacked LU solve.
    """

    def __init__(self, block, a, b, max_entries: int = 1 << 21):
        block = np.asarray(block, dtype=np.int64)
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if a.shape != b.shape or (a.size and (a.min() < 0 or max(a.max(), b.max()) >= block.size)):
            raise ValueError("pair indices must lie in [0, n)")
        if a.size and not np.array_equal(block[a], block[b]):
            raise ValueError("every pair must lie inside one block")
        self.n = block.size
        ids, inv, sizes = np.unique(block, return_inverse=True, return_counts=True)
        order = np.argsort(inv, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        local = np.empty(self.n, dtype=np.int64)
        local[order] = np.arange(self.n) - starts[inv[order]]
        pair_blk = inv[a]
        by_size = np.argsort(sizes, kind="stable")
        self._batches = []
        i = 0
        while i < by_size.size:
            j = i + 1
            m = int(sizes[by_size[i]])
            while j < by_size.size and (j - i + 1) * int(sizes[by_size[j]]) ** 2 <= max_entries:
                m = int(sizes[by_size[j]])
                j += 1
            blks = by_size[i:j]
            slot = np.full(ids.size, -1, dtype=np.int64)
            slot[blks] = np.arange(blks.size)
            B = blks.size
            coords = np.flatnonzero(slot[inv] >= 0)
            cpos = slot[inv[coords]] * m + local[coords]  # position in the (B, m) right-hand side
            pairs = np.flatnonzero(slot[pair_blk] >= 0)
            s = slot[pair_blk[pairs]] * (m * m)
            la, lb = local[a[pairs]], local[b[pairs]]
            idx4 = np.concatenate([s + la * (m + 1), s + lb * (m + 1), s + la * m + lb, s + lb * m + la])
            diag = (np.arange(B)[:, None] * (m * m) + np.arange(m)[None, :] * (m + 1)).ravel()
            self._batches.append((B, m, coords, cpos, pairs, idx4, diag))
            i = j

    def solve(self, w, lam: float, rhs) -> np.ndarray:
        """``u = (L_w + λI)⁻¹ rhs`` (``rhs`` of length ``n``)."""
        rhs = np.asarray(rhs, dtype=np.float64)
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
        return out


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
