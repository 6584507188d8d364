r"""Scaling laws: how ``N_ε`` grows with the class dimension, against the learning-theory bound.

Quantities
----------
For every setting ``s`` of a sweep (one grid point) and each route — offline (MLE / DPO over
``Π``) and online (reward MLE over ``R``, then exact soft RL) — ``N_ε(s)`` is, as the spec's
``[expect] aggregate`` names it (:mod:`genver.stats`): the sample size at which the route's mean
(over seeds) error curve first reaches ``ε`` (``"mean"``, the default;
:func:`genver.stats.n_epsilon`; a grid quantity, the true crossing lies in ``(n_{j−1}, n_j]``),
or the ``"median"`` / ``"iqm"`` of the seeds' own ``N_ε`` in the extended reals
(:func:`genver.stats.n_epsilon_per_seed`; ``+∞`` — right-censored — when that aggregate is).
The third quantity is the sample-efficiency ratio
``ρ(s) = N_ε(offline)/N_ε(online)`` (:func:`genver.stats.efficiency_ratio`).

Each is set against a *class-dimension descriptor* ``dim(s)`` of the setting, a column of the
sweep's ``settings`` table (:func:`genver.experiments.generators.describe`;
:mod:`genver.stats.descriptors`):

===================  =================================================  =======  =========
descriptor           meaning                                            class    family
===================  =================================================  =======  =========
``n_params_Pi``      identifiable parameters of ``Π``                   ``Π``    n_params
``n_params_R``       identifiable parameters of ``R``                   ``R``    n_params
``log_size_Pi``      ``log|Π|`` (finite classes)                        ``Π``    log_size
``log_size_R``       ``log|R|``                                         ``R``    log_size
``log_size_Pi_R``    ``log|Π(R)|`` (online's class, Theorem 3.1)        ``R``    log_size
``dim_ratio``        ``n_params_Pi / n_params_R``                       ratio    n_params
``log_size_ratio``   ``log_size_Pi / log_size_R``                       ratio    log_size
``predicted_ratio``  the bound's ratio as ``describe`` defines it:      ratio    predicted
                     ``log|Π|/log|R|``, else ``dim Π/dim R``, else
                     ``dim Π/log|R|``
===================  =================================================  =======  =========

Model and estimator
-------------------
The scaling law ``N_ε ∝ dim^a`` is the linear model, over settings,

    ``y_s = α + a·x_s + σ·z_s``,   ``y_s = log N_ε(s)`` (or ``log ρ(s)``),  ``x_s = log dim(s)``,

with ``z_s ~ N(0, 1)`` i.i.d. Without censoring its maximum-likelihood ``(α, a)`` is ordinary
least squares, computed in closed form.

**Censoring rule (Tobit-style censored-regression MLE).** A route that never reaches ``ε`` by
the largest grid ``n`` only says ``N_ε > n_max``: a right-censored observation at ``log n_max``.
A route that already meets ``ε`` at the smallest ``n`` says ``N_ε ≤ n_min``: left-censored at
``log n_min``. For the ratio, each route is an interval — exact ``[N, N]``, right
``(n_max, ∞)``, left ``(0, n_min]`` — and ``ρ ∈ (L_off/U_on, U_off/L_on)``: exact, right-censored
(a lower bound, e.g. offline censored), left-censored (an upper bound, e.g. online censored),
or undefined (both ends open, e.g. neither route reaches ``ε``; left out and counted). Bounds
never enter the fit as exact values: they enter the Tobit log-likelihood ``ℓ`` (``y_s`` the
bound for a censored point), maximised globally in Olsen's convex parametrisation by damped
Newton steps (:mod:`genver.censored`, where ``ℓ`` is written out; checked against a direct
Nelder–Mead maximisation of ``ℓ`` in ``tests/naive.py``). ``σ`` is floored at the grid's
rounding error, ``σ_min = Δ/√12`` for a route (``Δ`` the median log-spacing of the ``n`` grid: ``N_ε``
is rounded up to the grid, a uniform error of width ``Δ``) and ``Δ/√6`` for the ratio
(two roundings): otherwise exact points lying on a line would send ``σ → 0`` and the
likelihood to infinity. Identifiability: at least 2 exact points at distinct ``dim``,
otherwise ``a`` is NaN (undefined, never a number made up from bounds alone). With no
censored point the MLE is the OLS fit.
``n_censored_consistent`` counts the censored points whose bound the fitted line respects
(it lies above a lower bound / below an upper bound at that ``dim``).

Bootstrap
---------
Settings of one sweep share their random draws per replicate seed (common random numbers,
:mod:`genver.experiments.cells`), and a seed is the same preference data for both routes.
So each of ``B`` replicates draws ``k`` seed labels with replacement *once* and applies them to
every setting and both routes (paired across settings and routes, as
:func:`genver.stats.efficiency_ratio` pairs the routes), recomputes every ``N_ε`` from the
resampled seeds (the mean curve's, or the median / IQM of the resampled seeds' own ``N_ε``:
:func:`genver.stats.n_epsilon`'s machinery; replicates that never reach ``ε`` are censored in
that replicate), re-classifies the censoring and refits. Since ``N_ε`` is known only to its
grid interval ``(n_{j−1}, n_j]``, each replicate's exact ``N_ε`` is drawn log-uniformly within
it (independently per setting and route, from the same random state; for the median / IQM each
resampled seed's ``N_ε`` is drawn within its own interval before aggregating),
so the CI carries the grid's rounding as well as the seed noise (a point estimate from grid
values alone would look exact on a coarse grid with quiet seeds). The CI on
``a`` is the percentile interval of the replicate fits that are defined (``frac_boot`` is
their fraction; the others are left out). Points' CIs are the same replicates' percentile
intervals of ``N_ε`` or ``ρ`` (``inf`` where more than ``α/2`` of them never reach ``ε``).

The bound's prediction
----------------------
Standard learning theory for MLE (not a theorem of Swamy et al.; their Section 3 argues the
online route searches the smaller class):
``N_ε ≈ C·log|class|/ε`` for a finite class, ``C·dim/ε`` for a parametric one, with the
offline route learning over ``Π`` and the online route, by Theorem 3.1, over ``Π(R) ≅ R``.
The bound's predicted ``log N`` per setting is therefore ``log dim_Π`` (offline), ``log dim_R``
(online) or ``log dim_Π − log dim_R`` (ratio) in the descriptor's family (``n_params`` or
``log_size``; ``predicted_ratio`` itself for the ratio), and **predicted_a** is the OLS slope
of that predicted ``log N`` on ``x_s`` over the settings in the fit. Against the route's own
class dimension it is exactly 1 (the ratio: 1 against ``dim Π/dim R``); against the other
class it is 0 when the route's own class is the same in every setting; NaN where the family
has no finite value (e.g. ``log|R|`` of a linear class). ``agrees`` is whether the
``1 − α`` CI ``[a_lo, a_hi]`` contains ``predicted_a`` (NA when either is undefined), and
``message`` says it plainly: ``offline N_ε vs n_params_Pi: measured a = 0.62 [0.51, 0.70],
bound predicts 1: disagrees``.

Range: ``decades = log10(max dim / min dim)`` over the settings in the fit; the ratio's row
notes when it is below ``min_decades`` (the issue asks for at least 4 decades of
``dim(Π)/dim(R)``).

The fits are statistics over the tidy results table, built from the package's bootstrap and
``N_ε`` helpers (:mod:`genver.stats.bootstrap`, :mod:`genver.stats.curves`) and the censored
regression of :mod:`genver.censored`; :mod:`genver.scaling` re-exports the public names.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from .._validation import as_generator
from ..censored import (
    EXACT,
    LEFT,
    RIGHT,
    UNDEFINED,
    censored_fit,
    classify_intervals,
    ols_fit,
    point_value,
    ratio_interval,
    route_interval,
)
from ._tables import (
    aggregate_neps,
    as_knobs,
    check_aggregate,
    check_rule,
    per_seed_neps,
    prepare_table,
    seed_matrix,
    to_python,
)
from .bootstrap import check_alpha, check_n_boot, percentile_ci, quiet_numpy
from .curves import neps_point_and_boot
from .descriptors import (  # noqa: F401  (DEFAULT_*, DESCRIPTORS, descriptor_values: re-exported, keep this import path)
    DEFAULT_AGAINST,
    DEFAULT_RATIO_AGAINST,
    DESCRIPTORS,
    descriptor_lists,
    descriptor_values,
    predicted_log_n,
)
from .ratios import extended_ratio

__all__ = ["AGGREGATE_WORDS", "DESCRIPTORS", "DEFAULT_AGAINST", "DEFAULT_RATIO_AGAINST", "ScalingLaws",
           "scaling_laws", "censored_fit", "descriptor_values"]


_FIT_COLS = ["route", "label", "against", "eps", "metric", "rule", "aggregate", "a", "a_lo", "a_hi", "intercept",
             "sigma",
             "method", "n_points", "n_exact", "n_censored", "n_censored_consistent", "n_undefined", "frac_boot",
             "decades", "centre_dim", "centre_N", "predicted_a", "agrees", "message"]
_POINT_COLS = ["route", "label", "against", "dim", "N", "N_lo", "N_hi", "censoring", "eps", "n_seeds", "aggregate"]
#: how each aggregate is named in messages, the report and the figure
AGGREGATE_WORDS = {"mean": "N_ε of the mean curve", "median": "median of the seeds' N_ε",
                   "iqm": "IQM of the seeds' N_ε"}
_KIND_NAMES = {EXACT: "exact", RIGHT: "right", LEFT: "left", UNDEFINED: "undefined"}


class ScalingLaws(NamedTuple):
    """``fits``: one row per (route, against); ``points``: one row per (setting, route, against)."""

    fits: pd.DataFrame
    points: pd.DataFrame


# --------------------------------------------------------------------------- grid intervals of N_ε
def _within_grid_interval(boot: np.ndarray, grid: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Replicate ``N_ε`` on the grid (``n_j``; inf: not reached) moved to
    ``n_{j−1}·(n_j/n_{j−1})^u``, ``u ∈ (0, 1]``: log-uniform in the interval ``(n_{j−1}, n_j]``
    where the crossing lies. ``N_ε = n_min`` (left-censored) and inf stay as they are."""
    out = boot.copy()
    j = np.searchsorted(grid, boot)
    ok = np.isfinite(boot) & (j > 0) & (j < grid.size)
    lower = grid[np.maximum(j[ok] - 1, 0)]
    out[ok] = np.exp(np.log(lower) + u[ok] * (np.log(boot[ok]) - np.log(lower)))
    return out


