"""Where the units of a sweep run: one small interface, four executors.

An executor takes the spec and the units still to do (``(setting_id, params, seed)``) and
yields ``(setting_id, seed, table)`` as units finish, in any order (``table``: the unit's
columns, :func:`~genver.experiments.cells.unit_columns`); the caller
(:func:`genver.experiments.runner.run`) writes the tables to shards. Executors never write
files, so a remote cluster needs no shared filesystem, and the result store is the same
whatever ran the units: a sweep started with one executor can be resumed with another.

=============  ==============================================================================
``local``      ``workers = 1``: in this process; ``workers > 1``: a pool of local processes
               (``spawn``), one unit per task
``threads``    ``workers`` threads in this process, each taking the next seed's units in order;
               kernels run serially and release the GIL (see :class:`ThreadUnitExecutor`)
``dask-local`` a Dask ``LocalCluster`` on loopback (127.0.0.1): ``workers`` processes with one
               thread each (needs the ``dist`` extra)
``dask``       an existing Dask distributed cluster at ``scheduler`` (``tcp://HOST:PORT``)
=============  ==============================================================================

Dask: before any unit runs, the client connects (a short timeout: an unreachable scheduler is
one :class:`ExecutorError`), waits briefly for a worker, and runs a probe on every worker that
compares the versions of genver (and a hash of its source), Python, numpy, scipy, numba,
pandas, dask and distributed with the client's; a mismatch or a worker that cannot import
genver is an :class:`ExecutorError` naming the package, the versions and the worker. Every task
re-checks the versions, so a worker that joins later cannot slip in different code. Units
are batched into tasks of about :data:`TARGET_TASK_S` seconds (sized from the measured time
per unit, and split finer towards the end so workers finish together); about two tasks per
worker thread are in flight. Tasks are pure functions of their arguments with unique keys
and ``retries``: when a worker dies mid-task the scheduler reruns its tasks elsewhere, and
since a unit's numbers depend only on the unit (see :mod:`genver.experiments.cells`) the
table is the same as the local one. The client writes a unit at most once. Each unit runs
numba on one thread (as in the local pool; start workers with ``--nthreads 1``), and
``dask-local`` workers run with :data:`LOCAL_CLUSTER_CONFIG`.
"""
from __future__ import annotations

import asyncio
import hashlib
import math
import multiprocessing as mp
import os
import pathlib
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from typing import Iterator

from ..runcache import RunCache
from .cells import unit_columns

__all__ = ["EXECUTORS", "Executor", "ExecutorError", "InProcessExecutor", "ThreadUnitExecutor",
           "ProcessPoolUnitExecutor", "DaskExecutor", "make_executor", "runtime_versions", "compare_versions"]

#: executor names accepted by ``genver run --executor``
EXECUTORS = ("local", "threads", "dask-local", "dask")
#: seconds to reach a scheduler (and to wait for its first worker) before giving up
CONNECT_TIMEOUT_S = 5.0
#: seconds the workers may take to import genver and answer the version probe
PROBE_TIMEOUT_S = 120.0
#: aim for Dask tasks of about this many seconds of work
TARGET_TASK_S = 2.0
#: a task that raises is retried this many times (a worker that dies mid-task is handled by
#: the scheduler: its tasks are rerun elsewhere, up to ``distributed.scheduler.allowed-failures``)
RETRIES = 3
#: Dask settings for the workers of ``dask-local`` (recommended for any cluster, see the README):
#: Dask's nannies set ``MALLOC_TRIM_THRESHOLD_``, which turns off glibc's adaptive mmap threshold,
#: so every large numpy temporary is mmapped and unmapped again: a unit ran ~20% slower
#: (measured, gap_finite); the statistical profiler costs another few percent
LOCAL_CLUSTER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                        "distributed.worker.profile.enabled": False}
#: the packages whose versions must agree between the client and every worker
CHECKED_PACKAGES = ("genver", "genver_source", "python", "numpy", "scipy", "numba", "pandas", "dask", "distributed")


