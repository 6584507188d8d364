r"""Figures from tidy results and from :mod:`genver.stats` tables.

Every ``plot_*`` function takes an optional ``ax`` and returns the Axes it drew on (rliable's
convention), so figures compose; :func:`sample_complexity_grid` returns a whole Figure and
:func:`save_figure` writes PNG (dpi 150) and PDF atomically (or the paper formats, PDF and SVG).

Backend safety: importing this module never imports ``matplotlib.pyplot`` nor selects a
backend. With ``ax=None`` a new Axes is made with ``pyplot.subplots`` only when pyplot is
already imported (notebooks, interactive sessions: the figure then shows inline), otherwise on a
plain :class:`matplotlib.figure.Figure` (headless batch runs: nothing global, no leak).

Conventions (a figure must read without its caption):

* axis labels carry the symbols of the project's paper notes (``n`` preference pairs,
  ``J_β(π*) − J_β(π̂)``, ``KL(π̂ ‖ π_ref)``, ``N_ε``), all in mathtext (one math style);
  panel titles name the swept knobs, ``|D| = 1024`` or ``H = 4`` (:func:`knob_label`,
  :func:`setting_title`), never a setting id;
* each estimator label keeps one colour and marker from a colour-blind-safe palette (Okabe &
  Ito 2008, :data:`PALETTE`): :func:`estimator_styles` of *all* the labels of a report, passed
  as ``styles=`` to every figure, gives the same label the same colour everywhere ("offline"
  first, "online" second, the rest sorted);
* an exact zero on a log axis (an exactly optimal policy) is not data at a floor: it is drawn
  as a marker sitting on the x axis (:func:`mark_zeros`, gid ``"exact_zero"``) and the line is
  broken there; a CI end outside the axes is cut at the axes' edge with an arrow head and the
  legend says so;
* censored values (``N_ε > n_max``; ratio bounds) are open markers with an arrow in the
  direction of the bound, never joined by a line to exact points;
* grids get as many panels as there are settings (:func:`grid_shape`); log axes get labelled
  ticks at 1, 2, 5 × 10^k (or 1, 3 × 10^k) where a decade is wide (:func:`log_ticks`).

:func:`use_style` (``"screen"``, the default, or ``"paper"``: 8 pt text, fonts embedded as
TrueType in PDF and as paths in SVG) is a context manager around the drawing; the paper widths
are :data:`PAPER_WIDTHS` (3.3 in, one column; 6.9 in, the full page). A new ``plot_*`` function
should use these helpers: ``styles.get(label)`` or ``estimator_styles(labels)`` for colours,
:func:`log_ticks` after setting limits, :func:`mark_zeros` for exact zeros.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = [
    "METRIC_LABELS",
    "KNOB_SYMBOLS",
    "PALETTE",
    "PAPER_WIDTHS",
    "metric_label",
    "knob_label",
    "setting_title",
    "estimator_colours",
    "estimator_styles",
    "grid_shape",
    "log_ticks",
    "mark_zeros",
    "use_style",
    "plot_sample_complexity",
    "plot_ratio_vs_knob",
    "plot_n_epsilon",
    "plot_frontier",
    "plot_best_of_n",
    "plot_policies",
    "sample_complexity_grid",
    "save_figure",
]

N_LABEL = r"$n$ (preference pairs)"
EPS = r"$\varepsilon$"

#: Axis label (mathtext) per metric name; unknown metrics use their own name.
METRIC_LABELS = {
    "suboptimality": r"$J_\beta(\pi^\star) - J_\beta(\hat\pi)$",
    "kl_to_optimal": r"$\mathrm{KL}(\hat\pi\,\|\,\pi^\star)$",
    "kl_to_reference": r"$\mathrm{KL}(\hat\pi\,\|\,\pi_{\mathrm{ref}})$",
    "expected_reward": r"$\mathbb{E}_{x,\,y\sim\hat\pi}\,[r^\star(x,y)]$",
    "win_rate": r"win rate $P(\hat\pi \succ \pi_{\mathrm{ref}})$",
    "bt_loglik": "held-out Bradley–Terry log-likelihood",
}

#: Mathtext symbol per knob name of the shipped specs (the paper notes' symbols); other knobs
#: are written as their names.
KNOB_SYMBOLS = {
    "n_distractors": r"|D|",
    "H": "H",
    "V": "V",
    "P": "P",
    "d": "d",
    "beta": r"\beta",
    "n": "n",
    "N": "N",
}

#: Okabe & Ito's colour-blind-safe palette (blue, vermillion, bluish green, reddish purple,
#: orange, sky blue, black, yellow): "offline" gets the first colour, "online" the second.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
#: Figure widths of ``--style paper``, inches: one column, the full page.
PAPER_WIDTHS = {"col": 3.3, "full": 6.9}
#: Colour of series that are not estimators (ratios, predictions, reference lines).
INK = "0.15"

_AGG_KNOWN = {
    "experiment", "setting_id", "estimator", "route", "n", "metric", "n_seeds", "mean",
    "mean_lo", "mean_hi", "iqm", "iqm_lo", "iqm_hi", "seed", "value",
}
_MARKERS = ["o", "s", "D", "v", "P", "X", "*", "h", "<", ">", "p", "d"]


def metric_label(metric) -> str:
    """Axis label for a metric name (see :data:`METRIC_LABELS`)."""
    return METRIC_LABELS.get(str(metric), str(metric))


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    return str(v)


def knob_label(knob, value=None) -> str:
    """``"$|D|$"`` for a knob, ``"$|D| = 1024$"`` with a value (mathtext for the symbols of
    :data:`KNOB_SYMBOLS`; other knobs as ``"name = value"`` in plain text)."""
    sym = KNOB_SYMBOLS.get(str(knob))
    if value is None:
        return f"${sym}$" if sym else str(knob)
    return f"${sym} = {_fmt(value)}$" if sym else f"{knob} = {_fmt(value)}"


def setting_title(row, knobs=None) -> str:
    """A panel title from the knob values of one setting (a row of a table): ``"$H = 4$"``,
    ``"$\\beta = 0.5$, peak = 2"``. ``knobs=None``: every column that is not a result column."""
    if knobs is None:
        knobs = [c for c in row.index if c not in _AGG_KNOWN]
    return ", ".join(knob_label(k, row[k]) for k in knobs if k in row.index)


def _new_axes(figsize=(5.5, 4.0)):
    if "matplotlib.pyplot" in sys.modules:
        plt = sys.modules["matplotlib.pyplot"]
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
        return ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _order(labels: Iterable) -> list:
    labels = [l for l in pd.unique(pd.Series(list(labels), dtype=object)) if l is not None]
    head = [l for l in ("offline", "online") if l in labels]
    rest = sorted((l for l in labels if l not in head), key=str)
    return head + rest


def estimator_colours(labels: Iterable) -> dict:
    """label -> colour of :data:`PALETTE`, in the order "offline", "online", then the rest
    sorted (cycling after eight). Give it every label of a report, so a label has the same
    colour in each of its figures."""
    return {l: PALETTE[i % len(PALETTE)] for i, l in enumerate(_order(labels))}


def estimator_styles(labels: Iterable) -> dict:
    """label -> ``dict(color, marker)``: :func:`estimator_colours` plus one marker per label
    (the ``styles=`` argument of every ``plot_*`` function)."""
    return {l: {"color": c, "marker": _MARKERS[i % len(_MARKERS)]}
            for i, (l, c) in enumerate(estimator_colours(labels).items())}



def grid_shape(k: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, cols) for ``k`` panels with no empty panel where one exists within ``max_cols``
    columns (4 → 2×2, 6 → 2×3, 8 → 2×4), else the fewest empty cells (5 → 2×3: the sixth
    cell then holds the legend); ties go to the squarest grid."""
    k, max_cols = max(int(k), 1), max(int(max_cols), 1)
    best = None
    for c in range(1, min(k, max_cols) + 1):
        r = math.ceil(k / c)
        key = (2 * (r * c - k) + abs(r - c), r * c - k, -c)  # an empty cell costs two of squareness
        if best is None or key < best[0]:
            best = (key, (r, c))
    return best[1]


