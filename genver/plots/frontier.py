r"""Curves through a knob or a best-of-``N`` size: the reward–KL frontier and best-of-N.

* :func:`plot_frontier`: mean expected reward vs mean ``KL(π̂ ‖ π_ref)`` through a knob's values;
* :func:`plot_best_of_n`: a metric vs best-of-``N`` size, mean over rows with a 95% bootstrap
  band computed by :func:`genver.stats.aggregate` (rows as the resampled units).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .. import stats
from .axes import ticks_at
from .style import estimator_styles, font_size, format_value, label_order, metric_label, new_axes

__all__ = ["BOOTSTRAP_RESAMPLES", "plot_frontier", "plot_best_of_n"]

#: resamples of the bands that this module bootstraps itself (:func:`plot_best_of_n`): not a
#: second definition but :data:`genver.stats.N_BOOT`, the one count of every genver bootstrap
BOOTSTRAP_RESAMPLES = stats.N_BOOT


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
    estimator's largest ``n``; otherwise rows with that ``n``.

    Parameters
    ----------
    df : pandas.DataFrame
        The tidy results table, or an aggregated one (``mean`` column).
    ax : matplotlib.axes.Axes or None
        Where to draw (default :func:`new_axes`).
    knob : str
        The knob traced along each line.
    n : int or None
        The sample size drawn (default each estimator's largest).
    reward_metric, kl_metric : str
        The metrics on the y and x axes.
    annotate : bool
        Label each point with its knob value.
    styles : mapping or None
        label -> ``dict(color, marker)`` (default :func:`estimator_styles` of the labels).

    Returns
    -------
    matplotlib.axes.Axes
        The panel.
    """
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
    when present, else the first metric.

    Parameters
    ----------
    df : pandas.DataFrame
        The tidy table of a best-of-N study (``value`` or ``mean`` column).
    ax : matplotlib.axes.Axes or None
        Where to draw (default :func:`new_axes`).
    metric : str or None
        The metric drawn (default above).
    N_col : str
        The column of best-of-N sizes.
    model_col : str
        The column naming the reward models (one line each).
    styles : mapping or None
        label -> ``dict(color, marker)`` (default :func:`estimator_styles` of the labels).

    Returns
    -------
    matplotlib.axes.Axes
        The panel.
    """
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


