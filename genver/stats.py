r"""Statistics over tidy results tables: IQM, stratified bootstrap CIs, N_ε, slopes, ratios.

Conventions (after rliable: Agarwal et al. 2021, *Deep RL at the Edge of the Statistical
Precipice*). Every random draw comes from an explicit ``random_state`` (``None`` | int |
``SeedSequence`` | ``Generator``, see :func:`genver._validation.as_generator`). Degenerate
inputs (empty tables, one seed, NaN, ±inf, zeros, a route that never reaches ε) never raise:
they give NaN, ±inf or an explicit flag, as documented per function.

Input: the tidy results table
-----------------------------
One row per (setting, seed, n, estimator, metric) with columns ``setting_id`` (stable hash),
the swept parameters ("knobs", named by the ``knobs`` argument), ``seed``, ``n`` (number of
preference pairs), ``estimator`` (label), ``route`` ("offline" | "online" | "other"),
``metric`` and ``value``; ``experiment`` is carried along when present. Missing ``route``
reads as "other", missing ``setting_id`` as one setting "default". Rows whose ``value`` is NaN
are dropped (a failed cell is "no observation", not an error); ±inf values are kept.

Definitions
-----------
Let ``v_{s}`` be the metric of seed ``s ∈ S`` (``k = |S|`` seeds) for one cell
(setting, estimator, n).

* **mean** ``m = (1/k) Σ_s v_s``.
* **IQM** (interquartile mean): sort the ``k`` values, drop ``⌊k/4⌋`` from each end and
  average the rest; identical to ``scipy.stats.trim_mean(v, 0.25)`` (rliable's definition).
  For ``k ≤ 3`` nothing is dropped (IQM = mean).
* **Bootstrap replicate**: draw ``k`` seeds from ``S`` uniformly with replacement (``B`` =
  ``n_boot`` times). *Stratified*: with several strata (e.g. settings or tasks), each stratum
  is resampled separately with its own size, so every replicate keeps the design's strata.
* **Percentile CI** at level ``1 − α``: the ``α/2`` and ``1 − α/2`` quantiles (linear
  interpolation, ±inf handled as extended reals) of the ``B`` replicate statistics.
  With ``k < 2`` the CI is NaN (a single seed carries no spread: a zero-width interval would
  be misleading). With identical seeds the CI has zero width.
* **Mean curve** of an estimator in a setting: ``m(n)`` over the setting's grid of ``n``.
  Each seed is one whole curve, so bootstraps for N_ε, ratios and slopes resample *seeds*
  (rows of the seed × n matrix), never individual cells. Missing cells are NaN and are left
  out of the mean at that ``n``.
* **N_ε** (sample size to reach ε), for an error metric (lower is better): the smallest grid
  ``n`` with ``m(n) ≤ ε`` (``rule="first"``), or the smallest grid ``n`` from which ``m``
  stays ``≤ ε`` up to the end of the grid (``rule="sustained"``). It is a *grid* quantity:
  the true crossing lies in ``(n_{j−1}, n_j]``.

  - *Not reached* is a value, not an error: ``N_eps = NaN``, ``reached = False`` and
    ``censored_at = max n`` (so ``N_ε > censored_at``: right-censored).
  - ``left_censored = True`` when ε is already met at the smallest grid ``n``
    (``N_ε ≤ n_min``; extend the grid downwards to resolve it).
  - CI: percentile bootstrap over seeds of the replicate ``N_ε``, with "not reached" read as
    ``+inf`` (extended reals). So ``N_eps_hi = inf`` means more than ``α/2`` of the
    resamples never reach ε: the interval is open above. ``frac_reached`` is the fraction of
    replicates that reach ε.
* **Per-seed N_ε**: each seed's own first crossing, the smallest grid ``n`` of *its* curve
  with ``v_s(n) ≤ ε`` (same ``rule``), ``+inf`` when that seed never reaches ε
  (:func:`n_epsilon_per_seed`). Aggregates over seeds, in the extended reals: the **median**
  (``+inf`` when more than half the seeds — with an even count, the upper middle one — do not
  reach ε; otherwise the average of the two middle values for an even count, so not always a
  grid value) and the **IQM** (drop ``⌊k/4⌋`` values at each end, as :func:`iqm`; ``+inf``
  when an unreached seed is among those kept, i.e. more than a quarter do not reach ε). The
  N_ε of the mean curve can be dominated by a few seeds (a seed whose error stays high keeps
  the mean above ε); the median and IQM of the per-seed N_ε are not. CIs: the same seed
  bootstrap, replicate aggregates of the resampled per-seed values.
  ``aggregate = "mean" | "median" | "iqm"`` (:func:`efficiency_ratio`, :func:`ratio_trend`,
  a spec's ``[expect] aggregate``) says which N_ε a ratio uses: of the mean curve (default) or
  an aggregate of the per-seed N_ε; an aggregate ``+inf`` makes that route "not reached" with
  the usual censoring level ``max n``.
* **Log-log slope**: ordinary least squares of ``log m(n)`` on ``log n`` over grid points with
  finite ``m(n) > 0`` (``slope = Σ(x−x̄)(y−ȳ)/Σ(x−x̄)²``); ``slope_se = sqrt(RSS/(p−2)/Σ(x−x̄)²)``
  with ``p`` points. ``p < 2`` gives NaN slope; ``p = 2`` gives NaN standard error. For an
  error decaying like ``c/n`` the slope is −1.
* **Efficiency ratio** per setting: ``ρ = N_ε(offline) / N_ε(online)`` (how many times more
  pairs the offline route needs). ``ratio_kind``:

  ==============  =====================================  =====================================
  ratio_kind      when                                   ``ratio`` holds
  ==============  =====================================  =====================================
  "exact"         both routes reach ε                    ``N_off / N_on``
  "lower_bound"   offline not reached, online reached    ``N_max(off) / N_on``; true ρ ≥ this
  "upper_bound"   offline reached, online not reached    ``N_off / N_max(on)``; true ρ ≤ this
  "undefined"     neither reaches ε, or a route has no   NaN
                  rows in that setting
  ==============  =====================================  =====================================

  (The bounds are strict on the grid: a censored route needs more than its ``N_max``.)
  CI: *paired* bootstrap: each replicate resamples the setting's seed labels once (the union
  of both routes' seeds; a seed is the same preference data for both routes) and recomputes
  both N_ε from those same seeds; replicate ratios use the extended-real rule (unreached
  ``N = +inf``: ``inf/N = inf``, ``N/inf = 0``, ``inf/inf`` dropped). ``ratio_lo = 0`` or
  ``ratio_hi = inf`` mark an interval open on that side. ``frac_exact`` is the fraction of
  replicates where both routes reach ε. ``left_censored`` flags a setting where either route
  reaches ε at its smallest grid ``n`` (the exact ratio is then only known up to the grid).
* **Trend verdicts with censoring** (:func:`ratio_trend`). Each setting's ratio is known only
  as an interval: exact ``ρ`` → ``[ρ, ρ]``; lower bound ``L = N_max(off)/N_on`` → ``(L, ∞)``
  (open: the censored route needs *more* than its ``N_max``); upper bound ``U = N_off/N_max(on)``
  → ``(0, U)``; neither route reached (or no rows) → ``(0, ∞)``. Two settings ``K_i < K_j``
  are compared with Gehan's rule for censored data: +1 when ``ρ_j`` is certainly above ``ρ_i``
  (``lo_j > hi_i``, or equal with either end open), −1 when certainly below, 0 when the
  intervals leave the order open — so ``128`` then ``≥ 128``, ``≥ 128`` scores (+1, +1, 0):
  two lower bounds at the same or overlapping levels are a tie, not a contradiction, and "not
  reached" is never ranked as a number. The statistic is the censoring-aware Kendall
  ``τ = (Σ scores) / (number of pairs with K_i ≠ K_j)`` ∈ [−1, 1] (Kendall's τ_a with Gehan
  scores). It rests on a **paired seed bootstrap**: each replicate draws the seed labels once
  (with replacement, the union of the table's seeds) for *every* setting and both routes —
  a seed is the same preference data for both routes, and settings share seeds (common
  random numbers) — recomputes every N_ε (mean curve, or the median / IQM of per-seed N_ε),
  the intervals and τ. "increasing in K" passes iff ``τ > 0`` and the ``1 − α`` percentile CI
  of τ lies above 0 (``tau_lo > 0``); "decreasing" mirrors it. Fewer than 2 seeds or 2 knob
  values: no CI, FAIL (the trend is not established). A single point estimate with bounds as
  values (the point Spearman ρ) is reported beside it, but no longer decides.
* **Verdict** (:func:`gap_verdict`): a ratio table against a one-line expectation.
  "increasing in K" / "decreasing in K": the trend rule above when a :func:`ratio_trend` is
  passed (``genver report`` does); on a bare ratio table the point Spearman ρ(K, ratio) > 0 /
  < 0 over the settings (bound values used as they are). "equals C": every setting's CI contains C. "≥ C": no setting
  is significantly below C (``ratio_hi ≥ C``); "> C": every setting is significantly above C
  (``ratio_lo > C``); "≤ C" and "< C" mirror them. "undefined" rows are left out and counted.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import re
import warnings
import zlib
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sps

from genver._validation import as_generator

__all__ = [
    "iqm",
    "BootstrapCI",
    "stratified_bootstrap_ci",
    "aggregate",
    "n_epsilon",
    "n_epsilon_per_seed",
    "loglog_slope",
    "efficiency_ratio",
    "RatioTrend",
    "ratio_trend",
    "Verdict",
    "gap_verdict",
    "SETTING_COLUMNS",
    "AGGREGATES",
    "N_BOOT",
    "percentile_ci",
    "seed_entropy",
    "group_rng",
    "COMPARISONS",
    "parse_comparison",
    "RATIO_TREND",
]

#: Bootstrap replicates of every CI genver reports: the default of every function here, of
#: ``[expect] order`` statements (:mod:`genver.experiments.expect`) and of ``genver report``.
N_BOOT = 2000

#: Columns of the ``settings`` table that :func:`efficiency_ratio` carries over when present.
SETTING_COLUMNS = (
    "log_size_R",
    "log_size_Pi",
    "n_params_R",
    "n_params_Pi",
    "predicted_ratio",
    "containment_residual",
)

_REQUIRED = ("seed", "n", "estimator", "metric", "value")


# --------------------------------------------------------------------------- basic statistics
def iqm(x, axis=None) -> float | np.ndarray:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25)``.

    With ``axis=None`` the input is flattened and NaNs are dropped first; an empty input gives
    NaN. With an ``axis`` the call is vectorised (NaNs are *not* dropped; use it on complete
    bootstrap matrices).
    """
    if axis is None:
        a = np.asarray(x, dtype=np.float64).ravel()
        a = a[~np.isnan(a)]
        if a.size == 0:
            return float("nan")
        with np.errstate(invalid="ignore"):
            return float(_sps.trim_mean(a, 0.25))
    a = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return _sps.trim_mean(a, 0.25, axis=axis)


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
    (every CI of this module, ``[expect] order``, the figures)."""
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


#: a private alias kept for callers not yet on the public name
_percentile_ci = percentile_ci


class BootstrapCI(NamedTuple):
    """Point estimate (statistic on the original data) and percentile CI ``[lo, hi]``."""

    estimate: float
    lo: float
    hi: float


def _check_alpha(alpha) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return alpha


def _check_n_boot(n_boot) -> int:
    if isinstance(n_boot, (bool, np.bool_)) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    return int(n_boot)


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
    """
    n_boot = _check_n_boot(n_boot)
    alpha = _check_alpha(alpha)
    rng = as_generator(random_state)
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


