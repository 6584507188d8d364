"""The result store: a directory of Parquet shards plus ``manifest.json``.

Layout of ``DIR``::

    manifest.json            spec, spec hash, package versions, git commit, start/end times
    settings.parquet         one row per setting: knobs and gap descriptors
    shards/batch-<sid>__seed<k>-<n>-<hash>.parquet
                             the tidy rows of ``n`` finished (setting, seed) units, unit after
                             unit; ``<sid>__seed<k>`` is the first unit of the sorted list and
                             ``<hash>`` a short hash of the whole list, which the file's Parquet
                             key-value metadata holds under ``genver_units`` (JSON
                             ``[[sid, seed], ...]``)
    shards/<sid>__seed<k>.parquet   one unit (the layout before batches; still read and resumed)

The runner (:func:`genver.experiments.runner.run`) buffers finished units and writes them as one
batch shard once about ``flush_seconds`` (default 1 s) of wall time have passed since its last
write, when the run ends, on Ctrl-C (before the ``KeyboardInterrupt`` propagates) and before an
error of a unit or worker propagates. So Ctrl-C and errors lose only the units in flight, and a
SIGKILL (or a crash of the machine) loses at most the buffered units: about ``flush_seconds``
of work, which ``--resume`` runs again.

Every file is written to a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), so a killed run leaves complete shards or none — never a
partial or duplicated one. A unit is done exactly when a shard lists it (a batch shard's
footer, an old shard's name); a unit is written once; stray temporary files of a killed run
are removed on resume. A Parquet file is built in memory (the bytes
``DataFrame.to_parquet(path, index=False)`` writes: the same pyarrow calls, plus the
``genver_units`` key for a shard) and written with one ``write``, and every file is flushed to
disk (``fsync``) before its rename, so a crash of the machine, not only of the process, leaves
no empty shard under a final name. On resume, :meth:`ResultStore.prepare` also reads every
shard's Parquet footer and removes any shard that does not parse or whose unit list does not
match its name (a file damaged outside genver), so its units run again. Footers are read once
per :class:`ResultStore` (cached by file name, size and modification time).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import pathlib
import re
import subprocess
import tempfile
import time

import pandas as pd

__all__ = ["ResultStore", "atomic_write_bytes", "parquet_bytes", "package_versions", "git_commit"]

_SHARD = re.compile(r"^(?P<sid>[0-9a-f]{10})__seed(?P<seed>\d+)\.parquet$")  # one unit (old layout)
_BATCH = re.compile(r"^batch-(?P<sid>[0-9a-f]{10})__seed(?P<seed>\d+)-(?P<n>\d+)-(?P<hash>[0-9a-f]{12})\.parquet$")
UNITS_KEY = b"genver_units"  # Parquet key-value metadata of a batch shard: JSON [[sid, seed], ...]


def _units_hash(units_json: bytes) -> str:
    return hashlib.sha256(units_json).hexdigest()[:12]


def _units_json(units) -> bytes:
    return json.dumps([[sid, int(seed)] for sid, seed in units], separators=(",", ":")).encode()


def atomic_write_bytes(path: pathlib.Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place (flushed
    to disk first unless ``fsync=False``)."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def parquet_bytes(df: pd.DataFrame, metadata: dict | None = None) -> bytes:
    """``df`` as a Parquet file, byte for byte what ``df.to_parquet(path, index=False)`` writes
    (``pa.Table.from_pandas`` without the index, ``attrs`` as pandas stores them, snappy
    compression), without opening a file through pyarrow; ``metadata`` (bytes or str keys and
    values) is added to the file's key-value metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pandas(df, preserve_index=False)
    if df.attrs or metadata:
        extra = {"PANDAS_ATTRS": json.dumps(df.attrs)} if df.attrs else {}
        table = table.replace_schema_metadata({**table.schema.metadata, **extra, **(metadata or {})})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue().to_pybytes()


def _atomic_parquet(df: pd.DataFrame, path: pathlib.Path) -> None:
    atomic_write_bytes(path, parquet_bytes(df))


def package_versions() -> dict:
    import platform

    import numba
    import numpy
    import pyarrow
    import scipy

    from .. import __version__
    return {"genver": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__, "pandas": pd.__version__,
            "pyarrow": pyarrow.__version__}


def git_commit() -> str | None:
    try:
        here = pathlib.Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _read_units(path: pathlib.Path, batch, old) -> list[tuple[str, int]] | None:
    """The units of the shard at ``path`` from its footer (``batch``/``old``: the name's match),
    or None if the footer does not parse or does not match the name."""
    import pyarrow.parquet as pq
    try:
        meta = pq.read_metadata(path)
    except Exception:  # noqa: BLE001 - any unreadable file counts as damaged, whatever pyarrow raises
        return None
    if old:
        return [(old["sid"], int(old["seed"]))]
    uj = (meta.metadata or {}).get(UNITS_KEY)
    if uj is None or _units_hash(uj) != batch["hash"]:
        return None
    try:
        units = [(str(sid), int(seed)) for sid, seed in json.loads(uj)]
    except (ValueError, TypeError):
        return None
    if len(units) != int(batch["n"]) or units[0] != (batch["sid"], int(batch["seed"])):
        return None
    return units