def _jittered_seed_aggregate(mat, grid, eps, rule, idx, how, rng) -> np.ndarray:
    """Replicate median / IQM of the resampled seeds' own ``N_ε``, each moved log-uniformly
    within its grid interval first (:func:`_within_grid_interval`); ``+inf``: not reached."""
    v = per_seed_neps(mat, grid, eps, rule)[idx]  # (n_boot, k); inf: not reached, NaN: no rows
    v = _within_grid_interval(v, grid, 1.0 - rng.random(v.shape))
    out = aggregate_neps(v, how)
    return np.where(np.isnan(out), np.inf, out)


# --------------------------------------------------------------------------- public function
def scaling_laws(
    df: pd.DataFrame,
    settings: pd.DataFrame,
    eps: float,
    against: str | Sequence[str] = DEFAULT_AGAINST,
    ratio_against: str | Sequence[str] | None = DEFAULT_RATIO_AGAINST,
    offline: str = "offline",
    online: str = "online",
    by: str = "route",
    knobs: Sequence[str] = (),
    metric: str = "suboptimality",
    rule: str = "first",
    n_boot: int = 1000,
    alpha: float = 0.05,
    random_state=0,
    min_decades: float = 4.0,
    grid_jitter: bool = True,
    aggregate: str = "mean",
) -> ScalingLaws:
    """Fit ``N_ε ∝ dim^a`` for each route against each descriptor in ``against``, and
    ``N_ε(offline)/N_ε(online) ∝ dim^a`` against each in ``ratio_against`` (``None``: no
    ratio fit), with paired seed-bootstrap CIs and the bound's predicted exponent (module
    docstring). ``grid_jitter=False`` keeps the replicates' ``N_ε`` on the grid (the CI then
    carries the seed noise only). ``aggregate``: which ``N_ε`` is fitted — of the mean curve
    (``"mean"``) or the ``"median"`` / ``"iqm"`` of the seeds' own ``N_ε`` (a spec's
    ``[expect] aggregate``; named in ``fits["aggregate"]`` and, when not the mean, at the end of
    each message).

    ``df``: the tidy results table (:mod:`genver.stats` conventions); ``settings``: one row per
    ``setting_id`` with the descriptor columns (``DIR/settings.parquet``). ``offline`` /
    ``online`` are labels in column ``by`` (``"route"`` or ``"estimator"``, as in
    :func:`genver.stats.efficiency_ratio`). Returns :class:`ScalingLaws` ``(fits, points)``:

    * ``fits``: ``route`` ("offline" | "online" | "ratio"), ``label``, ``against``, ``eps``,
      ``metric``, ``rule``, ``aggregate``, ``a``, ``a_lo``, ``a_hi``, ``intercept`` (natural log:
      ``log N = intercept + a log dim``), ``sigma``, ``method`` ("ols" | "tobit" | "undefined"),
      ``n_points`` (settings in the fit), ``n_exact``, ``n_censored``,
      ``n_censored_consistent``, ``n_undefined`` (settings left out: undefined value or
      descriptor), ``frac_boot`` (NaN without resamples: one seed or no fit), ``decades``,
      ``centre_dim``, ``centre_N`` (the fitted line at the mean ``log dim``), ``predicted_a``,
      ``agrees`` (nullable boolean), ``message``.
    * ``points``: ``setting_id``, ``*knobs``, ``route``, ``label``, ``against``, ``dim``,
      ``N`` (``N_ε`` or the ratio; the bound for a censored point), ``N_lo``, ``N_hi``,
      ``censoring`` ("exact" | "right" | "left" | "undefined"), ``eps``, ``n_seeds``, ``aggregate``.

    Parameters
    ----------
    df : pandas.DataFrame
        the tidy results table.
    settings : pandas.DataFrame
        one row per ``setting_id`` with the descriptor columns.
    eps : float
        ``ε`` of ``N_ε`` (> 0).
    against : str or sequence of str
        the descriptors each route is fitted against.
    ratio_against : str, sequence of str or None
        the descriptors the ratio is fitted against (None: no ratio fit).
    offline, online : str
        the two routes' labels in column ``by``.
    by : str
        ``"route"`` or ``"estimator"``.
    knobs : sequence of str
        the swept knobs (copied into ``points``).
    metric : str
        the error metric whose curve reaches ``ε``.
    rule : str
        the crossing rule of :func:`genver.stats.n_epsilon` (``"first"`` or ``"sustained"``).
    n_boot : int
        bootstrap replicates ``B``.
    alpha : float
        the CIs are ``1 − α`` percentile intervals.
    random_state : int or numpy.random.Generator
        the resampling's seed.
    min_decades : float
        the decades of the ratio's descriptor below which its message says so.
    grid_jitter : bool
        draw each replicate's ``N_ε`` log-uniformly within its grid interval.
    aggregate : str
        ``"mean"``, ``"median"`` or ``"iqm"``.

    Returns
    -------
    ScalingLaws
        ``(fits, points)``.
    """
    against, ratio_against = descriptor_lists(against, ratio_against)
    if by not in ("estimator", "route"):
        raise ValueError(f"by must be 'estimator' or 'route', got {by!r}")
    if not isinstance(settings, pd.DataFrame) or "setting_id" not in settings.columns:
        raise ValueError("settings must be a DataFrame with a 'setting_id' column (DIR/settings.parquet)")
    n_boot = check_n_boot(n_boot)
    alpha = check_alpha(alpha)
    rule = check_rule(rule)
    aggregate = check_aggregate(aggregate)
    eps = float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    knobs = as_knobs(knobs)
    d = prepare_table(df, metric, knobs)
    d = d[d[by].isin([offline, online])]
    if by == "route" and not d.empty and (d.groupby(["setting_id", "route"])["estimator"].nunique() > 1).any():
        raise ValueError("by='route' needs one estimator per route and setting; name the labels with by='estimator'")
    sids = sorted(d["setting_id"].unique(), key=str)
    seeds = pd.Index(sorted(pd.unique(d["seed"])))
    k = seeds.size
    rng = as_generator(random_state)
    idx = rng.integers(0, k, size=(n_boot, k)) if k >= 2 else None
    obs, steps = _observations(d, sids, seeds, by, {"offline": offline, "online": online}, eps, rule, idx,
                               n_boot, aggregate, grid_jitter, rng)
    return _fit_tables(d, settings, sids, knobs, obs, steps, against, ratio_against, offline, online,
                       resampled=idx is not None, eps=eps, metric=metric, rule=rule, alpha=alpha,
                       min_decades=min_decades, n_boot=n_boot, aggregate=aggregate)


