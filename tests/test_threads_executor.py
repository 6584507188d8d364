"""The ``threads`` executor: units of a sweep in several threads of this process, kernels on
their serial drivers. Its tables equal the in-process executor's exactly, for finite-class,
tabular and log-linear estimators alike; a unit's error reaches the caller after the finished
units are saved; a consumer that stops early leaves no thread running."""
from __future__ import annotations

import pathlib
import threading

import pandas as pd
import pytest

from genver.experiments import executors
from genver.experiments.runner import run
from genver.experiments.spec import load_spec, setting_id
from genver.experiments.store import ResultStore

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _table(out) -> pd.DataFrame:
    return ResultStore(out).load().drop(columns="wall_time")


@pytest.mark.parametrize("name", ["gap_finite", "gap_horizon", "lit_li2023", "lit_shi2025", "h1_online_samples"])
def test_threads_give_the_in_process_table_exactly(tmp_path, name):
    spec = ROOT / "sims" / f"{name}.toml"
    run(spec, tmp_path / "local", smoke=True, progress=False)
    s = run(spec, tmp_path / "threads", smoke=True, progress=False, executor="threads", workers=2)
    assert s["executor"] == "threads (2)"
    assert ResultStore(tmp_path / "threads").read_manifest()["executor_last_run"] == "threads (2)"
    pd.testing.assert_frame_equal(_table(tmp_path / "local"), _table(tmp_path / "threads"), check_exact=True)


def test_a_unit_error_reaches_the_caller_and_finished_units_are_kept(tmp_path, monkeypatch):
    spec_path = ROOT / "sims" / "gap_finite.toml"
    spec = load_spec(spec_path, smoke=True)
    bad = (setting_id(spec.settings()[-1]), 2)  # the last setting of seed 2
    real = executors.unit_columns

    def fails(spec, params, sid, seed, **kw):
        if (sid, seed) == bad:
            raise RuntimeError("unit exploded")
        return real(spec, params, sid, seed, **kw)

    monkeypatch.setattr(executors, "unit_columns", fails)
    out = tmp_path / "failed"
    with pytest.raises(RuntimeError, match="unit exploded"):
        run(spec_path, out, smoke=True, progress=False, executor="threads", workers=2, flush_seconds=3600)
    done = ResultStore(out).done_units()
    assert bad not in done and len(done) >= 1
    assert not [t for t in threading.enumerate() if t.name.startswith("genver-unit-")]
    monkeypatch.setattr(executors, "unit_columns", real)
    s = run(spec_path, out, smoke=True, resume=True, progress=False, executor="threads", workers=2)
    assert s["units_run"] == len(spec.settings()) * spec.seeds - len(done)
    run(spec_path, tmp_path / "local", smoke=True, progress=False)
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "local"), check_exact=True)


def test_stopping_early_joins_the_threads_and_restores_parallel_kernels():
    from genver import _kernels
    spec = load_spec(ROOT / "sims" / "gap_finite.toml", smoke=True)
    units = [(setting_id(p), p, s) for s in range(spec.seeds) for p in spec.settings()]
    it = executors.make_executor("threads", workers=2).map(spec, units)
    first = next(it)
    assert first[2] is not None and not _kernels._PARALLEL_ALLOWED[0]
    it.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("genver-unit-")]
    assert _kernels._PARALLEL_ALLOWED[0]


def test_units_of_a_seed_stay_on_one_thread_in_order(monkeypatch):
    spec = load_spec(ROOT / "sims" / "gap_finite.toml", smoke=True)
    units = [(setting_id(p), p, s) for s in range(spec.seeds) for p in spec.settings()]
    seen = []
    real = executors.unit_columns

    def record(spec, params, sid, seed, **kw):
        seen.append((threading.current_thread().name, seed, sid))
        return real(spec, params, sid, seed, **kw)

    monkeypatch.setattr(executors, "unit_columns", record)
    out = list(executors.make_executor("threads", workers=2).map(spec, units))
    assert sorted((sid, seed) for sid, seed, _ in out) == sorted((u[0], u[2]) for u in units)
    for seed in range(spec.seeds):
        mine = [(name, sid) for name, s, sid in seen if s == seed]
        assert len({name for name, _ in mine}) == 1  # one thread per seed
        assert [sid for _, sid in mine] == [setting_id(p) for p in spec.settings()]  # settings in order
