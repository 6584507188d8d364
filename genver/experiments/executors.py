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

The Dask executors live in :mod:`genver.experiments.dask_executor` (version probe, task batching,
retries); the functions their workers run (:func:`run_batch`, :func:`runtime_versions`) live here.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import multiprocessing as mp
import os
import pathlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..runcache import RunCache
from .cells import unit_columns

log = logging.getLogger(__name__)

__all__ = ["EXECUTORS", "Executor", "ExecutorError", "InProcessExecutor", "ThreadUnitExecutor",
           "ProcessPoolUnitExecutor", "make_executor", "runtime_versions", "compare_versions"]
#: names that live in genver.experiments.dask_executor, importable from here too
_DASK_NAMES = ("DaskExecutor", "CONNECT_TIMEOUT_S", "PROBE_TIMEOUT_S", "TARGET_TASK_S", "RETRIES",
               "LOCAL_CLUSTER_CONFIG")

#: executor names accepted by ``genver run --executor``
EXECUTORS = ("local", "threads", "dask-local", "dask")
#: the packages whose versions must agree between the client and every worker
CHECKED_PACKAGES = ("genver", "genver_source", "python", "numpy", "scipy", "numba", "pandas", "dask", "distributed")


class ExecutorError(ValueError):
    """The executor cannot run the sweep (unreachable scheduler, version mismatch, ...)."""


# -- what runs on a worker ------------------------------------------------------------------
_SOURCE_HASH = None
_VERSIONS = None
_NUMBA_LOCK = threading.Lock()
_UNITS_RUN = 0  # units run by this process (the first one loads the numba kernels)


#: the packages genver installs (``[tool.setuptools] packages`` of pyproject.toml; a test keeps them equal)
SOURCE_PACKAGES = ("genver", "genver._kernels", "genver.classes", "genver.estimators", "genver.experiments",
                   "genver.neural", "genver.plots", "genver.stats", "genver.theory", "genver.sims")


def _genver_source_hash() -> str:
    """SHA-1 (12 hex digits) of genver's Python sources: equal version strings, different code.
    Every module of :data:`SOURCE_PACKAGES` is hashed under its import name (``genver/theory/
    runner.py``), wherever the import system finds it, so an editable install (``theory/`` beside
    the package) and a wheel of the same commit (``genver/theory/`` inside it) agree."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        h = hashlib.sha1()
        for pkg in SOURCE_PACKAGES:
            spec = importlib.util.find_spec(pkg)
            if spec is None or not spec.submodule_search_locations:
                raise ImportError(f"genver source hash: package {pkg} not found")
            prefix = pkg.replace(".", "/")
            for folder in spec.submodule_search_locations:
                for p in sorted(pathlib.Path(folder).glob("*.py")):
                    h.update(f"{prefix}/{p.name}".encode() + b"\0" + p.read_bytes() + b"\0")
        _SOURCE_HASH = h.hexdigest()[:12]
    return _SOURCE_HASH


def runtime_versions() -> dict:
    """Versions of what decides a unit's numbers (and what must unpickle on both sides).

    Returns
    -------
    dict
        genver, its source hash, Python (major.minor), numpy, scipy, numba, pandas, dask and
        distributed (None when not installed).
    """
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
    """The first mismatch between two :func:`runtime_versions` dicts.

    Parameters
    ----------
    client, worker : dict
        The versions of this process and of a worker.
    where : str
        The worker, as the message names it.

    Returns
    -------
    str or None
        One sentence naming the package and both versions; None when they agree.
    """
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


def probe_worker() -> dict:
    """Run on every worker before the sweep: its versions and threads (raises if genver is missing)."""
    return runtime_versions()


_THREAD_SAFE = None


def _numba_thread_safe() -> bool:
    """Whether numba's threading layer allows parallel kernels from several threads at once
    (``omp``, ``tbb``; ``workqueue`` aborts the process). ``numba.get_num_threads()`` starts the
    layer (public API), after which ``numba.threading_layer()`` names it."""
    global _THREAD_SAFE
    if _THREAD_SAFE is None:
        try:
            import numba
            numba.get_num_threads()
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


def run_batch(spec, units: list, expected_versions: dict | None = None) -> list:
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
        """Release the executor's workers (a no-op for the in-process executors)."""

    def describe(self) -> str:
        """The executor in words, as the manifest records it.

        Returns
        -------
        str
            E.g. ``local``, ``threads (4)``, ``local (4 processes)``.
        """
        return self.name

    def map(self, spec, units: list, cache: RunCache | None = None) -> Iterator[tuple]:  # pragma: no cover
        """Run the units.

        Parameters
        ----------
        spec : genver.experiments.spec.Spec
            The sweep.
        units : list of tuple
            ``(setting_id, params, seed)`` of each unit to run.
        cache : genver.runcache.RunCache, optional
            The run's cache for the units run in this process (None: a new one).

        Yields
        ------
        tuple
            ``(setting_id, seed, table)`` as units finish (``table``:
            :func:`~genver.experiments.cells.unit_columns`).
        """
        raise NotImplementedError


