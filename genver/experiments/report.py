"""``genver plot`` and ``genver report``: figures and a Markdown or HTML report from a results directory.

Figures (``style="screen"``: PNG under ``DIR/figures/``, and PDF beside each for ``genver
report`` and ``genver plot --pdf``; ``style="paper"``: vector PDF and SVG under
``DIR/figures/paper/``, ``<name>_col`` 3.3 in and ``<name>_full`` 6.9 in wide, fonts embedded):

* ``sample_complexity`` — mean suboptimality ``J_β(π*) − J_β(π̂)`` vs ``n`` (log-log), one line per
  estimator with 95% stratified-bootstrap bands, one panel per setting titled by its knobs;
* ``ratio`` — the sample-efficiency ratio ``N_ε(offline)/N_ε(online)`` vs the first swept knob
  with its CI and the finite-class prediction ``log|Π|/log|R|`` (or ``dim Π/dim R``);
* ``n_epsilon`` — ``N_ε`` of each estimator vs the knob;
* ``frontier`` — expected reward vs ``KL(π̂‖π_ref)`` when ``beta`` is swept;
* ``best_of_n`` — ``E r*`` of best-of-N from ``π_ref`` ranked by each estimator's reward, vs
  ``N`` (metrics ``bon_reward@N``), one panel per setting and ``n`` ∈ {smallest, middle,
  largest};
* ``curves_<metric>`` — mean of ``bt_loglik``, ``bt_loglik_opt`` or ``optimal_mass`` vs ``n``
  with 95% bootstrap bands, one panel per setting.
* ``scaling_law`` — ``N_ε ∝ dim^a`` per route and the ratio's law (:func:`genver.scaling.scaling_laws`)
  when the spec sets ``[expect] scaling_law``.

Every bootstrap table (``N_BOOT`` resamples, random state 0) is computed by :mod:`genver.stats`,
once per call, and only when a figure or section needs it. Every figure of a report gives an
estimator label the same colour
(:func:`genver.plots.estimator_styles` of all the labels). A figure is redrawn only when the
hash of its inputs changed, and an unchanged report is not recomputed at all
(:mod:`genver.experiments.figcache`).

The report (``DIR/report.md``, or with ``fmt="html"`` ``DIR/report.html``: one self-contained
page, figures embedded as ``data:`` URIs) holds the spec's expectation, the verdicts (each also
in words, :func:`order_in_words` / :func:`ratio_in_words`), the gap descriptors per setting,
``N_ε`` and the ratio per setting, log-log slopes, the mean of every metric at the largest
``n``, the provenance (spec, hash, versions, commit, times) and the figures. Verdicts: the
spec's ``[expect] ratio`` checked with :func:`genver.stats.gap_verdict`, and each ``[expect]
order`` statement checked with :func:`genver.experiments.expect.check_order` (PASS | FAIL
each). :func:`format_verdicts` lays them out for a terminal of 100 columns.
"""
from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import plots, stats
from . import figcache
from .expect import check_order
from ..atomic import atomic_write_bytes
from .store import ResultStore

__all__ = ["load_results", "make_figures", "make_report", "means_at_largest_n", "ratios_side_by_side", "verdict",
           "verdicts", "format_verdicts", "order_in_words", "ratio_in_words", "scaling_law_section",
           "REPORT_FORMATS", "VERDICT_COLUMNS"]

N_BOOT = 1000


def load_results(root):
    store = ResultStore(root)
    man = store.read_manifest()
    return man, store.load(), store.settings()


def completeness_line(root, man=None) -> str | None:
    """``None`` when every unit of the run is in a readable shard, else one line
    ``"INCOMPLETE: k of N units ..."`` naming what is missing (``genver report`` / ``plot``
    print it first, and ``report.md`` begins with it)."""
    store = ResultStore(root)
    man = store.read_manifest() if man is None else man
    sids = store.settings()["setting_id"].tolist()
    total = man.get("units_total")
    if total is not None and sids:
        seeds = int(total) // len(sids)
    else:  # a manifest of an older genver: the spec says
        from .spec import parse_spec
        seeds = parse_spec(man["spec"], smoke=bool(man.get("smoke")), memory_limit="off").seeds
    c = store.completeness({(sid, s) for s in range(seeds) for sid in sids})
    if c["complete"]:
        return None
    why = [f"{c['total'] - c['done']} missing"] if c["done"] < c["total"] else []
    if c["unreadable"]:
        why.append(f"{len(c['unreadable'])} unreadable shard(s): {', '.join(c['unreadable'][:3])}"
                   + (" ..." if len(c["unreadable"]) > 3 else ""))
    return (f"INCOMPLETE: {c['done']} of {c['total']} units ({'; '.join(why)}); the verdicts are on partial "
            f"data; finish with `genver run SPEC --out {store.root} --resume`")


