"""Tidy-table helpers of :mod:`genver.stats`: validation, seed × n matrices, first crossings,
per-seed N_ε and their extended-real aggregates (definitions: :mod:`genver.stats`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("seed", "n", "estimator", "metric", "value")


# --------------------------------------------------------------------------- table helpers
def as_knobs(knobs) -> list[str]:
    if knobs is None:
        return []
    if isinstance(knobs, str):
        return [knobs]
    return list(knobs)


def prepare_table(df: pd.DataFrame, metric: str | None, knobs: Sequence[str]) -> pd.DataFrame:
    """Validate columns, fill optional ones, select ``metric`` and drop NaN values."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
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


def id_columns(d: pd.DataFrame, knobs: Sequence[str]) -> list[str]:
    cols = ["experiment"] if "experiment" in d.columns else []
    cols.append("setting_id")
    cols += [k for k in knobs if k not in cols]
    return cols


def to_python(v):
    return v.item() if hasattr(v, "item") else v


def key_tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def seed_matrix(g: pd.DataFrame, seeds: pd.Index | None = None):
    """Seed × n matrix of values (mean of duplicates), NaN where missing."""
    piv = g.groupby(["seed", "n"], sort=True)["value"].mean().unstack("n").sort_index(axis=1)
    if seeds is not None:
        piv = piv.reindex(seeds)
    return piv.to_numpy(dtype=np.float64), np.asarray(piv.columns, dtype=np.float64), np.asarray(piv.index)


def nanmean_rows(mat: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """Mean over seeds (axis 0 of ``mat``, or over the resampled rows ``idx`` of shape
    (n_boot, k) giving (n_boot, G)), ignoring NaN; all-NaN → NaN."""
    ok = ~np.isnan(mat)
    filled = np.where(ok, mat, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if idx is None:
            return filled.sum(0) / ok.sum(0)
        return filled[idx].sum(1) / ok[idx].sum(1)


def first_reached(means: np.ndarray, eps: float, rule: str) -> np.ndarray:
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


def check_aggregate(aggregate: str) -> str:
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {list(AGGREGATES)}, got {aggregate!r}")
    return aggregate


def per_seed_neps(mat: np.ndarray, grid: np.ndarray, eps: float, rule: str) -> np.ndarray:
    """Each seed's own N_ε (first grid ``n`` of its own row meeting ε; ``+inf`` when its row never
    does; NaN for a seed with no values). A missing cell never meets ε."""
    if grid.size == 0:
        return np.full(mat.shape[0], np.nan)
    j = first_reached(mat, eps, rule)
    out = np.where(j >= 0, grid[np.maximum(j, 0)], np.inf)
    out[np.isnan(mat).all(axis=1)] = np.nan
    return out


def aggregate_neps(v: np.ndarray, how: str) -> np.ndarray:
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
    g = m // 4  # the IQM drops g values at each end of a row (unused by the median)
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


def check_rule(rule: str) -> str:
    if rule not in ("first", "sustained"):
        raise ValueError(f"rule must be 'first' or 'sustained', got {rule!r}")
    return rule


def eps_list(eps) -> list[float]:
    vals = [eps] if np.ndim(eps) == 0 else list(np.asarray(eps).ravel())
    out = []
    for e in vals:
        e = float(e)
        if np.isnan(e):
            raise ValueError("eps must not be NaN")
        out.append(e)
    return out
