"""The sample-efficiency ratio ``N_ε(offline)/N_ε(online)`` with paired bootstrap CIs and censoring,
and its censoring-aware trend in a knob (definitions: :mod:`genver.stats`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from .._validation import as_generator
from ._tables import (
    as_knobs,
    check_aggregate,
    eps_list,
    id_columns,
    key_tuple,
    prepare_table,
    seed_matrix,
    to_python,
)
from .bootstrap import N_BOOT, group_rng, percentile_ci, quiet_numpy, seed_entropy
from .curves import check_neps_args, neps_point_and_boot

#: Columns of the ``settings`` table that :func:`efficiency_ratio` carries over when present.
SETTING_COLUMNS = (
    "log_size_R",
    "log_size_Pi",
    "n_params_R",
    "n_params_Pi",
    "predicted_ratio",
    "containment_residual",
)


# --------------------------------------------------------------------------- efficiency ratio
_RATIO_STATS = [
    "eps", "metric", "offline", "online",
    "N_offline", "N_online", "offline_reached", "online_reached",
    "offline_censored_at", "online_censored_at",
    "ratio", "ratio_kind", "ratio_lo", "ratio_hi", "frac_exact", "left_censored", "n_seeds", "aggregate",
]


def extended_ratio(n_off: np.ndarray, n_on: np.ndarray) -> np.ndarray:
    """Extended-real ratio ``N_ε(offline) / N_ε(online)``: inf/N = inf, N/inf = 0, inf/inf = NaN.

    Parameters
    ----------
    n_off, n_on : np.ndarray
        N_ε of the two routes (``+inf``: not reached), of one shape.

    Returns
    -------
    np.ndarray
        The elementwise ratio, without warnings.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return n_off / n_on


def _route_matrices(g: pd.DataFrame, by: str, labels) -> tuple[int, dict]:
    """The setting's seeds (sorted where they sort) and, per route label, its seed × n matrix
    and grid on those seeds (None for a route without rows)."""
    seeds = pd.Index(pd.unique(g["seed"]))
    try:
        seeds = seeds.sort_values()
    except TypeError:  # mixed seed labels: keep first-seen order
        pass
    parts = {}
    for lab in labels:
        gg = g[g[by] == lab]
        parts[lab] = None if gg.empty else seed_matrix(gg, seeds=seeds)[:2]
    return seeds.size, parts


def _ratio_columns(off, on, eps: float, rule: str, idx, aggregate: str, alpha: float) -> dict:
    """One setting's ratio columns at ``eps`` from the routes' ``(matrix, grid)`` (None: no
    rows): both N_ε, the ratio and its kind (module docstring), censoring, the paired CI."""
    res = []
    for part in (off, on):
        if part is None:
            res.append((float("nan"), None, float("nan"), float("nan")))
            continue
        mat, grid = part
        point, boot = neps_point_and_boot(mat, grid, eps, rule, idx, aggregate)
        res.append((point, boot, float(grid.max()), float(grid.min())))
    (n_off, b_off, max_off, min_off), (n_on, b_on, max_on, min_on) = res
    r_off, r_on = not np.isnan(n_off), not np.isnan(n_on)
    have_both = off is not None and on is not None
    if have_both and r_off and r_on:
        kind, ratio = "exact", n_off / n_on
    elif have_both and r_on:
        kind, ratio = "lower_bound", max_off / n_on
    elif have_both and r_off:
        kind, ratio = "upper_bound", n_off / max_on
    else:
        kind, ratio = "undefined", float("nan")
    row = dict(N_offline=n_off, N_online=n_on, offline_reached=r_off, online_reached=r_on,
               offline_censored_at=max_off, online_censored_at=max_on, ratio=float(ratio), ratio_kind=kind,
               left_censored=bool((r_off and n_off == min_off) or (r_on and n_on == min_on)))
    if have_both and b_off is not None and b_on is not None:
        row["ratio_lo"], row["ratio_hi"] = percentile_ci(extended_ratio(b_off, b_on), alpha)
        row["frac_exact"] = float((np.isfinite(b_off) & np.isfinite(b_on)).mean())
    else:
        row["ratio_lo"] = row["ratio_hi"] = row["frac_exact"] = float("nan")
    return row


