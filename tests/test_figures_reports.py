"""Issue 17: figures readable without a caption (checked through matplotlib's objects, not
pixels), paper-style vector output, the self-contained HTML report (parsed with html.parser),
terminal verdicts within 100 columns and in words, figures redrawn only when their inputs
change, and the resume messages."""
from __future__ import annotations

import html.parser
import pathlib

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from genver import plots as P  # noqa: E402
from genver import stats as S  # noqa: E402
from genver.cli import main  # noqa: E402
from genver.experiments import figcache  # noqa: E402
from genver.experiments.report import format_verdicts, make_figures, order_in_words, ratio_in_words  # noqa: E402
from genver.experiments.runner import run  # noqa: E402

SIMS = pathlib.Path(__file__).resolve().parent.parent / "sims"


def _tidy(n_values=(4, 16, 64, 256), knob_values=(1, 4)):
    """suboptimality c/n, exactly 0 for 'online' at the largest n (an exactly optimal policy)."""
    rows = []
    for H in knob_values:
        for s in range(3):
            for n in n_values:
                for est, c in (("offline", 2.0 * H), ("online", 1.0)):
                    v = 0.0 if (est == "online" and n == n_values[-1]) else c / n * (1 + 0.1 * s)
                    rows.append(dict(experiment="e", setting_id=f"s{H}", H=H, seed=s, n=n, estimator=est,
                                     route=est, metric="suboptimality", value=v))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ helpers
def test_grid_shape_has_no_empty_panel_where_one_exists():
    assert P.grid_shape(4, 3) == (2, 2)  # the quickstart: was 2×3 with two empty panels
    assert P.grid_shape(6, 4) == (2, 3)
    assert P.grid_shape(8, 4) == (2, 4)
    assert P.grid_shape(3, 2) == (3, 1)
    assert P.grid_shape(1) == (1, 1)
    r, c = P.grid_shape(5, 4)
    assert r * c - 5 == 1  # a prime count: one spare cell, which holds the legend


def test_palette_is_fixed_per_label_whatever_the_subset():
    every = ["online_dpo", "offline", "sft", "online"]
    col = P.estimator_colours(every)
    assert col["offline"] == "#0072B2" and col["online"] == "#D55E00"  # Okabe–Ito blue, vermillion
    assert len(set(col.values())) == 4
    assert set(col.values()) <= set(P.PALETTE)
    st = P.estimator_styles(every)
    assert [st[k]["color"] for k in every] == [col[k] for k in every]


def test_knob_labels_and_titles():
    assert P.knob_label("n_distractors", 1024) == "$|D| = 1024$"
    assert P.knob_label("H", 4.0) == "$H = 4$"
    assert P.knob_label("beta", 0.5) == r"$\beta = 0.5$"
    assert P.knob_label("peak", 2) == "peak = 2"
    row = pd.Series({"setting_id": "34f8193e9f", "H": 4, "beta": 0.5, "n": 8})
    t = P.setting_title(row)
    assert t == r"$H = 4$, $\beta = 0.5$" and "34f8" not in t


def test_log_ticks_label_at_least_three_values_on_a_narrow_axis():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    ax.set_yscale("log")
    ax.set_ylim(150, 900)  # was: labelled ticks only at the data values (181, ...)
    P.log_ticks(ax.yaxis)
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels == ["200", "500"] or len(labels) >= 2
    ax.set_ylim(60, 5000)
    P.log_ticks(ax.yaxis)
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels == ["100", "200", "500", "1000", "2000", "5000"]
    ax.set_ylim(1e-6, 1)  # six decades: decades only
    P.log_ticks(ax.yaxis)
    ax.figure.canvas.draw()
    assert len([t for t in ax.get_yticklabels() if t.get_text()]) >= 6