def _fit_tables(d, settings, sids, knobs, obs, steps, against, ratio_against, offline, online, *, resampled, eps,
                metric, rule, alpha, min_decades, n_boot, aggregate) -> ScalingLaws:
    """The ``fits`` and ``points`` tables from the routes' observations ``obs``
    (:func:`_observations`): one fit per (route, descriptor) and one point per setting of it."""
    delta = float(np.median(steps)) if steps else 0.0
    sigma_floor = {"offline": delta / math.sqrt(12), "online": delta / math.sqrt(12), "ratio": delta / math.sqrt(6)}
    labels = {"offline": offline, "online": online, "ratio": f"{offline} / {online}"}
    n_seeds = {sid: int(d.loc[d["setting_id"] == sid, "seed"].nunique()) for sid in sids}
    knob_vals = (d.drop_duplicates("setting_id").set_index("setting_id")[knobs] if knobs
                 else pd.DataFrame(index=pd.Index(sids, name="setting_id")))

    fits, points = [], []
    jobs = [(r, a) for a in against for r in ("offline", "online")] + [("ratio", a) for a in ratio_against]
    for route, name in jobs:
        (L, U), (Lb, Ub), boot_vals = obs[route]
        kind, y = classify_intervals(L, U)
        kind_b, y_b = classify_intervals(Lb, Ub)
        dim = descriptor_values(settings, name).reindex(sids).to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(np.isfinite(dim) & (dim > 0), np.log(dim), np.nan)
        for i, sid in enumerate(sids):
            lo, hi = (percentile_ci(boot_vals[:, i], alpha) if resampled else (np.nan, np.nan))
            points.append({"setting_id": sid, **{kk: to_python(knob_vals.loc[sid, kk]) for kk in knobs},
                           "route": route, "label": labels[route], "against": name, "dim": dim[i],
                           "N": point_value(kind[i], L[i], U[i]), "N_lo": lo, "N_hi": hi,
                           "censoring": _KIND_NAMES[int(kind[i])], "eps": eps, "n_seeds": n_seeds[sid],
                           "aggregate": aggregate})
        ok = np.isfinite(x) & (kind != UNDEFINED)
        fits.append(_fit_row(route, labels[route], name, x, y, kind, kind_b, y_b, ok, sigma_floor[route],
                             predicted_log_n(settings, route, name).reindex(sids).to_numpy(dtype=float),
                             eps, metric, rule, alpha, min_decades, n_boot, aggregate))
    fit_df = pd.DataFrame(fits, columns=_FIT_COLS)
    fit_df["agrees"] = fit_df["agrees"].astype("boolean")
    pt_df = pd.DataFrame(points, columns=["setting_id", *knobs, *_POINT_COLS])
    return ScalingLaws(fit_df, pt_df)


