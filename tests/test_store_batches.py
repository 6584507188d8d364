"""Batched shards: the runner buffers finished units and writes several to one shard (every
``flush_seconds`` of work, at the end, on Ctrl-C and on errors). The table is the one a shard
per unit gives, the unit list lives in the shard's footer, and damaged shards rerun."""
from __future__ import annotations

import json
import pathlib
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import StopAfter

from genver.cli import main
from genver.experiments import executors
from genver.experiments.runner import FLUSH_SECONDS, run
from genver.experiments.spec import load_spec, setting_id
from genver.experiments.store import UNITS_KEY, ResultStore

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sims" / "gap_finite.toml"
KEYS = ["setting_id", "seed", "n", "estimator", "metric"]
NEVER = 3600.0  # a flush interval no test run reaches: only the end, Ctrl-C or an error writes


def _all_units() -> set:
    spec = load_spec(SMOKE, smoke=True)
    return {(setting_id(p), s) for p in spec.settings() for s in range(spec.seeds)}


def _shards(out) -> list:
    return sorted((pathlib.Path(out) / "shards").glob("*.parquet"))


@pytest.fixture(scope="module")
def per_unit(tmp_path_factory) -> pathlib.Path:
    """gap_finite --smoke with a shard per unit (flush_seconds=0)."""
    out = tmp_path_factory.mktemp("per_unit") / "a"
    run(SMOKE, out, smoke=True, progress=False, flush_seconds=0)
    return out


def _no_time(out) -> pd.DataFrame:
    return ResultStore(out).load().drop(columns="wall_time")


def _copy_run(src, dst) -> None:
    """A results directory with ``src``'s manifest and settings and no shards yet."""
    dst = pathlib.Path(dst)
    dst.mkdir(parents=True)
    for name in ("manifest.json", "settings.parquet"):
        shutil.copy(pathlib.Path(src) / name, dst / name)
    (dst / "shards").mkdir()


def _unit_tables(out) -> list:
    """``[(sid, seed, table)]`` of every unit of a results directory written with one unit per shard."""
    rows = []
    for path, units in ResultStore(out).shard_units().items():
        assert len(units) == 1
        rows.append((*units[0], pd.read_parquet(path)))
    return rows


def test_default_flushing_writes_fewer_shards_and_the_same_table(tmp_path, per_unit):
    assert FLUSH_SECONDS == 1.0
    units = _all_units()
    assert len(_shards(per_unit)) == len(units) == 8
    assert ResultStore(per_unit).done_units() == units
    out = tmp_path / "batched"
    run(SMOKE, out, smoke=True, progress=False)
    assert 1 <= len(_shards(out)) < len(units)
    assert ResultStore(out).done_units() == units  # from the batch footers
    for p in _shards(out):
        assert p.name.startswith("batch-")
        listed = json.loads(pq.read_metadata(p).metadata[UNITS_KEY])
        got = pd.read_parquet(p)
        assert [tuple(u) for u in listed] == sorted(set(zip(got["setting_id"], got["seed"])))
    # same rows, order and dtypes (wall_time is measured anew in every run)
    pd.testing.assert_frame_equal(_no_time(out), _no_time(per_unit))


def test_load_is_the_same_frame_whatever_the_batching(tmp_path, per_unit):
    """The same unit tables written one per shard, four per shard and all in one shard load as
    the same frame, wall_time included."""
    tables = _unit_tables(per_unit)
    want = ResultStore(per_unit).load()
    for size in (4, 8, 3):
        out = tmp_path / f"by{size}"
        _copy_run(per_unit, out)
        store = ResultStore(out)
        for i in range(0, len(tables), size):
            store.write_batch(tables[i:i + size][::-1])  # any order in: units sorted in the shard
        assert len(_shards(out)) == -(-len(tables) // size)
        assert ResultStore(out).done_units() == _all_units()
        pd.testing.assert_frame_equal(ResultStore(out).load(), want)


def test_ctrl_c_writes_the_finished_units_before_it_propagates(tmp_path, per_unit):
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt, match=r"3/8 units saved .* rerun with --resume"):
        run(SMOKE, out, smoke=True, stream=StopAfter(3), flush_seconds=NEVER)
    store = ResultStore(out)
    assert len(store.done_units()) == 3 and len(_shards(out)) == 1  # written by the interrupt alone
    s = run(SMOKE, out, smoke=True, resume=True, progress=False, flush_seconds=NEVER)
    assert s["units_run"] == 5 and len(_shards(out)) == 2
    pd.testing.assert_frame_equal(_no_time(out), _no_time(per_unit))


