"""Sweep machinery: spec validation, the runner (resume, kill, workers), the store, reports,
and the qualitative results of the gap experiments at smoke size."""
from __future__ import annotations

import copy
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from genver.cli import main
from genver.experiments.runner import run
from genver.experiments.spec import SpecError, load_spec, parse_spec
from genver.experiments.store import ResultStore

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIMS = ROOT / "sims"

BASE = {
    "experiment": {"name": "t", "generator": "finite_gap"},
    "instance": {"P": 2, "V": 2, "H": 2, "K_R": 3},
    "grid": {"n_distractors": [0, 8]},
    "data": {"sizes": [4, 16], "seeds": 2},
    "estimators": [{"name": "dpo", "label": "offline"}, {"name": "rm_rl", "label": "online"}],
}


def with_(path, value):
    raw = copy.deepcopy(BASE)
    d = raw
    for k in path[:-1]:
        d = d.setdefault(k, {}) if not isinstance(k, int) else d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return raw


@pytest.mark.parametrize("path, value, match", [
    (("bogus",), {}, r"\[bogus\]: unknown table"),
    (("experiment", "generator"), "nope", r"generator: unknown 'nope'"),
    (("experiment", "name"), KeyError, r"\[experiment\] name: missing"),
    (("instance", "Q"), 3, r"\[instance\] Q: unknown key"),
    (("instance", "P"), "four", r"\[instance\] P: expected int"),
    (("instance", "beta"), True, r"\[instance\] beta: expected float"),
    (("grid", "n_distractors"), [], r"\[grid\] n_distractors: empty list"),
    (("grid", "n_distractors"), 5, r"\[grid\] n_distractors: expected a list"),
    (("grid", "colour"), [1], r"\[grid\] colour: unknown generator parameter"),
    (("data", "sizes"), [], r"\[data\] sizes: empty"),
    (("data", "sizes"), [16, 4], r"\[data\] sizes: must be strictly increasing"),
    (("data", "sizes"), [0, 4], r"\[data\] sizes: each must lie in"),
    (("data", "sizes"), KeyError, r"\[data\] sizes: missing"),
    (("data", "seeds"), 0, r"\[data\] seeds: must be >= 1"),
    (("data", "temperature"), -1.0, r"\[data\] temperature: must be > 0"),
    (("estimators",), [], r"\[\[estimators\]\]: give at least one"),
    (("estimators",), [{"name": "magic"}], r"\[estimators.0\] name: unknown estimator 'magic'"),
    (("estimators",), [{"name": "dpo", "l3": 1.0}], r"\[estimators.0\] l3: unknown key"),
    (("estimators",), [{"name": "dpo"}, {"name": "dpo"}], r"\[estimators.1\] label: duplicate 'dpo'"),
    (("estimators",), [{"name": "dpo", "route": "sideways"}], r"route: must be offline, online or other"),
    (("metrics",), {"names": ["accuracy"]}, r"\[metrics\] names: unknown metric 'accuracy'"),
    (("instance", "H"), 70, r"too large"),
    (("instance", "K_R"), 0, r"K_R: must be >= 1"),
])
def test_malformed_spec_names_the_key(path, value, match):
    with pytest.raises(SpecError, match=match):
        parse_spec(with_(path, value), source="t.toml")


def test_every_shipped_spec_validates():
    specs = sorted(SIMS.glob("*.toml"))
    assert len(specs) >= 4
    for p in specs:
        for smoke in (False, True):
            s = load_spec(p, smoke=smoke)
            assert s.settings() and s.expected, p.name