class InProcessExecutor(Executor):
    """Every unit in this process, in order."""

    name = "local"

    def map(self, spec, units, cache: RunCache | None = None):
        """Run the units (see :meth:`Executor.map`).

        Parameters
        ----------
        spec : genver.experiments.spec.Spec
            The sweep.
        units : list of tuple
            ``(setting_id, params, seed)`` of each unit to run.
        cache : genver.runcache.RunCache, optional
            The run's cache (None: a new one).

        Yields
        ------
        tuple
            ``(setting_id, seed, table)`` as units finish, in order.
        """
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
        """The executor in words, as the manifest records it.

        Returns
        -------
        str
            ``threads (WORKERS)``.
        """
        return f"threads ({self.workers})"

    def map(self, spec, units, cache: RunCache | None = None):
        """Run the units (see :meth:`Executor.map`).

        Parameters
        ----------
        spec : genver.experiments.spec.Spec
            The sweep.
        units : list of tuple
            ``(setting_id, params, seed)`` of each unit to run.
        cache : genver.runcache.RunCache, optional
            The run's cache, shared by the threads (None: a new one).

        Yields
        ------
        tuple
            ``(setting_id, seed, table)`` as units finish.
        """
        import queue

        from .. import _kernels
        cache = RunCache() if cache is None else cache
        by_seed: dict = {}
        for u in units:
            by_seed.setdefault(u[2], []).append(u)
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for group in by_seed.values():
            todo.put(group)
        done: queue.SimpleQueue = queue.SimpleQueue()
        if self.workers > len(by_seed):
            log.info("threads: %d threads asked for, %d used: a thread runs the units of one seed in order, and %d "
                     "seed(s) have units to run", self.workers, len(by_seed), len(by_seed))
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

        from .._solve import blas_one_thread
        # BLAS on one thread for the whole map, not only inside each fit: threadpoolctl's limit is
        # process-wide, and one unit leaving its fit's limit would otherwise lift it for another
        # unit still fitting (multi-threaded BLAS may sum in another order: other bits)
        with _kernels.serial_kernels(), blas_one_thread():
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
                                raise RuntimeError(
                                    "the unit threads stopped before every unit was done") from None
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
        """The executor in words, as the manifest records it.

        Returns
        -------
        str
            ``local (WORKERS processes)``.
        """
        return f"local ({self.workers} processes)"

    def map(self, spec, units, cache: RunCache | None = None):
        """Run the units (see :meth:`Executor.map`).

        Parameters
        ----------
        spec : genver.experiments.spec.Spec
            The sweep.
        units : list of tuple
            ``(setting_id, params, seed)`` of each unit to run.
        cache : genver.runcache.RunCache, optional
            The run's cache, for a single unit run in this process (each worker has its own).

        Yields
        ------
        tuple
            ``(setting_id, seed, table)`` as units finish.
        """
        if len(units) <= 1:
            log.info("local: %d unit to run: in this process, no pool started", len(units))
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


def make_executor(executor: str = "local", *, workers: int = 1, scheduler: str | None = None) -> Executor:
    """The executor for ``genver run --executor``; Dask ones connect and check here. The choice
    is logged (INFO) with its workers.

    Parameters
    ----------
    executor : str
        One of :data:`EXECUTORS`.
    workers : int
        Processes (``local``, ``dask-local``) or threads (``threads``); 1 for ``dask``, whose
        workers are set where the cluster starts.
    scheduler : str, optional
        The Dask scheduler's address (``tcp://HOST:PORT``), for ``executor="dask"`` only.

    Returns
    -------
    Executor
        ``local`` with one worker: :class:`InProcessExecutor`; with more:
        :class:`ProcessPoolUnitExecutor`; ``threads``: :class:`ThreadUnitExecutor`; ``dask`` and
        ``dask-local``: :class:`~genver.experiments.dask_executor.DaskExecutor`.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if scheduler is not None and executor != "dask":
        raise ValueError("--scheduler is only for --executor dask")
    ex = _new_executor(executor, workers, scheduler)
    if log.isEnabledFor(logging.INFO):  # describe() asks a Dask cluster for its workers
        log.info("executor chosen: %s, from --executor %s --workers %d", ex.describe(), executor, workers)
    return ex


def _new_executor(executor: str, workers: int, scheduler: str | None) -> Executor:
    """The executor of :func:`make_executor` (arguments already checked)."""
    from .dask_executor import DaskExecutor
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


def __getattr__(name: str):
    if name in _DASK_NAMES:
        from . import dask_executor
        return getattr(dask_executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
