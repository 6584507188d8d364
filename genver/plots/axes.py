"""Axis building blocks shared by the ``plot_*`` functions: grid layout, labelled log ticks,
exact zeros on the axis, ticks at the data, dodged series, CIs cut at the axes.

* :func:`grid_shape`: (rows, cols) for ``k`` panels with no empty panel where one exists;
* :func:`log_ticks`: labelled ticks at m × 10^k on a log axis, dense enough to read;
* :func:`mark_zeros`: exact zeros (an exactly optimal policy) as markers on the x axis, never as
  data at a floor;
* :func:`ticks_at`: ticks exactly at a few distinct values (knob settings, grid sizes);
* :func:`eval_bound`: a bound or prediction ``f(n)``, vectorised or point by point;
* :func:`dodge`: a data transform shifted by a few points, so series sharing x stay visible;
* :func:`cut_ci`: error-bar lengths of a CI cut at the axes' edges (the ends that were cut).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .style import format_value

__all__ = ["grid_shape", "log_ticks", "mark_zeros", "ticks_at", "eval_bound", "dodge", "cut_ci"]


def grid_shape(k: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, cols) for ``k`` panels with no empty panel where one exists within ``max_cols``
    columns (4 → 2×2, 6 → 2×3, 8 → 2×4), else the fewest empty cells (5 → 2×3: the sixth
    cell then holds the legend); ties go to the squarest grid.

    Parameters
    ----------
    k : int
        Number of panels.
    max_cols : int
        Most columns.

    Returns
    -------
    tuple of (int, int)
        ``(rows, cols)``.

    Examples
    --------
    >>> grid_shape(4), grid_shape(5), grid_shape(6), grid_shape(8)
    ((2, 2), (2, 3), (2, 3), (2, 4))
    """
    k, max_cols = max(int(k), 1), max(int(max_cols), 1)
    # (cost, shape) per column count; an empty cell costs two of squareness; the keys are distinct (−c)
    candidates = [((2 * (r * c - k) + abs(r - c), r * c - k, -c), (r, c))
                  for c in range(1, min(k, max_cols) + 1) for r in (math.ceil(k / c),)]
    return min(candidates)[1]


def _num_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        e = int(math.floor(math.log10(abs(v)) + 1e-9))
        m = v / 10**e
        return f"$10^{{{e}}}$" if abs(m - 1) < 1e-9 else f"${format_value(round(m, 3))}\\times10^{{{e}}}$"
    return format_value(float(f"{v:.3g}"))


def _x_labels(axis) -> int:
    """How many labels a log x axis holds: one per 0.42 in of its width (a number like "2000"
    and the gap to the next at the default sizes), 3 to 7."""
    ax = axis.axes
    try:
        width = ax.get_position().width * ax.figure.get_figwidth()
    except AttributeError:  # an Axes not on a figure yet
        return 7
    return max(3, min(7, int(width / 0.42)))


