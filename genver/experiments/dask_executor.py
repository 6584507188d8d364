"""The Dask executors: units on a Dask distributed cluster (``--executor dask``, at
``--scheduler``) or on a ``LocalCluster`` on loopback (``--executor dask-local``); see
:mod:`genver.experiments.executors` for the executor interface.

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
import logging
import math
import threading
import uuid
from concurrent.futures import CancelledError
from typing import Any

from ..runcache import RunCache
from .executors import Executor
from .workers import ExecutorError, compare_versions, probe_worker, run_batch, runtime_versions

log = logging.getLogger(__name__)

__all__ = ["DaskExecutor", "CONNECT_TIMEOUT_S", "PROBE_TIMEOUT_S", "TARGET_TASK_S", "RETRIES", "LOCAL_CLUSTER_CONFIG"]

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
        self.cluster: Any = None
        self.client: Any = None
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
                box["probes"] = self.client.run(probe_worker, on_error="return")
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
        """The worker threads the cluster has now (at least 1).

        Returns
        -------
        int
            The sum of every worker's threads.
        """
        return max(1, sum(self.client.nthreads().values()))

    def describe(self) -> str:
        """The executor in words, as the manifest records it.

        Returns
        -------
        str
            E.g. ``dask-local (LocalCluster on 127.0.0.1, 2 workers, 2 threads)``.
        """
        where = "LocalCluster on 127.0.0.1" if self.cluster is not None else self.client.scheduler.address
        n = len(self.client.nthreads())
        return f"{self.name} ({where}, {n} workers, {self.threads()} threads)"

    def map(self, spec, units, cache: RunCache | None = None):  # each task has its own cache (run_batch)
        """Run the units on the cluster in tasks of about :data:`TARGET_TASK_S` seconds.

        Parameters
        ----------
        spec : genver.experiments.spec.Spec
            The sweep.
        units : list of tuple
            ``(setting_id, params, seed)`` of each unit to run.
        cache : genver.runcache.RunCache, optional
            Not used: each task has its own (see :func:`~genver.experiments.workers.run_batch`).

        Yields
        ------
        tuple
            ``(setting_id, seed, table)`` as units finish, in any order.
        """
        from distributed import as_completed
        from distributed.scheduler import KilledWorker
        if not units:
            return
        # seed-major order: every batch mixes the settings, so its cost is about proportional to its
        # size even when some settings are much slower than others (the order changes no number)
        rank: dict = {}
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
            log.debug("dask: task %d submitted with %d unit(s), %d still queued", count, len(batch), len(queue))
            return self.client.submit(run_batch, spec, batch, self.versions, key=f"genver-units-{token}-{count}",
                                      pure=False, retries=RETRIES)

        in_flight: set = set()
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
        """Close the client and, for ``dask-local``, the cluster (best effort; idempotent)."""
        for obj in (self.client, self.cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        self.client = self.cluster = None