class ExecutorError(ValueError):
    """The executor cannot run the sweep (unreachable scheduler, version mismatch, ...)."""


# -- what runs on a worker ------------------------------------------------------------------
_SOURCE_HASH = None
_VERSIONS = None
_NUMBA_LOCK = threading.Lock()
_UNITS_RUN = 0  # units run by this process (the first one loads the numba kernels)


def _genver_source_hash() -> str:
    """SHA-1 (12 hex digits) of genver's Python sources: equal version strings, different code."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        root = pathlib.Path(__file__).resolve().parents[1]
        h = hashlib.sha1()
        for p in sorted(root.rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
        _SOURCE_HASH = h.hexdigest()[:12]
    return _SOURCE_HASH


def runtime_versions() -> dict:
    """Versions of what decides a unit's numbers (and what must unpickle on both sides)."""
    global _VERSIONS
    if _VERSIONS is None:
        import platform

        from .store import package_versions
        v = {k: package_versions()[k] for k in ("genver", "numpy", "scipy", "numba", "pandas")}
        v["genver_source"] = _genver_source_hash()
        v["python"] = ".".join(platform.python_version_tuple()[:2])
        for mod in ("dask", "distributed"):
            try:
                v[mod] = __import__(mod).__version__
            except ImportError:
                v[mod] = None
        _VERSIONS = v
    return dict(_VERSIONS)


def compare_versions(client: dict, worker: dict, where: str) -> str | None:
    """The first mismatch between two :func:`runtime_versions` dicts as one sentence, else None."""
    for k in CHECKED_PACKAGES:
        a, b = client.get(k), worker.get(k)
        if a != b:
            if k == "genver_source":
                return (f"version mismatch: genver sources differ between this client and worker {where} "
                        f"(same version {client.get('genver')}, source hash {a} here vs {b} there); "
                        f"install the same genver code on every machine")
            return (f"version mismatch: {k} {a} on this client vs {b} on worker {where}; "
                    f"install the same versions everywhere (pip install 'genver[dist]=={client.get('genver')}')")
    return None


def _probe() -> dict:
    """Run on every worker before the sweep: its versions and threads (raises if genver is missing)."""
    return runtime_versions()


_THREAD_SAFE = None


def _numba_thread_safe() -> bool:
    """Whether numba's threading layer allows parallel kernels from several threads at once
    (``omp``, ``tbb``; ``workqueue`` aborts the process)."""
    global _THREAD_SAFE
    if _THREAD_SAFE is None:
        try:
            import numba
            from numba.np.ufunc.parallel import _launch_threads
            _launch_threads()
            _THREAD_SAFE = numba.threading_layer() in ("omp", "tbb")
        except Exception:  # noqa: BLE001 - unknown: be safe
            _THREAD_SAFE = False
    return _THREAD_SAFE


def _worker_threads() -> int:
    try:
        from distributed import get_worker
        return int(get_worker().state.nthreads)
    except Exception:  # noqa: BLE001 - not on a dask worker
        return 1


def _run_batch(spec, units: list, expected_versions: dict | None = None) -> list:
    """Run ``units`` (a list of ``(sid, params, seed)``); returns ``[(sid, seed, table, seconds,
    warm)]`` (``warm`` is False for the first unit of a process: its time includes loading the
    numba kernels).

    Pure: the result depends only on the arguments, so a task rerun after a worker died gives
    the same tables. Numba runs one thread per unit (as in the local pool); where numba's
    threading layer is not thread-safe (``workqueue``) and the worker has several threads,
    units of this process run one at a time. The batch's units share one
    :class:`~genver.runcache.RunCache`, dropped when the batch ends, so a long-lived worker keeps
    nothing between batches.
    """
    if expected_versions is not None:
        msg = compare_versions(expected_versions, runtime_versions(), _worker_name())
        if msg:
            raise ExecutorError(msg)
    import numba
    numba.set_num_threads(1)
    lock = _NUMBA_LOCK if (_worker_threads() > 1 and not _numba_thread_safe()) else None
    global _UNITS_RUN
    out = []
    cache = RunCache()
    for sid, params, seed in units:
        t0 = time.perf_counter()
        if lock is None:
            table = unit_columns(spec, params, sid, seed, cache=cache)
        else:
            with lock:
                table = unit_columns(spec, params, sid, seed, cache=cache)
        out.append((sid, seed, table, time.perf_counter() - t0, _UNITS_RUN > 0))
        _UNITS_RUN += 1
    return out


