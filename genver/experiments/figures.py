"""The figures of a results directory: what each shows is listed in
:mod:`genver.experiments.report`; this module decides which the results call for
(:func:`figure_jobs`), draws them through :mod:`genver.plots` and keeps each one whose inputs are
unchanged (:mod:`genver.experiments.figcache`).

:func:`make_figures` is ``genver plot``; :func:`draw_figures` draws (or keeps) every figure of
one report from its :class:`~genver.experiments.tables.ReportTables`. With two or more figures
to draw, the first (the sample-complexity grid: the largest, and the only one that needs
:func:`genver.stats.aggregate`) is drawn in a forked process while this one draws the rest —
the same code on the same tables, so byte-identical files (PDF and SVG carry no date).
"""
from __future__ import annotations

import pathlib

import pandas as pd
from matplotlib.figure import Figure

from .. import plots
from . import figcache
from .tables import ReportTables, completeness_line, epsilon_of, load_results, main_pair

__all__ = ["make_figures", "draw_figures", "draw_and_save", "figure_jobs", "scaling_figure", "CURVE_METRICS",
           "FORK_TIMEOUT_S"]


def make_figures(root, style: str = "screen", *, pdf: bool = False) -> list[pathlib.Path]:
    """Write the figures of a results directory: ``style="screen"`` PNG under ``DIR/figures``
    (and PDF beside each with ``pdf=True``); ``"paper"`` vector PDF and SVG under
    ``DIR/figures/paper``, each at one column (``<name>_col``, 3.3 in) and the full page
    (``<name>_full``, 6.9 in) wide, fonts embedded. A figure whose inputs are unchanged
    (:mod:`genver.experiments.figcache`) is not redrawn. Returns every figure's files, drawn now
    or kept.

    Parameters
    ----------
    root : str or pathlib.Path
        the results directory.
    style : str
        ``"screen"`` or ``"paper"``.
    pdf : bool
        also a PDF beside each screen PNG.

    Returns
    -------
    list of pathlib.Path
        every figure's files.
    """
    name = figcache.plot_cache_name(style, pdf)
    hit = figcache.read_report_cache(root, name)
    if hit is not None:  # unchanged results, code and style: every figure is as drawn
        return [pathlib.Path(root) / f for f in hit["files"]]
    man, df, settings = load_results(root)
    lazy = ReportTables(man, df, settings)
    files = draw_figures(root, man, df, settings, lazy, style=style, pdf=pdf)
    figcache.write_report_cache(root, name, {  # with the completeness line: a hit needs no shard read
        "path": "figures", "files": [str(pathlib.Path(f).relative_to(root)) for f in files],
        "incomplete": completeness_line(root, man)})
    return files


def _ratio_title(man, off="offline", on="online") -> str:
    return (rf"{man['experiment']}: $N_\varepsilon(\mathrm{{{off}}})\,/\,N_\varepsilon(\mathrm{{{on}}})$, "
            rf"$\varepsilon = {epsilon_of(man)}$")


def _single(draw_ax, width):
    """A one-Axes figure drawn by ``draw_ax(ax)``: 5.5 × 4 in on screen, ``width`` × 0.75 width."""
    fig = Figure(figsize=(width, 0.75 * width) if width else (5.5, 4.0), layout="constrained")
    draw_ax(fig.add_subplot())
    return fig


def _titled(draw, title):
    """``draw(ax)`` then the figure's own title (in the current style's title size)."""
    def go(ax):
        draw(ax)
        ax.set_title(title, fontsize=plots.font_size("title"))
    return go


def _ratio_jobs(man, sub, settings, lazy, styles) -> list:
    """``ratio``, ``ratio_compare`` (with ``[expect] compare``) and ``n_epsilon`` against the
    first knob."""
    knob, eps = man["knobs"][0], epsilon_of(man)

    def ratio_fig(width):
        if lazy.ratio is None:
            return None
        return _single(_titled(lambda ax: plots.plot_ratio_vs_knob(lazy.ratio, knob, ax=ax),
                               _ratio_title(man, *main_pair(man))), width)

    def compare_fig(width):
        if lazy.both is None or lazy.both["pair"].nunique() < 2:
            return None
        title = rf"{man['experiment']}: $N_\varepsilon$ ratios side by side, $\varepsilon = {eps}$"
        return _single(_titled(lambda ax: plots.plot_ratio_vs_knob(lazy.both, knob, ax=ax, hue="pair",
                                                                   predicted=False), title), width)

    def neps_fig(width):
        if lazy.ratio is None:
            return None
        return _single(lambda ax: plots.plot_n_epsilon(lazy.neps, knob, ax=ax, styles=styles), width)

    jobs = [("ratio", [sub, settings], ratio_fig)]
    if man.get("expect", {}).get("compare"):
        jobs.append(("ratio_compare", [sub, settings], compare_fig))
    return jobs + [("n_epsilon", [sub], neps_fig)]


