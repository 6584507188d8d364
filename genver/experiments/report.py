"""``genver plot`` and ``genver report``: figures and a Markdown report from a results directory.

Figures (PNG and PDF, under ``DIR/figures/``):

* ``sample_complexity`` — mean suboptimality ``J_β(π*) − J_β(π̂)`` vs ``n`` (log-log), one line per
  estimator with 95% stratified-bootstrap bands, one panel per setting;
* ``ratio`` — the sample-efficiency ratio ``N_ε(offline)/N_ε(online)`` vs the first swept knob
  with its CI and the finite-class prediction ``log|Π|/log|R|`` (or ``dim Π/dim R``);
* ``n_epsilon`` — ``N_ε`` of each estimator vs the knob;
* ``frontier`` — expected reward vs ``KL(π̂‖π_ref)`` when ``beta`` is swept.

The report (``DIR/report.md``) holds the spec's expectation, the gap descriptors per setting,
``N_ε`` and the ratio per setting, log-log slopes, the figures, and a verdict: the spec's
``[expect] ratio`` checked with :func:`genver.stats.gap_verdict`.
"""
from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd

from .. import plots, stats
from .store import ResultStore, atomic_write_bytes

__all__ = ["load_results", "make_figures", "make_report", "verdict"]

N_BOOT = 1000


def load_results(root):
    store = ResultStore(root)
    man = store.read_manifest()
    return man, store.load(), store.settings()


def _eps(man) -> float:
    return float(man.get("expect", {}).get("epsilon", 0.01))


def _routes(df):
    routes = set(df["route"].unique())
    return "offline" in routes and "online" in routes


def _ratio(man, df, settings):
    if not _routes(df):
        return None
    try:
        return stats.efficiency_ratio(df, _eps(man), offline="offline", online="online", knobs=man["knobs"],
                                      n_boot=N_BOOT, random_state=0, by="route", settings=settings)
    except ValueError:  # several estimators per route: compare the labels "offline"/"online"
        if {"offline", "online"} <= set(df["estimator"].unique()):
            return stats.efficiency_ratio(df, _eps(man), knobs=man["knobs"], n_boot=N_BOOT, random_state=0,
                                          settings=settings)
        return None


def make_figures(root) -> list[pathlib.Path]:
    import matplotlib
    matplotlib.use("Agg", force=False)
    man, df, settings = load_results(root)
    figdir = pathlib.Path(root) / "figures"
    figdir.mkdir(exist_ok=True)
    knobs = man["knobs"]
    out = []
    if "suboptimality" in set(df["metric"]):
        agg = stats.aggregate(df, "suboptimality", knobs=knobs, n_boot=N_BOOT, random_state=0)
        order = settings.sort_values(knobs, kind="stable")["setting_id"].tolist() if knobs else None
        fig = plots.sample_complexity_grid(agg, setting_ids=order)
        out += plots.save_figure(fig, figdir / "sample_complexity")
        ratio = _ratio(man, df, settings)
        if ratio is not None and knobs:
            ax = plots.plot_ratio_vs_knob(ratio, knobs[0])
            ax.set_title(f"{man['experiment']}: N_ε(offline)/N_ε(online), ε = {_eps(man)}")
            out += plots.save_figure(ax, figdir / "ratio")
            neps = stats.n_epsilon(df, _eps(man), knobs=knobs, n_boot=N_BOOT, random_state=0)
            out += plots.save_figure(plots.plot_n_epsilon(neps, knobs[0]), figdir / "n_epsilon")
    if "beta" in knobs and {"expected_reward", "kl_to_reference"} <= set(df["metric"]):
        out += plots.save_figure(plots.plot_frontier(df, knob="beta"), figdir / "frontier")
    return out


def verdict(man, ratio) -> tuple[str, str]:
    """(PASS | FAIL | NOT CHECKED, message) for the spec's ``[expect] ratio``."""
    expect = man.get("expect", {}).get("ratio")
    if not expect:
        return "NOT CHECKED", "the spec states no [expect] ratio"
    if ratio is None:
        return "NOT CHECKED", "no offline/online pair of routes to compare"
    v = stats.gap_verdict(ratio, expect)
    return ("PASS" if v.passed else "FAIL"), v.message


def _md_table(df: pd.DataFrame, floatfmt="{:.4g}", sort=()) -> str:
    sort = [c for c in sort if c in df.columns]
    if sort:
        df = df.sort_values(sort, kind="stable")
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, (float, np.floating)):
                cells.append("—" if np.isnan(v) else floatfmt.format(v))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def make_report(root) -> tuple[pathlib.Path, pd.DataFrame]:
    """Write ``DIR/report.md`` (figures included) and return it with the verdict table."""
    root = pathlib.Path(root)
    figures = make_figures(root)
    man, df, settings = load_results(root)
    knobs = man["knobs"]
    eps = _eps(man)
    ratio = _ratio(man, df, settings)
    status, message = verdict(man, ratio)
    lines = [f"# {man['experiment']}", ""]
    spec = man.get("spec", {}).get("experiment", {})
    if spec.get("description"):
        lines += [spec["description"], ""]
    lines += [f"**Expected:** {man.get('expected') or '—'}", "",
              f"**Verdict:** {status} — {message}", "",
              f"Seeds and sizes: {df['seed'].nunique()} seeds, n ∈ {sorted(df['n'].unique().tolist())}; "
              f"{'smoke run; ' if man.get('smoke') else ''}genver {man['versions']['genver']}, "
              f"commit {man.get('git_commit') or 'unknown'}. All metrics are exact (enumeration); "
              f"uncertainty is over data seeds (95% stratified bootstrap, {N_BOOT} resamples).", ""]
    desc_cols = [c for c in ["setting_id", *knobs, "log_size_R", "log_size_Pi", "n_params_R", "n_params_Pi",
                             "predicted_ratio", "containment_residual"] if c in settings.columns]
    lines += ["## Gap descriptors", "", _md_table(settings[desc_cols], sort=knobs), ""]
    if ratio is not None:
        cols = [c for c in ["setting_id", *knobs, "N_offline", "N_online", "ratio", "ratio_lo", "ratio_hi",
                            "ratio_kind", "predicted_ratio"] if c in ratio.columns]
        lines += [f"## Sample-efficiency ratio N_ε(offline)/N_ε(online), ε = {eps}", "", _md_table(ratio[cols], sort=knobs), ""]
    if "suboptimality" in set(df["metric"]):
        slope = stats.loglog_slope(df, "suboptimality", knobs=knobs)
        cols = [c for c in ["setting_id", *knobs, "estimator", "slope", "slope_se", "n_points"] if c in slope.columns]
        lines += ["## Log-log slope of suboptimality vs n", "", _md_table(slope[cols], sort=[*knobs, "estimator"]), ""]
    lines += ["## Figures", ""]
    for f in figures:
        if f.suffix == ".png":
            lines += [f"![{f.stem}](figures/{f.name})", ""]
    path = root / "report.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    table = pd.DataFrame([{"experiment": man["experiment"], "expected": man.get("expect", {}).get("ratio", ""),
                           "verdict": status, "detail": message}])
    return path, table
