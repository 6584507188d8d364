"""genver.plots: each plot_* returns an Axes with the expected lines and labels, copes with
zeros/NaN/inf, and save_figure writes non-empty PNG and PDF files atomically."""
from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from genver import plots as P  # noqa: E402
from genver import stats as S  # noqa: E402

GRID = [2**j for j in range(2, 9)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def tidy(D_values=(0, 2, 5), seeds=range(3), zeros=True):
    rng = np.random.default_rng(0)
    rows = []
    for D in D_values:
        for s in seeds:
            for n in GRID:
                for est, route, c in [("offline", "offline", 2.0 ** (D / 2)), ("online", "online", 1.0),
                                      ("online_dpo_K25", "online", 1.3)]:
                    v = c / n * np.exp(rng.normal(0, 0.1))
                    if zeros and est == "online" and n == GRID[-1]:
                        v = 0.0  # exactly optimal: must be clipped on a log axis
                    rows.append(dict(experiment="e", setting_id=f"s{D}", D=D, seed=s, n=n,
                                     estimator=est, route=route, metric="suboptimality", value=v))
    return pd.DataFrame(rows)


def legend_texts(ax):
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg is not None else []


def check_saved(fig, tmp_path, stem):
    paths = P.save_figure(fig, tmp_path / "sub" / stem)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    for p in paths:
        assert p.exists() and p.stat().st_size > 1000
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name.endswith((".tmp", ".part"))]


def test_import_does_not_pick_a_backend():
    code = "import sys, genver.plots; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sample_complexity(tmp_path):
    agg = S.aggregate(tidy(), knobs=["D"], n_boot=100)
    ax = P.plot_sample_complexity(agg, setting_id="s2", bound=lambda n: 5.0 / n)
    assert isinstance(ax, Axes)
    assert len(ax.get_lines()) == 4  # three estimators + bound
    assert legend_texts(ax) == ["offline", "online", "online_dpo_K25 (online)", "bound"]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "preference pairs" in ax.get_xlabel()
    assert "drawn at" in ax.get_ylabel() and r"J_\beta" in ax.get_ylabel()
    assert ax.get_title() == "D = 2"  # the knob value, no setting id (issue 17)
    ys = np.concatenate([l.get_ydata() for l in ax.get_lines()[:3]])
    assert (ys[np.isfinite(ys)] > 0).all() and np.isnan(ys).sum() == 1  # the exact 0: a gap in the line
    check_saved(ax.figure, tmp_path, "sc")


def test_sample_complexity_nan_and_non_vectorised_bound(tmp_path):
    agg = S.aggregate(tidy(D_values=(0,)), n_boot=50)
    agg.loc[agg.index[:2], ["mean", "mean_lo"]] = np.nan
    agg.loc[agg.index[3], "mean_hi"] = np.inf
    ax = P.plot_sample_complexity(agg, bound=lambda n: 1.0 / float(n), stat="mean")
    assert len(ax.get_lines()) == 4
    ax2 = P.plot_sample_complexity(agg.iloc[:0])  # empty: an empty, labelled plot
    assert len(ax2.get_lines()) == 0
    check_saved(ax.figure, tmp_path, "sc_nan")


def test_sample_complexity_grid(tmp_path):
    agg = S.aggregate(tidy(), knobs=["D"], n_boot=50)
    fig = P.sample_complexity_grid(agg, ncols=2, bound=lambda n: 5.0 / n)
    visible = [a for a in fig.axes if a.get_visible()]
    assert len(visible) == 3
    assert all(len(a.get_lines()) == 4 for a in visible)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == \
        ["offline", "online", "online_dpo_K25 (online)", "bound"]
    check_saved(fig, tmp_path, "grid")


def ratio_table():
    df = tidy(zeros=False)
    r = S.efficiency_ratio(df, 0.02, knobs=["D"], n_boot=100)
    r["predicted_ratio"] = 2.0 ** (r["D"] / 2)
    # a censored and an undefined setting
    extra = r.iloc[[0, 0]].copy()
    extra["D"] = [9, 12]
    extra["setting_id"] = ["s9", "s12"]
    extra["ratio_kind"] = ["lower_bound", "undefined"]
    extra["ratio"] = [32.0, np.nan]
    extra["ratio_lo"], extra["ratio_hi"] = [8.0, np.nan], [np.inf, np.nan]
    return pd.concat([r, extra], ignore_index=True)


