"""Style of every genver figure: labels in the paper notes' symbols, one colour and marker per
estimator label, the screen and paper styles, font sizes.

* :data:`METRIC_LABELS`, :data:`KNOB_SYMBOLS`, :func:`metric_label`, :func:`knob_label`,
  :func:`setting_title`: axis labels and panel titles in mathtext (one math style), titles from
  the swept knobs (``$H = 4$``, ``$|D| = 1024$``), never a setting id;
* :func:`label_order` (``"offline"``, ``"online"``, then the rest sorted), :func:`estimator_colours`
  and :func:`estimator_styles`: Okabe & Ito's colour-blind-safe :data:`PALETTE` in that order, so
  a label has the same colour in every figure given the same labels;
* :func:`use_style` (``"screen"`` / ``"paper"``) and :func:`font_size` (title and legend sizes
  of the current style);
* :func:`format_value` (``4`` rather than ``4.0``, 4 significant digits otherwise),
  :func:`series_label` (``"dpo (offline)"``), :func:`new_axes` (a new Axes without selecting a
  backend: pyplot only when it is already imported).
"""
from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["N_LABEL", "EPS", "METRIC_LABELS", "KNOB_SYMBOLS", "PALETTE", "PAPER_WIDTHS", "INK", "MARKERS",
           "RESULT_COLUMNS", "STYLES", "metric_label", "format_value", "knob_label", "setting_title", "new_axes",
           "label_order", "estimator_colours", "estimator_styles", "use_style", "font_size", "series_label"]

#: x label of every curve against the number of preference pairs
N_LABEL = r"$n$ (preference pairs)"
#: the symbol ε in mathtext
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

#: columns of results and :func:`genver.stats.aggregate` tables that are not knobs
RESULT_COLUMNS = {
    "experiment", "setting_id", "estimator", "route", "n", "metric", "n_seeds", "mean",
    "mean_lo", "mean_hi", "iqm", "iqm_lo", "iqm_hi", "seed", "value",
}
#: one marker per label, in :func:`label_order`
MARKERS = ["o", "s", "D", "v", "P", "X", "*", "h", "<", ">", "p", "d"]


def metric_label(metric) -> str:
    """Axis label for a metric name (see :data:`METRIC_LABELS`).

    Parameters
    ----------
    metric : str
        The metric name.

    Returns
    -------
    str
        Its label, or the name itself.
    """
    return METRIC_LABELS.get(str(metric), str(metric))


def format_value(v) -> str:
    """A knob or tick value as text: integral floats without ``.0``, others to 4 significant digits.

    Parameters
    ----------
    v : object
        A number or label.

    Returns
    -------
    str
        The text.

    Examples
    --------
    >>> format_value(1024.0), format_value(0.123456), format_value("peak")
    ('1024', '0.1235', 'peak')
    """
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    return str(v)


def knob_label(knob, value=None) -> str:
    """``"$|D|$"`` for a knob, ``"$|D| = 1024$"`` with a value (mathtext for the symbols of
    :data:`KNOB_SYMBOLS`; other knobs as ``"name = value"`` in plain text).

    Parameters
    ----------
    knob : str
        The knob's name.
    value : object or None
        Its value (None: the symbol alone).

    Returns
    -------
    str
        The label.
    """
    sym = KNOB_SYMBOLS.get(str(knob))
    if value is None:
        return f"${sym}$" if sym else str(knob)
    return f"${sym} = {format_value(value)}$" if sym else f"{knob} = {format_value(value)}"


def setting_title(row, knobs=None) -> str:
    """A panel title from the knob values of one setting (a row of a table): ``"$H = 4$"``,
    ``"$\\beta = 0.5$, peak = 2"``. ``knobs=None``: every column that is not a result column.

    Parameters
    ----------
    row : pandas.Series
        One row of a table with knob columns.
    knobs : sequence of str or None
        The knobs shown, in order.

    Returns
    -------
    str
        The title.
    """
    if knobs is None:
        knobs = [c for c in row.index if c not in RESULT_COLUMNS]
    return ", ".join(knob_label(k, row[k]) for k in knobs if k in row.index)