def _observations(d, sids, seeds, by, route_labels, eps, rule, idx, n_boot, aggregate, grid_jitter, rng):
    """Per setting and route, the point ``N_ε`` and the replicate ``N_ε`` (one seed resample
    ``idx`` for everything), as intervals: ``{route: ((L, U) per setting, (L, U) per replicate
    and setting, replicate values)}`` for offline, online and their ratio, and the log-spacings
    of the ``n`` grids seen (for the floor ``σ_min``)."""
    obs = {}
    steps = []
    with quiet_numpy():
        for name in ("offline", "online"):
            lab = route_labels[name]
            S = len(sids)
            point, n_lo, n_hi = np.full(S, np.nan), np.full(S, np.nan), np.full(S, np.nan)
            boot, jittered = np.full((n_boot, S), np.nan), np.full((n_boot, S), np.nan)
            u = 1.0 - rng.random((n_boot, S))  # in (0, 1]: position within the grid interval
            for i, sid in enumerate(sids):
                g = d[(d["setting_id"] == sid) & (d[by] == lab)]
                if g.empty:  # no rows: an undefined point
                    continue
                mat, grid, _ = seed_matrix(g, seeds=seeds)
                p, b = neps_point_and_boot(mat, grid, eps, rule, idx, aggregate)
                point[i] = np.inf if np.isnan(p) else p  # not reached: +inf (extended reals)
                n_lo[i], n_hi[i] = grid.min(), grid.max()
                if b is not None:
                    boot[:, i] = b
                    if not grid_jitter:
                        jittered[:, i] = b
                    elif aggregate == "mean":
                        jittered[:, i] = _within_grid_interval(b, grid, u[:, i])
                    else:
                        jittered[:, i] = _jittered_seed_aggregate(mat, grid, eps, rule, idx, aggregate, rng)
                if grid.size >= 2:
                    steps.append(float(np.median(np.diff(np.log(grid)))))
            obs[name] = (route_interval(point, n_lo, n_hi), route_interval(jittered, n_lo, n_hi), boot)
        (ivo, ivbo, bo), (ivn, ivbn, bn) = obs["offline"], obs["online"]
        obs["ratio"] = (ratio_interval(ivo, ivn), ratio_interval(ivbo, ivbn), extended_ratio(bo, bn))
    return obs, steps


