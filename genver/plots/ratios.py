r"""Ratios and ``N_ε`` against a gap knob, with censoring drawn as such.

* :func:`plot_ratio_vs_knob`: ``N_ε(offline)/N_ε(online)`` per setting (a
  :func:`genver.stats.efficiency_ratio` table): exact ratios filled with their CI, lower /
  upper bounds open ``▲`` / ``▼`` with an arrow, never joined to exact points; the prediction
  ``log|Π|/log|R|`` dashed;
* :func:`plot_n_epsilon`: ``N_ε`` of each estimator (a :func:`genver.stats.n_epsilon` table):
  "not reached" as an open ``▲`` at ``n_max`` (``N_ε > n_max``).

A CI end outside the axes (0, ∞, or past the plotted range) is cut at the axes' edge with an
arrow head (:func:`~genver.plots.axes.cut_ci`) and the legend says so (:data:`CI_CUT_LABEL`).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .axes import cut_ci, dodge, eval_bound, log_ticks, ticks_at
from .style import EPS, INK, estimator_styles, font_size, format_value, knob_label, label_order, new_axes, series_label

__all__ = ["CI_CUT_LABEL", "plot_ratio_vs_knob", "plot_n_epsilon"]


def _numeric_positions(values: pd.Series):
    """Numeric x positions for a knob column; categorical knobs map to 0..k-1 with tick labels."""
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all() and len(values):
        return num.to_numpy(dtype=float), None
    cats = label_order(values.astype(str))
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
    ticks_at(ax.xaxis, x)


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


def _draw_points(ax, x, y, lo, hi, kind, *, color, marker, floor, ceil, tr, label=None):
    """Exact points (filled, with their CI cut at ``[floor, ceil]`` and an arrow head where cut)
    and bounds (open markers with an arrow: ``kind`` ``"lower_bound"`` points up, ``"upper_bound"``
    down). Returns whether any CI was cut."""
    ex = kind == "exact"
    any_cut = False
    if ex.any():
        yerr, cut_lo, cut_hi = cut_ci(y[ex], lo[ex], hi[ex], floor, ceil)
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


def _prediction(d: pd.DataFrame, predicted, x: np.ndarray):
    """The predicted ratio per row: ``None`` → the ``predicted_ratio`` column when present,
    ``False`` → none, a column name, a callable of the knob values, or an array per row."""
    if predicted is False or not len(d):
        return None
    if predicted is None:
        return d["predicted_ratio"].to_numpy(dtype=float) if "predicted_ratio" in d.columns else None
    if isinstance(predicted, str) and predicted in d.columns:
        return d[predicted].to_numpy(dtype=float)
    if callable(predicted):
        return eval_bound(predicted, x)
    return np.broadcast_to(np.asarray(predicted, dtype=float), (len(d),))


def _ratio_limits(y, lo, hi, kind, usable, pred, logy):
    """(logy, floor, ceil): a log axis when the shown values span more than 10× (``logy=None``),
    limits around every usable ratio, exact CI ends, the prediction and 1, with room for the
    bounds' arrows."""
    ex = usable & (kind == "exact")
    extra = [pred if pred is not None else [], [1.0]]
    shown = np.concatenate([y[usable], lo[ex], hi[ex], *extra])
    shown = shown[np.isfinite(shown) & (shown > 0)]
    if logy is None:
        logy = shown.size > 0 and shown.max() / shown.min() > 10
    floor, ceil = _y_range(np.concatenate([y[usable], lo[ex][lo[ex] > 0], hi[ex], *extra]), logy)
    b = usable & (kind != "exact")
    if logy and b.any():  # room for the bounds' arrows
        floor = min(floor, float(np.nanmin(y[b])) / 2.2)
        ceil = max(ceil, float(np.nanmax(y[b])) * 2.2)
    return bool(logy), floor, ceil


def _ratio_legend(ax, kinds_seen, any_cut, hue, hue_styles) -> None:
    """The legend of :func:`plot_ratio_vs_knob`: one entry per kind of point drawn, the cut CIs,
    the prediction, ratio = 1 and one colour per ``hue`` value."""
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
    handles += [Line2D([], [], color=st["color"], ls="none", marker="s", label=f"{hue} = {format_value(h)}")
                for h, st in hue_styles.items()]
    ax.legend(handles=handles, fontsize=font_size("legend"), frameon=False)