def test_cli_run_bad_spec_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[experiment]\nname = "x"\ngenerator = "finite_gap"\n[data]\nsizes = [4]\n[grid]\nP = []\n')
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[grid] P: empty list" in err[0]
    assert not (tmp_path / "o").exists()  # nothing written before validation passed
    assert main(["run", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "no such spec file" in capsys.readouterr().err


def _table(out) -> pd.DataFrame:
    df = ResultStore(out).load().drop(columns="wall_time")
    return df.sort_values(["setting_id", "seed", "n", "estimator", "metric"]).reset_index(drop=True)


def test_workers_one_and_two_give_identical_rows(tmp_path):
    spec = SIMS / "gap_finite.toml"
    run(spec, tmp_path / "a", smoke=True, progress=False)
    run(spec, tmp_path / "b", smoke=True, workers=2, progress=False)
    pd.testing.assert_frame_equal(_table(tmp_path / "a"), _table(tmp_path / "b"))


def test_refuses_non_empty_dir_and_foreign_spec(tmp_path):
    run(SIMS / "gap_finite.toml", tmp_path / "a", smoke=True, progress=False)
    with pytest.raises(ValueError, match="not empty; use --resume"):
        run(SIMS / "gap_finite.toml", tmp_path / "a", smoke=True, progress=False)
    with pytest.raises(ValueError, match="different spec"):
        run(SIMS / "gap_horizon.toml", tmp_path / "a", smoke=True, resume=True, progress=False)
    # resuming a finished run does nothing and keeps the table
    before = _table(tmp_path / "a")
    s = run(SIMS / "gap_finite.toml", tmp_path / "a", smoke=True, resume=True, progress=False)
    assert s["units_run"] == 0
    pd.testing.assert_frame_equal(before, _table(tmp_path / "a"))


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    """Kill the run with SIGKILL once a few units are saved: the shards on disk are complete,
    and --resume finishes the table exactly as an uninterrupted run would. The units take a few
    ms each (the run ~0.2 s), so shards are written every 0.02 s of work here
    (GENVER_FLUSH_SECONDS; default 1 s), and the kill lands between batches."""
    spec = tmp_path / "slow.toml"
    spec.write_text((SIMS / "gap_finite.toml").read_text().split("[smoke]")[0]
                    .replace("seeds = 30", "seeds = 12")
                    .replace("n_distractors = [0, 16, 256, 4096, 16384]", "n_distractors = [0, 2048]"))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "genver.cli", "run", str(spec), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, GENVER_FLUSH_SECONDS="0.02"))
    deadline = time.time() + 120
    store = ResultStore(out)
    while time.time() < deadline and len(store.done_units()) < 3 and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_saved = len(store.done_units())
    assert 3 <= n_saved < 24, "the kill should land mid-run"
    shards = store.shard_units()
    assert len(shards) == len(list(store.shards.glob("*.parquet")))  # every shard's footer parses
    for path, units in shards.items():  # every saved shard is complete: the rows of its units
        got = pd.read_parquet(path)
        assert len(got) > 0
        assert set(zip(got["setting_id"], got["seed"])) == set(units)
    run(spec, out, resume=True, progress=False)
    run(spec, tmp_path / "clean", progress=False)
    a, b = _table(out), _table(tmp_path / "clean")
    assert not a.duplicated(["setting_id", "seed", "n", "estimator", "metric"]).any()
    pd.testing.assert_frame_equal(a, b)
    assert not list(store.shards.glob(".*"))  # no temporary file left (genver.atomic: .NAME.*.part)


def test_resume_reruns_units_whose_shard_is_damaged(tmp_path):
    """A shard emptied or truncated outside genver (e.g. a machine crash) is detected on resume,
    removed with a message, and its unit is run again: the table equals an undamaged run's.
    (One unit per shard here, flush_seconds=0; damaged batch shards: tests/test_store_batches.py.)"""
    import io

    out = tmp_path / "a"
    run(SIMS / "gap_finite.toml", out, smoke=True, progress=False, flush_seconds=0)
    before = _table(out)
    store = ResultStore(out)
    shards = sorted(store.shards.glob("*.parquet"))
    shards[0].write_bytes(b"")
    shards[1].write_bytes(shards[1].read_bytes()[:-20])  # footer cut off
    msg = io.StringIO()
    s = run(SIMS / "gap_finite.toml", out, smoke=True, resume=True, progress=False, stream=msg)
    assert s["units_run"] == 2
    assert msg.getvalue().count("unreadable and is removed") == 2
    pd.testing.assert_frame_equal(before, _table(out))


def _mean(df, **sel):
    m = np.ones(len(df), bool)
    for k, v in sel.items():
        m &= (df[k] == v).to_numpy()
    return df[m]["value"].mean()


def test_gap_finite_smoke_result(tmp_path):
    run(SIMS / "gap_finite.toml", tmp_path, smoke=True, progress=False)
    df = ResultStore(tmp_path).load()
    sub = df[df.metric == "suboptimality"]
    # Theorem 2.2 at |D| = 0: both routes return the same policy in every cell
    d0 = sub[sub.n_distractors == 0].pivot_table(index=["seed", "n"], columns="estimator", values="value")
    np.testing.assert_array_equal(d0["offline"].to_numpy(), d0["online"].to_numpy())
    # with 1024 distractors the offline route is worse on average at small n
    assert _mean(sub, n_distractors=1024, estimator="offline", n=8) > 1.5 * _mean(sub, n_distractors=1024,
                                                                                   estimator="online", n=8)


def test_gap_horizon_smoke_result(tmp_path):
    run(SIMS / "gap_horizon.toml", tmp_path, smoke=True, progress=False)
    sub = ResultStore(tmp_path).load().query("metric == 'suboptimality'")
    # H = 1: the few features span every reward: the routes nearly coincide
    for n in (8, 128, 2048):
        a, b = _mean(sub, H=1, estimator="offline", n=n), _mean(sub, H=1, estimator="online", n=n)
        assert abs(a - b) <= 0.1 * max(a, b) + 1e-3
    # H = 4: the verifier is far simpler than the generator: online needs fewer samples
    assert _mean(sub, H=4, estimator="offline", n=128) > 3 * _mean(sub, H=4, estimator="online", n=128)


def test_additive_target_smoke_result(tmp_path):
    run(SIMS / "additive_target.toml", tmp_path, smoke=True, progress=False)
    sub = ResultStore(tmp_path).load().query("metric == 'suboptimality'")
    piv = sub.pivot_table(index=["H", "seed", "n"], columns="estimator", values="value")
    np.testing.assert_allclose(piv["offline"], piv["online"], rtol=1e-4, atol=1e-7)