# --------------------------------------------------------------------------- table helpers
def _as_knobs(knobs) -> list[str]:
    if knobs is None:
        return []
    if isinstance(knobs, str):
        return [knobs]
    return list(knobs)


def _prepare(df: pd.DataFrame, metric: str | None, knobs: Sequence[str]) -> pd.DataFrame:
    """Validate columns, fill optional ones, select ``metric`` and drop NaN values."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"results table lacks required column(s) {missing}")
    bad = [k for k in knobs if k not in df.columns]
    if bad:
        raise ValueError(f"knobs {bad} are not columns of the results table")
    d = df
    if metric is not None:
        d = d[d["metric"] == metric]
    d = d.copy()
    if "route" not in d.columns:
        d["route"] = "other"
    if "setting_id" not in d.columns:
        d["setting_id"] = "default"
    d["value"] = pd.to_numeric(d["value"], errors="coerce").astype(np.float64)
    d = d[~d["value"].isna()]
    return d


def _id_cols(d: pd.DataFrame, knobs: Sequence[str]) -> list[str]:
    cols = ["experiment"] if "experiment" in d.columns else []
    cols.append("setting_id")
    cols += [k for k in knobs if k not in cols]
    return cols


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _key_tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def group_rng(base: int, key) -> np.random.Generator:
    """The one seeding rule of genver's bootstraps: a generator for one group (a cell, a
    setting, a statement), from the call's entropy ``base`` (:func:`seed_entropy` of its
    ``random_state``) and the group's ``key`` (a value or a tuple; compared as text), so a
    group's CI does not depend on which other groups the table holds or their order."""
    h = zlib.crc32(repr(tuple(str(_py(k)) for k in _key_tuple(key))).encode())
    return np.random.default_rng([base, h])


