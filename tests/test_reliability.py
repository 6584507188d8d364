"""Nothing lost, nothing mixed, nothing silent (issue 15): one test (or more) per failure of the
issue's table, with real processes for the concurrent writers and the signals.

1 concurrent writers · 2 partial results · 3 whole-run memory · 4 absurd seeds · 5 SIGTERM /
SIGHUP and orphans · 6 [expect]/[smoke] validated up front · 7 OSError as one line · 8 version
change on resume · 9 a lost manifest · 10 the umask · 11 the saturated finite pick · 12 an MLE
that does not exist · 13 no pair identifies the weights · 14 self-pairs.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import StopAfter

from genver.cli import main
from genver.experiments import store as store_mod
from genver.experiments.runner import Interrupted, run
from genver.experiments.spec import SpecError, load_spec, parse_spec
from genver.experiments.store import LOCK_NAME, LockedError, ResultStore, RunLock, read_provenance

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIMS = ROOT / "sims"
SMOKE = SIMS / "gap_finite.toml"
KEYS = ["setting_id", "seed", "n", "estimator", "metric"]
CLI = [sys.executable, "-m", "genver.cli"]


def _spec(tmp_path, seeds: int, name: str = "slow.toml") -> pathlib.Path:
    """gap_finite without its [smoke] table, 2 settings × ``seeds``: a few ms per unit."""
    p = tmp_path / name
    p.write_text((SIMS / "gap_finite.toml").read_text().split("[smoke]")[0]
                 .replace("seeds = 30", f"seeds = {seeds}")
                 .replace("n_distractors = [0, 16, 256, 4096, 16384]", "n_distractors = [0, 2048]"))
    return p


def _table(out) -> pd.DataFrame:
    return ResultStore(out).load().drop(columns="wall_time").sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """An uninterrupted run of the 12-seed spec, for comparison."""
    d = tmp_path_factory.mktemp("clean")
    spec = _spec(d, 12)
    run(spec, d / "out", progress=False)
    return spec, d / "out"


def _env(**kw):
    return dict(os.environ, **kw)


def _wait(cond, timeout=120.0):
    t = time.time() + timeout
    while time.time() < t:
        if cond():
            return True
        time.sleep(0.01)
    return False


# -- 1. one writer per results directory --------------------------------------------------------
def test_two_concurrent_runs_one_writes_the_other_is_refused(tmp_path):
    """Two `genver run` into the same --out at once: exactly one succeeds, the other exits 2
    with one error line (the lock's holder, or — if the first already finished — "not empty");
    the directory holds each unit once and equals an uninterrupted run."""
    spec = _spec(tmp_path, 40)
    out = tmp_path / "out"
    env = _env(GENVER_FLUSH_SECONDS="0.02")
    procs = [subprocess.Popen([*CLI, "run", str(spec), "--out", str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    res = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in res)
    assert codes == [0, 2], res
    err = [e for rc, e in res if rc == 2][0].strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genver: error: ")
    assert "another genver run is writing here (pid" in err[0] or "directory is not empty" in err[0]
    assert not ResultStore(out).duplicates()
    run(spec, tmp_path / "ref", progress=False)
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "ref"))


def test_lock_names_the_holder_and_a_dead_holder_is_stale(tmp_path, clean):
    """A live process holding the lock: `genver run --resume` (and a fresh run) get one line with
    its PID and host; once it is SIGKILLed the kernel releases the lock, the file is stale and
    the resume goes ahead."""
    spec, _ = clean
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        run(spec, out, stream=StopAfter(3), flush_seconds=0)
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from genver.experiments.store import RunLock\n"
                               f"RunLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run([*CLI, "run", str(spec), "--out", str(out), "--resume"], capture_output=True, text=True)
        assert r.returncode == 2
        line = r.stderr.strip()
        assert line.count("\n") == 0 and f"pid {holder.pid} on host {socket.gethostname()}" in line
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            run(spec, out, resume=True, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid  # left behind by the SIGKILL
    run(spec, out, resume=True, progress=False)  # stale: taken over
    assert (out / LOCK_NAME).read_text() == ""  # released on exit
    pd.testing.assert_frame_equal(_table(out), _table(clean[1]))


def test_stale_lock_rules_without_flock(tmp_path, monkeypatch):
    """Where flock is unavailable the file decides: this host and a live PID hold it, a dead PID
    is stale; another host holds it until its file is STALE_LOCK_S old. A fresh lock file of
    another host is respected even where flock is granted (a network filesystem)."""
    import fcntl
    d = tmp_path / "d"
    d.mkdir()
    lock = d / LOCK_NAME
    me = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def write(pid, host, age=0.0):
        lock.write_text(json.dumps({"pid": pid, "host": host, "started": "then"}))
        t = time.time() - age
        os.utime(lock, (t, t))

    write(12345, "elsewhere.example")
    with pytest.raises(LockedError, match="pid 12345 on host elsewhere.example"):
        RunLock(d).acquire()
    write(12345, "elsewhere.example", age=store_mod.STALE_LOCK_S + 10)
    with RunLock(d):  # stale
        pass

    def no_flock(fd, op):
        raise OSError(38, "Function not implemented")  # ENOSYS
    monkeypatch.setattr(fcntl, "flock", no_flock)
    parent = os.getppid()
    write(parent, me)
    with pytest.raises(LockedError, match=f"pid {parent} on host {me}"):
        RunLock(d).acquire()
    write(dead.pid, me)
    with RunLock(d):
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def _unit_rows(path, unit) -> pd.DataFrame:
    df = pd.read_parquet(path)
    return df[(df["setting_id"] == unit[0]) & (df["seed"] == unit[1])].reset_index(drop=True)


def test_a_unit_in_two_shards_is_refused_and_resume_repairs_it(tmp_path, clean, capsys):
    """What two runs writing at once did before the lock (one unit per shard here): one more
    shard holding the units of shards A, B and C. Loading names the unit and both shards;
    --resume keeps each unit once (oldest shard first: B, then the extra shard without B's
    unit, then A and C are removed) and the table is the uninterrupted run's."""
    spec, ref = clean
    out = tmp_path / "out"
    run(spec, out, progress=False, flush_seconds=0)
    store = ResultStore(out)
    (pa, [ua]), (pb, [ub]), (pc, [uc]) = list(store.shard_units().items())[:3]
    extra = store.write_batch([(*u, _unit_rows(p, u)) for p, u in ((pa, ua), (pb, ub), (pc, uc))])
    t = time.time()
    for p, age in ((pb, -60), (extra, 0), (pa, 60), (pc, 60)):
        os.utime(p, (t + age, t + age))
    with pytest.raises(store_mod.DuplicateUnitsError) as e:
        ResultStore(out).load()
    assert f"setting {ua[0]}, seed {ua[1]}) appears in 2 shards" in str(e.value)
    assert pa.name in str(e.value) and extra.name in str(e.value) and "2 more unit(s) twice" in str(e.value)
    assert main(["report", str(out)]) == 2  # a report of a mixed directory is refused
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "appears in 2 shards" in err[0] and "--resume" in err[0]
    msg = io.StringIO()
    s = run(spec, out, resume=True, progress=False, stream=msg)
    assert s["units_run"] == 0
    assert f"shard {extra.name}: 1 unit(s) another shard holds dropped, 2 kept in" in msg.getvalue()
    assert f"shard {pa.name}: every unit is held by another shard; removed" in msg.getvalue()
    assert f"shard {pc.name}: every unit is held by another shard; removed" in msg.getvalue()
    assert pb.exists() and not ResultStore(out).duplicates()
    pd.testing.assert_frame_equal(_table(out), _table(ref))


# -- 2. partial results are never silent --------------------------------------------------------
def test_report_and_plot_of_an_unfinished_run_say_incomplete(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        run(SMOKE, out, smoke=True, stream=StopAfter(2), flush_seconds=0)
    done = len(ResultStore(out).done_units())
    sp = load_spec(SMOKE, smoke=True)
    total = sp.seeds * len(sp.settings())
    assert 0 < done < total
    assert main(["report", str(out)]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"INCOMPLETE: {done} of {total} units ({total - done} missing)")
    md = (out / "report.md").read_text().splitlines()
    assert md[0].startswith(f"**INCOMPLETE: {done} of {total} units")
    assert all(("(partial data)" in ln) for ln in md if ln.startswith("**Verdict:**"))
    code = main(["report", str(out), "--partial"])
    assert code in (0, 1)  # the verdicts decide
    assert capsys.readouterr().out.startswith("INCOMPLETE:")
    assert main(["plot", str(out)]) == 3
    assert capsys.readouterr().out.startswith(f"INCOMPLETE: {done} of {total} units")
    assert main(["plot", str(out), "--partial"]) == 0
    capsys.readouterr()
    # finished: no INCOMPLETE line, the usual exit code
    run(SMOKE, out, smoke=True, resume=True, progress=False)
    assert main(["report", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert not first.startswith("INCOMPLETE") and "INCOMPLETE" not in (out / "report.md").read_text()
    # a truncated shard is named, not skipped silently
    shard = sorted(ResultStore(out).shards.glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:-30])
    assert main(["report", str(out)]) == 3
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("INCOMPLETE:") and "1 unreadable shard(s)" in first and shard.name in first


# -- 3 and 4. memory for the whole run before allocation; absurd seeds --------------------------
BIG_WORLD = {"experiment": {"name": "big", "generator": "finite_gap"}, "instance": {"P": 1, "V": 2, "H": 26},
             "data": {"sizes": [4], "seeds": 1}, "estimators": [{"name": "dpo"}]}


def test_a_run_too_large_for_memory_is_refused_before_any_instance_is_built(monkeypatch, tmp_path, capsys):
    """P = 1, V = 2, H = 26: every table is under the per-array guard, but the run is not; the
    estimate (16 + K_R + 3 K_Π = 32 tables of 2**26 float64 = 16 GiB, plus the run's 0.6 GiB) is
    refused before the first instance is built, naming the key and the estimate."""
    from genver.experiments import cells
    monkeypatch.setenv("GENVER_MEMORY_LIMIT", "4G")

    def boom(*a, **k):
        raise AssertionError("an instance was built before the memory check")
    monkeypatch.setattr(cells, "make_instance", boom)
    with pytest.raises(SpecError) as e:
        parse_spec(BIG_WORLD, source="big.toml")
    msg = str(e.value)
    assert "needs about 16.6 GiB" in msg and "4.0 GiB limit (GENVER_MEMORY_LIMIT)" in msg
    assert "most of it is" in msg and "P, V or H (P·V**H = 67,108,864 entries per table, 512.0 MiB each)" in msg
    # the override: off, or a larger limit, lets the check pass (the instance is then built)
    with pytest.raises(AssertionError, match="before the memory check"):
        parse_spec(BIG_WORLD, source="big.toml", memory_limit="off")
    # the CLI: one line, exit 2, nothing written
    import tomllib  # noqa: F401 - the spec below is TOML
    spec = tmp_path / "big.toml"
    spec.write_text('[experiment]\nname = "big"\ngenerator = "finite_gap"\n[instance]\nP = 1\nV = 2\nH = 26\n'
                    '[data]\nsizes = [4]\nseeds = 1\n[[estimators]]\nname = "dpo"\n')
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--memory-limit", "2G"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2.0 GiB limit (--memory-limit)" in err[0] and not (tmp_path / "o").exists()


def test_the_estimate_grows_with_the_workers(monkeypatch):
    from genver.experiments.memory import RUN_OVERHEAD, check_memory, unit_bytes
    spec = load_spec(SMOKE, smoke=True, memory_limit="off")
    worst = max(sum(unit_bytes(spec, p).values()) for p in spec.settings())
    # closed form of the largest smoke setting: P = 4, T = 16, K_R = 4, |D| = 1024, sizes [8, 64, 512]
    PT, K_R, K, S, n = 64, 4, 4 + 1024, 3, 512
    assert worst == 8 * (16 * PT + PT * (K_R + 3 * K) + 12 * n + 4 * S * K)
    assert check_memory(spec, workers=3, limit="off") == 3 * worst + RUN_OVERHEAD
    limit = 2 * worst + RUN_OVERHEAD
    check_memory(spec, workers=2, limit=limit)
    with pytest.raises(SpecError, match=r"× 3 workers.*or --workers"):
        check_memory(spec, workers=3, limit=limit)


def test_absurd_seeds_are_refused_by_name(tmp_path, capsys):
    raw = json.loads(json.dumps(BIG_WORLD))
    raw["instance"] = {"P": 2, "V": 2, "H": 2}
    raw["data"]["seeds"] = 100_000_000
    with pytest.raises(SpecError, match=r"\[data\] seeds: at most 100,000 replicate seeds, got 100,000,000"):
        parse_spec(raw, source="t.toml")


# -- 5. SIGTERM and SIGHUP like SIGINT; no orphans ------------------------------------------------
def _session_alive(sid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes of session ``sid`` (from /proc)."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # state, ppid, pgrp, session
            out.append(int(d.name))
    return out


@pytest.mark.parametrize("sig, code, extra", [
    (signal.SIGTERM, 143, ["--workers", "2"]),
    (signal.SIGHUP, 129, ["--executor", "threads", "--workers", "2"]),
    (signal.SIGTERM, 143, []),
    pytest.param(signal.SIGTERM, 143, ["--executor", "dask-local", "--workers", "2"],
                 marks=pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                          reason="the dask executors need the 'dist' extra")),
])
def test_sigterm_and_sighup_save_units_end_workers_and_exit_128_plus_signal(tmp_path, sig, code, extra):
    """The signal lands mid-run (units saved, workers busy): the run writes its buffered units,
    ends its workers, prints "rerun with --resume" and exits 128 + signal; afterwards no
    process of its session is alive (process pool workers and multiprocessing's resource
    tracker included); --resume finishes the table."""
    spec = _spec(tmp_path, 100)
    out = tmp_path / "out"
    proc = subprocess.Popen([*CLI, "run", str(spec), "--out", str(out), *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env(GENVER_FLUSH_SECONDS="0.02"),
                            start_new_session=True)
    store = ResultStore(out)
    assert _wait(lambda: len(store.done_units()) >= 3 or proc.poll() is not None)
    if "--workers" in extra and "threads" not in extra:
        assert len(_session_alive(proc.pid)) >= 3  # the pool's (or the cluster's) worker processes
    os.kill(proc.pid, sig)
    rc = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert rc == code, err
    assert f"stopped by {signal.Signals(sig).name}" in err and "rerun with --resume" in err
    assert _wait(lambda: not _session_alive(proc.pid), timeout=10), _session_alive(proc.pid)
    n = len(store.done_units())
    assert 3 <= n < 200
    assert (out / LOCK_NAME).read_text() == ""
    s = run(spec, out, resume=True, progress=False)
    assert s["units_run"] == 200 - n and not ResultStore(out).duplicates()


# -- 6. every [expect] and [smoke] key validated by `genver run` ---------------------------------
@pytest.mark.parametrize("expect, match", [
    ({"epsilon": float("nan")}, r"\[expect\] epsilon: must be a finite number > 0, got nan"),
    ({"epsilon": -1}, r"\[expect\] epsilon: must be a finite number > 0, got -1"),
    ({"epsilon": 0.0}, r"\[expect\] epsilon: must be a finite number > 0"),
    ({"ratio": "bigger than 1"}, r"\[expect\] ratio: cannot parse 'bigger than 1'"),
    ({"ratio": ">= e"}, r"\[expect\] ratio: cannot parse"),
    ({"ratio": "increasing in colour"}, r"\[expect\] ratio: 'increasing in colour': 'colour' is not a swept knob"),
])
def test_bad_expect_is_refused_before_the_sweep(expect, match):
    raw = {"experiment": {"name": "t", "generator": "finite_gap"}, "instance": {"P": 2, "V": 2, "H": 2},
           "grid": {"n_distractors": [0, 4]}, "data": {"sizes": [4], "seeds": 1},
           "estimators": [{"name": "dpo", "label": "offline"}, {"name": "rm_rl", "label": "online"}],
           "expect": expect}
    with pytest.raises(SpecError, match=match):
        parse_spec(raw, source="t.toml")


def test_a_typo_in_smoke_is_refused_without_smoke(tmp_path, capsys):
    spec = tmp_path / "t.toml"
    spec.write_text(SMOKE.read_text() + '"data.seedz" = 2\n')
    assert main(["run", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "with [smoke] applied" in err[0] and "[data] seedz: unknown key" in err[0]
    assert not (tmp_path / "o").exists()
    bad = tmp_path / "u.toml"
    bad.write_text(SMOKE.read_text().replace('"expect.ratio" = ">= 1"', '"expect.ratio" = "bigger"'))
    with pytest.raises(SpecError, match=r"with \[smoke\] applied.*\[expect\] ratio: cannot parse 'bigger'"):
        load_spec(bad)


# -- 7. OSErrors on the CLI: one line naming the path, exit 2 ------------------------------------
def test_file_errors_are_one_line_naming_the_path(tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    cases = [
        (["run", str(SMOKE), "--smoke", "--out", str(f)], f"{f}: exists and is not a directory"),
        (["run", str(tmp_path), "--smoke", "--out", str(tmp_path / "o")], f"{tmp_path}: is a directory, not a spec"),
        (["report", str(SMOKE)], f"{SMOKE}: not a directory"),
        (["plot", str(SMOKE)], f"{SMOKE}: not a directory"),
    ]
    for argv, want in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("genver: error: ") and want in err[0], (argv, err)
    # a results folder that cannot be written (report.md, figures/ in the way): the path is named
    out = tmp_path / "res"
    run(SMOKE, out, smoke=True, progress=False)
    (out / "report.md").mkdir()
    (out / "report.md" / "x").write_text("")
    (out / "figures").write_text("not a folder")
    for cmd, name in (("report", "figures"), ("plot", "figures")):
        assert main([cmd, str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("genver: error: ") and str(out / name) in err[0], err
    (out / "figures").unlink()
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{out / 'report.md'}: Is a directory" in err[0], err


# -- 8. provenance: a version change on resume -----------------------------------------------------
def test_resume_refuses_a_version_or_commit_change_unless_allowed(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        run(SMOKE, out, smoke=True, stream=StopAfter(2), flush_seconds=0)
    man = json.loads((out / "manifest.json").read_text())
    now = dict(man["contributors"][0])
    for path in ResultStore(out).shard_units():  # every shard records who wrote it
        prov = read_provenance(path)
        assert prov["versions"] == man["versions"] and prov["git_commit"] == man["git_commit"]
        assert prov["spec_hash"] == man["spec_hash"] and prov["smoke"] is True
    old = {"versions": {**now["versions"], "numpy": "0.0.1"}, "git_commit": now["git_commit"]}
    man["contributors"] = [old]
    (out / "manifest.json").write_text(json.dumps(man))
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "numpy 0.0.1" in err[0] and "(numpy changed)" in err[0]
    assert "--allow-version-change" in err[0]
    man["contributors"] = [{**now, "git_commit": "0" * 40}]
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match=r"\(git commit changed\)"):
        run(SMOKE, out, smoke=True, resume=True, progress=False)
    assert main(["run", str(SMOKE), "--smoke", "--out", str(out), "--resume", "--allow-version-change"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["contributors"] == [{**now, "git_commit": "0" * 40}, now]
    # a manifest of an older genver (no contributors list) counts its own versions
    del man["contributors"]
    (out / "manifest.json").write_text(json.dumps(man))
    assert run(SMOKE, out, smoke=True, resume=True, progress=False)["units_run"] == 0


# -- 9. a lost manifest is rebuilt from the shards -------------------------------------------------
def test_genver_repair_rebuilds_a_lost_manifest(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        run(SMOKE, out, smoke=True, stream=StopAfter(3), flush_seconds=0)
    before = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").unlink()
    (out / "settings.parquet").unlink()
    assert main(["report", str(out)]) == 2
    assert f"genver repair {out}" in capsys.readouterr().err
    assert main(["repair", str(out)]) == 0
    assert "manifest.json rebuilt from" in capsys.readouterr().err
    man = json.loads((out / "manifest.json").read_text())
    for k in ("spec", "spec_hash", "smoke", "experiment", "knobs", "expected", "expect", "versions", "git_commit",
              "contributors", "units_total"):
        assert man[k] == before[k], k
    assert main(["repair", str(out)]) == 2  # refuses to overwrite a manifest
    capsys.readouterr()
    run(SMOKE, out, smoke=True, resume=True, progress=False)
    run(SMOKE, tmp_path / "ref", smoke=True, progress=False)
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "ref"))


# -- 10. files respect the umask -------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_results_files_respect_the_umask(tmp_path, umask, mode):
    out = tmp_path / "out"
    old = os.umask(umask)
    try:
        run(SMOKE, out, smoke=True, progress=False)
        from genver.experiments.report import make_report
        make_report(out)
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"manifest.json", "settings.parquet", "report.md", LOCK_NAME} <= {p.name for p in files}
    assert any(p.parent.name == "shards" for p in files)
    assert any(p.parent.name == "figures" and p.suffix == ".png" for p in files)
    for p in files:
        assert p.stat().st_mode & 0o777 == mode, p


# -- 11. the saturated finite-class pick ------------------------------------------------------------
def test_finite_pick_keeps_tiny_log_likelihoods_apart():
    from genver._solve import TIE_RTOL, finite_pick
    members = np.arange(3.0)[:, None] * np.ones((3, 4))  # three different policies
    v = np.array([-1e-19, -1e-59, -1e-119])
    assert finite_pick(v, members) == (2, False, 1)
    # the old rule, 1e-12·max(1, |best|), ties them all and takes the lowest index: caught
    old = np.flatnonzero(v >= v.max() - TIE_RTOL * max(1.0, abs(v.max())))
    assert old.tolist() == [0, 1, 2]
    # genuine rounding ties still tie, whatever the scale; mixed signs keep the absolute floor
    assert finite_pick(np.array([-1e-119 * (1 + 1e-14), -1e-119]), members[:2]) == (0, True, 2)
    assert finite_pick(np.array([0.3, 0.3 + 5e-13, -2.0]), members) == (0, True, 2)



def test_finite_dpo_at_saturated_likelihood_picks_the_exact_argmax():
    """The issue's case end to end: β = 10, one pair, three members whose DPO margins 44, 136,
    274 give log-likelihoods log σ(z) ≈ −e^{−z} (−7.8e-20, −8.6e-60, −1.0e-119). The vectorised
    kernel rounds all three to 0; the members it leaves tied are recomputed term by term with
    log1p (mle._finite_loglik_pick), so member 2 wins alone — on the one-size fit and on the
    nested-sizes path alike."""
    import math

    from genver.classes import FinitePolicyClass
    from genver.estimators.mle import dpo, dpo_path
    from genver.policy import uniform_policy
    from genver.preferences import Preferences
    from genver.spaces import TreeSpace

    sp, beta, margins = TreeSpace(1, 2, 1), 10.0, (44.0, 136.0, 274.0)
    ref = uniform_policy(sp)
    members = np.stack([[[-np.logaddexp(0, -z / beta), -np.logaddexp(0, z / beta)]] for z in margins])
    cls = FinitePolicyClass(sp, members)
    data = Preferences.from_array(sp, np.array([[0, 0, 1]]))
    res = dpo(data, cls, ref, beta)
    want = [-math.exp(-z) for z in margins]  # log σ(z) = −log1p(e^{−z}) = −e^{−z}(1 − …)
    assert np.allclose(res.extra["loglik_all"], want, rtol=1e-12, atol=0)
    assert (res.policy_index, res.set_valued) == (2, False)
    for a in (data.x, data.y_pos, data.y_neg):
        a.setflags(write=False)
    (path,) = dpo_path(data, [1], cls, ref, beta)
    assert path.policy_index == 2 and math.isclose(path.objective, want[2], rel_tol=1e-12)
    # the former term, log(1 + e^{−|z|}), rounds every member to exactly 0 (a three-way tie): caught
    assert [min(z, 0.0) - math.log(1.0 + math.exp(-z)) for z in margins] == [0.0, 0.0, 0.0]

# -- 12, 13, 14. genver fit: undefined is reported as undefined -------------------------------------
#: features of the four completions of one prompt: completion 0 can be ranked above every other
PHI = np.array([[[2.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 1.0]]])


def _linear_files(tmp_path, pairs):
    from genver.io import save_instance, save_pairs
    save_instance(tmp_path / "inst.npz", ref_logp=np.log(np.full((1, 4), 0.25)), reward_true=PHI @ [1.0, -0.5],
                  beta=1.0, reward_features=PHI)
    save_pairs(tmp_path / "pairs.npz", np.asarray(pairs, dtype=np.int64).reshape(-1, 3))
    return ["fit", "--instance", str(tmp_path / "inst.npz"), "--pairs", str(tmp_path / "pairs.npz")]


def test_fit_reports_an_mle_that_does_not_exist(tmp_path, capsys):
    """rm_rl, linear class, --l2 0, separable pairs: y⁺ = 0 beats every other completion, and
    w = (1, 0) ranks 0 first (w·(φ_0 − φ_k) = 2, 2, 1 > 0), so the likelihood grows without
    bound along w and has no maximiser."""
    assert np.all((PHI[0, 0] - PHI[0, 1:]) @ [1.0, 0.0] > 0)
    argv = _linear_files(tmp_path, [[0, 0, 1], [0, 0, 2], [0, 0, 3]] * 3)
    assert main([*argv, "--estimator", "rm_rl", "--l2", "0"]) == 0
    out = capsys.readouterr().out
    assert "mle_exists      no" in out and "converged=no" in out
    assert len([ln for ln in out.splitlines() if ln.startswith("note: the MLE does not exist")]) == 1
    assert main([*argv, "--estimator", "rm_rl", "--l2", "0", "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["convergence"]["mle_exists"] is False and o["convergence"]["converged"] is False
    assert main([*argv, "--estimator", "rm_rl", "--l2", "0.1", "--json"]) == 0  # the ridge makes it exist
    o = json.loads(capsys.readouterr().out)
    assert o["convergence"]["mle_exists"] is True and o["convergence"]["converged"] is True


def test_fit_with_no_identifying_pair_is_set_valued(tmp_path, capsys):
    argv = _linear_files(tmp_path, np.zeros((0, 3)))
    assert main([*argv, "--estimator", "rm_rl", "--l2", "0", "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["n_pairs"] == 0 and o["convergence"]["set_valued"] is True
    assert any("leave 2 direction(s) of the 2 reward weights free" in n for n in o["notes"])
    # one pair identifies one direction of two: still a set; with a ridge, one maximiser
    argv = _linear_files(tmp_path, [[0, 1, 2], [0, 2, 1]])
    assert main([*argv, "--estimator", "rm_rl", "--l2", "0", "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["convergence"]["set_valued"] is True and any("leave 1 direction(s)" in n for n in o["notes"])
    argv = _linear_files(tmp_path, [[0, 1, 2], [0, 2, 1], [0, 1, 3], [0, 3, 1]])
    assert main([*argv, "--estimator", "rm_rl", "--l2", "0", "--json"]) == 0
    o = json.loads(capsys.readouterr().out)
    assert o["convergence"]["set_valued"] is False and o["convergence"]["converged"] is True


def test_self_pairs_are_noted_dropped_or_refused_in_the_api_and_the_cli(tmp_path, capsys):
    from genver.preferences import Preferences
    from genver.spaces import TreeSpace
    sp = TreeSpace(1, 2, 2)
    a = np.array([[0, 1, 2], [0, 3, 3], [0, 2, 1], [0, 0, 0]])
    with pytest.warns(UserWarning, match=r"2 of 4 pairs have preferred == dispreferred \(first: row 1\).*kept"):
        kept = Preferences.from_array(sp, a, self_pairs="note")
    assert len(kept) == 4
    with pytest.warns(UserWarning, match="dropped"):
        dropped = Preferences.from_array(sp, a)  # the default
    assert dropped.as_array().tolist() == [[0, 1, 2], [0, 2, 1]]
    with pytest.raises(ValueError, match=r"pairs\[1\] = \[0, 3, 3\]: preferred == dispreferred \(and 1 more"):
        Preferences.from_array(sp, a, self_pairs="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(Preferences.from_array(sp, a, self_pairs="keep")) == 4  # sampled streams: silent
    # the CLI: drop with a note (default), keep with a note (the objective is that of the file's
    # pairs), or refuse
    argv = _linear_files(tmp_path, [[0, 1, 2], [0, 3, 3], [0, 2, 1], [0, 0, 0]])
    assert main([*argv, "--estimator", "rm_rl", "--l2", "0.1", "--json", "--self-pairs", "keep"]) == 0
    keep = json.loads(capsys.readouterr().out)
    assert keep["n_pairs"] == 4 and any("2 of 4 pairs have preferred == dispreferred" in n for n in keep["notes"])
    assert main([*argv, "--estimator", "rm_rl", "--l2", "0.1", "--json"]) == 0
    drop = json.loads(capsys.readouterr().out)
    assert drop["n_pairs"] == 2 and any("dropped" in n for n in drop["notes"])
    # the fit does not change: a self-pair adds log σ(0) = −log 2 to every objective, nothing else
    assert drop["reward_weights"] == pytest.approx(keep["reward_weights"], rel=1e-9, abs=1e-12)
    assert keep["objective"] == pytest.approx(drop["objective"] - 2 * np.log(2), rel=1e-12)
    assert main([*argv, "--estimator", "rm_rl", "--self-pairs", "error"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pairs.npz: pairs: pairs[1] = [0, 3, 3]: preferred == dispreferred" in err[0]


# -- the Dask version probe's source hash ----------------------------------------------------
_HASH_PROBE = """
import hashlib, json, pathlib, genver, genver.theory
from genver.experiments.workers import _genver_source_hash
root = pathlib.Path(genver.__file__).parent
old = hashlib.sha1()  # the rule before: every .py under the genver folder
for p in sorted(root.rglob("*.py")):
    if "__pycache__" not in p.parts:
        old.update(p.relative_to(root).as_posix().encode() + b"\\0" + p.read_bytes() + b"\\0")
print(json.dumps({"hash": _genver_source_hash(), "old": old.hexdigest()[:12], "genver": genver.__file__,
                  "theory": genver.theory.__file__}))
"""


@pytest.mark.slow
def test_source_hash_is_the_same_for_an_editable_install_and_a_wheel_of_one_commit(tmp_path):
    """One source tree installed editable (theory/ beside genver/, mapped to genver.theory) and
    as a wheel (genver/theory/ inside the package): the source hash the Dask probe compares is
    the same, where the old rule (every .py under the genver folder) differed."""
    import shutil
    import sysconfig
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "results*"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(src)],
                   check=True, env=env, cwd=tmp_path, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("genver-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, env=env, cwd=tmp_path, capture_output=True)
    # an editable install into a fresh environment that sees this one's dependencies
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    venv_py = tmp_path / "venv" / "bin" / "python"
    purelib = subprocess.run([venv_py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    pathlib.Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(pip + ["--python", str(venv_py), "install", "--no-deps", "--no-build-isolation", "-e", str(src)],
                   check=True, env=env, cwd=tmp_path, capture_output=True)

    def probe(python, **extra):
        out = subprocess.run([python, "-c", _HASH_PROBE], check=True, capture_output=True, text=True,
                             cwd=tmp_path, env={**env, **extra}).stdout
        return json.loads(out.strip().splitlines()[-1])

    whl = probe(sys.executable, PYTHONPATH=str(tmp_path / "site"))
    edi = probe(str(venv_py))
    assert pathlib.Path(whl["theory"]).is_relative_to(tmp_path / "site" / "genver")
    assert pathlib.Path(edi["genver"]).is_relative_to(src / "genver")
    assert pathlib.Path(edi["theory"]).is_relative_to(src / "theory")
    assert whl["hash"] == edi["hash"]
    assert whl["old"] != edi["old"]  # the old rule told the two installs apart


def test_source_packages_are_the_packages_pyproject_installs():
    import tomllib

    from genver.experiments.executors import SOURCE_PACKAGES
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert list(SOURCE_PACKAGES) == packages
