r"""Run the theory checks and report one summary row per proposition (``genver check``).

``run_checks(quick=True, only=None, random_state=0, progress=None)`` returns a DataFrame with
one row per check — ``id, statement, cases, max_discrepancy, tolerance, broken_discrepancy,
passed, seconds`` (see :mod:`genver.theory._common` for the definitions) — and the full tidy
rows of every check in ``df.attrs["rows"]`` (a DataFrame). ``main(argv)`` is the command line::

    genver check [--quick] [--only ID [--only ID ...]] [--seed S] [--json]

Its options are defined once, by :func:`genver.cli.add_check_arguments`, which the ``genver
check`` subcommand and :func:`main` both use; :func:`run_from_args` runs parsed arguments.

It prints the table (or JSON records with ``--json``), writes one progress line per check to
stderr, and exits 0 only when every check passes (max discrepancy ≤ tolerance) and every broken
variant is caught (broken discrepancy > tolerance); 1 otherwise; 2 for an unknown ``--only`` id.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time

import pandas as pd

from ._common import CHECK_IDS, registry, summarise

__all__ = ["run_checks", "format_table", "main", "run_from_args"]

COLUMNS = ["id", "statement", "cases", "max_discrepancy", "tolerance", "broken_discrepancy", "passed", "seconds"]


@contextlib.contextmanager
def single_threaded():
    """Run numba kernels and BLAS single-threaded inside the block, restoring both after.

    The checks solve thousands of tiny problems; with numba's OpenMP workers and OpenBLAS's
    threads both spinning, L-BFGS-B's small BLAS calls slow down 10–100× on a busy 2-core
    machine (measured). BLAS is limited through ``threadpoolctl`` (a dependency). Results do
    not depend on numba's thread count (see ``_kernels``); the last digits of L-BFGS solutions
    may depend on BLAS's."""
    import numba
    from threadpoolctl import threadpool_limits
    n0 = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(n0)


def run_checks(quick: bool = True, only=None, random_state=0, progress=None, *,
               threads_single: bool = True) -> pd.DataFrame:
    """Run the registered checks (all, or the ids in ``only``) and summarise each.

    ``progress`` — ``None`` or a callable receiving one message string per event (a check
    starting and finishing). Every check receives the same ``random_state``: results do not
    depend on which other checks run. ``threads_single`` runs the checks inside
    :func:`single_threaded` (much faster for these tiny problems). Raises ``KeyError`` for an
    unknown id in ``only``.

    Parameters
    ----------
    quick : bool
        The quick (CI-sized) runs of the checks.
    only : sequence of str or None
        Check ids to run (default all).
    random_state : None, int, SeedSequence or Generator
        Passed to every check.
    progress : callable or None
        Receives one message per event.
    threads_single : bool
        Run inside :func:`single_threaded`.

    Returns
    -------
    pandas.DataFrame
        One summary row per check (module docstring), the tidy rows in ``attrs["rows"]``.
    """
    mods = registry(only)
    with single_threaded() if threads_single else contextlib.nullcontext():
        return _run(mods, quick, random_state, progress)


def _run(mods, quick, random_state, progress) -> pd.DataFrame:
    summaries, all_rows = [], []
    for k, (cid, mod) in enumerate(mods.items(), 1):
        if progress is not None:
            progress(f"[{k}/{len(mods)}] {cid} ...")
        t0 = time.perf_counter()
        rows = mod.check(quick=quick, random_state=random_state)
        dt = time.perf_counter() - t0
        s = summarise(mod, rows, dt)
        summaries.append(s)
        all_rows.extend(rows)
        if progress is not None:
            verdict = "ok" if s["passed"] else "FAILED"
            progress(f"[{k}/{len(mods)}] {cid}: {verdict} — {s['cases']} cases, max {s['max_discrepancy']:.3g} "
                     f"(tol {s['tolerance']:.3g}), broken {s['broken_discrepancy']:.3g}, {dt:.1f}s")
    df = pd.DataFrame(summaries, columns=COLUMNS)
    df.attrs["rows"] = pd.DataFrame(all_rows)
    return df


def _table_cell(v) -> str:
    """A non-text cell of :func:`format_table`: floats in scientific notation (3 digits), the rest as ``str``."""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.2e}"
    return str(v)


def format_table(df: pd.DataFrame) -> str:
    """A fixed-width text table of the summary (one line per check, plus a verdict line).

    Parameters
    ----------
    df : pandas.DataFrame
        The summary of :func:`run_checks`.

    Returns
    -------
    str
        The table.
    """
    cols = [("id", "check"), ("cases", "cases"), ("max_discrepancy", "max disc."), ("tolerance", "tolerance"),
            ("broken_discrepancy", "broken disc."), ("passed", "passed"), ("seconds", "s")]
    cells = []
    for _, r in df.iterrows():
        line = []
        for c, _h in cols:
            v = r[c]
            if c == "passed":
                line.append("yes" if bool(v) else "NO")
            elif c == "seconds":
                line.append("nan" if v is None or math.isnan(v) else f"{v:.1f}")
            elif c == "cases":
                line.append(str(int(v)))
            else:
                line.append(_table_cell(v) if not isinstance(v, str) else v)
        cells.append(line)
    heads = [h for _, h in cols]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(heads, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for row in cells:
        out.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths))))
    n_ok = int(df["passed"].sum()) if len(df) else 0
    out.append(f"{n_ok}/{len(df)} checks passed (sound discrepancy ≤ tolerance and broken variant caught)")
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    from genver.cli import CHECK_DESCRIPTION, add_check_arguments
    return add_check_arguments(argparse.ArgumentParser(prog="genver check", description=CHECK_DESCRIPTION))


def main(argv=None) -> int:
    """Command line entry point; returns the exit status (0 pass, 1 fail, 2 usage error).

    Parameters
    ----------
    argv : list of str or None
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code) if isinstance(e.code, int) else 2
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the checks that arguments parsed with :func:`add_check_arguments` ask for; returns
    the exit status (0 pass, 1 fail, 2 usage error).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``genver check`` arguments.

    Returns
    -------
    int
        The exit status.
    """
    if args.only:
        unknown = [i for i in args.only if i not in CHECK_IDS]
        if unknown:
            print(f"genver check: unknown check id {unknown[0]!r}; choose from {', '.join(CHECK_IDS)}",
                  file=sys.stderr)
            return 2
    if args.seed < 0:
        print(f"genver check: --seed must be a non-negative integer, got {args.seed}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    df = run_checks(quick=args.quick, only=args.only, random_state=args.seed,
                    progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    total = time.perf_counter() - t0
    if args.json:
        recs = json.loads(df.to_json(orient="records"))
        print(json.dumps({"quick": args.quick, "seed": args.seed, "seconds": round(total, 2), "checks": recs},
                         indent=2, ensure_ascii=False))
    else:
        print(format_table(df))
        print(f"total {total:.1f}s ({'quick' if args.quick else 'full'}, seed {args.seed})")
    return 0 if bool(df["passed"].all()) and len(df) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