def _eps(man) -> float:
    return float(man.get("expect", {}).get("epsilon", 0.01))


def _routes(df):
    routes = set(df["route"].unique())
    return "offline" in routes and "online" in routes


def _aggregate(man) -> str:
    """Which N_ε the spec's ratio and verdict use (``[expect] aggregate``, default the mean curve)."""
    return man.get("expect", {}).get("aggregate", "mean")


def _ratio_pair(man, df) -> dict | None:
    """``{offline, online, by}`` of the spec's main ratio, or None when the results have none."""
    exp = man.get("expect", {})
    if "offline" in exp or "online" in exp:  # labels named by the spec
        off, on = exp.get("offline", "offline"), exp.get("online", "online")
        return {"offline": off, "online": on, "by": "estimator"} if {off, on} <= set(df["estimator"].unique()) else None
    if not _routes(df):
        return None
    multi = df[df["route"].isin(["offline", "online"])].groupby(["setting_id", "route"])["estimator"].nunique()
    if not (multi > 1).any():
        return {"offline": "offline", "online": "online", "by": "route"}
    # several estimators per route: compare the labels "offline"/"online"
    return {"offline": "offline", "online": "online", "by": "estimator"} \
        if {"offline", "online"} <= set(df["estimator"].unique()) else None


def _ratio(man, df, settings):
    pair = _ratio_pair(man, df)
    if pair is None:
        return None
    return stats.efficiency_ratio(df, _eps(man), knobs=man["knobs"], n_boot=N_BOOT, random_state=0, settings=settings,
                                  aggregate=_aggregate(man), **pair)


def _compared(man, df, settings) -> list:
    """``[(offline label, online label, ratio table)]`` for each ``[expect] compare`` pair whose
    labels have rows (e.g. the neural routes beside the tabular ones)."""
    out = []
    for off, on in man.get("expect", {}).get("compare", []):
        if {off, on} <= set(df["estimator"].unique()):
            out.append((off, on, stats.efficiency_ratio(df, _eps(man), offline=off, online=on, knobs=man["knobs"],
                                                        n_boot=N_BOOT, random_state=0, settings=settings,
                                                        aggregate=_aggregate(man))))
    return out


def _main_pair(man) -> tuple[str, str]:
    exp = man.get("expect", {})
    return exp.get("offline", "offline"), exp.get("online", "online")