# ------------------------------------------------------------------------------ figures
def test_exact_zero_is_a_marker_on_the_axis_not_data_at_a_floor():
    agg = S.aggregate(_tidy(), knobs=["H"], n_boot=50, random_state=0)
    ax = P.plot_sample_complexity(agg, setting_id="s1")
    online = [l for l in ax.get_lines() if l.get_label() == "online"][0]
    y = online.get_ydata()
    assert np.isnan(y[-1]) and (y[:-1] > 0).all()  # the line is broken at the zero
    lo = ax.get_ylim()[0]
    assert not np.any(np.isclose(np.concatenate([l.get_ydata() for l in ax.get_lines()]), lo))
    zeros = [c for c in ax.collections if c.get_gid() == "exact_zero"]
    assert len(zeros) == 1
    np.testing.assert_array_equal(zeros[0].get_offsets()[:, 0], [256.0])
    np.testing.assert_array_equal(zeros[0].get_offsets()[:, 1], [0.0])  # y = 0 in axes coordinates
    assert "exact 0" in ax.get_ylabel()
    assert ax.get_title() == "$H = 1$"
    # a broken variant, drawing the zero at the floor, would leave a line point at the axis bottom
    agg2 = agg.copy()
    agg2.loc[agg2["mean"] == 0, "mean"] = 1e-300
    ax2 = P.plot_sample_complexity(agg2, setting_id="s1")
    assert not [c for c in ax2.collections if c.get_gid() == "exact_zero"]


def test_grid_panels_match_settings_and_titles_are_knobs():
    df = _tidy(knob_values=(1, 2, 4, 8))
    agg = S.aggregate(df, knobs=["H"], n_boot=20, random_state=0)
    fig = P.sample_complexity_grid(agg, setting_ids=["s1", "s2", "s4", "s8"], knobs=["H"])
    visible = [a for a in fig.axes if a.get_visible()]
    assert len(fig.axes) == 4 and len(visible) == 4
    assert [a.get_title() for a in visible] == ["$H = 1$", "$H = 2$", "$H = 4$", "$H = 8$"]
    assert all(a.get_xlabel() for a in visible[2:]) and not visible[0].get_xlabel()
    fig5 = P.sample_complexity_grid(S.aggregate(_tidy(knob_values=(1, 2, 3, 4, 5)), knobs=["H"], n_boot=20),
                                    ncols=4)
    assert len(fig5.axes) == 6 and fig5.axes[5].get_legend() is not None  # the spare cell holds the legend
    assert not fig5.axes[5].axison


def _neps_table():
    return pd.DataFrame({
        "estimator": ["offline", "offline", "offline", "online", "online", "online"],
        "route": ["offline", "offline", "offline", "online", "online", "online"],
        "H": [1, 2, 4, 1, 2, 4], "eps": 0.01, "metric": "suboptimality",
        "reached": [True, True, False, True, True, True],
        "N_eps": [64.0, 256.0, np.nan, 32.0, 32.0, 64.0],
        "N_eps_lo": [32.0, 128.0, np.nan, 16.0, 16.0, 32.0],
        "N_eps_hi": [128.0, np.inf, np.nan, 64.0, 64.0, 128.0],
        "censored_at": [1024.0] * 6})


def test_n_epsilon_censored_points_are_open_markers_never_joined():
    ax = P.plot_n_epsilon(_neps_table(), "H")
    cens = [l for l in ax.get_lines() if l.get_gid() == "lower_bound"]
    assert len(cens) == 1 and cens[0].get_marker() == "^" and cens[0].get_markerfacecolor() == "none"
    np.testing.assert_array_equal(cens[0].get_ydata(), [1024.0])
    joins = [l for l in ax.get_lines() if l.get_linestyle() == "-" and len(l.get_xdata()) == 3]
    off = joins[0].get_ydata()  # the offline join: broken (NaN) at the censored H = 4
    assert np.isnan(off[2]) and np.allclose(off[:2], [64, 256])
    cut = [l for l in ax.get_lines() if l.get_gid() == "ci_cut"]  # the infinite upper CI end
    assert len(cut) == 1 and cut[0].get_marker() == "^"
    np.testing.assert_allclose(cut[0].get_ydata(), [ax.get_ylim()[1]])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("not reached" in t for t in texts) and P.CI_CUT_LABEL in texts
    labels = [t.get_text() for t in ax.get_yticklabels()]
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert len(labels) >= 3  # not just one tick per data value, and never none below the data


