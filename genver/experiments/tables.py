"""The tables behind a report and its figures, from a results directory (``genver run``).

* :func:`load_results` (manifest, tidy results, settings) and :func:`completeness_line`;
* the spec's main pair and ε (:func:`main_pair`, :func:`epsilon_of`, :func:`aggregate_of`: which
  N_ε the ratio uses), the sample-efficiency ratio ``N_ε(offline)/N_ε(online)``
  (:func:`ratio_table`, :func:`genver.stats.efficiency_ratio`) and each ``[expect] compare``
  pair's beside it (:func:`ratios_side_by_side`), the means at the largest ``n``
  (:func:`means_at_largest_n`), the scaling laws of ``[expect] scaling_law``
  (:func:`scaling_fits`, :func:`genver.scaling.scaling_laws`);
* :class:`ReportTables`: each bootstrap table of one report computed once, on first use, through
  :mod:`genver.stats` (``N_BOOT`` resamples, random state 0).
"""
from __future__ import annotations

import pandas as pd

from .. import plots, stats
from .store import ResultStore

__all__ = ["N_BOOT", "load_results", "completeness_line", "epsilon_of", "aggregate_of", "main_pair", "ratio_pair",
           "ratio_table",
           "ratios_side_by_side", "means_at_largest_n", "scaling_fits", "ReportTables"]

#: bootstrap resamples of every table of a report: genver's one count, :data:`genver.stats.N_BOOT`
N_BOOT = stats.N_BOOT


def load_results(root):
    """The three tables of a results directory (:class:`~genver.experiments.store.ResultStore`).

    Parameters
    ----------
    root : str or pathlib.Path
        the results directory (``genver run --out``).

    Returns
    -------
    tuple of (dict, pandas.DataFrame, pandas.DataFrame)
        the manifest, the tidy results (one row per setting, seed, ``n``, estimator and metric) and
        the settings (one row per setting: id, knobs, gap descriptors).
    """
    store = ResultStore(root)
    man = store.read_manifest()
    return man, store.load(), store.settings()


def completeness_line(root, man=None) -> str | None:
    """``None`` when every unit of the run is in a readable shard, else one line
    ``"INCOMPLETE: k of N units ..."`` naming what is missing (``genver report`` / ``plot``
    print it first, and ``report.md`` begins with it).

    Parameters
    ----------
    root : str or pathlib.Path
        the results directory.
    man : dict or None
        its manifest, when already read.

    Returns
    -------
    str or None
        the line, or None for a complete run.
    """
    store = ResultStore(root)
    c = store.completeness(store.expected_units(man))
    if c["complete"]:
        return None
    why = [f"{c['total'] - c['done']} missing"] if c["done"] < c["total"] else []
    if c["unreadable"]:
        why.append(f"{len(c['unreadable'])} unreadable shard(s): {', '.join(c['unreadable'][:3])}"
                   + (" ..." if len(c["unreadable"]) > 3 else ""))
    return (f"INCOMPLETE: {c['done']} of {c['total']} units ({'; '.join(why)}); the verdicts are on partial "
            f"data; finish with `genver run SPEC --out {store.root} --resume`")


def epsilon_of(man) -> float:
    """The spec's ``[expect] epsilon`` (default 0.01): the ``ε`` of ``N_ε``.

    Parameters
    ----------
    man : dict
        the results' manifest (``DIR/manifest.json``: the spec's ``expect`` and ``knobs``).

    Returns
    -------
    float
        ``ε``.
    """
    return float(man.get("expect", {}).get("epsilon", 0.01))


def _routes(df):
    routes = set(df["route"].unique())
    return "offline" in routes and "online" in routes


def aggregate_of(man) -> str:
    """Which N_ε the spec's ratio and verdict use (``[expect] aggregate``, default the mean curve).

    Parameters
    ----------
    man : dict
        the results' manifest (``DIR/manifest.json``: the spec's ``expect`` and ``knobs``).

    Returns
    -------
    str
        ``"mean"``, ``"median"`` or ``"iqm"``.
    """
    return man.get("expect", {}).get("aggregate", "mean")


