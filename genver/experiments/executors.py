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
retries); the functions the workers run (:func:`~genver.experiments.workers.run_batch`,
:func:`~genver.experiments.workers.runtime_versions`) in :mod:`genver.experiments.workers`.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..runcache import RunCache
from .cells import unit_columns
from .workers import (  # noqa: F401  (re-exported: the worker side's public names keep this import path)
    CHECKED_PACKAGES,
    SOURCE_PACKAGES,
    ExecutorError,
    compare_versions,
    init_pool_worker,
    pool_unit,
    runtime_versions,
)

log = logging.getLogger(__name__)

__all__ = ["EXECUTORS", "Executor", "ExecutorError", "InProcessExecutor", "ThreadUnitExecutor",
           "ProcessPoolUnitExecutor", "make_executor", "runtime_versions", "compare_versions"]
#: names that live in genver.experiments.dask_executor, importable from here too
_DASK_NAMES = ("DaskExecutor", "CONNECT_TIMEOUT_S", "PROBE_TIMEOUT_S", "TARGET_TASK_S", "RETRIES",
               "LOCAL_CLUSTER_CONFIG")

#: executor names accepted by ``genver run --executor``
EXECUTORS = ("local", "threads", "dask-local", "dask")


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
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=init_pool_worker) as pool:
            pending = {pool.submit(pool_unit, spec, p, sid, s) for sid, p, s in units}
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