def test_ratio_vs_knob(tmp_path):
    r = ratio_table()
    ax = P.plot_ratio_vs_knob(r, "D")
    texts = legend_texts(ax)
    assert texts[0].startswith("exact") and texts[1].startswith("lower bound")
    assert any(t.startswith("predicted") for t in texts) and "ratio = 1 (no gap)" in texts
    assert "1 undefined" in ax.get_title()
    assert any(np.allclose(l.get_ydata(), 1.0) for l in ax.get_lines())  # the line at 1
    assert ax.get_xlabel() == "D" and "N_" in ax.get_ylabel()
    ax2 = P.plot_ratio_vs_knob(r, "D", predicted=False, hue="experiment")
    assert not any(t.startswith("predicted") for t in legend_texts(ax2))
    assert "experiment = e" in legend_texts(ax2)
    ax3 = P.plot_ratio_vs_knob(r, "D", predicted=lambda d: 1 + d)
    assert any(t.startswith("predicted") for t in legend_texts(ax3))
    check_saved(ax.figure, tmp_path, "ratio")


def test_n_epsilon_plot(tmp_path):
    df = tidy(zeros=False)
    ne = S.n_epsilon(df, 0.01, knobs=["D"], n_boot=100)
    assert (~ne["reached"]).any() and ne["reached"].any()
    ax = P.plot_n_epsilon(ne, "D")
    texts = legend_texts(ax)
    assert texts[:3] == ["offline", "online", "online_dpo_K25 (online)"]
    assert any("not reached" in t for t in texts)
    assert ax.get_yscale() == "log" and "N_" in ax.get_ylabel()
    check_saved(ax.figure, tmp_path, "neps")


def test_frontier(tmp_path):
    rows = []
    for beta in (0.1, 0.3, 1.0, 3.0):
        for s in range(3):
            for est, shift in (("offline", 0.0), ("online", 0.2)):
                kl = 1.0 / beta
                rows += [dict(setting_id=f"b{beta}", beta=beta, seed=s, n=64, estimator=est, route=est,
                              metric="kl_to_reference", value=kl),
                         dict(setting_id=f"b{beta}", beta=beta, seed=s, n=64, estimator=est, route=est,
                              metric="expected_reward", value=np.log1p(kl) + shift),
                         dict(setting_id=f"b{beta}", beta=beta, seed=s, n=8, estimator=est, route=est,
                              metric="expected_reward", value=np.nan)]
    df = pd.DataFrame(rows)
    ax = P.plot_frontier(df)
    assert len(ax.get_lines()) == 2 and legend_texts(ax) == ["offline", "online"]
    assert len(ax.get_lines()[0].get_xdata()) == 4
    assert "KL" in ax.get_xlabel() and "pi_{" in ax.get_xlabel()
    assert len(ax.texts) == 8  # one β annotation per point
    check_saved(ax.figure, tmp_path, "frontier")


def test_best_of_n(tmp_path):
    rows = []
    for N in (1, 2, 4, 8, 16):
        for s in range(4):
            for rm, gain in (("global", 1.0), ("local", 0.7), ("dpo_implicit", 0.4)):
                rows.append(dict(N=N, seed=s, estimator=rm, metric="expected_reward",
                                 value=gain * np.log2(N) + 0.01 * s))
                rows.append(dict(N=N, seed=s, estimator=rm, metric="kl_to_reference", value=0.0))
    df = pd.DataFrame(rows)
    ax = P.plot_best_of_n(df)
    assert len(ax.get_lines()) == 3 and sorted(legend_texts(ax)) == ["dpo_implicit", "global", "local"]
    assert "best-of" in ax.get_xlabel()
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="best-of-N"):
        P.plot_best_of_n(df.drop(columns="N"))
    check_saved(ax.figure, tmp_path, "bon")


def test_given_axes_and_save_from_axes(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    a1, a2 = fig.subplots(1, 2)
    agg = S.aggregate(tidy(D_values=(0,)), n_boot=20)
    assert P.plot_sample_complexity(agg, ax=a1) is a1
    assert P.plot_n_epsilon(S.n_epsilon(tidy(D_values=(0,)), 0.05, knobs="D", n_boot=20), "D", ax=a2) is a2
    paths = P.save_figure(a1, tmp_path / "both.png")  # an Axes and a suffixed stem are accepted
    assert [p.name for p in paths] == ["both.png", "both.pdf"]


def test_policies_overlay(tmp_path):
    from genver.policy import random_policy
    from genver.spaces import TreeSpace

    sp = TreeSpace(P=2, V=2, H=3)
    a, b = random_policy(sp, random_state=0), random_policy(sp, random_state=1)
    ax = P.plot_policies({"offline": a, "online": a, "other": b.probs}, prompt=1)
    assert len(ax.get_lines()) == 3 and legend_texts(ax) == ["offline", "online", "other"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), a.probs[1])
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["000", "001"]  # tokens, first token first
    assert "online 0," in ax.get_title() and "other 0." in ax.get_title()  # max |Δπ| over all x, y
    assert "pi(y" in ax.get_ylabel()
    ax2 = P.plot_policies({"a": a.probs[0]})  # a bare (T,) array: one prompt, index ticks
    assert "index" in ax2.get_xlabel() and ax2.get_title() == ""
    with pytest.raises(ValueError, match="different shapes"):
        P.plot_policies({"a": a, "b": a.probs[:, :4]})
    with pytest.raises(ValueError, match="prompt"):
        P.plot_policies({"a": a}, prompt=2)
    with pytest.raises(ValueError, match="at least one"):
        P.plot_policies({})
    check_saved(ax.figure, tmp_path, "policies")


