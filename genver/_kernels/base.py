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

import numba
from numba import njit

# Threading layer: numba's OpenMP workers spin after every parallel region and starve the
# BLAS calls inside scipy's L-BFGS on a small machine (one gap_verifier unit: 10 s with
# "omp", 0.17 s with "workqueue", measured on 2 cores). The workqueue layer does not spin;
# results are identical (every prange item is computed serially). An explicit
# NUMBA_THREADING_LAYER in the environment wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]  # config attributes are set at runtime

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
#: ``[False]`` while units run side by side in threads (``genver.experiments.executors``): numba's
#: default ``workqueue`` layer cannot start parallel regions from two threads at once, so every
#: dispatcher then takes its serial driver (the same bits). Set through :func:`serial_kernels`.
_PARALLEL_ALLOWED = [True]


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