def seed_entropy(random_state) -> int:
    """One integer drawn from ``random_state`` (None | int | SeedSequence | Generator): the
    ``base`` of :func:`group_rng` for one call."""
    return int(as_generator(random_state).integers(0, 2**63 - 1))


@contextlib.contextmanager
def _quiet():
    """Silence numpy's RuntimeWarnings (empty means, inf − inf): degenerate cells give NaN."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _seed_matrix(g: pd.DataFrame, seeds: pd.Index | None = None):
    """Seed × n matrix of values (mean of duplicates), NaN where missing."""
    piv = g.groupby(["seed", "n"], sort=True)["value"].mean().unstack("n").sort_index(axis=1)
    if seeds is not None:
        piv = piv.reindex(seeds)
    return piv.to_numpy(dtype=np.float64), np.asarray(piv.columns, dtype=np.float64), np.asarray(piv.index)


def _nanmean_rows(mat: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """Mean over seeds (axis 0 of ``mat``, or over the resampled rows ``idx`` of shape
    (n_boot, k) giving (n_boot, G)), ignoring NaN; all-NaN → NaN."""
    ok = ~np.isnan(mat)
    filled = np.where(ok, mat, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if idx is None:
            return filled.sum(0) / ok.sum(0)
        return filled[idx].sum(1) / ok[idx].sum(1)


def _first_reached(means: np.ndarray, eps: float, rule: str) -> np.ndarray:
    """Index along the last axis of the first grid point meeting ε (``-1`` if none)."""
    with np.errstate(invalid="ignore"):
        ok = means <= eps
    if rule == "sustained":
        # suffix-all: ok[j] and every later point ok
        ok = np.flip(np.logical_and.accumulate(np.flip(ok, -1), axis=-1), -1)
    any_ok = ok.any(-1)
    first = np.argmax(ok, axis=-1)
    return np.where(any_ok, first, -1)


AGGREGATES = ("mean", "median", "iqm")


def _check_aggregate(aggregate: str) -> str:
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {list(AGGREGATES)}, got {aggregate!r}")
    return aggregate


def _per_seed_neps(mat: np.ndarray, grid: np.ndarray, eps: float, rule: str) -> np.ndarray:
    """Each seed's own N_ε (first grid ``n`` of its own row meeting ε; ``+inf`` when its row never
    does; NaN for a seed with no values). A missing cell never meets ε."""
    if grid.size == 0:
        return np.full(mat.shape[0], np.nan)
    j = _first_reached(mat, eps, rule)
    out = np.where(j >= 0, grid[np.maximum(j, 0)], np.inf)
    out[np.isnan(mat).all(axis=1)] = np.nan
    return out


def _aggregate_neps(v: np.ndarray, how: str) -> np.ndarray:
    """Median or IQM over the last axis of per-seed N_ε in the extended reals (``+inf`` = not
    reached), NaN (no values) left out: the median is ``+inf`` when more than half the seeds do
    not reach ε (with an even count, when the upper middle one does not); the IQM drops
    ``⌊m/4⌋`` of the ``m`` values at each end (as :func:`iqm`) and is ``+inf`` when an unreached
    seed is among those kept. All NaN → NaN."""
    v = np.sort(np.asarray(v, dtype=np.float64), axis=-1)  # NaN sorts last, +inf just before
    m = (~np.isnan(v)).sum(axis=-1)
    k = v.shape[-1]
    if k and (m == k).all():  # no NaN: all rows at once
        if how == "median":
            a, b = v[..., (k - 1) // 2], v[..., k // 2]
            with np.errstate(invalid="ignore"):
                return np.where(np.isinf(b), b, 0.5 * (a + b))
        return v[..., k // 4:k - k // 4].mean(axis=-1)
    g = m // 4 if how == "iqm" else None
    out = np.full(v.shape[:-1], np.nan)
    for i in np.ndindex(*v.shape[:-1]):
        mi = int(m[i])
        if mi == 0:
            continue
        row = v[i][:mi]
        if how == "median":
            a, b = row[(mi - 1) // 2], row[mi // 2]
            out[i] = b if np.isinf(b) else 0.5 * (a + b)
        else:
            out[i] = row[int(g[i]):mi - int(g[i])].mean()
    return out


def _check_rule(rule: str) -> str:
    if rule not in ("first", "sustained"):
        raise ValueError(f"rule must be 'first' or 'sustained', got {rule!r}")
    return rule


def _eps_list(eps) -> list[float]:
    vals = [eps] if np.ndim(eps) == 0 else list(np.asarray(eps).ravel())
    out = []
    for e in vals:
        e = float(e)
        if np.isnan(e):
            raise ValueError("eps must not be NaN")
        out.append(e)
    return out


# --------------------------------------------------------------------------- aggregate
_AGG_STATS = ["n_seeds", "mean", "mean_lo", "mean_hi", "iqm", "iqm_lo", "iqm_hi"]


def aggregate(
    df: pd.DataFrame,
    metric: str = "suboptimality",
    knobs: Sequence[str] = (),
    n_boot: int = N_BOOT,
    random_state=0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per (setting_id, knobs..., estimator, route, n): mean and IQM over seeds with
    ``1 − alpha`` percentile bootstrap CIs over seeds.

    Columns: ``[experiment,] setting_id, *knobs, estimator, route, n, metric, n_seeds, mean,
    mean_lo, mean_hi, iqm, iqm_lo, iqm_hi``. ``n_seeds`` counts non-NaN values; CIs are NaN with
    fewer than 2. Each group's resamples come from ``random_state`` and the group's key, so they
    do not depend on the rest of the table.
    """
    knobs = _as_knobs(knobs)
    n_boot = _check_n_boot(n_boot)
    alpha = _check_alpha(alpha)
    d = _prepare(df, metric, knobs)
    keys = _id_cols(d, knobs) + ["estimator", "route", "n"]
    cols = keys + ["metric"] + _AGG_STATS
    if d.empty:
        return pd.DataFrame(columns=cols)
    base = seed_entropy(random_state)
    rows = []
    with _quiet():
        for key, g in d.groupby(keys, dropna=False, sort=True):
            v = g["value"].to_numpy(dtype=np.float64)
            k = v.size
            row = dict(zip(keys, _key_tuple(key)))
            row["metric"] = metric
            row["n_seeds"] = k
            with np.errstate(all="ignore"):
                row["mean"] = float(np.mean(v))
                row["iqm"] = iqm(v)
                if k >= 2:
                    rng = group_rng(base, key)
                    samp = v[rng.integers(0, k, size=(n_boot, k))]
                    row["mean_lo"], row["mean_hi"] = percentile_ci(samp.mean(1), alpha)
                    row["iqm_lo"], row["iqm_hi"] = percentile_ci(iqm(samp, axis=1), alpha)
                else:
                    row["mean_lo"] = row["mean_hi"] = row["iqm_lo"] = row["iqm_hi"] = float("nan")
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- N_ε
_NEPS_STATS = [
    "eps", "metric", "rule", "N_eps", "reached", "censored_at", "n_min", "left_censored",
    "N_eps_lo", "N_eps_hi", "frac_reached", "n_seeds",
    "N_eps_median", "N_eps_median_lo", "N_eps_median_hi", "N_eps_iqm", "N_eps_iqm_lo", "N_eps_iqm_hi",
    "frac_seeds_reached",
]


