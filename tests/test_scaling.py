"""genver.scaling on hand-made tables whose exponents are known, against closed forms and the
brute-force censored likelihood in ``tests/naive.py``, plus the spec key and the report section.

The tables: each setting ``s`` has an error curve ``value(n) = N*(s)·m_{s,seed}/n`` with
multiplicative seed noise ``m = exp(σ z)``; with ``ε = 1`` the mean curve reaches ε at
``n ≥ N*(s)·mean_seeds(m)``, so ``N_ε = c·dim^a`` up to the seed noise and the grid rounding.
"""
from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pandas as pd
import pytest

import naive
from genver import plots
from genver import stats as S
from genver.experiments.report import make_report, scaling_law_section
from genver.experiments.runner import run
from genver.experiments.spec import SpecError, parse_spec
from genver.experiments.store import ResultStore
from genver.scaling import censored_fit, scaling_laws

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIMS = ROOT / "sims"
FINE = np.unique(np.round(np.geomspace(1, 1e6, 81))).astype(int).tolist()  # factor 10^(1/13.3) ≈ 1.19


def tables(n_true: dict, dims: dict, grid, seeds=8, noise=0.3, rng=0, shared_noise=False):
    """Tidy results and settings: ``n_true[route][s]`` is ``N*(s)``; ``dims`` maps a settings
    column to its values per setting. ``shared_noise``: one ``m_seed`` for every setting (the
    sweeps' common random numbers) instead of one per (setting, seed)."""
    rng = np.random.default_rng(rng)
    S = len(next(iter(dims.values())))
    sids = [f"s{i:02d}" for i in range(S)]
    rows = []
    m = np.exp(noise * rng.standard_normal((1 if shared_noise else S, seeds)))
    m = np.broadcast_to(m, (S, seeds))  # a seed is the same data for both routes
    for route, Ns in n_true.items():
        for i, sid in enumerate(sids):
            for seed in range(seeds):
                for n in grid:
                    rows.append((sid, seed, n, route, route, "suboptimality", Ns[i] * m[i, seed] / n))
    df = pd.DataFrame(rows, columns=["setting_id", "seed", "n", "estimator", "route", "metric", "value"])
    settings = pd.DataFrame({"setting_id": sids, **{k: np.asarray(v, dtype=float) for k, v in dims.items()}})
    return df, settings


def fit(res, route, against):
    r = res.fits[(res.fits["route"] == route) & (res.fits["against"] == against)]
    assert len(r) == 1
    return r.iloc[0]


# --------------------------------------------------------------------------- the estimator
def test_without_censoring_the_fit_is_ols():
    rng = np.random.default_rng(3)
    x = np.linspace(0, 5, 9)
    y = 1.5 + 0.7 * x + 0.2 * rng.standard_normal(9)
    slope, intercept = np.polyfit(x, y, 1)
    alpha, a, sigma = censored_fit(x, y, np.zeros(9, int), sigma_min=0.01)
    assert a == pytest.approx(slope, abs=1e-12) and alpha == pytest.approx(intercept, abs=1e-12)
    assert sigma == pytest.approx(math.sqrt(np.mean((y - intercept - slope * x) ** 2)), rel=1e-12)


@pytest.mark.parametrize("case", range(6))
def test_censored_fit_matches_the_brute_force_likelihood(case):
    rng = np.random.default_rng(case)
    n = 10
    x = np.log(np.geomspace(1, 10 ** rng.uniform(2, 5), n))
    y = rng.normal() + rng.uniform(0.3, 1.5) * x + rng.uniform(0.2, 0.8) * rng.standard_normal(n)
    kind = np.zeros(n, int)
    hi, lo = np.quantile(y, 0.7), np.quantile(y, 0.15)
    kind[y > hi], kind[y < lo] = 1, 2  # right-censored at hi, left-censored at lo
    y = np.where(kind == 1, hi, np.where(kind == 2, lo, y))
    alpha, a, sigma = censored_fit(x, y, kind, sigma_min=0.01)
    ref = naive.censored_normal_regression(x, y, kind)
    assert sigma > 0.05  # the floor does not bind here
    assert (alpha, a, sigma) == pytest.approx(ref, abs=1e-6)


