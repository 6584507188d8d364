"""The result store: a directory of Parquet shards plus ``manifest.json``.

Layout of ``DIR``::

    manifest.json            spec, spec hash, package versions, git commit, start/end times
    settings.parquet         one row per setting: knobs and gap descriptors
    shards/batch-<sid>__seed<k>-<n>-<hash>.parquet
                             the tidy rows of ``n`` finished (setting, seed) units, unit after
                             unit; ``<sid>__seed<k>`` is the first unit of the sorted list and
                             ``<hash>`` a short hash of the whole list, which the file's Parquet
                             key-value metadata holds under ``genver_units`` (JSON
                             ``[[sid, seed], ...]``; the format: :mod:`genver.experiments.shards`)

The runner (:func:`genver.experiments.runner.run`) buffers finished units and writes them as one
batch shard once about ``flush_seconds`` (default 1 s) of wall time have passed since its last
write, when the run ends, on Ctrl-C (before the ``KeyboardInterrupt`` propagates) and before an
error of a unit or worker propagates. So Ctrl-C and errors lose only the units in flight, and a
SIGKILL (or a crash of the machine) loses at most the buffered units: about ``flush_seconds``
of work, which ``--resume`` runs again.

Every file is written through :mod:`genver.atomic` (a temporary name in the same directory,
renamed into place: ``os.replace`` is atomic on POSIX), so a killed run leaves complete shards
or none — never a partial or duplicated one. A unit is done exactly when a shard's footer lists
it; a unit is written once; stray temporary files of a killed run are removed on resume. A Parquet file is built in
memory (the bytes
``DataFrame.to_parquet(path, index=False)`` writes: the same pyarrow calls, plus the
``genver_units`` key for a shard) and written with one ``write``, and every file is flushed to
disk (``fsync``) before its rename, so a crash of the machine, not only of the process, leaves
no empty shard under a final name. On resume, :meth:`ResultStore.prepare` also reads every
shard's Parquet footer and removes any shard that does not parse or whose unit list does not
match its name (a file damaged outside genver), so its units run again. Footers are read once
per :class:`ResultStore` (cached by file name, size and modification time).

**One writer.** A run holds the directory's lock (:class:`~genver.experiments.lock.RunLock`,
``DIR/.genver.lock``) from before it reads the directory until it ends.

**Each unit once.** :meth:`ResultStore.load` refuses a directory in which a unit appears in two
shards (naming the unit and the shards: two runs that wrote at once, by an older genver without
the lock), and ``--resume`` repairs it (:meth:`ResultStore.prepare`): the oldest shard keeps the
unit, the others are rewritten without it (or removed when nothing is left).

**Provenance.** A shard written by the runner carries, under ``genver_provenance`` (JSON), the
package versions and git commit that wrote it, the spec, its hash and the ``--smoke`` flag:
enough for :func:`genver.experiments.runner.repair` to rebuild a lost ``manifest.json``
(:mod:`genver.experiments.provenance`).

Files are created with the permissions the umask allows (``0o666 & ~umask``), as ``open``
would create them (:func:`genver.atomic.file_mode`).
"""
from __future__ import annotations

import json
import logging
import os
import pathlib

import pandas as pd

from ..atomic import atomic_write_bytes
from .lock import LOCK_NAME, STALE_LOCK_S, LockedError, RunLock, now_iso
from .provenance import PROVENANCE_KEY, git_commit, package_versions, read_provenance
from .shards import (  # parquet_bytes, shards_table, UNITS_KEY re-exported: they keep this import path
    BATCH_NAME,
    UNITS_KEY,
    batch_frame,
    batch_name,
    parquet_bytes,
    read_units,
    shards_table,
    units_json,
)

__all__ = ["ResultStore", "RunLock", "LockedError", "DuplicateUnitsError", "parquet_bytes",
           "package_versions", "git_commit", "read_provenance", "now_iso", "LOCK_NAME", "STALE_LOCK_S",
           "PROVENANCE_KEY", "ROW_ORDER", "shards_table"]