def _neps_point_and_boot(mat, grid, eps, rule, idx, aggregate="mean"):
    """Point N_ε (NaN if not reached) and replicate N_ε (inf if not reached): of the mean curve
    (``aggregate="mean"``), or the median / IQM of the seeds' own N_ε."""
    if aggregate != "mean":
        v = _per_seed_neps(mat, grid, eps, rule)
        point = float(_aggregate_neps(v, aggregate))
        point = float("nan") if np.isinf(point) else point
        if idx is None or grid.size == 0:
            return point, None
        boot = _aggregate_neps(v[idx], aggregate)
        return point, np.where(np.isnan(boot), np.inf, boot)
    j = int(_first_reached(_nanmean_rows(mat), eps, rule)) if grid.size else -1
    point = float(grid[j]) if j >= 0 else float("nan")
    if idx is None or grid.size == 0:
        return point, None
    jb = _first_reached(_nanmean_rows(mat, idx), eps, rule)
    boot = np.where(jb >= 0, grid[np.maximum(jb, 0)], np.inf)
    return point, boot


def n_epsilon(
    df: pd.DataFrame,
    eps,
    metric: str = "suboptimality",
    knobs: Sequence[str] = (),
    n_boot: int = N_BOOT,
    random_state=0,
    alpha: float = 0.05,
    rule: str = "first",
) -> pd.DataFrame:
    """N_ε per (setting, estimator, route) and ε: the smallest grid ``n`` whose mean (over
    seeds) ``metric`` is ``≤ eps`` (see the module docstring for ``rule``, censoring and CIs),
    and beside it the median and IQM of the seeds' own N_ε (:func:`n_epsilon_per_seed`).

    ``eps`` may be a scalar or a sequence (one row per ε). Columns: ``[experiment,]
    setting_id, *knobs, estimator, route, eps, metric, rule, N_eps, reached, censored_at,
    n_min, left_censored, N_eps_lo, N_eps_hi, frac_reached, n_seeds, N_eps_median,
    N_eps_median_lo, N_eps_median_hi, N_eps_iqm, N_eps_iqm_lo, N_eps_iqm_hi,
    frac_seeds_reached``. The per-seed aggregates are extended reals (``+inf``: not reached,
    see the module docstring); ``frac_seeds_reached`` is the fraction of seeds whose own curve
    reaches ε. The resamples of a group are shared by all ε and all three aggregates.
    """
    knobs = _as_knobs(knobs)
    n_boot = _check_n_boot(n_boot)
    alpha = _check_alpha(alpha)
    rule = _check_rule(rule)
    eps_values = _eps_list(eps)
    d = _prepare(df, metric, knobs)
    keys = _id_cols(d, knobs) + ["estimator", "route"]
    cols = keys + _NEPS_STATS
    if d.empty:
        return pd.DataFrame(columns=cols)
    base = seed_entropy(random_state)
    rows = []
    with _quiet():
        for key, g in d.groupby(keys, dropna=False, sort=True):
            mat, grid, _ = _seed_matrix(g)
            k = mat.shape[0]
            idx = group_rng(base, key).integers(0, k, size=(n_boot, k)) if k >= 2 else None
            for e in eps_values:
                point, boot = _neps_point_and_boot(mat, grid, e, rule, idx)
                row = dict(zip(keys, _key_tuple(key)))
                reached = not np.isnan(point)
                row.update(
                    eps=e, metric=metric, rule=rule, N_eps=point, reached=reached,
                    censored_at=float(grid.max()), n_min=float(grid.min()),
                    left_censored=bool(reached and point == grid.min()), n_seeds=k,
                )
                if boot is not None:
                    row["N_eps_lo"], row["N_eps_hi"] = percentile_ci(boot, alpha)
                    row["frac_reached"] = float(np.isfinite(boot).mean())
                else:
                    row["N_eps_lo"] = row["N_eps_hi"] = row["frac_reached"] = float("nan")
                v = _per_seed_neps(mat, grid, e, rule)
                row["frac_seeds_reached"] = float(np.isfinite(v).sum() / max(1, (~np.isnan(v)).sum()))
                for how in ("median", "iqm"):
                    row[f"N_eps_{how}"] = float(_aggregate_neps(v, how))
                    lo_hi = percentile_ci(_aggregate_neps(v[idx], how), alpha) if idx is not None else (np.nan,) * 2
                    row[f"N_eps_{how}_lo"], row[f"N_eps_{how}_hi"] = lo_hi
                rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    out["reached"] = out["reached"].astype(bool)
    out["left_censored"] = out["left_censored"].astype(bool)
    return out


