"""The one bootstrap of genver: ``N_BOOT``, the extended-real percentile interval, the seeding rule
(``seed_entropy`` / ``group_rng``), IQM and the stratified bootstrap CI (definitions: :mod:`genver.stats`).
"""
from __future__ import annotations

import contextlib
import math
import numbers
import warnings
import zlib
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from .._validation import as_generator
from ._tables import key_tuple, to_python

#: Bootstrap replicates of every CI genver reports: the default of every function here, of
#: ``[expect] order`` statements (:mod:`genver.experiments.expect`), of ``genver report`` and of
#: the figures (the one count; 1000 keeps a cold ``genver plot`` of a full sweep within its budget)
N_BOOT = 1000


# --------------------------------------------------------------------------- basic statistics
def _trim_mean_quarter(a: np.ndarray, axis: int) -> np.ndarray | float:
    """``scipy.stats.trim_mean(a, 0.25, axis)`` computed as SciPy does — ``np.partition`` at the
    two cut points, then ``np.mean`` of the middle slice — so the bits are the same, without
    SciPy's per-call array-API dispatch (most of the time of a report's many small groups)."""
    nobs = a.shape[axis]
    low = int(0.25 * nobs)
    high = nobs - low
    part = np.partition(a, (low, high - 1), axis)
    sl = [slice(None)] * part.ndim
    sl[axis] = slice(low, high)
    return np.mean(part[tuple(sl)], axis=axis)


def iqm(x, axis=None) -> float | np.ndarray:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25)`` (bit for bit, tested).

    With ``axis=None`` the input is flattened and NaNs are dropped first; an empty input gives
    NaN. With an ``axis`` the call is vectorised (NaNs are *not* dropped; use it on complete
    bootstrap matrices).

    Parameters
    ----------
    x : array_like of float
        The values (one per seed).
    axis : int or None
        Reduce along this axis (vectorised), or over the flattened input (None).

    Returns
    -------
    float or numpy.ndarray
        The IQM (a float for ``axis=None``, else an array without ``axis``).

    Examples
    --------
    Five values: ``⌊5/4⌋ = 1`` is dropped at each end, the mean of the middle three remains,
    so one outlier does not move it.

    >>> iqm([1, 2, 3, 4, 100])
    3.0
    >>> iqm([1.0, float("nan"), 3.0])  # k = 2 ≤ 3: nothing dropped, NaN left out
    2.0
    """
    if axis is None:
        a = np.asarray(x, dtype=np.float64).ravel()
        a = a[~np.isnan(a)]
        if a.size == 0:
            return float("nan")
        with np.errstate(invalid="ignore"):
            return float(_trim_mean_quarter(a, 0))
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return float("nan")  # as SciPy: an empty input is NaN
    with np.errstate(invalid="ignore"):
        return _trim_mean_quarter(a, axis)


def _quantile(values: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile (numpy's default) that treats ±inf as extended reals
    (numpy's own returns NaN between two infinities)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    if v.size == 0:
        return float("nan")
    h = (v.size - 1) * q
    i, j = int(math.floor(h)), int(math.ceil(h))
    a, b, t = v[i], v[j], h - math.floor(h)
    if a == b or t == 0.0:
        return float(a)
    if np.isfinite(a) and np.isfinite(b):
        return float(a + (b - a) * t)
    if np.isinf(b) and b > 0:  # a < b = +inf, t > 0
        return float("inf") if np.isfinite(a) or a > 0 else float("nan")
    return float(a)  # a = -inf < b finite: any weight on -inf stays -inf


def percentile_ci(boot, alpha: float = 0.05, axis: int | None = None):
    """The ``1 − alpha`` percentile interval of bootstrap replicates ``boot``: the ``α/2`` and
    ``1 − α/2`` quantiles by linear interpolation in the extended reals (±inf are values;
    ``numpy.nanpercentile`` gives NaN between two infinities), NaN replicates left out, ``(NaN,
    NaN)`` when none is left. ``axis=None``: over all of ``boot``, two floats; ``axis=0``: per
    column of a (replicates, m) array, two arrays of shape (m,). The one interval rule of genver
    (every CI of this module, ``[expect] order``, the figures).

    Parameters
    ----------
    boot : array_like of float
        Bootstrap replicates of a statistic (±inf allowed, NaN left out).
    alpha : float
        One minus the coverage, in (0, 1).
    axis : int or None
        The replicate axis, or None for all of ``boot``.

    Returns
    -------
    lo, hi : float or numpy.ndarray
        The ``α/2`` and ``1 − α/2`` quantiles (floats for ``axis=None``, else arrays).

    Examples
    --------
    The 50% interval of five replicates is their 25% and 75% quantiles:

    >>> percentile_ci([1.0, 2.0, 3.0, 4.0, 5.0], alpha=0.5)
    (2.0, 4.0)

    Replicates that never reach ε are ``+inf``; the interval is then open above, where
    ``numpy.nanpercentile`` would give NaN:

    >>> percentile_ci([1.0, 2.0, float("inf"), float("inf")], alpha=0.5)
    (1.75, inf)
    """
    boot = np.asarray(boot, dtype=np.float64)
    if axis is not None:
        cols = np.moveaxis(boot, axis, -1).reshape(-1, boot.shape[axis]) if boot.ndim > 1 else boot[None]
        pairs = [percentile_ci(c, alpha) for c in cols]
        shape = np.delete(np.array(boot.shape), axis) if boot.ndim > 1 else ()
        lo = np.array([q[0] for q in pairs]).reshape(shape)
        hi = np.array([q[1] for q in pairs]).reshape(shape)
        return lo, hi
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return float("nan"), float("nan")
    return _quantile(boot, alpha / 2), _quantile(boot, 1 - alpha / 2)



class BootstrapCI(NamedTuple):
    """Point estimate (statistic on the original data) and percentile CI ``[lo, hi]``."""

    estimate: float
    lo: float
    hi: float


def check_alpha(alpha) -> float:
    """The significance level of a ``1 − α`` interval, checked.

    Parameters
    ----------
    alpha : float
        α, in ``(0, 1)``.

    Returns
    -------
    float
        ``alpha`` as a float (ValueError naming ``alpha`` outside ``(0, 1)``).
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return alpha