def _num_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        e = int(math.floor(math.log10(abs(v)) + 1e-9))
        m = v / 10**e
        return f"$10^{{{e}}}$" if abs(m - 1) < 1e-9 else f"${_fmt(round(m, 3))}\\times10^{{{e}}}$"
    return _fmt(float(f"{v:.3g}"))


def log_ticks(axis, lo: float | None = None, hi: float | None = None, max_labels: int | None = None) -> None:
    """Labelled ticks on a log ``axis`` (``ax.xaxis`` / ``ax.yaxis``) for its current limits
    (or ``lo``, ``hi``), as plain numbers: at m × 10^k for the densest of m ∈ {1…9}, {1, 2, 5},
    {1, 3}, {1} that gives at most ``max_labels`` labels (default 10 on a y axis, 7 on an x
    axis, whose labels are wider), else at every or every other 10^k; unlabelled minor ticks at
    2…9 × 10^k. Call it after the limits are final."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    a, b = axis.get_view_interval() if lo is None or hi is None else (lo, hi)
    a, b = sorted((float(a), float(b)))
    if not (a > 0 and np.isfinite(b)):
        return
    if max_labels is None:
        max_labels = 7 if axis.axis_name == "x" else 10
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
    axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10)))
    axis.set_minor_formatter(NullFormatter())


def mark_zeros(ax, x, color, marker="o", *, transform=None):
    """Exact zeros on a log y axis: markers sitting on the x axis (y = 0 in axes coordinates),
    never at a data value, white-edged so they read as "on the axis". Returns the
    PathCollection (gid ``"exact_zero"``), ``None`` when ``x`` is empty. Set the y limits
    explicitly afterwards (the markers take no part in them)."""
    from matplotlib.transforms import blended_transform_factory

    x = np.asarray(x, dtype=float)
    if not x.size:
        return None
    base = transform if transform is not None else ax.transData
    tr = blended_transform_factory(base, ax.transAxes)
    return ax.scatter(x, np.zeros_like(x), s=36, marker=marker, color=color, edgecolors="white",
                      linewidths=0.8, clip_on=False, zorder=5, transform=tr, gid="exact_zero")


_STYLES = {
    "screen": {},
    "paper": {
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
        "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.titlesize": 8,
        "lines.linewidth": 1.0, "lines.markersize": 3.5, "errorbar.capsize": 2,
        "axes.linewidth": 0.6, "grid.linewidth": 0.4, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path", "mathtext.fontset": "dejavusans",
        "savefig.dpi": 300,
    },
}


def use_style(style: str = "screen"):
    """Context manager: draw (and save) inside it in ``"screen"`` style (matplotlib's defaults,
    the PNG figures) or ``"paper"`` style (8 pt text, thin lines, fonts embedded: TrueType in
    PDF, glyphs as paths in SVG). ``ValueError`` for another name."""
    import matplotlib

    if style not in _STYLES:
        raise ValueError(f"style must be one of {', '.join(_STYLES)}, got {style!r}")
    return matplotlib.rc_context(_STYLES[style])


def _fs(key: str) -> float:
    """The current style's size for titles ("title") and legends ("legend")."""
    import matplotlib

    if key == "title":
        return min(9.0, float(matplotlib.rcParams["font.size"]))
    return min(8.0, float(matplotlib.rcParams["font.size"]) - 1)


def _series_label(est, route) -> str:
    if route is None or (isinstance(route, float) and math.isnan(route)) or route in ("other", est):
        return str(est)
    return f"{est} ({route})"


def _numeric_positions(values: pd.Series):
    """Numeric x positions for a knob column; categorical knobs map to 0..k-1 with tick labels."""
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all() and len(values):
        return num.to_numpy(dtype=float), None
    cats = _order(values.astype(str))
    pos = {c: i for i, c in enumerate(cats)}
    return values.astype(str).map(pos).to_numpy(dtype=float), cats


def _maybe_logx(ax, x: np.ndarray, logx):
    """``logx=None``: log x when the knob is positive and spans ≥ 20×; symlog (linear below
    the smallest positive value) when it also holds zeros. Few distinct values get ticks at
    exactly those values."""
    x = x[np.isfinite(x)]
    pos = x[x > 0]
    if logx is None:
        logx = bool(pos.size >= 2) and (x >= 0).all() and pos.max() / pos.min() >= 20
    if logx:  # margins of 1.4× each side, so that dodged points stay inside
        if (x > 0).all():
            ax.set_xscale("log")
            ax.set_xlim(pos.min() / 1.4, pos.max() * 1.4)
        else:
            lt = float(pos.min()) if pos.size else 1.0
            ax.set_xscale("symlog", linthresh=lt, linscale=0.5)
            ax.set_xlim(-0.4 * lt, (pos.max() if pos.size else lt) * 1.4)  # no empty negative half
    _ticks_at(ax.xaxis, x)


def _ticks_at(axis, values, max_ticks: int = 12):
    """Few distinct values (knob settings, grid sizes): put the ticks exactly at them."""
    from matplotlib.ticker import NullLocator

    u = np.unique(np.asarray(values, dtype=float))
    u = u[np.isfinite(u)]
    if 0 < u.size <= max_ticks:
        axis.set_ticks(u, [_fmt(float(v)) for v in u])
        axis.set_minor_locator(NullLocator())


def _positive_floor(arrays: Sequence[np.ndarray], floor=None) -> float:
    """Bottom of a log axis: ``floor``, or half the smallest finite positive value."""
    if floor is not None:
        return float(floor)
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]) if len(arrays) else np.array([])
    pos = vals[np.isfinite(vals) & (vals > 0)]
    return float(0.5 * pos.min()) if pos.size else 1e-12


def _eval_bound(bound: Callable, n: np.ndarray) -> np.ndarray:
    try:
        y = np.asarray(bound(n), dtype=float)
        if y.shape != n.shape:
            y = np.broadcast_to(y, n.shape).astype(float)
    except Exception:  # noqa: BLE001 - not vectorised: evaluate point by point
        y = np.array([float(bound(float(v))) for v in n])
    return y