def _worker_name() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except Exception:  # noqa: BLE001 - not on a dask worker
        return f"pid {os.getpid()}"


#: the run cache of a pool worker process: made by :func:`_init_pool_worker` and shared by the units
#: the process runs; the process serves one ``map`` (one run) and ends with it
_POOL_CACHE: RunCache | None = None


def _init_pool_worker():
    global _POOL_CACHE
    import numba
    numba.set_num_threads(1)
    _POOL_CACHE = RunCache()


def _pool_unit(spec, params: dict, sid: str, seed: int) -> tuple:
    return sid, seed, unit_columns(spec, params, sid, seed, cache=_POOL_CACHE)


# -- the interface --------------------------------------------------------------------------
class Executor:
    """Runs units and yields ``(sid, seed, table)`` as they finish. Use as a context manager:
    entering it starts/connects and checks everything needed *before* any unit runs.
    ``map(spec, units, cache=None)``: ``cache`` is the run's :class:`~genver.runcache.RunCache`
    for the units run in this process (None: a new one for this map); units run in other
    processes share one per process (local pool) or per task (Dask)."""

    name = "executor"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return self.name

    def map(self, spec, units: list, cache: RunCache | None = None) -> Iterator[tuple]:  # pragma: no cover
        raise NotImplementedError


class InProcessExecutor(Executor):
    """Every unit in this process, in order."""

    name = "local"

    def map(self, spec, units, cache: RunCache | None = None):
        cache = RunCache() if cache is None else cache
        for sid, params, seed in units:
            yield sid, seed, unit_columns(spec, params, sid, seed, cache=cache)


class ThreadUnitExecutor(Executor):
    """``workers`` threads in this process. The units are grouped by seed; each thread takes the
    next seed and runs its settings in order, so they share that seed's stream and nested
    classes through the run's :class:`~genver.runcache.RunCache` (one for all threads). While it runs, every kernel
    takes its serial driver (:func:`genver._kernels.serial_kernels`: numba's ``workqueue``
    layer cannot start parallel regions from two threads) and releases the GIL, so the threads
    use the cores; Python-level work still takes turns on the GIL. BLAS runs on one thread
    meanwhile (as inside every fit of the other executors). No start-up cost (unlike a
    process pool), so it suits quick finite-class sweeps whose time is in the kernels;
    estimators that spend theirs in Python or BLAS gain less. A unit's numbers are those of
    any other executor (serial and parallel drivers give the same bits)."""

    name = "threads"

    def __init__(self, workers: int):
        self.workers = workers

    def describe(self) -> str:
        return f"threads ({self.workers})"

    def map(self, spec, units, cache: RunCache | None = None):
        import queue

        from .. import _kernels
        cache = RunCache() if cache is None else cache
        by_seed: dict = {}
        for u in units:
            by_seed.setdefault(u[2], []).append(u)
        todo = queue.SimpleQueue()
        for group in by_seed.values():
            todo.put(group)
        done = queue.SimpleQueue()
        stop = threading.Event()

        def work():
            while not stop.is_set():
                try:
                    group = todo.get_nowait()
                except queue.Empty:
                    return
                for sid, params, seed in group:
                    if stop.is_set():
                        return
                    try:
                        done.put((sid, seed, unit_columns(spec, params, sid, seed, cache=cache)))
                    except BaseException as e:  # noqa: BLE001 - handed to the consumer, who raises it
                        done.put(e)
                        return

        from .._solve import _blas_one_thread
        # BLAS on one thread for the whole map, not only inside each fit: threadpoolctl's limit is
        # process-wide, and one unit leaving its fit's limit would otherwise lift it for another
        # unit still fitting (multi-threaded BLAS may sum in another order: other bits)
        with _kernels.serial_kernels(), _blas_one_thread():
            threads = [threading.Thread(target=work, name=f"genver-unit-{i}", daemon=True)
                       for i in range(min(self.workers, len(by_seed)))]
            for t in threads:
                t.start()
            try:
                for _ in range(len(units)):
                    while True:
                        try:
                            item = done.get(timeout=0.1)  # a timeout keeps Ctrl-C responsive
                            break
                        except queue.Empty:
                            if not any(t.is_alive() for t in threads) and done.empty():
                                raise RuntimeError("the unit threads stopped before every unit was done")
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:  # an error or the consumer stopping (Ctrl-C): threads finish their unit and stop
                stop.set()
                for t in threads:
                    t.join()