def test_best_of_n_band_comes_from_genver_stats(tmp_path):
    rows = [dict(N=N, seed=s, estimator=rm, metric="expected_reward", value=g * np.log2(N) + 0.05 * s * s)
            for N in (1, 2, 4, 8) for s in range(5) for rm, g in (("global", 1.0), ("local", 0.5))]
    rows.append(dict(N=16, seed=0, estimator="local", metric="expected_reward", value=3.0))  # one row: no band
    df = pd.DataFrame(rows)
    ax = P.plot_best_of_n(df)
    means = df.groupby(["estimator", "N"])["value"].mean()
    for line in ax.get_lines():
        est = line.get_label()
        np.testing.assert_allclose(line.get_ydata(), means[est].to_numpy(), rtol=0, atol=1e-12)
    # the band: genver.stats.aggregate with each row a resampled unit (its seeding and quantiles)
    units = df.assign(n=df["N"].astype(float), seed=np.arange(len(df)), metric="value")
    agg = S.aggregate(units, "value", n_boot=P.BOOTSTRAP_RESAMPLES, random_state=0)
    bands = [c for c in ax.collections if len(c.get_paths())]
    assert len(bands) == 2
    for band, est in zip(bands, ["global", "local"]):
        a = agg[(agg["estimator"] == est) & agg["mean_lo"].notna()].sort_values("n")
        verts = band.get_paths()[0].vertices
        lo = {x: y for x, y in verts[1:len(a) + 1]}
        assert sorted(lo) == a["n"].tolist()
        np.testing.assert_allclose([lo[n] for n in a["n"]], a["mean_lo"], rtol=0, atol=1e-12)
        assert (a["mean_lo"] < a["mean"]).all() and (a["mean"] < a["mean_hi"]).all()


def test_save_figure_writes_through_genver_atomic(tmp_path, monkeypatch):
    import genver.atomic
    from genver.plots import saving

    assert saving.atomic_open is genver.atomic.atomic_open  # the project's one atomic writer
    fig = P.plot_sample_complexity(S.aggregate(tidy(D_values=(0,)), n_boot=20)).figure
    first = P.save_figure(fig, tmp_path / "f", formats=("png",))[0]
    before = first.read_bytes()

    def broken(fh, **kw):
        fh.write(b"half a figure")
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        P.save_figure(fig, tmp_path / "f", formats=("png",))
    assert first.read_bytes() == before  # the old figure is intact, not half overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]  # and no temporary file is left


def test_plots_package_layout_and_public_names():
    """Issue 16: no module of genver.plots over 500 lines, no function over 80; the helpers other
    modules use are public names (no ``plots._x`` anywhere); the old import paths still work."""
    import ast
    import pathlib
    import re

    import genver.plots
    from genver.plots import estimator_styles, font_size, label_order, plot_ratio_vs_knob, plot_scaling_law, save_figure  # noqa: F401

    root = pathlib.Path(genver.plots.__file__).parent
    for f in root.glob("*.py"):
        text = f.read_text()
        assert len(text.splitlines()) <= 500, f.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno + 1 <= 80, (f.name, node.name)
    assert label_order(["z", "online", "a", "offline", "a"]) == ["offline", "online", "a", "z"]
    for name in genver.plots.__all__:
        assert hasattr(genver.plots, name), name
    repo = root.parent.parent
    private = re.compile(r"\b(plots|P)\._[a-z]")  # a private name of genver.plots used elsewhere
    for f in [*repo.joinpath("genver").rglob("*.py"), *repo.joinpath("tests").glob("*.py")]:
        if f.resolve() != pathlib.Path(__file__).resolve():
            assert not private.search(f.read_text()), f
