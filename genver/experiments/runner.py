"""``genver run``: execute every (setting, seed) unit of a spec, resumably.

Execution (see :mod:`genver.experiments.executors`): ``executor="local"`` runs units in this
process (``workers=1``) or in a pool of ``workers`` local processes (started with ``spawn``;
each worker sets numba to one thread so workers and numba threads do not oversubscribe the
cores); ``"dask-local"`` on a Dask ``LocalCluster`` of ``workers`` processes on 127.0.0.1;
``"dask"`` on an existing Dask cluster at ``scheduler``. Whatever ran it, finished units are
written here, by this process, atomically, several to a shard (see
:mod:`genver.experiments.store`): units are buffered and written together once
``flush_seconds`` (default :data:`FLUSH_SECONDS`; ``genver run`` reads the environment variable
``GENVER_FLUSH_SECONDS``; 0 writes every unit at once) of wall time have passed since the last
write, at the end, on Ctrl-C and before an error propagates. So Ctrl-C or an error loses at most
the units in flight, a SIGKILL at most the last ``flush_seconds`` of finished units as well,
and ``--resume`` skips every unit found in a shard — also when the run is resumed with another
executor. A cell's numbers do not depend on the executor, the worker count or the order (see
:mod:`genver.experiments.cells`). Units run seed by seed (every setting of seed 0, then of seed
1, …), so that what the settings of a seed share — its pair stream, nested classes — is
computed once while it sits in the run-scoped memos (:mod:`genver._memo`), which a run empties
when it starts and when it ends.

Progress goes to stderr: cells done / total, rate, ETA.
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import closing

import pandas as pd

from .._memo import run_scoped
from ..neural.schema import NEURAL_SCHEMAS
from .cells import make_instance
from .executors import make_executor
from .generators import describe
from .spec import Spec, load_spec, setting_id
from .store import ResultStore, git_commit, now_iso, package_versions

__all__ = ["run", "Progress", "FLUSH_SECONDS"]

#: finished units are buffered and written as one shard once this much wall time has passed
#: since the last write (and at the end, on Ctrl-C and on errors): the most work a SIGKILL loses
FLUSH_SECONDS = 1.0


class Progress:
    """A one-line progress bar on stderr (a new line every 10% when not a terminal)."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_decile = -1

    def update(self, k: int) -> None:
        self.done += k
        if not self.enabled or (k == 0 and self.done < self.total):
            return
        el = time.perf_counter() - self.t0
        rate = self.done / el if el > 0 else float("inf")
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        line = f"[{bar}] {self.done}/{self.total} cells  {rate:.1f} cells/s  ETA {eta:.0f}s"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.done >= self.total else ""))
            self.stream.flush()
        elif int(10 * frac) != self._last_decile or self.done >= self.total:
            self._last_decile = int(10 * frac)
            self.stream.write(line + "\n")
            self.stream.flush()


def settings_table(spec: Spec) -> pd.DataFrame:
    """One row per setting: id, knobs and gap descriptors (from the seed-0 instance)."""
    rows = []
    for p in spec.settings():
        inst = make_instance(spec.generator, p, spec.root_seed, 0)
        rows.append({"experiment": spec.name, "setting_id": setting_id(p), **{k: p[k] for k in spec.knobs},
                     **(inst.describe() if getattr(inst, "sampled", False) else describe(inst))})
    return pd.DataFrame(rows)