def _best_of_n_job(bon, knobs, styles):
    """``best_of_n``: one panel per setting and ``n`` ∈ {smallest, middle, largest}."""
    def bon_fig(width):
        ns = sorted(bon["n"].unique())
        pick = sorted({ns[0], ns[len(ns) // 2], ns[-1]})  # smallest, middle and largest n
        b = bon[bon["n"].isin(pick)].copy()
        b["N"] = b["metric"].str.split("@").str[1].astype(int)
        b["metric"] = "expected_reward"
        b["panel"] = b["setting_id"].astype(str) + " n=" + b["n"].astype(int).astype(str).str.zfill(9)
        fig = _panels(b, [*knobs, "n"], lambda g, ax: plots.plot_best_of_n(g, ax=ax, N_col="N", styles=styles),
                      key="panel", width=width)
        fig.suptitle(r"best-of-$N$ from $\pi_{\mathrm{ref}}$ ranked by each estimator's reward "
                     r"($\mathbb{E}\,r^\star$, mean over seeds, 95% band)", fontsize=plots.font_size("title"))
        return fig
    return ("best_of_n", [bon], bon_fig)


def _curves_job(g, m, knobs, styles):
    """``curves_<m>``: the mean of metric ``m`` vs ``n`` with 95% bands, one panel per setting."""
    def curves(width):
        def draw(gg, ax):
            plots.plot_best_of_n(gg, ax=ax, metric=m, N_col="n", styles=styles)
            ax.set_xlabel(plots.N_LABEL)
            ax.set_title("")
        return _panels(g, knobs, draw, width=width)
    return (f"curves_{m}", [g], curves)


def scaling_figure(fits, points, width=None) -> Figure:
    """The ``scaling_law`` figure: one :func:`genver.plots.plot_scaling_law` panel per route
    descriptor, then one per ratio descriptor; side by side (5.2 × 4.2 in each on screen), or
    stacked in one column when ``width`` is a single column (< 4 in).

    Parameters
    ----------
    fits, points : pandas.DataFrame
        the tables of :func:`genver.scaling.scaling_laws`.
    width : float or None
        the figure's width in inches (None: the screen size).

    Returns
    -------
    matplotlib.figure.Figure
        the figure.
    """
    panels = list(pd.unique(fits.loc[fits["route"] != "ratio", "against"])) + \
        [("ratio", a) for a in pd.unique(fits.loc[fits["route"] == "ratio", "against"])]
    k = max(len(panels), 1)
    if width is None:
        nr, nc, size = 1, k, (5.2 * k, 4.2)
    elif width < 4:
        nr, nc, size = k, 1, (width, 0.8 * width * k)
    else:
        nr, nc, size = 1, k, (width, max(2.2, 0.85 * width / k))
    fig = Figure(figsize=size, layout="constrained")
    for ax, p in zip(fig.subplots(nr, nc, squeeze=False).ravel(), panels):
        route, against = p if isinstance(p, tuple) else (None, p)
        plots.plot_scaling_law(points, fits, ax=ax, against=against, routes=route)
        if "aggregate" in fits:  # which N_ε the fits use (the spec's [expect] aggregate)
            from ..scaling import AGGREGATE_WORDS
            ax.set_title(f"{ax.get_title()}; {AGGREGATE_WORDS[fits['aggregate'].iloc[0]]}", fontsize=9)
    return fig


def figure_jobs(man, df, settings, lazy) -> list:
    """``[(name, inputs, draw)]``: every figure the results call for, the tables its content
    depends on (hashed to decide whether to redraw), and ``draw(width) -> Figure`` (``width``
    in inches, ``None``: the screen size; ``None`` returned: no such figure for these results).

    Parameters
    ----------
    man : dict
        the results' manifest.
    df : pandas.DataFrame
        the tidy results table.
    settings : pandas.DataFrame
        one row per setting (``DIR/settings.parquet``).
    lazy : ReportTables
        the report's derived tables, computed on first use
        (:class:`genver.experiments.tables.ReportTables`).

    Returns
    -------
    list of tuple
        ``(name, inputs, draw)`` per figure.
    """
    knobs = man["knobs"]
    metrics = set(df["metric"])
    styles = plots.estimator_styles(df["estimator"].unique())  # one colour per label in every figure
    order = settings.sort_values(knobs, kind="stable")["setting_id"].tolist() if knobs else None
    jobs = []
    if "suboptimality" in metrics:
        sub = df[df["metric"] == "suboptimality"]

        def grid(width):
            return plots.sample_complexity_grid(lazy.agg, setting_ids=order, styles=styles, knobs=knobs,
                                                width=width, ncols=2 if width and width < 4 else 4)
        jobs.append(("sample_complexity", [sub, settings], grid))
        if knobs:
            jobs += _ratio_jobs(man, sub, settings, lazy, styles)
    if "beta" in knobs and {"expected_reward", "kl_to_reference"} <= metrics:
        fr = df[df["metric"].isin(["expected_reward", "kl_to_reference"])]
        jobs.append(("frontier", [fr], lambda width: _single(
            lambda ax: plots.plot_frontier(fr, ax=ax, knob="beta", styles=styles), width)))
    bon = df[df["metric"].str.startswith("bon_reward@")]
    if len(bon):
        jobs.append(_best_of_n_job(bon, knobs, styles))
    jobs += [_curves_job(df[df["metric"] == m], m, knobs, styles) for m in CURVE_METRICS if m in metrics]
    if man.get("expect", {}).get("scaling_law") is not None:
        def scaling_fig(width):
            res = lazy.scaling
            return None if res is None or isinstance(res, str) else scaling_figure(res.fits, res.points, width)
        jobs.append(("scaling_law", [df[df["metric"] == "suboptimality"], settings], scaling_fig))
    return jobs


def draw_and_save(figdir, name, variants, draw, key, style: str, pdf: bool) -> list[pathlib.Path]:
    """Draw one figure in each of its ``variants`` (stem, width, formats), save it and record the
    hash of its inputs; a screen PDF left from an earlier draw is removed when none is asked
    for (it would be stale). Returns the written files (none when the results have no such figure).

    Parameters
    ----------
    figdir : pathlib.Path
        the figures' directory.
    name : str
        the figure's name.
    variants : list of tuple of (str, float or None, tuple of str)
        ``(stem, width in inches or None, formats)`` to write.
    draw : callable
        ``draw(width) -> Figure or None``.
    key : str
        the digest of the figure's inputs (:func:`genver.experiments.figcache.digest`).
    style : str
        ``"screen"`` or ``"paper"``.
    pdf : bool
        whether a screen PDF is asked for.

    Returns
    -------
    list of pathlib.Path
        the written files.
    """
    written = []
    with plots.use_style(style):
        for stem, width, fmts in variants:
            fig = draw(width)
            if fig is None:
                break
            written += plots.save_figure(fig, figdir / stem, formats=fmts, tight=width is None)
    if written:
        if style == "screen" and not pdf:
            (figdir / f"{name}.pdf").unlink(missing_ok=True)
        figcache.store_digest(figdir / name, key)
    return written


#: longest a figure drawn in a forked process may take before the parent draws it itself
FORK_TIMEOUT_S = 300.0


def _in_child(job) -> tuple[int, int] | None:
    """Start ``draw_and_save(*job)`` in a forked process (POSIX, 2 or more CPUs, not macOS):
    ``(pid, read end of a pipe that receives the written files as JSON)``, or ``None`` where
    forking is not available (the caller draws it itself)."""
    import json
    import os
    import sys

    if not hasattr(os, "fork") or sys.platform == "darwin" or (os.cpu_count() or 1) < 2:
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return pid, r
    code = 1
    try:  # the child: draw, report the files, leave without running the parent's exit handlers
        os.close(r)
        os.write(w, json.dumps([str(f) for f in draw_and_save(*job)]).encode())
        code = 0
    finally:
        os._exit(code)


def _child_result(started, job) -> list[pathlib.Path]:
    """The files of a figure drawn by :func:`_in_child`; drawn here instead when the child
    failed or took longer than :data:`FORK_TIMEOUT_S`."""
    import json
    import os
    import signal
    import time

    pid, r = started
    t0, status = time.monotonic(), None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.monotonic() - t0 > FORK_TIMEOUT_S:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = -1
        else:
            time.sleep(0.005)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    if status == 0:
        return [pathlib.Path(f) for f in json.loads(data)]
    return draw_and_save(*job)


def draw_figures(root, man, df, settings, lazy, style: str = "screen", *, pdf: bool = False,
             only: set | None = None, parallel: bool = True) -> list[pathlib.Path]:
    """Draw (or keep, when their inputs hash as before) the figures (``only``: just those
    names); returns their files. Screen: PNG, and PDF with ``pdf=True``. With ``parallel`` and
    two or more figures to draw, the first (the sample-complexity grid: the largest, and the
    only one that needs :func:`genver.stats.aggregate`) is drawn in a forked process while this
    one draws the rest: the same code on the same tables, so the same files.

    Parameters
    ----------
    root : str or pathlib.Path
        the results directory.
    man : dict
        its manifest.
    df : pandas.DataFrame
        the tidy results table.
    settings : pandas.DataFrame
        one row per setting.
    lazy : ReportTables
        the report's derived tables (:class:`genver.experiments.tables.ReportTables`).
    style : str
        ``"screen"`` or ``"paper"``.
    pdf : bool
        also a PDF beside each screen PNG.
    only : set of str or None
        the figure names to draw (None: all).
    parallel : bool
        draw the largest figure in a forked process.

    Returns
    -------
    list of pathlib.Path
        the figures' files, in :func:`figure_jobs` order.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    figdir = pathlib.Path(root) / "figures"
    if style == "paper":
        figdir = figdir / "paper"
    elif style != "screen":
        raise ValueError(f"--style must be screen or paper, got {style!r}")
    figdir.mkdir(parents=True, exist_ok=True)
    labels = sorted(map(str, df["estimator"].unique()))
    common = [figcache.code_digest(), style, man["knobs"], man.get("expect", {}), man["experiment"], labels]
    out, todo = {}, []
    jobs = [j for j in figure_jobs(man, df, settings, lazy) if only is None or j[0] in only]
    for name, inputs, draw in jobs:
        variants: list[tuple[str, float | None, tuple[str, ...]]]
        if style == "screen":
            variants = [(name, None, ("png", "pdf") if pdf else ("png",))]
        else:
            variants = [(f"{name}_{w}", plots.PAPER_WIDTHS[w], ("pdf", "svg")) for w in plots.PAPER_WIDTHS]
        files = [figdir / f"{stem}.{fmt}" for stem, _, fmts in variants for fmt in fmts]
        key = figcache.digest(name, *common, *inputs)
        if figcache.is_current(figdir / name, files, key):
            out[name] = files
        else:
            todo.append((figdir, name, variants, draw, key, style, pdf))
    started = _in_child(todo[0]) if parallel and len(todo) >= 2 else None
    for job in todo[1:] if started else todo:
        out[job[1]] = draw_and_save(*job)
    if started:
        out[todo[0][1]] = _child_result(started, todo[0])
    return [f for name, *_ in jobs for f in out.get(name, [])]


#: metrics drawn against n by ``curves_<metric>`` (linear y axis)
CURVE_METRICS = ("bt_loglik", "bt_loglik_opt", "optimal_mass")


def _panels(df, knobs, draw, ncols: int = 4, key: str = "setting_id", width: float | None = None):
    """One panel per value of ``key`` (default: per setting, sorted), each drawn by
    ``draw(rows, ax)`` and titled with its knob values (:func:`genver.plots.setting_title`);
    the grid is :func:`genver.plots.grid_shape` of the panel count. Returns the Figure."""
    ids = sorted(df[key].astype(str).unique())
    nr, nc = plots.grid_shape(len(ids), 2 if width and width < 4 else ncols)
    pw = width / nc if width else 4.2
    fig = Figure(figsize=(pw * nc, 0.8 * pw * nr + 0.4), layout="constrained")
    axes = fig.subplots(nr, nc, squeeze=False)
    for i, sid in enumerate(ids):
        ax = axes[i // nc][i % nc]
        g = df[df[key].astype(str) == sid]
        draw(g, ax)
        ax.set_title(plots.setting_title(g.iloc[0], [k for k in knobs if k in g.columns]),
                     fontsize=plots.font_size("title"))
    for j in range(len(ids), nr * nc):
        axes[j // nc][j % nc].set_visible(False)
    return fig
