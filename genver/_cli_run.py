"""``genver run`` and ``genver quickstart``: a sweep spec into a results directory.

``genver run SPEC --out DIR`` runs (or, with ``--resume``, continues) the sweep through
:func:`genver.experiments.runner.run`; SIGTERM and SIGHUP are turned into
:class:`~genver.experiments.runner.Interrupted` (as Ctrl-C is a ``KeyboardInterrupt``), so the
finished units are saved and the exit code is 128 + the signal. With ``--json`` the command
writes machine-readable events on stdout, one JSON object per line (:class:`JsonEvents`)::

    {"event": "start", "spec": ..., "out": ..., "executor": ..., "units_total": ..., "units_todo": ...,
     "cells_total": ..., "cells_done": ...}
    {"event": "progress", "done": ..., "total": ..., "units_done": ..., "units_total": ..., "elapsed_s": ...}
    {"event": "done", "out": ..., "wall_s": ..., "cells": ..., "units": ..., "units_run": ..., "executor": ...}
    {"event": "error", "message": ..., "exit": ...}

(``done`` / ``total`` count cells; ``progress`` follows every finished unit; an ``error`` is
the last line of a run that fails, with the exit code the command returns). The human output
then goes to stderr only (notes and errors; no progress bar, no summary line).

``genver quickstart`` runs the bundled small headline experiment and prints its ratios.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

__all__ = ["JsonEvents", "run_command", "quickstart_command", "add_run_parser", "add_quickstart_parser"]


def quickstart_command(args) -> int:
    """``genver quickstart``: run, report and print the bundled gap_finite sweep; returns 0."""
    import importlib.resources

    from .experiments.report import make_report
    from .experiments.runner import run
    from .experiments.store import ResultStore

    t0 = time.perf_counter()
    spec = importlib.resources.files("genver.experiments") / "quickstart.toml"
    with importlib.resources.as_file(spec) as spec_path:
        print(f"genver quickstart: running the bundled gap_finite sweep ({spec_path.name}) into {args.out}/",
              file=sys.stderr)
        workers = args.workers or min(4, os.cpu_count() or 1)
        summary = run(spec_path, args.out, workers=workers, executor="threads",
                      resume=ResultStore(args.out).root.exists())
    path, table = make_report(args.out)
    import pandas as pd
    ratio = pd.read_csv(io.StringIO(_ratio_csv(args.out)))
    print(f"N_ε = pairs a route needs for mean exact suboptimality J(π*) − J(π̂) ≤ ε = {ratio['eps'].iloc[0]};\n"
          f"ratio = N_ε(offline)/N_ε(online), 95% bootstrap CI over {summary['units'] // len(ratio)} seeds:")
    print(ratio.drop(columns="eps").to_string(index=False))
    import textwrap
    v = table.iloc[0]
    print(textwrap.fill(f"verdict: {v['verdict']} — {v['detail']}", 100, subsequent_indent="  "))
    if v.get("in_words"):
        print(textwrap.fill(f"  = {v['in_words']}", 100, subsequent_indent="    "))
    print(f"report: {path}  figures: {path.parent / 'figures'}  ({time.perf_counter() - t0:.1f} s)")
    return 0


def _ratio_csv(root) -> str:
    from .experiments.tables import load_results, ratio_table
    man, df, settings = load_results(root)
    r = ratio_table(man, df, settings)
    cols = ["n_distractors", "predicted_ratio", "N_offline", "N_online", "ratio", "ratio_lo", "ratio_hi", "eps"]
    return r.sort_values("n_distractors")[cols].round(2).to_csv(index=False)


def _flush_seconds_from_env() -> float | None:
    """``GENVER_FLUSH_SECONDS``: seconds of finished units `genver run` buffers per shard."""
    v = os.environ.get("GENVER_FLUSH_SECONDS", "").strip()
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"GENVER_FLUSH_SECONDS must be a number of seconds, got {v!r}") from None


class _SignalsAsInterrupts:
    """While inside: SIGTERM and SIGHUP raise :class:`~genver.experiments.runner.Interrupted`
    as Ctrl-C raises KeyboardInterrupt, so the run saves its buffered units and ends its workers
    (the default action would kill this process alone, leaving the workers as orphans). A
    repeated SIGTERM / SIGHUP during that cleanup is ignored (a scheduler's SIGKILL still ends
    it). Restores the previous handlers on exit."""

    SIGNALS = ("SIGTERM", "SIGHUP")

    def __enter__(self):
        import signal

        from .experiments.runner import Interrupted
        self.before = {}

        def handler(signum, frame):
            for name in self.SIGNALS:
                signal.signal(getattr(signal, name), signal.SIG_IGN)
            raise Interrupted(f"stopped by {signal.Signals(signum).name} before any unit was saved", signum)

        for name in self.SIGNALS:
            if hasattr(signal, name):
                sig = getattr(signal, name)
                self.before[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc):
        import signal
        for sig, h in self.before.items():
            signal.signal(sig, h)
        return False


class JsonEvents:
    """The ``--json`` event stream: each event (a dict) is written as one JSON object on one
    line of ``stream`` (default stdout) and flushed at once, so a script reading the pipe sees
    it as it happens."""

    def __init__(self, stream=None):
        self.stream = sys.stdout if stream is None else stream

    def __call__(self, event: dict) -> None:
        """Write ``event``.

        Parameters
        ----------
        event : dict
            ``{"event": name, ...}`` with JSON-serialisable values.
        """
        self.stream.write(json.dumps(event, allow_nan=False, default=str) + "\n")
        self.stream.flush()


def run_command(args) -> int:
    """``genver run``: the sweep, its summary line (or, with ``--json``, its events); returns
    the exit code (0, or 128 + the signal that stopped it). With ``--json`` the event stream is
    ``args.events``, where :func:`genver.cli.main` also writes the ``error`` event of bad input."""
    args.events = JsonEvents() if args.json else None
    return _run(args, args.events)


def _run(args, events) -> int:
    import signal

    from .experiments.catalog import resolve_spec
    from .experiments.runner import run
    spec = resolve_spec(args.spec)
    try:
        with _SignalsAsInterrupts():
            summary = run(spec, args.out, workers=args.workers, resume=args.resume, smoke=args.smoke,
                          executor=args.executor, scheduler=args.scheduler, device=args.device,
                          flush_seconds=_flush_seconds_from_env(), allow_version_change=args.allow_version_change,
                          memory_limit=args.memory_limit, progress=events is None, events=events)
    except KeyboardInterrupt as e:  # Ctrl-C: 130; SIGTERM: 143; SIGHUP: 129 (128 + the signal)
        message = str(e) or "interrupted before any unit was saved"
        code = 128 + int(getattr(e, "signum", signal.SIGINT))
        print(f"genver: {message}", file=sys.stderr)
        if events is not None:
            events({"event": "error", "message": message, "exit": code})
        return code
    if events is not None:
        return 0
    if summary["units_run"] == 0:
        print(f"nothing to do: all {summary['units']} units ({summary['cells']} cells) are already in {summary['out']}")
    else:
        print(f"{summary['cells']} cells ({summary['units_run']} of {summary['units']} units run now) "
              f"in {summary['seconds']:.1f} s -> {summary['out']}")
    return 0


def add_quickstart_parser(sub) -> argparse.ArgumentParser:
    """Add ``genver quickstart`` to the subcommands ``sub``; returns its parser."""
    q = sub.add_parser("quickstart", help="run the bundled small gap experiment, plot it and report")
    q.add_argument("--out", default="genver-quickstart", metavar="DIR",
                   help="results directory (default ./genver-quickstart; rerunning resumes it)")
    q.add_argument("--workers", type=int, default=0,
                   help="unit threads (genver run --executor threads; default: the machine's cores, at most 4)")
    q.set_defaults(func=quickstart_command)
    return q


def add_run_parser(sub) -> argparse.ArgumentParser:
    """Add ``genver run`` to the subcommands ``sub``; returns its parser."""
    r = sub.add_parser("run", help="run a sweep spec (TOML) into a results directory, resumably",
                       epilog="environment: GENVER_FLUSH_SECONDS (default 1): finished units are written "
                              "together, one shard, once this many seconds have passed since the last write "
                              "(and at the end, on Ctrl-C and on errors); a SIGKILL loses at most that much "
                              "finished work; 0 writes each unit as it finishes.")
    r.add_argument("spec", help="experiment spec: a TOML file (e.g. sims/gap_finite.toml) or the name of a "
                                "shipped spec (e.g. gap_finite; `genver specs` lists them)")
    r.add_argument("--out", required=True, metavar="DIR", help="results directory (new or, with --resume, the same)")
    r.add_argument("--workers", type=int, default=1,
                   help="worker processes of --executor local or dask-local, threads of --executor threads (default 1)")
    r.add_argument("--executor", choices=["local", "threads", "dask-local", "dask"], default="local",
                   help="where units run: local (this machine: in process, or a pool of --workers processes; "
                        "default), threads (--workers threads in this process, kernels serial and GIL-free: "
                        "fastest for quick finite-class sweeps), dask-local (a Dask LocalCluster of --workers "
                        "processes on 127.0.0.1), dask "
                        "(an existing Dask cluster at --scheduler; needs genver[dist])")
    r.add_argument("--scheduler", metavar="tcp://HOST:PORT", default=None,
                   help="the Dask scheduler's address, for --executor dask")
    r.add_argument("--resume", action="store_true",
                   help="continue a run in DIR, skipping finished units (with any executor)")
    r.add_argument("--smoke", action="store_true", help="run the spec's small [smoke] version")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where neural estimators train (default auto: CUDA when available, else CPU)")
    r.add_argument("--allow-version-change", action="store_true",
                   help="with --resume: continue a run written by another genver/numpy/scipy/numba version or "
                        "git commit (refused otherwise; the manifest then lists every contributing version)")
    r.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="refuse the run when its memory estimate exceeds SIZE (e.g. 8G; 'off': no check; "
                        "default: GENVER_MEMORY_LIMIT, else the machine's available memory)")
    r.add_argument("--json", action="store_true",
                   help="machine-readable progress on stdout: one JSON object per line (events start, progress, "
                        "done, or error with the exit code); notes and errors still go to stderr")
    r.set_defaults(func=run_command)
    return r