def check_n_boot(n_boot) -> int:
    """A bootstrap replicate count, checked.

    Parameters
    ----------
    n_boot : int
        Replicates, a positive integer (not a bool).

    Returns
    -------
    int
        ``n_boot`` as an int (ValueError naming ``n_boot`` otherwise).
    """
    if isinstance(n_boot, (bool, np.bool_)) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    return int(n_boot)


def _strata_arrays(values_by_stratum) -> list[np.ndarray]:
    """The non-empty strata of :func:`stratified_bootstrap_ci` as float64 arrays, NaN dropped."""
    if isinstance(values_by_stratum, Mapping):
        strata = list(values_by_stratum.values())
    elif isinstance(values_by_stratum, np.ndarray) and values_by_stratum.ndim <= 1:
        strata = [values_by_stratum]
    else:
        strata = list(values_by_stratum)
        if strata and all(np.ndim(s) == 0 for s in strata):  # a flat list of numbers
            strata = [np.asarray(strata, dtype=np.float64)]
    arrs = []
    for s in strata:
        a = np.asarray(s, dtype=np.float64).ravel()
        a = a[~np.isnan(a)]
        if a.size:
            arrs.append(a)
    return arrs


def stratified_bootstrap_ci(
    values_by_stratum,
    statistic: Callable = np.mean,
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    random_state=None,
    *,
    pooled: bool = True,
    vectorized: bool = False,
) -> BootstrapCI:
    """Stratified percentile bootstrap CI of ``statistic``.

    ``values_by_stratum``: one 1-D array (a single stratum), a sequence of 1-D arrays, or a
    mapping ``stratum -> 1-D array`` (strata in the mapping's order). Each array holds one value
    per seed; NaNs are dropped per stratum and empty strata are ignored. Each replicate draws,
    independently in every stratum, as many seeds as it has, with replacement.

    ``statistic`` receives the pooled (concatenated) resampled values when ``pooled=True``,
    else the list of per-stratum arrays. With ``vectorized=True`` it is called once on arrays
    with a leading replicate axis, ``(n_boot, n_values)``, and must reduce the last axis to
    shape ``(n_boot,)`` (e.g. ``lambda a: a.mean(-1)`` or ``lambda a: iqm(a, axis=-1)``);
    otherwise it is called ``n_boot`` times. Fewer than 2 values in total give a NaN CI.

    Parameters
    ----------
    values_by_stratum : array_like, sequence of array_like, or mapping
        The values per stratum (above).
    statistic : callable
        The statistic of the pooled values (or of the list of strata, ``pooled=False``).
    n_boot : int
        Bootstrap replicates.
    alpha : float
        One minus the coverage.
    random_state : None, int, SeedSequence or Generator
        Source of the resamples.
    pooled : bool
        Pass the concatenated values (True) or the per-stratum arrays (False).
    vectorized : bool
        Call ``statistic`` once on all replicates (above).

    Returns
    -------
    BootstrapCI
        ``estimate`` (the statistic of the data) and the percentile interval ``lo, hi``; all NaN
        when no value is left or the statistic fails on the data.
    """
    n_boot = check_n_boot(n_boot)
    alpha = check_alpha(alpha)
    rng = as_generator(random_state)
    arrs = _strata_arrays(values_by_stratum)
    nan3 = BootstrapCI(float("nan"), float("nan"), float("nan"))
    if not arrs:
        return nan3

    def _call(parts):
        arg = np.concatenate(parts, axis=-1) if pooled else parts
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return statistic(arg)

    try:
        estimate = float(_call(arrs))
    except Exception:  # noqa: BLE001 - a statistic failing on the data is reported as NaN
        return nan3
    if sum(a.size for a in arrs) < 2:
        return BootstrapCI(estimate, float("nan"), float("nan"))
    idx = [rng.integers(0, a.size, size=(n_boot, a.size)) for a in arrs]
    if vectorized:
        boot = np.asarray(_call([a[i] for a, i in zip(arrs, idx)]), dtype=np.float64).reshape(n_boot)
    else:
        boot = np.empty(n_boot)
        for b in range(n_boot):
            boot[b] = float(_call([a[i[b]] for a, i in zip(arrs, idx)]))
    lo, hi = percentile_ci(boot, alpha)
    return BootstrapCI(estimate, lo, hi)