def n_epsilon_per_seed(
    df: pd.DataFrame,
    eps,
    metric: str = "suboptimality",
    knobs: Sequence[str] = (),
    rule: str = "first",
) -> pd.DataFrame:
    """Each seed's own N_ε per (setting, estimator, route) and ε: the first grid ``n`` of that
    seed's curve with ``metric ≤ eps`` (``rule="sustained"``: from which it stays ``≤ eps``).

    Columns: ``[experiment,] setting_id, *knobs, estimator, route, seed, eps, metric, rule,
    N_eps`` (``+inf`` when the seed never reaches ε: right-censored at ``censored_at``),
    ``reached``, ``censored_at`` (the largest ``n`` of the setting's grid).
    """
    knobs = _as_knobs(knobs)
    rule = _check_rule(rule)
    eps_values = _eps_list(eps)
    d = _prepare(df, metric, knobs)
    keys = _id_cols(d, knobs) + ["estimator", "route"]
    cols = keys + ["seed", "eps", "metric", "rule", "N_eps", "reached", "censored_at"]
    rows = []
    with _quiet():
        for key, g in d.groupby(keys, dropna=False, sort=True):
            mat, grid, seeds = _seed_matrix(g)
            for e in eps_values:
                for s, v in zip(seeds, _per_seed_neps(mat, grid, e, rule)):
                    rows.append({**dict(zip(keys, _key_tuple(key))), "seed": _py(s), "eps": e, "metric": metric,
                                 "rule": rule, "N_eps": float(v), "reached": bool(np.isfinite(v)),
                                 "censored_at": float(grid.max())})
    out = pd.DataFrame(rows, columns=cols)
    out["reached"] = out["reached"].astype(bool)
    return out


