"""Sweep tables of every shipped spec at smoke size, saved once and compared after a change.

    python benchmarks/smoke_tables.py save DIR [--only NAME ...]      # before the change
    python benchmarks/smoke_tables.py compare DIR [--only NAME ...]   # after: exit 1 on a difference

``save`` runs each ``sims/*.toml`` with ``--smoke`` (in-process, one worker) and writes its
result table, sorted by (setting, seed, estimator, metric, n), to ``DIR/NAME.parquet``.
``compare`` runs them again and reports, per spec, whether the values are identical bit for bit
(NaN equal to NaN), else the number of differing values and the largest absolute and relative
difference. Rows or columns that differ in kind (a missing unit, a renamed column) count as a
difference. Wall-time columns are not compared. Used by issue 16's refactor (tables identical)
and by speed changes that may move the last bits (the size of the move is what gets reported).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from genver.experiments.report import load_results
from genver.experiments.runner import run

SIMS = pathlib.Path(__file__).resolve().parent.parent / "sims"
SORT = ["setting_id", "seed", "estimator", "metric", "n"]
SKIP_COLUMNS = ("wall", "time", "elapsed")  # timing columns differ run to run


def table(name: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "results"
        run(SIMS / f"{name}.toml", out, smoke=True, progress=False)
        _, df, _ = load_results(out)
    df = df[[c for c in df.columns if not any(s in c for s in SKIP_COLUMNS)]]
    keys = [c for c in SORT if c in df.columns]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def compare(old: pd.DataFrame, new: pd.DataFrame) -> str | None:
    """None when identical, else a one-line description of the difference."""
    if list(old.columns) != list(new.columns):
        return f"columns differ: {sorted(set(old.columns) ^ set(new.columns))}"
    if len(old) != len(new):
        return f"{len(old)} rows before, {len(new)} after"
    notes, n_diff, max_abs, max_rel = [], 0, 0.0, 0.0
    for c in old.columns:
        a, b = old[c].to_numpy(), new[c].to_numpy()
        if a.dtype.kind == "f" and b.dtype.kind == "f":
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            if not same.all():
                d = ~same
                n_diff += int(d.sum())
                with np.errstate(invalid="ignore"):
                    diff = np.abs(a[d] - b[d])
                    max_abs = max(max_abs, float(np.nanmax(diff, initial=0.0)))
                    max_rel = max(max_rel, float(np.nanmax(diff / np.maximum(np.abs(a[d]), 1e-300), initial=0.0)))
                    if np.isnan(diff).any():
                        notes.append(f"{c}: NaN/inf pattern differs")
        elif not pd.Series(a).equals(pd.Series(b)):
            notes.append(f"{c} differs")
    if not n_diff and not notes:
        return None
    tail = f"; {'; '.join(notes)}" if notes else ""
    return f"{n_diff} values differ (max abs {max_abs:.3g}, max rel {max_rel:.3g})" + tail


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["save", "compare"])
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--only", action="append", default=None, metavar="NAME")
    a = ap.parse_args(argv)
    names = a.only or sorted(p.stem for p in SIMS.glob("*.toml"))
    a.dir.mkdir(parents=True, exist_ok=True)
    bad = 0
    for name in names:
        t0 = time.perf_counter()
        new = table(name)
        path = a.dir / f"{name}.parquet"
        if a.mode == "save":
            new.to_parquet(path, index=False)
            print(f"{name:24s} saved {len(new)} rows ({time.perf_counter() - t0:.1f} s)", flush=True)
            continue
        if not path.exists():
            print(f"{name:24s} no saved table in {a.dir}", flush=True)
            bad += 1
            continue
        diff = compare(pd.read_parquet(path), new)
        bad += diff is not None
        print(f"{name:24s} {'identical' if diff is None else diff} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return 1 if bad and a.mode == "compare" else 0


if __name__ == "__main__":
    sys.exit(main())
