r"""Ordering expectations: machine-checkable statements comparing estimators' curves.

``[expect] order`` is a list of statements, each checked by ``genver report`` (PASS/FAIL per
statement). Syntax::

    [METRIC:] A OP B [OP C ...] [where KNOB = VALUE[, KNOB = VALUE ...]]
                                [at n = N | at n = max | for n >= N | for n <= N]

* ``METRIC`` — a metric of the spec (default ``suboptimality``), or ``frontier`` (below).
* ``A``, ``B``, … — estimator labels; ``OP`` ∈ ``>=  <=  >  <  =`` (also ``≥ ≤ ==``: the
  symbols of genver's one comparison grammar, :data:`genver.stats.COMPARISONS`). A chain
  ``A >= B >= C`` is the statements ``A >= B`` and ``B >= C``. Comparisons are on the metric's
  values as they are (for ``suboptimality`` lower is better, for ``bt_loglik`` higher is better).
* ``where`` keeps the settings whose knob equals the value (compared as text); ``at n`` /
  ``for n`` keep those sample sizes (``max``: the largest).

Statistics. A *cell* is one (setting, n). Its statistic is the seed-paired mean difference
``D = mean_s [v_A(s) − v_B(s)]`` over the seeds both estimators have, with a 95% percentile
bootstrap CI over seeds (:data:`genver.stats.N_BOOT` resamples; generators by genver.stats' one
seeding rule, :func:`genver.stats.group_rng`, from random state 0 and the statement and cell;
intervals by :func:`genver.stats.percentile_ci`, ±inf as extended reals). With one seed the CI
is the point.
``tol = 1e-5·max(1, max |mean value|)`` absorbs solver rounding (near-deterministic optima, e.g.
at β = 0.01, are flat to about 1e-6).

* ``A >= B`` — never significantly below: no cell has ``CI_hi < −tol``. (``A <= B`` mirrors.)
* ``A > B`` — ``A >= B`` and, in every setting, the difference averaged over its selected
  ``n`` (each seed's mean over ``n``, then the seed-paired mean) has ``CI_lo > tol``: the curve
  lies significantly above, and is never significantly below. (``A < B`` mirrors.)
* ``A = B`` — every cell's CI contains 0 (within ``tol``).

A *trend* statement ``[METRIC:] A - B increasing in KNOB`` (or ``decreasing``; qualifiers as
above) takes, per setting, the seed-paired mean difference ``A − B`` averaged over the selected
``n``, and the Spearman rank correlation ρ between ``KNOB`` and that difference over the
settings. It rests on the bootstrap of ρ, not on the point: each of the ``N_BOOT`` replicates draws
the seed labels once (with replacement) for every setting — settings share their seeds, so the
replicates are paired across settings — and recomputes every setting's difference and ρ (a
replicate with all differences equal has ρ = 0; ties get average ranks). "increasing" passes
when ρ > 0 and its 95% percentile CI lies above 0 ("decreasing": below 0); with one seed there
is no CI and the statement fails. The detail lists ρ, its CI and each setting's difference and
CI (the same rule as :func:`genver.stats.ratio_trend` for the sample-efficiency ratio, where
censoring also enters).

``frontier: A > B`` compares reward–KL frontiers traced by the knob ``beta``: within each group
of the other knobs and ``n``, every β-point of ``A`` whose mean ``KL(π̂‖π_ref)`` lies inside
``B``'s range of mean KL is a cell, with statistic ``E r*`` of ``A`` minus ``B``'s linear
interpolation at the same KL (means over seeds, metrics ``expected_reward`` and
``kl_to_reference``; the bootstrap resamples seeds jointly across β). ``A > B`` then means
``A`` earns significantly more reward at matched KL; the operators read as above.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..stats import COMPARISONS, N_BOOT, group_rng, percentile_ci, seed_entropy

__all__ = ["Statement", "parse_order", "check_order", "N_BOOT"]

#: the symbolic operators of genver's comparison grammar (``equals`` is for ratio expectations)
_SYMBOLS = sorted((o for o in COMPARISONS if not o.isalpha()), key=len, reverse=True)
_OP_RE = re.compile(r"\s*(" + "|".join(re.escape(o) for o in _SYMBOLS) + r")\s*")
_LABEL = re.compile(r"^[A-Za-z0-9_.@+\-]+$")
_NQUAL = re.compile(r"\s+(at\s+n\s*=\s*(\d+|max)|for\s+n\s*(>=|<=|≥|≤)\s*(\d+))\s*$")
_WHERE = re.compile(r"\s+where\s+(.+?)\s*$")
_METRIC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_@]*)\s*:\s*(.*)$")


@dataclass
class Statement:
    """One parsed ``[expect] order`` statement (module docstring): ``text`` as written, ``metric``
    compared (``frontier`` for a reward–KL frontier), ``pairs`` ``[(A, op, B), ...]`` with ``op`` a
    comparison name of :data:`genver.stats.COMPARISONS` (a trend: ``[(A, "increasing" |
    "decreasing", B)]`` with ``trend_knob``), ``where`` ``{knob: value as text}`` and
    ``n_filter`` (``("eq", N | "max")``, ``("ge", N)``, ``("le", N)`` or None).
    """
    text: str
    metric: str
    pairs: list  # [(A, op, B), ...]; for a trend [(A, "increasing" | "decreasing", B)]
    where: dict = field(default_factory=dict)
    n_filter: tuple | None = None  # ("eq", N | "max") | ("ge", N) | ("le", N)
    trend_knob: str | None = None


#: ``A - B increasing in KNOB``: a trend of a difference (a ratio's trend: genver.stats.RATIO_TREND)
_DIFF_TREND = re.compile(r"^\s*(\S+)\s+-\s+(\S+)\s+(increasing|decreasing)\s+in\s+(\S+)\s*$")


def parse_order(text: str) -> Statement:
    """Parse one statement; ``ValueError`` with the reason when malformed.

    Parameters
    ----------
    text : str
        the statement, e.g. ``"offline > online where V = 4 at n = max"``.

    Returns
    -------
    Statement
        the statement's metric, pairs, filters and trend knob.

    Examples
    --------
    >>> st = parse_order("offline > online where V = 4 at n = max")
    >>> st.metric, st.pairs, st.where, st.n_filter
    ('suboptimality', [('offline', 'gt', 'online')], {'V': '4'}, ('eq', 'max'))
    >>> parse_order("dpo - rm_rl increasing in V").trend_knob
    'V'
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("an order statement must be a non-empty string")
    rest = text.strip()
    n_filter = None
    m = _NQUAL.search(rest)
    if m:
        if m.group(2) is not None:
            n_filter = ("eq", "max" if m.group(2) == "max" else int(m.group(2)))
        else:
            n_filter = (COMPARISONS[m.group(3)], int(m.group(4)))
        rest = rest[: m.start()]
    where = {}
    m = _WHERE.search(rest)
    if m:
        for part in re.split(r"\s*(?:,|\band\b)\s*", m.group(1)):
            if not part:
                continue
            kv = part.split("=")
            if len(kv) != 2 or not kv[0].strip() or not kv[1].strip():
                raise ValueError(f"{text!r}: 'where' expects KNOB = VALUE, got {part!r}")
            where[kv[0].strip()] = kv[1].strip()
        rest = rest[: m.start()]
        m2 = _NQUAL.search(rest)  # allow the n qualifier before 'where' too
        if m2 and n_filter is None:
            if m2.group(2) is not None:
                n_filter = ("eq", "max" if m2.group(2) == "max" else int(m2.group(2)))
            else:
                n_filter = (COMPARISONS[m2.group(3)], int(m2.group(4)))
            rest = rest[: m2.start()]
    metric = "suboptimality"
    m = _METRIC.match(rest)
    if m:
        metric, rest = m.group(1), m.group(2)
    m = _DIFF_TREND.match(rest)
    if m:
        a, b, direction, knob = m.groups()
        for lab in (a, b):
            if not _LABEL.match(lab):
                raise ValueError(f"{text!r}: {lab!r} is not an estimator label")
        if metric == "frontier":
            raise ValueError(f"{text!r}: trends are not defined for 'frontier'")
        return Statement(text=text.strip(), metric=metric, pairs=[(a, direction, b)], where=where,
                         n_filter=n_filter, trend_knob=knob)
    parts = _OP_RE.split(rest.strip())
    if len(parts) < 3 or len(parts) % 2 == 0:
        raise ValueError(f"{text!r}: expected 'A OP B' with OP one of >=, <=, >, <, =")
    labels, ops = parts[0::2], parts[1::2]
    for lab in labels:
        if not _LABEL.match(lab):
            raise ValueError(f"{text!r}: {lab!r} is not an estimator label")
    pairs = [(labels[i], COMPARISONS[ops[i]], labels[i + 1]) for i in range(len(ops))]
    return Statement(text=text.strip(), metric=metric, pairs=pairs, where=where, n_filter=n_filter)


