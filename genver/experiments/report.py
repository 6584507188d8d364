"""``genver plot`` and ``genver report``: figures and a Markdown report from a results directory.

Figures (PNG and PDF, under ``DIR/figures/``):

* ``sample_complexity`` — mean suboptimality ``J_β(π*) − J_β(π̂)`` vs ``n`` (log-log), one line per
  estimator with 95% stratified-bootstrap bands, one panel per setting;
* ``ratio`` — the sample-efficiency ratio ``N_ε(offline)/N_ε(online)`` vs the first swept knob
  with its CI and the finite-class prediction ``log|Π|/log|R|`` (or ``dim Π/dim R``);
* ``n_epsilon`` — ``N_ε`` of each estimator vs the knob;
* ``frontier`` — expected reward vs ``KL(π̂‖π_ref)`` when ``beta`` is swept;
* ``best_of_n`` — ``E r*`` of best-of-N from ``π_ref`` ranked by each estimator's reward, vs
  ``N`` (metrics ``bon_reward@N``), one panel per setting and ``n`` ∈ {smallest, middle,
  largest};
* ``curves_<metric>`` — mean of ``bt_loglik``, ``bt_loglik_opt`` or ``optimal_mass`` vs ``n``
  with 95% bootstrap bands, one panel per setting.

The report (``DIR/report.md``) holds the spec's expectation, the verdicts, the gap descriptors
per setting, ``N_ε`` and the ratio per setting, log-log slopes, the mean of every metric at the
largest ``n``, and the figures. Verdicts: the spec's ``[expect] ratio`` checked with
:func:`genver.stats.gap_verdict`, and each ``[expect] order`` statement checked with
:func:`genver.experiments.expect.check_order` (PASS | FAIL each).
"""
from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd

from .. import plots, stats
from .expect import check_order
from .store import ResultStore, atomic_write_bytes

__all__ = ["load_results", "make_figures", "make_report", "means_at_largest_n", "ratios_side_by_side", "verdict",
           "verdicts"]

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
    exp = man.get("expect", {})
    if "offline" in exp or "online" in exp:  # labels named by the spec
        off, on = exp.get("offline", "offline"), exp.get("online", "online")
        if {off, on} <= set(df["estimator"].unique()):
            return stats.efficiency_ratio(df, _eps(man), offline=off, online=on, knobs=man["knobs"], n_boot=N_BOOT,
                                          random_state=0, settings=settings)
        return None
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


def _compared(man, df, settings) -> list:
    """``[(offline label, online label, ratio table)]`` for each ``[expect] compare`` pair whose
    labels have rows (e.g. the neural routes beside the tabular ones)."""
    out = []
    for off, on in man.get("expect", {}).get("compare", []):
        if {off, on} <= set(df["estimator"].unique()):
            out.append((off, on, stats.efficiency_ratio(df, _eps(man), offline=off, online=on, knobs=man["knobs"],
                                                        n_boot=N_BOOT, random_state=0, settings=settings)))
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
    means = means[plots._order(means.columns)]  # offline, online, then the rest
    means.columns.name = None
    return means.reset_index().sort_values([*knobs, "setting_id"], kind="stable", ignore_index=True)


def make_figures(root) -> list[pathlib.Path]:
    """Write the figures of a results directory into ``DIR/figures`` (PNG and PDF)."""
    man, df, settings = load_results(root)
    ratio = _ratio(man, df, settings)
    return _figures(root, man, df, settings, ratio, ratios_side_by_side(man, df, settings, ratio))