def _legend_below(fig, handles: dict, spare_ax=None):
    """One legend for a grid: in the spare (otherwise empty) panel when there is one, else
    below the panels."""
    if not handles:
        return None
    if spare_ax is not None:
        spare_ax.axis("off")
        return spare_ax.legend(list(handles.values()), list(handles), loc="center", frameon=False,
                               fontsize=_fs("legend"))
    return fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                      ncols=min(len(handles), 4), frameon=False, fontsize=_fs("legend"))


# --------------------------------------------------------------------------- sample complexity
#: the y label's second line when a panel has exact zeros (markers on the x axis) or CI bands
#: reaching below the axis
ZERO_NOTE = "exact 0 drawn at the x axis"
CLIP_NOTE = "CI cut there"


def plot_sample_complexity(
    agg: pd.DataFrame,
    setting_id=None,
    ax=None,
    bound: Callable | None = None,
    *,
    stat: str = "mean",
    floor: float | None = None,
    bound_label: str = "bound",
    styles: Mapping | None = None,
    legend: bool = True,
    title: str | None = None,
    xlabel: bool = True,
    ylabel: bool = True,
    knobs: Sequence[str] | None = None,
    notes: tuple[bool, bool] | None = None,
):
    """Log-log ``stat`` (``"mean"`` or ``"iqm"``) of the metric vs ``n``, one line per
    estimator, with the bootstrap CI as a band (table from :func:`genver.stats.aggregate`).

    ``setting_id=None`` plots the only setting, or the first one in sorted order. The title is
    the setting's knob values (:func:`setting_title`; ``knobs`` picks and orders them, default
    every knob column). A value ``≤ 0`` (an exactly optimal policy) is not plotted at a floor:
    it is a marker on the x axis (:func:`mark_zeros`) and the line is broken there; the axis
    starts at ``floor`` (default half the smallest positive value), and a CI band reaching
    below it is cut at the axis; the y label's second line says which of the two the panel has
(``notes=(zeros, cut)`` overrides, so that a grid states the same on every row). ``xlabel``/``ylabel=False`` leave the
    axis labels off (used by grids). ``bound``: a callable ``n -> value`` (scalar or
    vectorised) drawn dashed over the plotted ``n`` range.
    """
    if ax is None:
        ax = _new_axes()
    if stat not in ("mean", "iqm"):
        raise ValueError(f"stat must be 'mean' or 'iqm', got {stat!r}")
    d = agg
    if "setting_id" in d.columns and len(d):
        ids = sorted(d["setting_id"].astype(str).unique())
        sid = str(setting_id) if setting_id is not None else ids[0]
        d = d[d["setting_id"].astype(str) == sid]
    metric = d["metric"].iloc[0] if "metric" in d.columns and len(d) else "suboptimality"
    lo_c, hi_c = f"{stat}_lo", f"{stat}_hi"
    fl = _positive_floor([d[c].to_numpy(dtype=float) for c in (stat, lo_c, hi_c) if c in d.columns], floor)
    styles = dict(styles) if styles is not None else estimator_styles(d["estimator"] if len(d) else [])
    routes = d["route"] if "route" in d.columns else pd.Series("other", index=d.index)
    top, any_zero, any_clip = fl, False, False
    ests = _order(d["estimator"] if len(d) else [])
    for i_est, est in enumerate(ests):
        g = d[d["estimator"] == est].sort_values("n")
        st = styles.get(est) or estimator_styles([est])[est]
        n = g["n"].to_numpy(dtype=float)
        y = g[stat].to_numpy(dtype=float)
        zero = np.isfinite(y) & (y <= 0)
        y_line = np.where(np.isfinite(y) & (y > 0), y, np.nan)  # broken at zeros and NaN
        if np.isfinite(y_line).any():
            top = max(top, float(np.nanmax(y_line)))
        ax.plot(n, y_line, color=st["color"], marker=st["marker"], ms=4, lw=1.5,
                label=_series_label(est, routes.loc[g.index].iloc[0]))
        if zero.any():
            any_zero = True
            # side by side, so that estimators exactly optimal at the same n stay visible
            mark_zeros(ax, n[zero], st["color"], st["marker"], transform=_dodge(ax, i_est, len(ests), 4.0))
        if lo_c in g.columns and hi_c in g.columns:
            lo = g[lo_c].to_numpy(dtype=float)
            hi = g[hi_c].to_numpy(dtype=float)
            ok = np.isfinite(lo) & np.isfinite(hi) & (hi > 0)
            if ok.any():
                clipped = bool((lo[ok] < fl).any())
                any_clip |= clipped
                top = max(top, float(hi[ok].max()))
                ax.fill_between(n, np.where(ok, np.maximum(lo, fl), np.nan), np.where(ok, hi, np.nan),
                                color=st["color"], alpha=0.2, lw=0, gid="ci_clipped" if clipped else "ci")
    if bound is not None and len(d):
        nn = d["n"].to_numpy(dtype=float)
        nn = nn[np.isfinite(nn) & (nn > 0)]
        if nn.size:
            grid = np.geomspace(nn.min(), nn.max(), 100)
            by = _eval_bound(bound, grid)
            by = np.where(by > 0, by, np.nan)
            ax.plot(grid, by, "k--", lw=1.2, label=bound_label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if len(d):
        ax.set_ylim(fl, top * 1.3 if top > fl else fl * 10)
        log_ticks(ax.yaxis)
        nn = d["n"].to_numpy(dtype=float)
        nn = nn[np.isfinite(nn) & (nn > 0)]
        if nn.size:  # the zeros' markers take no part in autoscaling: the x range is every n
            ax.set_xlim(nn.min() / 1.2, nn.max() * 1.2)
            log_ticks(ax.xaxis)
    ylab = metric_label(metric) + (f" ({stat}, 95% CI)" if stat == "iqm" else " (mean, 95% CI)")
    any_zero, any_clip = notes if notes is not None else (any_zero, any_clip)
    note = "; ".join(t for t, on in ((ZERO_NOTE, any_zero), (CLIP_NOTE, any_clip)) if on)
    if ylabel:
        ax.set_ylabel(ylab + ("\n" + note if note else ""))
    if xlabel:
        ax.set_xlabel(N_LABEL)
    if title is None:
        title = setting_title(d.iloc[0], knobs) if len(d) else ""
    if title:
        ax.set_title(title, fontsize=_fs("title"))
    ax.grid(True, which="major", alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=_fs("legend"), frameon=False)
    return ax


def sample_complexity_grid(
    agg: pd.DataFrame,
    setting_ids: Sequence | None = None,
    *,
    ncols: int = 3,
    bound: Callable | Mapping | None = None,
    stat: str = "mean",
    panel_size: tuple[float, float] = (4.0, 3.2),
    sharey: bool = False,
    suptitle: str | None = None,
    styles: Mapping | None = None,
    knobs: Sequence[str] | None = None,
    width: float | None = None,
) -> Figure:
    """One :func:`plot_sample_complexity` panel per setting (all settings in sorted order by
    default), titled by its knob values, consistent estimator colours (``styles``, default
    :func:`estimator_styles` of the table's labels), one shared legend. The layout is
    :func:`grid_shape` of the number of settings with at most ``ncols`` columns: no empty
    panel (where one cell must stay free it holds the legend). ``bound`` is one callable for
    every panel or a mapping ``setting_id -> callable``. ``width`` (inches): the whole
    figure's width (panels scaled to it), else ``panel_size`` per panel. Returns a Figure (no
    pyplot)."""
    ids = list(setting_ids) if setting_ids is not None else (
        sorted(agg["setting_id"].astype(str).unique()) if len(agg) else [])
    nrows, ncols = grid_shape(len(ids), ncols)
    if width is not None:
        pw = float(width) / ncols
        panel_size = (pw, max(1.6, 0.8 * pw))
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    styles = dict(styles) if styles is not None else estimator_styles(agg["estimator"] if len(agg) else [])
    cols = [c for c in (stat, f"{stat}_lo", f"{stat}_hi") if c in agg.columns]
    floor = _positive_floor([agg[c].to_numpy(dtype=float) for c in cols])  # one axis bottom for all panels
    v = agg[stat].to_numpy(dtype=float) if stat in agg.columns else np.array([])
    lo_v = agg[f"{stat}_lo"].to_numpy(dtype=float) if f"{stat}_lo" in agg.columns else np.array([])
    notes = (bool((np.isfinite(v) & (v <= 0)).any()), bool((np.isfinite(lo_v) & (lo_v < floor)).any()))
    for i, sid in enumerate(ids):
        r, c = divmod(i, ncols)
        ax = axes[r][c]
        b = bound.get(sid) if isinstance(bound, Mapping) else bound
        below = (r + 1) * ncols + c >= len(ids)  # no panel underneath
        plot_sample_complexity(agg, setting_id=sid, ax=ax, bound=b, stat=stat, styles=styles,
                               legend=False, floor=floor, xlabel=below, ylabel=c == 0, knobs=knobs,
                               notes=notes)
    spare = [axes[j // ncols][j % ncols] for j in range(len(ids), nrows * ncols)]
    for ax in spare[1:]:
        ax.set_visible(False)
    handles = {}
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    _legend_below(fig, handles, spare[0] if spare else None)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


# --------------------------------------------------------------------------- ratio, N_ε
_KIND_STYLE = {
    "exact": dict(marker="o", label="exact"),
    "lower_bound": dict(marker="^", label="lower bound (offline never reached ε)"),
    "upper_bound": dict(marker="v", label="upper bound (online never reached ε)"),
}
#: legend text for a CI whose end lies outside the axes (infinite, or past the plotted range)
CI_CUT_LABEL = "CI runs past the axis: cut there (arrow)"
_RATIO_YLABEL = r"$N_\varepsilon(\mathrm{offline})\,/\,N_\varepsilon(\mathrm{online})$"
_NEPS_YLABEL = r"$N_\varepsilon$ (preference pairs to reach $\varepsilon$)"


def _dodge(ax, i: int, k: int, step: float = 5.0):
    """Data transform shifted horizontally by a few points so that series sharing x values
    stay visible (series ``i`` of ``k``)."""
    from matplotlib.transforms import offset_copy

    dx = (i - (k - 1) / 2) * step
    return offset_copy(ax.transData, fig=ax.figure, x=dx, y=0.0, units="points") if dx else ax.transData


def _cut_ci(y, lo, hi, floor, ceil):
    """Error bar lengths for points ``y`` with CI ``[lo, hi]`` drawn inside ``[floor, ceil]``:
    an end that is not finite, or outside the range, is cut at the range's edge. Returns
    (yerr (2, k), cut_below (k,), cut_above (k,))."""
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    none = np.isnan(lo) & np.isnan(hi)  # no CI at all (e.g. one seed): no error bar, not a cut one
    cut_lo = (~np.isfinite(lo) | (lo < floor)) & ~none & (y > floor)
    cut_hi = (~np.isfinite(hi) | (hi > ceil)) & ~none & (y < ceil)
    lo = np.minimum(np.where(cut_lo, floor, np.where(none, y, lo)), y)
    hi = np.maximum(np.where(cut_hi, ceil, np.where(none, y, hi)), y)
    return np.vstack([y - lo, hi - y]), cut_lo, cut_hi


def _draw_points(ax, x, y, lo, hi, kind, *, color, marker, floor, ceil, tr, label=None):
    """Exact points (filled, with their CI cut at ``[floor, ceil]`` and an arrow head where cut)
    and bounds (open markers with an arrow: ``kind`` ``"lower_bound"`` points up, ``"upper_bound"``
    down). Returns whether any CI was cut."""
    ex = kind == "exact"
    any_cut = False
    if ex.any():
        yerr, cut_lo, cut_hi = _cut_ci(y[ex], lo[ex], hi[ex], floor, ceil)
        yerr = np.where(np.isfinite(yerr), yerr, 0.0)
        ax.errorbar(x[ex], y[ex], yerr=yerr, fmt=marker, color=color, ms=5, capsize=3, lw=1.2,
                    transform=tr, label=label)
        label = None
        for cut, edge, m in ((cut_hi, ceil, "^"), (cut_lo, floor, "v")):
            if cut.any():
                any_cut = True
                ax.plot(x[ex][cut], np.full(cut.sum(), edge), ls="none", marker=m, ms=5, color=color,
                        transform=tr, clip_on=False, gid="ci_cut")
    for k, up in (("lower_bound", True), ("upper_bound", False)):
        m = kind == k
        if not m.any():
            continue
        yy = y[m]
        arrow = yy * 0.6 if up else yy * 0.375  # ×1.6 up / ÷1.6 down on a log axis
        yerr = np.vstack([np.zeros_like(yy), arrow]) if up else np.vstack([arrow, np.zeros_like(yy)])
        ax.errorbar(x[m], yy, yerr=yerr, lolims=up, uplims=not up, fmt="none", ecolor=color, color=color, lw=1.0,
                    transform=tr)
        ax.plot(x[m], yy, ls="none", marker="^" if up else "v", ms=8, mfc="none", mew=1.5, color=color,
                transform=tr, label=label, gid=k)
        label = None
    return any_cut


def _exact_line(ax, x, y, exact, *, color, tr, alpha=0.5):
    """Join the exact points in knob order, broken at every censored or missing point (a bound
    is never joined to an exact value). Only when the knob values are distinct."""
    if len(x) < 2 or not pd.Series(x).is_unique:
        return
    o = np.argsort(x)
    ax.plot(x[o], np.where(exact, y, np.nan)[o], color=color, lw=0.8, alpha=alpha, transform=tr)


def _y_range(values, logy: bool, pad: float = 1.6):
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & ((v > 0) if logy else True)]
    if not v.size:
        return (0.5, 2.0) if logy else (0.0, 1.0)
    if logy:
        return float(v.min() / pad), float(v.max() * pad)
    span = float(v.max() - min(0.0, v.min())) or 1.0
    return min(0.0, float(v.min())), float(v.max() + 0.12 * span)


def plot_ratio_vs_knob(
    ratio_df: pd.DataFrame,
    knob: str,
    ax=None,
    predicted=None,
    *,
    hue: str | None = None,
    logy: bool | None = None,
    logx: bool | None = None,
):
    """Sample-efficiency ratio ``N_ε(offline)/N_ε(online)`` vs a gap knob (table from
    :func:`genver.stats.efficiency_ratio`).

    Exact ratios are filled circles with their bootstrap CI as error bars, joined in knob
    order; a CI end outside the axes (an open end, 0 or ∞, or one past the plotted range) is cut
    at the axes' edge with an arrow head and the legend says so. Lower bounds are open ``▲``
    with an arrow up, upper bounds open ``▼`` with an arrow down, never joined to the exact
    points; undefined rows are left out and counted in the title. A dotted line marks ratio = 1.
    ``predicted``: ``None`` uses the ``predicted_ratio`` column when present (mean per knob
    value), ``False`` draws nothing, a callable maps knob values to a prediction, a column
    name or array gives values per row. ``hue`` splits the points by another column (one
    palette colour each). ``logy=None`` picks a log y axis when the values span more than 10×.
    """
    if ax is None:
        ax = _new_axes()
    d = ratio_df.copy() if len(ratio_df) else ratio_df
    kind = d["ratio_kind"] if "ratio_kind" in d.columns else pd.Series("exact", index=d.index)
    usable = ((kind != "undefined") & d["ratio"].notna()).to_numpy() if len(d) else np.array([], bool)
    n_undef = int((~usable).sum())
    x_all, cats = _numeric_positions(d[knob]) if len(d) else (np.array([]), None)
    y_all = d["ratio"].to_numpy(dtype=float) if len(d) else np.array([])
    lo_all = d["ratio_lo"].to_numpy(dtype=float) if "ratio_lo" in d.columns else np.full(len(d), np.nan)
    hi_all = d["ratio_hi"].to_numpy(dtype=float) if "ratio_hi" in d.columns else np.full(len(d), np.nan)
    kind_all = kind.to_numpy(dtype=object) if len(d) else np.array([], object)

    pred = None
    if predicted is not False and len(d):
        if predicted is None and "predicted_ratio" in d.columns:
            pred = d["predicted_ratio"].to_numpy(dtype=float)
        elif isinstance(predicted, str) and predicted in d.columns:
            pred = d[predicted].to_numpy(dtype=float)
        elif callable(predicted):
            pred = _eval_bound(predicted, x_all)
        elif predicted is not None:
            pred = np.broadcast_to(np.asarray(predicted, dtype=float), (len(d),))

    ex = usable & (kind_all == "exact")
    shown = np.concatenate([y_all[usable], lo_all[ex], hi_all[ex], pred if pred is not None else [], [1.0]])
    shown = shown[np.isfinite(shown) & (shown > 0)]
    if logy is None:
        logy = shown.size > 0 and shown.max() / shown.min() > 10
    if logy:
        ax.set_yscale("log")
    floor, ceil = _y_range(np.concatenate([y_all[usable], lo_all[ex][lo_all[ex] > 0], hi_all[ex],
                                           pred if pred is not None else [], [1.0]]), logy)
    if logy:  # room for the bounds' arrows
        b = usable & (kind_all != "exact")
        if b.any():
            floor = min(floor, float(np.nanmin(y_all[b])) / 2.2)
            ceil = max(ceil, float(np.nanmax(y_all[b])) * 2.2)

    groups = [(None, np.ones(len(d), dtype=bool))]
    hue_styles = {}
    if hue is not None and hue in d.columns and len(d):
        hv = d[hue]
        hue_styles = estimator_styles(hv)
        groups = [(h, (hv == h).to_numpy()) for h in _order(hv)]
    kinds_seen, any_cut = set(), False
    for i_h, (h, gmask) in enumerate(groups):
        tr = _dodge(ax, i_h, len(groups))
        color = hue_styles[h]["color"] if h is not None else INK
        m = gmask & usable
        kinds_seen |= set(kind_all[m])
        any_cut |= _draw_points(ax, x_all[m], y_all[m], lo_all[m], hi_all[m], kind_all[m], color=color,
                                marker="o", floor=floor, ceil=ceil, tr=tr)
        _exact_line(ax, x_all[m], y_all[m], kind_all[m] == "exact", color=color, tr=tr, alpha=0.6)
    if pred is not None:
        pm = np.isfinite(pred) & np.isfinite(x_all)
        if pm.any():
            s = pd.Series(pred[pm]).groupby(x_all[pm]).mean()
            ax.plot(s.index.to_numpy(), s.to_numpy(), color="0.45", ls="--", marker="x", ms=6, lw=1.2,
                    label=r"predicted $\log|\Pi|\,/\,\log|\mathcal{R}|$")
    ax.axhline(1.0, color="0.4", ls=":", lw=1.2)
    ax.set_ylim(floor, ceil)
    if logy:
        log_ticks(ax.yaxis)
    _maybe_logx(ax, x_all, logx if cats is None else False)
    if cats is not None:
        ax.set_xticks(range(len(cats)), cats)
    eps = d["eps"].iloc[0] if "eps" in d.columns and len(d) else None
    ax.set_xlabel(knob_label(knob))
    ax.set_ylabel(_RATIO_YLABEL)
    title = "sample-efficiency ratio" + (f", {EPS}$\\,=\\,{_fmt(eps)}$" if eps is not None else "")
    if n_undef:
        title += f" ({n_undef} undefined: neither route reached {EPS})"
    ax.set_title(title, fontsize=_fs("title"))
    ax.grid(True, alpha=0.3)
    ink = INK if hue is None else "0.3"
    handles = []
    for k in _KIND_STYLE:
        if k in kinds_seen:
            lab = _KIND_STYLE[k]["label"].replace("ε", EPS) + (" ± 95% CI" if k == "exact" else "")
            handles.append(Line2D([], [], color=ink, ls="none", marker=_KIND_STYLE[k]["marker"],
                                  mfc=ink if k == "exact" else "none", ms=6, label=lab))
    if any_cut:
        handles.append(Line2D([], [], color=ink, ls="none", marker="^", ms=5, label=CI_CUT_LABEL))
    handles += [h for h in ax.get_legend_handles_labels()[0] if h.get_label().startswith("predicted")]
    handles.append(Line2D([], [], color="0.4", ls=":", label="ratio = 1 (no gap)"))
    handles += [Line2D([], [], color=st["color"], ls="none", marker="s", label=f"{hue} = {_fmt(h)}")
                for h, st in hue_styles.items()]
    ax.legend(handles=handles, fontsize=_fs("legend"), frameon=False)
    return ax


def plot_n_epsilon(
    neps_df: pd.DataFrame,
    knob: str,
    ax=None,
    *,
    logx: bool | None = None,
    styles: Mapping | None = None,
):
    """N_ε vs a knob, one series per estimator (table from :func:`genver.stats.n_epsilon`).

    Reached values: filled markers with the bootstrap CI as error bars, joined in knob order.
    A CI end past the axes (an infinite upper end: "some resamples never reach ε") is cut at
    the axes' edge with an arrow head; the legend says so. Not reached: an open ``▲`` at
    ``censored_at`` with an arrow up (``N_ε > n_max``), never joined to the reached points. Log
    y axis with labelled ticks (:func:`log_ticks`).
    """
    if ax is None:
        ax = _new_axes()
    d = neps_df
    styles = dict(styles) if styles is not None else estimator_styles(d["estimator"] if len(d) else [])
    x_all, cats = _numeric_positions(d[knob]) if len(d) else (np.array([]), None)
    routes = d["route"] if "route" in d.columns else pd.Series("other", index=d.index)
    ax.set_yscale("log")
    floor, ceil = 0.5, 2.0
    if len(d):
        reached_all = d["reached"].to_numpy(dtype=bool)
        vals = [d["N_eps"].to_numpy(dtype=float)[reached_all], d["censored_at"].to_numpy(dtype=float)]
        if "N_eps_lo" in d.columns:
            vals.append(d["N_eps_lo"].to_numpy(dtype=float)[reached_all])
        floor, ceil = _y_range(np.concatenate(vals), True)
        if (~reached_all).any():
            ceil = max(ceil, float(np.nanmax(d["censored_at"].to_numpy(dtype=float)[~reached_all])) * 2.2)
    any_cens, any_cut = False, False
    ests = _order(d["estimator"] if len(d) else [])
    for i_est, est in enumerate(ests):
        tr = _dodge(ax, i_est, len(ests))
        m = (d["estimator"] == est).to_numpy()
        g = d[m]
        x = x_all[m]
        st = styles.get(est) or estimator_styles([est])[est]
        reached = g["reached"].to_numpy(dtype=bool)
        y = np.where(reached, g["N_eps"].to_numpy(dtype=float), g["censored_at"].to_numpy(dtype=float))
        lo = g["N_eps_lo"].to_numpy(dtype=float) if "N_eps_lo" in g.columns else np.full(len(g), np.nan)
        hi = g["N_eps_hi"].to_numpy(dtype=float) if "N_eps_hi" in g.columns else np.full(len(g), np.nan)
        kind = np.where(reached, "exact", "lower_bound").astype(object)
        any_cens |= bool((~reached).any())
        any_cut |= _draw_points(ax, x, y, lo, hi, kind, color=st["color"], marker=st["marker"], floor=floor,
                                ceil=ceil, tr=tr, label=_series_label(est, routes[m].iloc[0]))
        _exact_line(ax, x, y, reached, color=st["color"], tr=tr)
    ax.set_ylim(floor, ceil)
    log_ticks(ax.yaxis)
    _maybe_logx(ax, x_all, logx if cats is None else False)
    if cats is not None:
        ax.set_xticks(range(len(cats)), cats)
    eps = d["eps"].iloc[0] if "eps" in d.columns and len(d) else None
    metric = d["metric"].iloc[0] if "metric" in d.columns and len(d) else "suboptimality"
    ax.set_xlabel(knob_label(knob))
    ax.set_ylabel(_NEPS_YLABEL)
    ax.set_title(f"{metric} ≤ {EPS}" + (f"$\\,=\\,{_fmt(eps)}$" if eps is not None else ""), fontsize=_fs("title"))
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any_cens:
        handles.append(Line2D([], [], color="0.3", ls="none", marker="^", mfc="none", ms=7))
        labels.append(r"not reached: $N_\varepsilon > n_{\max}$ (arrow up)")
    if any_cut:
        handles.append(Line2D([], [], color="0.3", ls="none", marker="^", ms=5))
        labels.append(CI_CUT_LABEL)
    if handles:
        ax.legend(handles, labels, fontsize=_fs("legend"), frameon=False)
    return ax


# --------------------------------------------------------------------------- frontier, best-of-N
def _metric_means(df: pd.DataFrame, metric: str, keys: list[str]) -> pd.Series:
    """Mean of ``metric`` per ``keys`` from a tidy (``value``) or aggregated (``mean``) table."""
    d = df[df["metric"] == metric] if "metric" in df.columns else df
    col = "value" if "value" in d.columns else "mean"
    v = pd.to_numeric(d[col], errors="coerce")
    return v.groupby([d[k] for k in keys], dropna=False).mean()


def plot_frontier(
    df: pd.DataFrame,
    ax=None,
    *,
    knob: str = "beta",
    n=None,
    reward_metric: str = "expected_reward",
    kl_metric: str = "kl_to_reference",
    annotate: bool = True,
    styles: Mapping | None = None,
):
    """Reward–KL frontier: mean ``reward_metric`` vs mean ``kl_metric`` (``KL(π̂ ‖ π_ref)``),
    one line per estimator through the values of ``knob`` (e.g. β), each point labelled with
    its knob value. ``df`` is the tidy results table (means over seeds and any other knob) or
    an :func:`~genver.stats.aggregate`-style table with a ``mean`` column. ``n=None`` uses each
    estimator's largest ``n``; otherwise rows with that ``n``."""
    if ax is None:
        ax = _new_axes()
    d = df
    if "n" in d.columns and len(d):
        if n is None:
            d = d[d["n"] == d.groupby("estimator")["n"].transform("max")]
        else:
            d = d[d["n"] == n]
    if knob not in d.columns:
        raise ValueError(f"knob '{knob}' is not a column of the table")
    keys = ["estimator", knob]
    rew = _metric_means(d, reward_metric, keys) if len(d) else pd.Series(dtype=float)
    kl = _metric_means(d, kl_metric, keys) if len(d) else pd.Series(dtype=float)
    both = pd.concat({"kl": kl, "reward": rew}, axis=1).dropna() if len(rew) and len(kl) else pd.DataFrame(columns=["kl", "reward"])
    ests = _order(both.index.get_level_values(0)) if len(both) else []
    styles = dict(styles) if styles is not None else estimator_styles(ests)
    for est in ests:
        g = both.xs(est, level=0).reset_index()
        g = g[np.isfinite(g["kl"].astype(float)) & np.isfinite(g["reward"].astype(float))]
        try:
            g = g.sort_values(knob)
        except TypeError:
            pass
        st = styles.get(est) or estimator_styles([est])[est]
        ax.plot(g["kl"], g["reward"], color=st["color"], marker=st["marker"], ms=5, lw=1.5, label=str(est))
        if annotate:
            for _, r in g.iterrows():
                ax.annotate(_fmt(r[knob]), (r["kl"], r["reward"]), textcoords="offset points",
                            xytext=(4, 3), fontsize=7, color=st["color"])
    ax.set_xlabel(metric_label(kl_metric))
    ax.set_ylabel(metric_label(reward_metric))
    sym = {"beta": r"$\beta$"}.get(knob, knob)
    ax.set_title(f"reward–KL frontier (points labelled by {sym}" + (f", $n = {n}$)" if n is not None else ")"),
                 fontsize=_fs("title"))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=_fs("legend"), frameon=False)
    return ax


def plot_best_of_n(
    df: pd.DataFrame,
    ax=None,
    *,
    metric: str | None = None,
    N_col: str = "N",
    model_col: str = "estimator",
    styles: Mapping | None = None,
):
    """Metric vs best-of-N size ``N`` (log₂ axis), one line per reward model (``model_col``),
    mean over seeds and everything else with a 95% bootstrap band over rows (fixed random
    state 0). ``metric=None`` picks ``expected_reward`` when present, else the first metric."""
    if ax is None:
        ax = _new_axes()
    if N_col not in df.columns:
        raise ValueError(f"column '{N_col}' (best-of-N size) is not in the table")
    d = df
    if "metric" in d.columns and len(d):
        ms = list(pd.unique(d["metric"]))
        metric = metric if metric is not None else ("expected_reward" if "expected_reward" in ms else ms[0])
        d = d[d["metric"] == metric]
    col = "value" if "value" in d.columns else "mean"
    models = _order(d[model_col]) if len(d) else []
    styles = dict(styles) if styles is not None else estimator_styles(models)
    rng = np.random.default_rng(0)
    for mdl in models:
        g = d[d[model_col] == mdl]
        st = styles.get(mdl) or estimator_styles([mdl])[mdl]
        Ns, means, los, his = [], [], [], []
        for Nv, gg in g.groupby(N_col, sort=True):
            v = pd.to_numeric(gg[col], errors="coerce").to_numpy(dtype=float)
            v = v[~np.isnan(v)]
            if v.size == 0:
                continue
            Ns.append(float(Nv))
            with np.errstate(all="ignore"):
                means.append(float(v.mean()))
                if v.size >= 2:
                    b = v[rng.integers(0, v.size, size=(1000, v.size))].mean(1)
                    los.append(float(np.quantile(b, 0.025)))
                    his.append(float(np.quantile(b, 0.975)))
                else:
                    los.append(np.nan)
                    his.append(np.nan)
        if not Ns:
            continue
        ax.plot(Ns, means, color=st["color"], marker=st["marker"], ms=5, lw=1.5, label=str(mdl))
        lo, hi = np.asarray(los), np.asarray(his)
        if np.isfinite(lo).any():
            ax.fill_between(Ns, lo, hi, color=st["color"], alpha=0.2, lw=0)
    Nvals = pd.to_numeric(d[N_col], errors="coerce") if len(d) else pd.Series(dtype=float)
    if len(Nvals) and (Nvals > 0).all():
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())  # 1, 2, 4, … rather than 2^k
        _ticks_at(ax.xaxis, Nvals.to_numpy(dtype=float))  # few sizes: labelled 1, 2, 4 (not 1.0)
    ax.set_xlabel(r"$N$ (best-of-$N$ samples per prompt)")
    ax.set_ylabel(metric_label(metric) if metric is not None else "value")
    ax.set_title("best-of-$N$ by reward model" + (f" ({model_col})" if model_col != "estimator" else ""),
                 fontsize=_fs("title"))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=_fs("legend"), frameon=False)
    return ax


