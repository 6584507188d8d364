"""Dask executors (loopback only): the same table as the local executor, a worker killed
mid-run, resume across executors, and the errors raised before any unit runs."""
from __future__ import annotations

import logging
import os
import pathlib
import signal
import threading
import time

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from conftest import StopAfter  # noqa: E402

from genver.cli import main  # noqa: E402
from genver.experiments import dask_executor, workers  # noqa: E402
from genver.experiments.executors import ExecutorError, compare_versions, runtime_versions  # noqa: E402
from genver.experiments.runner import run  # noqa: E402
from genver.experiments.store import ResultStore  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sims" / "gap_finite.toml"
KEYS = ["setting_id", "seed", "n", "estimator", "metric"]


def _table(out) -> pd.DataFrame:
    df = ResultStore(out).load().drop(columns="wall_time")
    assert not df.duplicated(KEYS).any()
    return df.sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """gap_finite --smoke on the local executor (in process)."""
    out = tmp_path_factory.mktemp("ref") / "local"
    run(SMOKE, out, smoke=True, progress=False)
    return _table(out)


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster on loopback (2 single-threaded worker processes), used as an 'existing'
    cluster by ``--executor dask --scheduler``."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as cl, \
            distributed.Client(cl, set_as_default=False) as client:
        yield cl, client


def _interrupted(out, k=3, **kw):
    with pytest.raises(KeyboardInterrupt, match="rerun with --resume"):
        run(SMOKE, out, smoke=True, stream=StopAfter(k), **kw)
    n = len(ResultStore(out).done_units())
    assert k <= n < 8, n  # stopped mid-run, the finished (buffered) units flushed, complete shards on disk
    return n


def test_dask_local_cli_equals_local(tmp_path, reference, capsys):
    out = tmp_path / "dl"
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out), "--executor", "dask-local", "--workers", "2"]) == 0
    assert "8 of 8 units run now" in capsys.readouterr().out
    pd.testing.assert_frame_equal(_table(out), reference)
    assert ResultStore(out).read_manifest()["executor_last_run"].startswith("dask-local (LocalCluster on 127.0.0.1")


def test_existing_cluster_equals_local_and_resumes_across_executors(tmp_path, reference, cluster):
    cl, _ = cluster
    addr = cl.scheduler_address
    assert addr.startswith("tcp://127.0.0.1:")
    # started on the cluster, stopped by the client, finished on the cluster
    a = tmp_path / "dask_dask"
    n = _interrupted(a, executor="dask", scheduler=addr)
    s = run(SMOKE, a, smoke=True, resume=True, progress=False, executor="dask", scheduler=addr)
    assert s["units_run"] == 8 - n
    pd.testing.assert_frame_equal(_table(a), reference)
    # started locally, finished on the cluster
    b = tmp_path / "local_dask"
    _interrupted(b)
    run(SMOKE, b, smoke=True, resume=True, progress=False, executor="dask", scheduler=addr)
    pd.testing.assert_frame_equal(_table(b), reference)
    # started on the cluster, finished locally with a process pool
    c = tmp_path / "dask_local"
    _interrupted(c, executor="dask", scheduler=addr)
    run(SMOKE, c, smoke=True, resume=True, progress=False, workers=2)
    pd.testing.assert_frame_equal(_table(c), reference)


def _kill_spec(tmp_path) -> pathlib.Path:
    """gap_finite with slower units (|D| = 4096: ~0.2 s each) and more seeds: ~5 s of work."""
    text = SMOKE.read_text().split("[smoke]")[0]
    text = (text.replace("seeds = 30", "seeds = 12")
            .replace("n_distractors = [0, 16, 256, 4096, 16384]", "n_distractors = [16, 4096]"))
    assert "seeds = 12" in text and "[16, 4096]" in text
    p = tmp_path / "slow.toml"
    p.write_text(text)
    return p


