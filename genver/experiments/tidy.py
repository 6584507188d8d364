"""A results directory in one call: :func:`load` (``genver.load``).

A run of ``genver run SPEC --out DIR`` leaves tidy rows in Parquet shards (layout in
:mod:`genver.experiments.store`): one row per (setting, seed, n, estimator, metric) with the
setting's knobs as columns (``experiment, setting_id, <knobs>, seed, n, estimator, route,
metric, value, converged, wall_time``; neural estimators add their own columns). :func:`load`
reads every readable shard as one ``pyarrow.dataset`` (one scan, the shards' schemas unified:
a column only some shards have is null elsewhere), sorts the rows by
:data:`~genver.experiments.store.ROW_ORDER` and returns one pandas DataFrame — the rows and
values the report reads (:func:`genver.experiments.tables.load_results`) — or the pyarrow
Table, which polars takes without a copy (``pl.from_arrow(genver.load(DIR, as_="arrow"))``).
``descriptors=True`` joins the settings table's gap descriptors (``log_size_R``,
``predicted_ratio``, …) on ``setting_id``.

A directory that is not a results directory (no ``manifest.json``) is refused with a
``ValueError`` naming it; so is one where a unit appears in two shards (``--resume`` repairs
it). An unfinished run (units missing, or shards unreadable) loads what is complete, with an
:class:`IncompleteResultsWarning` saying how much; the count is also in the result's metadata
(``df.attrs["genver_completeness"]``, or the Table's schema metadata key
``genver_completeness``, JSON): ``{"done", "total", "unreadable", "complete"}``.
"""
from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

from .diagnostics import GenverWarning

if TYPE_CHECKING:  # annotations only: `import genver` stays light (pandas, pyarrow load when load() runs)
    import pandas as pd
    import pyarrow as pa

    from .store import ResultStore

__all__ = ["load", "IncompleteResultsWarning"]

#: the metadata key of the completeness record (``df.attrs`` / the Table's schema metadata)
COMPLETENESS_KEY = "genver_completeness"


class IncompleteResultsWarning(GenverWarning):
    """The results directory holds an unfinished run: what is loaded is what is complete."""


def load(root, *, as_: str = "pandas", descriptors: bool = False) -> pd.DataFrame | pa.Table:
    """Every finished row of a results directory, as one tidy table.

    Parameters
    ----------
    root : str or path-like
        A results directory of ``genver run``.
    as_ : str
        ``"pandas"`` (default): a ``pandas.DataFrame``; ``"arrow"``: a ``pyarrow.Table`` (for
        polars: ``pl.from_arrow(table)``).
    descriptors : bool
        Also join the settings' gap descriptors (the columns of ``settings.parquet`` the rows do
        not already have) on ``setting_id``.

    Returns
    -------
    pandas.DataFrame or pyarrow.Table
        One row per (setting, seed, n, estimator, metric), sorted by setting, seed, ``n``,
        estimator and metric, the knobs as columns; the completeness record under
        ``genver_completeness`` (``attrs`` / schema metadata).

    Examples
    --------
    >>> import genver
    >>> df = genver.load("results/gap_finite")  # doctest: +SKIP
    >>> df.groupby(["n_distractors", "route", "n"])["value"].mean()  # doctest: +SKIP
    """
    if as_ not in ("pandas", "arrow"):
        raise ValueError(f"load: as_ must be 'pandas' or 'arrow', got {as_!r}")

    from .store import ROW_ORDER, ResultStore, shards_table
    store = ResultStore(root)
    if not store.root.is_dir():
        raise ValueError(f"{store.root}: not a directory (a results directory of `genver run` is expected)")
    man = store.read_manifest()  # a ValueError naming the directory when it is not a results directory
    table = shards_table(store.shard_files())
    keys = [c for c in ROW_ORDER if c in table.column_names]
    table = table.sort_by([(k, "ascending") for k in keys])  # a stable sort, as the report's loader sorts
    if descriptors:
        table = _join_descriptors(table, store)
    completeness = store.completeness(store.expected_units(man))
    if not completeness["complete"]:
        why = f"{completeness['total'] - completeness['done']} missing"
        if completeness["unreadable"]:
            why += f", {len(completeness['unreadable'])} unreadable shard(s)"
        warnings.warn(f"{store.root}: an unfinished run: loaded the {completeness['done']} of "
                      f"{completeness['total']} units that are complete ({why}); finish it with "
                      f"`genver run SPEC --out {store.root} --resume`", IncompleteResultsWarning, stacklevel=2)
    # the pandas schema (dtypes), not the first shard's unit list or provenance
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k == b"pandas"}
    meta[COMPLETENESS_KEY.encode()] = json.dumps(completeness).encode()
    table = table.replace_schema_metadata(meta)
    if as_ == "arrow":
        return table
    df = table.to_pandas()
    df.attrs[COMPLETENESS_KEY] = completeness
    return df


def _join_descriptors(table: Any, store: ResultStore) -> Any:
    """``table`` with the settings table's columns it lacks, joined on ``setting_id`` (row order kept)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    settings = pq.read_table(store.root / "settings.parquet")
    extra = [c for c in settings.column_names if c not in table.column_names]
    if not extra:
        return table
    index = pc.index_in(table["setting_id"], value_set=settings["setting_id"])
    for c in extra:
        table = table.append_column(c, pc.take(settings[c], index))
    return table