def test_ratio_bounds_are_arrows_and_titles_use_one_math_style():
    r = pd.DataFrame({"D": [0, 64, 1024], "ratio": [1.0, 3.0, 40.0], "ratio_lo": [0.8, 1.5, np.nan],
                      "ratio_hi": [1.3, np.inf, np.nan], "ratio_kind": ["exact", "exact", "lower_bound"],
                      "eps": 0.01})
    ax = P.plot_ratio_vs_knob(r, "D")
    lb = [l for l in ax.get_lines() if l.get_gid() == "lower_bound"]
    assert len(lb) == 1 and lb[0].get_markerfacecolor() == "none"
    join = [l for l in ax.get_lines() if len(l.get_xdata()) == 3 and l.get_linestyle() == "-"][0]
    assert np.isnan(join.get_ydata()[2])  # the bound is not joined
    assert "ε" not in ax.get_title() and r"$\varepsilon" in ax.get_title()
    assert [l for l in ax.get_lines() if l.get_gid() == "ci_cut"]  # the infinite CI end, cut
    ax.figure.canvas.draw()
    assert len([t for t in ax.get_yticklabels() if t.get_text()]) >= 4  # was two (10^0, 10^1)


# ------------------------------------------------------------------------------ words, terminal
def test_statements_in_words_the_right_way_round():
    assert order_in_words("offline > online") == "online is better than offline (lower suboptimality)"
    assert order_in_words("offline > online for n >= 32").endswith("for n ≥ 32")
    assert order_in_words("bt_loglik: online > offline") == "online is better than offline (higher bt_loglik)"
    assert order_in_words("online_dpo_K2 >= online") == \
        "online is at least as good as online_dpo_K2 (never significantly higher suboptimality)"
    assert order_in_words("frontier: offline < online").startswith("online is better than offline")
    assert ratio_in_words("> 1") == "online needs fewer pairs than offline in every setting"
    assert ratio_in_words("< 1") == "offline needs fewer pairs than online in every setting"
    assert "grows with H" in ratio_in_words("increasing in H")


def test_terminal_verdicts_fit_100_columns():
    long = "; ".join(f"[beta={b}] mean diff +0.3836 [+0.1691, +0.5572]" for b in range(12))
    t = pd.DataFrame([{"experiment": "h2", "expected": "offline > online for n >= 32", "verdict": "PASS",
                       "detail": long, "in_words": order_in_words("offline > online for n >= 32")}])
    text = format_verdicts(t)
    assert max(map(len, text.splitlines())) <= 100
    assert "online is better than offline" in text and "[beta=11]" in text.replace("\n", " ")


# ------------------------------------------------------------------------------ CLI, files
@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("gf") / "r"
    run(SIMS / "gap_finite.toml", out, smoke=True, progress=False)
    return out


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.srcs, self.hrefs, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "src" in a:
            self.srcs.append(a["src"])
        if "href" in a:
            self.hrefs.append(a["href"])

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_is_one_self_contained_page(smoke_dir, capsys):
    assert main(["report", str(smoke_dir), "--format", "html"]) in (0, 1)
    page = _Page()
    page.feed((smoke_dir / "report.html").read_text())
    text = " ".join(page.text)
    assert page.tags.count("img") == len(list((smoke_dir / "figures").glob("*.png"))) >= 3
    assert all(s.startswith("data:image/png;base64,") for s in page.srcs)  # nothing fetched
    assert not page.hrefs and "script" not in page.tags and "link" not in page.tags
    assert page.tags.count("table") >= 5  # verdicts, gap descriptors, ratio, slopes, means, provenance
    for heading in ("Verdicts", "Gap descriptors", "Sample-efficiency ratio", "Provenance"):
        assert heading in text
    assert "online needs" in text or "grows with" in text  # the verdict in words
    assert "spec hash" in text and "setting_id" in text


