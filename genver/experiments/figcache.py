"""Content hashes that let ``genver plot`` and ``genver report`` skip work on unchanged results.

Two levels, both content hashes (SHA-256), never modification times:

* a **figure** is redrawn only when the hash of its inputs changed: the rows of the results it
  is drawn from (:func:`frame_digest`), the knobs and expectations of the manifest, the
  estimator labels of the whole report (they fix the colours), the style and width, and the
  source of the drawing code (:func:`code_digest`). The hash is stored beside the figure as
  ``<name>.sha256``; the figure is kept when that file holds the same hash and every output
  file exists;
* a **report** (and the figure set of ``genver plot``) is rebuilt only when :func:`results_digest` (the bytes of
``manifest.json``,
  ``settings.parquet`` and every shard, in name order, plus :func:`code_digest` and the
  format) changed; ``DIR/.report-cache.json`` then holds the verdict rows and the terminal
  text (for ``genver plot``: the list of figure files), so an unchanged report is printed
  without importing pandas, SciPy or matplotlib.

This module imports only the standard library and :mod:`genver.atomic` (plus NumPy/pandas
inside :func:`frame_digest`), so the no-change path of ``genver report`` stays fast.
"""
from __future__ import annotations

import hashlib
import json
import pathlib

from ..atomic import atomic_write_bytes

__all__ = ["code_digest", "results_digest", "frame_digest", "digest", "is_current", "store_digest",
           "read_report_cache", "write_report_cache", "plot_cache_name", "REPORT_CACHE"]

#: the report's cache file inside a results directory
REPORT_CACHE = ".report-cache.json"
_PKG = pathlib.Path(__file__).resolve().parent.parent
#: modules (and packages: every ``.py`` file in them) whose source decides what a figure or report holds
_CODE = ("plots", "stats", "scaling.py", "censored.py", "experiments/tables.py", "experiments/figures.py",
         "experiments/report.py", "experiments/report_verdicts.py", "experiments/expect.py", "experiments/figcache.py")


def _code_files() -> list[pathlib.Path]:
    out = []
    for rel in _CODE:
        p = _PKG / rel
        out += sorted(p.glob("*.py")) if p.is_dir() else [p]
    return out


def code_digest() -> str:
    """SHA-256 of the source of the modules that draw figures and compute the report.

    Returns
    -------
    str
        the hex digest (64 characters).
    """
    h = hashlib.sha256()
    for p in _code_files():
        rel = p.relative_to(_PKG).as_posix() if p.is_relative_to(_PKG) else p.name
        h.update(rel.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    return h.hexdigest()


def plot_cache_name(style: str, pdf: bool = False) -> str:
    """The report-cache entry of ``genver plot --style STYLE [--pdf]``: ``"plot-screen"``,
    ``"plot-screen+pdf"``, ``"plot-paper"`` (PDF and SVG already).

    Parameters
    ----------
    style : str
        ``"screen"`` or ``"paper"``.
    pdf : bool
        whether ``--pdf`` was given (screen style only).

    Returns
    -------
    str
        the entry's name.

    Examples
    --------
    >>> plot_cache_name("screen"), plot_cache_name("screen", pdf=True), plot_cache_name("paper", pdf=True)
    ('plot-screen', 'plot-screen+pdf', 'plot-paper')
    """
    return f"plot-{style}" + ("+pdf" if pdf and style == "screen" else "")


def results_digest(root, fmt: str) -> str:
    """SHA-256 of a results directory's files (manifest, settings, shards) with the code and the
    report format: equal exactly when ``genver report DIR --format fmt`` would write the same.

    Parameters
    ----------
    root : str or pathlib.Path
        the results directory.
    fmt : str
        the report format (or a :func:`plot_cache_name` entry).

    Returns
    -------
    str
        the hex digest.
    """
    root = pathlib.Path(root)
    h = hashlib.sha256(f"{fmt}\0{code_digest()}\0".encode())
    files = [root / "manifest.json", root / "settings.parquet"]
    shards = root / "shards"
    if shards.is_dir():
        files += sorted(p for p in shards.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))
    for p in files:
        h.update(p.name.encode() + b"\0")
        if p.exists():
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def frame_digest(df) -> bytes:
    """Content digest of a DataFrame: its columns, dtypes and values, row order included.

    Parameters
    ----------
    df : pandas.DataFrame
        the table.

    Returns
    -------
    bytes
        the SHA-256 digest (32 bytes).
    """
    import pandas as pd

    h = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    if len(df):
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.digest()