def test_worker_killed_mid_run_loses_nothing(tmp_path, cluster):
    cl, client = cluster
    spec = _kill_spec(tmp_path)
    run(spec, tmp_path / "local", progress=False)
    out = tmp_path / "killed"
    store = ResultStore(out)
    pids = client.run(os.getpid)
    victim_addr, victim = sorted(pids.items())[0]
    seen = {}

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline and len(store.done_units()) < 3:
            time.sleep(0.01)
        seen["busy"] = bool(client.processing().get(victim_addr))
        seen["saved"] = len(store.done_units())
        os.kill(victim, signal.SIGKILL)

    t = threading.Thread(target=killer)
    t.start()
    try:
        # shards every 0.02 s (not the default 1 s: the whole run takes about a second), so the
        # kill lands while the victim still has tasks
        s = run(spec, out, progress=False, executor="dask", scheduler=cl.scheduler_address, flush_seconds=0.02)
    finally:
        t.join()
    assert seen["busy"], "the killed worker had tasks"
    assert 3 <= seen["saved"] < 24, "the kill landed mid-run"
    assert s["units_run"] == 24 and len(store.done_units()) == 24
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "local"))
    assert not list(store.shards.glob(".*"))  # no temporary file left (genver.atomic: .NAME.*.part)
    client.wait_for_workers(2, timeout=60)


def test_bad_scheduler_address_is_one_line_exit_2(tmp_path, capsys):
    t0 = time.perf_counter()
    out = tmp_path / "o"
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out), "--executor", "dask",
                 "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert time.perf_counter() - t0 < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1 (Connection refused)" in err[0], err
    assert not out.exists()  # nothing written before the executor was ready


def test_silent_listener_times_out_quickly(tmp_path, capsys, monkeypatch):
    """Something listens on the port but is no Dask scheduler: the short timeout, one line."""
    import socket
    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        addr = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
        t0 = time.perf_counter()
        assert main(["run", str(SMOKE), "--smoke", "--out", str(tmp_path / "o"), "--executor", "dask",
                     "--scheduler", addr]) == 2
        assert time.perf_counter() - t0 < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot reach the Dask scheduler at {addr} within 1 s" in err[0], err


@pytest.mark.parametrize("argv, match", [
    (["--executor", "dask"], "needs --scheduler"),
    (["--scheduler", "tcp://127.0.0.1:1"], "only for --executor dask"),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--workers", "4"], "does not apply"),
])
def test_executor_arguments_are_checked(tmp_path, capsys, argv, match):
    assert main(["run", str(SMOKE), "--smoke", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_compare_versions_names_package_and_versions():
    v = runtime_versions()
    assert compare_versions(v, dict(v), "w") is None
    msg = compare_versions(v, {**v, "numba": "0.1"}, "tcp://w:1")
    assert f"numba {v['numba']} on this client vs 0.1 on worker tcp://w:1" in msg
    assert "genver sources differ" in compare_versions(v, {**v, "genver_source": "x"}, "w")


def _worker_helpers():
    """Functions to run on the workers (nested, so they are pickled by value, not by module)."""
    def fake_versions():
        from genver.experiments import workers as ex
        ex._VERSIONS = {**ex.runtime_versions(), "numpy": "0.0.1"}

    def hide_genver():
        import sys
        sys._genver_hidden = {k: m for k, m in sys.modules.items() if k == "genver" or k.startswith("genver.")}
        for k in sys._genver_hidden:
            sys.modules[k] = None

    def restore():
        import sys
        sys.modules.update(getattr(sys, "_genver_hidden", {}))
        from genver.experiments import workers as ex
        ex._VERSIONS = None

    return fake_versions, hide_genver, restore


def test_version_mismatch_and_missing_genver_are_refused(tmp_path, cluster):
    cl, client = cluster
    client.wait_for_workers(2, timeout=60)
    addr = cl.scheduler_address
    fake_versions, hide_genver, restore = _worker_helpers()
    try:
        client.run(fake_versions)
        with pytest.raises(ExecutorError, match=r"version mismatch: numpy \S+ on this client vs 0\.0\.1 on worker"):
            run(SMOKE, tmp_path / "v", smoke=True, progress=False, executor="dask", scheduler=addr)
        client.run(restore)
        client.run(hide_genver)
        with pytest.raises(ExecutorError, match="cannot import genver"):
            run(SMOKE, tmp_path / "g", smoke=True, progress=False, executor="dask", scheduler=addr)
    finally:
        client.run(restore)
    assert not (tmp_path / "v").exists() and not (tmp_path / "g").exists()
    # every task re-checks the versions (a worker may join after the probe)
    fut = client.submit(workers.run_batch, None, [], {**runtime_versions(), "numpy": "9"}, pure=False)
    with pytest.raises(ExecutorError, match="version mismatch: numpy 9 on this client vs"):
        fut.result()