def test_paper_style_vector_widths_and_embedded_fonts(smoke_dir):
    files = make_figures(smoke_dir, style="paper")
    pdfs = [f for f in files if f.suffix == ".pdf"]
    assert {f.name for f in files} >= {"sample_complexity_col.pdf", "sample_complexity_full.svg", "ratio_col.svg"}
    import re

    for f in pdfs:
        raw = f.read_bytes()
        box = [float(v) for v in re.search(rb"/MediaBox\s*\[\s*([\d.\s]+)\]", raw).group(1).split()]
        want = 72 * P.PAPER_WIDTHS["col" if f.stem.endswith("_col") else "full"]
        assert abs(box[2] - box[0] - want) < 0.5, (f.name, box)
        assert b"/FontFile2" in raw and b"/Subtype /Type3" not in raw  # TrueType, embedded
    svg = (smoke_dir / "figures" / "paper" / "ratio_col.svg").read_text()
    assert 'width="237.6pt"' in svg and "<text" not in svg  # glyphs as paths: no font needed
    assert not (smoke_dir / "figures" / "paper" / "ratio_col.png").exists()


def test_figures_are_redrawn_only_when_their_inputs_change(smoke_dir):
    first = make_figures(smoke_dir)
    stamp = {f: f.stat().st_mtime_ns for f in first}
    digest = (smoke_dir / "figures" / "ratio.sha256").read_text().strip()
    again = make_figures(smoke_dir)
    assert again == first and all(f.stat().st_mtime_ns == stamp[f] for f in again)  # nothing redrawn
    (smoke_dir / "figures" / "ratio.sha256").write_text("stale\n")  # as if its inputs had changed
    (smoke_dir / figcache.REPORT_CACHE).unlink()  # (the whole-set cache would skip even the check)
    make_figures(smoke_dir)
    assert (smoke_dir / "figures" / "ratio.sha256").read_text().strip() == digest
    assert (smoke_dir / "figures" / "ratio.png").stat().st_mtime_ns != stamp[smoke_dir / "figures" / "ratio.png"]
    assert (smoke_dir / "figures" / "sample_complexity.png").stat().st_mtime_ns == \
        stamp[smoke_dir / "figures" / "sample_complexity.png"]
    # the digest follows the rows: one changed value changes it
    df = _tidy()
    a = figcache.digest("x", df)
    df.loc[3, "value"] += 1e-12
    assert figcache.digest("x", df) != a


def test_report_on_unchanged_results_comes_from_the_cache(smoke_dir, capsys):
    code = main(["report", str(smoke_dir)])
    first = capsys.readouterr().out
    assert main(["report", str(smoke_dir)]) == code
    second = capsys.readouterr().out
    assert "nothing recomputed" in second and second.split("report:")[0] == first.split("report:")[0]
    assert max(map(len, second.splitlines())) <= 100
    # a changed result invalidates it
    man = (smoke_dir / "manifest.json").read_text()
    (smoke_dir / "manifest.json").write_text(man.replace('"smoke": true', '"smoke": true ', 1))
    assert main(["report", str(smoke_dir)]) == code
    assert "nothing recomputed" not in capsys.readouterr().out
    (smoke_dir / "manifest.json").write_text(man)