# --------------------------------------------------------------------------- policies
def plot_policies(
    policies: Mapping,
    ax=None,
    *,
    prompt: int = 0,
    styles: Mapping | None = None,
    title: str | None = None,
):
    """Probabilities ``π(y|x)`` of every completion ``y`` of one prompt ``x``, one series per
    policy (``policies``: label -> a genver ``Policy`` or a ``(P, T)`` array of probabilities),
    drawn so that equal policies lie exactly on top of each other: the first as a wide
    translucent band, each later one as open markers on a thin line.

    Completions are labelled by their tokens ``a_1…a_H`` (first token first) when a ``Policy``
    gives the tree, ``T ≤ 32`` and ``V ≤ 10``, by index otherwise. The title states the largest
    ``|π(y|x) − π_first(y|x)|`` of each later policy over *all* prompts and completions (so
    "on top of each other" is a number, not an impression)."""
    if ax is None:
        ax = _new_axes()
    if not len(policies):
        raise ValueError("policies: give at least one policy")
    labels = list(policies)
    probs, space = {}, None
    for lab in labels:
        p = policies[lab]
        if hasattr(p, "probs") and hasattr(p, "space"):
            space = space or p.space
            p = p.probs
        p = np.asarray(p, dtype=float)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2:
            raise ValueError(f"policies[{lab!r}]: expected a Policy or a (P, T) array, got shape {p.shape}")
        probs[lab] = p
    shapes = {p.shape for p in probs.values()}
    if len(shapes) != 1:
        raise ValueError(f"policies have different shapes (P, T): {sorted(shapes)}")
    P_, T = next(iter(shapes))
    if not 0 <= int(prompt) < P_:
        raise ValueError(f"prompt must lie in [0, {P_ - 1}], got {prompt}")
    x = int(prompt)
    styles = dict(styles) if styles is not None else estimator_styles(labels)
    pos = np.arange(T)
    first = labels[0]
    diffs = []
    for i, lab in enumerate(labels):
        st = styles.get(lab) or {"color": f"C{i}", "marker": _MARKERS[i % len(_MARKERS)]}
        y = probs[lab][x]
        if i == 0:
            ax.plot(pos, y, color=st["color"], lw=7, alpha=0.35, solid_capstyle="round", label=str(lab))
        else:
            ax.plot(pos, y, color=st["color"], lw=1.0, marker=st["marker"], ms=6, mfc="none", mew=1.5,
                    label=str(lab))
            diffs.append(f"{lab} {np.max(np.abs(probs[lab] - probs[first])):.2g}")
    if space is not None and space.T == T and T <= 32 and space.V <= 10:
        toks = space.decode(np.arange(T))
        ax.set_xticks(pos, ["".join(map(str, t)) for t in np.atleast_2d(toks)], rotation=90, fontsize=7)
        ax.set_xlabel(r"completion $y = (a_1 \ldots a_H)$")
    else:
        ax.set_xlabel(r"completion $y$ (index)")
    ax.set_ylabel(r"$\pi(y \mid x)$" + f", prompt $x = {x}$")
    ax.set_ylim(bottom=0)
    if title is None:
        title = (f"max over all x, y of |π(y|x) − {first}(y|x)|: " + ", ".join(diffs)) if diffs else ""
    if title:
        ax.set_title(title, fontsize=_fs("title"))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=_fs("legend"), frameon=False)
    return ax