def log_ticks(axis, lo: float | None = None, hi: float | None = None, max_labels: int | None = None) -> None:
    """Labelled ticks on a log ``axis`` (``ax.xaxis`` / ``ax.yaxis``) for its current limits
    (or ``lo``, ``hi``), as plain numbers: at m × 10^k for the densest of m ∈ {1…9}, {1, 2, 5},
    {1, 3}, {1} that gives at most ``max_labels`` labels (default 10 on a y axis; on an x axis,
    whose labels are wider, one per 0.42 in of its width, 3 to 7), else at every or every other
    10^k; unlabelled minor ticks at 2…9 × 10^k (at 2 and 5 × 10^k on an axis wider than 3
    decades). Call it after the limits are final.

    Parameters
    ----------
    axis : matplotlib.axis.Axis
        The log axis.
    lo, hi : float or None
        The range to label (default: the axis' view interval).
    max_labels : int or None
        Most labelled ticks (default above).
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    a, b = axis.get_view_interval() if lo is None or hi is None else (lo, hi)
    a, b = sorted((float(a), float(b)))
    if not (a > 0 and np.isfinite(b)):
        return
    if max_labels is None:
        max_labels = _x_labels(axis) if axis.axis_name == "x" else 10
    e0, e1 = math.floor(math.log10(a)) - 1, math.ceil(math.log10(b)) + 1
    ticks = []
    for subs in ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0**e for e in range(e0, e1 + 1) for m in subs]
        ticks = [t for t in ticks if a * (1 - 1e-9) <= t <= b * (1 + 1e-9)]
        if len(ticks) <= max_labels:
            break
    if len(ticks) > max_labels or len(ticks) < 2:  # wide axis (or less than a decade): let LogLocator pick
        axis.set_major_locator(LogLocator(base=10, numticks=max_labels))
    else:
        axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _num_label(v)))  # plain 10, 100 (no mathtext)
    # unlabelled minor ticks: every 2…9 × 10^k on an axis of up to 3 decades, 2 and 5 × 10^k on a
    # wider one (where a decade is a few millimetres, eight ticks per decade are a grey band and
    # most of the layout's work)
    minor_subs = tuple(float(m) for m in range(2, 10)) if math.log10(b / a) <= 3 else (2.0, 5.0)
    axis.set_minor_locator(LogLocator(base=10, subs=minor_subs))
    axis.set_minor_formatter(NullFormatter())


def mark_zeros(ax, x, color, marker="o", *, transform=None):
    """Exact zeros on a log y axis: markers sitting on the x axis (y = 0 in axes coordinates),
    never at a data value, white-edged so they read as "on the axis". Returns the
    PathCollection (gid ``"exact_zero"``), ``None`` when ``x`` is empty. Set the y limits
    explicitly afterwards (the markers take no part in them).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    x : array_like of float
        x positions of the zeros.
    color : str
        Marker colour.
    marker : str
        Marker symbol.
    transform : matplotlib.transforms.Transform or None
        x transform (default ``ax.transData``; a :func:`dodge` one shifts the markers).

    Returns
    -------
    matplotlib.collections.PathCollection or None
        The markers.
    """
    from matplotlib.transforms import blended_transform_factory

    x = np.asarray(x, dtype=float)
    if not x.size:
        return None
    base = transform if transform is not None else ax.transData
    tr = blended_transform_factory(base, ax.transAxes)
    return ax.scatter(x, np.zeros_like(x), s=36, marker=marker, color=color, edgecolors="white",
                      linewidths=0.8, clip_on=False, zorder=5, transform=tr, gid="exact_zero")


def ticks_at(axis, values, max_ticks: int = 12):
    """Few distinct values (knob settings, grid sizes): put the ticks exactly at them.

    Parameters
    ----------
    axis : matplotlib.axis.Axis
        The axis.
    values : array_like of float
        The values (repeats allowed).
    max_ticks : int
        With more distinct values, leave the axis as it is.
    """
    from matplotlib.ticker import NullLocator

    u = np.unique(np.asarray(values, dtype=float))
    u = u[np.isfinite(u)]
    if 0 < u.size <= max_ticks:
        axis.set_ticks(u, [format_value(float(v)) for v in u])
        axis.set_minor_locator(NullLocator())


def eval_bound(bound: Callable, n: np.ndarray) -> np.ndarray:
    """``bound(n)`` as a float array of ``n``'s shape: one vectorised call, else point by point.

    Parameters
    ----------
    bound : callable
        ``n -> value``, scalar or vectorised.
    n : numpy.ndarray
        Where to evaluate it.

    Returns
    -------
    numpy.ndarray
        The values, shape of ``n``.
    """
    try:
        y = np.asarray(bound(n), dtype=float)
        if y.shape != n.shape:
            y = np.broadcast_to(y, n.shape).astype(float)
    except Exception:  # noqa: BLE001 - not vectorised: evaluate point by point
        y = np.array([float(bound(float(v))) for v in n])
    return y


def dodge(ax, i: int, k: int, step: float = 5.0):
    """Data transform shifted horizontally by a few points so that series sharing x values
    stay visible (series ``i`` of ``k``).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    i : int
        The series' position.
    k : int
        Number of series.
    step : float
        Shift between neighbouring series, in points.

    Returns
    -------
    matplotlib.transforms.Transform
        The shifted data transform (``ax.transData`` itself for the middle series).
    """
    from matplotlib.transforms import offset_copy

    dx = (i - (k - 1) / 2) * step
    return offset_copy(ax.transData, fig=ax.figure, x=dx, y=0.0, units="points") if dx else ax.transData


def cut_ci(y, lo, hi, floor, ceil):
    """Error bar lengths for points ``y`` with CI ``[lo, hi]`` drawn inside ``[floor, ceil]``:
    an end that is not finite, or outside the range, is cut at the range's edge. Returns
    (yerr (2, k), cut_below (k,), cut_above (k,)).

    Parameters
    ----------
    y : numpy.ndarray, shape (k,)
        The points.
    lo, hi : array_like of float, shape (k,)
        Their CI ends (NaN: no CI; ±inf allowed).
    floor, ceil : float
        The drawn range.

    Returns
    -------
    yerr : numpy.ndarray, shape (2, k)
        Error bar lengths below and above.
    cut_below, cut_above : numpy.ndarray of bool, shape (k,)
        Which ends were cut.
    """
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    none = np.isnan(lo) & np.isnan(hi)  # no CI at all (e.g. one seed): no error bar, not a cut one
    cut_lo = (~np.isfinite(lo) | (lo < floor)) & ~none & (y > floor)
    cut_hi = (~np.isfinite(hi) | (hi > ceil)) & ~none & (y < ceil)
    lo = np.minimum(np.where(cut_lo, floor, np.where(none, y, lo)), y)
    hi = np.maximum(np.where(cut_hi, ceil, np.where(none, y, hi)), y)
    return np.vstack([y - lo, hi - y]), cut_lo, cut_hi