def _draw_ratio_groups(ax, groups, hue_styles, usable, cols, floor, ceil) -> tuple[set, bool]:
    """The usable ratio points of each hue group (dodged; ``cols = (x, ratio, lo, hi, kind)``),
    exact ones joined. Returns (the kinds drawn, any CI end cut)."""
    x_all, y_all, lo_all, hi_all, kind_all = cols
    kinds_seen: set = set()
    any_cut = False
    for i_h, (h, gmask) in enumerate(groups):
        tr = dodge(ax, i_h, len(groups))
        color = hue_styles[h]["color"] if h is not None else INK
        m = gmask & usable
        kinds_seen |= set(kind_all[m])
        any_cut |= _draw_points(ax, x_all[m], y_all[m], lo_all[m], hi_all[m], kind_all[m], color=color,
                                marker="o", floor=floor, ceil=ceil, tr=tr)
        _exact_line(ax, x_all[m], y_all[m], kind_all[m] == "exact", color=color, tr=tr, alpha=0.6)
    return kinds_seen, any_cut


def _draw_prediction(ax, pred, x_all) -> None:
    """The prediction dashed, its mean per knob value (nothing for ``pred = None``)."""
    if pred is None:
        return
    pm = np.isfinite(pred) & np.isfinite(x_all)
    if pm.any():
        s = pd.Series(pred[pm]).groupby(x_all[pm]).mean()
        ax.plot(s.index.to_numpy(), s.to_numpy(), color="0.45", ls="--", marker="x", ms=6, lw=1.2,
                label=r"predicted $\log|\Pi|\,/\,\log|\mathcal{R}|$")