# --------------------------------------------------------------------------- saving
def save_figure(fig, path_stem, *, dpi: int = 150, formats: Sequence[str] = ("png", "pdf"),
                tight: bool = True) -> list[Path]:
    """Write ``{path_stem}.{fmt}`` for each of ``formats`` (default PNG at ``dpi`` and PDF),
    each atomically: rendered to a temporary file in the same folder, then ``os.replace``-d
    over the target (a reader never sees a half-written figure). Parent folders are created.
    Accepts a Figure or an Axes. A figure with a layout engine (constrained layout: every figure
    of this module) is laid out once, the layout is frozen for every format, and it is saved at
    its own size (the layout already fits the content; no second "tight" pass). Other figures
    are saved with the content's bounding box unless ``tight=False``. Returns the written
    paths."""
    from .atomic import file_mode

    if hasattr(fig, "figure") and not isinstance(fig, Figure):
        fig = fig.figure
    stem = Path(path_stem)
    if stem.suffix.lower().lstrip(".") in formats:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is not None:
        fig.draw_without_rendering()  # one layout pass ...
        fig.set_layout_engine("none")  # ... kept for every format
        tight = False
    out = []
    for fmt in formats:
        target = stem.parent / f"{stem.name}.{fmt}"
        fd, tmp = tempfile.mkstemp(prefix=f".{stem.name}.", suffix=f".{fmt}.tmp", dir=stem.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight" if tight else None,
                            metadata={"Creator": "genver"} if fmt in ("pdf", "svg") else None)
            os.chmod(tmp, file_mode())  # mkstemp creates 0600; the umask decides, as for open()
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        out.append(target)
    return out


