"""Solver plumbing shared by every estimator: one L-BFGS entry point, a damped Newton method,
the convergence certificate, the ridge-weight check and the finite-class argmax rule. The block
Laplacian-plus-ridge solve of the tabular problems that Newton calls lives in
:mod:`genver._laplacian` (:class:`~genver._laplacian.LaplacianRidge`; its names are re-exported
here, the solvers' one import point).

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
from scipy import optimize
from threadpoolctl import ThreadpoolController

from ._laplacian import CG_MAX_ITER, CG_RTOL, DENSE_MAX, LaplacianRidge, laplacian_dense_max

__all__ = [
    "GTOL", "TIE_RTOL", "SAME_POLICY_ATOL", "NEWTON_RTOL", "FORCING_MAX", "FORCING_GAMMA",
    "blas_one_thread", "lbfgs", "NewtonResult", "newton", "converged", "check_l2", "same_policy",
    "tie_tolerance", "finite_pick",
    # re-exported from genver._laplacian
    "DENSE_MAX", "CG_RTOL", "CG_MAX_ITER", "LaplacianRidge", "laplacian_dense_max",
]

GTOL = 1e-9
TIE_RTOL = 1e-12
SAME_POLICY_ATOL = 1e-12
_controller: ThreadpoolController | None = None


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


def _inner_rtol(g2, gn, gtol, xstop, hess_min, g2_prev, eta):
    """The relative residual to which :func:`newton` (``inexact=True``) lets the inner solve stop,
    for ``‖g‖₂ = g2``, ``max|g| = gn`` and the step target ``xstop = xtol (1 + max|x|)``: the
    forcing term while ``gn > gtol``, then the stop-test tolerance through ``hess_min`` (see
    :func:`newton`), or ``None`` (the tightest solve). Returns ``(rtol, eta, g2_prev)``, the
    forcing state updated."""
    if gn > gtol:
        eta = _forcing(g2, g2_prev, eta, gtol)
        return eta, eta, g2
    if hess_min > 0.0 and 0.1 * hess_min * xstop / g2 >= _LOOSE_STOP_MIN:
        return min(FORCING_MAX, 0.1 * hess_min * xstop / g2), eta, g2_prev
    return None, eta, g2_prev


def _backtrack(fun, x, f, gn, d, delta, by_value, gtol):
    """The backtracking line search of :func:`newton` along ``d`` from ``x`` (``F(x) = f``,
    ``max|∇F(x)| = gn``, Newton decrement ``delta``): ``t = 1, ½, ¼, …`` until Armijo holds
    (``by_value``) or ``max|∇F|`` decreases (the rounding regime; at most down to ``t = 1e-3``,
    and below ``gtol`` only ``t = 1`` that halves it). Returns ``((x', F(x'), ∇F(x'),
    max|∇F(x')|) or None when no step is accepted, evaluations of F)``."""
    # below gtol only a full step that halves max|g| counts as progress (anything less
    # is rounding noise; without this rule noise steps could go on until max_iter)
    floor = not by_value and gn <= gtol
    t, nfev = 1.0, 0
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
            return (xn, fn, gnew, gnn), nfev
        t *= 0.5
        if not by_value and t < 1e-3:
            break
    return None, nfev


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
    solve (for :class:`~genver._laplacian.LaplacianRidge`, :data:`~genver._laplacian.CG_RTOL`, as
    with ``inexact=False``). While
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
    g2_prev: float | None = None
    eta: float | None = None
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
            rtol: float | None = None
            g2 = 0.0
            xstop = xtol * (1.0 + float(np.abs(x).max()))
            if inexact:
                g2 = float(np.sqrt(g @ g))
                rtol, eta, g2_prev = _inner_rtol(g2, gn, gtol, xstop, hess_min, g2_prev, eta)
            while True:  # once, or twice when a loose step is not accepted: then tightly
                d = -(solve(x, g, rtol) if inexact else solve(x, g))
                n_loose += rtol is not None
                d_err = 0.0 if rtol is None else rtol * g2 / hess_min if hess_min > 0.0 else np.inf
                if gn <= gtol and float(np.abs(d).max()) + d_err <= xstop:
                    status = "gtol"
                    break
                delta = -float(g @ d)
                by_value = delta > _ROUNDING_DECREMENT * (1.0 + abs(f))
                step, used = _backtrack(fun, x, f, gn, d, delta, by_value, gtol)
                nfev += used
                if step is not None or rtol is None:
                    break
                rtol = None
            if status == "gtol":
                break
            if step is None:
                status = "line search" if by_value else "rounding"
                break
            x, f, g, gn = step
            nit += 1
    return NewtonResult(x=x, fun=float(f), jac=g, nit=nit, nfev=nfev, grad_norm=gn, status=status,
                        nsolve_loose=n_loose)


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