def _ratio_title(d: pd.DataFrame, usable: np.ndarray) -> str:
    """The ratio panel's title: ε, and how many rows are undefined (left out)."""
    eps = d["eps"].iloc[0] if "eps" in d.columns and len(d) else None
    title = "sample-efficiency ratio" + (f", {EPS}$\\,=\\,{format_value(eps)}$" if eps is not None else "")
    n_undef = int((~usable).sum())
    if n_undef:
        title += f" ({n_undef} undefined: neither route reached {EPS})"
    return title


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

    Parameters
    ----------
    ratio_df : pandas.DataFrame
        An :func:`genver.stats.efficiency_ratio` table.
    knob : str
        The knob on the x axis (numeric, or categories at 0..k−1).
    ax : matplotlib.axes.Axes or None
        Where to draw (default :func:`new_axes`).
    predicted : None, False, callable, str or array_like
        The prediction, dashed: ``None`` uses the ``predicted_ratio`` column when present (mean
        per knob value), ``False`` draws nothing, a callable maps knob values to a prediction, a
        column name or array gives values per row.
    hue : str or None
        Split the points by another column (one palette colour each).
    logy, logx : bool or None
        Log axes; ``logy=None`` picks a log y axis when the values span more than 10×.

    Returns
    -------
    matplotlib.axes.Axes
        The panel.
    """
    if ax is None:
        ax = new_axes()
    d = ratio_df
    n = len(d)
    kind = d["ratio_kind"] if "ratio_kind" in d.columns else pd.Series("exact", index=d.index)
    usable = ((kind != "undefined") & d["ratio"].notna()).to_numpy() if n else np.array([], bool)
    x_all, cats = _numeric_positions(d[knob]) if n else (np.array([]), None)
    y_all = d["ratio"].to_numpy(dtype=float) if n else np.array([])
    lo_all = d["ratio_lo"].to_numpy(dtype=float) if "ratio_lo" in d.columns else np.full(n, np.nan)
    hi_all = d["ratio_hi"].to_numpy(dtype=float) if "ratio_hi" in d.columns else np.full(n, np.nan)
    kind_all = kind.to_numpy(dtype=object) if n else np.array([], object)
    pred = _prediction(d, predicted, x_all)
    logy, floor, ceil = _ratio_limits(y_all, lo_all, hi_all, kind_all, usable, pred, logy)
    if logy:
        ax.set_yscale("log")

    groups, hue_styles = [(None, np.ones(n, dtype=bool))], {}
    if hue is not None and hue in d.columns and n:
        hue_styles = estimator_styles(d[hue])
        groups = [(h, (d[hue] == h).to_numpy()) for h in label_order(d[hue])]
    kinds_seen, any_cut = _draw_ratio_groups(ax, groups, hue_styles, usable, (x_all, y_all, lo_all, hi_all, kind_all),
                                             floor, ceil)
    _draw_prediction(ax, pred, x_all)
    ax.axhline(1.0, color="0.4", ls=":", lw=1.2)
    ax.set_ylim(floor, ceil)
    if logy:
        log_ticks(ax.yaxis)
    _maybe_logx(ax, x_all, logx if cats is None else False)
    if cats is not None:
        ax.set_xticks(range(len(cats)), cats)
    ax.set_xlabel(knob_label(knob))
    ax.set_ylabel(_RATIO_YLABEL)
    ax.set_title(_ratio_title(d, usable), fontsize=font_size("title"))
    ax.grid(True, alpha=0.3)
    _ratio_legend(ax, kinds_seen, any_cut, hue, hue_styles)
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

    Parameters
    ----------
    neps_df : pandas.DataFrame
        A :func:`genver.stats.n_epsilon` table.
    knob : str
        The knob on the x axis (numeric, or categories at 0..k−1).
    ax : matplotlib.axes.Axes or None
        Where to draw (default :func:`new_axes`).
    logx : bool or None
        Log x axis (None: chosen from the knob values).
    styles : mapping or None
        label -> ``dict(color, marker)`` (default :func:`estimator_styles` of the labels).

    Returns
    -------
    matplotlib.axes.Axes
        The panel.
    """
    if ax is None:
        ax = new_axes()
    d = neps_df
    styles = dict(styles) if styles is not None else estimator_styles(d["estimator"] if len(d) else [])
    x_all, cats = _numeric_positions(d[knob]) if len(d) else (np.array([]), None)
    routes = d["route"] if "route" in d.columns else pd.Series("other", index=d.index)
    ax.set_yscale("log")
    floor, ceil = _neps_range(d)
    any_cens, any_cut = False, False
    ests = label_order(d["estimator"] if len(d) else [])
    for i_est, est in enumerate(ests):
        tr = dodge(ax, i_est, len(ests))
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
                                ceil=ceil, tr=tr, label=series_label(est, routes[m].iloc[0]))
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
    ax.set_title(f"{metric} ≤ {EPS}" + (f"$\\,=\\,{format_value(eps)}$" if eps is not None else ""),
                 fontsize=font_size("title"))
    ax.grid(True, alpha=0.3)
    _neps_legend(ax, any_cens, any_cut)
    return ax


def _neps_range(d: pd.DataFrame) -> tuple[float, float]:
    """The y range of an N_ε panel: reached values, their CI lower ends and the censoring levels,
    with room above the open ``▲`` of the not-reached ones."""
    if not len(d):
        return 0.5, 2.0
    reached_all = d["reached"].to_numpy(dtype=bool)
    vals = [d["N_eps"].to_numpy(dtype=float)[reached_all], d["censored_at"].to_numpy(dtype=float)]
    if "N_eps_lo" in d.columns:
        vals.append(d["N_eps_lo"].to_numpy(dtype=float)[reached_all])
    floor, ceil = _y_range(np.concatenate(vals), True)
    if (~reached_all).any():
        ceil = max(ceil, float(np.nanmax(d["censored_at"].to_numpy(dtype=float)[~reached_all])) * 2.2)
    return floor, ceil


def _neps_legend(ax, any_cens: bool, any_cut: bool) -> None:
    """The N_ε panel's legend: the series, plus the not-reached and cut-CI symbols where drawn."""
    handles, labels = ax.get_legend_handles_labels()
    if any_cens:
        handles.append(Line2D([], [], color="0.3", ls="none", marker="^", mfc="none", ms=7))
        labels.append(r"not reached: $N_\varepsilon > n_{\max}$ (arrow up)")
    if any_cut:
        handles.append(Line2D([], [], color="0.3", ls="none", marker="^", ms=5))
        labels.append(CI_CUT_LABEL)
    if handles:
        ax.legend(handles, labels, fontsize=font_size("legend"), frameon=False)


