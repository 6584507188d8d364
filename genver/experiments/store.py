"""The result store: a directory of Parquet shards plus ``manifest.json``.

Layout of ``DIR``::

    manifest.json            spec, spec hash, package versions, git commit, start/end times
    settings.parquet         one row per setting: knobs and gap descriptors
    shards/<sid>__seed<k>.parquet   the tidy rows of one (setting, seed) unit

Every file is written to a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), so a killed run leaves complete shards or none — never a
partial or duplicated one. A unit is done exactly when its shard exists; stray temporary files
of a killed run are removed on resume. A Parquet file is built in memory (the bytes
``DataFrame.to_parquet(path, index=False)`` writes: the same pyarrow calls) and written with
one ``write``, and every file is flushed to disk (``fsync``) before its rename, so a crash of
the machine, not only of the process, leaves no empty shard under a final name. On resume,
:meth:`ResultStore.prepare` also reads every shard's Parquet footer and removes any shard that
does not parse (a file damaged outside genver), so its unit runs again.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import tempfile
import time

import pandas as pd

__all__ = ["ResultStore", "atomic_write_bytes", "parquet_bytes", "package_versions", "git_commit"]

_SHARD = re.compile(r"^(?P<sid>[0-9a-f]{10})__seed(?P<seed>\d+)\.parquet$")


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


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as a Parquet file, byte for byte what ``df.to_parquet(path, index=False)`` writes
    (``pa.Table.from_pandas`` without the index, ``attrs`` as pandas stores them, snappy
    compression), without opening a file through pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pandas(df, preserve_index=False)
    if df.attrs:
        table = table.replace_schema_metadata({**table.schema.metadata, "PANDAS_ATTRS": json.dumps(df.attrs)})
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


class ResultStore:
    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.shards = self.root / "shards"

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
        whose Parquet footer does not parse (its unit reruns). Returns the removed shards' names."""
        import pyarrow.parquet as pq

        self.shards.mkdir(parents=True, exist_ok=True)
        for p in self.shards.glob(".tmp-*"):  # leftovers of a killed run
            p.unlink()
        removed = []
        for p in sorted(self.shards.glob("*.parquet")):
            if not _SHARD.match(p.name):
                continue
            try:
                pq.read_metadata(p)
            except Exception:  # noqa: BLE001 - any unreadable file is removed, whatever pyarrow raises
                p.unlink()
                removed.append(p.name)
        return removed

    def shard_path(self, sid: str, seed: int) -> pathlib.Path:
        return self.shards / f"{sid}__seed{seed:05d}.parquet"

    def write_shard(self, df: pd.DataFrame, sid: str, seed: int) -> None:
        _atomic_parquet(df, self.shard_path(sid, seed))

    def done_units(self) -> set:
        if not self.shards.exists():
            return set()
        out = set()
        for p in self.shards.iterdir():
            m = _SHARD.match(p.name)
            if m:
                out.add((m["sid"], int(m["seed"])))
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
        files = sorted(p for p in self.shards.glob("*.parquet") if _SHARD.match(p.name)) if self.shards.exists() else []
        if not files:
            raise ValueError(f"{self.root}: no results yet (no shards)")
        df = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
        keys = [c for c in ("setting_id", "seed", "n", "estimator", "metric") if c in df.columns]
        return df.sort_values(keys, kind="stable").reset_index(drop=True)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