def ratio_pair(man, df) -> dict | None:
    """The spec's main ratio as :func:`genver.stats.efficiency_ratio` arguments ``{offline,
    online, by}``, or None when the results have none.

    Parameters
    ----------
    man : dict
        the results' manifest (``DIR/manifest.json``: the spec's ``expect`` and ``knobs``).
    df : pandas.DataFrame
        the tidy results table.

    Returns
    -------
    dict or None
        ``{"offline": label, "online": label, "by": "route" | "estimator"}``, or None.
    """
    exp = man.get("expect", {})
    if "offline" in exp or "online" in exp:  # labels named by the spec
        off, on = exp.get("offline", "offline"), exp.get("online", "online")
        return {"offline": off, "online": on, "by": "estimator"} if {off, on} <= set(df["estimator"].unique()) else None
    if not _routes(df):
        return None
    multi = df[df["route"].isin(["offline", "online"])].groupby(["setting_id", "route"])["estimator"].nunique()
    if not (multi > 1).any():
        return {"offline": "offline", "online": "online", "by": "route"}
    # several estimators per route: compare the labels "offline"/"online"
    return {"offline": "offline", "online": "online", "by": "estimator"} \
        if {"offline", "online"} <= set(df["estimator"].unique()) else None


def ratio_table(man, df, settings):
    """The spec's sample-efficiency ratio ``ρ = N_ε(offline)/N_ε(online)`` per setting
    (:func:`genver.stats.efficiency_ratio`, ``N_BOOT`` resamples, random state 0).

    Parameters
    ----------
    man : dict
        the results' manifest (``DIR/manifest.json``: the spec's ``expect`` and ``knobs``).
    df : pandas.DataFrame
        the tidy results table.
    settings : pandas.DataFrame
        one row per setting (``DIR/settings.parquet``).

    Returns
    -------
    pandas.DataFrame or None
        one row per setting, or None when the results have no offline/online pair.
    """
    pair = ratio_pair(man, df)
    if pair is None:
        return None
    return stats.efficiency_ratio(df, epsilon_of(man), knobs=man["knobs"], n_boot=N_BOOT, random_state=0,
                                  settings=settings,
                                  aggregate=aggregate_of(man), **pair)


def _compared(man, df, settings) -> list:
    """``[(offline label, online label, ratio table)]`` for each ``[expect] compare`` pair whose
    labels have rows (e.g. the neural routes beside the tabular ones)."""
    out = []
    for off, on in man.get("expect", {}).get("compare", []):
        if {off, on} <= set(df["estimator"].unique()):
            out.append((off, on, stats.efficiency_ratio(df, epsilon_of(man), offline=off, online=on, knobs=man["knobs"],
                                                        n_boot=N_BOOT, random_state=0, settings=settings,
                                                        aggregate=aggregate_of(man))))
    return out


def main_pair(man) -> tuple[str, str]:
    """The spec's main pair of labels: ``[expect] offline`` / ``online`` (default the route names).

    Parameters
    ----------
    man : dict
        the results' manifest (``DIR/manifest.json``: the spec's ``expect`` and ``knobs``).

    Returns
    -------
    tuple of (str, str)
        ``(offline label, online label)``.
    """
    exp = man.get("expect", {})
    return exp.get("offline", "offline"), exp.get("online", "online")


