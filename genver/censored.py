r"""Censored regression: the maximum-likelihood line through exact, right- and left-censored points.

The model, over points ``s``, is ``y_s = α + a·x_s + σ·z_s`` with ``z_s ~ N(0, 1)`` i.i.d. A point
is exact (``y_s`` observed, kind :data:`EXACT`), right-censored (only ``y > y_s`` known, kind
:data:`RIGHT`), left-censored (only ``y ≤ y_s`` known, kind :data:`LEFT`) or undefined (left out,
kind :data:`UNDEFINED`). The Tobit-style log-likelihood is

    ``ℓ = Σ_exact [−log σ − ½ u_s²] + Σ_right log Φ(−u_s) + Σ_left log Φ(u_s)``,
    ``u_s = (y_s − α − a x_s)/σ`` (``y_s`` the bound for a censored point),

maximised in Olsen's (1978) parametrisation ``γ = (α, a)/σ``, ``τ = 1/σ``, where ``−ℓ`` is
convex: damped Newton steps with the analytic Hessian find the global maximum over
``σ ≥ σ_min`` (checked against a direct Nelder–Mead maximisation of ``ℓ`` in ``tests/naive.py``).
Without censored points the maximum-likelihood ``(α, a)`` is ordinary least squares
(:func:`ols_fit`). Identifiability: at least 2 exact points at distinct ``x``, otherwise the fit
is NaN. :mod:`genver.scaling` uses it for ``log N_ε`` against ``log dim`` (where the censoring of
``N_ε`` and the floor ``σ_min`` are defined).

Intervals: a grid quantity such as ``N_ε`` is known as an interval ``(L, U)`` —
exact ``[N, N]``, right-censored ``(n_max, ∞)``, left-censored ``(0, n_min]``, undefined
``(0, ∞)`` (:func:`route_interval`); a ratio of two such quantities lies in
``(L_off/U_on, U_off/L_on)`` (:func:`ratio_interval`); :func:`classify_intervals` turns
intervals into the kinds and log-values the fit takes.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

__all__ = ["EXACT", "RIGHT", "LEFT", "UNDEFINED", "ols_fit", "censored_fit", "route_interval", "ratio_interval",
           "classify_intervals", "point_value"]

#: kinds of a point: exact, right-censored (a lower bound), left-censored (an upper bound), undefined
EXACT, RIGHT, LEFT, UNDEFINED = 0, 1, 2, 3


def ols_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(intercept, slope, residual sd) of OLS of ``y`` on ``x``.

    Parameters
    ----------
    x, y : numpy.ndarray
        the points, shape ``(n,)``, ``x`` not all equal.

    Returns
    -------
    tuple of (float, float, float)
        ``(α, a, σ)``: the least-squares line ``y ≈ α + a x`` and the root mean squared residual
        (the maximum-likelihood ``σ``, divisor ``n``).

    Examples
    --------
    >>> import numpy as np
    >>> ols_fit(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]))
    (1.0, 2.0, 0.0)
    """
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    a = float(((x - xm) * (y - ym)).sum() / sxx)
    alpha = float(ym - a * xm)
    rss = float(((y - alpha - a * x) ** 2).sum())
    return alpha, a, math.sqrt(rss / x.size)


def censored_fit(x, y, kind, sigma_min: float, start=None) -> tuple[float, float, float]:
    """Maximum-likelihood ``(α, a, σ)`` of ``y = α + a x + σ z`` with right- (``kind`` 1) and
    left-censored (2) points at their bounds ``y``, exact points (0); undefined points (3) are
    ignored. ``σ ≥ sigma_min``. NaNs when fewer than 2 exact points lie at distinct ``x`` or
    the optimiser fails (see the module docstring). ``start``: ``(α, a, σ)`` to start Newton
    from (default: the exact points' OLS line); the optimum does not depend on it (convexity).

    Parameters
    ----------
    x, y : array_like
        the points, shape ``(n,)``: ``y`` the value of an exact point, the bound of a censored one.
    kind : array_like of int
        per point :data:`EXACT`, :data:`RIGHT`, :data:`LEFT` or :data:`UNDEFINED`.
    sigma_min : float
        the floor of ``σ`` (> 0 when a censored point is present).
    start : tuple of (float, float, float) or None
        the starting ``(α, a, σ)``.

    Returns
    -------
    tuple of (float, float, float)
        ``(α, a, σ)``, or three NaNs when undefined.

    Examples
    --------
    Without censored points the fit is OLS (``σ`` floored); a right-censored point above the
    line leaves it as it is:

    >>> censored_fit([0.0, 1.0, 2.0], [1.0, 3.0, 5.0], [EXACT, EXACT, EXACT], sigma_min=0.1)
    (1.0, 2.0, 0.1)
    >>> a = censored_fit([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 6.0], [EXACT, EXACT, EXACT, RIGHT], 0.1)[1]
    >>> round(a, 6)
    2.0
    """
    x, y, kind = (np.asarray(v) for v in (x, y, kind))
    use = kind != UNDEFINED
    x, y, kind = x[use].astype(float), y[use].astype(float), kind[use]
    ex = kind == EXACT
    nan3 = (float("nan"),) * 3
    if ex.sum() < 2 or np.ptp(x[ex]) == 0:
        return nan3
    alpha0, a0, sd0 = ols_fit(x[ex], y[ex])
    if ex.all():
        return alpha0, a0, max(sd0, sigma_min)
    xc = x.mean()
    X = np.column_stack([np.ones_like(x), x - xc])
    if start is not None and np.all(np.isfinite(start)):
        alpha0, a0, sd0 = start
    sig0 = max(sd0, sigma_min)
    theta = _tobit_newton(X, y, kind, np.array([(alpha0 + a0 * xc) / sig0, a0 / sig0, 1.0 / sig0]),
                          tau_max=1.0 / sigma_min)
    if theta is None:
        return nan3
    g0, g1, tau = theta
    a = g1 / tau
    return float(g0 / tau - a * xc), float(a), float(1.0 / tau)