# --------------------------------------------------------------------------- scaling laws
_SCALING_Y = {
    "offline": r"$N_\varepsilon$ (pairs to reach $\varepsilon$)",
    "online": r"$N_\varepsilon$ (pairs to reach $\varepsilon$)",
    "ratio": r"$N_\varepsilon(\mathrm{offline})\,/\,N_\varepsilon(\mathrm{online})$",
}
_SCALING_X = {
    "n_params_Pi": r"$\dim\Pi$ (identifiable parameters)",
    "n_params_R": r"$\dim\mathcal{R}$ (identifiable parameters)",
    "log_size_Pi": r"$\log|\Pi|$",
    "log_size_R": r"$\log|\mathcal{R}|$",
    "log_size_Pi_R": r"$\log|\Pi(\mathcal{R})|$",
    "dim_ratio": r"$\dim\Pi\,/\,\dim\mathcal{R}$",
    "log_size_ratio": r"$\log|\Pi|\,/\,\log|\mathcal{R}|$",
    "predicted_ratio": r"bound's predicted ratio (log-size or dimension ratio)",
}


def _include(ax, x, ys):
    """Make autoscaling see points drawn with a dodged (offset) transform."""
    x = np.asarray(x, dtype=float)
    for y in ys:
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        if ax.get_yscale() == "log":
            ok &= y > 0
        if ok.any():
            ax.update_datalim(np.column_stack([x[ok], y[ok]]))


