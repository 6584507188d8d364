"""Interfaces for scripts and notebooks (issue 18, items 4 and 5): ``genver run --json`` events,
the ``genver`` logger's events and ``-v``, the degenerate-set-up warning, and ``genver.load``.

Expected values come from the spec (units = settings × seeds, cells = units × sizes ×
estimators), from the report's own loader (:func:`genver.experiments.tables.load_results`, a
loop of ``read_parquet`` over the shards) and from pandas operations written here."""
from __future__ import annotations

import json
import logging
import pathlib
import warnings

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import genver
from genver.cli import main
from genver.experiments import executors
from genver.experiments.catalog import shipped_specs
from genver.experiments.diagnostics import DegenerateSetupWarning, GenverWarning, degenerate_setup
from genver.experiments.runner import run
from genver.experiments.spec import load_spec, setting_id
from genver.experiments.store import ResultStore
from genver.experiments.tables import load_results
from genver.experiments.tidy import IncompleteResultsWarning

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sims" / "gap_finite.toml"
ONE_SEED = '''
[experiment]
name = "one_seed"
generator = "finite_gap"

[instance]
P = 2
V = 2
H = 2
K_R = 3

[grid]
n_distractors = [0]

[data]
sizes = [8, 32]
seeds = {seeds}

[[estimators]]
name = "dpo"
label = "offline"

[[estimators]]
name = "rm_rl"
label = "online"

[metrics]
names = ["suboptimality"]
'''


@pytest.fixture(autouse=True)
def _genver_logger_restored():
    """``genver.cli.main`` configures the ``genver`` logger; put it back after each test."""
    logger = logging.getLogger("genver")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def _counts(path, smoke=True):
    spec = load_spec(path, smoke=smoke)
    units = len(spec.settings()) * spec.seeds
    return units, units * len(spec.sizes) * len(spec.estimators)


@pytest.fixture(scope="module")
def per_unit(tmp_path_factory) -> pathlib.Path:
    """gap_finite --smoke with one shard per unit (flush_seconds=0)."""
    out = tmp_path_factory.mktemp("per_unit") / "a"
    run(SMOKE, out, smoke=True, progress=False, flush_seconds=0)
    return out


def _events(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines, "no events"
    return [json.loads(line) for line in lines]  # every line is one JSON object


# -- genver run --json ---------------------------------------------------------------------------
def test_run_json_prints_start_progress_done_events_and_nothing_else(tmp_path, capsys):
    units, cells = _counts(SMOKE)
    out = tmp_path / "r"
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out), "--json"]) == 0
    cap = capsys.readouterr()
    ev = _events(cap.out)
    assert [e["event"] for e in ev] == ["start"] + ["progress"] * units + ["done"]
    start, done = ev[0], ev[-1]
    assert start == {"event": "start", "spec": "gap_finite", "out": str(out), "executor": "local",
                     "units_total": units, "units_todo": units, "cells_total": cells, "cells_done": 0}
    progress = ev[1:-1]
    assert [e["units_done"] for e in progress] == list(range(1, units + 1))
    assert [e["done"] for e in progress] == [k * cells // units for k in range(1, units + 1)]
    assert all(e["total"] == cells and e["units_total"] == units for e in progress)
    elapsed = [e["elapsed_s"] for e in progress]
    assert elapsed == sorted(elapsed) and elapsed[-1] <= done["wall_s"]
    assert done["out"] == str(out) and done["units_run"] == units and done["cells"] == cells
    assert "cells/s" not in cap.err and "ETA" not in cap.err  # no progress bar: the events carry it
    # a resume with nothing to do: start (nothing to do) and done, no progress
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out), "--json", "--resume"]) == 0
    ev = _events(capsys.readouterr().out)
    assert [e["event"] for e in ev] == ["start", "done"]
    assert ev[0]["units_todo"] == 0 and ev[0]["cells_done"] == cells and ev[1]["units_run"] == 0


def test_run_json_reports_an_error_as_the_last_event_with_the_exit_code(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "something").write_text("x")
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out), "--json"]) == 2
    cap = capsys.readouterr()
    (ev,) = _events(cap.out)
    assert ev["event"] == "error" and ev["exit"] == 2 and f"{out}: directory is not empty" in ev["message"]
    assert cap.err.startswith("genver: error: ") and ev["message"] in cap.err  # the human line, on stderr
    assert main(["run", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o"), "--json"]) == 2
    (ev,) = _events(capsys.readouterr().out)
    assert ev["event"] == "error" and "missing.toml" in ev["message"]


def test_run_without_json_prints_the_summary_line_and_no_log_records(tmp_path, capsys):
    units, cells = _counts(SMOKE)
    out = tmp_path / "plain"
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith(f"{cells} cells ({units} of {units} units run now) in ") and cap.out.endswith(
        f" s -> {out}\n") and cap.out.count("\n") == 1
    assert "genver: INFO" not in cap.err and "genver: DEBUG" not in cap.err and "warning" not in cap.err
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out), "--resume"]) == 0
    cap = capsys.readouterr()
    assert cap.out == f"nothing to do: all {units} units ({cells} cells) are already in {out}\n" and cap.err == ""