def _tobit_terms(theta, X, y, ex, right, value_only: bool = False):
    """``−ℓ`` (up to a constant), its gradient and Hessian in ``θ = (γ, τ)``:
    ``u = τ y − Xγ``; exact ``−log τ + u²/2``; right ``−log Φ(−u)``; left ``−log Φ(u)``.
    With ``w = −u`` (right) or ``u`` (left) and the inverse Mills ratio ``m = φ(w)/Φ(w)``:
    ``∂f/∂u = u | m | −m`` and ``∂²f/∂u² = 1 | m(w + m)`` (exact | censored); ``∇u = (−X, y)``."""
    tau = theta[2]
    u = tau * y - X @ theta[:2]
    w = np.where(right, -u, u)
    cen = ~ex
    logphi = log_ndtr(w[cen])
    f = -ex.sum() * math.log(tau) + 0.5 * float((u[ex] ** 2).sum()) - float(logphi.sum())
    if value_only:
        return f
    m = np.exp(-0.5 * w[cen] ** 2 - 0.5 * math.log(2 * math.pi) - logphi)
    d1, d2 = u.copy(), np.ones_like(u)
    d1[cen] = np.where(right[cen], m, -m)
    d2[cen] = m * (w[cen] + m)
    J = np.column_stack([-X, y])  # ∇u per point
    grad = d1 @ J
    grad[2] -= ex.sum() / tau
    hess = (J * d2[:, None]).T @ J
    hess[2, 2] += ex.sum() / tau**2
    return f, grad, hess


def _tobit_newton(X, y, kind, theta, tau_max: float, tol: float = 1e-20, max_iter: int = 100):
    """Minimise the convex ``−ℓ(γ, τ)`` over ``0 < τ ≤ tau_max`` by damped Newton steps
    (backtracking to the feasible set and Armijo decrease). Convexity makes the constrained
    optimum either interior or on ``τ = tau_max``: first solve with ``τ`` fixed there (Newton
    in ``γ``); if ``∂(−ℓ)/∂τ > 0`` at that point the optimum is interior and is found from it
    in all three coordinates. An interior start is tried in all three coordinates first (a
    stationary point is the optimum). ``None`` when Newton does not converge."""
    ex, right = kind == EXACT, kind == RIGHT
    theta = theta.astype(float).copy()
    theta[2] = min(theta[2], tau_max)

    def solve(theta, free):
        for _ in range(max_iter):
            f, g, H = _tobit_terms(theta, X, y, ex, right)
            gi, Hi = g[free], H[np.ix_(free, free)]
            try:
                step = -np.linalg.solve(Hi, gi)
            except np.linalg.LinAlgError:
                return None
            decrement = float(-gi @ step)
            if not np.isfinite(decrement):
                return None
            if decrement <= tol * max(1.0, abs(f)):
                return theta
            t = 1.0
            if decrement > 1e-10 * max(1.0, abs(f)):  # damped phase; near the optimum the full step
                while True:                             # is taken (Armijo cannot see below rounding)
                    cand = theta.copy()
                    cand[free] += t * step
                    if 0 < cand[2] <= tau_max and _tobit_terms(cand, X, y, ex, right, value_only=True) <= \
                            f - 1e-4 * t * decrement:
                        break
                    t *= 0.5
                    if t < 1e-12:
                        return None
            else:
                cand = theta.copy()
                cand[free] += step
                if not 0 < cand[2] <= tau_max:
                    return theta
            theta = cand
        return None

    if theta[2] < tau_max:  # an interior start: a stationary point found from it is the optimum
        found = solve(theta, np.array([True, True, True]))
        if found is not None:
            return found
    theta[2] = tau_max
    theta = solve(theta, np.array([True, True, False]))
    if theta is None:
        return None
    if _tobit_terms(theta, X, y, ex, right)[1][2] > 0:  # −ℓ rises with τ: interior optimum
        theta = solve(theta, np.array([True, True, True]))
    return theta


