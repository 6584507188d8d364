"""What runs on a worker of a sweep: the version probe and the unit functions the executors ship.

A remote worker must compute a unit's numbers with the same code as the client. Its
:func:`runtime_versions` (genver, a hash of genver's sources, Python, numpy, scipy, numba,
pandas, dask, distributed) are compared with the client's (:func:`compare_versions`) by the
probe before the sweep (:func:`probe_worker`) and again by every task (:func:`run_batch`, the
function a Dask task runs). A local process pool's workers run :func:`pool_unit`, after
:func:`init_pool_worker`. The executors themselves live in :mod:`genver.experiments.executors`
(local, threads, process pool) and :mod:`genver.experiments.dask_executor`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pathlib
import threading
import time

from ..runcache import RunCache
from .cells import unit_columns

__all__ = ["ExecutorError", "CHECKED_PACKAGES", "SOURCE_PACKAGES", "runtime_versions", "compare_versions"]


class ExecutorError(ValueError):
    """The executor cannot run the sweep (unreachable scheduler, version mismatch, ...)."""


#: the packages whose versions must agree between the client and every worker
CHECKED_PACKAGES = ("genver", "genver_source", "python", "numpy", "scipy", "numba", "pandas", "dask", "distributed")


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


#: the run cache of a pool worker process: made by :func:`init_pool_worker` and shared by the units
#: the process runs; the process serves one ``map`` (one run) and ends with it
_POOL_CACHE: RunCache | None = None


def init_pool_worker():
    """The initializer of a local pool's worker process: numba on one thread, a new run cache."""
    global _POOL_CACHE
    import numba
    numba.set_num_threads(1)
    _POOL_CACHE = RunCache()


def pool_unit(spec, params: dict, sid: str, seed: int) -> tuple:
    """One unit in a pool worker: ``(sid, seed, table)`` (the process's run cache shared by its units)."""
    return sid, seed, unit_columns(spec, params, sid, seed, cache=_POOL_CACHE)