# -- evaluation -------------------------------------------------------------------------------
#: the statements' bootstraps draw from genver.stats' seeding rule with random state 0
_ENTROPY = seed_entropy(0)


def _rng(text: str, key) -> np.random.Generator:
    return group_rng(_ENTROPY, (text, repr(key)))


def _ci(boot: np.ndarray | None, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile 95% CI per column (:func:`genver.stats.percentile_ci`); with no bootstrap (one
    seed) the point."""
    if boot is None:
        return point.copy(), point.copy()
    return percentile_ci(boot, 0.05, axis=0)


class _warnings_off:
    def __enter__(self):
        import warnings
        self._c = warnings.catch_warnings()
        self._c.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *a):
        return self._c.__exit__(*a)


def _filter(df: pd.DataFrame, st: Statement, knobs) -> pd.DataFrame:
    d = df
    for k, v in st.where.items():
        if k not in d.columns:
            raise KeyError(f"'where {k} = …': {k} is not a knob of this experiment (knobs: {list(knobs)})")
        d = d[d[k].astype(str) == v]
    if st.n_filter is not None and len(d):
        op, v = st.n_filter
        if v == "max":
            d = d[d["n"] == d["n"].max()]
        elif op == "eq":
            d = d[d["n"] == v]
        elif op == "ge":
            d = d[d["n"] >= v]
        else:
            d = d[d["n"] <= v]
    return d


def _metric_groups(d: pd.DataFrame, metric: str, A: str, B: str, knobs):
    """Per setting: (key, seeds × cells difference matrix D, cell labels, scale)."""
    d = d[(d["metric"] == metric) & d["estimator"].isin([A, B])]
    out = []
    for sid, g in d.groupby("setting_id", sort=True):
        wide = g.pivot_table(index="seed", columns=["estimator", "n"], values="value", aggfunc="mean")
        if A not in wide.columns.get_level_values(0) or B not in wide.columns.get_level_values(0):
            continue
        a, b = wide[A], wide[B]
        ns = sorted(set(a.columns) & set(b.columns))
        if not ns:
            continue
        a, b = a[ns], b[ns]
        ok = a.notna().all(axis=1) & b.notna().all(axis=1)
        if not ok.any():
            continue
        Am, Bm = a[ok].to_numpy(float), b[ok].to_numpy(float)
        scale = float(np.nanmax(np.abs(np.concatenate([Am.mean(0), Bm.mean(0)]))))
        knob_text = ", ".join(f"{k}={g[k].iloc[0]}" for k in knobs if k in g.columns)
        out.append(((sid, knob_text), lambda idx, D=Am - Bm: D[idx].mean(axis=-2), Am.shape[0],
                    [f"n={n}" for n in ns], scale, Am - Bm, a.index[ok].to_numpy()))
    return out


def _frontier_groups(d: pd.DataFrame, A: str, B: str, knobs):
    if "beta" not in knobs:
        raise KeyError("'frontier' statements need the knob beta in [grid]")
    other = [k for k in knobs if k != "beta"]
    d = d[d["metric"].isin(["expected_reward", "kl_to_reference"]) & d["estimator"].isin([A, B])]
    out = []
    for key, g in d.groupby(other + ["n"], sort=True) if other else d.groupby(["n"], sort=True):
        wide = g.pivot_table(index="seed", columns=["estimator", "metric", "beta"], values="value", aggfunc="mean")
        try:
            rA, kA = wide[(A, "expected_reward")], wide[(A, "kl_to_reference")]
            rB, kB = wide[(B, "expected_reward")], wide[(B, "kl_to_reference")]
        except KeyError:
            continue
        ok = pd.concat([rA, kA, rB, kB], axis=1).notna().all(axis=1)
        if not ok.any():
            continue
        arr = [x[ok].to_numpy(float) for x in (rA, kA, rB, kB)]
        betas = list(rA.columns)

        def stat(idx, arr=arr):
            RA, KA, RB, KB = (x[idx].mean(axis=-2) for x in arr)  # (..., n_beta)
            RA, KA, RB, KB = (np.atleast_2d(x) for x in (RA, KA, RB, KB))
            out_: np.ndarray = np.full(RA.shape, np.nan)
            for i in range(RA.shape[0]):
                o = np.argsort(KB[i])
                kb, rb = KB[i][o], RB[i][o]
                inside = (KA[i] >= kb[0]) & (KA[i] <= kb[-1])
                out_[i, inside] = RA[i, inside] - np.interp(KA[i, inside], kb, rb)
            return out_ if out_.shape[0] > 1 else out_[0]

        key = key if isinstance(key, tuple) else (key,)
        knob_text = ", ".join(f"{k}={v}" for k, v in zip(other + ["n"], key))
        scale = float(np.nanmax(np.abs(np.concatenate([arr[0].mean(0), arr[2].mean(0)]))))
        out.append(((key, knob_text), stat, arr[0].shape[0], [f"beta={b}" for b in betas], scale, None, None))
    return out


def _judge_pair(st: Statement, A: str, op: str, B: str, df: pd.DataFrame, knobs) -> tuple[bool, str]:
    d = _filter(df, st, knobs)
    groups = _frontier_groups(d, A, B, knobs) if st.metric == "frontier" else _metric_groups(d, st.metric, A, B, knobs)
    if not groups:
        return False, f"{A} {op} {B}: no common cells of {st.metric} to compare"
    ok_all, worst, summaries, n_cells, n_bad = True, None, [], 0, 0
    for key, stat, k, cells, scale, _, _ in groups:
        tol = 1e-5 * max(1.0, scale if np.isfinite(scale) else 1.0)
        rng = _rng(st.text + A + B, key)
        point = np.asarray(stat(np.arange(k)), float)
        boot = np.asarray(stat(rng.integers(0, k, size=(N_BOOT, k))), float) if k >= 2 else None
        lo, hi = _ci(boot, point)
        keep = np.isfinite(point)
        if not keep.any():
            continue
        point, lo, hi = point[keep], lo[keep], hi[keep]
        cells = [c for c, kk in zip(cells, keep) if kk]
        n_cells += point.size
        avg_point = float(np.mean(point))
        if boot is not None:
            with np.errstate(all="ignore"), _warnings_off():
                bavg = np.nanmean(boot[:, keep], axis=1)
            avg_lo, avg_hi = percentile_ci(bavg, 0.05)
        else:
            avg_lo = avg_hi = avg_point
        if op in ("ge", "gt"):
            bad = hi < -tol
        elif op in ("le", "lt"):
            bad = lo > tol
        else:
            bad = (lo > tol) | (hi < -tol)
        ok = not bad.any()
        if op == "gt":
            ok = ok and avg_lo > tol
        elif op == "lt":
            ok = ok and avg_hi < -tol
        n_bad += int(bad.sum())
        summaries.append(f"[{key[1] or 'all'}] mean diff {avg_point:+.4g} [{avg_lo:+.4g}, {avg_hi:+.4g}]")
        if not ok:
            ok_all = False
            if bad.any():
                j = int(np.flatnonzero(bad)[np.argmax(np.abs(point[bad]))])
                why = f"{cells[j]} diff {point[j]:+.4g} [{lo[j]:+.4g}, {hi[j]:+.4g}]"
            else:
                why = f"average over n {avg_point:+.4g} [{avg_lo:+.4g}, {avg_hi:+.4g}] is not significant"
            worst = worst or f"fails at {key[1] or 'all'}: {why}"
    sym = {"ge": ">=", "le": "<=", "gt": ">", "lt": "<", "eq": "="}[op]
    msg = f"{A} {sym} {B}: {'; '.join(summaries[:4])}{' …' if len(summaries) > 4 else ''}; " \
          f"{n_bad}/{n_cells} cells contradict"
    if worst:
        msg += f"; {worst}"
    return ok_all, msg


def _judge_trend(st: Statement, df: pd.DataFrame, knobs) -> tuple[bool, str]:
    """Spearman ρ between the knob and each setting's seed-paired mean difference, on all seeds
    and over ``N_BOOT`` paired seed resamples (one draw of seed labels per replicate, shared by
    every setting: settings share their seeds); passes when ``ρ`` and its 95% percentile CI
    are on the stated side of 0. A replicate whose differences are all equal has ρ = 0."""
    (A, direction, B), knob = st.pairs[0], st.trend_knob
    if knob not in knobs:
        raise KeyError(f"'{knob}' is not a knob of this experiment (knobs: {list(knobs)})")
    d = _filter(df, st, knobs)
    groups = _metric_groups(d, st.metric, A, B, knobs)
    seeds = np.array(sorted({s for g in groups for s in g[6]}))
    k = seeds.size
    idx = _rng(st.text, "trend").integers(0, k, size=(N_BOOT, k)) if k >= 2 else None
    xs, ys, yb, parts = [], [], [], []
    for key, _stat, _kk, _cells, _scale, D, labels in groups:
        per_seed = np.full(k, np.nan)
        per_seed[np.searchsorted(seeds, labels)] = D.mean(axis=1)  # each seed's mean over the selected n
        y = float(np.nanmean(per_seed))
        x = d.loc[d["setting_id"] == key[0], knob].iloc[0]
        xs.append(float(x))
        ys.append(y)
        if idx is not None:
            with np.errstate(all="ignore"), _warnings_off():
                b = np.nanmean(per_seed[idx], axis=1)  # a replicate with none of this setting's seeds: NaN
            yb.append(b)
            lo, hi = percentile_ci(b, 0.05)
        else:
            lo = hi = y
        parts.append((float(x), f"{knob}={x}: {y:+.4g} [{lo:+.4g}, {hi:+.4g}]"))
    if len(set(xs)) < 2:
        return False, f"{A} - {B} {direction} in {knob}: fewer than 2 distinct {knob} values"
    x = np.asarray(xs)
    rho = float(_spearman(x, np.asarray(ys)[None, :])[0])
    listing = "; ".join(t for _, t in sorted(parts))
    head = f"{A} - {B} {direction} in {knob}: Spearman ρ = {rho:+.3f}"
    if idx is None:
        return False, (f"{head} over {len(xs)} settings, one seed: no bootstrap, the trend is not established "
                       f"({listing})")
    boot = _spearman(x, np.stack(yb, axis=1))
    lo, hi = percentile_ci(boot, 0.05)
    ok = bool(rho > 0 and lo > 0) if direction == "increasing" else bool(rho < 0 and hi < 0)
    return ok, f"{head}, 95% paired seed-bootstrap CI [{lo:+.3f}, {hi:+.3f}] over {len(xs)} settings ({listing})"


def _spearman(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Spearman ρ of ``x`` (m,) against each row of ``Y`` (R, m) (average ranks for ties); a
    row with all values equal gives 0, a row with a NaN gives NaN."""
    from scipy import stats as sps

    rx = sps.rankdata(x)
    ry = sps.rankdata(Y, axis=1)
    rx, ry = rx - rx.mean(), ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (ry * rx).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)
    rho[np.isnan(Y).any(axis=1)] = np.nan
    return rho