class ProcessPoolUnitExecutor(Executor):
    """A pool of ``workers`` local processes (``spawn``; numba one thread each), one unit per task."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers

    def describe(self) -> str:
        return f"local ({self.workers} processes)"

    def map(self, spec, units, cache: RunCache | None = None):
        if len(units) <= 1:
            yield from InProcessExecutor().map(spec, units, cache)
            return
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_pool_worker) as pool:
            pending = {pool.submit(_pool_unit, spec, p, sid, s) for sid, p, s in units}
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        yield f.result()
            finally:  # an error or the consumer stopping (Ctrl-C, SIGTERM): drop the queued units
                for f in pending:
                    f.cancel()
                if pending:  # and end the workers now rather than after their units: no orphans
                    _end_pool(pool)


def _end_pool(pool: ProcessPoolExecutor, timeout: float = 5.0) -> None:
    """Terminate the pool's worker processes (SIGTERM, then SIGKILL after ``timeout``) and
    join them. ``ProcessPoolExecutor.shutdown`` alone waits for the units they are running,
    and a parent that dies meanwhile leaves them running as orphans."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ExecutorError("the dask executors need the 'dist' extra: pip install 'genver[dist]'") from None
    return distributed


class DaskExecutor(Executor):
    """Units on a Dask distributed cluster: an existing one (``scheduler='tcp://HOST:PORT'``) or a
    ``LocalCluster`` on loopback with ``local_workers`` single-threaded processes."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, *, local_workers: int | None = None,
                 connect_timeout: float | None = None):
        if (scheduler is None) == (local_workers is None):
            raise ValueError("DaskExecutor: give exactly one of scheduler= and local_workers=")
        self.scheduler, self.local_workers = scheduler, local_workers
        self.timeout = CONNECT_TIMEOUT_S if connect_timeout is None else connect_timeout
        self.cluster = self.client = None
        self.versions = runtime_versions()
        distributed = _import_distributed()
        try:
            self._start(distributed)
            self._check_workers()
        except BaseException:
            self.close()
            raise

    def _start(self, distributed) -> None:
        import logging
        if self.local_workers is not None:
            import dask
            self.name = "dask-local"
            with dask.config.set(LOCAL_CLUSTER_CONFIG):
                self.cluster = distributed.LocalCluster(
                    n_workers=self.local_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, silence_logs=logging.ERROR)
            address = self.cluster.scheduler_address
        else:
            address = self.scheduler
            if not isinstance(address, str) or ":" not in address:
                raise ExecutorError(f"--scheduler {address!r}: expected an address like tcp://HOST:PORT")
            self._tcp_precheck(address)
        self.client = self._client_within_deadline(distributed, address)

    def _client_within_deadline(self, distributed, address: str):
        """``Client(address)``, or an ExecutorError after about ``timeout`` seconds. Dask's own
        timeout does not cover the handshake (a peer that accepts the connection and never
        answers hangs ``Client()`` forever), so the client is made in a daemon thread."""
        box, abandoned = {}, threading.Event()

        def connect():
            try:
                c = distributed.Client(address, timeout=self.timeout, set_as_default=False)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box["error"] = e
                return
            if abandoned.is_set():  # it came too late: the caller has given up
                c.close()
            else:
                box["client"] = c

        t = threading.Thread(target=connect, name="genver-dask-connect", daemon=True)
        t.start()
        t.join(self.timeout + 2.0)
        if t.is_alive():
            abandoned.set()
            raise ExecutorError(f"cannot reach the Dask scheduler at {address} within {self.timeout:g} s "
                                f"(no Dask handshake: is it a Dask scheduler's address?)")
        e = box.get("error")
        if e is not None:
            if not isinstance(e, (OSError, TimeoutError, asyncio.TimeoutError, ValueError, TypeError)):
                raise e
            detail = " ".join(str(e).split()) or type(e).__name__
            raise ExecutorError(f"cannot reach the Dask scheduler at {address} within {self.timeout:g} s "
                                f"({detail}); is `dask scheduler` running there?")
        return box["client"]

    def _tcp_precheck(self, address: str) -> None:
        """A plain TCP connect first: a refused or unroutable address fails at once, with the OS's
        reason (Dask's own connect retries until its timeout and then only says 'timed out')."""
        import socket

        from distributed.comm.addressing import parse_address, parse_host_port
        try:
            scheme, loc = parse_address(address)
            if scheme != "tcp":
                return  # tls://, ucx://, ...: leave it to Dask
            host, port = parse_host_port(loc)
            if not 0 < int(port) < 65536:
                raise ValueError(f"port {port} out of range")
        except ValueError as e:
            raise ExecutorError(f"--scheduler {address!r}: {e}; expected tcp://HOST:PORT") from None
        try:
            socket.create_connection((host, port), timeout=self.timeout).close()
        except OSError as e:
            reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
            raise ExecutorError(f"cannot reach the Dask scheduler at {address} ({reason}); "
                                f"is `dask scheduler` running there?") from None

    def _check_workers(self) -> None:
        try:
            self.client.wait_for_workers(1, timeout=self.timeout)
        except (TimeoutError, asyncio.TimeoutError, OSError):
            raise ExecutorError(f"the Dask scheduler at {self.client.scheduler.address} has no workers "
                                f"(waited {self.timeout:g} s); start some with `dask worker "
                                f"{self.client.scheduler.address}`") from None
        box = {}

        def probe():
            try:
                box["probes"] = self.client.run(_probe, on_error="return")
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box["error"] = e

        t = threading.Thread(target=probe, name="genver-dask-probe", daemon=True)
        t.start()
        t.join(PROBE_TIMEOUT_S)
        if t.is_alive():
            raise ExecutorError(f"the version probe got no answer from the Dask workers within {PROBE_TIMEOUT_S:g} s")
        if "error" in box:
            e = box["error"]
            raise ExecutorError(f"the version probe failed on the Dask workers: {type(e).__name__}: {e}")
        probes = box["probes"]
        for addr, res in sorted(probes.items()):
            if isinstance(res, BaseException):
                # errors raised while unpickling the probe come back wrapped as Exception(repr(error))
                detail = str(res.args[0]) if type(res) is Exception and res.args else f"{type(res).__name__}: {res}"
                if isinstance(res, ImportError) or "genver" in detail:
                    raise ExecutorError(f"worker {addr} cannot import genver ({detail}); install the same version "
                                        f"there: pip install 'genver[dist]=={self.versions['genver']}'")
                raise ExecutorError(f"the version probe failed on worker {addr}: {detail}")
            msg = compare_versions(self.versions, res, addr)
            if msg:
                raise ExecutorError(msg)

    def threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def describe(self) -> str:
        where = "LocalCluster on 127.0.0.1" if self.cluster is not None else self.client.scheduler.address
        n = len(self.client.nthreads())
        return f"{self.name} ({where}, {n} workers, {self.threads()} threads)"

    def map(self, spec, units, cache: RunCache | None = None):  # each task has its own cache (_run_batch)
        from distributed import as_completed
        from distributed.scheduler import KilledWorker
        if not units:
            return
        # seed-major order: every batch mixes the settings, so its cost is about proportional to its
        # size even when some settings are much slower than others (the order changes no number)
        rank = {}
        queue = sorted(units, key=lambda u: (u[2], rank.setdefault(u[0], len(rank))))
        threads = self.threads()
        token = uuid.uuid4().hex[:8]
        times = {True: [0, 0.0], False: [0, 0.0]}  # warm / first-in-process units: count, seconds
        count, largest = 0, 1

        def batch_size() -> int:
            # the mean measured seconds per unit (warm units where there are some; 1 unit per task
            # until something has come back), growing at most 2x per task while the estimate rests
            # on few units, and capped so the remaining units still spread over every thread twice
            # and the workers finish together
            nonlocal largest
            n, secs = times[True] if times[True][0] else times[False]
            k = 1 if n == 0 else max(1, int(TARGET_TASK_S / max(secs / n, 1e-3)))
            k = max(1, min(k, 2 * largest, math.ceil(len(queue) / (2 * threads))))
            largest = max(largest, k)
            return k

        def submit():
            nonlocal count
            k = batch_size()
            batch, queue[:k] = queue[:k], []
            count += 1
            return self.client.submit(_run_batch, spec, batch, self.versions, key=f"genver-units-{token}-{count}",
                                      pure=False, retries=RETRIES)

        in_flight = set()
        try:
            while queue and len(in_flight) < 2 * threads:
                in_flight.add(submit())
            futures = as_completed(list(in_flight), loop=self.client.loop)
            for f in futures:
                in_flight.discard(f)
                try:
                    res = f.result()
                except CancelledError as e:  # the scheduler went away (or someone cancelled our tasks)
                    raise ExecutorError(f"lost the Dask tasks ({' '.join(str(e).split())}); the units saved so "
                                        f"far are kept: rerun with --resume") from None
                except KilledWorker as e:
                    raise ExecutorError(f"a batch of units was running on every Dask worker that died under it "
                                        f"({' '.join(str(e).split()[:14])}...; out of memory?); the units saved "
                                        f"so far are kept: rerun with --resume") from None
                for sid, seed, df, secs, warm in res:
                    times[warm][0] += 1
                    times[warm][1] += secs
                    yield sid, seed, df
                threads = self.threads()  # workers may have joined (adaptive clusters) or left
                while queue and len(in_flight) < 2 * threads:
                    g = submit()
                    in_flight.add(g)
                    futures.add(g)
        finally:  # an error or the consumer stopping (Ctrl-C): drop the tasks still queued or running
            if in_flight and self.client is not None:
                self.client.cancel(list(in_flight), force=True)

    def close(self) -> None:
        for obj in (self.client, self.cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        self.client = self.cluster = None


def make_executor(executor: str = "local", *, workers: int = 1, scheduler: str | None = None) -> Executor:
    """The executor for ``genver run --executor``; Dask ones connect and check here."""
    if executor not in EXECUTORS:
        raise ValueError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if scheduler is not None and executor != "dask":
        raise ValueError("--scheduler is only for --executor dask")
    if executor == "dask":
        if scheduler is None:
            raise ValueError("--executor dask needs --scheduler tcp://HOST:PORT (or use --executor dask-local)")
        if workers != 1:
            raise ValueError("--workers does not apply to --executor dask: the cluster's workers are set where "
                             "it is started (dask worker --nworkers N)")
        return DaskExecutor(scheduler)
    if executor == "dask-local":
        return DaskExecutor(local_workers=workers)
    if executor == "threads":
        return ThreadUnitExecutor(workers)
    return InProcessExecutor() if workers == 1 else ProcessPoolUnitExecutor(workers)
