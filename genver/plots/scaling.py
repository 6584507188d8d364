r"""Scaling laws ``N_ε ∝ dim^a`` drawn from :func:`genver.scaling.scaling_laws` (``points`` and
``fits``): exact points with their CI, censored points as open markers with an arrow towards the
unknown value, each route's fitted line and the bound's slope (:func:`plot_scaling_law`)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .axes import cut_ci, dodge, ticks_at
from .style import EPS, estimator_styles, font_size, format_value, new_axes

__all__ = ["plot_scaling_law"]


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


def _draw_route_points(ax, g, st, tr, floor, ceil) -> None:
    """One route's points: exact ones filled with their CI (cut at ``[floor, ceil]``), censored
    ones open at their bound with an arrow towards the unknown value."""
    x, y = g["dim"].to_numpy(dtype=float), g["N"].to_numpy(dtype=float)
    kind = g["censoring"].to_numpy()
    ex = (kind == "exact") & np.isfinite(x) & np.isfinite(y)
    if ex.any():
        yerr = cut_ci(y[ex], g["N_lo"].to_numpy(dtype=float)[ex], g["N_hi"].to_numpy(dtype=float)[ex],
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


def _draw_fit(ax, g, row, st, label) -> list:
    """One route's fitted line ``N = e^{intercept}·dim^a`` over its points' range and the bound's
    slope dashed through the fit's centre; returns the legend handles."""
    if row is None or not len(row) or not np.isfinite(float(row["a"].iloc[0])):
        return [Line2D([], [], color=st["color"], marker=st["marker"], ls="none", label=f"{label}: exponent undefined")]
    r = row.iloc[0]
    x, kind = g["dim"].to_numpy(dtype=float), g["censoring"].to_numpy()
    xr = x[np.isfinite(x) & (kind != "undefined")]
    xs = np.geomspace(xr.min(), xr.max(), 50)
    ax.plot(xs, np.exp(r["intercept"]) * xs ** r["a"], color=st["color"], lw=1.5)
    ci = f" [{r['a_lo']:.2f}, {r['a_hi']:.2f}]" if np.isfinite(r["a_lo"]) else ""
    handles = [Line2D([], [], color=st["color"], marker=st["marker"], lw=1.5, label=f"{label}: a = {r['a']:.2f}{ci}")]
    if np.isfinite(r["predicted_a"]):
        ax.plot(xs, r["centre_N"] * (xs / r["centre_dim"]) ** r["predicted_a"], color=st["color"], ls="--", lw=1.2)
        handles.append(Line2D([], [], color=st["color"], ls="--", lw=1.2,
                              label=f"{label}: bound's slope {format_value(float(r['predicted_a']))}"))
    return handles


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
    (``centre_dim``, ``centre_N``).

    Parameters
    ----------
    points, fits : pandas.DataFrame
        The two tables of :func:`genver.scaling.scaling_laws` (``fits=None``: no lines).
    ax : matplotlib.axes.Axes or None
        Where to draw (default :func:`~genver.plots.style.new_axes`).
    against : str or None
        The descriptor (default: the first in ``points``).
    routes : str, sequence of str or None
        The routes drawn (default: every route but the ratio, or the ratio when it is all there is).

    Returns
    -------
    matplotlib.axes.Axes
        The panel.
    """
    if ax is None:
        ax = new_axes()
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
        tr = dodge(ax, i, len(routes), step=3.0)
        _draw_route_points(ax, g, st, tr, floor, ceil)
        row = f[f["route"] == route] if f is not None else None
        label = str(g["label"].iloc[0]) if len(g) else str(route)
        handles += _draw_fit(ax, g, row, st, label)
    if len(d) and (d["censoring"].isin(["right", "left"]) & d["route"].isin(routes)).any():
        handles.append(Line2D([], [], color="0.3", marker="^", mfc="none", ls="none", ms=7,
                              label="censored: bound (open), arrow to the unknown value"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    if len(d):
        ticks_at(ax.xaxis, d["dim"].to_numpy(dtype=float))
    ax.set_xlabel(_SCALING_X.get(str(against), str(against)))
    ax.set_ylabel(_SCALING_Y["ratio" if routes == ["ratio"] else "offline"])
    eps = d["eps"].iloc[0] if "eps" in d.columns and len(d) else None
    ax.set_title(r"scaling law $N \propto "
                 r"\dim^a$" + (f", {EPS}$\\,=\\,{format_value(eps)}$" if eps is not None else ""),
                 fontsize=font_size("title"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, fontsize=min(7.0, font_size("legend")), frameon=False)
    return ax