def ratios_side_by_side(man, df, settings, ratio: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The spec's sample-efficiency ratio and each ``[expect] compare`` pair's (e.g. the neural
    routes beside the tabular ones), stacked into one :func:`genver.stats.efficiency_ratio` table
    with a ``pair`` column (``"offline / online"``, ``"neural_offline / neural_online"``, main
    pair first, each sorted by the knobs): the table behind the ``ratio_compare`` figure. ``None`` when the results have
    no main offline/online pair; just the main pair when the spec compares nothing else.
    ``ratio``: the main pair's table when already computed."""
    ratio = _ratio(man, df, settings) if ratio is None else ratio
    if ratio is None:
        return None
    off, on = _main_pair(man)
    tables = [ratio.assign(pair=f"{off} / {on}")] + [r.assign(pair=f"{a} / {b}") for a, b, r in _compared(man, df, settings)]
    return pd.concat([t.sort_values(man["knobs"], kind="stable") if man["knobs"] else t for t in tables],
                     ignore_index=True)


def means_at_largest_n(df, knobs=(), metric: str | None = None) -> pd.DataFrame:
    """Mean over seeds of each metric at the largest ``n``. ``metric=None``: one row per
    (setting, estimator), one column per metric (the report's table); a metric name: one row
    per setting, one column per estimator (the estimators side by side)."""
    knobs = list(knobs)
    at = df[df["n"] == df["n"].max()]
    if metric is None:
        means = at.groupby(["setting_id", *knobs, "estimator", "metric"], dropna=False)["value"].mean()
        return means.unstack("metric").reset_index()
    at = at[at["metric"] == metric]
    means = at.groupby(["setting_id", *knobs, "estimator"], dropna=False)["value"].mean().unstack("estimator")
    means = means[plots.label_order(means.columns)]  # offline, online, then the rest
    means.columns.name = None
    return means.reset_index().sort_values([*knobs, "setting_id"], kind="stable", ignore_index=True)


def make_figures(root, style: str = "screen", *, pdf: bool = False) -> list[pathlib.Path]:
    """Write the figures of a results directory: ``style="screen"`` PNG under ``DIR/figures``
    (and PDF beside each with ``pdf=True``); ``"paper"`` vector PDF and SVG under
    ``DIR/figures/paper``, each at one column (``<name>_col``, 3.3 in) and the full page
    (``<name>_full``, 6.9 in) wide, fonts embedded. A figure whose inputs are unchanged
    (:mod:`genver.experiments.figcache`) is not redrawn. Returns every figure's files, drawn now
    or kept."""
    name = figcache.plot_cache_name(style, pdf)
    hit = figcache.read_report_cache(root, name)
    if hit is not None:  # unchanged results, code and style: every figure is as drawn
        return [pathlib.Path(root) / f for f in hit["files"]]
    man, df, settings = load_results(root)
    lazy = _Lazy(man, df, settings)
    files = _figures(root, man, df, settings, lazy, style=style, pdf=pdf)
    figcache.write_report_cache(root, name, {
        "path": "figures", "files": [str(pathlib.Path(f).relative_to(root)) for f in files]})
    return files


class _Lazy:
    """The bootstrap tables of a report, each computed on first use (a figure whose inputs are
    unchanged never asks for them)."""

    def __init__(self, man, df, settings):
        self.man, self.df, self.settings = man, df, settings
        self._cache = {}

    def _get(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def ratio(self):
        return self._get("ratio", lambda: _ratio(self.man, self.df, self.settings))

    @property
    def both(self):
        return self._get("both", lambda: ratios_side_by_side(self.man, self.df, self.settings, self.ratio))

    @property
    def neps(self):
        return self._get("neps", lambda: stats.n_epsilon(self.df, _eps(self.man), knobs=self.man["knobs"],
                                                          n_boot=N_BOOT, random_state=0))

    @property
    def agg(self):
        return self._get("agg", lambda: stats.aggregate(self.df, "suboptimality", knobs=self.man["knobs"],
                                                         n_boot=N_BOOT, random_state=0))

    @property
    def scaling(self):
        """``(fits, points)`` of ``[expect] scaling_law``, a sentence when the results lack its
        two routes, ``None`` when the spec asks for no scaling law."""
        return self._get("scaling", lambda: _scaling_fits(self.man, self.df, self.settings))


def _ratio_title(man, off="offline", on="online") -> str:
    return (rf"{man['experiment']}: $N_\varepsilon(\mathrm{{{off}}})\,/\,N_\varepsilon(\mathrm{{{on}}})$, "
            rf"$\varepsilon = {_eps(man)}$")


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
    knob, eps = man["knobs"][0], _eps(man)

    def ratio_fig(width):
        if lazy.ratio is None:
            return None
        return _single(_titled(lambda ax: plots.plot_ratio_vs_knob(lazy.ratio, knob, ax=ax),
                               _ratio_title(man, *_main_pair(man))), width)

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


def _scaling_figure(fits, points, width=None) -> Figure:
    """The ``scaling_law`` figure: one :func:`genver.plots.plot_scaling_law` panel per route
    descriptor, then one per ratio descriptor; side by side (5.2 × 4.2 in each on screen), or
    stacked in one column when ``width`` is a single column (< 4 in)."""
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
    return fig


def _figure_jobs(man, df, settings, lazy) -> list:
    """``[(name, inputs, draw)]``: every figure the results call for, the tables its content
    depends on (hashed to decide whether to redraw), and ``draw(width) -> Figure`` (``width``
    in inches, ``None``: the screen size; ``None`` returned: no such figure for these results)."""
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
            return None if res is None or isinstance(res, str) else _scaling_figure(res.fits, res.points, width)
        jobs.append(("scaling_law", [df[df["metric"] == "suboptimality"], settings], scaling_fig))
    return jobs


def _draw_and_save(figdir, name, variants, draw, key, style: str, pdf: bool) -> list[pathlib.Path]:
    """Draw one figure in each of its ``variants`` (stem, width, formats), save it and record the
    hash of its inputs; a screen PDF left from an earlier draw is removed when none is asked
    for (it would be stale). Returns the written files (none when the results have no such figure)."""
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
    """Start ``_draw_and_save(*job)`` in a forked process (POSIX, 2 or more CPUs, not macOS):
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
        os.write(w, json.dumps([str(f) for f in _draw_and_save(*job)]).encode())
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
    return _draw_and_save(*job)


def _figures(root, man, df, settings, lazy, style: str = "screen", *, pdf: bool = False,
             only: set | None = None, parallel: bool = True) -> list[pathlib.Path]:
    """Draw (or keep, when their inputs hash as before) the figures (``only``: just those
    names); returns their files. Screen: PNG, and PDF with ``pdf=True``. With ``parallel`` and
    two or more figures to draw, the first (the sample-complexity grid: the largest, and the
    only one that needs :func:`genver.stats.aggregate`) is drawn in a forked process while this
    one draws the rest: the same code on the same tables, so the same files."""
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
    jobs = [j for j in _figure_jobs(man, df, settings, lazy) if only is None or j[0] in only]
    for name, inputs, draw in jobs:
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
        out[job[1]] = _draw_and_save(*job)
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


def verdicts(man, df, ratio) -> pd.DataFrame:
    """One row per expectation: the ratio (when the spec states one, or states nothing) and
    each ``[expect] order`` statement. Columns: experiment, expected, verdict, detail and
    in_words (the expectation as a sentence, :func:`ratio_in_words` / :func:`order_in_words`)."""
    exp = man.get("expect", {})
    rows = []
    if exp.get("ratio") or not exp.get("order"):
        status, message = verdict(man, ratio, df)
        rows.append({"experiment": man["experiment"], "expected": exp.get("ratio", ""), "verdict": status,
                     "detail": message})
    for r in check_order(exp.get("order", []), df, man["knobs"]):
        rows.append({"experiment": man["experiment"], "expected": r["statement"], "verdict": r["verdict"],
                     "detail": r["detail"]})
    out = pd.DataFrame(rows, columns=["experiment", "expected", "verdict", "detail"])
    off, on = _main_pair(man)
    out["in_words"] = [ratio_in_words(e, off, on) if i == 0 and (exp.get("ratio") or not exp.get("order"))
                       else order_in_words(e) for i, e in enumerate(out["expected"])]
    return out


#: columns of :func:`verdicts`
VERDICT_COLUMNS = ["experiment", "expected", "verdict", "detail", "in_words"]


def verdict(man, ratio, df=None) -> tuple[str, str]:
    """(PASS | FAIL | NOT CHECKED, message) for the spec's ``[expect] ratio``; a trend
    ("increasing in KNOB") is judged on the bootstrap of the censoring-aware trend
    (:func:`genver.stats.ratio_trend`) when the results ``df`` are given."""
    expect = man.get("expect", {}).get("ratio")
    if not expect:
        return "NOT CHECKED", "the spec states no [expect] ratio"
    if ratio is None:
        return "NOT CHECKED", "no offline/online pair of routes to compare"
    trend = None
    m = _TREND.match(expect)
    pair = _ratio_pair(man, df) if df is not None and m else None
    if pair is not None and m.group(2) in df.columns:
        trend = stats.ratio_trend(df, _eps(man), m.group(2), knobs=man["knobs"], n_boot=N_BOOT, random_state=0,
                                  aggregate=_aggregate(man), **pair)
    v = stats.gap_verdict(ratio, expect, trend=trend)
    return ("PASS" if v.passed else "FAIL"), v.message


_TREND = stats._TREND


def _cell(v, floatfmt="{:.4g}") -> str:
    if isinstance(v, (float, np.floating)):
        return "—" if np.isnan(v) else floatfmt.format(v)
    return str(v)


def _sorted(df: pd.DataFrame, sort=()) -> pd.DataFrame:
    sort = [c for c in sort if c in df.columns]
    return df.sort_values(sort, kind="stable") if sort else df


def _md_table(df: pd.DataFrame, floatfmt="{:.4g}", sort=()) -> str:
    df = _sorted(df, sort)
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_cell(row[c], floatfmt) for c in cols) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- statements in words
_LOWER_IS_BETTER = {"suboptimality", "kl_to_optimal"}
_HIGHER_IS_BETTER = {"expected_reward", "win_rate", "bt_loglik", "bt_loglik_opt", "optimal_mass",
                     "expected_bt_loglik"}


def ratio_in_words(expect: str, off: str = "offline", on: str = "online") -> str:
    """An ``[expect] ratio`` of ``N_ε(off)/N_ε(on)`` in words: ``"> 1"`` is "online needs fewer
    pairs than offline in every setting"."""
    import re

    e = (expect or "").strip()
    m = re.match(r"^(increasing|decreasing)\s+in\s+(\S+)$", e)
    if m:
        grows = m.group(1) == "increasing"
        return (f"the more {m.group(2)}, the larger {on}'s saving in pairs: N_ε({off})/N_ε({on}) "
                f"{'grows' if grows else 'shrinks'} with {m.group(2)}")
    m = re.match(r"^(equals|==|=|>=|≥|<=|≤|>|<)\s*([0-9.eE+-]+)$", e)
    if not m:
        return ""
    op, c = m.group(1), m.group(2)
    if op in ("equals", "==", "="):
        return (f"{off} and {on} need the same number of pairs" if float(c) == 1 else
                f"{off} needs {c}× the pairs {on} needs") + " (within the CI, in every setting)"
    fewer = {">": f"{on} needs fewer pairs than {off}", ">=": f"{on} needs no more pairs than {off}",
             "≥": f"{on} needs no more pairs than {off}", "<": f"{off} needs fewer pairs than {on}",
             "<=": f"{off} needs no more pairs than {on}", "≤": f"{off} needs no more pairs than {on}"}[op]
    if float(c) != 1:
        fewer += f" by a factor {'above' if op in ('>', '>=', '≥') else 'below'} {c}"
    return fewer + " in every setting"


def order_in_words(text: str) -> str:
    """An ``[expect] order`` statement in words, the right way round for the metric: on
    ``suboptimality`` (lower is better) ``offline > online`` reads "online is better than
    offline (lower suboptimality)". ``""`` when the statement does not parse."""
    from .expect import parse_order

    try:
        st = parse_order(text)
    except ValueError:
        return ""
    metric = st.metric
    quals = []
    if st.where:
        quals.append("where " + ", ".join(f"{k} = {v}" for k, v in st.where.items()))
    if st.n_filter:
        op, v = st.n_filter
        quals.append("at the largest n" if v == "max" else
                     f"{ {'eq': 'at n =', 'ge': 'for n ≥', 'le': 'for n ≤'}[op]} {v}")
    tail = (" " + " ".join(quals)) if quals else ""
    what = "more E r* at the same KL(π̂‖π_ref)" if metric == "frontier" else metric
    if metric == "frontier" or metric in _HIGHER_IS_BETTER:
        higher_better = True
    elif metric in _LOWER_IS_BETTER:
        higher_better = False
    else:  # a metric of unknown direction: compare values, judge nothing
        higher_better = None
    parts = []
    for a, op, b in st.pairs:
        if st.trend_knob is not None:
            if higher_better is None:
                parts.append(f"{metric} of {a} minus {b} {op} with {st.trend_knob}")
            else:
                gainer = a if (op == "increasing") == bool(higher_better) else b
                other = b if gainer == a else a
                parts.append(f"{gainer}'s advantage over {other} on {metric} grows with {st.trend_knob}")
            continue
        if op in ("lt", "le"):  # read every comparison as "a > b"
            a, b, op = b, a, {"lt": "gt", "le": "ge"}[op]
        if op == "eq":
            parts.append(f"{a} and {b} are equally good on {what}")
            continue
        if higher_better is None:
            parts.append(f"{a} has {'higher' if op == 'gt' else 'no lower'} {metric} than {b}")
            continue
        better, worse = (a, b) if higher_better else (b, a)
        direction = "higher" if higher_better else "lower"
        if metric == "frontier":
            parts.append(f"{better} is better than {worse}: {what}" if op == "gt"
                         else f"{better} is at least as good as {worse}: never significantly less E r* at the same KL")
        elif op == "gt":
            parts.append(f"{better} is better than {worse} ({direction} {metric})")
        else:
            parts.append(f"{better} is at least as good as {worse} (never significantly "
                         f"{'lower' if higher_better else 'higher'} {metric})")
    return "; ".join(parts) + tail


def format_verdicts(table: pd.DataFrame, width: int = 100) -> str:
    """The verdict table for a terminal of ``width`` columns: a header (experiment, counts), per
    expectation a line
    ``VERDICT  statement``, the statement in words, then the detail wrapped and indented."""
    import textwrap

    ind = " " * 8
    out = []
    if len(table):
        counts = table["verdict"].value_counts()
        out += textwrap.wrap(f"{table['experiment'].iloc[0]}: {len(table)} expectation{'s' * (len(table) > 1)}, "
                             + ", ".join(f"{n} {k}" for k, n in counts.items()), width)
    for _, v in table.iterrows():
        words = v.get("in_words", "")
        head = f"{v['verdict']:<7} {v['expected'] or '(no [expect] ratio)'}"
        out += textwrap.wrap(head, width, subsequent_indent=ind, break_on_hyphens=False)
        if words:
            out += textwrap.wrap("= " + words, width, initial_indent=ind, subsequent_indent=ind + "  ")
        for part in str(v["detail"]).split(" | "):
            out += textwrap.wrap(part, width, initial_indent=ind,
                                 subsequent_indent=ind + "  ", break_on_hyphens=False)
    return "\n".join(out)


# --------------------------------------------------------------------------- the report
def _sections(root, man, df, settings, lazy, table) -> list:
    """The report as data: ``[(heading or None, [block, ...])]``, each block a paragraph (str)
    or a table (DataFrame); rendered by :func:`_render_md` and :func:`_render_html`."""
    knobs = man["knobs"]
    eps = _eps(man)
    ratio = lazy.ratio
    spec = man.get("spec", {}).get("experiment", {})
    head = [spec["description"]] if spec.get("description") else []
    head.append(f"**Expected:** {man.get('expected') or '—'}")
    for _, v in table.iterrows():
        what = f"`{v['expected']}`: " if v["expected"] else ""
        words = f" ({v['in_words']})" if v.get("in_words") else ""
        head.append(f"**Verdict:** {what}{v['verdict']}{words} — {v['detail']}")
    head.append(f"Seeds and sizes: {df['seed'].nunique()} seeds, n ∈ {sorted(df['n'].unique().tolist())}; "
                f"{'smoke run; ' if man.get('smoke') else ''}genver {man['versions']['genver']}, "
                f"commit {man.get('git_commit') or 'unknown'}. "
                + ("Metrics are **Monte-Carlo estimates** (sampled policies, a task beyond enumeration); each "
                   "has a `<metric>_se` row with its standard error; "
                   if "estimate" in settings.columns and (settings["estimate"] == "monte_carlo").any()
                   else "All metrics are exact (enumeration); ")
                + f"uncertainty is over data seeds (95% stratified bootstrap, {N_BOOT} resamples).")
    secs = [(None, head)]
    desc_cols = [c for c in ["setting_id", *knobs, "log_size_R", "log_size_Pi", "n_params_R", "n_params_Pi",
                             "predicted_ratio", "containment_residual"] if c in settings.columns]
    secs.append(("Gap descriptors", [_sorted(settings[desc_cols], knobs)]))
    if ratio is not None:
        cols = [c for c in ["setting_id", *knobs, "N_offline", "N_online", "ratio", "ratio_lo", "ratio_hi",
                            "ratio_kind", "predicted_ratio"] if c in ratio.columns]
        blocks = [_sorted(ratio[cols], knobs)]
        if knobs:  # which settings are only bounds (a route not reaching ε by the largest n)
            cens = stats.censored_settings(ratio, knobs[0])
            blocks.append(f"N_ε of the {_aggregate(man)}{' curve' if _aggregate(man) == 'mean' else ' of per-seed N_ε'}; "
                          + (f"censored (not reaching ε by the largest n): {stats.censored_text(cens, knobs[0])}."
                             if cens else "no setting is censored."))
        secs.append((f"Sample-efficiency ratio N_ε(offline)/N_ε(online), ε = {eps}", blocks))
        for off, on in man.get("expect", {}).get("compare", []):
            r = lazy.both[lazy.both["pair"] == f"{off} / {on}"]
            if len(r):
                secs.append((f"Sample-efficiency ratio N_ε({off})/N_ε({on}), ε = {eps}",
                             [_sorted(r[[c for c in cols if c in r.columns]], knobs)]))
    if "suboptimality" in set(df["metric"]):
        slope = stats.loglog_slope(df, "suboptimality", knobs=knobs)
        cols = [c for c in ["setting_id", *knobs, "estimator", "slope", "slope_se", "n_points"] if c in slope.columns]
        secs.append(("Log-log slope of suboptimality vs n", [_sorted(slope[cols], [*knobs, "estimator"])]))
    means = means_at_largest_n(df, knobs)
    secs.append((f"Mean of each metric over seeds at the largest n = {int(df['n'].max())}",
                 [_sorted(means, [*knobs, "estimator"])]))
    prov = {"results": str(pathlib.Path(root).resolve().name), "spec": man.get("spec_path", "—"),
            "spec hash": man.get("spec_hash", "—"), "smoke": man.get("smoke", False),
            "genver": man["versions"].get("genver"), "git commit": man.get("git_commit") or "unknown",
            "started": man.get("started"), "finished": man.get("finished"),
            "executor": man.get("executor_last_run", "—"),
            **{f"version {k}": v for k, v in man["versions"].items() if k != "genver"}}
    secs.append(("Provenance", [pd.DataFrame({"item": list(prov), "value": [str(v) for v in prov.values()]})]))
    return secs


def _render_md(man, secs, figures, banner: str | None = None) -> str:
    lines = ([f"**{banner}**", ""] if banner else []) + [f"# {man['experiment']}", ""]
    for heading, blocks in secs:
        if heading:
            lines += [f"## {heading}", ""]
        for b in blocks:
            lines += [b if isinstance(b, str) else _md_table(b), ""]
    lines += ["## Figures", ""]
    for f in figures:
        if f.suffix == ".png":
            lines += [f"![{f.stem}](figures/{f.name})", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;
border-bottom:1px solid #ddd}table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;
overflow-x:auto}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}th{background:#f3f3f3}
td.t{text-align:left}figure{margin:1em 0}figure img{max-width:100%}figcaption{font-size:.85em;color:#555}
.PASS{color:#0b6e2e;font-weight:600}.FAIL{color:#b00020;font-weight:600}.NOT{color:#8a6d00;font-weight:600}
code{background:#f4f4f4;padding:0 .2em}"""


def _render_html(man, secs, figures, table, banner: str | None = None) -> str:
    """One self-contained page: styles inline, figures as ``data:`` URIs (PNG), no link out."""
    import base64
    import html
    import re

    esc = html.escape

    def para(text):
        t = esc(text)
        t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
        return "<p>" + re.sub(r"`(.+?)`", r"<code>\1</code>", t) + "</p>"

    def tab(df):
        head = "".join(f"<th>{esc(str(c))}</th>" for c in df.columns)
        rows = []
        for _, r in df.iterrows():
            cells = []
            for c in df.columns:
                v = r[c]
                cls = "" if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else ' class="t"'
                cells.append(f"<td{cls}>{esc(_cell(v))}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

    body = ([para(f"**{banner}**")] if banner else []) + [f"<h1>{esc(man['experiment'])}</h1>"]
    vt = ["<table class='verdicts'><thead><tr><th>verdict</th><th>expected</th><th>in words</th><th>detail</th>"
          "</tr></thead><tbody>"]
    for _, v in table.iterrows():
        cls = str(v["verdict"]).split()[0]
        vt.append(f"<tr><td class='t {cls}'>{esc(v['verdict'])}</td><td class='t'><code>{esc(v['expected'])}</code>"
                  f"</td><td class='t'>{esc(v.get('in_words', ''))}</td><td class='t'>{esc(v['detail'])}</td></tr>")
    vt.append("</tbody></table>")
    for i, (heading, blocks) in enumerate(secs):
        if heading:
            body.append(f"<h2>{esc(heading)}</h2>")
        for b in blocks:
            if isinstance(b, str):
                if i == 0 and b.startswith("**Verdict:**"):
                    continue  # the verdict table below says it with the words
                body.append(para(b))
            else:
                body.append(tab(b))
        if i == 0:
            body += ["<h2>Verdicts</h2>", "".join(vt)]
    body.append("<h2>Figures</h2>")
    for f in figures:
        if f.suffix == ".png":
            uri = "data:image/png;base64," + base64.b64encode(f.read_bytes()).decode()
            body.append(f"<figure id='fig-{esc(f.stem)}'><img alt='{esc(f.stem)}' src='{uri}'>"
                        f"<figcaption>{esc(f.stem)} (PDF beside it: figures/{esc(f.stem)}.pdf)</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(man['experiment'])}: genver report</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


REPORT_FORMATS = ("md", "html")


def make_report(root, fmt: str = "md") -> tuple[pathlib.Path, pd.DataFrame]:
    """Write ``DIR/report.md`` (``fmt="md"``, figures linked) or ``DIR/report.html`` (``"html"``:
    one self-contained page, figures embedded) and return it with the verdict table (columns
    experiment, expected, verdict, detail, in_words). Unchanged results are not recomputed:
    the report and its verdicts come from ``DIR/.report-cache.json``
    (:mod:`genver.experiments.figcache`), and only figures whose inputs changed are redrawn."""
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(REPORT_FORMATS)}, got {fmt!r}")
    root = pathlib.Path(root)
    hit = figcache.read_report_cache(root, fmt)
    if hit is not None:
        return root / hit["path"], pd.DataFrame(hit["verdicts"], columns=VERDICT_COLUMNS)
    man, df, settings = load_results(root)
    lazy = _Lazy(man, df, settings)  # every bootstrap table is computed once and reused
    figures = _figures(root, man, df, settings, lazy, pdf=True)  # the scaling law's among them
    table = verdicts(man, df, lazy.ratio)
    incomplete = completeness_line(root, man)
    if incomplete:  # every verdict is marked, and the report opens with the line
        table["verdict"] = table["verdict"] + " (partial data)"
    scaling_sec, table, _ = scaling_law_section(root, man, df, settings, table, lazy)
    secs = _sections(root, man, df, settings, lazy, table)
    if scaling_sec is not None:  # before the provenance, which closes the report
        secs.insert(len(secs) - 1, scaling_sec)
    path = root / f"report.{fmt}"
    text = (_render_md(man, secs, figures, banner=incomplete) if fmt == "md"
            else _render_html(man, secs, figures, table, banner=incomplete))
    atomic_write_bytes(path, text.encode())
    figcache.write_report_cache(root, fmt, {"path": path.name, "verdicts": table.to_dict("records"),
                                            "terminal": format_verdicts(table)})
    return path, table



def _scaling_fits(man, df, settings):
    """:func:`genver.scaling.scaling_laws` of the spec's ``[expect] scaling_law`` (the main pair:
    labels when the spec names them or a route has several estimators, else the routes);
    a sentence when the results lack the two; ``None`` without the key."""
    opts = man.get("expect", {}).get("scaling_law")
    if opts is None:
        return None
    from .. import scaling

    exp = man["expect"]
    if "offline" in exp or "online" in exp or df.groupby(["setting_id", "route"])["estimator"].nunique().max() > 1:
        by, (off, on) = "estimator", _main_pair(man)  # the labels, as _ratio compares them
    else:
        by, off, on = "route", "offline", "online"
    if not {off, on} <= set(df[by].unique()):
        return f"No {off!r} and {on!r} {by}s to fit."
    return scaling.scaling_laws(df, settings, float(opts.get("epsilon", _eps(man))),
                                against=opts.get("against", scaling.DEFAULT_AGAINST),
                                ratio_against=opts.get("ratio_against", scaling.DEFAULT_RATIO_AGAINST),
                                offline=off, online=on, by=by, knobs=man["knobs"], n_boot=N_BOOT, random_state=0)


def scaling_law_section(root, man, df, settings, table: pd.DataFrame,
                        lazy: _Lazy | None = None) -> tuple[tuple | None, pd.DataFrame, list]:
    """The "Scaling laws" section of the report when the spec sets ``[expect] scaling_law``
    (:func:`genver.scaling.scaling_laws`: ``N_ε ∝ dim^a`` per route against each ``against``
    descriptor and the ratio against ``ratio_against``, Tobit fits with paired seed-bootstrap
    CIs, the bound's exponent): the section ``(heading, blocks)`` (a paragraph, the fits table, one
    plain sentence per fit), the verdict ``table`` with one row per fit appended (verdict
    ``AGREES`` | ``DISAGREES`` | ``UNDEFINED``: measurements, never a FAIL) and the figure files
    (``figures/scaling_law.png`` and ``.pdf``, drawn only when their inputs changed, as every
    figure). ``lazy``: the report's tables when already computed. Without the key:
    ``(None, table, [])`` unchanged."""
    if man.get("expect", {}).get("scaling_law") is None:
        return None, table, []
    lazy = _Lazy(man, df, settings) if lazy is None else lazy
    res = lazy.scaling
    if isinstance(res, str):
        return ("Scaling laws", [res]), table, []
    files = _figures(root, man, df, settings, lazy, pdf=True, only={"scaling_law"})
    fits = res.fits
    cols = ["route", "against", "a", "a_lo", "a_hi", "predicted_a", "agrees", "n_points", "n_censored", "decades",
            "method"]
    blocks = [f"Fits of log N_ε on log dim over the settings (ε = {fits['eps'].iloc[0]}); censored N_ε (a route "
              "never reaching ε, or reaching it at the smallest n) enter as bounds in a censored-regression (Tobit) "
              f"MLE, never as exact values; 95% CI over {N_BOOT} seed resamples shared by every setting and both "
              "routes. The bound (N_ε ∝ dim/ε, or log|class|/ε) predicts `predicted_a` "
              "(see `genver/scaling.py`).",
              fits[cols].assign(agrees=fits["agrees"].map({True: "yes", False: "no"}).fillna("—")),
              *[f"- {m}" for m in fits["message"]]]
    verdict = {True: "AGREES", False: "DISAGREES"}
    rows = pd.DataFrame({"experiment": man["experiment"],
                         "expected": "scaling law: " + fits["route"] + " vs " + fits["against"],
                         "verdict": fits["agrees"].map(verdict).fillna("UNDEFINED"),
                         "detail": fits["message"], "in_words": ""})
    return ("Scaling laws", blocks), pd.concat([table, rows], ignore_index=True), files