# --------------------------------------------------------------------------- slopes
def loglog_slope(
    df: pd.DataFrame,
    metric: str = "suboptimality",
    knobs: Sequence[str] = (),
) -> pd.DataFrame:
    """Per (setting, estimator, route): OLS slope of ``log m(n)`` on ``log n`` over the grid
    points with finite mean ``m(n) > 0`` (see module docstring).

    Columns: ``[experiment,] setting_id, *knobs, estimator, route, metric, slope, slope_se,
    intercept, n_points, n_lo, n_hi`` (``intercept`` is on the natural-log scale; ``n_lo`` and
    ``n_hi`` are the smallest and largest ``n`` used).
    """
    knobs = _as_knobs(knobs)
    d = _prepare(df, metric, knobs)
    keys = _id_cols(d, knobs) + ["estimator", "route"]
    cols = keys + ["metric", "slope", "slope_se", "intercept", "n_points", "n_lo", "n_hi"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    with _quiet():
        for key, g in d.groupby(keys, dropna=False, sort=True):
            mat, grid, _ = _seed_matrix(g)
            m = _nanmean_rows(mat)
            ok = np.isfinite(m) & (m > 0) & (grid > 0)
            x, y = np.log(grid[ok]), np.log(m[ok])
            p = int(ok.sum())
            row = dict(zip(keys, _key_tuple(key)))
            row.update(metric=metric, n_points=p,
                       n_lo=float(grid[ok].min()) if p else float("nan"),
                       n_hi=float(grid[ok].max()) if p else float("nan"))
            sxx = float(((x - x.mean()) ** 2).sum()) if p else 0.0
            if p >= 2 and sxx > 0:
                slope = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
                intercept = float(y.mean() - slope * x.mean())
                if p > 2:
                    rss = float(((y - intercept - slope * x) ** 2).sum())
                    se = math.sqrt(max(rss, 0.0) / (p - 2) / sxx)
                else:
                    se = float("nan")
            else:
                slope = intercept = se = float("nan")
            row.update(slope=slope, slope_se=se, intercept=intercept)
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- efficiency ratio
_RATIO_STATS = [
    "eps", "metric", "offline", "online",
    "N_offline", "N_online", "offline_reached", "online_reached",
    "offline_censored_at", "online_censored_at",
    "ratio", "ratio_kind", "ratio_lo", "ratio_hi", "frac_exact", "left_censored", "n_seeds", "aggregate",
]


def _ratio(n_off: np.ndarray, n_on: np.ndarray) -> np.ndarray:
    """Extended-real ratio: inf/N = inf, N/inf = 0, inf/inf = NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return n_off / n_on


def efficiency_ratio(
    df: pd.DataFrame,
    eps,
    offline: str = "offline",
    online: str = "online",
    knobs: Sequence[str] = (),
    n_boot: int = N_BOOT,
    random_state=0,
    metric: str = "suboptimality",
    alpha: float = 0.05,
    rule: str = "first",
    by: str = "estimator",
    settings: pd.DataFrame | None = None,
    aggregate: str = "mean",
) -> pd.DataFrame:
    """Per setting (and ε): ``ratio = N_ε(offline) / N_ε(online)`` with ``ratio_kind`` and a
    paired seed-bootstrap CI (see the module docstring for every convention). ``aggregate``:
    which N_ε — of the mean curve (``"mean"``, the default) or the ``"median"`` / ``"iqm"`` of
    the seeds' own N_ε (a route is then "not reached" when that aggregate is ``+inf``).

    ``offline``/``online`` are labels matched in column ``by`` (``"estimator"``, or ``"route"``
    when each route has one estimator per setting; otherwise ``ValueError``). ``settings``
    (one row per ``setting_id``) contributes the columns in :data:`SETTING_COLUMNS`, e.g.
    ``predicted_ratio``; those columns are also carried over when the results table already
    holds them. Columns: ``[experiment,] setting_id, *knobs, eps, metric, offline, online,
    N_offline, N_online, offline_reached, online_reached, offline_censored_at,
    online_censored_at, ratio, ratio_kind, ratio_lo, ratio_hi, frac_exact, left_censored,
    n_seeds[, predicted_ratio, ...]``.
    """
    knobs = _as_knobs(knobs)
    n_boot = _check_n_boot(n_boot)
    alpha = _check_alpha(alpha)
    rule = _check_rule(rule)
    aggregate = _check_aggregate(aggregate)
    if by not in ("estimator", "route"):
        raise ValueError(f"by must be 'estimator' or 'route', got {by!r}")
    eps_values = _eps_list(eps)
    d = _prepare(df, metric, knobs)
    d = d[d[by].isin([offline, online])]
    if by == "route" and not d.empty:
        multi = d.groupby(["setting_id", "route"])["estimator"].nunique()
        if (multi > 1).any():
            raise ValueError("by='route' needs one estimator per route and setting; "
                             f"settings {list(multi[multi > 1].index.get_level_values(0).unique())} have several")
    id_cols = _id_cols(d, knobs)
    extra = [c for c in SETTING_COLUMNS if c in d.columns and c not in id_cols]
    cols = id_cols + _RATIO_STATS
    base = seed_entropy(random_state)
    rows = []
    with _quiet():
        for key, g in d.groupby(id_cols, dropna=False, sort=True):
            seeds = pd.Index(pd.unique(g["seed"]))
            try:
                seeds = seeds.sort_values()
            except TypeError:  # mixed seed labels: keep first-seen order
                pass
            k = seeds.size
            parts = {}
            for lab in (offline, online):
                gg = g[g[by] == lab]
                if gg.empty:
                    parts[lab] = None
                else:
                    mat, grid, _ = _seed_matrix(gg, seeds=seeds)
                    parts[lab] = (mat, grid)
            idx = group_rng(base, key).integers(0, k, size=(n_boot, k)) if k >= 2 else None
            extras = {c: g[c].iloc[0] for c in extra}
            for e in eps_values:
                row = dict(zip(id_cols, _key_tuple(key)))
                row.update(eps=e, metric=metric, offline=offline, online=online, n_seeds=k, aggregate=aggregate,
                           **extras)
                res = {}
                for lab in (offline, online):
                    if parts[lab] is None:
                        res[lab] = (float("nan"), None, float("nan"), float("nan"))
                        continue
                    mat, grid = parts[lab]
                    point, boot = _neps_point_and_boot(mat, grid, e, rule, idx, aggregate)
                    res[lab] = (point, boot, float(grid.max()), float(grid.min()))
                (n_off, b_off, max_off, min_off), (n_on, b_on, max_on, min_on) = res[offline], res[online]
                r_off, r_on = not np.isnan(n_off), not np.isnan(n_on)
                have_both = parts[offline] is not None and parts[online] is not None
                if have_both and r_off and r_on:
                    kind, ratio = "exact", n_off / n_on
                elif have_both and r_on:
                    kind, ratio = "lower_bound", max_off / n_on
                elif have_both and r_off:
                    kind, ratio = "upper_bound", n_off / max_on
                else:
                    kind, ratio = "undefined", float("nan")
                row.update(
                    N_offline=n_off, N_online=n_on, offline_reached=r_off, online_reached=r_on,
                    offline_censored_at=max_off, online_censored_at=max_on,
                    ratio=float(ratio), ratio_kind=kind,
                    left_censored=bool((r_off and n_off == min_off) or (r_on and n_on == min_on)),
                )
                if have_both and b_off is not None and b_on is not None:
                    rb = _ratio(b_off, b_on)
                    row["ratio_lo"], row["ratio_hi"] = percentile_ci(rb, alpha)
                    row["frac_exact"] = float((np.isfinite(b_off) & np.isfinite(b_on)).mean())
                else:
                    row["ratio_lo"] = row["ratio_hi"] = row["frac_exact"] = float("nan")
                rows.append(row)
    out = pd.DataFrame(rows, columns=cols + extra)
    for c in ("offline_reached", "online_reached", "left_censored"):
        out[c] = out[c].astype(bool)
    if settings is not None and not out.empty:
        add = [c for c in SETTING_COLUMNS if c in settings.columns and c not in out.columns]
        if add:
            s = settings[["setting_id", *add]].drop_duplicates("setting_id")
            out = out.merge(s, on="setting_id", how="left")
    return out


# --------------------------------------------------------------------------- trends
class RatioTrend(NamedTuple):
    """Outcome of :func:`ratio_trend`: the censoring-aware Kendall τ of the ratio against a knob
    on all seeds (``tau``) and its paired seed-bootstrap percentile CI."""

    knob: str
    tau: float
    tau_lo: float
    tau_hi: float
    n_settings: int
    n_boot: int
    aggregate: str
    censored: tuple  # ((knob value, "offline" | "online" | "both"), ...) on all seeds
    alpha: float = 0.05
    pairs: tuple = (0, 0, 0)  # on all seeds: pairs of settings certainly up, certainly down, left open


def _ratio_intervals(n_off, n_on, max_off, max_on):
    """The interval each ratio is known to lie in (module docstring, *Trend verdicts*):
    ``(lo, hi, lo_open, hi_open)`` arrays; N_ε ``+inf`` = not reached, NaN = no rows."""
    n_off, n_on = np.asarray(n_off, float), np.asarray(n_on, float)
    r_off, r_on = np.isfinite(n_off), np.isfinite(n_on)
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = n_off / n_on
        lower = max_off / n_on
        upper = n_off / max_on
    lo = np.where(r_off & r_on, exact, np.where(r_on, lower, 0.0))
    hi = np.where(r_off & r_on, exact, np.where(r_off, upper, np.inf))
    lo_open = ~r_off & r_on
    hi_open = r_off & ~r_on
    none = np.isnan(n_off) | np.isnan(n_on)
    lo, hi = np.where(none, 0.0, lo), np.where(none, np.inf, hi)
    return lo, hi, lo_open & ~none, hi_open & ~none


def _censored_kendall(x: np.ndarray, iv, counts: bool = False) -> np.ndarray:
    """Kendall's τ_a of knob values ``x`` (m,) against interval-valued ratios ``iv`` (each of
    shape (..., m)) with Gehan's scoring: a pair of settings ``x_i < x_j`` scores +1 when the
    ratio at ``x_j`` is certainly above the one at ``x_i``, −1 when certainly below, 0 when the
    intervals leave the order open (ties included); τ = mean score over pairs with ``x_i ≠ x_j``."""
    lo, hi, lo_open, hi_open = iv
    i, j = np.triu_indices(x.size, 1)
    keep = x[i] != x[j]
    i, j = i[keep], j[keep]
    swap = x[i] > x[j]
    i, j = np.where(swap, j, i), np.where(swap, i, j)  # x[i] < x[j]

    def above(a, b):  # ratio a certainly above ratio b
        return (lo[..., a] > hi[..., b]) | ((lo[..., a] == hi[..., b]) & (lo_open[..., a] | hi_open[..., b]))

    score = above(j, i).astype(float) - above(i, j).astype(float)
    if counts:  # (certainly up, certainly down, left open) over the pairs
        return np.array([(score > 0).sum(), (score < 0).sum(), (score == 0).sum()])
    return score.mean(axis=-1) if i.size else np.full(lo.shape[:-1], np.nan)


def ratio_trend(
    df: pd.DataFrame,
    eps: float,
    knob: str,
    offline: str = "offline",
    online: str = "online",
    knobs: Sequence[str] = (),
    n_boot: int = N_BOOT,
    random_state=0,
    metric: str = "suboptimality",
    alpha: float = 0.05,
    rule: str = "first",
    by: str = "estimator",
    aggregate: str = "mean",
) -> RatioTrend:
    """The trend of ``N_ε(offline)/N_ε(online)`` in ``knob`` with censoring (module docstring,
    *Trend verdicts*): the censoring-aware Kendall τ on all seeds and its percentile CI over
    ``n_boot`` paired seed resamples (one draw of seed labels per replicate, shared by every
    setting and both routes). ``knobs``: further columns naming the settings (kept as ids)."""
    n_boot = _check_n_boot(n_boot)
    alpha = _check_alpha(alpha)
    rule = _check_rule(rule)
    aggregate = _check_aggregate(aggregate)
    knobs = [knob] + [k for k in _as_knobs(knobs) if k != knob]
    d = _prepare(df, metric, knobs)
    d = d[d[by].isin([offline, online])]
    seeds = pd.Index(sorted(pd.unique(d["seed"])))
    k = seeds.size
    rng = as_generator(random_state)
    idx = rng.integers(0, k, size=(n_boot, k)) if k >= 2 else None
    xs, point, boot, censored = [], [], [], []
    with _quiet():
        for sid, g in d.groupby("setting_id", sort=True):
            xv = pd.to_numeric(g[knob], errors="coerce").iloc[0]
            if pd.isna(xv):
                continue
            res = []
            for lab in (offline, online):
                gg = g[g[by] == lab]
                if gg.empty:
                    res.append((np.nan, np.full(n_boot, np.nan) if idx is not None else None, np.nan))
                    continue
                mat, grid, _ = _seed_matrix(gg, seeds=seeds)
                p, b = _neps_point_and_boot(mat, grid, eps, rule, idx, aggregate)
                res.append((np.inf if np.isnan(p) else p, b, float(grid.max())))
            (p_off, b_off, m_off), (p_on, b_on, m_on) = res
            xs.append(float(xv))
            point.append((p_off, p_on, m_off, m_on))
            boot.append((b_off, b_on))
            miss = [lab for lab, p in (("offline", p_off), ("online", p_on)) if np.isinf(p)]
            if miss:
                censored.append((_py(xv), "both" if len(miss) == 2 else miss[0]))
    x = np.asarray(xs)
    nan = float("nan")
    if x.size < 2 or np.unique(x).size < 2:
        return RatioTrend(knob, nan, nan, nan, int(x.size), n_boot, aggregate, tuple(censored), alpha)
    P = np.asarray(point, float).T  # (4, m)
    iv = _ratio_intervals(*P)
    tau = float(_censored_kendall(x, iv))
    pairs = tuple(int(v) for v in _censored_kendall(x, iv, counts=True))
    lo = hi = nan
    if idx is not None:
        B_off = np.stack([b[0] for b in boot], axis=-1)  # (n_boot, m)
        B_on = np.stack([b[1] for b in boot], axis=-1)
        taus = _censored_kendall(x, _ratio_intervals(B_off, B_on, P[2], P[3]))
        lo, hi = percentile_ci(taus, alpha)
    return RatioTrend(knob, tau, lo, hi, int(x.size), n_boot, aggregate, tuple(sorted(censored)), alpha, pairs)


# --------------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`gap_verdict`; truthy when ``passed``."""

    passed: bool
    message: str
    statistic: float = float("nan")

    def __bool__(self) -> bool:
        return bool(self.passed)