# --------------------------------------------------------------------------- intervals and kinds
def route_interval(N: np.ndarray, n_min: float | np.ndarray,
                   n_max: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``N_ε`` values (inf: not reached, NaN: no rows) as intervals ``(L, U)``: exact ``[N, N]``;
    ``N_ε = n_min`` (met at the smallest ``n``) is left-censored ``(0, n_min]``; not reached
    is right-censored ``(n_max, ∞)``; no rows is undefined ``(0, ∞)``.

    Parameters
    ----------
    N : numpy.ndarray
        the ``N_ε`` values (grid values, ``inf`` or NaN).
    n_min, n_max : float or numpy.ndarray
        the smallest and largest grid ``n`` (per value, broadcast against ``N``).

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray)
        ``(L, U)``, shaped as ``N``.

    Examples
    --------
    >>> L, U = route_interval(np.array([64.0, 8.0, np.inf, np.nan]), 8.0, 512.0)
    >>> L.tolist(), U.tolist()
    ([64.0, 0.0, 512.0, 0.0], [64.0, 8.0, inf, inf])
    """
    N = np.asarray(N, dtype=float)
    L = np.where(N == n_min, 0.0, N)
    U = N.copy()
    L = np.where(np.isinf(N), n_max, L)
    U = np.where(np.isnan(N), np.inf, U)
    L = np.where(np.isnan(N), 0.0, L)
    return L, U


def ratio_interval(off, on):
    """The interval of ``ρ = N_off/N_on`` from the routes' intervals:
    ``ρ ∈ (L_off/U_on, U_off/L_on)`` (``L_on = 0``: ``U = ∞``; ``U_on = ∞``: ``L = 0``).

    Parameters
    ----------
    off, on : tuple of (numpy.ndarray, numpy.ndarray)
        ``(L, U)`` of each route (:func:`route_interval`).

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray)
        ``(L, U)`` of the ratio.
    """
    (Lo, Uo), (Ln, Un) = off, on
    with np.errstate(divide="ignore", invalid="ignore"):
        L = np.where(np.isinf(Un), 0.0, Lo / Un)
        U = np.where(Ln == 0, np.inf, Uo / np.where(Ln == 0, 1.0, Ln))
    return L, U


def classify_intervals(L: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kind, log-value) of intervals: exact (L = U), right (L > 0, U = ∞), left (L = 0,
    U < ∞), undefined (both open). The log-value is ``log U`` for exact and left points,
    ``log L`` for right ones, NaN for undefined ones.

    Parameters
    ----------
    L, U : numpy.ndarray
        the intervals' ends.

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray)
        the kinds (:data:`EXACT`, :data:`RIGHT`, :data:`LEFT`, :data:`UNDEFINED`) and the
        log-values, the ``(kind, y)`` :func:`censored_fit` takes.

    Examples
    --------
    >>> kind, y = classify_intervals(np.array([4.0, 512.0, 0.0, 0.0]), np.array([4.0, np.inf, 8.0, np.inf]))
    >>> kind.tolist(), np.round(np.exp(y), 6).tolist()[:3]
    ([0, 1, 2, 3], [4.0, 512.0, 8.0])
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = (L == U) & np.isfinite(U) & (U > 0)
        right = ~exact & (L > 0) & np.isinf(U)
        left = ~exact & (L == 0) & np.isfinite(U) & (U > 0)
        kind = np.select([exact, right, left], [EXACT, RIGHT, LEFT], UNDEFINED)
        y = np.where(exact | left, np.log(np.where(U > 0, U, 1.0)), np.log(np.where(L > 0, L, 1.0)))
    return kind, np.where(kind == UNDEFINED, np.nan, y)


def point_value(kind, L, U) -> float:
    """The value drawn for a point: exact, the lower bound (right) or the upper bound (left).

    Parameters
    ----------
    kind : int
        the point's kind.
    L, U : float
        its interval.

    Returns
    -------
    float
        ``U`` (exact, left), ``L`` (right) or NaN (undefined).
    """
    return {EXACT: float(U), RIGHT: float(L), LEFT: float(U)}.get(int(kind), float("nan"))
