"""Solver plumbing shared by every estimator: one L-BFGS entry point, the convergence
certificate, the ridge-weight check and the finite-class argmax rule.

* :func:`lbfgs` runs scipy's L-BFGS-B with exact gradients, ``ftol = 0`` (stop on the gradient
  only) and BLAS limited to one thread: genver's problems make many tiny BLAS calls, and a
  multi-threaded BLAS on a busy 2-core machine turned a 0.18 s sweep unit into 2–12 s
  (measured), without ever helping.
* :func:`converged`: max-abs gradient ≤ ``1e-6·max(1, N)`` for an objective summed over ``N``
  samples (L-BFGS-B's own flag also reports line-search stalls at machine precision).
* :func:`finite_pick`: the lowest index among members within a relative ``1e-12`` of the best
  value — so rounding differences between two routes never change the pick — and whether a
  tied member is a *different* policy (then the optimum is a set).
"""
from __future__ import annotations

import numpy as np
from scipy import optimize
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


def finite_pick(values: np.ndarray, members: np.ndarray):
    """``(k, set_valued, n_maximisers)`` (see the module docstring)."""
    vmax = float(np.max(values))
    if vmax == -np.inf:
        ties = np.arange(values.size)
    else:
        ties = np.flatnonzero(values >= vmax - TIE_RTOL * max(1.0, abs(vmax)))
    k = int(ties[0])
    distinct = any(not same_policy(members[j], members[k]) for j in ties[1:])
    return k, distinct, int(ties.size)