#: The one comparison grammar of genver's expectations: operator -> ``"ge" | "le" | "gt" |
#: "lt" | "eq"``. ``[expect] ratio = "≥ C"`` (:func:`gap_verdict`) and ``[expect] order``
#: statements ``A >= B`` / ``for n >= N`` (:mod:`genver.experiments.expect`) read it.
COMPARISONS = {">=": "ge", "≥": "ge", "<=": "le", "≤": "le", ">": "gt", "<": "lt", "==": "eq", "=": "eq",
               "equals": "eq"}
#: ``"OP C"`` for a ratio expectation (longest operators first, so ``>=`` is not read as ``>``)
RATIO_COMPARISON = re.compile(r"^\s*(" + "|".join(re.escape(o) for o in sorted(COMPARISONS, key=len, reverse=True))
                              + r")\s*([-+0-9.eE]+)\s*$")
#: ``"increasing in KNOB"`` / ``"decreasing in KNOB"`` for a ratio expectation
RATIO_TREND = re.compile(r"^\s*(increasing|decreasing)\s+in\s+(\S+)\s*$")
_CMP, _TREND = RATIO_COMPARISON, RATIO_TREND  # private aliases kept for callers not yet on the public names


def parse_comparison(text: str) -> tuple[str, float] | None:
    """``"≥ 2.5"`` -> ``("ge", 2.5)`` (:data:`COMPARISONS`); None when ``text`` is not ``OP C``
    with a finite number ``C``."""
    m = RATIO_COMPARISON.match(text)
    if not m:
        return None
    try:
        c = float(m.group(2))
    except ValueError:
        return None
    return (COMPARISONS[m.group(1)], c) if math.isfinite(c) else None


