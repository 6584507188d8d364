r"""Curves against ``n`` (or best-of-``N`` size, or KL): sample complexity, the reward–KL
frontier, best-of-N.

* :func:`plot_sample_complexity`: log-log mean (or IQM) of a metric vs ``n``, one line per
  estimator with its 95% bootstrap band (a :func:`genver.stats.aggregate` table); exact zeros
  are markers on the x axis (:func:`~genver.plots.axes.mark_zeros`), bands reaching below the
  axis are cut there, and the y label says so;
* :func:`sample_complexity_grid`: one such panel per setting (:func:`~genver.plots.axes.grid_shape`
  layout, one shared legend);
* :func:`plot_frontier`: mean expected reward vs mean ``KL(π̂ ‖ π_ref)`` through a knob's values;
* :func:`plot_best_of_n`: a metric vs best-of-``N`` size, mean over rows with a 95% bootstrap
  band computed by :func:`genver.stats.aggregate` (rows as the resampled units).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .axes import dodge, eval_bound, grid_shape, log_ticks, mark_zeros, ticks_at
from .style import (
    N_LABEL,
    estimator_styles,
    font_size,
    format_value,
    label_order,
    metric_label,
    new_axes,
    series_label,
    setting_title,
)

__all__ = ["ZERO_NOTE", "CLIP_NOTE", "BOOTSTRAP_RESAMPLES", "plot_sample_complexity", "sample_complexity_grid",
           "plot_frontier", "plot_best_of_n"]

#: resamples of the bands that this module bootstraps itself (:func:`plot_best_of_n`), the
#: number the report uses for its tables (``genver.experiments.tables.N_BOOT``)
BOOTSTRAP_RESAMPLES = 1000


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
    """Log-log ``stat`` (``"mean"`` or ``"iqm"``) of the metric vs ``n``, one line per
    estimator, with the bootstrap CI as a band (table from :func:`genver.stats.aggregate`).

    ``setting_id=None`` plots the only setting, or the first one in sorted order. The title is
    the setting's knob values (:func:`setting_title`; ``knobs`` picks and orders them, default
    every knob column). A value ``≤ 0`` (an exactly optimal policy) is not plotted at a floor:
    it is a marker on the x axis (:func:`mark_zeros`) and the line is broken there; the axis
    starts at ``floor`` (default half the smallest positive value), and a CI band reaching
    below it is cut at the axis; the y label's second line says which of the two the panel has
    (``notes=(zeros, cut)`` overrides, so that a grid states the same on every row).
    ``xlabel``/``ylabel=False`` leave the axis labels off (used by grids). ``bound``: a callable
    ``n -> value`` (scalar or vectorised) drawn dashed over the plotted ``n`` range.
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
    metric = d["metric"].iloc[0] if "metric" in d.columns and len(d) else "suboptimality"
    lo_c, hi_c = f"{stat}_lo", f"{stat}_hi"
    fl = _positive_floor([d[c].to_numpy(dtype=float) for c in (stat, lo_c, hi_c) if c in d.columns], floor)
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
    if bound is not None and len(d):
        _draw_bound(ax, d["n"].to_numpy(dtype=float), bound, bound_label)
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
        ax.set_title(title, fontsize=font_size("title"))
    ax.grid(True, which="major", alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=font_size("legend"), frameon=False)
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
        ax = new_axes()
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
    both = pd.concat({"kl": kl, "reward": rew},
                     axis=1).dropna() if len(rew) and len(kl) else pd.DataFrame(columns=["kl", "reward"])
    ests = label_order(both.index.get_level_values(0)) if len(both) else []
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
                ax.annotate(format_value(r[knob]), (r["kl"], r["reward"]), textcoords="offset points",
                            xytext=(4, 3), fontsize=7, color=st["color"])
    ax.set_xlabel(metric_label(kl_metric))
    ax.set_ylabel(metric_label(reward_metric))
    sym = {"beta": r"$\beta$"}.get(knob, knob)
    ax.set_title(f"reward–KL frontier (points labelled by {sym}" + (f", $n = {n}$)" if n is not None else ")"),
                 fontsize=font_size("title"))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=font_size("legend"), frameon=False)
    return ax