def test_a_unit_error_writes_the_finished_units_first(tmp_path, per_unit, monkeypatch):
    real, calls = executors.unit_columns, []

    def fails_fourth(spec, params, sid, seed, **kw):
        calls.append((sid, seed))
        if len(calls) == 4:
            raise RuntimeError("unit exploded")
        return real(spec, params, sid, seed, **kw)

    monkeypatch.setattr(executors, "unit_columns", fails_fourth)
    out = tmp_path / "failed"
    with pytest.raises(RuntimeError, match="unit exploded"):
        run(SMOKE, out, smoke=True, progress=False, flush_seconds=NEVER)
    assert ResultStore(out).done_units() == set(calls[:3])
    monkeypatch.setattr(executors, "unit_columns", real)
    s = run(SMOKE, out, smoke=True, resume=True, progress=False)
    assert s["units_run"] == 5
    pd.testing.assert_frame_equal(_no_time(out), _no_time(per_unit))


def test_a_unit_returned_twice_is_written_once(tmp_path, per_unit, monkeypatch):
    real = executors.InProcessExecutor.map

    def twice(self, spec, units, cache=None):
        for r in real(self, spec, units, cache):
            yield r
            yield r

    monkeypatch.setattr(executors.InProcessExecutor, "map", twice)
    out = tmp_path / "twice"
    run(SMOKE, out, smoke=True, progress=False, flush_seconds=NEVER)
    assert len(_shards(out)) == 1
    assert not ResultStore(out).load().duplicated(KEYS).any()
    pd.testing.assert_frame_equal(_no_time(out), _no_time(per_unit))


def test_damaged_or_renamed_batch_shards_are_removed_and_their_units_rerun(tmp_path, per_unit):
    import io

    tables = _unit_tables(per_unit)
    out = tmp_path / "damaged"
    _copy_run(per_unit, out)
    store = ResultStore(out)
    first = store.write_batch(tables[:3])
    second = store.write_batch(tables[3:])
    first.write_bytes(first.read_bytes()[:-20])  # footer cut off
    assert store.done_units() == {(sid, seed) for sid, seed, _ in tables[3:]}  # the cache sees the change
    msg = io.StringIO()
    s = run(SMOKE, out, smoke=True, resume=True, progress=False, stream=msg)
    assert s["units_run"] == 3
    assert msg.getvalue().count("unreadable and is removed") == 1 and first.name in msg.getvalue()
    # the rerun units form the same unit list, hence the same name, now complete
    assert second.exists() and ResultStore(out).shard_units()[first] == [(sid, seed) for sid, seed, _ in tables[:3]]
    pd.testing.assert_frame_equal(_no_time(out), _no_time(per_unit))
    # a footer that parses but does not list what the name says (another hash) is not trusted
    fake = second.with_name(second.name[:-len("0123456789ab.parquet")] + "0123456789ab.parquet")
    second.rename(fake)
    assert ResultStore(out).done_units() == _all_units() - {(sid, seed) for sid, seed, _ in tables[3:]}
    assert ResultStore(out).prepare() == [fake.name] and not fake.exists()


def test_flush_seconds_is_checked_and_read_from_the_environment(tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="flush_seconds"):
        run(SMOKE, tmp_path / "neg", smoke=True, progress=False, flush_seconds=-1)
    assert not (tmp_path / "neg").exists()
    monkeypatch.setenv("GENVER_FLUSH_SECONDS", "soon")
    assert main(["run", str(SMOKE), "--smoke", "--out", str(tmp_path / "bad")]) == 2
    assert "GENVER_FLUSH_SECONDS must be a number" in capsys.readouterr().err
    monkeypatch.setenv("GENVER_FLUSH_SECONDS", "0")
    assert main(["run", str(SMOKE), "--smoke", "--out", str(tmp_path / "zero")]) == 0
    assert len(_shards(tmp_path / "zero")) == 8


@pytest.mark.parametrize("name", ["gap_finite", "h4_data", "lit_tajwar2024"])
def test_batch_frame_of_unit_columns_is_the_concat_of_their_frames(name):
    """The store joins units' column lists and converts once: exactly the frame ``pd.concat`` of
    the units' own frames gives (values and dtypes), a unit without rows adding nothing."""
    from genver.experiments.cells import unit_columns, unit_frame
    from genver.experiments.shards import batch_frame
    spec = load_spec(ROOT / "sims" / f"{name}.toml", smoke=True)
    tables = [unit_columns(spec, p, setting_id(p), s) for p in spec.settings()[:3] for s in range(2)]
    want = pd.concat([unit_frame(t) for t in tables], ignore_index=True)
    got = batch_frame(tables[:2] + [{}] + tables[2:])
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert list(got.dtypes) == list(want.dtypes)
    assert batch_frame([{}]).empty