def _check_device(spec, device: str) -> str:
    """The device neural estimators will use; refuses a missing PyTorch or CUDA up front."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if not any(e["name"] in NEURAL_SCHEMAS for e in spec.estimators):
        return device
    try:
        from ..neural.train import resolve_device
    except ImportError as e:
        raise ValueError(f"{spec.source}: neural estimators need PyTorch: pip install 'genver[neural]' ({e})") from e
    return str(resolve_device(device))


@run_scoped
def run(spec_path, out, *, workers: int = 1, resume: bool = False, smoke: bool = False,
        progress: bool = True, stream=None, executor: str = "local", scheduler: str | None = None,
        device: str = "auto", flush_seconds: float | None = None) -> dict:
    """Run (or resume) a sweep; returns a summary dict. Raises ``ValueError`` on bad input
    (including :class:`~genver.experiments.executors.ExecutorError`: an unreachable scheduler,
    version mismatches), before anything is written or any unit runs. ``device`` is where
    neural estimators train (``auto``: CUDA when available); it is recorded in the manifest.
    ``flush_seconds`` (default :data:`FLUSH_SECONDS`): finished units are written together once
    this much wall time has passed since the last write (0: each unit as it finishes)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    flush_seconds = FLUSH_SECONDS if flush_seconds is None else float(flush_seconds)
    if not (math.isfinite(flush_seconds) and flush_seconds >= 0):
        raise ValueError(f"flush_seconds must be a finite number >= 0, got {flush_seconds}")
    spec = load_spec(spec_path, smoke=smoke)
    spec.device = _check_device(spec, device)
    store = ResultStore(out)
    exists = store.root.exists() and any(store.root.iterdir())
    if exists and not resume:
        raise ValueError(f"{store.root}: directory is not empty; use --resume to continue a run, or another --out")
    if resume and exists:
        man = store.read_manifest()
        if man.get("spec_hash") != spec.hash():
            raise ValueError(f"{store.root}: was started with a different spec (or --smoke setting); refusing to mix results")
    else:
        man = None
    with make_executor(executor, workers=workers, scheduler=scheduler) as ex:
        if man is None:
            man = {"spec": spec.raw["spec"], "spec_path": str(spec_path), "spec_hash": spec.hash(), "smoke": smoke,
                   "experiment": spec.name, "knobs": spec.knobs, "expected": spec.expected, "expect": spec.expect,
                   "versions": package_versions(), "git_commit": git_commit(), "started": now_iso(),
                   "finished": None}
            store.root.mkdir(parents=True, exist_ok=True)
            store.write_manifest(man)
        for name in store.prepare():
            print(f"genver: {store.root}: shard {name} was unreadable and is removed; its units run again",
                  file=stream or sys.stderr)
        if not (store.root / "settings.parquet").exists():
            store.write_settings(settings_table(spec))
        # seed-major: the settings of one seed run one after another, sharing that seed's stream and
        # nested classes through the run-scoped memos (genver._memo) while they are fresh
        units = [(setting_id(p), p, s) for s in range(spec.seeds) for p in spec.settings()]
        done = store.done_units()
        todo = [u for u in units if (u[0], u[2]) not in done]
        per = spec.n_cells_per_unit
        bar = Progress(len(units) * per, stream=stream, enabled=progress)
        bar.update((len(units) - len(todo)) * per)
        t0 = time.perf_counter()
        seen = set()
        buffered = []  # finished units not yet written: (sid, seed, table)
        last_write = t0

        def flush():
            nonlocal last_write
            if buffered:
                store.write_batch(buffered)
                buffered.clear()  # only once written: a failed or interrupted write is retried
            last_write = time.perf_counter()

        try:
            with closing(ex.map(spec, todo)) as results:
                for sid, seed, table in results:
                    if (sid, seed) in seen:
                        continue  # a unit is written once, whatever reran it
                    seen.add((sid, seed))
                    buffered.append((sid, seed, table))
                    if time.perf_counter() - last_write >= flush_seconds:
                        flush()
                    bar.update(per)
            flush()
        except KeyboardInterrupt:
            flush()  # Ctrl-C loses no finished unit
            n_done = len(store.done_units())
            raise KeyboardInterrupt(f"interrupted: {n_done}/{len(units)} units saved in {store.root}; "
                                    f"rerun with --resume to finish") from None
        except BaseException:  # a unit's or worker's error: save the finished units first
            try:
                flush()
            except Exception as fe:  # noqa: BLE001 - report it, but raise the original error
                print(f"genver: {len(buffered)} finished units could not be saved: {fe!r}", file=stream or sys.stderr)
            raise
        described = ex.describe()
    missing = [u for u in todo if (u[0], u[2]) not in seen]
    if missing:  # an executor that silently dropped units would otherwise leave gaps
        raise RuntimeError(f"{len(missing)} units came back from no worker; rerun with --resume")
    man = store.read_manifest()
    man["finished"] = now_iso()
    man["cells_total"] = len(units) * per
    man["wall_time_s_last_run"] = time.perf_counter() - t0
    man["executor_last_run"] = described
    man["device_last_run"] = spec.device
    store.write_manifest(man)
    return {"out": str(store.root), "units": len(units), "units_run": len(todo), "cells": len(units) * per,
            "seconds": time.perf_counter() - t0, "executor": described}