def _figures(root, man, df, settings, ratio, both) -> list[pathlib.Path]:
    """The figures, from results already loaded and ratio tables already computed (``ratio``:
    the main pair's; ``both``: :func:`ratios_side_by_side`)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    figdir = pathlib.Path(root) / "figures"
    figdir.mkdir(exist_ok=True)
    knobs = man["knobs"]
    out = []
    if "suboptimality" in set(df["metric"]):
        agg = stats.aggregate(df, "suboptimality", knobs=knobs, n_boot=N_BOOT, random_state=0)
        order = settings.sort_values(knobs, kind="stable")["setting_id"].tolist() if knobs else None
        fig = plots.sample_complexity_grid(agg, setting_ids=order)
        out += plots.save_figure(fig, figdir / "sample_complexity")
        if ratio is not None and knobs:
            ax = plots.plot_ratio_vs_knob(ratio, knobs[0])
            ax.set_title(f"{man['experiment']}: N_ε(offline)/N_ε(online), ε = {_eps(man)}")
            out += plots.save_figure(ax, figdir / "ratio")
            if both["pair"].nunique() > 1:  # every pair side by side, one colour each
                ax = plots.plot_ratio_vs_knob(both, knobs[0], hue="pair", predicted=False)
                ax.set_title(f"{man['experiment']}: N_ε ratios side by side, ε = {_eps(man)}")
                out += plots.save_figure(ax, figdir / "ratio_compare")
            neps = stats.n_epsilon(df, _eps(man), knobs=knobs, n_boot=N_BOOT, random_state=0)
            out += plots.save_figure(plots.plot_n_epsilon(neps, knobs[0]), figdir / "n_epsilon")
    if "beta" in knobs and {"expected_reward", "kl_to_reference"} <= set(df["metric"]):
        out += plots.save_figure(plots.plot_frontier(df, knob="beta"), figdir / "frontier")
    bon = df[df["metric"].str.startswith("bon_reward@")]
    if len(bon):
        ns = sorted(bon["n"].unique())
        pick = sorted({ns[0], ns[len(ns) // 2], ns[-1]})  # smallest, middle and largest n
        bon = bon[bon["n"].isin(pick)].copy()
        bon["N"] = bon["metric"].str.split("@").str[1].astype(int)
        bon["metric"] = "expected_reward"
        bon["panel"] = bon["setting_id"].astype(str) + " n=" + bon["n"].astype(int).astype(str).str.zfill(9)
        fig = _panels(bon, [*knobs, "n"], lambda g, ax: plots.plot_best_of_n(g, ax=ax, N_col="N"), key="panel")
        fig.suptitle("best-of-N from π_ref ranked by each estimator's reward (E r*, mean over seeds, 95% band)",
                     fontsize=9)
        out += plots.save_figure(fig, figdir / "best_of_n")
    for m in CURVE_METRICS:
        if m in set(df["metric"]):
            g = df[df["metric"] == m]

            def draw(gg, ax, m=m):
                plots.plot_best_of_n(gg, ax=ax, metric=m, N_col="n")
                ax.set_xlabel(r"$n$ (preference pairs)")
                ax.set_title("")
            out += plots.save_figure(_panels(g, knobs, draw), figdir / f"curves_{m}")
    return out


#: metrics drawn against n by ``curves_<metric>`` (linear y axis)
CURVE_METRICS = ("bt_loglik", "bt_loglik_opt", "optimal_mass")


def _panels(df, knobs, draw, ncols: int = 3, key: str = "setting_id"):
    """One panel per value of ``key`` (default: per setting, sorted), each drawn by
    ``draw(rows, ax)`` and titled with its setting and knob values; returns the Figure."""
    import math

    from matplotlib.figure import Figure

    ids = sorted(df[key].astype(str).unique())
    k = max(len(ids), 1)
    nc = min(ncols, k)
    nr = math.ceil(k / nc)
    fig = Figure(figsize=(4.2 * nc, 3.4 * nr + 0.4), layout="constrained")
    axes = fig.subplots(nr, nc, squeeze=False)
    for i, sid in enumerate(ids):
        ax = axes[i // nc][i % nc]
        g = df[df[key].astype(str) == sid]
        draw(g, ax)
        txt = ", ".join(f"{kk}={g[kk].iloc[0]}" for kk in knobs if kk in g.columns)
        ax.set_title(f"setting {g['setting_id'].iloc[0]}" + (f": {txt}" if txt else ""), fontsize=8)
    for j in range(len(ids), nr * nc):
        axes[j // nc][j % nc].set_visible(False)
    return fig


def verdicts(man, df, ratio) -> pd.DataFrame:
    """One row per expectation: the ratio (when the spec states one, or states nothing) and
    each ``[expect] order`` statement. Columns: experiment, expected, verdict, detail."""
    exp = man.get("expect", {})
    rows = []
    if exp.get("ratio") or not exp.get("order"):
        status, message = verdict(man, ratio)
        rows.append({"experiment": man["experiment"], "expected": exp.get("ratio", ""), "verdict": status,
                     "detail": message})
    for r in check_order(exp.get("order", []), df, man["knobs"]):
        rows.append({"experiment": man["experiment"], "expected": r["statement"], "verdict": r["verdict"],
                     "detail": r["detail"]})
    return pd.DataFrame(rows, columns=["experiment", "expected", "verdict", "detail"])


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
    man, df, settings = load_results(root)
    knobs = man["knobs"]
    eps = _eps(man)
    ratio = _ratio(man, df, settings)  # every ratio table is computed once (bootstrap) and reused
    both = ratios_side_by_side(man, df, settings, ratio)
    figures = _figures(root, man, df, settings, ratio, both)
    table = verdicts(man, df, ratio)
    lines = [f"# {man['experiment']}", ""]
    spec = man.get("spec", {}).get("experiment", {})
    if spec.get("description"):
        lines += [spec["description"], ""]
    lines += [f"**Expected:** {man.get('expected') or '—'}", ""]
    for _, v in table.iterrows():
        what = f"`{v['expected']}`: " if v["expected"] else ""
        lines += [f"**Verdict:** {what}{v['verdict']} — {v['detail']}", ""]
    lines += [
              f"Seeds and sizes: {df['seed'].nunique()} seeds, n ∈ {sorted(df['n'].unique().tolist())}; "
              f"{'smoke run; ' if man.get('smoke') else ''}genver {man['versions']['genver']}, "
              f"commit {man.get('git_commit') or 'unknown'}. "
              + ("Metrics are **Monte-Carlo estimates** (sampled policies, a task beyond enumeration); each "
                 "has a `<metric>_se` row with its standard error; "
                 if "estimate" in settings.columns and (settings["estimate"] == "monte_carlo").any()
                 else "All metrics are exact (enumeration); ")
              + f"uncertainty is over data seeds (95% stratified bootstrap, {N_BOOT} resamples).", ""]
    desc_cols = [c for c in ["setting_id", *knobs, "log_size_R", "log_size_Pi", "n_params_R", "n_params_Pi",
                             "predicted_ratio", "containment_residual"] if c in settings.columns]
    lines += ["## Gap descriptors", "", _md_table(settings[desc_cols], sort=knobs), ""]
    if ratio is not None:
        cols = [c for c in ["setting_id", *knobs, "N_offline", "N_online", "ratio", "ratio_lo", "ratio_hi",
                            "ratio_kind", "predicted_ratio"] if c in ratio.columns]
        lines += [f"## Sample-efficiency ratio N_ε(offline)/N_ε(online), ε = {eps}", "", _md_table(ratio[cols], sort=knobs), ""]
        for off, on in man.get("expect", {}).get("compare", []):
            r = both[both["pair"] == f"{off} / {on}"]
            if not len(r):
                continue
            c2 = [c for c in cols if c in r.columns]
            lines += [f"## Sample-efficiency ratio N_ε({off})/N_ε({on}), ε = {eps}", "", _md_table(r[c2], sort=knobs), ""]
    if "suboptimality" in set(df["metric"]):
        slope = stats.loglog_slope(df, "suboptimality", knobs=knobs)
        cols = [c for c in ["setting_id", *knobs, "estimator", "slope", "slope_se", "n_points"] if c in slope.columns]
        lines += ["## Log-log slope of suboptimality vs n", "", _md_table(slope[cols], sort=[*knobs, "estimator"]), ""]
    means = means_at_largest_n(df, knobs)
    lines += [f"## Mean of each metric over seeds at the largest n = {int(df['n'].max())}", "",
              _md_table(means, sort=[*knobs, "estimator"]), ""]
    lines += ["## Figures", ""]
    for f in figures:
        if f.suffix == ".png":
            lines += [f"![{f.stem}](figures/{f.name})", ""]
    path = root / "report.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    return path, table
