r"""The verdicts of ``genver report`` and ``genver check``, and their statements in words.

:func:`verdicts` makes one row per expectation of a spec: the ``[expect] ratio`` (the
sample-efficiency ratio ``N_ε(offline)/N_ε(online)``, checked with
:func:`genver.stats.gap_verdict`, with its trend over a knob from :func:`genver.stats.ratio_trend`)
and each ``[expect] order`` statement (checked with :func:`genver.experiments.expect.check_order`),
each PASS | FAIL. :func:`ratio_in_words` and :func:`order_in_words` say an expectation in plain
words; :func:`format_verdicts` lays the table out for a terminal. The report document that
holds them is written by :mod:`genver.experiments.report`, which re-exports these names.
"""
from __future__ import annotations

import pandas as pd

from .. import stats
from .expect import check_order
from .tables import N_BOOT, aggregate_of, epsilon_of, main_pair, ratio_pair

__all__ = ["verdicts", "verdict", "format_verdicts", "order_in_words", "ratio_in_words", "VERDICT_COLUMNS"]


def verdicts(man, df, ratio) -> pd.DataFrame:
    """One row per expectation: the ratio (when the spec states one, or states nothing) and
    each ``[expect] order`` statement. Columns: experiment, expected, verdict, detail and
    in_words (the expectation as a sentence, :func:`ratio_in_words` / :func:`order_in_words`).

    Parameters
    ----------
    man : dict
        the results' manifest.
    df : pandas.DataFrame
        the tidy results table.
    ratio : pandas.DataFrame or None
        the main pair's sample-efficiency ratio (:func:`genver.experiments.tables.ratio_table`).

    Returns
    -------
    pandas.DataFrame
        the verdict table (columns ``VERDICT_COLUMNS``).
    """
    exp = man.get("expect", {})
    rows = []
    if exp.get("ratio") or not exp.get("order"):
        status, message = verdict(man, ratio, df)
        rows.append({"experiment": man["experiment"], "expected": exp.get("ratio", ""), "verdict": status,
                     "detail": message})
    for r in check_order(exp.get("order", []), df, man["knobs"]):
        rows.append({"experiment": man["experiment"], "expected": r["statement"], "verdict": r["verdict"],
                     "detail": r["detail"]})
    out = pd.DataFrame(rows, columns=["experiment", "expected", "verdict", "detail"])
    off, on = main_pair(man)
    out["in_words"] = [ratio_in_words(e, off, on) if i == 0 and (exp.get("ratio") or not exp.get("order"))
                       else order_in_words(e) for i, e in enumerate(out["expected"])]
    return out


#: columns of :func:`verdicts`
VERDICT_COLUMNS = ["experiment", "expected", "verdict", "detail", "in_words"]


def verdict(man, ratio, df=None) -> tuple[str, str]:
    """(PASS | FAIL | NOT CHECKED, message) for the spec's ``[expect] ratio``; a trend
    ("increasing in KNOB") is judged on the bootstrap of the censoring-aware trend
    (:func:`genver.stats.ratio_trend`) when the results ``df`` are given.

    Parameters
    ----------
    man : dict
        the results' manifest.
    ratio : pandas.DataFrame or None
        the main pair's sample-efficiency ratio.
    df : pandas.DataFrame or None
        the tidy results (for a trend).

    Returns
    -------
    tuple of (str, str)
        the verdict and its message (:func:`genver.stats.gap_verdict`).
    """
    expect = man.get("expect", {}).get("ratio")
    if not expect:
        return "NOT CHECKED", "the spec states no [expect] ratio"
    if ratio is None:
        return "NOT CHECKED", "no offline/online pair of routes to compare"
    trend = None
    m = stats.RATIO_TREND.match(expect)
    pair = ratio_pair(man, df) if df is not None and m else None
    if pair is not None and m is not None and m.group(2) in df.columns:
        trend = stats.ratio_trend(df, epsilon_of(man), m.group(2), knobs=man["knobs"], n_boot=N_BOOT, random_state=0,
                                  aggregate=aggregate_of(man), **pair)
    v = stats.gap_verdict(ratio, expect, trend=trend)
    return ("PASS" if v.passed else "FAIL"), v.message



# --------------------------------------------------------------------------- statements in words
_LOWER_IS_BETTER = {"suboptimality", "kl_to_optimal"}
_HIGHER_IS_BETTER = {"expected_reward", "win_rate", "bt_loglik", "bt_loglik_opt", "optimal_mass",
                     "expected_bt_loglik"}