def new_axes(figsize=(5.5, 4.0)):
    """A new constrained-layout Axes: through ``pyplot`` when it is already imported (notebooks:
    the figure shows inline), else on a plain :class:`~matplotlib.figure.Figure` (no backend, no
    global state).

    Parameters
    ----------
    figsize : tuple of float
        Figure size in inches.

    Returns
    -------
    matplotlib.axes.Axes
        The new axes.
    """
    if "matplotlib.pyplot" in sys.modules:
        plt = sys.modules["matplotlib.pyplot"]
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
        return ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def label_order(labels: Iterable) -> list:
    """The distinct labels in figure order: ``"offline"``, ``"online"``, then the rest sorted
    (``None`` dropped). Legends, colours and table columns all follow it.

    Parameters
    ----------
    labels : iterable
        Labels, repeats allowed.

    Returns
    -------
    list
        The distinct labels in figure order.

    Examples
    --------
    >>> label_order(["z", "online", "a", "offline", "a"])
    ['offline', 'online', 'a', 'z']
    """
    labels = [l for l in pd.unique(pd.Series(list(labels), dtype=object)) if l is not None]
    head = [l for l in ("offline", "online") if l in labels]
    rest = sorted((l for l in labels if l not in head), key=str)
    return head + rest


def estimator_colours(labels: Iterable) -> dict:
    """label -> colour of :data:`PALETTE`, in the order "offline", "online", then the rest
    sorted (cycling after eight). Give it every label of a report, so a label has the same
    colour in each of its figures.

    Parameters
    ----------
    labels : iterable
        Every label of the report.

    Returns
    -------
    dict
        label -> colour.
    """
    return {l: PALETTE[i % len(PALETTE)] for i, l in enumerate(label_order(labels))}


def estimator_styles(labels: Iterable) -> dict:
    """label -> ``dict(color, marker)``: :func:`estimator_colours` plus one marker per label
    (the ``styles=`` argument of every ``plot_*`` function).

    Parameters
    ----------
    labels : iterable
        Every label of the report.

    Returns
    -------
    dict
        label -> ``{"color": ..., "marker": ...}``.
    """
    return {l: {"color": c, "marker": MARKERS[i % len(MARKERS)]}
            for i, (l, c) in enumerate(estimator_colours(labels).items())}


#: matplotlib rc settings per style name (:func:`use_style`)
STYLES: dict[str, dict[RcKeyType, Any]] = {
    "screen": {},
    "paper": {
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
        "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.titlesize": 8,
        "lines.linewidth": 1.0, "lines.markersize": 3.5, "errorbar.capsize": 2,
        "axes.linewidth": 0.6, "grid.linewidth": 0.4, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path", "mathtext.fontset": "dejavusans",
        "savefig.dpi": 300, "svg.hashsalt": "genver",  # SVG ids from a fixed salt: the same bytes every time
    },
}


def use_style(style: str = "screen"):
    """Context manager: draw (and save) inside it in ``"screen"`` style (matplotlib's defaults,
    the PNG figures) or ``"paper"`` style (8 pt text, thin lines, fonts embedded: TrueType in
    PDF, glyphs as paths in SVG). ``ValueError`` for another name.

    Parameters
    ----------
    style : str
        ``"screen"`` or ``"paper"``.

    Returns
    -------
    contextlib.AbstractContextManager
        ``matplotlib.rc_context`` of the style's settings.
    """
    import matplotlib

    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    return matplotlib.rc_context(STYLES[style])


def font_size(key: str) -> float:
    """The current style's size for titles ("title") and legends ("legend").

    Parameters
    ----------
    key : str
        ``"title"`` or ``"legend"``.

    Returns
    -------
    float
        The font size in points.
    """
    import matplotlib

    if key == "title":
        return min(9.0, float(matplotlib.rcParams["font.size"]))
    return min(8.0, float(matplotlib.rcParams["font.size"]) - 1)


def series_label(est, route) -> str:
    """Legend text of an estimator: ``"dpo (offline)"``, or the label alone when the route adds
    nothing (``"other"``, missing, or the label itself).

    Parameters
    ----------
    est : str
        The estimator label.
    route : str or None
        Its route.

    Returns
    -------
    str
        The legend text.
    """
    if route is None or (isinstance(route, float) and math.isnan(route)) or route in ("other", est):
        return str(est)
    return f"{est} ({route})"