def test_sigma_floor_binds_on_collinear_exact_points():
    x = np.log([1.0, 2, 4, 8, 16, 32])
    y = 2.0 + 1.0 * x
    kind = np.array([0, 0, 0, 0, 1, 1])
    y[4:] = y[4:] - 0.5  # the bounds lie below the line: consistent with it
    alpha, a, sigma = censored_fit(x, y, kind, sigma_min=0.1)
    assert sigma == pytest.approx(0.1)
    ref = naive.censored_normal_regression(x, y, kind, sigma=0.1)
    assert (alpha, a) == pytest.approx(ref[:2], abs=1e-6)
    assert a == pytest.approx(1.0, abs=1e-3)


def test_fewer_than_two_exact_points_is_undefined():
    x = np.log([1.0, 2, 4, 8])
    assert np.isnan(censored_fit(x, x, np.array([0, 1, 1, 1]), 0.1)[1])
    assert np.isnan(censored_fit(x, x, np.array([0, 3, 3, 3]), 0.1)[1])  # undefined points are ignored
    assert np.isnan(censored_fit(np.zeros(4), x, np.zeros(4, int), 0.1)[1])  # dim does not vary


# --------------------------------------------------------------------------- known exponents
def test_recovers_known_exponents_and_says_where_the_bound_disagrees():
    dPi = np.geomspace(1, 1e4, 12)
    dR = np.geomspace(1, 100, 12)[np.random.default_rng(5).permutation(12)]
    df, settings = tables({"offline": 20 * dPi ** 0.7, "online": 20 * dR ** 1.0}, {"n_params_Pi": dPi,
                          "n_params_R": dR}, FINE)
    res = scaling_laws(df, settings, eps=1.0, n_boot=300)
    off, on = fit(res, "offline", "n_params_Pi"), fit(res, "online", "n_params_R")
    assert off["a"] == pytest.approx(0.7, abs=0.03) and off["a_lo"] <= 0.7 <= off["a_hi"]
    assert on["a"] == pytest.approx(1.0, abs=0.06) and on["a_lo"] <= 1.0 <= on["a_hi"]
    assert off["n_censored"] == 0 and off["method"] == "ols" and off["decades"] == pytest.approx(4.0)
    # the bound: exponent 1 against the route's own class
    assert off["predicted_a"] == 1.0 and on["predicted_a"] == 1.0
    assert not pd.isna(off["agrees"]) and not off["agrees"]
    assert not pd.isna(on["agrees"]) and on["agrees"]
    assert re.fullmatch(r"offline N_ε vs n_params_Pi: measured a = 0\.7\d \[0\.\d\d, 0\.\d\d\], "
                        r"bound predicts 1: disagrees", off["message"])
    assert "bound predicts 1: agrees" in on["message"]
    # intercept: log N = log 20 + 0.7 log dim, up to the seed mean and the grid's rounding (≤ 19%)
    assert math.exp(off["intercept"]) == pytest.approx(20, rel=0.4)


def test_bound_predicts_zero_against_the_other_class_when_the_own_class_is_fixed():
    dPi = np.geomspace(1, 1e3, 8)
    df, settings = tables({"offline": 20 * dPi, "online": np.full(8, 300.0)},
                          {"n_params_Pi": dPi, "n_params_R": np.full(8, 3.0)}, FINE)
    res = scaling_laws(df, settings, eps=1.0, n_boot=200, ratio_against="dim_ratio")
    on = fit(res, "online", "n_params_Pi")
    assert on["predicted_a"] == 0.0
    assert on["a_lo"] <= 0.0 <= on["a_hi"] and bool(on["agrees"])
    assert np.isnan(fit(res, "online", "n_params_R")["a"])  # n_params_R does not vary
    assert "exponent undefined" in fit(res, "online", "n_params_R")["message"]
    ratio = fit(res, "ratio", "dim_ratio")
    assert ratio["predicted_a"] == 1.0 and ratio["a"] == pytest.approx(1.0, abs=0.05)
    assert "covers 3.00 decades of dim_ratio (fewer than the 4 asked)" in ratio["message"]


def test_ratio_exponent_against_the_dimension_ratio():
    dPi = np.geomspace(10, 1e5, 10)
    dR = np.geomspace(1, 10, 10)[::-1]  # dim_ratio spans 5 decades
    df, settings = tables({"offline": 5 * dPi, "online": 5 * dR}, {"n_params_Pi": dPi, "n_params_R": dR}, FINE)
    res = scaling_laws(df, settings, eps=1.0, n_boot=300, against=[], ratio_against=["dim_ratio"])
    r = fit(res, "ratio", "dim_ratio")
    assert list(res.fits["route"]) == ["ratio"]
    assert r["a"] == pytest.approx(1.0, abs=0.05) and r["a_lo"] <= 1.0 <= r["a_hi"] and r["agrees"]
    assert r["decades"] == pytest.approx(5.0) and "decades" not in r["message"]
    # the ratio points are genver.stats' efficiency ratios, setting by setting
    eff = S.efficiency_ratio(df, 1.0, by="route", n_boot=10).set_index("setting_id")
    pts = res.points.set_index("setting_id")
    np.testing.assert_array_equal(pts["N"], eff.loc[pts.index, "ratio"])