def test_report_and_plot_commands(tmp_path, capsys):
    run(SIMS / "gap_finite.toml", tmp_path, smoke=True, progress=False)
    assert main(["plot", str(tmp_path)]) == 0
    figs = capsys.readouterr().out.split()
    assert any(f.endswith("sample_complexity.png") for f in figs)
    for f in figs:
        assert pathlib.Path(f).stat().st_size > 1000
    code = main(["report", str(tmp_path)])
    out = capsys.readouterr().out
    assert "gap_finite" in out and ("PASS" in out or "FAIL" in out)
    assert code == (1 if "FAIL" in out else 0)
    md = (tmp_path / "report.md").read_text()
    assert "## Sample-efficiency ratio" in md and "figures/ratio.png" in md
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_quickstart_end_to_end(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verdict: PASS" in text
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    ratios = {int(r[0]): float(r[4]) for r in lines}
    assert set(ratios) == {0, 64, 1024, 16384}
    assert ratios[0] == 1.0 and ratios[16384] > 1.0  # Theorem 2.2 at |D| = 0; a gap with distractors
    assert (out / "report.md").exists() and (out / "figures" / "ratio.png").exists()
    # rerunning resumes (nothing recomputed) and prints the same table
    assert main(["quickstart", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split("report:")[0] == text.split("report:")[0]


def _four_estimator_results():
    """Synthetic results: suboptimality = c / n, the same for every seed, so N_ε is known."""
    c = {"offline": 5.0, "online": 0.5, "neural_offline": 5.0, "neural_online": 2.0}
    sid = {2: "b2", 4: "a4"}  # setting ids sort against the knob
    rows = [{"experiment": "toy", "setting_id": sid[H], "H": H, "seed": seed, "n": n, "estimator": est,
             "route": est.removeprefix("neural_"), "metric": m, "value": (c[est] if m == "suboptimality" else 1.0) / n,
             "converged": True, "wall_time": 0.0}
            for H in (2, 4) for seed in range(3) for n in (16, 64, 256, 1024) for est in c
            for m in ("suboptimality", "kl_to_reference")]
    man = {"experiment": "toy", "knobs": ["H"],
           "expect": {"epsilon": 0.01, "offline": "offline", "online": "online",
                      "compare": [["neural_offline", "neural_online"]]}}
    settings = pd.DataFrame({"experiment": "toy", "setting_id": ["b2", "a4"], "H": [2, 4]})
    return man, pd.DataFrame(rows), settings


def test_ratios_side_by_side_stacks_the_main_and_compared_pairs():
    from genver.experiments.report import ratios_side_by_side

    man, df, settings = _four_estimator_results()
    both = ratios_side_by_side(man, df, settings)
    assert list(pd.unique(both["pair"])) == ["offline / online", "neural_offline / neural_online"]
    assert len(both) == 4 and set(both["ratio_kind"]) == {"exact"}
    assert both["H"].tolist() == [2, 4, 2, 4]  # each pair sorted by the knob
    got = both.set_index(["pair", "H"])["ratio"]
    assert got[("offline / online", 2)] == 16.0 and got[("neural_offline / neural_online", 4)] == 4.0
    # no compare pairs: just the main one; no main pair: None
    assert set(ratios_side_by_side({**man, "expect": {"epsilon": 0.01}}, df, settings)["pair"]) == {"offline / online"}
    assert ratios_side_by_side(man, df[df["estimator"] != "online"], settings) is None


def test_means_at_largest_n_long_and_side_by_side():
    from genver.experiments.report import means_at_largest_n

    man, df, _ = _four_estimator_results()
    long = means_at_largest_n(df, ["H"])
    assert len(long) == 8 and {"suboptimality", "kl_to_reference"} <= set(long.columns)
    wide = means_at_largest_n(df, ["H"], metric="suboptimality")
    assert list(wide.columns) == ["setting_id", "H", "offline", "online", "neural_offline", "neural_online"]
    assert wide["H"].tolist() == [2, 4]
    np.testing.assert_allclose(wide["neural_online"], 2.0 / 1024)


def test_describe_counts_identifiable_parameters_of_isomorphic_additive_classes():
    """additive_target: R (position-token rewards) and Π (position-token log-linear policies)
    are isomorphic; each has P·H·(V−1) identifiable parameters, so the predicted ratio is 1."""
    from genver.experiments.cells import make_instance
    from genver.experiments.generators import describe
    from genver.experiments.registry import GENERATORS

    for P, V, H in [(2, 3, 2), (4, 3, 4), (1, 4, 3)]:
        p = {k: d for k, (_, d) in GENERATORS["additive_target"].params.items() if d is not None}
        p.update(P=P, V=V, H=H)
        d = describe(make_instance("additive_target", p, 0, 0))
        assert d["n_params_R"] == d["n_params_Pi"] == P * H * (V - 1)
        assert d["predicted_ratio"] == 1.0
