"""Verdicts: a ratio table against a one-line expectation (``equals C``, ``≥ C``, …, ``increasing
in KNOB``) and the one comparison grammar of genver's expectations (definitions: :mod:`genver.stats`).
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._tables import to_python
from .ratios import RatioTrend


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




def parse_comparison(text: str) -> tuple[str, float] | None:
    """``"≥ 2.5"`` -> ``("ge", 2.5)`` (:data:`COMPARISONS`); None when ``text`` is not ``OP C``
    with a finite number ``C``.

    Parameters
    ----------
    text : str
        The expectation, ``OP C``.

    Returns
    -------
    tuple of (str, float) or None
        The operator's code and ``C``.

    Examples
    --------
    >>> parse_comparison("≥ 2.5")
    ('ge', 2.5)
    >>> parse_comparison(">= 1e3"), parse_comparison("> inf"), parse_comparison("about 2")
    (('ge', 1000.0), None, None)
    """
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

    Parameters
    ----------
    ratio_df : pandas.DataFrame
        A table from :func:`efficiency_ratio`.
    expect : str
        The expectation (above).
    value_col : str
        The ratio column.
    trend : RatioTrend or None
        The trend of the same results, for ``increasing`` / ``decreasing``.

    Returns
    -------
    Verdict
        ``passed``, ``message``, ``statistic`` (Kendall τ with ``trend``, Spearman ρ for a bare
        trend, the fraction of passing rows otherwise).
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
            from scipy.stats import spearmanr  # here: importing scipy.stats costs ~0.7 s a `genver plot`
            rho = float(spearmanr(x[ok], y[ok]).statistic)
        if trend is not None:
            return _trend_verdict(expect, direction, trend, rho)
        if np.isnan(rho):
            return Verdict(False, f"'{expect}': Spearman ρ undefined (constant ratio){note}", rho)
        passed = rho > 0 if direction == "increasing" else rho < 0
        return Verdict(passed, f"'{expect}': Spearman ρ({knob}, ratio) = {rho:+.3f} over "
                               f"{int(ok.sum())} settings → {'pass' if passed else 'fail'}{note}", rho)

    return _comparison_verdict(d, kind, value_col, expect, note)


def _comparison_verdict(d: pd.DataFrame, kind: pd.Series, value_col: str, expect: str, note: str) -> Verdict:
    """:func:`gap_verdict` for ``"OP C"`` on the usable rows ``d`` (their ``ratio_kind``: ``kind``)."""
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
    ``n`` (:attr:`RatioTrend.censored`, or :func:`censored_settings`).

    Parameters
    ----------
    censored : sequence of (value, str)
        ``(knob value, "offline" | "online" | "both")`` pairs.
    knob : str
        The knob's name.

    Returns
    -------
    str
        One comma-separated line (empty for no pair).

    Examples
    --------
    >>> censored_text([(5, "offline"), (6, "both")], "H")
    'H=5 (offline), H=6 (both)'
    """
    return ", ".join(f"{knob}={v} ({what})" for v, what in censored)


def censored_settings(ratio_df: pd.DataFrame, knob: str) -> tuple:
    """``((knob value, "offline" | "online" | "both"), ...)``: the rows of a ratio table whose
    route(s) do not reach ε by the largest ``n`` (sorted by the knob).

    Parameters
    ----------
    ratio_df : pandas.DataFrame
        A table from :func:`efficiency_ratio`.
    knob : str
        The knob column.

    Returns
    -------
    tuple
        The censored settings (empty without the knob column or rows).
    """
    if ratio_df is None or ratio_df.empty or knob not in ratio_df.columns:
        return ()
    out = []
    for _, r in ratio_df.iterrows():
        miss = [lab for lab, ok in (("offline", r["offline_reached"]), ("online", r["online_reached"])) if not ok]
        if miss:
            out.append((to_python(r[knob]), "both" if len(miss) == 2 else miss[0]))
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