def test_censored_points_fed_as_exact_bias_the_exponent_the_tobit_rule_does_not():
    dPi = np.geomspace(1, 1e4, 13)
    # 16 .. 65536 by factors 2^(1/4): N* = 40·dim is censored above dim ≈ 1640
    grid = np.unique(np.round(np.geomspace(16, 65536, 49))).astype(int).tolist()
    df, settings = tables({"offline": 40 * dPi, "online": 40 * np.sqrt(dPi)}, {"n_params_Pi": dPi,
                          "n_params_R": np.sqrt(dPi)}, grid)
    res = scaling_laws(df, settings, eps=1.0, n_boot=300)
    off = fit(res, "offline", "n_params_Pi")
    pts = res.points[(res.points["route"] == "offline") & (res.points["against"] == "n_params_Pi")]
    assert (pts["censoring"] == "right").sum() == 3 and off["n_censored"] == 3 and off["method"] == "tobit"
    assert set(pts.loc[pts["censoring"] == "right", "N"]) == {65536.0}  # drawn at the bound
    # broken variant: the bounds enter an OLS as if they were the values
    broken = np.polyfit(np.log(pts["dim"]), np.log(pts["N"]), 1)[0]
    assert broken < 0.9 and broken < off["a_lo"]
    assert off["a"] == pytest.approx(1.0, abs=0.05) and off["a_lo"] <= 1.0 <= off["a_hi"]
    assert off["n_censored_consistent"] == 3
    assert "3 of 13 points censored, Tobit fit" in off["message"]


def test_left_censored_and_undefined_points():
    dPi = np.geomspace(1, 1e3, 7)
    grid = [2**j for j in range(5, 12)]  # 32 .. 2048
    # offline N* = 8·dim: dims ≤ 4 reach ε at n = 32 (left-censored), dims ≥ 256 never (right)
    df, settings = tables({"offline": 8 * dPi, "online": 8 * dPi}, {"n_params_Pi": dPi, "n_params_R": dPi},
                          grid, noise=0.05)
    res = scaling_laws(df, settings, eps=1.0, n_boot=100, against=["n_params_Pi"], ratio_against="dim_ratio")
    pts = res.points[(res.points["route"] == "offline")].set_index("setting_id")
    kinds = pts["censoring"].tolist()
    assert kinds[0] == "left" and kinds[-1] == "right" and "exact" in kinds
    ratio = res.points[res.points["route"] == "ratio"]["censoring"]
    # both routes the same: exact/exact, left/left and right/right give 1, undefined, undefined
    assert set(ratio) <= {"exact", "undefined"} and (ratio == "undefined").sum() >= 2
    r = fit(res, "ratio", "dim_ratio")
    assert r["n_undefined"] == (ratio == "undefined").sum()
    off = fit(res, "offline", "n_params_Pi")
    assert off["n_censored"] == kinds.count("left") + kinds.count("right") and off["method"] == "tobit"


