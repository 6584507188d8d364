"""The experiment specs under sims/: every spec validates and runs at smoke size, and the
qualitative result that H1 and each literature case state in ``[experiment] expected`` is
measured at smoke size with the specs' fixed seeds (numbers asserted, not just "it runs").

Smoke runs go in-process through the runner API into a temporary directory, once per spec
per session (module-scoped cache)."""
from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest

from genver.estimators import dpo, rl_step
from genver.estimators.gradient import dpo_gd
from genver.experiments.cells import make_instance, population_counts, run_unit
from genver.experiments.expect import check_order, parse_order
from genver.experiments.registry import GENERATORS
from genver.experiments.report import load_results, make_report
from genver.experiments.runner import run
from genver.experiments.spec import SpecError, load_spec, parse_spec, setting_id
from genver.preferences import sample_preferences

SIMS = pathlib.Path(__file__).resolve().parent.parent / "sims"
SPECS = sorted(SIMS.glob("*.toml"))
NEW = {"h1_online_samples", "h2_regularisation", "h3_optimisation", "h4_data", "h5_generalisation",
       "lit_li2023", "lit_tajwar2024", "lit_shi2025", "lit_shi2025_sparse"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    cache = {}

    def get(name: str) -> pathlib.Path:
        if name not in cache:
            out = tmp_path_factory.mktemp(name) / "results"
            run(SIMS / f"{name}.toml", out, smoke=True, progress=False)
            cache[name] = out
        return cache[name]

    return get


def _means(root, metric="suboptimality", by=("n",)):
    """Mean over seeds: rows = by (+ knobs given), columns = estimator labels."""
    _, df, _ = load_results(root)
    d = df[df["metric"] == metric]
    return d.groupby([*by, "estimator"])["value"].mean().unstack("estimator")


def _seed_table(root, metric, **where):
    _, df, _ = load_results(root)
    d = df[df["metric"] == metric]
    for k, v in where.items():
        d = d[d[k] == v]
    return d.pivot_table(index=["seed", "n"], columns="estimator", values="value")


# -- every spec ------------------------------------------------------------------------------
def test_all_new_specs_present():
    assert NEW <= {p.stem for p in SPECS}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_validates_and_runs_at_smoke_size(path, smoke):
    full, small = load_spec(path), load_spec(path, smoke=True)
    assert full.expected and "\n" not in full.expected, "each spec states its one-line expected result"
    assert small.seeds <= full.seeds and len(small.sizes) <= len(full.sizes)
    man, df, settings = load_results(smoke(path.stem))
    assert man["experiment"] == full.name and man["smoke"] is True
    assert np.isfinite(df["value"]).all()
    # every (setting, seed, n, estimator) cell is present
    cells = df.groupby(["setting_id", "seed", "n", "estimator"]).ngroups
    assert cells == len(small.settings()) * small.seeds * len(small.sizes) * len(small.estimators)
    # every order statement parses and names known labels/metrics (already checked at load)
    for text in full.expect.get("order", []):
        parse_order(text)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_smoke_verdicts_do_not_fail(path, smoke):
    """Each spec's smoke version states expectations that hold at smoke size (the full spec
    states the strong ones)."""
    _, table = make_report(smoke(path.stem))
    assert "FAIL" not in set(table["verdict"]), table.to_string()


@pytest.mark.parametrize("name", ["h5_generalisation", "lit_tajwar2024", "h2_regularisation"])
def test_report_writes_figures_and_verdicts(name, smoke):
    path, table = make_report(smoke(name))
    text = path.read_text()
    assert "**Verdict:**" in text and "Mean of each metric" in text
    assert set(table["verdict"]) <= {"PASS", "FAIL", "NOT CHECKED"} and len(table) >= 1
    figs = {p.stem for p in (path.parent / "figures").glob("*.png")}
    if name == "h5_generalisation":
        assert {"best_of_n", "curves_bt_loglik"} <= figs
    if name == "h2_regularisation":
        assert "frontier" in figs


# -- H1 --------------------------------------------------------------------------------------
def test_h1_online_dpo_approaches_rm_rl_and_never_beats_it(smoke):
    root = smoke("h1_online_samples")
    m = _means(root)  # rows n, columns labels
    gap = {K: m[f"online_dpo_K{K}"] - m["online"] for K in (2, 5, 25, 100)}
    # the gap to exact RM+RL shrinks as K grows, at every n
    assert (gap[2] > gap[5]).all() and (gap[5] > gap[25]).all()
    assert (gap[2] > 0.3).all()
    # K = 100 is within 2% of K = 2's gap of exact RM+RL, and not better than it on average
    assert (gap[100].abs() < 0.02 * gap[2]).all()
    seeds = _seed_table(root, "suboptimality")
    assert (seeds["online_dpo_K100"] - seeds["online"]).groupby("n").mean().min() > -1e-3
    # exact RM+RL beats offline DPO on the same pairs
    assert (m["offline"] - m["online"] > 0.1).all()
    _, df, _ = load_results(root)
    order = load_spec(SIMS / "h1_online_samples.toml").expect["order"]
    verdicts = {r["statement"]: r["verdict"] for r in check_order(order, df, [])}
    assert set(verdicts.values()) == {"PASS"}, verdicts


# -- literature ------------------------------------------------------------------------------
def test_li2023_rm_plus_policy_optimisation_beats_dpo_more_with_unlabelled_states(smoke):
    root = smoke("lit_li2023")
    m = _means(root, by=("policy_features", "n"))
    sw, ma = m.loc["swapped"], m.loc["matched"]
    # misspecified policy features: RM + PO on all prompts beats DPO on average over n and at n = 20
    # (the paper's size)
    assert (sw["offline"] - sw["online"]).mean() > 0.03
    assert sw.loc[20, "offline"] > sw.loc[20, "online"]
    # optimising on all prompts beats optimising on the labelled prompts only while few prompts are labelled
    assert (sw.loc[[10, 20], "rmb_po"] - sw.loc[[10, 20], "online"]).mean() > 0.03
    # matched features: DPO and RM + PO on all prompts coincide (R = R(Π))
    assert np.allclose(ma["offline"], ma["online"], atol=1e-4)


def test_tajwar2024_on_policy_and_negative_gradient_move_to_the_far_peak(smoke):
    root = smoke("lit_tajwar2024")
    m = _means(root, metric="expected_reward", by=("peak", "n"))
    far, near = m.loc[80], m.loc[20]
    assert (far["online"] - far["offline"] > 0.8).all()          # on-policy RM + RL vs offline DPO
    assert (far["online_dpo"] - far["sft"] > 1.0).all()          # on-policy online DPO vs offline SFT
    assert (far["offline"] - far["sft"] > 0.5).all()             # negative gradient vs none
    assert (far["online_pg20"] - far["offline_gd20"] > 0.3).all()  # same 20-step budget
    for a, b in [("online", "offline"), ("offline", "sft"), ("online_pg20", "offline_gd20")]:
        assert (far[a] - far[b]).mean() > (near[a] - near[b]).mean() + 0.5, (a, b)  # the advantage shrinks


def test_shi2025_dichotomy_under_exact_optimisation(smoke):
    root = smoke("lit_shi2025")
    t = {c: _seed_table(root, "suboptimality", case=c) for c in ("none", "policy", "reward", "both")}
    tol = 1e-7
    # no misspecification: both exact and optimal
    assert np.allclose(t["none"]["offline"], t["none"]["online"], atol=tol)
    assert t["none"][["offline", "online"]].to_numpy().max() < 1e-7
    # policy misspecified: RLHF is the best policy in Π, never worse than DPO, better on average
    p = t["policy"]
    assert (p["online"] <= p["offline"] + tol).all() and (p["offline"] - p["online"]).mean() > 1e-3
    assert np.allclose(p["online"], p["online_dpo_pilaf"], atol=1e-6)
    # reward misspecified: DPO recovers π*, RLHF does not
    r = t["reward"]
    assert r["offline"].max() < 1e-7 and (r["online"] - r["offline"]).mean() > 0.05
    # both misspecified, isomorphic classes: RLHF = DPO, online DPO beats both
    b = t["both"]
    assert np.allclose(b["offline"], b["online"], atol=1e-6)
    assert (b["online_dpo_pilaf"] <= b["online"] + tol).all() and (b["online"] - b["online_dpo_pilaf"]).mean() > 1e-3
    assert (b["online"] - b["online_dpo_sampled"]).mean() > 0


def test_shi2025_sparse_reward_rlhf_needs_far_fewer_samples(smoke):
    from genver import stats

    root = smoke("lit_shi2025_sparse")
    man, df, settings = load_results(root)
    m = _means(root, by=("d", "n"))
    assert ((m["offline"] - m["online"]) > 0.005).all()
    gap = (m["offline"] - m["online"]).groupby("d").mean()
    assert gap.loc[48] > gap.loc[4]
    r = stats.efficiency_ratio(df, 0.05, knobs=["d"], n_boot=200, random_state=0).set_index("d")
    assert (r["ratio"] >= 8).all(), r[["N_offline", "N_online", "ratio", "ratio_kind"]]


# -- machinery -------------------------------------------------------------------------------
def test_optional_generator_parameters_do_not_change_existing_setting_ids():
    spec = load_spec(SIMS / "gap_finite.toml")
    for p in spec.settings():
        assert "data_prompts" not in p
    raw = {"experiment": {"name": "x", "generator": "linear_gap"}, "instance": {"P": 4, "data_prompts": 2},
           "data": {"sizes": [8]}, "estimators": [{"name": "dpo"}]}
    s = parse_spec(raw)
    p = s.settings()[0]
    assert p["data_prompts"] == 2 and setting_id(p) != setting_id({**p, "data_prompts": 3})


def test_data_prompts_restrict_the_pairs_not_the_evaluation():
    raw = {"experiment": {"name": "x", "generator": "linear_gap"},
           "instance": {"P": 4, "H": 2, "data_prompts": 1},
           "data": {"sizes": [64], "seeds": 1}, "estimators": [{"name": "dpo", "label": "offline"}],
           "metrics": {"names": ["kl_to_reference"]}}
    spec = parse_spec(raw)
    p = spec.settings()[0]
    inst = make_instance(spec.generator, p, 0, 0)
    assert np.allclose(inst.data_weights, [1, 0, 0, 0]) and inst.prompt_weights is None
    df = run_unit(spec, p, setting_id(p), 0)
    # DPO moved only on prompt 0 (the pairs' prompt), so the KL averaged over all 4 prompts is a quarter of it
    res = dpo(sample_preferences(inst.reward_true, inst.sampler, 64, np.random.default_rng(0),
                                 prompt_weights=inst.data_weights).counts(), inst.policy_class, inst.ref, inst.beta)
    assert np.allclose(res.policy.logp[1:], inst.ref.logp[1:], atol=1e-6)
    assert df["value"].iloc[0] > 0


def test_population_counts_are_the_expected_counts():
    p = {k: d for k, (_, d) in GENERATORS["dichotomy"].params.items() if d is not None}
    inst = make_instance("dichotomy", p, 0, 0)
    c = population_counts(inst.reward_true, inst.sampler, 1000.0)
    assert abs(c.count.sum() - 1000.0) < 1e-8
    s = sample_preferences(inst.reward_true, inst.sampler, 400_000, np.random.default_rng(1)).counts()
    emp = np.zeros((inst.space.T, inst.space.T))
    emp[s.y_pos, s.y_neg] = s.count / s.count.sum() * 1000.0
    exp = np.zeros_like(emp)
    exp[c.y_pos, c.y_neg] = c.count
    assert np.abs(emp - exp).max() < 1.5


def test_dpo_gd_reaches_exact_dpo_and_oracle_is_best_in_class():
    p = {k: d for k, (_, d) in GENERATORS["linear_gap"].params.items() if d is not None}
    inst = make_instance("linear_gap", {**p, "H": 3}, 0, 0)
    c = sample_preferences(inst.reward_true, inst.sampler, 128, np.random.default_rng(0)).counts()
    ex = dpo(c, inst.policy_class, inst.ref, inst.beta, l2=0.01)
    gd = dpo_gd(c, inst.policy_class, inst.ref, inst.beta, steps=5000, lr=10.0, l2=0.01)
    assert np.abs(gd.policy.logp - ex.policy.logp).max() < 1e-5
    short = dpo_gd(c, inst.policy_class, inst.ref, inst.beta, steps=3, lr=10.0, l2=0.01)
    assert np.abs(short.policy.logp - ex.policy.logp).max() > 0.1
    # the tabular class contains π*: the oracle (PILAF fixed point) is π* itself
    from genver import metrics as M
    assert M.suboptimality(rl_step(inst.reward_true, inst.policy_class, inst.ref, inst.beta).policy,
                           inst.reward_true, inst.ref, inst.beta) < 1e-12


def test_order_statement_parsing_and_spec_errors():
    st = parse_order("bt_loglik: global > local >= dpo where case = both, peak = 80 at n = max")
    assert st.metric == "bt_loglik" and st.pairs == [("global", "gt", "local"), ("local", "ge", "dpo")]
    assert st.where == {"case": "both", "peak": "80"} and st.n_filter == ("eq", "max")
    st = parse_order("offline - online decreasing in data_prompts for n >= 64")
    assert st.trend_knob == "data_prompts" and st.n_filter == ("ge", 64)
    assert parse_order("a = b").pairs == [("a", "eq", "b")]
    with pytest.raises(ValueError):
        parse_order("offline online")
    base = {"experiment": {"name": "x", "generator": "finite_gap"}, "data": {"sizes": [8]},
            "estimators": [{"name": "dpo", "label": "offline"}, {"name": "rm_rl", "label": "online"}]}
    for order, msg in [(["offline > onlin"], "unknown estimator label"),
                       (["bt_loglik: offline > online"], "not in [metrics]"),
                       (["offline > online where K_R = 2"], "not a swept knob"),
                       (["frontier: offline < online"], "needs beta")]:
        with pytest.raises(SpecError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            parse_spec({**base, "expect": {"order": order}})
    with pytest.raises(SpecError, match="fits a reward only"):
        parse_spec({**base, "estimators": [*base["estimators"], {"name": "reward_mle", "label": "rm"}],
                    "expect": {"order": ["rm > offline"]}})
    with pytest.raises(SpecError, match="one of"):
        parse_spec({**base, "estimators": [{"name": "online_dpo", "labels": "best"}]})
    with pytest.raises(SpecError, match="case must be one of"):
        parse_spec({"experiment": {"name": "x", "generator": "dichotomy"}, "grid": {"case": ["neither"]},
                    "data": {"sizes": [8]}, "estimators": [{"name": "dpo"}]})


def test_order_verdicts_on_a_synthetic_table():
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(10):
        for n in (8, 64):
            base = rng.normal(0, 0.01)
            for est, v in (("a", 1.0 + base), ("b", 0.5 + base), ("c", 0.5 + base + 1e-9)):
                rows.append({"setting_id": "s", "seed": seed, "n": n, "estimator": est, "metric": "suboptimality",
                             "value": v})
    df = pd.DataFrame(rows)
    statements = ["a > b", "b = c", "b > a", "b >= a", "a > b >= c"]
    got = {r["statement"]: r["verdict"] for r in check_order(statements, df, [])}
    assert got == {"a > b": "PASS", "b = c": "PASS", "b > a": "FAIL", "b >= a": "FAIL", "a > b >= c": "PASS"}


def test_cells_do_not_depend_on_the_worker_count(tmp_path, smoke):
    """The sampled estimators (online DPO) draw from per-cell seed sequences: a 2-worker run
    gives the same numbers as the in-process run."""
    out = tmp_path / "w2"
    run(SIMS / "h1_online_samples.toml", out, smoke=True, progress=False, workers=2)
    _, a, _ = load_results(smoke("h1_online_samples"))
    _, b, _ = load_results(out)
    cols = ["setting_id", "seed", "n", "estimator", "metric", "value"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))