def _fit_row(route, label, against, x, y, kind, kind_b, y_b, ok, sigma_min, pred_logN, eps, metric, rule,
             alpha, min_decades, n_boot, aggregate="mean") -> dict:
    xs, ys, ks = x[ok], y[ok], kind[ok]
    al, a, sig = censored_fit(xs, ys, ks, sigma_min)
    n_exact = int((ks == EXACT).sum())
    n_cens = int(ok.sum()) - n_exact
    method = "undefined" if np.isnan(a) else ("ols" if n_cens == 0 else "tobit")
    boot = np.full(n_boot, np.nan)
    resampled = not np.isnan(a) and bool((kind_b != UNDEFINED).any())  # False with one seed
    if resampled:
        seen = {}  # N_ε is a grid quantity: many replicates repeat a configuration, fitted once
        for b in range(kind_b.shape[0]):
            okb = np.isfinite(x) & (kind_b[b] != UNDEFINED)
            key = (okb.tobytes(), kind_b[b][okb].tobytes(), y_b[b][okb].tobytes())
            if key not in seen:
                seen[key] = censored_fit(x[okb], y_b[b][okb], kind_b[b][okb], sigma_min, start=(al, a, sig))[1]
            boot[b] = seen[key]
    a_lo, a_hi = percentile_ci(boot, alpha)
    frac = float(np.isfinite(boot).mean()) if resampled else float("nan")
    consistent = 0
    if not np.isnan(a):
        fit_y = al + a * xs
        consistent = int((((ks == RIGHT) & (fit_y >= ys)) | ((ks == LEFT) & (fit_y <= ys))).sum())
    dims = np.exp(xs)
    decades = float(np.log10(dims.max() / dims.min())) if dims.size else float("nan")
    xc = float(xs.mean()) if xs.size else float("nan")
    pm = np.isfinite(pred_logN[ok])
    if pm.all() and xs.size >= 2 and np.ptp(xs) > 0:
        pred = ols_fit(xs, pred_logN[ok])[1]
        pred = float(np.round(pred, 12))
    else:
        pred = float("nan")
    agrees = None
    if np.isfinite(pred) and not (np.isnan(a_lo) or np.isnan(a_hi)):
        agrees = bool(a_lo - 1e-12 <= pred <= a_hi + 1e-12)
    what = {"offline": "offline N_ε", "online": "online N_ε", "ratio": "N_ε(offline)/N_ε(online)"}[route]
    if np.isnan(a):
        msg = (f"{what} vs {against}: exponent undefined (fewer than 2 exact points at distinct {against}; "
               f"{n_exact} exact, {n_cens} censored)")
    else:
        ci = f"[{a_lo:.2f}, {a_hi:.2f}]" if not np.isnan(a_lo) else "[CI undefined: one seed]"
        verdict = {True: "agrees", False: "disagrees", None: "not comparable"}[agrees]
        pred_txt = f"{pred:.3g}" if np.isfinite(pred) else "nothing (descriptor undefined)"
        msg = f"{what} vs {against}: measured a = {a:.2f} {ci}, bound predicts {pred_txt}: {verdict}"
        if n_cens:
            msg += f" ({n_cens} of {n_exact + n_cens} points censored, Tobit fit; line respects {consistent})"
        if resampled and frac < 1:
            msg += f"; {round((1 - frac) * n_boot)} of {n_boot} resamples undefined, left out of the CI"
    if route == "ratio" and not (decades >= min_decades):
        msg += f"; covers {decades:.2f} decades of {against} (fewer than the {min_decades:g} asked)"
    if aggregate != "mean":
        msg += f"; N_ε: {AGGREGATE_WORDS[aggregate]}"
    return {"route": route, "label": label, "against": against, "eps": eps, "metric": metric, "rule": rule,
            "aggregate": aggregate,
            "a": a, "a_lo": a_lo, "a_hi": a_hi, "intercept": al, "sigma": sig, "method": method,
            "n_points": int(ok.sum()), "n_exact": n_exact, "n_censored": n_cens,
            "n_censored_consistent": consistent, "n_undefined": int((~ok).sum()), "frac_boot": frac,
            "decades": decades, "centre_dim": float(np.exp(xc)) if np.isfinite(xc) else float("nan"),
            "centre_N": float(np.exp(al + a * xc)) if not np.isnan(a) else float("nan"),
            "predicted_a": pred, "agrees": agrees, "message": msg}