def test_bootstrap_resamples_seeds_jointly_across_settings():
    """Curves ``N*(s)·m_seed/n`` with the same ``m_seed`` in every setting (the sweeps' common
    random numbers), ``N*`` and the grid powers of 2: in every joint resample each
    ``N_ε(s) = N*(s)·2^k`` with one ``k`` for all settings, so (replicates on the grid) the
    exponent is exactly 1 in every replicate: a zero-width CI. Relabelling the seeds
    independently per setting (what a per-setting resample amounts to) moves the settings apart."""
    dPi = 2.0 ** np.arange(0, 10)
    grid = [2**j for j in range(0, 21)]
    df, settings = tables({"offline": 64 * dPi, "online": 64 * dPi}, {"n_params_Pi": dPi, "n_params_R": dPi},
                          grid, noise=1.5, shared_noise=True)
    res = scaling_laws(df, settings, eps=1.0, n_boot=200, against=["n_params_Pi"], grid_jitter=False)
    off = fit(res, "offline", "n_params_Pi")
    assert off["a"] == 1.0 and off["a_lo"] == 1.0 and off["a_hi"] == 1.0
    pts = res.points[res.points["route"] == "offline"]
    assert (pts["N_hi"] > pts["N_lo"]).all()  # the seeds do move every N_ε
    ratio = res.points[res.points["route"] == "ratio"]
    assert (ratio["N_lo"] == 1).all() and (ratio["N_hi"] == 1).all()  # paired across the routes too
    broken = df.copy()
    perm = {sid: np.random.default_rng(i).permutation(8) for i, sid in enumerate(settings["setting_id"])}
    broken["seed"] = [perm[sid][seed] for sid, seed in zip(broken["setting_id"], broken["seed"])]
    off_b = fit(scaling_laws(broken, settings, eps=1.0, n_boot=200, against=["n_params_Pi"], grid_jitter=False),
                "offline", "n_params_Pi")
    assert off_b["a_hi"] - off_b["a_lo"] > 0.01
    # with the grid-interval jitter (the default) the CI carries the rounding: each log N_ε
    # uniform over a width ln 2, so the slope's sd is (ln 2/√12)/√Σ(x − x̄)² and the 95% CI
    # about 2·1.96 of it wide
    jit = fit(scaling_laws(df, settings, eps=1.0, n_boot=400, against=["n_params_Pi"]), "offline", "n_params_Pi")
    x = np.log(dPi)
    width = 2 * 1.96 * (math.log(2) / math.sqrt(12)) / math.sqrt(((x - x.mean()) ** 2).sum())
    assert jit["a_lo"] < 1.0 < jit["a_hi"]
    assert 0.7 * width < jit["a_hi"] - jit["a_lo"] < 1.3 * width


def test_same_random_state_same_numbers():
    dPi = np.geomspace(1, 1e3, 6)
    df, settings = tables({"offline": 20 * dPi, "online": 20 * dPi ** 0.5}, {"n_params_Pi": dPi,
                          "n_params_R": dPi ** 0.5}, FINE)
    a = scaling_laws(df, settings, eps=1.0, n_boot=100, random_state=7)
    b = scaling_laws(df.sample(frac=1.0, random_state=1), settings, eps=1.0, n_boot=100, random_state=7)
    pd.testing.assert_frame_equal(a.fits, b.fits)
    pd.testing.assert_frame_equal(a.points, b.points)


def test_one_seed_gives_an_estimate_without_a_ci_and_an_empty_table_gives_undefined_rows():
    dPi = np.geomspace(1, 1e3, 6)
    df, settings = tables({"offline": 20 * dPi, "online": 20 * dPi}, {"n_params_Pi": dPi, "n_params_R": dPi},
                          FINE, seeds=1)
    off = fit(scaling_laws(df, settings, eps=1.0, n_boot=50, against="n_params_Pi", ratio_against=None),
              "offline", "n_params_Pi")
    assert off["a"] == pytest.approx(1.0, abs=0.05) and np.isnan(off["a_lo"]) and np.isnan(off["frac_boot"])
    assert pd.isna(off["agrees"]) and "[CI undefined: one seed]" in off["message"]
    assert off["message"].endswith("bound predicts 1: not comparable")
    empty = scaling_laws(df.iloc[:0], settings, eps=1.0, n_boot=10)
    assert len(empty.fits) == 5 and (empty.fits["method"] == "undefined").all() and empty.points.empty


def test_bad_arguments_name_themselves():
    dPi = np.geomspace(1, 1e3, 4)
    df, settings = tables({"offline": dPi, "online": dPi}, {"n_params_Pi": dPi, "n_params_R": dPi}, FINE)
    with pytest.raises(ValueError, match="against: unknown descriptor 'n_parms'"):
        scaling_laws(df, settings, 1.0, against="n_parms")
    with pytest.raises(ValueError, match="eps must be > 0"):
        scaling_laws(df, settings, 0.0)
    with pytest.raises(ValueError, match="settings must be a DataFrame"):
        scaling_laws(df, None, 1.0)