def gap_verdict(ratio_df: pd.DataFrame, expect: str, value_col: str = "ratio", *,
                trend: RatioTrend | None = None) -> Verdict:
    """Check a ratio table (from :func:`efficiency_ratio`) against a one-line expectation.

    Rows with ``ratio_kind == "undefined"`` (or a NaN ratio) are left out and counted in the
    message; with no usable row the verdict fails. Expectations:

    * ``"increasing in KNOB"`` / ``"decreasing in KNOB"`` with ``trend`` (a :func:`ratio_trend`
      of the same table's results, as ``genver report`` passes): the censoring-aware Kendall τ
      is positive / negative and its bootstrap CI excludes 0 (``tau_lo > 0`` / ``tau_hi < 0``;
      module docstring, *Trend verdicts*). Without ``trend`` (a bare ratio table): the point
      Spearman rank correlation between ``KNOB`` and ``ratio`` (bound values included as they
      are) is ``> 0`` / ``< 0`` — a descriptive check with no uncertainty; needs at least 2
      distinct knob values, else fails.
    * ``"equals C"`` (also ``"= C"``, ``"== C"``): every row is consistent with ``C``: its CI
      ``[ratio_lo, ratio_hi]`` contains ``C``, or, where the CI is NaN, the exact ratio equals
      ``C`` (1e-9) / a lower bound ≤ ``C`` / an upper bound ≥ ``C``.
    * ``"≥ C"`` (``">= C"``): no row is significantly below ``C``: ``ratio_hi ≥ C`` (NaN CI:
      the ratio, or an upper bound, must be ``≥ C``; a lower bound always passes).
      ``"≤ C"`` (``"<= C"``) mirrors it with ``ratio_lo ≤ C``.
    * ``"> C"`` / ``"< C"``: every row is significantly above / below ``C``: ``ratio_lo > C``
      / ``ratio_hi < C`` (NaN CI: fails unless a bound or exact ratio settles it).

    Returns a :class:`Verdict` (``passed``, ``message``, ``statistic``: Spearman ρ for trends,
    the fraction of passing rows otherwise).
    """
    if not isinstance(ratio_df, pd.DataFrame) or value_col not in ratio_df.columns:
        return Verdict(False, f"no '{value_col}' column to judge")
    d = ratio_df
    kind = d["ratio_kind"] if "ratio_kind" in d.columns else pd.Series("exact", index=d.index)
    usable = (kind != "undefined") & d[value_col].notna()
    n_undef = int((~usable).sum())
    d = d[usable]
    kind = kind[usable]
    note = f" ({n_undef} undefined row(s) left out)" if n_undef else ""
    if d.empty:
        return Verdict(False, f"no usable ratio to judge '{expect}'{note}")

    m = RATIO_TREND.match(expect)
    if m:
        direction, knob = m.groups()
        if knob not in d.columns:
            return Verdict(False, f"knob '{knob}' is not a column of the ratio table")
        x = pd.to_numeric(d[knob], errors="coerce")
        y = d[value_col].astype(float)
        ok = x.notna() & y.notna()
        if x[ok].nunique() < 2:
            return Verdict(False, f"'{expect}': fewer than 2 distinct {knob} values{note}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = float(_sps.spearmanr(x[ok], y[ok]).statistic)
        if trend is not None:
            return _trend_verdict(expect, direction, trend, rho)
        if np.isnan(rho):
            return Verdict(False, f"'{expect}': Spearman ρ undefined (constant ratio){note}", rho)
        passed = rho > 0 if direction == "increasing" else rho < 0
        return Verdict(passed, f"'{expect}': Spearman ρ({knob}, ratio) = {rho:+.3f} over "
                               f"{int(ok.sum())} settings → {'pass' if passed else 'fail'}{note}", rho)

    parsed = parse_comparison(expect)
    if parsed is None:
        raise ValueError(f"cannot parse expectation {expect!r}; use 'increasing in KNOB', "
                         "'decreasing in KNOB', 'equals C', '≥ C', '≤ C', '> C' or '< C'")
    op, c = parsed
    r = d[value_col].astype(float).to_numpy()
    lo = d["ratio_lo"].astype(float).to_numpy() if "ratio_lo" in d.columns else np.full(r.size, np.nan)
    hi = d["ratio_hi"].astype(float).to_numpy() if "ratio_hi" in d.columns else np.full(r.size, np.nan)
    k = kind.to_numpy()
    has_ci = ~(np.isnan(lo) | np.isnan(hi))
    ex, lb, ub = k == "exact", k == "lower_bound", k == "upper_bound"
    tol = 1e-9
    if op == "eq":
        fallback = (ex & (np.abs(r - c) <= tol * max(1.0, abs(c)))) | (lb & (r <= c)) | (ub & (r >= c))
        ok = np.where(has_ci, (lo <= c + tol) & (hi >= c - tol), fallback)
    elif op == "ge":
        ok = np.where(has_ci, hi >= c - tol, lb | (r >= c - tol))
    elif op == "le":
        ok = np.where(has_ci, lo <= c + tol, ub | (r <= c + tol))
    elif op == "gt":
        ok = np.where(has_ci, lo > c, (ex | lb) & (r > c))
    else:  # lt
        ok = np.where(has_ci, hi < c, (ex | ub) & (r < c))
    passed = bool(ok.all())
    frac = float(ok.mean())
    bad = d.loc[~ok, "setting_id"].astype(str).tolist() if "setting_id" in d.columns else []
    msg = (f"'{expect}': {int(ok.sum())}/{ok.size} settings consistent → "
           f"{'pass' if passed else 'fail'}{note}")
    if bad:
        msg += f"; failing: {', '.join(bad[:5])}{' …' if len(bad) > 5 else ''}"
    return Verdict(passed, msg, frac)


def censored_text(censored, knob: str) -> str:
    """``"H=5 (offline), H=6 (both)"``: the settings whose route(s) do not reach ε by the largest
    ``n`` (:attr:`RatioTrend.censored`, or :func:`censored_settings`)."""
    return ", ".join(f"{knob}={v} ({what})" for v, what in censored)


def censored_settings(ratio_df: pd.DataFrame, knob: str) -> tuple:
    """``((knob value, "offline" | "online" | "both"), ...)``: the rows of a ratio table whose
    route(s) do not reach ε by the largest ``n`` (sorted by the knob)."""
    if ratio_df is None or ratio_df.empty or knob not in ratio_df.columns:
        return ()
    out = []
    for _, r in ratio_df.iterrows():
        miss = [lab for lab, ok in (("offline", r["offline_reached"]), ("online", r["online_reached"])) if not ok]
        if miss:
            out.append((_py(r[knob]), "both" if len(miss) == 2 else miss[0]))
    return tuple(sorted(out, key=lambda t: (str(type(t[0])), t[0])))


def _trend_verdict(expect: str, direction: str, t: RatioTrend, rho_point: float) -> Verdict:
    level = f"{100 * (1 - t.alpha):g}%"
    if np.isnan(t.tau_lo):
        passed, why = False, "no bootstrap (fewer than 2 seeds or 2 knob values): the trend is not established"
    elif direction == "increasing":
        passed = bool(t.tau > 0 and t.tau_lo > 0)
        why = "CI above 0" if passed else "CI does not exclude 0" if t.tau > 0 or t.tau_hi > 0 else "not increasing"
    else:
        passed = bool(t.tau < 0 and t.tau_hi < 0)
        why = "CI below 0" if passed else "CI does not exclude 0" if t.tau < 0 or t.tau_lo < 0 else "not decreasing"
    msg = (f"'{expect}': censoring-aware Kendall τ({t.knob}, ratio) = {t.tau:+.3f}, {level} paired seed-bootstrap "
           f"CI [{t.tau_lo:+.3f}, {t.tau_hi:+.3f}] over {t.n_settings} settings (N_ε of the {t.aggregate}"
           f"{' curve' if t.aggregate == 'mean' else ' of the seeds'}) → {'pass' if passed else 'fail'}: {why}; "
           f"pairs of settings up / down / left open by censoring or ties: {t.pairs[0]} / {t.pairs[1]} / {t.pairs[2]}; "
           f"point Spearman ρ with bounds as values {rho_point:+.3f}")
    if t.censored:
        msg += f"; censored: {censored_text(t.censored, t.knob)}"
    return Verdict(passed, msg, t.tau)