def _batch_frame(tables: list) -> pd.DataFrame:
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


class ResultStore:
    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.shards = self.root / "shards"
        self._footers: dict = {}  # shard name -> ((size, mtime_ns), units or None)

    # -- manifest ----------------------------------------------------------------------
    @property
    def manifest_path(self) -> pathlib.Path:
        return self.root / "manifest.json"

    def read_manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{self.root}: no manifest.json — not a genver results directory") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.manifest_path}: unreadable ({e})") from None

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())

    # -- shards ------------------------------------------------------------------------
    def prepare(self) -> list[str]:
        """Create ``shards/``, remove a killed run's temporary files, and remove every shard
        whose Parquet footer does not parse or does not match its name (its units rerun).
        Returns the removed shards' names."""
        self.shards.mkdir(parents=True, exist_ok=True)
        for p in self.shards.glob(".tmp-*"):  # leftovers of a killed run
            p.unlink()
        removed = []
        for name, units in sorted(self._scan(check_old=True).items()):
            if units is None:
                (self.shards / name).unlink()
                self._footers.pop(name, None)
                removed.append(name)
        return removed

    def write_batch(self, units) -> pathlib.Path:
        """Write finished units, ``[(sid, seed, table), ...]``, as one shard (atomically; the
        tables' rows one unit after another, units sorted by ``(sid, seed)``); returns its path.
        A table is a DataFrame or a unit's ``{column: list}`` (``cells.unit_columns``). The one
        way shards are written: a single unit is a batch of one."""
        if not units:
            raise ValueError("write_batch: no units")
        units = sorted(units, key=lambda u: (u[0], int(u[1])))
        keys = [(sid, int(seed)) for sid, seed, _ in units]
        if len(set(keys)) != len(keys):
            raise ValueError("write_batch: a unit is listed twice")
        uj = _units_json(keys)
        name = f"batch-{keys[0][0]}__seed{keys[0][1]:05d}-{len(keys)}-{_units_hash(uj)}.parquet"
        df = _batch_frame([t for _, _, t in units])
        path = self.shards / name
        atomic_write_bytes(path, parquet_bytes(df, {UNITS_KEY: uj}))
        try:
            st = path.stat()
            self._footers[name] = ((st.st_size, st.st_mtime_ns), keys)
        except OSError:
            pass
        return path

    def shard_units(self) -> dict[pathlib.Path, list[tuple[str, int]]]:
        """Every readable shard and the ``(sid, seed)`` units it holds (batch shards: from the
        footer, read once; old single-unit shards: from the name)."""
        return {self.shards / name: units for name, units in sorted(self._scan().items()) if units is not None}

    def done_units(self) -> set:
        return {u for units in self._scan().values() if units is not None for u in units}

    def _scan(self, check_old: bool = False) -> dict:
        """``{shard name: units, or None for a shard that is unreadable or does not match its
        name}``. A batch shard's footer is read once (cached by name, size and mtime); an old
        single-unit shard's unit comes from its name, and its footer is read only with
        ``check_old``."""
        try:
            entries = list(os.scandir(self.shards))
        except FileNotFoundError:
            return {}
        out = {}
        for e in entries:
            batch = _BATCH.match(e.name)
            old = None if batch else _SHARD.match(e.name)
            if old and not check_old:
                out[e.name] = [(old["sid"], int(old["seed"]))]
                continue
            if not (batch or old):
                continue
            try:
                st = e.stat()
            except FileNotFoundError:  # removed meanwhile
                continue
            key = (st.st_size, st.st_mtime_ns)
            hit = self._footers.get(e.name)
            if hit is None or hit[0] != key:
                hit = self._footers[e.name] = (key, _read_units(pathlib.Path(e.path), batch, old))
            out[e.name] = hit[1]
        return out

    def write_settings(self, df: pd.DataFrame) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_parquet(df, self.root / "settings.parquet")

    def settings(self) -> pd.DataFrame:
        p = self.root / "settings.parquet"
        if not p.exists():
            raise ValueError(f"{self.root}: no settings.parquet — run `genver run` first")
        return pd.read_parquet(p)

    def load(self) -> pd.DataFrame:
        """All finished rows, sorted deterministically."""
        files = list(self.shard_units())
        if not files:
            raise ValueError(f"{self.root}: no results yet (no shards)")
        df = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
        keys = [c for c in ("setting_id", "seed", "n", "estimator", "metric") if c in df.columns]
        return df.sort_values(keys, kind="stable").reset_index(drop=True)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
