"""The batch shard format of the result store (:mod:`genver.experiments.store`): the rows of
``n`` finished units in one Parquet file named ``batch-<sid>__seed<k>-<n>-<hash>.parquet``, where
``<sid>__seed<k>`` is the first unit of the sorted unit list and ``<hash>`` a short hash of the
whole list (:func:`units_hash`), which the file's key-value metadata holds under
:data:`UNITS_KEY` (JSON ``[[sid, seed], ...]``). A shard is valid exactly when that footer
parses and matches the name (:func:`read_units`).

The file's bytes are those ``DataFrame.to_parquet(path, index=False)`` writes
(:func:`parquet_bytes`), built in memory so the store writes them with one atomic write; the
rows of many shards are read back in one ``pyarrow.dataset`` scan (:func:`shards_table`).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import pathlib
import re
from typing import Any

import pandas as pd

__all__ = ["UNITS_KEY", "BATCH_NAME", "parquet_bytes", "shards_table"]

#: the name of a batch shard
BATCH_NAME = re.compile(r"^batch-(?P<sid>[0-9a-f]{10})__seed(?P<seed>\d+)-(?P<n>\d+)-(?P<hash>[0-9a-f]{12})\.parquet$")
UNITS_KEY = b"genver_units"  # Parquet key-value metadata of a batch shard: JSON [[sid, seed], ...]


def units_hash(units_json: bytes) -> str:
    """The ``<hash>`` of a batch shard's name: 12 hex digits of the SHA-256 of its unit list's JSON."""
    return hashlib.sha256(units_json).hexdigest()[:12]


def units_json(units) -> bytes:
    """A unit list as the footer stores it (:data:`UNITS_KEY`): compact JSON ``[[sid, seed], ...]``."""
    return json.dumps([[sid, int(seed)] for sid, seed in units], separators=(",", ":")).encode()


def parquet_bytes(df: pd.DataFrame, metadata: dict | None = None) -> bytes:
    """``df`` as a Parquet file, byte for byte what ``df.to_parquet(path, index=False)`` writes
    (``pa.Table.from_pandas`` without the index, ``attrs`` as pandas stores them, snappy
    compression), without opening a file through pyarrow.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    metadata : dict, optional
        Bytes or str keys and values added to the file's key-value metadata.

    Returns
    -------
    bytes
        The file's contents.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pandas(df, preserve_index=False)
    if df.attrs or metadata:
        extra = {"PANDAS_ATTRS": json.dumps(df.attrs)} if df.attrs else {}
        table = table.replace_schema_metadata({**table.schema.metadata, **extra, **(metadata or {})})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue().to_pybytes()


def shards_table(files) -> Any:
    """The rows of the shard ``files``, in their order, as one Arrow table: one
    ``pyarrow.dataset`` scan with the union of their schemas (a column only some shards have is
    null elsewhere, as ``pd.concat`` of their frames would make it).

    Parameters
    ----------
    files : list of pathlib.Path
        Shard paths (:meth:`ResultStore.shard_files`).

    Returns
    -------
    pyarrow.Table
        Their rows, file after file.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    schema = pa.unify_schemas([pq.read_schema(p) for p in files], promote_options="permissive")
    return ds.dataset([str(p) for p in files], schema=schema, format="parquet").to_table()


def read_units(path: pathlib.Path, batch) -> list[tuple[str, int]] | None:
    """The units of the shard at ``path`` from its footer (``batch``: the name's match), or
    None if the footer does not parse or does not match the name."""
    import pyarrow.parquet as pq
    try:
        meta = pq.read_metadata(path)
    except Exception:  # noqa: BLE001 - any unreadable file counts as damaged, whatever pyarrow raises
        return None
    uj = (meta.metadata or {}).get(UNITS_KEY)
    if uj is None or units_hash(uj) != batch["hash"]:
        return None
    try:
        units = [(str(sid), int(seed)) for sid, seed in json.loads(uj)]
    except (ValueError, TypeError):
        return None
    if len(units) != int(batch["n"]) or units[0] != (batch["sid"], int(batch["seed"])):
        return None
    return units


def batch_name(keys: list, uj: bytes | None = None) -> str:
    """The file name of the batch shard of the sorted unit list ``keys``."""
    uj = units_json(keys) if uj is None else uj
    return f"batch-{keys[0][0]}__seed{keys[0][1]:05d}-{len(keys)}-{units_hash(uj)}.parquet"


def batch_frame(tables: list) -> pd.DataFrame:
    """One frame of the tables' rows, in order. Units' column dicts with the same columns are
    joined column by column and converted once (the frame ``pd.concat`` of their frames gives,
    at a fraction of the cost); other tables go through ``pd.concat``. Units without rows add
    nothing."""
    tables = [t for t in tables if not (isinstance(t, dict) and not t)]
    if tables and all(isinstance(t, dict) and list(t) == list(tables[0]) for t in tables):
        return pd.DataFrame({k: list(itertools.chain.from_iterable(t[k] for t in tables)) for k in tables[0]})
    frames = [pd.DataFrame(t) if isinstance(t, dict) else t for t in tables]
    if not frames:
        return pd.DataFrame([])
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
