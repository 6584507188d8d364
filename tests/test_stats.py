"""genver.stats against closed forms.

Synthetic tidy tables whose answers are exact: a metric equal to ``c / n`` for every seed has
log-log slope −1, ``N_ε`` = the smallest grid ``n ≥ c/ε``, and on a grid of powers of two with
``c_off / c_on`` a power of two the efficiency ratio is exactly ``c_off / c_on``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from genver import stats as S
from genver.stats.bootstrap import _quantile

GRID = [2**j for j in range(0, 11)]  # 1 .. 1024


def tidy(curves, grid=GRID, seeds=range(4), settings=None, metric="suboptimality", noise=None):
    """Tidy table: ``curves`` maps estimator -> (route, f(n, seed)); ``settings`` maps
    setting_id -> dict of knob values (the curves may read them through ``f.__knobs__``)."""
    settings = settings or {"s0": {"D": 0}}
    rows = []
    for sid, knobs in settings.items():
        for est, (route, f) in curves.items():
            for seed in seeds:
                for n in grid:
                    rows.append(dict(experiment="exp", setting_id=sid, **knobs, seed=seed, n=n,
                                     estimator=est, route=route, metric=metric,
                                     value=float(f(n, seed, **knobs))))
    return pd.DataFrame(rows)


def c_over_n(c):
    return lambda n, seed, **k: c / n


# --------------------------------------------------------------------------- iqm, bootstrap
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 13, 40])
def test_iqm_matches_trim_mean(size):
    x = np.random.default_rng(size).standard_cauchy(size)
    assert S.iqm(x) == pytest.approx(sps.trim_mean(x, 0.25), rel=1e-12, abs=1e-12)


def test_iqm_degenerate_and_vectorised():
    assert np.isnan(S.iqm([]))
    assert np.isnan(S.iqm([np.nan, np.nan]))
    assert S.iqm([1.0, np.nan, 3.0]) == 2.0
    m = np.random.default_rng(0).normal(size=(5, 9))
    np.testing.assert_allclose(S.iqm(m, axis=1), [sps.trim_mean(r, 0.25) for r in m])


def test_bootstrap_reproducible_and_vectorised_equals_loop():
    x = np.random.default_rng(3).normal(size=25)
    a = S.stratified_bootstrap_ci(x, np.mean, n_boot=300, random_state=7)
    b = S.stratified_bootstrap_ci(x, np.mean, n_boot=300, random_state=7)
    c = S.stratified_bootstrap_ci(x, lambda m: m.mean(-1), n_boot=300, random_state=7, vectorized=True)
    d = S.stratified_bootstrap_ci(x, np.mean, n_boot=300, random_state=8)
    assert a == b
    assert a.estimate == pytest.approx(x.mean())
    np.testing.assert_allclose(a, c, rtol=1e-12)
    assert a != d
    assert a.lo < x.mean() < a.hi
    # a Generator is used as is
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert S.stratified_bootstrap_ci(x, np.mean, 200, random_state=g1) == \
        S.stratified_bootstrap_ci(x, np.mean, 200, random_state=g2)


def test_bootstrap_coverage_normal():
    rng = np.random.default_rng(2024)
    hits = 0
    for _ in range(200):
        x = rng.normal(1.5, 2.0, size=40)
        ci = S.stratified_bootstrap_ci(x, lambda m: m.mean(-1), n_boot=500, random_state=rng,
                                       vectorized=True)
        hits += ci.lo <= 1.5 <= ci.hi
    assert hits / 200 >= 0.90


def test_bootstrap_is_stratified():
    # stratum A: 10 zeros, stratum B: 30 ones. Resampling within strata keeps 10 zeros and
    # 30 ones in every replicate, so the pooled mean is exactly 0.75 with a zero-width CI.
    strata = {"A": np.zeros(10), "B": np.ones(30)}
    ci = S.stratified_bootstrap_ci(strata, np.mean, n_boot=200, random_state=0)
    assert ci == (0.75, 0.75, 0.75)
    sizes = S.stratified_bootstrap_ci([np.arange(3.0), np.arange(5.0)],
                                      lambda parts: 10 * len(parts[0]) + len(parts[1]),
                                      n_boot=50, random_state=0, pooled=False)
    assert sizes == (35.0, 35.0, 35.0)
    # unstratified, the same 40 values give a spread
    pooled = S.stratified_bootstrap_ci(np.r_[np.zeros(10), np.ones(30)], np.mean, 200, random_state=0)
    assert pooled.hi - pooled.lo > 0.1


def test_bootstrap_degenerate():
    assert all(np.isnan(S.stratified_bootstrap_ci([], np.mean, 10, random_state=0)))
    one = S.stratified_bootstrap_ci([2.0], np.mean, 10, random_state=0)
    assert one.estimate == 2.0 and np.isnan(one.lo) and np.isnan(one.hi)
    const = S.stratified_bootstrap_ci(np.full(6, 3.0), np.mean, 100, random_state=0)
    assert const == (3.0, 3.0, 3.0)
    with pytest.raises(ValueError):
        S.stratified_bootstrap_ci([1.0, 2.0], np.mean, n_boot=0)
    with pytest.raises(ValueError):
        S.stratified_bootstrap_ci([1.0, 2.0], np.mean, alpha=1.5)


def test_quantile_extended_reals():
    assert _quantile(np.array([1.0, 2.0, np.inf, np.inf]), 0.975) == np.inf
    assert _quantile(np.array([1.0, 2.0, 3.0, np.inf]), 0.5) == 2.5
    assert _quantile(np.array([1.0, np.inf]), 0.0) == 1.0


# --------------------------------------------------------------------------- aggregate
def test_aggregate_constant_seeds_exact_and_zero_width():
    df = tidy({"offline": ("offline", c_over_n(8.0)), "online": ("online", c_over_n(1.0))})
    agg = S.aggregate(df, knobs=["D"], n_boot=200)
    assert len(agg) == 2 * len(GRID)
    assert list(agg.columns[:7]) == ["experiment", "setting_id", "D", "estimator", "route", "n", "metric"]
    c = np.where(agg["estimator"] == "offline", 8.0, 1.0)
    np.testing.assert_allclose(agg["mean"], c / agg["n"], rtol=1e-15)
    np.testing.assert_allclose(agg["iqm"], c / agg["n"], rtol=1e-15)
    for col in ("mean_lo", "mean_hi", "iqm_lo", "iqm_hi"):
        np.testing.assert_allclose(agg[col], agg["mean"], rtol=1e-15)
    assert (agg["n_seeds"] == 4).all()


def test_aggregate_noisy_seeds_nan_and_single_seed():
    rng = np.random.default_rng(0)
    df = tidy({"offline": ("offline", lambda n, s, **k: 1.0 / n + rng.normal(0, 0.01))}, seeds=range(10))
    df.loc[(df["n"] == 1) & (df["seed"] < 3), "value"] = np.nan  # three seeds missing at n=1
    agg = S.aggregate(df, knobs="D", n_boot=300, random_state=1)
    assert agg.loc[agg["n"] == 1, "n_seeds"].item() == 7
    assert (agg["mean_lo"] <= agg["mean"]).all() and (agg["mean"] <= agg["mean_hi"]).all()
    assert (agg["iqm_lo"] <= agg["iqm_hi"]).all()
    assert (agg["mean_hi"] - agg["mean_lo"] > 0).all()
    # reproducible, and a group's CI does not depend on the other groups in the table
    again = S.aggregate(df, knobs="D", n_boot=300, random_state=1)
    pd.testing.assert_frame_equal(agg, again)
    sub = S.aggregate(df[df["n"] >= 512], knobs="D", n_boot=300, random_state=1)
    pd.testing.assert_frame_equal(sub.reset_index(drop=True),
                                  agg[agg["n"] >= 512].reset_index(drop=True))
    one = S.aggregate(df[df["seed"] == 0], knobs="D", n_boot=50)
    assert one["mean_lo"].isna().all() and one["iqm_hi"].isna().all()
    assert len(one) == len(GRID) - 1  # seed 0 is NaN at n=1: no row there


def test_aggregate_degenerate_tables():
    empty = S.aggregate(pd.DataFrame(columns=["seed", "n", "estimator", "metric", "value"]))
    assert empty.empty and "mean_lo" in empty.columns
    df = tidy({"a": ("other", c_over_n(1.0))})
    assert S.aggregate(df, metric="win_rate").empty
    df.loc[0, "value"] = np.inf
    out = S.aggregate(df, n_boot=50)
    assert out.loc[out["n"] == 1, "mean"].item() == np.inf
    with pytest.raises(ValueError, match="knobs"):
        S.aggregate(df, knobs=["nope"])
    with pytest.raises(ValueError, match="value"):
        S.aggregate(df.drop(columns="value"))


# --------------------------------------------------------------------------- N_ε
@pytest.mark.parametrize("c", [1.0, 3.0, 8.0, 100.0])
def test_n_epsilon_closed_form(c):
    df = tidy({"offline": ("offline", c_over_n(c))})
    eps = [0.5, 0.1, 0.03, 0.001]
    ne = S.n_epsilon(df, eps, knobs=["D"], n_boot=100)
    assert len(ne) == len(eps)
    for _, row in ne.iterrows():
        expect = [n for n in GRID if n >= c / row["eps"]]
        if expect:
            assert row["reached"] and row["N_eps"] == expect[0]
            assert row["N_eps_lo"] == row["N_eps_hi"] == expect[0]
            assert row["frac_reached"] == 1.0
            assert row["left_censored"] == (expect[0] == 1)
        else:
            assert not row["reached"] and np.isnan(row["N_eps"])
            assert row["N_eps_lo"] == row["N_eps_hi"] == np.inf
            assert row["frac_reached"] == 0.0
        assert row["censored_at"] == 1024 and row["n_min"] == 1


def test_n_epsilon_rules_and_bootstrap_fraction():
    # mean curve dips below ε at n=4, rises above, and stays below from n=64 on
    bump = {1: 1.0, 2: 0.5, 4: 0.05, 8: 0.2, 16: 0.2, 32: 0.2}
    df = tidy({"x": ("other", lambda n, s, **k: bump.get(n, 0.01))})
    first = S.n_epsilon(df, 0.1, n_boot=50).iloc[0]
    sustained = S.n_epsilon(df, 0.1, n_boot=50, rule="sustained").iloc[0]
    assert first["N_eps"] == 4 and sustained["N_eps"] == 64
    # half the seeds never reach ε: the mean curve is 0.5 + 0.5·0 → never ≤ 0.1 … but a
    # resample made only of good seeds does; frac_reached is strictly between 0 and 1
    df2 = tidy({"x": ("other", lambda n, s, **k: 0.0 if s < 2 else 1.0)}, seeds=range(4))
    row = S.n_epsilon(df2, 0.1, n_boot=2000, random_state=3).iloc[0]
    assert not row["reached"] and 0.0 < row["frac_reached"] < 0.2
    assert row["N_eps_lo"] == 1.0 and row["N_eps_hi"] == np.inf
    with pytest.raises(ValueError):
        S.n_epsilon(df, 0.1, rule="sometimes")


# --------------------------------------------------------------------------- slopes
def test_loglog_slope_exact():
    df = tidy({"a": ("offline", c_over_n(5.0)),
               "b": ("online", lambda n, s, **k: 2.0 / np.sqrt(n)),
               "z": ("other", lambda n, s, **k: 0.0 if n > 2 else 1.0 / n),   # two positive points
               "zz": ("other", lambda n, s, **k: 0.0 if n > 1 else 1.0)})      # one positive point
    sl = S.loglog_slope(df).set_index("estimator")
    assert sl.loc["a", "slope"] == pytest.approx(-1.0, abs=1e-12)
    assert sl.loc["a", "slope_se"] == pytest.approx(0.0, abs=1e-12)
    assert sl.loc["a", "intercept"] == pytest.approx(np.log(5.0))
    assert sl.loc["b", "slope"] == pytest.approx(-0.5, abs=1e-12)
    assert sl.loc["z", "n_points"] == 2 and sl.loc["z", "slope"] == pytest.approx(-1.0)
    assert np.isnan(sl.loc["z", "slope_se"])
    assert sl.loc["zz", "n_points"] == 1 and np.isnan(sl.loc["zz", "slope"])


def test_loglog_slope_se_positive_with_noise():
    rng = np.random.default_rng(1)
    df = tidy({"a": ("other", lambda n, s, **k: np.exp(rng.normal(0, 0.2)) / n)}, seeds=range(6))
    row = S.loglog_slope(df).iloc[0]
    assert abs(row["slope"] + 1) < 4 * row["slope_se"] + 0.05 and row["slope_se"] > 0


# --------------------------------------------------------------------------- efficiency ratio
GAP = {f"s{D:02d}": {"D": D} for D in (0, 1, 3)}  # offline curve c_off = 2**D, online c_on = 1


def gap_table(**kw):
    return tidy({"offline": ("offline", lambda n, s, D: 2.0**D / n),
                 "online": ("online", lambda n, s, D: 1.0 / n)}, settings=GAP, **kw)


def test_efficiency_ratio_exact_powers_of_two():
    df = gap_table()
    settings = pd.DataFrame({"setting_id": list(GAP), "predicted_ratio": [1.0, 2.0, 8.0]})
    r = S.efficiency_ratio(df, 2.0**-4, knobs=["D"], n_boot=200, settings=settings)
    r = r.set_index("D")
    for D in (0, 1, 3):
        assert r.loc[D, "ratio_kind"] == "exact"
        assert r.loc[D, "N_online"] == 16 and r.loc[D, "N_offline"] == 16 * 2**D
        assert r.loc[D, "ratio"] == 2.0**D
        assert r.loc[D, "ratio_lo"] == r.loc[D, "ratio_hi"] == 2.0**D
        assert r.loc[D, "frac_exact"] == 1.0
    np.testing.assert_array_equal(r["predicted_ratio"], [1.0, 2.0, 8.0])
    assert not r["left_censored"].any()


def test_efficiency_ratio_is_paired():
    # every seed scales both routes' curves by the same factor u_s: the two N_ε move together
    # and, on a grid of powers of two with c_off/c_on = 8, their ratio is 8 in every paired
    # resample while each N_ε alone varies
    u = {0: 1.0, 1: 3.0, 2: 5.0, 3: 9.0, 4: 20.0}
    df = tidy({"offline": ("offline", lambda n, s, **k: 8.0 * u[s] / n),
               "online": ("online", lambda n, s, **k: u[s] / n)}, seeds=range(5), grid=[2**j for j in range(16)])
    r = S.efficiency_ratio(df, 0.01, n_boot=500, random_state=0).iloc[0]
    assert r["ratio_kind"] == "exact" and r["ratio"] == 8.0
    assert r["ratio_lo"] == r["ratio_hi"] == 8.0
    ne = S.n_epsilon(df, 0.01, n_boot=500, random_state=0)
    assert (ne["N_eps_hi"] > ne["N_eps_lo"]).all()


def test_efficiency_ratio_censoring_kinds():
    grid = GRID
    df = tidy({"offline": ("offline", c_over_n(1e6)), "online": ("online", c_over_n(4.0))})
    r = S.efficiency_ratio(df, 0.25, n_boot=100).iloc[0]
    assert not r["offline_reached"] and r["online_reached"]
    assert r["ratio_kind"] == "lower_bound" and r["ratio"] == 1024 / 16
    assert r["ratio_lo"] == r["ratio_hi"] == np.inf and r["frac_exact"] == 0.0

    df = tidy({"offline": ("offline", c_over_n(4.0)), "online": ("online", c_over_n(1e6))})
    r = S.efficiency_ratio(df, 0.25, n_boot=100).iloc[0]
    assert r["ratio_kind"] == "upper_bound" and r["ratio"] == 16 / 1024
    assert r["ratio_lo"] == r["ratio_hi"] == 0.0

    df = tidy({"offline": ("offline", c_over_n(1e6)), "online": ("online", c_over_n(1e6))})
    r = S.efficiency_ratio(df, 0.25, n_boot=100).iloc[0]
    assert r["ratio_kind"] == "undefined" and np.isnan(r["ratio"]) and np.isnan(r["ratio_lo"])

    df = tidy({"offline": ("offline", c_over_n(1.0))})  # no online rows at all
    r = S.efficiency_ratio(df, 0.25, n_boot=100).iloc[0]
    assert r["ratio_kind"] == "undefined"

    df = tidy({"offline": ("offline", c_over_n(0.5)), "online": ("online", c_over_n(8.0))}, grid=grid)
    r = S.efficiency_ratio(df, 0.5, n_boot=10).iloc[0]
    assert r["ratio_kind"] == "exact" and r["left_censored"] and r["ratio"] == 1 / 16


def test_efficiency_ratio_by_route_and_degenerate():
    df = gap_table()
    a = S.efficiency_ratio(df, 2.0**-4, knobs="D", n_boot=50)
    b = S.efficiency_ratio(df, 2.0**-4, knobs="D", n_boot=50, by="route")
    pd.testing.assert_frame_equal(a, b)
    extra = tidy({"online_dpo_K25": ("online", c_over_n(1.0))}, settings=GAP)
    with pytest.raises(ValueError, match="one estimator per route"):
        S.efficiency_ratio(pd.concat([df, extra]), 0.1, by="route")
    empty = S.efficiency_ratio(df.iloc[:0], 0.1)
    assert empty.empty and "ratio_kind" in empty.columns
    one_seed = S.efficiency_ratio(df[df["seed"] == 0], 2.0**-4, knobs="D", n_boot=50)
    assert one_seed["ratio_lo"].isna().all() and (one_seed["ratio_kind"] == "exact").all()


# --------------------------------------------------------------------------- verdicts
def test_gap_verdict():
    r = S.efficiency_ratio(gap_table(), 2.0**-4, knobs="D", n_boot=50)
    v = S.gap_verdict(r, "increasing in D")
    assert v and v.statistic == pytest.approx(1.0) and "Spearman" in v.message
    assert not S.gap_verdict(r, "decreasing in D")
    assert S.gap_verdict(r, "≥ 1") and S.gap_verdict(r, ">= 1")
    assert not S.gap_verdict(r, "equals 1")            # D = 1, 3 have ratios 2 and 8
    assert S.gap_verdict(r[r["D"] == 0], "equals 1")
    assert not S.gap_verdict(r, "> 1")                 # D = 0 is exactly 1
    assert S.gap_verdict(r[r["D"] > 0], "> 1")
    assert not S.gap_verdict(r, "increasing in nope")
    assert not S.gap_verdict(r[r["D"] == 0], "increasing in D")  # one knob value
    und = r.copy()
    und["ratio_kind"] = "undefined"
    und["ratio"] = np.nan
    v = S.gap_verdict(und, "≥ 1")
    assert not v and "undefined" in v.message
    with pytest.raises(ValueError, match="cannot parse"):
        S.gap_verdict(r, "better than before")
    # NaN CIs (one seed): fall back on the point values and kinds
    nci = r.assign(ratio_lo=np.nan, ratio_hi=np.nan)
    assert S.gap_verdict(nci[nci["D"] == 0], "equals 1")
    lb = nci.assign(ratio_kind="lower_bound")
    assert S.gap_verdict(lb, "≥ 1") and not S.gap_verdict(lb[lb["D"] > 0], "equals 1")


def test_percentile_ci_per_column_in_the_extended_reals_is_the_rule_of_order_statements():
    """One interval rule: per column, NaN replicates left out, ±inf as values (numpy's
    nanpercentile gives NaN between two infinities); ``[expect] order`` uses it."""
    from genver.experiments import expect
    boot = np.array([[1.0, np.inf, np.nan], [2.0, np.inf, np.nan], [3.0, 5.0, np.nan], [np.nan, np.inf, np.nan]])
    lo, hi = S.percentile_ci(boot, 0.5, axis=0)
    # column 0: {1, 2, 3}: quantiles 0.25 and 0.75 -> 1.5, 2.5; column 1: {inf, inf, 5, inf} sorted
    # (5, inf, inf, inf): 0.25 -> 5 + 0.75 (inf - 5) = inf, 0.75 -> inf; column 2: no replicate
    np.testing.assert_array_equal(lo, [1.5, np.inf, np.nan])
    np.testing.assert_array_equal(hi, [2.5, np.inf, np.nan])
    with np.errstate(all="ignore"):
        assert np.isnan(np.nanpercentile(boot[:, 1], 75))  # what the order statements used before
    got = expect._ci(boot, np.zeros(3))
    np.testing.assert_array_equal(got[0], S.percentile_ci(boot, 0.05, axis=0)[0])
    np.testing.assert_array_equal(got[1], S.percentile_ci(boot, 0.05, axis=0)[1])
    assert S.percentile_ci(boot[:, 0], 0.5) == (1.5, 2.5)
    assert expect.N_BOOT == S.N_BOOT


def test_one_comparison_grammar():
    assert S.parse_comparison(">= 2") == ("ge", 2.0) and S.parse_comparison("≥2.5") == ("ge", 2.5)
    assert S.parse_comparison("equals 1") == ("eq", 1.0) and S.parse_comparison("== 1") == ("eq", 1.0)
    assert S.parse_comparison("< -1e-3") == ("lt", -1e-3) and S.parse_comparison("bigger") is None
    assert S.parse_comparison(">= 1e") is None
    from genver.experiments.expect import parse_order
    for sym, op in (("≥", "ge"), (">=", "ge"), ("<=", "le"), ("=", "eq"), ("==", "eq"), (">", "gt"), ("<", "lt")):
        assert parse_order(f"a {sym} b").pairs == [("a", op, "b")] and S.COMPARISONS[sym] == op
    assert parse_order("a > b for n >= 64").n_filter == ("ge", 64)


def test_iqm_is_bitwise_scipy_trim_mean():
    """genver's interquartile mean repeats SciPy's algorithm without its dispatch: the same bits
    on random vectors and bootstrap matrices of every length 1..40, with ties and infinities."""
    from scipy.stats import trim_mean

    from genver.stats import iqm
    rng = np.random.default_rng(7)
    for k in range(1, 41):
        v = np.round(rng.normal(size=k), 1)
        if k > 3:
            v[0] = np.inf
        assert np.array_equal(np.float64(iqm(v)), np.float64(trim_mean(v, 0.25)), equal_nan=True)
        m = rng.normal(size=(50, k))
        assert iqm(m, axis=1).tobytes() == trim_mean(m, 0.25, axis=1).tobytes()
        assert iqm(m.T, axis=0).tobytes() == trim_mean(m.T, 0.25, axis=0).tobytes()


def test_aggregate_without_iqm_keeps_the_mean_bits_and_leaves_iqm_nan():
    from genver.stats import aggregate
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"setting_id": "s", "seed": np.repeat(np.arange(7), 4), "estimator": "dpo", "route": "offline",
                       "n": np.tile([1, 2, 4, 8], 7), "metric": "suboptimality", "value": rng.random(28)})
    full, lean = aggregate(df), aggregate(df, with_iqm=False)
    mean_cols = ["n_seeds", "mean", "mean_lo", "mean_hi"]
    assert full[mean_cols].to_numpy().tobytes() == lean[mean_cols].to_numpy().tobytes()
    assert lean[["iqm", "iqm_lo", "iqm_hi"]].isna().all().all() and full[["iqm", "iqm_lo",
                                                                          "iqm_hi"]].notna().all().all()