def check_order(statements, df: pd.DataFrame, knobs) -> list[dict]:
    """One dict per statement: ``statement``, ``verdict`` (PASS | FAIL), ``detail``.

    Parameters
    ----------
    statements : list of str
        the ``[expect] order`` statements.
    df : pandas.DataFrame
        the tidy results table (``setting_id``, the knobs, ``seed``, ``n``, ``estimator``,
        ``metric``, ``value``).
    knobs : list of str
        the swept knobs (columns of ``df``).

    Returns
    -------
    list of dict
        per statement, in order: ``statement``, ``verdict`` (``"PASS"`` | ``"FAIL"``) and ``detail``
        (the worst cell and its CI, or why the statement could not be checked).
    """
    out = []
    labels = set(df["estimator"].unique()) if len(df) else set()
    for text in statements:
        try:
            st = parse_order(text)
            missing = [x for a, _, b in st.pairs for x in (a, b) if x not in labels]
            if missing:
                out.append({"statement": text, "verdict": "FAIL",
                            "detail": f"no results for estimator(s) {sorted(set(missing))}"})
                continue
            if st.metric != "frontier" and st.metric not in set(df["metric"]):
                out.append({"statement": text, "verdict": "FAIL", "detail": f"no results for metric {st.metric!r}"})
                continue
            if st.trend_knob is not None:
                res = [_judge_trend(st, df, knobs)]
            else:
                res = [_judge_pair(st, a, op, b, df, knobs) for a, op, b in st.pairs]
        except KeyError as e:
            out.append({"statement": text, "verdict": "FAIL", "detail": str(e).strip("'\"")})
            continue
        passed = all(r[0] for r in res)
        out.append({"statement": text, "verdict": "PASS" if passed else "FAIL",
                    "detail": " | ".join(r[1] for r in res)})
    return out
