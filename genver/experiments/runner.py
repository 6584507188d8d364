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
computed once while it sits in the run's :class:`~genver.runcache.RunCache`: :func:`run`
creates one, uses it for the settings table and hands it to the executor (units run in other
processes use their own, see :mod:`genver.experiments.executors`); it is dropped when the run
ends, so nothing outlives the run.

One writer at a time: the run holds the results directory's lock
(:class:`~genver.experiments.store.RunLock`) from before it reads the directory until it ends. A
resumed run refuses to mix results of another genver, numpy, scipy or numba version or git
commit (:data:`PROVENANCE_PACKAGES`) unless ``allow_version_change``; the manifest's
``contributors`` then lists every version that wrote a shard, and each shard records its own
(the checks: :mod:`genver.experiments.manifest`).
Before anything is allocated the run's memory estimate (:mod:`genver.experiments.memory`) is
checked for ``workers`` units at a time. :func:`repair` rebuilds a lost manifest from the shards.

Interrupts: ``KeyboardInterrupt`` (Ctrl-C, and SIGTERM / SIGHUP, which ``genver run`` turns into
an :class:`Interrupted` carrying the signal) writes the buffered units, ends the executor's
workers, and propagates as :class:`Interrupted` with the count of saved units.

Progress goes to stderr: cells done / total, rate, ETA.
"""
from __future__ import annotations

import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any, cast

import pandas as pd

from ..runcache import RunCache
from .cells import make_instance
from .diagnostics import warn_degenerate_setup
from .executors import make_executor
from .generators import describe
from .manifest import PROVENANCE_PACKAGES, provenance_of, start_manifest
from .memory import check_memory
from .registry import ESTIMATORS
from .spec import Spec, load_spec, parse_spec, setting_id
from .store import LOCK_NAME, ResultStore, RunLock, now_iso, read_provenance

__all__ = ["run", "repair", "Progress", "Interrupted", "FLUSH_SECONDS", "PROVENANCE_PACKAGES",
           "expected_units"]

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or a signal (``signum``: SIGINT, SIGTERM, SIGHUP); the message
    says how many units are saved."""

    def __init__(self, message: str = "", signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


#: finished units are buffered and written as one shard once this much wall time has passed
#: since the last write (and at the end, on Ctrl-C and on errors): the most work a SIGKILL loses
FLUSH_SECONDS = 1.0


class Progress:
    """A one-line progress bar on stderr (a new line every 10% when not a terminal)."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.done0 = 0  # cells already done when this run started (not in the rate)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_decile = -1

    def start(self) -> None:
        """Count from here: the cells done so far (a resume's) are not part of the rate."""
        self.done0, self.t0 = self.done, time.perf_counter()

    def update(self, k: int) -> None:
        """Count ``k`` more finished cells and redraw the bar.

        Parameters
        ----------
        k : int
            Cells finished since the last update.
        """
        self.done += k
        if not self.enabled or (k == 0 and self.done < self.total):
            return
        el = time.perf_counter() - self.t0
        rate = (self.done - self.done0) / el if el > 0 else float("inf")
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


def settings_table(spec: Spec, *, cache: RunCache | None = None) -> pd.DataFrame:
    """One row per setting: id, knobs and gap descriptors (from the seed-0 instance; ``cache``:
    the run's :class:`~genver.runcache.RunCache`, shared with the units)."""
    rows = []
    for p in spec.settings():
        inst = make_instance(spec.generator, p, spec.root_seed, 0, cache=cache)
        rows.append({"experiment": spec.name, "setting_id": setting_id(p), **{k: p[k] for k in spec.knobs},
                     **(cast(Any, inst).describe() if getattr(inst, "sampled", False) else describe(inst))})
    return pd.DataFrame(rows)


def _check_device(spec, device: str) -> str:
    """The device neural estimators will use; refuses a missing PyTorch or CUDA up front."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if not any(ESTIMATORS[e["name"]].neural for e in spec.estimators):
        return device
    try:
        from ..neural.train import resolve_device
    except ImportError as e:
        raise ValueError(f"{spec.source}: neural estimators need PyTorch: pip install 'genver[neural]' ({e})") from e
    return str(resolve_device(device))


def _has_content(root) -> bool:
    """Whether ``root`` holds anything but a (released) lock file."""
    try:
        return any(p.name != LOCK_NAME for p in root.iterdir())
    except FileNotFoundError:
        return False


def expected_units(spec: Spec) -> set:
    """Every unit of the spec.

    Parameters
    ----------
    spec : genver.experiments.spec.Spec
        A parsed spec.

    Returns
    -------
    set
        ``{(setting_id, seed), ...}``: each setting with each seed ``0 … seeds − 1``.
    """
    sids = [setting_id(p) for p in spec.settings()]
    return {(sid, s) for s in range(spec.seeds) for sid in sids}


def run(spec_path, out, *, workers: int = 1, resume: bool = False, smoke: bool = False,
        progress: bool = True, stream=None, executor: str = "local", scheduler: str | None = None,
        device: str = "auto", flush_seconds: float | None = None, allow_version_change: bool = False,
        memory_limit=None, events: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) a sweep into a results directory.

    Everything is checked before anything is written or any unit runs; bad input raises
    ``ValueError`` (including :class:`~genver.experiments.executors.ExecutorError`: an
    unreachable scheduler, version mismatches; :class:`~genver.experiments.store.LockedError`:
    another run writes to ``out``). A degenerate but legal spec (one seed) runs with a
    :class:`~genver.experiments.diagnostics.DegenerateSetupWarning`. The run's memos live in one
    :class:`~genver.runcache.RunCache`, dropped when it returns or raises.

    Parameters
    ----------
    spec_path : str or path-like
        The spec's TOML file.
    out : str or path-like
        The results directory: new (or empty), or, with ``resume``, one this spec started.
    workers : int
        Worker processes (``local``, ``dask-local``) or threads (``threads``); ``>= 1``.
    resume : bool
        Continue the run in ``out``, skipping the units its shards hold.
    smoke : bool
        Run the spec's small ``[smoke]`` version.
    progress : bool
        Draw the progress bar (:class:`Progress`) on ``stream``.
    stream : file-like, optional
        Where the progress bar and notes go (default stderr).
    executor : str
        ``"local"``, ``"threads"``, ``"dask-local"`` or ``"dask"`` (see
        :mod:`genver.experiments.executors`).
    scheduler : str, optional
        The Dask scheduler's address (``tcp://HOST:PORT``), for ``executor="dask"``.
    device : str
        Where neural estimators train: ``"auto"`` (CUDA when available), ``"cpu"`` or
        ``"cuda"``; recorded in the manifest.
    flush_seconds : float, optional
        Finished units are written together once this much wall time has passed since the last
        write (default :data:`FLUSH_SECONDS`; 0: each unit as it finishes).
    allow_version_change : bool
        Resume a run written by other versions or another commit (see the module docstring).
    memory_limit : int or str, optional
        Bytes or a size like ``"8G"`` (``"off"``: no check) instead of the available memory.
    events : callable, optional
        Called with one dict per event (``genver run --json``): ``{"event": "start", ...}``
        before the first unit, ``{"event": "progress", "done", "total", "units_done",
        "units_total", "elapsed_s"}`` after each finished unit (``done`` / ``total`` count
        cells), ``{"event": "done", "out", "wall_s", ...}`` at the end.

    Returns
    -------
    dict
        ``out`` (the directory), ``units`` and ``cells`` (of the whole run), ``units_run`` (by
        this call), ``seconds`` (its wall time) and ``executor`` (its description).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    flush_seconds = FLUSH_SECONDS if flush_seconds is None else float(flush_seconds)
    if not (math.isfinite(flush_seconds) and flush_seconds >= 0):
        raise ValueError(f"flush_seconds must be a finite number >= 0, got {flush_seconds}")
    cache = RunCache()  # the run's memos: the spec check's seed-0 instances are the settings table's and the units'
    spec = load_spec(spec_path, smoke=smoke, memory_limit=memory_limit, cache=cache)
    spec.device = _check_device(spec, device)
    if workers > 1 and executor != "dask":  # dask: the units run on the cluster's machines
        check_memory(spec, workers=workers, limit=memory_limit)
    store = ResultStore(out)
    if store.root.exists() and not store.root.is_dir():
        raise ValueError(f"{store.root}: exists and is not a directory; give --out a new or results directory")
    if _has_content(store.root) and not resume:
        raise ValueError(f"{store.root}: directory is not empty; use --resume to continue a run, or another --out")
    warn_degenerate_setup(spec)
    with make_executor(executor, workers=workers, scheduler=scheduler) as ex:
        store.root.mkdir(parents=True, exist_ok=True)
        with RunLock(store.root) as lock:
            return _run_locked(spec, spec_path, store, lock, ex, resume=resume, smoke=smoke, progress=progress,
                               stream=stream, flush_seconds=flush_seconds, allow_version_change=allow_version_change,
                               cache=cache, events=events)


class _UnitSink:
    """Finished units on their way to the store: buffered and written as one shard once
    ``flush_seconds`` have passed since the last write (:meth:`flush` writes the rest), each
    written once whatever reran it, counted on the progress bar and in the ``progress`` events."""

    def __init__(self, store, lock, bar: Progress, flush_seconds: float, per: int, units_before: int,
                 n_units: int, events):
        self.store, self.lock, self.bar, self.flush_seconds, self.per = store, lock, bar, flush_seconds, per
        self.units_before, self.n_units, self.events = units_before, n_units, events
        self.seen: set = set()
        self.buffered: list = []  # finished units not yet written: (sid, seed, table)
        self.t0 = self.last_write = time.perf_counter()

    def add(self, sid: str, seed: int, table) -> None:
        if (sid, seed) in self.seen:
            return  # a unit is written once, whatever reran it
        self.seen.add((sid, seed))
        self.buffered.append((sid, seed, table))
        if time.perf_counter() - self.last_write >= self.flush_seconds:
            self.flush()
        self.bar.update(self.per)
        if self.events is not None:
            self.events({"event": "progress", "done": self.bar.done, "total": self.bar.total,
                         "units_done": self.units_before + len(self.seen), "units_total": self.n_units,
                         "elapsed_s": round(time.perf_counter() - self.t0, 3)})

    def flush(self) -> None:
        if self.buffered:
            self.store.write_batch(self.buffered)
            self.buffered.clear()  # only once written: a failed or interrupted write is retried
            self.lock.touch()  # the holder is alive (stale-lock detection across hosts)
        self.last_write = time.perf_counter()


def _prepare_store(store, spec, settings, cache, err) -> None:
    """Remove what a killed run left (temporary files, unreadable shards: their units run
    again), repair units written twice, and write the settings table if missing."""
    for name in store.prepare():
        print(f"genver: {store.root}: shard {name} was unreadable and is removed; its units run again", file=err)
    for line in store.repair_duplicates():
        print(f"genver: {store.root}: {line}", file=err)
    if not (store.root / "settings.parquet").exists():
        store.write_settings(settings_table(spec, cache=cache))


def _run_locked(spec, spec_path, store, lock, ex, *, resume, smoke, progress, stream, flush_seconds,
                allow_version_change, cache: RunCache, events) -> dict:
    """The part of :func:`run` that holds the directory's lock."""
    err = stream or sys.stderr
    exists = _has_content(store.root)  # again, under the lock: another run may have written meanwhile
    if exists and not resume:
        raise ValueError(f"{store.root}: directory is not empty; use --resume to continue a run, or another --out")
    settings = [(setting_id(p), p) for p in spec.settings()]
    n_units = spec.seeds * len(settings)
    start_manifest(store, spec, spec_path, resume=resume, exists=exists, smoke=smoke,
                    allow_version_change=allow_version_change, n_units=n_units, err=err)
    _prepare_store(store, spec, settings, cache, err)
    # seed-major: the settings of one seed run one after another, sharing that seed's stream and
    # nested classes through the run's cache while they are fresh; only the units still to do are listed
    done = store.done_units()
    todo = [(sid, p, s) for s in range(spec.seeds) for sid, p in settings if (sid, s) not in done]
    if resume and exists:
        log.info("%s: resuming: %d of %d units already done (skipped), %d to run", store.root,
                 n_units - len(todo), n_units, len(todo))
    per = spec.n_cells_per_unit
    bar = Progress(n_units * per, stream=stream, enabled=progress and bool(todo))
    bar.done = (n_units - len(todo)) * per  # a resume's finished cells: shown, not in the rate
    bar.start()  # a no-op resume prints no bar (genver run says "nothing to do")
    if events is not None:
        events({"event": "start", "spec": spec.name, "out": str(store.root), "executor": ex.describe(),
                "units_total": n_units, "units_todo": len(todo), "cells_total": n_units * per,
                "cells_done": bar.done})
    sink = _UnitSink(store, lock, bar, flush_seconds, per, n_units - len(todo), n_units, events)
    _run_units(ex, spec, todo, cache, sink, store, n_units, stream)
    described = ex.describe()
    missing = [u for u in todo if (u[0], u[2]) not in sink.seen]
    if missing:  # an executor that silently dropped units would otherwise leave gaps
        raise RuntimeError(f"{len(missing)} units came back from no worker; rerun with --resume")
    wall = time.perf_counter() - sink.t0
    man = store.read_manifest()
    man.update(finished=now_iso(), cells_total=n_units * per, units_total=n_units, wall_time_s_last_run=wall,
               executor_last_run=described, device_last_run=spec.device)
    store.write_manifest(man)
    summary = {"out": str(store.root), "units": n_units, "units_run": len(todo), "cells": n_units * per,
               "seconds": time.perf_counter() - sink.t0, "executor": described}
    if events is not None:
        events({"event": "done", "out": summary["out"], "wall_s": round(summary["seconds"], 3),
                "cells": summary["cells"], "units": n_units, "units_run": len(todo), "executor": described})
    return summary


def _run_units(ex, spec, todo: list, cache: RunCache, sink: _UnitSink, store, n_units: int, stream) -> None:
    """Run the units through the executor into ``sink``; Ctrl-C (or SIGTERM / SIGHUP) and
    errors write the finished units first."""
    try:
        with closing(ex.map(spec, todo, cache=cache)) as results:
            for sid, seed, table in results:
                sink.add(sid, seed, table)
        sink.flush()
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        sink.flush()  # Ctrl-C (or SIGTERM / SIGHUP) loses no finished unit
        n_done = len(store.done_units())
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        raise Interrupted(f"{what}: {n_done}/{n_units} units saved in {store.root}; "
                          f"rerun with --resume to finish", signum) from None
    except BaseException:  # a unit's or worker's error: save the finished units first
        try:
            sink.flush()
        except Exception as fe:  # noqa: BLE001 - report it, but raise the original error
            print(f"genver: {len(sink.buffered)} finished units could not be saved: {fe!r}",
                  file=stream or sys.stderr)
        raise


def repair(root, stream=None) -> dict:
    """Rebuild a lost ``manifest.json`` (and ``settings.parquet``) of a results directory from
    its shards' provenance (spec, hash, ``--smoke`` flag, versions, commit); refuses (``ValueError``)
    when the shards come from different specs or carry no provenance, and when
    ``manifest.json`` exists. Holds the directory's lock.

    Parameters
    ----------
    root : str or path-like
        The results directory.
    stream : file-like, optional
        Where the one-line summary goes (default stderr).

    Returns
    -------
    dict
        The new manifest.
    """
    store = ResultStore(root)
    if not store.root.is_dir():
        raise ValueError(f"{store.root}: not a directory")
    with RunLock(store.root):
        if store.manifest_path.exists():
            raise ValueError(f"{store.manifest_path}: exists; repair only rebuilds a lost manifest")
        shards = store.shard_units()
        if not shards:
            raise ValueError(f"{store.root}: no readable shards to rebuild the manifest from")
        read = {p.name: read_provenance(p) for p in shards}
        missing = sorted(n for n, v in read.items() if v is None)
        if missing:
            raise ValueError(f"{store.root}: shard {missing[0]} (and {len(missing) - 1} more) carries no provenance "
                             f"(written by a genver before shards recorded it); the manifest cannot be rebuilt")
        provs = {n: v for n, v in read.items() if v is not None}
        hashes = {v["spec_hash"] for v in provs.values()}
        if len(hashes) > 1:
            raise ValueError(f"{store.root}: the shards come from {len(hashes)} different specs; refusing to "
                             f"rebuild one manifest for them")
        first = provs[min(provs)]
        src = first.get("spec_path") or "<spec from the shards>"
        spec = parse_spec(first["spec"], source=src, smoke=bool(first["smoke"]), memory_limit="off")
        if spec.hash() != first["spec_hash"]:
            raise ValueError(f"{store.root}: the spec in the shards does not hash to their spec_hash "
                             f"(another genver's spec format?); refusing to rebuild")
        contributors = []
        for v in provs.values():
            c = provenance_of(v["versions"], v.get("git_commit"))
            if c not in contributors:
                contributors.append(c)
        man = {"spec": first["spec"], "spec_path": first.get("spec_path"), "spec_hash": first["spec_hash"],
               "smoke": bool(first["smoke"]), "experiment": spec.name, "knobs": spec.knobs,
               "expected": spec.expected, "expect": spec.expect, "versions": first["versions"],
               "git_commit": first.get("git_commit"), "contributors": contributors, "started": None,
               "finished": None, "units_total": spec.seeds * len(spec.settings()),
               "repaired": now_iso()}
        if not (store.root / "settings.parquet").exists():
            store.write_settings(settings_table(spec))
        store.write_manifest(man)
    n = len(store.done_units())
    print(f"genver: {store.root}: manifest.json rebuilt from {len(shards)} shards ({n} of {man['units_total']} "
          f"units); finish the run with `genver run SPEC --out {store.root} --resume`", file=stream or sys.stderr)
    return man