def test_verbose_sends_the_library_events_to_stderr(tmp_path, capsys):
    units, _ = _counts(SMOKE)
    out = tmp_path / "v"
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out), "--executor", "threads", "--workers", "2"]) == 0
    capsys.readouterr()
    assert main(["-v", "run", str(SMOKE), "--smoke", "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "genver: INFO: genver.experiments.executors: executor chosen: local, from --executor local --workers 1" \
        in err
    assert f"genver: INFO: genver.experiments.runner: {out}: resuming: {units} of {units} units already done " \
           f"(skipped), 0 to run" in err
    assert not any("DEBUG" in line for line in err)  # -v is INFO; -vv adds the per-unit records
    out2 = tmp_path / "vv"
    assert main(["-vv", "run", str(SMOKE), "--smoke", "--out", str(out2)]) == 0
    written = [line for line in capsys.readouterr().err.splitlines() if "written to shard" in line]
    spec = load_spec(SMOKE, smoke=True)
    want = {(setting_id(p), s) for p in spec.settings() for s in range(spec.seeds)}
    assert len(written) == units and {(w.split("(setting ")[1].split(",")[0],
                                       int(w.split(", seed ")[1].split(")")[0])) for w in written} == want


# -- library log events (caplog) -------------------------------------------------------------------
def test_resume_logs_the_temporary_file_and_the_damaged_shard_it_removes(per_unit, tmp_path, caplog):
    import shutil
    out = tmp_path / "copy"
    shutil.copytree(per_unit, out)
    shards = sorted((out / "shards").glob("*.parquet"))
    (out / "shards" / ".batch-x.parquet.part").write_bytes(b"half")
    shards[0].write_bytes(shards[0].read_bytes()[:100])  # a damaged shard: its footer does not parse
    caplog.set_level(logging.INFO, logger="genver")
    run(SMOKE, out, smoke=True, progress=False, resume=True)
    msgs = [(r.name, r.getMessage()) for r in caplog.records]
    assert ("genver.experiments.store", f"{out}: removed the temporary file .batch-x.parquet.part of an "
                                        f"interrupted write") in msgs
    assert any(n == "genver.experiments.store" and f"removed the incomplete or damaged shard {shards[0].name}" in m
               for n, m in msgs)
    units, _ = _counts(SMOKE)
    assert ("genver.experiments.runner", f"{out}: resuming: {units - 1} of {units} units already done (skipped), "
                                         f"1 to run") in msgs


def test_a_refused_resume_logs_the_differing_key(per_unit, caplog):
    caplog.set_level(logging.INFO, logger="genver")
    with pytest.raises(ValueError, match="--smoke: was on, now off"):
        run(SMOKE, per_unit, smoke=False, progress=False, resume=True)
    (rec,) = [r for r in caplog.records if "resume refused" in r.getMessage()]
    assert rec.name == "genver.experiments.runner" and "--smoke: was on, now off" in rec.getMessage()


def test_the_executor_choice_is_logged_with_its_workers(caplog):
    caplog.set_level(logging.INFO, logger="genver")
    with executors.make_executor("threads", workers=3) as ex:
        assert ex.describe() == "threads (3)"
    with executors.make_executor("local", workers=2):
        pass
    msgs = [r.getMessage() for r in caplog.records if r.name == "genver.experiments.executors"]
    assert msgs == ["executor chosen: threads (3), from --executor threads --workers 3",
                    "executor chosen: local (2 processes), from --executor local --workers 2"]


def test_threads_beyond_the_seeds_are_logged(tmp_path, caplog):
    spec_path = tmp_path / "two.toml"
    spec_path.write_text(ONE_SEED.format(seeds=2))
    caplog.set_level(logging.INFO, logger="genver")
    run(spec_path, tmp_path / "o", progress=False, executor="threads", workers=5)
    assert any(r.getMessage().startswith("threads: 5 threads asked for, 2 used") for r in caplog.records)


def test_library_events_are_silent_without_a_handler(per_unit, tmp_path, capsys):
    """The NullHandler: without logging configured nothing of genver's INFO reaches stderr."""
    import shutil
    out = tmp_path / "quiet"
    shutil.copytree(per_unit, out)
    (out / "shards" / ".t.part").write_bytes(b"")
    run(SMOKE, out, smoke=True, progress=False, resume=True)
    assert capsys.readouterr().err == ""


# -- degenerate set-ups -----------------------------------------------------------------------------
def test_one_seed_is_run_with_a_degenerate_setup_warning(tmp_path):
    spec_path = tmp_path / "one.toml"
    spec_path.write_text(ONE_SEED.format(seeds=1))
    with pytest.warns(DegenerateSetupWarning, match=r"seeds = 1: .*single point") as rec:
        summary = run(spec_path, tmp_path / "o", progress=False)
    assert summary["units"] == 1 and issubclass(rec[0].category, GenverWarning)
    assert rec[0].filename == __file__  # attributed to the caller of run()
    # two seeds: no warning (the check looks at the seed count, not at anything else)
    spec_path.write_text(ONE_SEED.format(seeds=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(spec_path, tmp_path / "o2", progress=False)
    assert not [w for w in caught if issubclass(w.category, GenverWarning)]


def test_the_cli_prints_a_genver_warning_as_one_line(tmp_path, capsys):
    spec_path = tmp_path / "one.toml"
    spec_path.write_text(ONE_SEED.format(seeds=1))
    assert main(["run", str(spec_path), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if line.startswith("genver: warning: ")]
    assert len(warned) == 1 and f"{spec_path}: [data] seeds = 1" in warned[0]


@pytest.mark.parametrize("smoke", [False, True])
def test_no_shipped_spec_is_degenerate(smoke):
    """So `genver run` of a shipped spec prints what it printed before the warnings existed."""
    for name, path in shipped_specs().items():
        assert degenerate_setup(load_spec(path, smoke=smoke)) == [], name


# -- genver.load -------------------------------------------------------------------------------------
def test_load_is_the_reports_table_in_one_call(per_unit):
    man, want, settings = load_results(per_unit)
    assert len(list((per_unit / "shards").glob("*.parquet"))) == _counts(SMOKE)[0] > 1
    got = genver.load(per_unit)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert set(man["knobs"]) <= set(got.columns) and got.attrs["genver_completeness"]["complete"]
    table = genver.load(per_unit, as_="arrow")
    assert isinstance(table, pa.Table)
    pd.testing.assert_frame_equal(table.to_pandas(), want, check_exact=True)
    assert json.loads(table.schema.metadata[b"genver_completeness"]) == {
        "done": 8, "total": 8, "unreadable": [], "complete": True}
    assert b"genver_units" not in table.schema.metadata  # not one shard's unit list
    with_desc = genver.load(per_unit, descriptors=True)
    merged = want.merge(settings.drop(columns=[c for c in settings.columns if c in want.columns and
                                               c != "setting_id"]), on="setting_id", how="left")
    pd.testing.assert_frame_equal(with_desc, merged, check_exact=True)
    assert "predicted_ratio" in with_desc.columns


def test_load_refuses_what_is_not_a_results_directory(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path / 'nowhere'}: not a directory"):
        genver.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'}: no manifest.json — not a genver results"):
        genver.load(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file: not a directory"):
        genver.load(tmp_path / "file")
    with pytest.raises(ValueError, match="as_ must be 'pandas' or 'arrow', got 'polars'"):
        genver.load(tmp_path, as_="polars")


def test_load_of_an_unfinished_run_loads_what_is_complete_and_says_so(per_unit, tmp_path):
    import shutil
    out = tmp_path / "part"
    shutil.copytree(per_unit, out)
    shards = sorted((out / "shards").glob("*.parquet"))
    gone = pq.read_table(shards[-1]).to_pandas()
    shards[-1].unlink()
    shards[0].write_bytes(b"not parquet")  # unreadable: skipped, and counted
    with pytest.warns(IncompleteResultsWarning, match=r"loaded the 6 of 8 units .*2 missing, 1 unreadable shard"):
        got = genver.load(out)
    assert got.attrs["genver_completeness"] == {"done": 6, "total": 8, "unreadable": [shards[0].name],
                                                "complete": False}
    _, full, _ = load_results(per_unit)
    damaged = pq.read_table(per_unit / "shards" / shards[0].name).to_pandas()
    lost = set(zip(gone["setting_id"], gone["seed"])) | set(zip(damaged["setting_id"], damaged["seed"]))
    keep = [k not in lost for k in zip(full["setting_id"], full["seed"])]
    pd.testing.assert_frame_equal(got, full[keep].reset_index(drop=True), check_exact=True)
    pd.testing.assert_frame_equal(got, ResultStore(out).load(), check_exact=True)


def test_load_unifies_shards_with_different_columns(tmp_path):
    """A column only some shards have (e.g. an estimator's extra output) is null elsewhere, as
    ``pd.concat`` of the shards gives; a dataset on the first shard's schema would drop it."""
    out = tmp_path / "mixed"
    run(SMOKE, out, smoke=True, progress=False, flush_seconds=3600)  # one shard
    store = ResultStore(out)
    (path,) = list(store.shard_units())
    df = pd.read_parquet(path)
    first_unit = df[(df["setting_id"] == df["setting_id"].iloc[0]) & (df["seed"] == 0)]
    rest = df.drop(first_unit.index)
    units = sorted(set(zip(rest["setting_id"], rest["seed"])))
    path.unlink()
    store = ResultStore(out)
    store.write_batch([(first_unit["setting_id"].iloc[0], 0, first_unit)])  # the first shard by name
    rest = rest.assign(extra=1.5)  # only the second shard has the column
    store.write_batch([(sid, int(s), rest[(rest["setting_id"] == sid) & (rest["seed"] == s)]) for sid, s in units])
    assert sorted(p.name for p in store.shard_units())[0].startswith(f"batch-{first_unit['setting_id'].iloc[0]}"
                                                                      f"__seed00000-1-")
    got = genver.load(out)
    want = ResultStore(out).load()
    assert "extra" in want.columns and want["extra"].notna().sum() == len(rest)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
