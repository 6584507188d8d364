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

from ._tables import AGGREGATES
from .bootstrap import (
    N_BOOT,
    BootstrapCI,
    group_rng,
    iqm,
    percentile_ci,
    seed_entropy,
    stratified_bootstrap_ci,
)
from .curves import aggregate, loglog_slope, n_epsilon, n_epsilon_per_seed
from .ratios import SETTING_COLUMNS, RatioTrend, efficiency_ratio, ratio_trend
from .verdicts import (  # noqa: F401  (RATIO_COMPARISON, censored_*: read by the spec validation and the report)
    COMPARISONS,
    RATIO_COMPARISON,
    RATIO_TREND,
    Verdict,
    censored_settings,
    censored_text,
    gap_verdict,
    parse_comparison,
)

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
