r"""Curves against ``n``: sample complexity (the reward–KL frontier and best-of-N curves are in
:mod:`genver.plots.frontier`).

* :func:`plot_sample_complexity`: log-log mean (or IQM) of a metric vs ``n``, one line per
  estimator with its 95% bootstrap band (a :func:`genver.stats.aggregate` table); exact zeros
  are markers on the x axis (:func:`~genver.plots.axes.mark_zeros`), bands reaching below the
  axis are cut there, and the y label says so;
* :func:`sample_complexity_grid`: one such panel per setting (:func:`~genver.plots.axes.grid_shape`
  layout, one shared legend).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .axes import dodge, eval_bound, grid_shape, log_ticks, mark_zeros
from .style import (
    N_LABEL,
    estimator_styles,
    font_size,
    label_order,
    metric_label,
    new_axes,
    series_label,
    setting_title,
)

__all__ = ["ZERO_NOTE", "CLIP_NOTE", "plot_sample_complexity", "sample_complexity_grid"]


def _positive_floor(arrays: Sequence[np.ndarray], floor=None) -> float:
    """Bottom of a log axis: ``floor``, or half the smallest finite positive value."""
    if floor is not None:
        return float(floor)
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]) if len(arrays) else np.array([])
    pos = vals[np.isfinite(vals) & (vals > 0)]
    return float(0.5 * pos.min()) if pos.size else 1e-12


def _legend_below(fig, handles: dict, spare_ax=None):
    """One legend for a grid: in the spare (otherwise empty) panel when there is one, else
    below the panels."""
    if not handles:
        return None
    if spare_ax is not None:
        spare_ax.axis("off")
        return spare_ax.legend(list(handles.values()), list(handles), loc="center", frameon=False,
                               fontsize=font_size("legend"))
    return fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                      ncols=min(len(handles), 4), frameon=False, fontsize=font_size("legend"))


# --------------------------------------------------------------------------- sample complexity
#: the y label's second line when a panel has exact zeros (markers on the x axis) or CI bands
#: reaching below the axis
ZERO_NOTE = "exact 0 drawn at the x axis"
CLIP_NOTE = "CI cut there"


def _draw_estimator(ax, g, stat, fl, st, label, zero_tr) -> tuple[float, bool, bool]:
    """One estimator's curve (rows ``g`` sorted by ``n``): the line broken at zeros and NaN, exact
    zeros as markers on the x axis (``zero_tr``: dodged, so estimators exactly optimal at the same
    ``n`` stay visible), the CI band cut at the axis bottom ``fl``. Returns (top of the drawn
    values, any exact zero, any band cut)."""
    n = g["n"].to_numpy(dtype=float)
    y = g[stat].to_numpy(dtype=float)
    zero = np.isfinite(y) & (y <= 0)
    y_line = np.where(np.isfinite(y) & (y > 0), y, np.nan)  # broken at zeros and NaN
    top = float(np.nanmax(y_line)) if np.isfinite(y_line).any() else fl
    ax.plot(n, y_line, color=st["color"], marker=st["marker"], ms=4, lw=1.5, label=label)
    if zero.any():
        mark_zeros(ax, n[zero], st["color"], st["marker"], transform=zero_tr)
    clipped = False
    lo_c, hi_c = f"{stat}_lo", f"{stat}_hi"
    if lo_c in g.columns and hi_c in g.columns:
        lo = g[lo_c].to_numpy(dtype=float)
        hi = g[hi_c].to_numpy(dtype=float)
        ok = np.isfinite(lo) & np.isfinite(hi) & (hi > 0)
        if ok.any():
            clipped = bool((lo[ok] < fl).any())
            top = max(top, float(hi[ok].max()))
            ax.fill_between(n, np.where(ok, np.maximum(lo, fl), np.nan), np.where(ok, hi, np.nan),
                            color=st["color"], alpha=0.2, lw=0, gid="ci_clipped" if clipped else "ci")
    return top, bool(zero.any()), clipped


def _draw_bound(ax, n, bound, label) -> None:
    """``bound(n)`` dashed over the positive range of ``n`` (non-positive values left out)."""
    nn = n[np.isfinite(n) & (n > 0)]
    if nn.size:
        grid = np.geomspace(nn.min(), nn.max(), 100)
        by = eval_bound(bound, grid)
        ax.plot(grid, np.where(by > 0, by, np.nan), "k--", lw=1.2, label=label)


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
    """Log-log ``stat`` of the metric vs ``n``, one line per estimator, with the bootstrap CI as
    a band (table from :func:`genver.stats.aggregate`).

    A value ``≤ 0`` (an exactly optimal policy) is not plotted at a floor: it is a marker on the
    x axis (:func:`mark_zeros`) and the line is broken there; a CI band reaching below the axis
    bottom is cut at the axis; the y label's second line says which of the two the panel has.

    Parameters
    ----------
    agg : pandas.DataFrame
        An :func:`genver.stats.aggregate` table.
    setting_id : str or None
        The setting drawn; None: the only one, or the first in sorted order.
    ax : matplotlib.axes.Axes or None
        Where to draw (default :func:`new_axes`).
    bound : callable or None
        ``n -> value`` (scalar or vectorised), drawn dashed over the plotted ``n`` range.
    stat : str
        ``"mean"`` or ``"iqm"``.
    floor : float or None
        The axis bottom (default half the smallest positive value).
    bound_label : str
        Legend text of ``bound``.
    styles : mapping or None
        label -> ``dict(color, marker)`` (default :func:`estimator_styles` of the labels).
    legend : bool
        Draw a legend.
    title : str or None
        Panel title; None: the setting's knob values (:func:`setting_title`).
    xlabel, ylabel : bool
        Draw the axis labels (grids leave them off inside).
    knobs : sequence of str or None
        The knobs of the title, in order (default every knob column).
    notes : tuple of (bool, bool) or None
        ``(zeros, cut)`` for the y label's note, overriding the panel's own (so that a grid
        states the same on every row).

    Returns
    -------
    matplotlib.axes.Axes
        The panel.
    """
    if ax is None:
        ax = new_axes()
    if stat not in ("mean", "iqm"):
        raise ValueError(f"stat must be 'mean' or 'iqm', got {stat!r}")
    d = agg
    if "setting_id" in d.columns and len(d):
        ids = sorted(d["setting_id"].astype(str).unique())
        sid = str(setting_id) if setting_id is not None else ids[0]
        d = d[d["setting_id"].astype(str) == sid]
    fl = _positive_floor([d[c].to_numpy(dtype=float) for c in (stat, f"{stat}_lo", f"{stat}_hi") if c in d.columns],
                         floor)
    top, any_zero, any_clip = _draw_estimators(ax, d, stat, fl, styles)
    if bound is not None and len(d):
        _draw_bound(ax, d["n"].to_numpy(dtype=float), bound, bound_label)
    _log_log_limits(ax, d, fl, top)
    _label_panel(ax, d, stat, notes if notes is not None else (any_zero, any_clip), xlabel=xlabel, ylabel=ylabel,
                 title=title, knobs=knobs, legend=legend)
    return ax


def _label_panel(ax, d: pd.DataFrame, stat: str, notes: tuple[bool, bool], *, xlabel: bool, ylabel: bool,
                 title: str | None, knobs, legend: bool) -> None:
    """Axis labels (the y label's note: ``notes = (zeros, cut)``), title, grid and legend of a
    sample-complexity panel (:func:`plot_sample_complexity`)."""
    note = "; ".join(t for t, on in ((ZERO_NOTE, notes[0]), (CLIP_NOTE, notes[1])) if on)
    if ylabel:
        metric = d["metric"].iloc[0] if "metric" in d.columns and len(d) else "suboptimality"
        ylab = metric_label(metric) + (f" ({stat}, 95% CI)" if stat == "iqm" else " (mean, 95% CI)")
        ax.set_ylabel(ylab + ("\n" + note if note else ""))
    if xlabel:
        ax.set_xlabel(N_LABEL)
    if title is None:
        title = setting_title(d.iloc[0], knobs) if len(d) else ""
    if title:
        ax.set_title(title, fontsize=font_size("title"))
    ax.grid(True, which="major", alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=font_size("legend"), frameon=False)


def _draw_estimators(ax, d: pd.DataFrame, stat: str, fl: float, styles) -> tuple[float, bool, bool]:
    """Every estimator's curve of one setting's rows ``d`` (:func:`_draw_estimator`, dodged zero
    markers), in :func:`label_order`. Returns (top of the drawn values, any exact zero, any band cut)."""
    styles = dict(styles) if styles is not None else estimator_styles(d["estimator"] if len(d) else [])
    routes = d["route"] if "route" in d.columns else pd.Series("other", index=d.index)
    top, any_zero, any_clip = fl, False, False
    ests = label_order(d["estimator"] if len(d) else [])
    for i_est, est in enumerate(ests):
        g = d[d["estimator"] == est].sort_values("n")
        st = styles.get(est) or estimator_styles([est])[est]
        t, z, c = _draw_estimator(ax, g, stat, fl, st, series_label(est, routes.loc[g.index].iloc[0]),
                                  dodge(ax, i_est, len(ests), 4.0))
        top, any_zero, any_clip = max(top, t), any_zero or z, any_clip or c
    return top, any_zero, any_clip


def _log_log_limits(ax, d: pd.DataFrame, fl: float, top: float) -> None:
    """Log axes of a sample-complexity panel: y from the floor ``fl`` to above ``top``, x over
    every ``n`` of the rows ``d`` (the zeros' markers take no part in autoscaling)."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    if len(d):
        ax.set_ylim(fl, top * 1.3 if top > fl else fl * 10)
        log_ticks(ax.yaxis)
        nn = d["n"].to_numpy(dtype=float)
        nn = nn[np.isfinite(nn) & (nn > 0)]
        if nn.size:
            ax.set_xlim(nn.min() / 1.2, nn.max() * 1.2)
            log_ticks(ax.xaxis)


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
    """One :func:`plot_sample_complexity` panel per setting, titled by its knob values, with
    consistent estimator colours and one shared legend. The layout is :func:`grid_shape` of the
    number of settings with at most ``ncols`` columns: no empty panel (where one cell must stay
    free it holds the legend). No pyplot.

    Parameters
    ----------
    agg : pandas.DataFrame
        An :func:`genver.stats.aggregate` table.
    setting_ids : sequence or None
        The settings, in panel order (default all, sorted).
    ncols : int
        Most columns.
    bound : callable, mapping or None
        One ``n -> value`` for every panel, or ``setting_id -> callable``.
    stat : str
        ``"mean"`` or ``"iqm"``.
    panel_size : tuple of float
        Inches per panel (when ``width`` is None).
    sharey : bool
        Share the y axis.
    suptitle : str or None
        Figure title.
    styles : mapping or None
        label -> ``dict(color, marker)`` (default :func:`estimator_styles` of the table's labels).
    knobs : sequence of str or None
        The knobs of the panel titles.
    width : float or None
        The whole figure's width in inches (panels scaled to it).

    Returns
    -------
    matplotlib.figure.Figure
        The grid.
    """
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
    notes = _grid_notes(agg, stat, floor)
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
    _legend_below(fig, _shared_handles(fig), spare[0] if spare else None)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _grid_notes(agg: pd.DataFrame, stat: str, floor: float) -> tuple[bool, bool]:
    """``(any exact zero, any band below floor)`` over the whole table: one y-label note for
    every panel of a grid."""
    v = agg[stat].to_numpy(dtype=float) if stat in agg.columns else np.array([])
    lo_v = agg[f"{stat}_lo"].to_numpy(dtype=float) if f"{stat}_lo" in agg.columns else np.array([])
    return bool((np.isfinite(v) & (v <= 0)).any()), bool((np.isfinite(lo_v) & (lo_v < floor)).any())


def _shared_handles(fig) -> dict[str, Any]:
    """label -> first legend handle over the visible panels of ``fig``."""
    handles: dict[str, Any] = {}
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    return handles