def _best_of_n_band(d: pd.DataFrame, col: str, N_col: str, model_col: str) -> pd.DataFrame:
    """Mean and 95% bootstrap band per (model, N) over the rows of ``d`` (each row one resampled
    unit), by :func:`genver.stats.aggregate` (its seeding rule and extended-real quantiles,
    :data:`BOOTSTRAP_RESAMPLES` resamples, random state 0): columns ``estimator`` (the model),
    ``n`` (the ``N`` value), ``mean``, ``mean_lo``, ``mean_hi``, sorted by ``n``."""
    from .. import stats  # SciPy: imported when a best-of-N figure is drawn, not with genver.plots

    v = pd.to_numeric(d[col], errors="coerce") if len(d) else pd.Series(dtype=float)
    units = pd.DataFrame({"estimator": d[model_col].to_numpy(dtype=object) if len(d) else [],
                          "n": pd.to_numeric(d[N_col], errors="coerce").to_numpy(dtype=float) if len(d) else [],
                          "seed": np.arange(len(d)), "metric": "value", "value": v.to_numpy(dtype=float)})
    units = units[np.isfinite(units["n"])]
    return stats.aggregate(units, "value", n_boot=BOOTSTRAP_RESAMPLES, random_state=0).sort_values(
        ["estimator", "n"], kind="stable")


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
    mean over seeds and everything else with a 95% bootstrap band over rows
    (:func:`genver.stats.aggregate`, random state 0). ``metric=None`` picks ``expected_reward``
    when present, else the first metric."""
    if ax is None:
        ax = new_axes()
    if N_col not in df.columns:
        raise ValueError(f"column '{N_col}' (best-of-N size) is not in the table")
    d = df
    if "metric" in d.columns and len(d):
        ms = list(pd.unique(d["metric"]))
        metric = metric if metric is not None else ("expected_reward" if "expected_reward" in ms else ms[0])
        d = d[d["metric"] == metric]
    col = "value" if "value" in d.columns else "mean"
    models = label_order(d[model_col]) if len(d) else []
    styles = dict(styles) if styles is not None else estimator_styles(models)
    band = _best_of_n_band(d, col, N_col, model_col)
    for mdl in models:
        g = band[band["estimator"] == mdl] if len(band) else band
        if not len(g):
            continue
        st = styles.get(mdl) or estimator_styles([mdl])[mdl]
        Ns = g["n"].to_numpy(dtype=float)
        ax.plot(Ns, g["mean"].to_numpy(dtype=float), color=st["color"], marker=st["marker"], ms=5, lw=1.5,
                label=str(mdl))
        lo, hi = g["mean_lo"].to_numpy(dtype=float), g["mean_hi"].to_numpy(dtype=float)
        if np.isfinite(lo).any():
            ax.fill_between(Ns, lo, hi, color=st["color"], alpha=0.2, lw=0)
    Nvals = pd.to_numeric(d[N_col], errors="coerce") if len(d) else pd.Series(dtype=float)
    if len(Nvals) and (Nvals > 0).all():
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())  # 1, 2, 4, … rather than 2^k
        ticks_at(ax.xaxis, Nvals.to_numpy(dtype=float))  # few sizes: labelled 1, 2, 4 (not 1.0)
    ax.set_xlabel(r"$N$ (best-of-$N$ samples per prompt)")
    ax.set_ylabel(metric_label(metric) if metric is not None else "value")
    ax.set_title("best-of-$N$ by reward model" + (f" ({model_col})" if model_col != "estimator" else ""),
                 fontsize=font_size("title"))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=font_size("legend"), frameon=False)
    return ax


