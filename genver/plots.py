r"""Figures from tidy results and from :mod:`genver.stats` tables.

Every ``plot_*`` function takes an optional ``ax`` and returns the Axes it drew on (rliable's
convention), so figures compose; :func:`sample_complexity_grid` returns a whole Figure and
:func:`save_figure` writes PNG (dpi 150) and PDF atomically.

Backend safety: importing this module never imports ``matplotlib.pyplot`` nor selects a
backend. With ``ax=None`` a new Axes is made with ``pyplot.subplots`` only when pyplot is
already imported (notebooks, interactive sessions: the figure then shows inline), otherwise on a
plain :class:`matplotlib.figure.Figure` (headless batch runs: nothing global, no leak).

Conventions: axis labels carry the symbols of ``/work/shared/paper-notes.md`` (``n`` preference
pairs, ``J_β(π*) − J_β(π̂)``, ``KL(π̂ ‖ π_ref)``, ...); each estimator keeps one colour and
marker within a figure ("offline" first, "online" second, the rest sorted). Non-positive
values on log axes are clipped to a floor that the axis label states; NaN and ±inf are skipped.
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
    "metric_label",
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

#: Axis label (mathtext) per metric name; unknown metrics use their own name.
METRIC_LABELS = {
    "suboptimality": r"$J_\beta(\pi^\star) - J_\beta(\hat\pi)$",
    "kl_to_optimal": r"$\mathrm{KL}(\hat\pi\,\|\,\pi^\star)$",
    "kl_to_reference": r"$\mathrm{KL}(\hat\pi\,\|\,\pi_{\mathrm{ref}})$",
    "expected_reward": r"$\mathbb{E}_{x,\,y\sim\hat\pi}\,[r^\star(x,y)]$",
    "win_rate": r"win rate $P(\hat\pi \succ \pi_{\mathrm{ref}})$",
    "bt_loglik": "held-out Bradley–Terry log-likelihood",
}

_AGG_KNOWN = {
    "experiment", "setting_id", "estimator", "route", "n", "metric", "n_seeds", "mean",
    "mean_lo", "mean_hi", "iqm", "iqm_lo", "iqm_hi", "seed", "value",
}
_MARKERS = ["o", "s", "D", "v", "P", "X", "*", "h", "<", ">", "p", "d"]


def metric_label(metric) -> str:
    """Axis label for a metric name (see :data:`METRIC_LABELS`)."""
    return METRIC_LABELS.get(str(metric), str(metric))


# --------------------------------------------------------------------------- helpers
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


def _style_map(labels: Iterable) -> dict:
    """label -> dict(color, marker), stable for a given set of labels."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {l: {"color": cmap(i % 10), "marker": _MARKERS[i % len(_MARKERS)]}
            for i, l in enumerate(_order(labels))}


def _series_label(est, route) -> str:
    if route is None or (isinstance(route, float) and math.isnan(route)) or route in ("other", est):
        return str(est)
    return f"{est} ({route})"


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def _knob_text(row: pd.Series, skip=()) -> str:
    parts = [f"{c}={_fmt(row[c])}" for c in row.index if c not in _AGG_KNOWN and c not in skip]
    return ", ".join(parts)


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
    if logx:
        if (x > 0).all():
            ax.set_xscale("log")
        else:
            lt = float(pos.min()) if pos.size else 1.0
            ax.set_xscale("symlog", linthresh=lt, linscale=0.5)
            ax.autoscale_view()
            ax.set_xlim(-0.4 * lt, ax.get_xlim()[1])  # no empty negative half
    _ticks_at(ax.xaxis, x)


def _ticks_at(axis, values, max_ticks: int = 12):
    """Few distinct values (knob settings, grid sizes): put the ticks exactly at them."""
    from matplotlib.ticker import NullLocator

    u = np.unique(np.asarray(values, dtype=float))
    u = u[np.isfinite(u)]
    if 0 < u.size <= max_ticks:
        axis.set_ticks(u, [str(int(v)) if float(v).is_integer() else _fmt(float(v)) for v in u])
        axis.set_minor_locator(NullLocator())