def ratio_in_words(expect: str, off: str = "offline", on: str = "online") -> str:
    """An ``[expect] ratio`` of ``N_ε(off)/N_ε(on)`` in words: ``"> 1"`` is "online needs fewer
    pairs than offline in every setting".

    Parameters
    ----------
    expect : str
        the expectation (the grammar of :func:`genver.stats.gap_verdict`).
    off, on : str
        the labels of the ratio's numerator and denominator.

    Returns
    -------
    str
        the sentence (``""`` when the expectation does not parse).

    Examples
    --------
    >>> ratio_in_words("> 1")
    'online needs fewer pairs than offline in every setting'
    """
    import re

    e = (expect or "").strip()
    m = re.match(r"^(increasing|decreasing)\s+in\s+(\S+)$", e)
    if m:
        grows = m.group(1) == "increasing"
        return (f"the more {m.group(2)}, the larger {on}'s saving in pairs: N_ε({off})/N_ε({on}) "
                f"{'grows' if grows else 'shrinks'} with {m.group(2)}")
    m = re.match(r"^(equals|==|=|>=|≥|<=|≤|>|<)\s*([0-9.eE+-]+)$", e)
    if not m:
        return ""
    op, c = m.group(1), m.group(2)
    if op in ("equals", "==", "="):
        return (f"{off} and {on} need the same number of pairs" if float(c) == 1 else
                f"{off} needs {c}× the pairs {on} needs") + " (within the CI, in every setting)"
    fewer = {">": f"{on} needs fewer pairs than {off}", ">=": f"{on} needs no more pairs than {off}",
             "≥": f"{on} needs no more pairs than {off}", "<": f"{off} needs fewer pairs than {on}",
             "<=": f"{off} needs no more pairs than {on}", "≤": f"{off} needs no more pairs than {on}"}[op]
    if float(c) != 1:
        fewer += f" by a factor {'above' if op in ('>', '>=', '≥') else 'below'} {c}"
    return fewer + " in every setting"


def order_in_words(text: str) -> str:
    """An ``[expect] order`` statement in words, the right way round for the metric: on
    ``suboptimality`` (lower is better) ``offline > online`` reads "online is better than
    offline (lower suboptimality)". ``""`` when the statement does not parse.

    Parameters
    ----------
    text : str
        the statement (:mod:`genver.experiments.expect`).

    Returns
    -------
    str
        the sentence.

    Examples
    --------
    >>> order_in_words("offline > online")
    'online is better than offline (lower suboptimality)'
    """
    from .expect import parse_order

    try:
        st = parse_order(text)
    except ValueError:
        return ""
    metric = st.metric
    quals = []
    if st.where:
        quals.append("where " + ", ".join(f"{k} = {v}" for k, v in st.where.items()))
    if st.n_filter:
        op, v = st.n_filter
        quals.append("at the largest n" if v == "max" else
                     f"{ {'eq': 'at n =', 'ge': 'for n ≥', 'le': 'for n ≤'}[op]} {v}")
    tail = (" " + " ".join(quals)) if quals else ""
    what = "more E r* at the same KL(π̂‖π_ref)" if metric == "frontier" else metric
    if metric == "frontier" or metric in _HIGHER_IS_BETTER:
        higher_better = True
    elif metric in _LOWER_IS_BETTER:
        higher_better = False
    else:  # a metric of unknown direction: compare values, judge nothing
        higher_better = None
    parts = []
    for a, op, b in st.pairs:
        if st.trend_knob is not None:
            if higher_better is None:
                parts.append(f"{metric} of {a} minus {b} {op} with {st.trend_knob}")
            else:
                gainer = a if (op == "increasing") == bool(higher_better) else b
                other = b if gainer == a else a
                parts.append(f"{gainer}'s advantage over {other} on {metric} grows with {st.trend_knob}")
            continue
        if op in ("lt", "le"):  # read every comparison as "a > b"
            a, b, op = b, a, {"lt": "gt", "le": "ge"}[op]
        if op == "eq":
            parts.append(f"{a} and {b} are equally good on {what}")
            continue
        if higher_better is None:
            parts.append(f"{a} has {'higher' if op == 'gt' else 'no lower'} {metric} than {b}")
            continue
        better, worse = (a, b) if higher_better else (b, a)
        direction = "higher" if higher_better else "lower"
        if metric == "frontier":
            parts.append(f"{better} is better than {worse}: {what}" if op == "gt"
                         else f"{better} is at least as good as {worse}: never significantly less E r* at the same KL")
        elif op == "gt":
            parts.append(f"{better} is better than {worse} ({direction} {metric})")
        else:
            parts.append(f"{better} is at least as good as {worse} (never significantly "
                         f"{'lower' if higher_better else 'higher'} {metric})")
    return "; ".join(parts) + tail


def format_verdicts(table: pd.DataFrame, width: int = 100) -> str:
    """The verdict table for a terminal of ``width`` columns: a header (experiment, counts), per
    expectation a line ``VERDICT  statement``, the statement in words, then the detail wrapped
    and indented.

    Parameters
    ----------
    table : pandas.DataFrame
        the verdict table (:func:`verdicts`).
    width : int
        the terminal's width in columns.

    Returns
    -------
    str
        the lines, joined by newlines.
    """
    import textwrap

    ind = " " * 8
    out = []
    if len(table):
        counts = table["verdict"].value_counts()
        out += textwrap.wrap(f"{table['experiment'].iloc[0]}: {len(table)} expectation{'s' * (len(table) > 1)}, "
                             + ", ".join(f"{n} {k}" for k, n in counts.items()), width)
    for _, v in table.iterrows():
        words = v.get("in_words", "")
        head = f"{v['verdict']:<7} {v['expected'] or '(no [expect] ratio)'}"
        out += textwrap.wrap(head, width, subsequent_indent=ind, break_on_hyphens=False)
        if words:
            out += textwrap.wrap("= " + words, width, initial_indent=ind, subsequent_indent=ind + "  ")
        for part in str(v["detail"]).split(" | "):
            out += textwrap.wrap(part, width, initial_indent=ind,
                                 subsequent_indent=ind + "  ", break_on_hyphens=False)
    return "\n".join(out)