def group_rng(base: int, key) -> np.random.Generator:
    """The one seeding rule of genver's bootstraps: a generator for one group (a cell, a
    setting, a statement), from the call's entropy ``base`` (:func:`seed_entropy` of its
    ``random_state``) and the group's ``key`` (a value or a tuple; compared as text), so a
    group's CI does not depend on which other groups the table holds or their order.

    Parameters
    ----------
    base : int
        The call's entropy (:func:`seed_entropy`).
    key : object or tuple
        The group's key (its values compared as text).

    Returns
    -------
    numpy.random.Generator
        ``default_rng([base, crc32 of the key])``.
    """
    h = zlib.crc32(repr(tuple(str(to_python(k)) for k in key_tuple(key))).encode())
    return np.random.default_rng([base, h])


def seed_entropy(random_state) -> int:
    """One integer drawn from ``random_state`` (None | int | SeedSequence | Generator): the
    ``base`` of :func:`group_rng` for one call.

    Parameters
    ----------
    random_state : None, int, SeedSequence or Generator
        The call's ``random_state``.

    Returns
    -------
    int
        An integer in ``[0, 2**63 − 1)``.
    """
    return int(as_generator(random_state).integers(0, 2**63 - 1))


@contextlib.contextmanager
def quiet_numpy():
    """Silence numpy's RuntimeWarnings (empty means, inf − inf): degenerate cells give NaN.

    Yields
    ------
    None
        Inside the ``with`` block, numpy's floating-point errors and RuntimeWarnings are ignored.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