def ratios_side_by_side(man, df, settings, ratio: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The spec's sample-efficiency ratio and each ``[expect] compare`` pair's (e.g. the neural
    routes beside the tabular ones), stacked into one :func:`genver.stats.efficiency_ratio` table
    with a ``pair`` column (``"offline / online"``, ``"neural_offline / neural_online"``, main
    pair first, each sorted by the knobs): the table behind the ``ratio_compare`` figure. ``None``
    when the results have no main offline/online pair; just the main pair when the spec compares
    nothing else. ``ratio``: the main pair's table when already computed.

    Parameters
    ----------
    man : dict
        the results' manifest (``DIR/manifest.json``: the spec's ``expect`` and ``knobs``).
    df : pandas.DataFrame
        the tidy results table.
    settings : pandas.DataFrame
        one row per setting (``DIR/settings.parquet``).
    ratio : pandas.DataFrame or None
        the main pair's :func:`ratio_table`, when already computed.

    Returns
    -------
    pandas.DataFrame or None
        the stacked table, or None.
    """
    ratio = ratio_table(man, df, settings) if ratio is None else ratio
    if ratio is None:
        return None
    off, on = main_pair(man)
    tables = [ratio.assign(pair=f"{off} / {on}")] + [r.assign(pair=f"{a} / {b}") for a, b, r in _compared(man, df,
                                                                                                          settings)]
    return pd.concat([t.sort_values(man["knobs"], kind="stable") if man["knobs"] else t for t in tables],
                     ignore_index=True)


def means_at_largest_n(df, knobs=(), metric: str | None = None) -> pd.DataFrame:
    """Mean over seeds of each metric at the largest ``n``. ``metric=None``: one row per
    (setting, estimator), one column per metric (the report's table); a metric name: one row
    per setting, one column per estimator (the estimators side by side).

    Parameters
    ----------
    df : pandas.DataFrame
        the tidy results table.
    knobs : sequence of str
        the swept knobs (kept as columns).
    metric : str or None
        one metric to lay out by estimator (None: every metric).

    Returns
    -------
    pandas.DataFrame
        the means.
    """
    knobs = list(knobs)
    at = df[df["n"] == df["n"].max()]
    if metric is None:
        means = at.groupby(["setting_id", *knobs, "estimator", "metric"], dropna=False)["value"].mean()
        return means.unstack("metric").reset_index()
    at = at[at["metric"] == metric]
    means = at.groupby(["setting_id", *knobs, "estimator"], dropna=False)["value"].mean().unstack("estimator")
    means = means[plots.label_order(means.columns)]  # offline, online, then the rest
    means.columns.name = None
    return means.reset_index().sort_values([*knobs, "setting_id"], kind="stable", ignore_index=True)

class ReportTables:
    """The bootstrap tables of a report, each computed on first use (a figure whose inputs are
    unchanged never asks for them).

    Parameters
    ----------
    man : dict
        the results' manifest.
    df : pandas.DataFrame
        the tidy results table.
    settings : pandas.DataFrame
        one row per setting.
    """

    def __init__(self, man, df, settings):
        self.man, self.df, self.settings = man, df, settings
        self._cache = {}

    def _get(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def ratio(self):
        """The main pair's sample-efficiency ratio (:func:`ratio_table`), or None."""
        return self._get("ratio", lambda: ratio_table(self.man, self.df, self.settings))

    @property
    def both(self):
        """The main and compared pairs' ratios stacked (:func:`ratios_side_by_side`), or None."""
        return self._get("both", lambda: ratios_side_by_side(self.man, self.df, self.settings, self.ratio))

    @property
    def neps(self):
        """``N_ε`` per (setting, estimator) with its bootstrap CI (:func:`genver.stats.n_epsilon`)."""
        return self._get("neps", lambda: stats.n_epsilon(self.df, epsilon_of(self.man), knobs=self.man["knobs"],
                                                          n_boot=N_BOOT, random_state=0))

    @property
    def agg(self):
        """Mean suboptimality per cell with its seed-bootstrap CI (the sample-complexity grid
        draws the mean only, so the IQM columns are not computed)."""
        return self._get("agg", lambda: stats.aggregate(self.df, "suboptimality", knobs=self.man["knobs"],
                                                         n_boot=N_BOOT, random_state=0, with_iqm=False))

    @property
    def scaling(self):
        """``(fits, points)`` of ``[expect] scaling_law``, a sentence when the results lack its
        two routes, ``None`` when the spec asks for no scaling law."""
        return self._get("scaling", lambda: scaling_fits(self.man, self.df, self.settings))


def scaling_fits(man, df, settings):
    """:func:`genver.scaling.scaling_laws` of the spec's ``[expect] scaling_law`` (the main pair:
    labels when the spec names them or a route has several estimators, else the routes);
    a sentence when the results lack the two; ``None`` without the key.

    Parameters
    ----------
    man : dict
        the results' manifest (``DIR/manifest.json``: the spec's ``expect`` and ``knobs``).
    df : pandas.DataFrame
        the tidy results table.
    settings : pandas.DataFrame
        one row per setting (``DIR/settings.parquet``).

    Returns
    -------
    ScalingLaws, str or None
        ``(fits, points)``, the sentence, or None.
    """
    opts = man.get("expect", {}).get("scaling_law")
    if opts is None:
        return None
    from .. import scaling

    exp = man["expect"]
    if "offline" in exp or "online" in exp or df.groupby(["setting_id", "route"])["estimator"].nunique().max() > 1:
        by, (off, on) = "estimator", main_pair(man)  # the labels, as ratio_table compares them
    else:
        by, off, on = "route", "offline", "online"
    if not {off, on} <= set(df[by].unique()):
        return f"No {off!r} and {on!r} {by}s to fit."
    return scaling.scaling_laws(df, settings, float(opts.get("epsilon", epsilon_of(man))),
                                against=opts.get("against", scaling.DEFAULT_AGAINST),
                                ratio_against=opts.get("ratio_against", scaling.DEFAULT_RATIO_AGAINST),
                                offline=off, online=on, by=by, knobs=man["knobs"], n_boot=N_BOOT, random_state=0,
                                aggregate=exp.get("aggregate", "mean"))