def test_resume_messages(tmp_path, capsys):
    out = tmp_path / "r"
    run(SIMS / "gap_finite.toml", out, smoke=True, progress=False)
    assert main(["run", str(SIMS / "gap_finite.toml"), "--out", str(out), "--smoke", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "nothing to do" in captured.out and "cells/s" not in captured.out + captured.err
    assert main(["run", str(SIMS / "gap_finite.toml"), "--out", str(out), "--resume"]) == 2
    assert "--smoke: was on, now off" in capsys.readouterr().err
    s2 = tmp_path / "s2.toml"
    s2.write_text((SIMS / "gap_finite.toml").read_text().replace("seeds = 30", "seeds = 31"))
    with pytest.raises(ValueError, match=r"different spec.*key data\.seeds: was 30, now 31"):
        run(s2, out, smoke=True, resume=True, progress=False)


def test_plot_draws_the_scaling_law_and_pdf_only_when_asked(tmp_path, capsys):
    """`genver plot` draws (and caches) the scaling-law figure like the others; PNG by default,
    a PDF beside each with --pdf; a PDF left from before is removed when its figure is redrawn
    without one (it would no longer match the PNG)."""
    from genver.experiments import figures, tables

    text = (SIMS / "gap_horizon.toml").read_text()
    spec = tmp_path / "gh_scaling.toml"
    spec.write_text(text.replace("\nepsilon = 0.005\n", '\nepsilon = 0.005\nscaling_law = { against = '
                                 '["n_params_Pi", "n_params_R"], ratio_against = "dim_ratio" }\n'))
    out = tmp_path / "r"
    run(spec, out, smoke=True, progress=False)
    figs = out / "figures"
    assert main(["plot", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(figs / "scaling_law.png") in printed and (figs / "scaling_law.sha256").exists()
    assert not list(figs.glob("*.pdf"))
    stamp = (figs / "scaling_law.png").stat().st_mtime_ns
    assert main(["plot", str(out)]) == 0 and (figs / "scaling_law.png").stat().st_mtime_ns == stamp
    assert main(["plot", str(out), "--pdf"]) == 0
    capsys.readouterr()
    assert {p.stem for p in figs.glob("*.pdf")} == {p.stem for p in figs.glob("*.png")} >= {
        "scaling_law", "sample_complexity", "ratio", "n_epsilon"}
    (figs / "ratio.sha256").write_text("stale\n")  # as if its inputs had changed
    (out / figcache.REPORT_CACHE).unlink()
    assert main(["plot", str(out)]) == 0
    assert not (figs / "ratio.pdf").exists() and (figs / "scaling_law.pdf").exists()
    # the figure itself: one panel per descriptor (two routes' laws, then the ratio's)
    man, df, settings = tables.load_results(out)
    res = tables.ReportTables(man, df, settings).scaling
    fig = figures.scaling_figure(res.fits, res.points)
    assert len(fig.axes) == 3 and all(ax.get_title().startswith("scaling law") for ax in fig.axes)
    assert "dim" in fig.axes[0].get_xlabel() and "Pi" in fig.axes[0].get_xlabel()
    col = figures.scaling_figure(res.fits, res.points, width=P.PAPER_WIDTHS["col"])
    assert col.get_size_inches()[0] == P.PAPER_WIDTHS["col"] and len({ax.get_position().x0 for ax in col.axes}) == 1


def test_drawing_in_a_forked_process_gives_the_same_files(smoke_dir, tmp_path, monkeypatch):
    """The sample-complexity grid drawn in a child process (while the parent draws the rest)
    gives byte-identical files to a serial draw, PNG, PDF and SVG alike."""
    import shutil

    from genver.experiments import figures, tables

    dirs = {}
    for par in (False, True):
        d = tmp_path / f"par{par}"
        shutil.copytree(smoke_dir, d, ignore=shutil.ignore_patterns("figures", "report.*", figcache.REPORT_CACHE))
        dirs[par] = d
    calls = []
    draw_and_save = figures.draw_and_save
    monkeypatch.setattr(figures, "draw_and_save", lambda *job: calls.append(job[1]) or draw_and_save(*job))
    for par, d in dirs.items():
        man, df, settings = tables.load_results(d)
        for style in ("screen", "paper"):
            calls.clear()
            files = figures.draw_figures(d, man, df, settings, tables.ReportTables(man, df, settings), style=style,
                                         pdf=True, parallel=par)
            assert len(files) >= 6
            # in parallel the parent draws every figure but the first (the child's calls are not counted here)
            assert calls == [f.stem.removesuffix("_col") for f in files if f.suffix == ".pdf"
                             and not f.stem.endswith("_full")][(1 if par else 0):]
    a = sorted(p.relative_to(dirs[False]) for p in (dirs[False] / "figures").rglob("*.*"))
    assert a == sorted(p.relative_to(dirs[True]) for p in (dirs[True] / "figures").rglob("*.*")) and len(a) >= 12
    for rel in a:
        assert (dirs[False] / rel).read_bytes() == (dirs[True] / rel).read_bytes(), rel
