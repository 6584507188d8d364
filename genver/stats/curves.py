"""Per-curve statistics over tidy results: mean / IQM with bootstrap CIs, N_ε (mean curve and
per seed) and log-log slopes (definitions: :mod:`genver.stats`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._tables import (
    aggregate_neps,
    as_knobs,
    check_rule,
    eps_list,
    first_reached,
    id_columns,
    key_tuple,
    nanmean_rows,
    per_seed_neps,
    prepare_table,
    seed_matrix,
    to_python,
)
from .bootstrap import N_BOOT, check_alpha, check_n_boot, group_rng, iqm, percentile_ci, quiet_numpy, seed_entropy

# --------------------------------------------------------------------------- aggregate
_AGG_STATS = ["n_seeds", "mean", "mean_lo", "mean_hi", "iqm", "iqm_lo", "iqm_hi"]


def aggregate(
    df: pd.DataFrame,
    metric: str = "suboptimality",
    knobs: Sequence[str] = (),
    n_boot: int = N_BOOT,
    random_state=0,
    alpha: float = 0.05,
    with_iqm: bool = True,
) -> pd.DataFrame:
    """Per (setting_id, knobs..., estimator, route, n): mean and IQM over seeds with
    ``1 − alpha`` percentile bootstrap CIs over seeds (``with_iqm=False``: the IQM columns are
    NaN and not computed — most of the cost, for callers that draw only the mean; the mean
    columns are the same bits either way).

    Parameters
    ----------
    df : pandas.DataFrame
        The tidy results table (module docstring of :mod:`genver.stats`).
    metric : str
        The metric whose rows are aggregated.
    knobs : sequence of str
        Knob columns kept as ids.
    n_boot : int
        Bootstrap replicates per group.
    random_state : None, int, SeedSequence or Generator
        Source of the resamples (with each group's key: :func:`group_rng`).
    alpha : float
        One minus the CI coverage.
    with_iqm : bool
        Compute the IQM columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``[experiment,] setting_id, *knobs, estimator, route, n, metric, n_seeds, mean,
        mean_lo, mean_hi, iqm, iqm_lo, iqm_hi``. ``n_seeds`` counts non-NaN values; CIs are NaN
        with fewer than 2. Each group's resamples come from ``random_state`` and the group's key,
        so they do not depend on the rest of the table.
    """
    knobs = as_knobs(knobs)
    n_boot = check_n_boot(n_boot)
    alpha = check_alpha(alpha)
    d = prepare_table(df, metric, knobs)
    keys = id_columns(d, knobs) + ["estimator", "route", "n"]
    cols = keys + ["metric"] + _AGG_STATS
    if d.empty:
        return pd.DataFrame(columns=cols)
    base = seed_entropy(random_state)
    rows = []
    with quiet_numpy():
        for key, g in d.groupby(keys, dropna=False, sort=True):
            v = g["value"].to_numpy(dtype=np.float64)
            k = v.size
            row = dict(zip(keys, key_tuple(key)))
            row["metric"] = metric
            row["n_seeds"] = k
            with np.errstate(all="ignore"):
                row["mean"] = float(np.mean(v))
                row["iqm"] = iqm(v) if with_iqm else float("nan")
                if k >= 2:
                    rng = group_rng(base, key)
                    samp = v[rng.integers(0, k, size=(n_boot, k))]
                    row["mean_lo"], row["mean_hi"] = percentile_ci(samp.mean(1), alpha)
                    row["iqm_lo"], row["iqm_hi"] = (percentile_ci(iqm(samp, axis=1), alpha) if with_iqm
                                                    else (float("nan"), float("nan")))
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


def neps_point_and_boot(mat, grid, eps, rule, idx, aggregate="mean"):
    """Point N_ε (NaN if not reached) and replicate N_ε (inf if not reached): of the mean curve
    (``aggregate="mean"``), or the median / IQM of the seeds' own N_ε.

    Parameters
    ----------
    mat : np.ndarray
        Seed × n values, shape ``(S, G)`` (NaN where missing).
    grid : np.ndarray
        The sizes ``n`` of the columns, shape ``(G,)``, increasing.
    eps : float
        The threshold ε.
    rule : str
        ``"first"`` or ``"sustained"`` (see :func:`n_epsilon`).
    idx : np.ndarray or None
        Resampled seed rows, shape ``(n_boot, S)``; None: no replicates.
    aggregate : str
        ``"mean"`` (N_ε of the mean curve), ``"median"`` or ``"iqm"`` (of the per-seed N_ε).

    Returns
    -------
    tuple
        ``(point, boot)``: the point N_ε and the ``(n_boot,)`` replicate N_ε (None without ``idx``
        or with an empty grid).
    """
    if aggregate != "mean":
        v = per_seed_neps(mat, grid, eps, rule)
        point = float(aggregate_neps(v, aggregate))
        point = float("nan") if np.isinf(point) else point
        if idx is None or grid.size == 0:
            return point, None
        boot = aggregate_neps(v[idx], aggregate)
        return point, np.where(np.isnan(boot), np.inf, boot)
    j = int(first_reached(nanmean_rows(mat), eps, rule)) if grid.size else -1
    point = float(grid[j]) if j >= 0 else float("nan")
    if idx is None or grid.size == 0:
        return point, None
    jb = first_reached(nanmean_rows(mat, idx), eps, rule)
    boot = np.where(jb >= 0, grid[np.maximum(jb, 0)], np.inf)
    return point, boot


def check_neps_args(n_boot, alpha, rule) -> tuple[int, float, str]:
    """``(n_boot, alpha, rule)`` of an N_ε bootstrap, checked (ValueError naming the bad one).

    Parameters
    ----------
    n_boot : int
        Bootstrap replicates (:func:`~genver.stats.bootstrap.check_n_boot`).
    alpha : float
        α of the ``1 − α`` interval (:func:`~genver.stats.bootstrap.check_alpha`).
    rule : str
        ``"first"`` or ``"sustained"``.

    Returns
    -------
    tuple of (int, float, str)
        The three, checked.
    """
    return check_n_boot(n_boot), check_alpha(alpha), check_rule(rule)


def _neps_columns(mat, grid, eps: float, rule: str, idx, alpha: float) -> dict:
    """One group's N_ε columns at ``eps`` (:func:`n_epsilon`) from its seed × n matrix ``mat`` on
    ``grid`` and the shared resample indices ``idx`` (None: fewer than 2 seeds)."""
    point, boot = neps_point_and_boot(mat, grid, eps, rule, idx)
    reached = not np.isnan(point)
    row = dict(N_eps=point, reached=reached, censored_at=float(grid.max()), n_min=float(grid.min()),
               left_censored=bool(reached and point == grid.min()))
    if boot is not None:
        row["N_eps_lo"], row["N_eps_hi"] = percentile_ci(boot, alpha)
        row["frac_reached"] = float(np.isfinite(boot).mean())
    else:
        row["N_eps_lo"] = row["N_eps_hi"] = row["frac_reached"] = float("nan")
    v = per_seed_neps(mat, grid, eps, rule)
    row["frac_seeds_reached"] = float(np.isfinite(v).sum() / max(1, (~np.isnan(v)).sum()))
    for how in ("median", "iqm"):
        row[f"N_eps_{how}"] = float(aggregate_neps(v, how))
        lo_hi = percentile_ci(aggregate_neps(v[idx], how), alpha) if idx is not None else (np.nan,) * 2
        row[f"N_eps_{how}_lo"], row[f"N_eps_{how}_hi"] = lo_hi
    return row


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

    Parameters
    ----------
    df : pandas.DataFrame
        The tidy results table (module docstring of :mod:`genver.stats`).
    eps : float or sequence of float
        The target ε (one row per value).
    metric : str
        The error metric (lower is better).
    knobs : sequence of str
        Knob columns kept as ids.
    n_boot : int
        Bootstrap replicates (seed resamples) per group.
    random_state : None, int, SeedSequence or Generator
        Source of the resamples.
    alpha : float
        One minus the CI coverage.
    rule : str
        ``"first"`` or ``"sustained"`` crossing.

    Returns
    -------
    pandas.DataFrame
        Columns ``[experiment,] setting_id, *knobs, estimator, route, eps, metric, rule, N_eps,
        reached, censored_at, n_min, left_censored, N_eps_lo, N_eps_hi, frac_reached, n_seeds,
        N_eps_median, N_eps_median_lo, N_eps_median_hi, N_eps_iqm, N_eps_iqm_lo, N_eps_iqm_hi,
        frac_seeds_reached``. The per-seed aggregates are extended reals (``+inf``: not reached);
        ``frac_seeds_reached`` is the fraction of seeds whose own curve reaches ε. The resamples
        of a group are shared by all ε and all three aggregates.

    Examples
    --------
    Two seeds on the grid ``n = 1, 2, 4``: the mean curve (0.4, 0.15, 0.03) first reaches
    ``ε = 0.1`` at ``n = 4``; the seeds' own N_ε are 4 and 2, median 3 (not a grid value).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "n": [1, 2, 4] * 2, "estimator": "dpo",
    ...                    "metric": "suboptimality", "value": [0.5, 0.2, 0.05, 0.3, 0.1, 0.01]})
    >>> ne = n_epsilon(df, 0.1, n_boot=200)
    >>> print(ne[["estimator", "N_eps", "reached", "censored_at", "N_eps_median"]].to_string(index=False))
    estimator  N_eps  reached  censored_at  N_eps_median
          dpo    4.0     True          4.0           3.0
    """
    knobs = as_knobs(knobs)
    n_boot, alpha, rule = check_neps_args(n_boot, alpha, rule)
    eps_values = eps_list(eps)
    d = prepare_table(df, metric, knobs)
    keys = id_columns(d, knobs) + ["estimator", "route"]
    cols = keys + _NEPS_STATS
    if d.empty:
        return pd.DataFrame(columns=cols)
    base = seed_entropy(random_state)
    rows = []
    with quiet_numpy():
        for key, g in d.groupby(keys, dropna=False, sort=True):
            mat, grid, _ = seed_matrix(g)
            k = mat.shape[0]
            idx = group_rng(base, key).integers(0, k, size=(n_boot, k)) if k >= 2 else None
            for e in eps_values:
                row = dict(zip(keys, key_tuple(key)))
                row.update(eps=e, metric=metric, rule=rule, n_seeds=k)
                row.update(_neps_columns(mat, grid, e, rule, idx, alpha))
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

    Parameters
    ----------
    df : pandas.DataFrame
        The tidy results table (module docstring of :mod:`genver.stats`).
    eps : float or sequence of float
        The target ε (rows per value).
    metric : str
        The error metric (lower is better).
    knobs : sequence of str
        Knob columns kept as ids.
    rule : str
        ``"first"`` or ``"sustained"`` crossing.

    Returns
    -------
    pandas.DataFrame
        Columns ``[experiment,] setting_id, *knobs, estimator, route, seed, eps, metric, rule,
        N_eps`` (``+inf`` when the seed never reaches ε: right-censored at ``censored_at``),
        ``reached``, ``censored_at`` (the largest ``n`` of the setting's grid).
    """
    knobs = as_knobs(knobs)
    rule = check_rule(rule)
    eps_values = eps_list(eps)
    d = prepare_table(df, metric, knobs)
    keys = id_columns(d, knobs) + ["estimator", "route"]
    cols = keys + ["seed", "eps", "metric", "rule", "N_eps", "reached", "censored_at"]
    rows = []
    with quiet_numpy():
        for key, g in d.groupby(keys, dropna=False, sort=True):
            mat, grid, seeds = seed_matrix(g)
            for e in eps_values:
                for s, v in zip(seeds, per_seed_neps(mat, grid, e, rule)):
                    rows.append({**dict(zip(keys, key_tuple(key))), "seed": to_python(s), "eps": e, "metric": metric,
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

    Parameters
    ----------
    df : pandas.DataFrame
        The tidy results table (module docstring of :mod:`genver.stats`).
    metric : str
        The metric whose mean curve is fitted.
    knobs : sequence of str
        Knob columns kept as ids.

    Returns
    -------
    pandas.DataFrame
        Columns ``[experiment,] setting_id, *knobs, estimator, route, metric, slope, slope_se,
        intercept, n_points, n_lo, n_hi`` (``intercept`` is on the natural-log scale; ``n_lo``
        and ``n_hi`` are the smallest and largest ``n`` used).
    """
    knobs = as_knobs(knobs)
    d = prepare_table(df, metric, knobs)
    keys = id_columns(d, knobs) + ["estimator", "route"]
    cols = keys + ["metric", "slope", "slope_se", "intercept", "n_points", "n_lo", "n_hi"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    with quiet_numpy():
        for key, g in d.groupby(keys, dropna=False, sort=True):
            mat, grid, _ = seed_matrix(g)
            m = nanmean_rows(mat)
            ok = np.isfinite(m) & (m > 0) & (grid > 0)
            x, y = np.log(grid[ok]), np.log(m[ok])
            p = int(ok.sum())
            row = dict(zip(keys, key_tuple(key)))
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
