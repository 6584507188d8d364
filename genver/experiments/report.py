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
(:mod:`genver.experiments.figcache`). The tables live in :mod:`genver.experiments.tables`, the
figures are drawn by :mod:`genver.experiments.figures`; this module writes the report.

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

from .. import stats
from ..atomic import atomic_write_bytes
from . import figcache
from .figures import draw_figures, make_figures
from .report_verdicts import VERDICT_COLUMNS, format_verdicts, order_in_words, ratio_in_words, verdict, verdicts
from .tables import (
    N_BOOT,
    ReportTables,
    aggregate_of,
    completeness_line,
    epsilon_of,
    load_results,
    means_at_largest_n,
    ratios_side_by_side,
)

__all__ = ["load_results", "make_figures", "make_report", "means_at_largest_n", "ratios_side_by_side", "verdict",
           "verdicts", "format_verdicts", "order_in_words", "ratio_in_words", "scaling_law_section",
           "completeness_line", "REPORT_FORMATS", "VERDICT_COLUMNS"]




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



# --------------------------------------------------------------------------- the report
def _sections(root, man, df, settings, lazy, table) -> list:
    """The report as data: ``[(heading or None, [block, ...])]``, each block a paragraph (str)
    or a table (DataFrame); rendered by :func:`_render_md` and :func:`_render_html`."""
    knobs = man["knobs"]
    eps = epsilon_of(man)
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
    secs: list[tuple[str | None, list]] = [(None, head)]
    desc_cols = [c for c in ["setting_id", *knobs, "log_size_R", "log_size_Pi", "n_params_R", "n_params_Pi",
                             "predicted_ratio", "containment_residual"] if c in settings.columns]
    secs.append(("Gap descriptors", [_sorted(settings[desc_cols], knobs)]))
    if ratio is not None:
        cols = [c for c in ["setting_id", *knobs, "N_offline", "N_online", "ratio", "ratio_lo", "ratio_hi",
                            "ratio_kind", "predicted_ratio"] if c in ratio.columns]
        blocks = [_sorted(ratio[cols], knobs)]
        if knobs:  # which settings are only bounds (a route not reaching ε by the largest n)
            cens = stats.censored_settings(ratio, knobs[0])
            blocks.append(f"N_ε of the "
                          f"{aggregate_of(man)}{' curve' if aggregate_of(man) == 'mean' else ' of per-seed N_ε'}; "
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
    (:mod:`genver.experiments.figcache`), and only figures whose inputs changed are redrawn.

    Parameters
    ----------
    root : str or pathlib.Path
        the results directory.
    fmt : str
        ``"md"`` or ``"html"``.

    Returns
    -------
    tuple of (pathlib.Path, pandas.DataFrame)
        the report's path and the verdict table.
    """
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(REPORT_FORMATS)}, got {fmt!r}")
    root = pathlib.Path(root)
    hit = figcache.read_report_cache(root, fmt)
    if hit is not None:
        return root / hit["path"], pd.DataFrame(hit["verdicts"], columns=VERDICT_COLUMNS)
    man, df, settings = load_results(root)
    lazy = ReportTables(man, df, settings)  # every bootstrap table is computed once and reused
    figures = draw_figures(root, man, df, settings, lazy, pdf=True)  # the scaling law's among them
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
                                            "terminal": format_verdicts(table), "incomplete": incomplete})
    return path, table




def scaling_law_section(root, man, df, settings, table: pd.DataFrame,
                        lazy: ReportTables | None = None) -> tuple[tuple | None, pd.DataFrame, list]:
    """The "Scaling laws" section of the report when the spec sets ``[expect] scaling_law``
    (:func:`genver.scaling.scaling_laws`: ``N_ε ∝ dim^a`` per route against each ``against``
    descriptor and the ratio against ``ratio_against``, Tobit fits with paired seed-bootstrap
    CIs, the bound's exponent): the section ``(heading, blocks)`` (a paragraph, the fits table, one
    plain sentence per fit), the verdict ``table`` with one row per fit appended (verdict
    ``AGREES`` | ``DISAGREES`` | ``UNDEFINED``: measurements, never a FAIL) and the figure files
    (``figures/scaling_law.png`` and ``.pdf``, drawn only when their inputs changed, as every
    figure). ``lazy``: the report's tables when already computed. Without the key:
    ``(None, table, [])`` unchanged.

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
    table : pandas.DataFrame
        the verdict table so far.
    lazy : ReportTables or None
        the report's derived tables, when already made.

    Returns
    -------
    tuple of (tuple or None, pandas.DataFrame, list of pathlib.Path)
        the section, the verdict table with the fits' rows, and the figure files.
    """
    if man.get("expect", {}).get("scaling_law") is None:
        return None, table, []
    lazy = ReportTables(man, df, settings) if lazy is None else lazy
    res = lazy.scaling
    if isinstance(res, str):
        return ("Scaling laws", [res]), table, []
    files = draw_figures(root, man, df, settings, lazy, pdf=True, only={"scaling_law"})
    fits = res.fits
    from .. import scaling
    exp = man["expect"]
    cols = ["route", "against", "a", "a_lo", "a_hi", "predicted_a", "agrees", "n_points", "n_censored", "decades",
            "method"]
    blocks = [f"Fits of log N_ε on log dim over the settings (ε = {fits['eps'].iloc[0]}; N_ε: "
              f"{scaling.AGGREGATE_WORDS[exp.get('aggregate', 'mean')]}, the spec's `[expect] aggregate`); "
              "censored N_ε (a route "
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