log = logging.getLogger(__name__)

#: the order of a results table's rows (columns a table lacks are left out)
ROW_ORDER = ("setting_id", "seed", "n", "estimator", "metric")


class DuplicateUnitsError(ValueError):
    """A unit appears in more than one shard."""


class ResultStore:
    """A results directory of ``genver run`` (layout in the module docstring): its manifest, its
    settings table and its shards. ``root``: the directory (need not exist yet)."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.shards = self.root / "shards"
        self._footers: dict = {}  # shard name -> ((size, mtime_ns), units or None)
        #: written into every shard's footer (``genver_provenance``) when set (the runner sets it)
        self.provenance: dict | None = None

    # -- manifest ----------------------------------------------------------------------
    @property
    def manifest_path(self) -> pathlib.Path:
        """``DIR/manifest.json``."""
        return self.root / "manifest.json"

    def read_manifest(self) -> dict:
        """The run's manifest; a ``ValueError`` naming the directory when there is none (not a
        results directory, or a lost manifest that ``genver repair`` can rebuild) or it does not parse.

        Returns
        -------
        dict
            Spec, spec hash, versions, git commit, contributors, start and end times, unit count.
        """
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"{self.root}: not a directory (a results directory of `genver run` is expected)")
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            hint = (f"; its shards can rebuild it: genver repair {self.root}"
                    if any(self.shards.glob("*.parquet")) else "")
            raise ValueError(f"{self.root}: no manifest.json — not a genver results directory{hint}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.manifest_path}: unreadable ({e})") from None

    def write_manifest(self, manifest: dict) -> None:
        """Write ``manifest.json`` atomically.

        Parameters
        ----------
        manifest : dict
            The manifest (JSON; keys sorted, values that are not JSON written as ``str``).
        """
        atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())

    # -- shards ------------------------------------------------------------------------
    def prepare(self) -> list[str]:
        """Create ``shards/``, remove a killed run's temporary files, and remove every shard
        whose Parquet footer does not parse or does not match its name (its units rerun).
        (Units listed twice: :meth:`repair_duplicates`.) Each removal is logged (INFO).

        Returns
        -------
        list of str
            The removed shards' names.
        """
        self.shards.mkdir(parents=True, exist_ok=True)
        for p in self.shards.glob(".*.part"):  # leftovers of a killed run (genver.atomic's temporary files)
            p.unlink()
            log.info("%s: removed the temporary file %s of an interrupted write", self.root, p.name)
        removed = []
        for name, units in sorted(self._scan().items()):
            if units is None:
                (self.shards / name).unlink()
                self._footers.pop(name, None)
                removed.append(name)
                log.info("%s: removed the incomplete or damaged shard %s (its footer does not parse or does not "
                         "match its name); its units run again", self.root, name)
        return removed

    def duplicates(self) -> dict:
        """The units that more than one shard lists.

        Returns
        -------
        dict
            ``{(sid, seed): [shard names]}``.
        """
        where: dict = {}
        for name, units in sorted(self._scan().items()):
            for u in units or ():
                where.setdefault(u, []).append(name)
        return {u: names for u, names in where.items() if len(names) > 1}

    def repair_duplicates(self) -> list[str]:
        """Keep each unit in one shard: shards in order of modification time (then name); a
        shard listing a unit an earlier one holds is rewritten without that unit's rows (same
        provenance), or removed when nothing is left. Returns one line per changed shard. The
        new shard is written before the old one is removed, so a crash in between leaves a
        duplicate for the next repair, never a lost unit. Each change is logged (INFO).

        Returns
        -------
        list of str
            One line per changed shard.
        """
        if not self.duplicates():
            return []
        scan = {n: u for n, u in self._scan().items() if u is not None}
        order = sorted(scan, key=lambda n: ((self.shards / n).stat().st_mtime_ns, n))
        kept, changed, whole = set(), [], set()
        for name in order:
            if name in whole:  # already kept whole for a shard processed before it
                continue
            units = scan[name]
            dup = [u for u in units if u in kept]
            rest = [u for u in units if u not in kept]
            kept.update(rest)
            if not dup:
                continue
            path = self.shards / name
            target = batch_name(sorted(rest)) if rest else None
            if target is not None and target in scan and target != name:
                whole.add(target)  # another shard holds exactly the rest: keep it, drop this one
                rest = []
            if rest:
                df = pd.read_parquet(path)
                key = list(zip(df["setting_id"], df["seed"].astype(int)))
                tables = [(sid, seed, df[[k == (sid, seed) for k in key]].reset_index(drop=True))
                          for sid, seed in rest]
                prov_before = self.provenance
                self.provenance = read_provenance(path)
                try:
                    new = self.write_batch(tables)
                finally:
                    self.provenance = prov_before
                if new.name != name:
                    path.unlink()
                    self._footers.pop(name, None)
                changed.append(f"shard {name}: {len(dup)} unit(s) another shard holds dropped, "
                               f"{len(rest)} kept in {new.name}")
            else:
                path.unlink()
                self._footers.pop(name, None)
                changed.append(f"shard {name}: every unit is held by another shard; removed")
        for line in changed:
            log.info("%s: %s", self.root, line)
        return changed

    def unreadable(self) -> list[str]:
        """The shards whose footer does not parse or does not match the name.

        Returns
        -------
        list of str
            Their names, sorted.
        """
        return sorted(n for n, u in self._scan().items() if u is None)

    def completeness(self, expected: set) -> dict:
        """How much of a run is on disk.

        Parameters
        ----------
        expected : set
            The run's ``(setting_id, seed)`` units (:func:`genver.experiments.runner.expected_units`).

        Returns
        -------
        dict
            ``done`` (units of ``expected`` some readable shard holds), ``total``, ``unreadable``
            (shard names), ``complete`` (bool).
        """
        done = self.done_units() & expected
        bad = self.unreadable()
        return {"done": len(done), "total": len(expected), "unreadable": bad,
                "complete": len(done) == len(expected) and not bad}

    def write_batch(self, units) -> pathlib.Path:
        """Write finished units as one shard, atomically: the tables' rows one unit after another,
        units sorted by ``(sid, seed)``. The one way shards are written: a single unit is a batch
        of one. Each unit written is logged (DEBUG).

        Parameters
        ----------
        units : list of tuple
            ``[(sid, seed, table), ...]``; a table is a DataFrame or a unit's ``{column: list}``
            (:func:`genver.experiments.cells.unit_columns`).

        Returns
        -------
        pathlib.Path
            The shard's path.
        """
        if not units:
            raise ValueError("write_batch: no units")
        units = sorted(units, key=lambda u: (u[0], int(u[1])))
        keys = [(sid, int(seed)) for sid, seed, _ in units]
        if len(set(keys)) != len(keys):
            raise ValueError("write_batch: a unit is listed twice")
        uj = units_json(keys)
        name = batch_name(keys, uj)
        df = batch_frame([t for _, _, t in units])
        path = self.shards / name
        meta = {UNITS_KEY: uj}
        if self.provenance is not None:
            meta[PROVENANCE_KEY] = json.dumps(self.provenance, sort_keys=True, default=str).encode()
        atomic_write_bytes(path, parquet_bytes(df, meta))
        if log.isEnabledFor(logging.DEBUG):
            for sid, seed in keys:
                log.debug("%s: unit (setting %s, seed %d) written to shard %s", self.root, sid, seed, name)
        try:
            st = path.stat()
            self._footers[name] = ((st.st_size, st.st_mtime_ns), keys)
        except OSError:
            pass
        return path

    def shard_units(self) -> dict[pathlib.Path, list[tuple[str, int]]]:
        """Every readable shard and its units (from its footer, read once).

        Returns
        -------
        dict
            ``{shard path: [(sid, seed), ...]}``, shards sorted by name.
        """
        return {self.shards / name: units for name, units in sorted(self._scan().items()) if units is not None}

    def done_units(self) -> set:
        """The units some readable shard holds.

        Returns
        -------
        set
            ``{(sid, seed), ...}``.
        """
        return {u for units in self._scan().values() if units is not None for u in units}

    def _scan(self) -> dict:
        """``{shard name: units, or None for a shard that is unreadable or does not match its
        name}``. A shard's footer is read once (cached by name, size and mtime)."""
        try:
            entries = list(os.scandir(self.shards))
        except FileNotFoundError:
            return {}
        out = {}
        for e in entries:
            batch = BATCH_NAME.match(e.name)
            if not batch:
                continue
            try:
                st = e.stat()
            except FileNotFoundError:  # removed meanwhile
                continue
            key = (st.st_size, st.st_mtime_ns)
            hit = self._footers.get(e.name)
            if hit is None or hit[0] != key:
                hit = self._footers[e.name] = (key, read_units(pathlib.Path(e.path), batch))
            out[e.name] = hit[1]
        return out

    def write_settings(self, df: pd.DataFrame) -> None:
        """Write ``settings.parquet`` atomically.

        Parameters
        ----------
        df : pandas.DataFrame
            One row per setting: ``setting_id``, the knobs and the gap descriptors.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.root / "settings.parquet", parquet_bytes(df))

    def settings(self) -> pd.DataFrame:
        """The settings table (a ``ValueError`` naming the directory when there is none).

        Returns
        -------
        pandas.DataFrame
            One row per setting: ``experiment``, ``setting_id``, the knobs and the gap descriptors.
        """
        p = self.root / "settings.parquet"
        if not p.exists():
            raise ValueError(f"{self.root}: no settings.parquet — run `genver run` first")
        return pd.read_parquet(p)

    def load(self) -> pd.DataFrame:
        """All finished rows, sorted by :data:`ROW_ORDER`. Raises :class:`DuplicateUnitsError`
        when a unit appears in two shards (``--resume`` repairs that), a ``ValueError`` when there
        are no shards. (The same rows in one call, through ``pyarrow.dataset``:
        :func:`genver.experiments.tidy.load`.)

        Returns
        -------
        pandas.DataFrame
            One row per (setting, seed, n, estimator, metric).
        """
        df = shards_table(self.shard_files()).to_pandas()
        keys = [c for c in ROW_ORDER if c in df.columns]
        return df.sort_values(keys, kind="stable").reset_index(drop=True)

    def shard_files(self) -> list[pathlib.Path]:
        """The readable shards whose rows make up the results, sorted by name. Raises
        :class:`DuplicateUnitsError` when a unit appears in two shards, a ``ValueError`` when
        there are none.

        Returns
        -------
        list of pathlib.Path
            The shards' paths.
        """
        dup = self.duplicates()
        if dup:
            (sid, seed), names = next(iter(sorted(dup.items())))
            raise DuplicateUnitsError(
                f"{self.root}: unit (setting {sid}, seed {seed}) appears in {len(names)} shards "
                f"({', '.join(names)}), and {len(dup) - 1} more unit(s) twice: two runs wrote here at once? "
                f"repair with `genver run SPEC --out {self.root} --resume`")
        files = list(self.shard_units())
        if not files:
            raise ValueError(f"{self.root}: no results yet (no shards)")
        return files

    def expected_units(self, manifest: dict | None = None) -> set:
        """The units of the whole run: each setting of ``settings.parquet`` with each seed (the
        seed count from the manifest's ``units_total``; from its spec for a manifest of an older
        genver).

        Parameters
        ----------
        manifest : dict, optional
            The run's manifest (default: read it).

        Returns
        -------
        set
            ``{(setting_id, seed), ...}``.
        """
        man = self.read_manifest() if manifest is None else manifest
        sids = self.settings()["setting_id"].tolist()
        total = man.get("units_total")
        if total is not None and sids:
            seeds = int(total) // len(sids)
        else:  # a manifest of an older genver: the spec says
            from .spec import parse_spec
            seeds = parse_spec(man["spec"], smoke=bool(man.get("smoke")), memory_limit="off").seeds
        return {(sid, s) for s in range(seeds) for sid in sids}