# --------------------------------------------------------------------------- the figure
def test_plot_scaling_law_draws_fit_bound_and_open_censored_markers():
    dPi = np.geomspace(1, 1e4, 13)
    grid = np.unique(np.round(np.geomspace(16, 65536, 49))).astype(int).tolist()
    df, settings = tables({"offline": 40 * dPi, "online": 40 * np.sqrt(dPi)}, {"n_params_Pi": dPi,
                          "n_params_R": np.sqrt(dPi)}, grid)
    res = scaling_laws(df, settings, eps=1.0, n_boot=50)
    ax = plots.plot_scaling_law(res.points, res.fits, against="n_params_Pi")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    off = fit(res, "offline", "n_params_Pi")
    lines = {(l.get_linestyle(), l.get_color()): l for l in ax.get_lines() if len(l.get_xdata()) == 50}
    dashed = [l for (ls, _), l in lines.items() if ls == "--"]
    assert len(dashed) == 2  # the bound's slope for each route
    for l in dashed:
        x, y = np.log(l.get_xdata()), np.log(l.get_ydata())
        slope = (y[-1] - y[0]) / (x[-1] - x[0])
        assert slope == pytest.approx(1.0) or slope == pytest.approx(fit(res, "online", "n_params_Pi")["predicted_a"])
    solid = [l for (ls, _), l in lines.items() if ls == "-"]
    x, y = np.log(solid[0].get_xdata()), np.log(solid[0].get_ydata())
    assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(off["a"])
    open_markers = [l for l in ax.get_lines() if l.get_marker() == "^" and l.get_markerfacecolor() == "none"]
    assert sum(len(l.get_xdata()) for l in open_markers) == off["n_censored"]
    assert len(ax.texts) == off["n_censored"]  # one arrow per censored point
    ax2 = plots.plot_scaling_law(res.points, res.fits, against="dim_ratio", routes="ratio")
    assert "N_" in ax2.get_ylabel() and "offline" in ax2.get_ylabel()


# --------------------------------------------------------------------------- spec key and report
BASE = {
    "experiment": {"name": "t", "generator": "finite_gap"},
    "instance": {"P": 2, "V": 2, "H": 2, "K_R": 3},
    "grid": {"n_distractors": [0, 8]},
    "data": {"sizes": [4, 16], "seeds": 2},
    "estimators": [{"name": "dpo", "label": "offline"}, {"name": "rm_rl", "label": "online"}],
}


@pytest.mark.parametrize("value, match", [
    ({"against": "n_parms_Pi"}, r"\[expect.scaling_law\] against: unknown descriptor 'n_parms_Pi'"),
    ({"ratio_against": ["dim_ratio", "bogus"]}, r"\[expect.scaling_law\] ratio_against: unknown descriptor 'bogus'"),
    ({"against": []}, r"\[expect.scaling_law\] against: empty list"),
    ({"agianst": "n_params_Pi"}, r"\[expect.scaling_law\] agianst: unknown key"),
    ({"against": 3}, r"\[expect.scaling_law\] against: expected str or list"),
    ({"epsilon": -0.1}, r"\[expect.scaling_law\] epsilon: must be > 0"),
    ("n_params_Pi", r"\[expect\] scaling_law: expected dict"),
])
def test_spec_key_is_validated_by_name(value, match):
    raw = {**BASE, "expect": {"scaling_law": value}}
    with pytest.raises(SpecError, match=match):
        parse_spec(raw)


def test_spec_key_needs_both_routes():
    raw = {**BASE, "estimators": [{"name": "dpo", "label": "a"}, {"name": "ipo", "label": "b"}],
           "expect": {"scaling_law": {}}}
    with pytest.raises(SpecError, match=r"scaling_law\]: needs an offline and an online route"):
        parse_spec(raw)
    ok = parse_spec({**BASE, "expect": {"scaling_law": {"against": ["log_size_Pi", "n_params_R"],
                                                        "ratio_against": "predicted_ratio", "epsilon": 0.01}}})
    assert ok.expect["scaling_law"]["ratio_against"] == "predicted_ratio"