def plot_scaling_law(
    points: pd.DataFrame,
    fits: pd.DataFrame | None = None,
    ax=None,
    *,
    against: str | None = None,
    routes: str | Sequence[str] | None = None,
):
    """``N_ε`` (or ``N_ε(offline)/N_ε(online)``) against a class-dimension descriptor, log-log,
    from :func:`genver.scaling.scaling_laws` (``points`` and ``fits``).

    Exact points are filled with their bootstrap CI (an open end is drawn to the plot's edge);
    censored points are open markers at their bound with an arrow towards the unknown value
    (``▲`` lower bound: the route never reached ε; ``▼`` upper bound: reached at the smallest
    ``n``). Each route's fitted line ``N = e^{intercept}·dim^a`` is solid over its points'
    range, and the bound's slope ``predicted_a`` is dashed through the fit's centre
    (``centre_dim``, ``centre_N``). ``against``: the descriptor (default: the first in
    ``points``); ``routes``: the routes drawn (default: every route but the ratio, or the ratio
    when it is all there is).
    """
    if ax is None:
        ax = _new_axes()
    d = points
    if against is None and len(d):
        against = d["against"].iloc[0]
    d = d[d["against"] == against] if len(d) else d
    present = list(pd.unique(d["route"])) if len(d) else []
    if routes is None:
        routes = [r for r in present if r != "ratio"] or present
    elif isinstance(routes, str):
        routes = [routes]
    styles = estimator_styles(routes)
    f = fits[(fits["against"] == against)] if fits is not None and len(fits) else None
    vals = d.loc[d["route"].isin(routes), ["N", "N_lo", "N_hi"]].to_numpy(dtype=float).ravel() if len(d) else []
    fin = np.asarray(vals, dtype=float)
    fin = fin[np.isfinite(fin) & (fin > 0)]
    floor = fin.min() / 2 if fin.size else 0.5
    ceil = fin.max() * 2 if fin.size else 2.0
    handles = []
    for i, route in enumerate(routes):
        g = d[d["route"] == route]
        st = styles[route]
        tr = _dodge(ax, i, len(routes), step=3.0)
        x, y = g["dim"].to_numpy(dtype=float), g["N"].to_numpy(dtype=float)
        kind = g["censoring"].to_numpy()
        ex = (kind == "exact") & np.isfinite(x) & np.isfinite(y)
        if ex.any():
            yerr = _cut_ci(y[ex], g["N_lo"].to_numpy(dtype=float)[ex], g["N_hi"].to_numpy(dtype=float)[ex],
                           floor, ceil)[0]
            yerr = np.where(np.isfinite(yerr), yerr, 0.0)
            _include(ax, x[ex], [y[ex] - yerr[0], y[ex] + yerr[1]])
            ax.errorbar(x[ex], y[ex], yerr=yerr, fmt=st["marker"], color=st["color"], ms=5, capsize=3, lw=1.2,
                        transform=tr)
        for kname, marker, up in (("right", "^", True), ("left", "v", False)):
            m = (kind == kname) & np.isfinite(x) & np.isfinite(y)
            if not m.any():
                continue
            _include(ax, x[m], [y[m]])
            ax.plot(x[m], y[m], ls="none", marker=marker, ms=8, mfc="none", mew=1.5, color=st["color"], transform=tr)
            for xi, yi in zip(x[m], y[m]):
                ax.annotate("", xy=(xi, yi), xycoords=tr, xytext=(0, 16 if up else -16), textcoords="offset points",
                            arrowprops=dict(arrowstyle="<-", color=st["color"], lw=1.0))
        label = str(g["label"].iloc[0]) if len(g) else str(route)
        row = f[f["route"] == route] if f is not None else None
        if row is not None and len(row) and np.isfinite(float(row["a"].iloc[0])):
            r = row.iloc[0]
            xr = x[np.isfinite(x) & (kind != "undefined")]
            xs = np.geomspace(xr.min(), xr.max(), 50)
            ax.plot(xs, np.exp(r["intercept"]) * xs ** r["a"], color=st["color"], lw=1.5)
            ci = f" [{r['a_lo']:.2f}, {r['a_hi']:.2f}]" if np.isfinite(r["a_lo"]) else ""
            handles.append(Line2D([], [], color=st["color"], marker=st["marker"], lw=1.5,
                                  label=f"{label}: a = {r['a']:.2f}{ci}"))
            if np.isfinite(r["predicted_a"]):
                ax.plot(xs, r["centre_N"] * (xs / r["centre_dim"]) ** r["predicted_a"], color=st["color"], ls="--",
                        lw=1.2)
                handles.append(Line2D([], [], color=st["color"], ls="--", lw=1.2,
                                      label=f"{label}: bound's slope {_fmt(float(r['predicted_a']))}"))
        else:
            handles.append(Line2D([], [], color=st["color"], marker=st["marker"], ls="none",
                                  label=f"{label}: exponent undefined"))
    if len(d) and (d["censoring"].isin(["right", "left"]) & d["route"].isin(routes)).any():
        handles.append(Line2D([], [], color="0.3", marker="^", mfc="none", ls="none", ms=7,
                              label="censored: bound (open), arrow to the unknown value"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    if len(d):
        _ticks_at(ax.xaxis, d["dim"].to_numpy(dtype=float))
    ax.set_xlabel(_SCALING_X.get(against, str(against)))
    ax.set_ylabel(_SCALING_Y["ratio" if routes == ["ratio"] else "offline"])
    eps = d["eps"].iloc[0] if "eps" in d.columns and len(d) else None
    ax.set_title(r"scaling law $N \propto \dim^a$" + (f", ε = {_fmt(eps)}" if eps is not None else ""), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, fontsize=7, frameon=False)
    return ax


__all__ += ["plot_scaling_law"]
