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

Modules (everything public is re-exported here: ``from genver.plots import X`` and
``genver.plots.X`` work for each name):

* :mod:`genver.plots.style` — labels, palette, :func:`estimator_styles`, :func:`use_style`,
  :func:`label_order`, :func:`font_size`;
* :mod:`genver.plots.axes` — :func:`grid_shape`, :func:`log_ticks`, :func:`mark_zeros` and the
  other axis building blocks;
* :mod:`genver.plots.curves` — :func:`plot_sample_complexity`, :func:`sample_complexity_grid`;
* :mod:`genver.plots.frontier` — :func:`plot_frontier`, :func:`plot_best_of_n`;
* :mod:`genver.plots.ratios` — :func:`plot_ratio_vs_knob`, :func:`plot_n_epsilon`;
* :mod:`genver.plots.scaling` — :func:`plot_scaling_law`;
* :mod:`genver.plots.policies` — :func:`plot_policies`;
* :mod:`genver.plots.saving` — :func:`save_figure` (through :func:`genver.atomic.atomic_open`).

Every bootstrap band is computed by :mod:`genver.stats` (the tables the figures are given, and
:func:`plot_best_of_n`'s own band through :func:`genver.stats.aggregate`).

:func:`use_style` (``"screen"``, the default, or ``"paper"``: 8 pt text, fonts embedded as
TrueType in PDF and as paths in SVG) is a context manager around the drawing; the paper widths
are :data:`PAPER_WIDTHS` (3.3 in, one column; 6.9 in, the full page). A new ``plot_*`` function
should use these helpers: ``styles.get(label)`` or ``estimator_styles(labels)`` for colours,
:func:`log_ticks` after setting limits, :func:`mark_zeros` for exact zeros.
"""
from __future__ import annotations

from . import axes, curves, frontier, policies, ratios, saving, scaling, style
from .axes import cut_ci, dodge, eval_bound, grid_shape, log_ticks, mark_zeros, ticks_at
from .curves import CLIP_NOTE, ZERO_NOTE, plot_sample_complexity, sample_complexity_grid
from .frontier import BOOTSTRAP_RESAMPLES, plot_best_of_n, plot_frontier
from .policies import plot_policies
from .ratios import CI_CUT_LABEL, plot_n_epsilon, plot_ratio_vs_knob
from .saving import save_figure
from .scaling import plot_scaling_law
from .style import (
                     EPS,
                     INK,
                     KNOB_SYMBOLS,
                     MARKERS,
                     METRIC_LABELS,
                     N_LABEL,
                     PALETTE,
                     PAPER_WIDTHS,
                     estimator_colours,
                     estimator_styles,
                     font_size,
                     format_value,
                     knob_label,
                     label_order,
                     metric_label,
                     new_axes,
                     series_label,
                     setting_title,
                     use_style,
)

__all__ = [
    "METRIC_LABELS",
    "KNOB_SYMBOLS",
    "PALETTE",
    "PAPER_WIDTHS",
    "INK",
    "N_LABEL",
    "EPS",
    "ZERO_NOTE",
    "CLIP_NOTE",
    "CI_CUT_LABEL",
    "metric_label",
    "knob_label",
    "setting_title",
    "format_value",
    "label_order",
    "estimator_colours",
    "estimator_styles",
    "font_size",
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
    "plot_scaling_law",
    "sample_complexity_grid",
    "save_figure",
    # the building blocks a new plot_* function uses (see above)
    "axes", "curves", "frontier", "policies", "ratios", "saving", "scaling", "style",
    "cut_ci", "dodge", "eval_bound", "ticks_at", "new_axes", "series_label", "MARKERS",
    "BOOTSTRAP_RESAMPLES",
]