def test_report_section_and_figure_end_to_end(tmp_path):
    text = (SIMS / "gap_horizon.toml").read_text()
    assert "\nepsilon = 0.005\n" in text
    spec = tmp_path / "gap_horizon_scaling.toml"
    spec.write_text(text.replace("\nepsilon = 0.005\n", '\nepsilon = 0.005\nscaling_law = { against = '
                                 '["n_params_Pi", "n_params_R"], ratio_against = "dim_ratio" }\n'))
    out = tmp_path / "out"
    run(spec, out, smoke=True, progress=False)
    path, table = make_report(out)
    md = path.read_text()
    assert "## Scaling laws" in md and "![scaling_law](figures/scaling_law.png)" in md
    assert (out / "figures" / "scaling_law.png").stat().st_size > 0
    assert (out / "figures" / "scaling_law.pdf").stat().st_size > 0
    rows = table[table["expected"].str.startswith("scaling law: ")]
    assert list(rows["expected"]) == ["scaling law: offline vs n_params_Pi", "scaling law: online vs n_params_Pi",
                                      "scaling law: offline vs n_params_R", "scaling law: online vs n_params_R",
                                      "scaling law: ratio vs dim_ratio"]
    assert set(rows["verdict"]) <= {"AGREES", "DISAGREES", "UNDEFINED"}
    # the smoke run has H ∈ {1, 4}: offline is censored at H = 4, so its exponent is undefined
    assert rows["detail"].iloc[0].startswith("offline N_ε vs n_params_Pi: exponent undefined")
    assert "covers 0.70 decades of dim_ratio (fewer than the 4 asked)" in rows["detail"].iloc[-1]
    for d in rows["detail"]:
        assert f"- {d}" in md
    # without the key: no section, the verdict table as it was
    man = {**ResultStore(out).read_manifest()}
    man["expect"] = {k: v for k, v in man["expect"].items() if k != "scaling_law"}
    section, same, files = scaling_law_section(out, man, None, None, table.iloc[:1])
    assert section is None and files == [] and same.equals(table.iloc[:1])


# --------------------------------------------------------------------------- the spec's aggregate
def test_fits_use_the_named_aggregate_where_mean_curve_and_median_differ():
    """9 seeds: 8 with the error curve ``N*(s)/n`` exactly, one outlier ``50·dim^0.5`` times
    larger that dominates the mean curve. The median (and IQM) of the seeds' own N_ε is then
    the smallest grid value ≥ N*(s) = 20·dim (closed form), so the fitted exponent is the
    typical seeds' 1 (within the grid's rounding), with a CI containing 1; the mean curve's N_ε
    follows the outlier and gives a steeper exponent: fitting the mean curve where the spec
    names the median fails this test."""
    dPi = np.geomspace(1, 1e4, 9)
    df, settings = tables({"offline": 20 * dPi, "online": 20 * dPi}, {"n_params_Pi": dPi, "n_params_R": dPi},
                          FINE, seeds=9, noise=0.0)
    out = (df["seed"] == 8).to_numpy()
    dim_of = dict(zip(settings["setting_id"], dPi))
    df.loc[out, "value"] *= 50 * np.sqrt(df.loc[out, "setting_id"].map(dim_of).to_numpy())
    grid = np.asarray(FINE, dtype=float)
    want_N = grid[np.searchsorted(grid, 20 * dPi - 1e-9)]  # smallest grid n with 20·dim/n ≤ 1
    kw = dict(eps=1.0, n_boot=400, against=["n_params_Pi"], ratio_against=None)
    med = scaling_laws(df, settings, aggregate="median", **kw)
    pts = med.points[med.points["route"] == "offline"].sort_values("dim")
    np.testing.assert_array_equal(pts["N"].to_numpy(), want_N)
    assert (pts["censoring"] == "exact").all() and (pts["aggregate"] == "median").all()
    off = fit(med, "offline", "n_params_Pi")
    assert off["aggregate"] == "median" and off["message"].endswith("; N_ε: median of the seeds' N_ε")
    assert off["a"] == pytest.approx(_ols_slope(np.log(dPi), np.log(want_N)), abs=1e-9)
    assert off["a"] == pytest.approx(1.0, abs=0.02) and off["a_lo"] <= 1.0 <= off["a_hi"]
    assert off["agrees"]
    iqm = fit(scaling_laws(df, settings, aggregate="iqm", **kw), "offline", "n_params_Pi")
    assert iqm["a"] == pytest.approx(off["a"], abs=1e-9)  # the outlier is trimmed
    mean = fit(scaling_laws(df, settings, **kw), "offline", "n_params_Pi")
    assert mean["aggregate"] == "mean" and "N_ε:" not in mean["message"]
    assert mean["a"] > 1.25  # the outlier's exponent leaks into the mean curve, and its CI is wide
    assert mean["a_hi"] - mean["a_lo"] > 5 * (off["a_hi"] - off["a_lo"])
    with pytest.raises(ValueError, match="aggregate must be one of"):
        scaling_laws(df, settings, aggregate="mode", **kw)


def _ols_slope(x, y):
    return float(np.polyfit(x, y, 1)[0])