def digest(*parts) -> str:
    """SHA-256 over parts: bytes as they are, DataFrames by :func:`frame_digest`, anything
    else by its JSON (sorted keys) or ``repr``.

    Parameters
    ----------
    *parts : object
        the inputs, in order (the order matters).

    Returns
    -------
    str
        the hex digest.

    Examples
    --------
    >>> digest("a", {"x": 1}) == digest("a", {"x": 1}) != digest({"x": 1}, "a")
    True
    """
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, bytes):
            b = p
        elif hasattr(p, "dtypes") and hasattr(p, "columns"):
            b = frame_digest(p)
        else:
            try:
                b = json.dumps(p, sort_keys=True, default=str).encode()
            except TypeError:
                b = repr(p).encode()
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def _hash_file(stem: pathlib.Path) -> pathlib.Path:
    return stem.parent / f"{stem.name}.sha256"


def is_current(stem, outputs, key: str) -> bool:
    """Whether the figure at ``stem`` was drawn from inputs hashing to ``key`` and every one of
    ``outputs`` still exists.

    Parameters
    ----------
    stem : str or pathlib.Path
        the figure's path without suffix (its digest is ``STEM.sha256``).
    outputs : list of pathlib.Path
        the figure's files.
    key : str
        the digest of the inputs it would be drawn from now (:func:`digest`).

    Returns
    -------
    bool
        True when the figure need not be redrawn.
    """
    f = _hash_file(pathlib.Path(stem))
    try:
        return f.read_text().strip() == key and all(pathlib.Path(o).exists() for o in outputs)
    except OSError:
        return False


def store_digest(stem, key: str) -> None:
    """Record ``key`` beside the figure at ``stem`` (after its files are written).

    Parameters
    ----------
    stem : str or pathlib.Path
        the figure's path without suffix.
    key : str
        the digest of its inputs.
    """
    atomic_write_bytes(_hash_file(pathlib.Path(stem)), (key + "\n").encode(), fsync=False)


def read_report_cache(root, fmt: str) -> dict | None:
    """The cached report of ``root`` in format ``fmt`` when the results, the code and the format
    are unchanged and the report file exists; else ``None``.

    Parameters
    ----------
    root : str or pathlib.Path
        the results directory.
    fmt : str
        the report format (or a :func:`plot_cache_name` entry).

    Returns
    -------
    dict or None
        the entry :func:`write_report_cache` stored (path, verdict rows, terminal text), or None.
    """
    root = pathlib.Path(root)
    try:
        cache = json.loads((root / REPORT_CACHE).read_text())
    except (OSError, ValueError):
        return None
    entry = cache.get(fmt) if isinstance(cache, dict) else None
    if not isinstance(entry, dict) or not (root / entry.get("path", "\0")).exists():
        return None
    if not all((root / f).exists() for f in entry.get("files", [])):
        return None
    return entry if entry.get("digest") == results_digest(root, fmt) else None


def write_report_cache(root, fmt: str, entry: dict) -> None:
    """Store ``entry`` (path, verdict rows, terminal text) for ``fmt`` with the results' digest.

    Parameters
    ----------
    root : str or pathlib.Path
        the results directory.
    fmt : str
        the report format (or a :func:`plot_cache_name` entry).
    entry : dict
        what a later :func:`read_report_cache` returns (JSON-serialisable).
    """
    root = pathlib.Path(root)
    try:
        cache = json.loads((root / REPORT_CACHE).read_text())
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    cache[fmt] = {**entry, "digest": results_digest(root, fmt)}
    atomic_write_bytes(root / REPORT_CACHE, json.dumps(cache, indent=1, allow_nan=False).encode(), fsync=False)