def _clip_floor(arrays: Sequence[np.ndarray], floor):
    """Floor for log-scale plotting: half the smallest finite positive value (or ``floor``).
    Returns the floor and the note for the axis label ("" when nothing is clipped)."""
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]) if arrays else np.array([])
    fin = vals[np.isfinite(vals)]
    if floor is None:
        pos = fin[fin > 0]
        floor = 0.5 * pos.min() if pos.size else 1e-12
    floor = float(floor)
    if not (fin < floor).any():
        return floor, ""
    if not ((fin > 0) & (fin < floor)).any():  # only zeros/negatives are clipped
        return floor, f"values ≤ 0 drawn at {floor:.2g}"
    return floor, f"values < {floor:.2g} drawn at {floor:.2g}"


def _eval_bound(bound: Callable, n: np.ndarray) -> np.ndarray:
    try:
        y = np.asarray(bound(n), dtype=float)
        if y.shape != n.shape:
            y = np.broadcast_to(y, n.shape).astype(float)
    except Exception:  # noqa: BLE001 - not vectorised: evaluate point by point
        y = np.array([float(bound(float(v))) for v in n])
    return y


# --------------------------------------------------------------------------- sample complexity
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
):
    """Log-log ``stat`` (``"mean"`` or ``"iqm"``) of the metric vs ``n``, one line per
    estimator, with the bootstrap CI as a band (table from :func:`genver.stats.aggregate`).

    ``setting_id=None`` plots the only setting, or the first one in sorted order (the title
    names it). Values ``≤ 0`` (an exactly optimal policy) are drawn at a floor (``floor``, or
    half the smallest positive value) and the y label says so. ``xlabel``/``ylabel=False``
    leave the axis labels off (used by grids). ``bound``: a callable
    ``n -> value`` (scalar or vectorised) drawn dashed over the plotted ``n`` range.
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
    else:
        sid = setting_id
    metric = d["metric"].iloc[0] if "metric" in d.columns and len(d) else "suboptimality"
    lo_c, hi_c = f"{stat}_lo", f"{stat}_hi"
    arrays = [d[c].to_numpy(dtype=float) for c in (stat, lo_c, hi_c) if c in d.columns]
    fl, clip_note = _clip_floor(arrays, floor)
    styles = dict(styles) if styles is not None else _style_map(d["estimator"] if len(d) else [])
    routes = d["route"] if "route" in d.columns else pd.Series("other", index=d.index)
    for est in _order(d["estimator"] if len(d) else []):
        g = d[d["estimator"] == est].sort_values("n")
        st = styles.get(est) or _style_map([est])[est]
        n = g["n"].to_numpy(dtype=float)
        y = np.clip(g[stat].to_numpy(dtype=float), fl, None)
        ax.plot(n, y, color=st["color"], marker=st["marker"], ms=4, lw=1.5,
                label=_series_label(est, routes.loc[g.index].iloc[0]))
        if lo_c in g.columns and hi_c in g.columns:
            lo = np.clip(g[lo_c].to_numpy(dtype=float), fl, None)
            hi = np.clip(g[hi_c].to_numpy(dtype=float), fl, None)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                ax.fill_between(n, np.where(ok, lo, np.nan), np.where(ok, hi, np.nan),
                                color=st["color"], alpha=0.2, lw=0)
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
    ylab = metric_label(metric) + (f" ({stat}, 95% CI)" if stat == "iqm" else " (mean, 95% CI)")
    if clip_note:
        ylab += "\n" + clip_note
    if ylabel:
        ax.set_ylabel(ylab)
    if xlabel:
        ax.set_xlabel(N_LABEL)
    if title is None:
        knob = _knob_text(d.iloc[0]) if len(d) else ""
        title = f"setting {sid}" + (f": {knob}" if knob else "") if sid is not None else ""
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
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
) -> Figure:
    """One :func:`plot_sample_complexity` panel per setting (all settings in sorted order by
    default), consistent estimator colours, one shared legend. ``bound`` is one callable for
    every panel or a mapping ``setting_id -> callable``. Returns a Figure (no pyplot)."""
    ids = list(setting_ids) if setting_ids is not None else (
        sorted(agg["setting_id"].astype(str).unique()) if len(agg) else [])
    k = max(len(ids), 1)
    ncols = max(1, min(int(ncols), k))
    nrows = math.ceil(k / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
    styles = _style_map(agg["estimator"] if len(agg) else [])
    cols = [c for c in (stat, f"{stat}_lo", f"{stat}_hi") if c in agg.columns]
    floor, _ = _clip_floor([agg[c].to_numpy(dtype=float) for c in cols], None)  # one floor for all panels
    for i, sid in enumerate(ids):
        r, c = divmod(i, ncols)
        ax = axes[r][c]
        b = bound.get(sid) if isinstance(bound, Mapping) else bound
        below = (r + 1) * ncols + c >= len(ids)  # no visible panel underneath
        plot_sample_complexity(agg, setting_id=sid, ax=ax, bound=b, stat=stat, styles=styles,
                               legend=False, floor=floor, xlabel=below, ylabel=c == 0)
    for j in range(len(ids), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    handles, labels = {}, []
    for ax in fig.axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in handles:
                handles[l] = h
                labels.append(l)
    if handles:
        fig.legend([handles[l] for l in labels], labels, loc="outside lower center",
                   ncols=min(len(labels), 5), frameon=False, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


# --------------------------------------------------------------------------- ratio, N_ε
_KIND_STYLE = {
    "exact": dict(marker="o", label="exact"),
    "lower_bound": dict(marker="^", label="lower bound (offline never reached ε)"),
    "upper_bound": dict(marker="v", label="upper bound (online never reached ε)"),
}


def _dodge(ax, i: int, k: int, step: float = 5.0):
    """Data transform shifted horizontally by a few points so that series sharing x values
    stay visible (series ``i`` of ``k``)."""
    from matplotlib.transforms import offset_copy

    dx = (i - (k - 1) / 2) * step
    return offset_copy(ax.transData, fig=ax.figure, x=dx, y=0.0, units="points") if dx else ax.transData


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


def _errbar_limits(y, lo, hi, floor, ceil):
    lo = np.where(np.isfinite(lo) & (lo > 0), lo, floor)
    hi = np.where(np.isfinite(hi), hi, ceil)
    lo = np.minimum(lo, y)
    hi = np.maximum(hi, y)
    return np.vstack([y - lo, hi - y])


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

    Exact ratios are filled circles with their bootstrap CI as error bars (an open end, 0 or
    inf, is drawn to the plot's edge); lower bounds are open ``▲``, upper bounds open ``▼``;
    undefined rows are left out and counted in the title. A dotted line marks ratio = 1.
    ``predicted``: ``None`` uses the ``predicted_ratio`` column when present (mean per knob
    value), ``False`` draws nothing, a callable maps knob values to a prediction, a column
    name or array gives values per row. ``hue`` splits the points by another column.
    ``logy=None`` picks a log y axis when the ratios span more than 10×.
    """
    if ax is None:
        ax = _new_axes()
    d = ratio_df.copy() if len(ratio_df) else ratio_df
    kind = d["ratio_kind"] if "ratio_kind" in d.columns else pd.Series("exact", index=d.index)
    usable = (kind != "undefined") & d["ratio"].notna() if len(d) else pd.Series(dtype=bool)
    n_undef = int((~usable).sum()) if len(d) else 0
    x_all, cats = _numeric_positions(d[knob]) if len(d) else (np.array([]), None)
    y_all = d["ratio"].to_numpy(dtype=float) if len(d) else np.array([])
    lo_all = d["ratio_lo"].to_numpy(dtype=float) if "ratio_lo" in d.columns else np.full(len(d), np.nan)
    hi_all = d["ratio_hi"].to_numpy(dtype=float) if "ratio_hi" in d.columns else np.full(len(d), np.nan)

    # predicted values per row
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

    fin_vals = np.concatenate([y_all[usable.to_numpy()] if len(d) else y_all,
                               lo_all[np.isfinite(lo_all) & (lo_all > 0)],
                               hi_all[np.isfinite(hi_all)],
                               pred[np.isfinite(pred) & (pred > 0)] if pred is not None else [],
                               [1.0]])
    fin_vals = fin_vals[np.isfinite(fin_vals) & (fin_vals > 0)]
    if logy is None:
        logy = fin_vals.size > 0 and fin_vals.max() / fin_vals.min() > 10
    floor = fin_vals.min() / 1.5 if fin_vals.size else 0.5
    ceil = fin_vals.max() * 1.5 if fin_vals.size else 2.0
    if not logy:
        floor = min(0.0, floor)

    groups = [(None, np.ones(len(d), dtype=bool))]
    hue_styles = {}
    if hue is not None and hue in d.columns and len(d):
        hv = d[hue]
        hue_styles = _style_map(hv)
        groups = [(h, (hv == h).to_numpy()) for h in _order(hv)]
    kinds_seen = set()
    for i_h, (h, gmask) in enumerate(groups):
        tr = _dodge(ax, i_h, len(groups))
        color = hue_styles[h]["color"] if h is not None else "C0"
        for kname, ks in _KIND_STYLE.items():
            m = gmask & (kind == kname).to_numpy() & usable.to_numpy() if len(d) else np.array([], bool)
            if not m.any():
                continue
            kinds_seen.add(kname)
            x, y = x_all[m], y_all[m]
            if kname == "exact":
                yerr = _errbar_limits(y, lo_all[m], hi_all[m], floor, ceil)
                yerr = np.where(np.isfinite(yerr), yerr, 0.0)
                _include(ax, x, [y - yerr[0], y + yerr[1]])
                ax.errorbar(x, y, yerr=yerr, fmt="o", color=color, ms=5, capsize=3, lw=1.2, transform=tr)
            else:
                _include(ax, x, [y])
                ax.plot(x, y, ls="none", marker=ks["marker"], ms=8, mfc="none", mew=1.5, color=color,
                        transform=tr)
        em = gmask & usable.to_numpy() if len(d) else np.array([], bool)
        if em.sum() >= 2:
            xs, ys = x_all[em], y_all[em]
            if pd.Series(xs).is_unique:
                o = np.argsort(xs)
                ax.plot(xs[o], ys[o], color=color, lw=0.8, alpha=0.6, transform=tr)
    if pred is not None:
        pm = np.isfinite(pred) & np.isfinite(x_all)
        if pm.any():
            s = pd.Series(pred[pm]).groupby(x_all[pm]).mean()
            ax.plot(s.index.to_numpy(), s.to_numpy(), "k--", marker="x", ms=6, lw=1.2,
                    label=r"predicted $\log|\Pi|/\log|\mathcal{R}|$")
    ax.axhline(1.0, color="0.4", ls=":", lw=1.2)
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    _maybe_logx(ax, x_all, logx if cats is None else False)
    if cats is not None:
        ax.set_xticks(range(len(cats)), cats)
    eps = d["eps"].iloc[0] if "eps" in d.columns and len(d) else None
    ax.set_xlabel(knob)
    ax.set_ylabel(r"$N_\varepsilon(\mathrm{offline})\,/\,N_\varepsilon(\mathrm{online})$")
    title = "sample-efficiency ratio" + (f", ε = {_fmt(eps)}" if eps is not None else "")
    if n_undef:
        title += f" ({n_undef} undefined: neither route reached ε)"
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color="0.2", ls="none", marker=_KIND_STYLE[k]["marker"],
                      mfc="0.2" if k == "exact" else "none", ms=6, label=_KIND_STYLE[k]["label"]
                      + (" ± 95% CI" if k == "exact" else "")) for k in _KIND_STYLE if k in kinds_seen]
    handles += [h for h in ax.get_legend_handles_labels()[0] if h.get_label().startswith("predicted")]
    handles.append(Line2D([], [], color="0.4", ls=":", label="ratio = 1 (no gap)"))
    handles += [Line2D([], [], color=st["color"], ls="none", marker="s", label=f"{hue} = {_fmt(h)}")
                for h, st in hue_styles.items()]
    ax.legend(handles=handles, fontsize=8, frameon=False)
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

    Reached values: filled markers with the bootstrap CI as error bars (an infinite upper
    end, "some resamples never reach ε", is drawn up to the grid's largest ``n``). Not
    reached: an open ``▲`` at ``censored_at`` (``N_ε > n_max``). Log y axis.
    """
    if ax is None:
        ax = _new_axes()
    d = neps_df
    styles = dict(styles) if styles is not None else _style_map(d["estimator"] if len(d) else [])
    x_all, cats = _numeric_positions(d[knob]) if len(d) else (np.array([]), None)
    routes = d["route"] if "route" in d.columns else pd.Series("other", index=d.index)
    any_cens = False
    ests = _order(d["estimator"] if len(d) else [])
    for i_est, est in enumerate(ests):
        tr = _dodge(ax, i_est, len(ests))
        m = (d["estimator"] == est).to_numpy()
        g = d[m]
        x = x_all[m]
        st = styles.get(est) or _style_map([est])[est]
        reached = g["reached"].to_numpy(dtype=bool)
        y = g["N_eps"].to_numpy(dtype=float)
        cens = g["censored_at"].to_numpy(dtype=float)
        lo = g["N_eps_lo"].to_numpy(dtype=float) if "N_eps_lo" in g.columns else np.full(len(g), np.nan)
        hi = g["N_eps_hi"].to_numpy(dtype=float) if "N_eps_hi" in g.columns else np.full(len(g), np.nan)
        label = _series_label(est, routes[m].iloc[0])
        if reached.any():
            r = reached
            yerr = _errbar_limits(y[r], lo[r], hi[r], np.nanmin(y[r]) / 2, cens[r])
            yerr = np.where(np.isfinite(yerr), yerr, 0.0)
            _include(ax, x[r], [y[r] - yerr[0], y[r] + yerr[1]])
            ax.errorbar(x[r], y[r], yerr=yerr, fmt=st["marker"], color=st["color"], ms=5,
                        capsize=3, lw=1.2, label=label, transform=tr)
            label = None
        if (~reached).any():
            any_cens = True
            _include(ax, x[~reached], [cens[~reached]])
            ax.plot(x[~reached], cens[~reached], ls="none", marker="^", ms=8, mfc="none", mew=1.5,
                    color=st["color"], label=label, transform=tr)
        # connect the series (censored points at their bound) when knob values are unique
        yy = np.where(reached, y, cens)
        if len(x) >= 2 and pd.Series(x).is_unique:
            o = np.argsort(x)
            ax.plot(x[o], yy[o], color=st["color"], lw=0.8, alpha=0.5, transform=tr)
    ax.set_yscale("log")
    _maybe_logx(ax, x_all, logx if cats is None else False)
    if cats is not None:
        ax.set_xticks(range(len(cats)), cats)
    if len(d):
        shown = np.r_[d.loc[d["reached"].astype(bool), "N_eps"].to_numpy(dtype=float),
                      d.loc[~d["reached"].astype(bool), "censored_at"].to_numpy(dtype=float)]
        shown = shown[np.isfinite(shown) & (shown > 0)]
        if shown.size:
            lo, hi = ax.get_ylim()
            ax.set_ylim(min(lo, shown.min() / 1.6), max(hi, shown.max() * 1.6))
            _ticks_at(ax.yaxis, shown)
    eps = d["eps"].iloc[0] if "eps" in d.columns and len(d) else None
    metric = d["metric"].iloc[0] if "metric" in d.columns and len(d) else "suboptimality"
    ax.set_xlabel(knob)
    ax.set_ylabel(r"$N_\varepsilon$ (preference pairs to reach $\varepsilon$)")
    ax.set_title(f"{metric} ≤ ε" + (f" = {_fmt(eps)}" if eps is not None else ""), fontsize=9)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any_cens:
        handles.append(Line2D([], [], color="0.3", ls="none", marker="^", mfc="none", ms=7))
        labels.append(r"not reached: $N_\varepsilon > n_{\max}$")
    if handles:
        ax.legend(handles, labels, fontsize=8, frameon=False)
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
    styles = dict(styles) if styles is not None else _style_map(ests)
    for est in ests:
        g = both.xs(est, level=0).reset_index()
        g = g[np.isfinite(g["kl"].astype(float)) & np.isfinite(g["reward"].astype(float))]
        try:
            g = g.sort_values(knob)
        except TypeError:
            pass
        st = styles.get(est) or _style_map([est])[est]
        ax.plot(g["kl"], g["reward"], color=st["color"], marker=st["marker"], ms=5, lw=1.5, label=str(est))
        if annotate:
            for _, r in g.iterrows():
                ax.annotate(_fmt(r[knob]), (r["kl"], r["reward"]), textcoords="offset points",
                            xytext=(4, 3), fontsize=7, color=st["color"])
    ax.set_xlabel(metric_label(kl_metric))
    ax.set_ylabel(metric_label(reward_metric))
    sym = {"beta": r"$\beta$"}.get(knob, knob)
    ax.set_title(f"reward–KL frontier (points labelled by {sym}" + (f", n = {n})" if n is not None else ")"),
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
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
    styles = dict(styles) if styles is not None else _style_map(models)
    rng = np.random.default_rng(0)
    for mdl in models:
        g = d[d[model_col] == mdl]
        st = styles.get(mdl) or _style_map([mdl])[mdl]
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
    ax.set_xlabel(r"$N$ (best-of-$N$ samples per prompt)")
    ax.set_ylabel(metric_label(metric) if metric is not None else "value")
    ax.set_title("best-of-N by reward model" + (f" ({model_col})" if model_col != "estimator" else ""),
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
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
    styles = dict(styles) if styles is not None else _style_map(labels)
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
    ax.set_ylabel(r"$\pi(y \mid x)$" + f", prompt x = {x}")
    ax.set_ylim(bottom=0)
    if title is None:
        title = (f"max over all x, y of |π(y|x) − {first}(y|x)|: " + ", ".join(diffs)) if diffs else ""
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return ax


# --------------------------------------------------------------------------- saving
def save_figure(fig, path_stem, *, dpi: int = 150, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``{path_stem}.png`` (``dpi``) and ``{path_stem}.pdf``, each atomically: rendered to
    a temporary file in the same folder, then ``os.replace``-d over the target (a reader never
    sees a half-written figure). Parent folders are created. Accepts a Figure or an Axes.
    Returns the written paths."""
    if hasattr(fig, "figure") and not isinstance(fig, Figure):
        fig = fig.figure
    stem = Path(path_stem)
    if stem.suffix.lower().lstrip(".") in formats:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        target = stem.parent / f"{stem.name}.{fmt}"
        fd, tmp = tempfile.mkstemp(prefix=f".{stem.name}.", suffix=f".{fmt}.tmp", dir=stem.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight")
            os.chmod(tmp, 0o644)  # mkstemp creates 0600
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
    styles = _style_map(routes)
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
            yerr = _errbar_limits(y[ex], g["N_lo"].to_numpy(dtype=float)[ex], g["N_hi"].to_numpy(dtype=float)[ex],
                                  floor, ceil)
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
