r"""Compile flags, the serial/parallel switch and the scalar log-sigmoid shared by genver's kernels (private).

``FASTMATH`` deliberately excludes ``nnan`` and ``ninf``: a guarded log-sum-exp over all
``-inf`` entries must stay ``-inf``, not become NaN. ``FASTMATH_ORDERED`` also drops
``reassoc`` (sums in program order: a body shared by a serial and a parallel driver gives the
same bits in both), and ``FASTMATH_POLY`` keeps only ``nsz`` and ``contract`` for the
polynomial kernels (:mod:`genver._kernels.poly`), whose argument reduction and Horner order
must stay as written. Kernels with a small-problem serial driver dispatch on problem size only
(``_PARALLEL_MIN_WORK``), never on the thread count.

Math
----
* ``log σ(z) = −log(1 + e^{−z})``, evaluated as ``−log1p(e^{−z})`` for ``z ≥ 0`` and
  ``z − log1p(e^{z})`` for ``z < 0`` (no overflow for any finite ``z``), with libm's ``exp`` and
  ``log1p``: each value accurate relative to itself.
* ``σ(z) = 1/(1 + e^{−z})`` for ``z ≥ 0`` and ``e^{z}/(1 + e^{z})`` for ``z < 0``.
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import numba
from numba import njit

# Threading layer: OpenMP told to sleep at once after a parallel region (OMP_WAIT_POLICY=PASSIVE),
# where numba's OpenMP layer loads, else numba's workqueue layer. Why:
# * by default OpenMP workers spin after every region and starve the BLAS calls inside scipy's
#   L-BFGS on a small machine (one gap_verifier unit: 10 s with spinning "omp", 0.17 s with
#   "workqueue", measured on 2 cores); passive workers sleep, as workqueue's do;
# * workqueue wakes every worker for every region and its calling thread only waits: on 2 cores
#   backward induction at V=16, H=5 took twice as long with it as with passive OpenMP
#   (benchmarks/README.md, "Threading layer").
# The runtime reads OMP_WAIT_POLICY once, when it loads: the variable is set only while numba loads
# its layer, here at import, so neither other libraries' later OpenMP nor child processes inherit
# it. If an OpenMP runtime is already in the process, its wait policy is not ours to set:
# workqueue then. GNU OpenMP terminates a forked child that starts a region, so after a fork
# every kernel takes its serial driver (the same bits). Results never depend on the layer (every
# prange item is computed serially). An explicit NUMBA_THREADING_LAYER in the environment wins.
_OPENMP_RUNTIMES = ("libgomp", "libiomp", "libomp")


def _openmp_runtime_loaded() -> bool | None:
    """Whether an OpenMP runtime is mapped into this process (``None``: unknown, no ``/proc``)."""
    try:
        with open("/proc/self/maps") as f:
            names = {os.path.basename(line.split()[-1]) for line in f if "/" in line}
    except OSError:
        return None
    return any(n.startswith(_OPENMP_RUNTIMES) for n in names)


def _choose_threading_layer() -> None:
    """Load numba's threading layer now: passive OpenMP where possible, else workqueue."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    config: Any = numba.config  # config attributes are set at runtime
    if _openmp_runtime_loaded() is not False:
        config.THREADING_LAYER = "workqueue"
        return
    config.THREADING_LAYER = "default"
    config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
    own_policy = "OMP_WAIT_POLICY" not in os.environ
    if own_policy:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        numba.get_num_threads()  # starts the layer: the OpenMP runtime reads its policy here
    finally:
        if own_policy:
            os.environ.pop("OMP_WAIT_POLICY", None)
    if numba.threading_layer() == "omp" and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_serial_after_fork)


def _serial_after_fork() -> None:
    _PARALLEL_ALLOWED[0] = False


#: The package's one fastmath flag set (no ``nnan``/``ninf``).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: Without ``reassoc``: sums stay in program order, so a body compiled into a serial and into a
#: parallel driver gives bitwise identical results (LLVM may not vectorise the reduction
#: differently in the two contexts).
FASTMATH_ORDERED = FASTMATH - {"reassoc"}


#: For the polynomial kernels (:mod:`genver._kernels.poly` and those that inline it): only
#: ``nsz`` and ``contract``, so the argument reduction and Horner order stay as written.
FASTMATH_POLY = {"nsz", "contract"}


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def log_sigmoid(z):
    if z >= 0.0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# Small problems run serially: a parallel region costs ~25 µs to start (far more on a busy
# machine), more than a whole backward induction or win rate on a small tree. Each kernel below
# has a per-prompt body and a serial and a parallel driver; the Python-level dispatcher picks
# one by problem size, so the choice never depends on the thread count, and the two drivers
# give bitwise identical results (tested): the win-rate and expected-likelihood bodies are
# compiled without ``reassoc`` (FASTMATH_ORDERED) so that LLVM cannot vectorise their sums
# differently in the two drivers; backward induction's sums run over V children in order (its
# drivers share one item body, :func:`_bi_items`).
_PARALLEL_MIN_WORK = 1 << 15
#: ``[False]`` while units run side by side in threads (``genver.experiments.executors``: each
#: thread has a core, and numba's ``workqueue`` layer cannot start parallel regions from two
#: threads at once) and in a forked child of a process on OpenMP, so every dispatcher then takes
#: its serial driver (the same bits). Set through :func:`serial_kernels`.
_PARALLEL_ALLOWED = [True]
_choose_threading_layer()


def _parallel(work: int) -> bool:
    """Whether a kernel with ``work`` items takes its parallel driver."""
    return _PARALLEL_ALLOWED[0] and work >= _PARALLEL_MIN_WORK


@contextlib.contextmanager
def serial_kernels():
    """Within this block every kernel runs its serial driver (all kernels release the GIL, so
    several Python threads running kernels use several cores)."""
    before = _PARALLEL_ALLOWED[0]
    _PARALLEL_ALLOWED[0] = False
    try:
        yield
    finally:
        _PARALLEL_ALLOWED[0] = before