def _route_rows(d: pd.DataFrame, by: str, offline: str, online: str) -> pd.DataFrame:
    """The rows of the two compared labels; refuses (ValueError) a bad ``by`` and, for
    ``by = "route"``, a setting with several estimators on one route."""
    if by not in ("estimator", "route"):
        raise ValueError(f"by must be 'estimator' or 'route', got {by!r}")
    d = d[d[by].isin([offline, online])]
    if by == "route" and not d.empty:
        multi = d.groupby(["setting_id", "route"])["estimator"].nunique()
        if (multi > 1).any():
            raise ValueError("by='route' needs one estimator per route and setting; "
                             f"settings {list(multi[multi > 1].index.get_level_values(0).unique())} have several")
    return d


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
    holds them.

    Parameters
    ----------
    df : pandas.DataFrame
        The tidy results table.
    eps : float or sequence of float
        The target ε (rows per value).
    offline, online : str
        The two labels compared, matched in column ``by``.
    knobs : sequence of str
        Knob columns kept as ids.
    n_boot : int
        Paired seed resamples.
    random_state : None, int, SeedSequence or Generator
        Source of the resamples.
    metric : str
        The error metric (lower is better).
    alpha : float
        One minus the CI coverage.
    rule : str
        ``"first"`` or ``"sustained"`` crossing.
    by : str
        ``"estimator"`` or ``"route"``.
    settings : pandas.DataFrame or None
        The settings table (columns :data:`SETTING_COLUMNS` carried over).
    aggregate : str
        ``"mean"``, ``"median"`` or ``"iqm"`` (above).

    Returns
    -------
    pandas.DataFrame
        Columns ``[experiment,] setting_id, *knobs, eps, metric, offline, online, N_offline,
        N_online, offline_reached, online_reached, offline_censored_at, online_censored_at,
        ratio, ratio_kind, ratio_lo, ratio_hi, frac_exact, left_censored, n_seeds[,
        predicted_ratio, ...]``.
    """
    knobs = as_knobs(knobs)
    n_boot, alpha, rule = check_neps_args(n_boot, alpha, rule)
    aggregate = check_aggregate(aggregate)
    eps_values = eps_list(eps)
    d = _route_rows(prepare_table(df, metric, knobs), by, offline, online)
    id_cols = id_columns(d, knobs)
    extra = [c for c in SETTING_COLUMNS if c in d.columns and c not in id_cols]
    base = seed_entropy(random_state)
    rows = []
    with quiet_numpy():
        for key, g in d.groupby(id_cols, dropna=False, sort=True):
            k, parts = _route_matrices(g, by, (offline, online))
            idx = group_rng(base, key).integers(0, k, size=(n_boot, k)) if k >= 2 else None
            head = {**dict(zip(id_cols, key_tuple(key))), "metric": metric, "offline": offline, "online": online,
                    "n_seeds": k, "aggregate": aggregate, **{c: g[c].iloc[0] for c in extra}}
            rows += [{**head, "eps": e, **_ratio_columns(parts[offline], parts[online], e, rule, idx, aggregate, alpha)}
                     for e in eps_values]
    return _ratio_table(pd.DataFrame(rows, columns=id_cols + _RATIO_STATS + extra), settings)


def _ratio_table(out: pd.DataFrame, settings: pd.DataFrame | None) -> pd.DataFrame:
    """The ratio table with its flags as bools and the :data:`SETTING_COLUMNS` of ``settings``
    that it does not hold yet merged in by ``setting_id``."""
    for c in ("offline_reached", "online_reached", "left_censored"):
        out[c] = out[c].astype(bool)
    if settings is not None and not out.empty:
        add = [c for c in SETTING_COLUMNS if c in settings.columns and c not in out.columns]
        if add:
            out = out.merge(settings[["setting_id", *add]].drop_duplicates("setting_id"), on="setting_id", how="left")
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


def _trend_points(d, knob, by, labels, seeds, eps, rule, idx, aggregate, n_boot):
    """Per setting of :func:`ratio_trend` with a numeric ``knob`` value: the knob values, the
    points ``(N_off, N_on, max n off, max n on)`` (N_ε ``+inf``: not reached; NaN: no rows), the
    replicate N_ε of both routes (None without resamples) and the censored settings."""
    xs, point, boot, censored = [], [], [], []
    with quiet_numpy():
        for _sid, g in d.groupby("setting_id", sort=True):
            xv = pd.to_numeric(g[knob], errors="coerce").iloc[0]
            if pd.isna(xv):
                continue
            res = []
            for lab in labels:
                gg = g[g[by] == lab]
                if gg.empty:
                    res.append((np.nan, np.full(n_boot, np.nan) if idx is not None else None, np.nan))
                    continue
                mat, grid, _ = seed_matrix(gg, seeds=seeds)
                p, b = neps_point_and_boot(mat, grid, eps, rule, idx, aggregate)
                res.append((np.inf if np.isnan(p) else p, b, float(grid.max())))
            (p_off, b_off, m_off), (p_on, b_on, m_on) = res
            xs.append(float(xv))
            point.append((p_off, p_on, m_off, m_on))
            boot.append((b_off, b_on))
            miss = [lab for lab, p in (("offline", p_off), ("online", p_on)) if np.isinf(p)]
            if miss:
                censored.append((to_python(xv), "both" if len(miss) == 2 else miss[0]))
    return xs, point, boot, censored


def _replicates(b: np.ndarray | None) -> np.ndarray:
    """A route's replicate N_ε, which exist whenever resamples were drawn."""
    if b is None:
        raise AssertionError("ratio_trend: a route has no bootstrap replicates although resamples were drawn")
    return b


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
    setting and both routes). ``knobs``: further columns naming the settings (kept as ids).

    Parameters
    ----------
    df : pandas.DataFrame
        The tidy results table.
    eps : float
        The target ε.
    knob : str
        The knob the trend is in.
    offline, online : str
        The two labels compared, matched in column ``by``.
    knobs : sequence of str
        Further knob columns naming the settings (kept as ids).
    n_boot : int
        Paired seed resamples.
    random_state : None, int, SeedSequence or Generator
        Source of the resamples.
    metric : str
        The error metric (lower is better).
    alpha : float
        One minus the CI coverage.
    rule : str
        ``"first"`` or ``"sustained"`` crossing.
    by : str
        ``"estimator"`` or ``"route"``.
    aggregate : str
        ``"mean"``, ``"median"`` or ``"iqm"``: which N_ε (:func:`efficiency_ratio`).

    Returns
    -------
    RatioTrend
        τ on all seeds, its CI, the number of settings, the censored settings and the pair counts
        (NaN τ with fewer than 2 distinct knob values).
    """
    n_boot, alpha, rule = check_neps_args(n_boot, alpha, rule)
    aggregate = check_aggregate(aggregate)
    knobs = [knob] + [k for k in as_knobs(knobs) if k != knob]
    d = prepare_table(df, metric, knobs)
    d = d[d[by].isin([offline, online])]
    seeds = pd.Index(sorted(pd.unique(d["seed"])))
    k = seeds.size
    rng = as_generator(random_state)
    idx = rng.integers(0, k, size=(n_boot, k)) if k >= 2 else None
    xs, point, boot, censored = _trend_points(d, knob, by, (offline, online), seeds, eps, rule, idx, aggregate,
                                              n_boot)
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
        # with resamples every route has its (n_boot,) replicates (a route without rows: NaN)
        B_off = np.stack([_replicates(b[0]) for b in boot], axis=-1)  # (n_boot, m)
        B_on = np.stack([_replicates(b[1]) for b in boot], axis=-1)
        taus = _censored_kendall(x, _ratio_intervals(B_off, B_on, P[2], P[3]))
        lo, hi = percentile_ci(taus, alpha)
    return RatioTrend(knob, tau, lo, hi, int(x.size), n_boot, aggregate, tuple(sorted(censored)), alpha, pairs)
