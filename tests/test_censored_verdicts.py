"""Censoring in verdicts and per-seed N_ε (issue 14, item 5), on hand-made tables whose answers
are known: curves that step from 1 to 0 at a chosen n, so each seed's N_ε is that n exactly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genver import stats as S
from genver.experiments.expect import check_order
from genver.experiments.spec import SpecError, parse_spec

GRID = [2**j for j in range(0, 9)]  # 1 .. 256
EPS = 0.5


def step_table(crossings, grid=GRID, knob="H"):
    """``crossings[(knob value, route)]`` = per-seed first n with value ≤ ε (``None``: never on
    the grid). The curve is 1 before the crossing and 0 from it on."""
    rows = []
    for (kv, route), per_seed in crossings.items():
        for seed, c in enumerate(per_seed):
            for n in grid:
                v = 0.0 if c is not None and n >= c else 1.0
                rows.append({"setting_id": f"s{kv}", knob: kv, "seed": seed, "n": n, "estimator": route,
                             "route": route, "metric": "suboptimality", "value": v})
    return pd.DataFrame(rows)


def _trend(df, **kw):
    return S.ratio_trend(df, EPS, "H", n_boot=400, random_state=0, **kw)


# --------------------------------------------------------------------------- censored trends
def test_exact_then_two_lower_bounds_is_increasing():
    """Ratios exact 128, then ≥ 128, ≥ 128 (offline censored at n = 256, online at 2)."""
    k = 6
    df = step_table({(1, "online"): [2] * k, (1, "offline"): [256] * k,
                     (2, "online"): [2] * k, (2, "offline"): [None] * k,
                     (3, "online"): [2] * k, (3, "offline"): [None] * k})
    r = S.efficiency_ratio(df, EPS, knobs="H", by="route", n_boot=200)
    assert r.sort_values("H")["ratio"].tolist() == [128.0, 128.0, 128.0]
    assert r.sort_values("H")["ratio_kind"].tolist() == ["exact", "lower_bound", "lower_bound"]
    t = _trend(df, by="route")
    # pairs (1,2), (1,3): certainly up (128 < ratio); (2,3): two lower bounds, order open
    assert t.tau == pytest.approx(2 / 3) and t.pairs == (2, 0, 1)
    assert t.tau_lo == pytest.approx(2 / 3) and t.censored == ((2, "offline"), (3, "offline"))
    v = S.gap_verdict(r, "increasing in H", trend=t)
    assert v and "censored: H=2 (offline), H=3 (offline)" in v.message
    assert not S.gap_verdict(r, "decreasing in H", trend=t)
    # the point rule with bounds as values sees a constant ratio: undefined, FAIL
    legacy = S.gap_verdict(r, "increasing in H")
    assert not legacy and "undefined" in legacy.message


def test_decreasing_series_fails_increasing_and_passes_decreasing():
    k = 5
    df = step_table({(1, "online"): [2] * k, (1, "offline"): [16] * k,
                     (2, "online"): [2] * k, (2, "offline"): [8] * k,
                     (3, "online"): [2] * k, (3, "offline"): [4] * k})
    t = _trend(df, by="route")
    assert t.tau == -1.0 and t.pairs == (0, 3, 0)
    r = S.efficiency_ratio(df, EPS, knobs="H", by="route", n_boot=100)
    assert not S.gap_verdict(r, "increasing in H", trend=t)
    assert S.gap_verdict(r, "decreasing in H", trend=t)


def test_upper_bound_below_an_exact_ratio_counts_as_down():
    """Online censored at H = 2 (ratio ≤ 4/256) after an exact 8 at H = 1: certainly down."""
    df = step_table({(1, "online"): [2] * 4, (1, "offline"): [16] * 4,
                     (2, "online"): [None] * 4, (2, "offline"): [4] * 4})
    t = _trend(df, by="route")
    assert t.tau == -1.0 and t.censored == ((2, "online"),)


def test_noisy_flat_series_fails_under_the_bootstrap_rule():
    """Per-seed crossings drawn from the same distribution at every H: no trend; the point τ
    may be non-zero, but its bootstrap CI straddles 0, so neither direction passes."""
    rng = np.random.default_rng(5)
    crossings = {}
    for h in (1, 2, 3, 4, 5):
        crossings[(h, "online")] = [2] * 12
        crossings[(h, "offline")] = [int(v) for v in 2 ** rng.integers(2, 8, 12)]
    df = step_table(crossings)
    r = S.efficiency_ratio(df, EPS, knobs="H", by="route", n_boot=100)
    for agg in ("mean", "median"):
        t = _trend(df, by="route", aggregate=agg)
        assert t.tau_lo < 0 < t.tau_hi, t
        assert not S.gap_verdict(r, "increasing in H", trend=t)
        assert not S.gap_verdict(r, "decreasing in H", trend=t)
    # the same noise around an increasing trend passes
    inc = {k: (v if k[1] == "online" else [min(256, c * 4 ** (k[0] - 1)) for c in v]) for k, v in crossings.items()}
    t = _trend(step_table(inc), by="route", aggregate="median")
    assert t.tau > 0 and t.tau_lo > 0


def test_one_seed_gives_no_trend_verdict():
    df = step_table({(1, "online"): [2], (1, "offline"): [4], (2, "online"): [2], (2, "offline"): [64]})
    t = _trend(df, by="route")
    assert t.tau == 1.0 and np.isnan(t.tau_lo)
    r = S.efficiency_ratio(df, EPS, knobs="H", by="route", n_boot=100)
    v = S.gap_verdict(r, "increasing in H", trend=t)
    assert not v and "not established" in v.message


# --------------------------------------------------------------------------- per-seed N_ε
def test_per_seed_n_epsilon_median_and_iqm_on_a_seed_matrix():
    # seeds' own crossings 1, 2, 4, 8, 16, 32, 64, never, never (k = 9)
    own = [1, 2, 4, 8, 16, 32, 64, None, None]
    df = step_table({(1, "offline"): own, (1, "online"): [1] * 9})
    ps = S.n_epsilon_per_seed(df, EPS, knobs="H")
    off = ps[ps["estimator"] == "offline"].sort_values("seed")
    assert off["N_eps"].tolist() == [1, 2, 4, 8, 16, 32, 64, np.inf, np.inf]
    assert off["reached"].tolist() == [True] * 7 + [False] * 2 and (off["censored_at"] == 256).all()
    ne = S.n_epsilon(df, EPS, knobs="H", n_boot=300).set_index("estimator")
    assert ne.loc["offline", "N_eps_median"] == 16.0                    # 5th of 9 sorted
    # IQM drops ⌊9/4⌋ = 2 at each end: mean of 4, 8, 16, 32, 64
    assert ne.loc["offline", "N_eps_iqm"] == pytest.approx((4 + 8 + 16 + 32 + 64) / 5)
    assert ne.loc["offline", "frac_seeds_reached"] == pytest.approx(7 / 9)
    # the mean curve is (#seeds not yet crossed)/9, ≤ ε = 0.5 once 5 have crossed: n = 16
    assert ne.loc["offline", "N_eps"] == 16.0
    assert ne.loc["offline", "N_eps_median_lo"] <= 16.0 <= ne.loc["offline", "N_eps_median_hi"]
    # with one more unreached seed the IQM keeps an unreached one: +inf
    df2 = step_table({(1, "offline"): [1, 2, 4, 8, 16, 32, None, None, None], (1, "online"): [1] * 9})
    ne2 = S.n_epsilon(df2, EPS, knobs="H", n_boot=50).set_index("estimator")
    assert ne2.loc["offline", "N_eps_iqm"] == np.inf and ne2.loc["offline", "N_eps_median"] == 16.0
    # more than half unreached: the median is +inf and the ratio on the median a lower bound
    df3 = step_table({(1, "offline"): [4, 8, None, None, None], (1, "online"): [2, 2, 2, 4, 4]})
    r = S.efficiency_ratio(df3, EPS, knobs="H", by="route", n_boot=100, aggregate="median").iloc[0]
    assert r["ratio_kind"] == "lower_bound" and r["ratio"] == 256 / 2 and r["aggregate"] == "median"
    # even count: the median averages the two middle values
    df4 = step_table({(1, "offline"): [2, 4, 8, 64], (1, "online"): [1, 1, 2, 2]})
    r = S.efficiency_ratio(df4, EPS, knobs="H", by="route", n_boot=100, aggregate="median").iloc[0]
    assert r["N_offline"] == 6.0 and r["N_online"] == 1.5 and r["ratio"] == 4.0
    with pytest.raises(ValueError, match="aggregate"):
        S.efficiency_ratio(df4, EPS, by="route", aggregate="mode")


def test_median_aggregate_resists_one_slow_seed():
    """Nine seeds cross at n = 4, one never: the mean curve is held above ε = 0.05 by that
    seed (N_ε not reached), the median of per-seed N_ε is 4."""
    df = step_table({(1, "offline"): [4] * 9 + [None], (1, "online"): [4] * 10})
    ne = S.n_epsilon(df, 0.05, knobs="H", n_boot=50).set_index("estimator")
    assert not ne.loc["offline", "reached"] and ne.loc["offline", "N_eps_median"] == 4.0


# --------------------------------------------------------------------------- spec key
def test_expect_aggregate_key_is_validated():
    base = {"experiment": {"name": "x", "generator": "finite_gap"}, "data": {"sizes": [8]},
            "estimators": [{"name": "dpo", "label": "offline"}, {"name": "rm_rl", "label": "online"}]}
    assert parse_spec({**base, "expect": {"aggregate": "median"}}).expect["aggregate"] == "median"
    with pytest.raises(SpecError, match=r"\[expect\] aggregate: must be one of mean, median, iqm, got 'mode'"):
        parse_spec({**base, "expect": {"aggregate": "mode"}})
    with pytest.raises(SpecError, match=r"\[expect\] aggregate"):
        parse_spec({**base, "expect": {"aggregate": 2}})


# --------------------------------------------------------------------------- order trends
def _diff_table(diff_of, seeds=10, noise=0.0, settings=(1, 2, 3, 4)):
    rng = np.random.default_rng(0)
    rows = []
    for h in settings:
        for seed in range(seeds):
            e = noise * rng.normal()
            for n in (8, 64):
                for est, v in (("a", 1.0 + diff_of(h) + e), ("b", 1.0)):
                    rows.append({"setting_id": f"s{h}", "H": h, "seed": seed, "n": n, "estimator": est,
                                 "metric": "suboptimality", "value": v})
    return pd.DataFrame(rows)


def test_order_trend_rests_on_the_bootstrap():
    st = ["a - b increasing in H"]
    ok = check_order(st, _diff_table(lambda h: 0.1 * h, noise=0.01), ["H"])[0]
    assert ok["verdict"] == "PASS" and "bootstrap CI" in ok["detail"]
    flat = check_order(st, _diff_table(lambda h: 0.0, noise=0.5), ["H"])[0]
    assert flat["verdict"] == "FAIL"
    down = check_order(st, _diff_table(lambda h: -0.1 * h, noise=0.01), ["H"])[0]
    assert down["verdict"] == "FAIL"
    assert check_order(["a - b decreasing in H"], _diff_table(lambda h: -0.1 * h, noise=0.01), ["H"])[0]["verdict"] \
        == "PASS"
    one = check_order(st, _diff_table(lambda h: 0.1 * h, seeds=1), ["H"])[0]
    assert one["verdict"] == "FAIL" and "not established" in one["detail"]


def test_censored_settings_listed():
    df = step_table({(1, "online"): [2] * 3, (1, "offline"): [8] * 3, (2, "online"): [None] * 3,
                     (2, "offline"): [None] * 3, (3, "online"): [2] * 3, (3, "offline"): [None] * 3})
    r = S.efficiency_ratio(df, EPS, knobs="H", by="route", n_boot=50)
    assert S.censored_settings(r, "H") == ((2, "both"), (3, "offline"))
    assert S.censored_text(S.censored_settings(r, "H"), "H") == "H=2 (both), H=3 (offline)"
