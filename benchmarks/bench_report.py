"""How fast ``genver plot`` and ``genver report`` are, cold and on unchanged results.

Run by hand (never in CI):  python benchmarks/bench_report.py [--reps 3] [--baseline REV] [--gh DIR] [--json]

It runs the full ``gap_horizon`` sweep (``--gh DIR``: reuses the results of ``genver run
sims/gap_horizon.toml --out DIR`` instead, about 3.5 min saved) and the ``gap_finite`` smoke sweep
once into a temporary directory, then times each command as a subprocess (``python -m genver.cli
...``: imports included, what a user waits for):

* ``plot_cold``   — ``genver plot`` on the full ``gap_horizon`` with no figures yet (every figure
  drawn, PNG; target ≤ 3 s);
* ``plot_cold_pdf`` — the same with ``--pdf`` (PNG and PDF, what ``genver plot`` wrote by default
  before; the baseline's plain ``genver plot``);
* ``plot_warm``   — ``genver plot`` again on the unchanged results (nothing redrawn);
* ``report_cold`` — ``genver report`` on the smoke results with no figures and no report yet;
* ``report_warm`` — ``genver report`` again on the unchanged results (target ≤ 1 s);
* ``*_baseline``  — the same commands with the code of ``--baseline`` (default ``06c8f2c``, the
  commit before issue 17: it redraws every figure every time), extracted with ``git archive`` and
  timed in the same rounds, so the ratios compare like with like on a loaded machine.

Each round runs every command once, interleaved; the table gives the median and [min, max] of
the wall times (``*_cpu``: the child's user + system CPU seconds, less sensitive to a loaded
machine) over ``--reps`` rounds and the ratio baseline ÷ now ([min, max]: min baseline ÷ max
now, max baseline ÷ min now), with the load average (``/proc/loadavg``) before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load() -> str:
    try:
        return pathlib.Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _time(cmd, pythonpath, cwd) -> tuple[float, float]:
    """(wall, CPU = user + sys) seconds of one ``python -m genver.cli CMD`` run with the code at
    ``pythonpath``; ``cwd`` holds no ``genver`` (``-m`` puts the working directory first on
    ``sys.path``)."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath), MPLBACKEND="Agg")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "genver.cli", *cmd], check=True, env=env, cwd=cwd,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _clean(d: pathlib.Path) -> None:
    shutil.rmtree(d / "figures", ignore_errors=True)
    for f in ("report.md", "report.html", ".report-cache.json"):
        (d / f).unlink(missing_ok=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--baseline", default="06c8f2c", help="git revision of the baseline code ('' for none)")
    ap.add_argument("--gh", type=pathlib.Path, default=None,
                    help="full gap_horizon results to reuse (default: run the sweep, ~3.5 min)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    load0 = _load()
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        tmp = pathlib.Path(tmp)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        runs = [("gap_finite", "gf", ["--smoke"])]
        if a.gh is None:
            runs.insert(0, ("gap_horizon", "gh", []))
        else:
            shutil.copytree(a.gh, tmp / "gh", ignore=shutil.ignore_patterns("figures", "report.*",
                                                                            ".report-cache.json"))
        for spec, out, extra in runs:
            subprocess.run([sys.executable, "-m", "genver.cli", "run", str(ROOT / "sims" / f"{spec}.toml"),
                            "--out", str(tmp / out), *extra], check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        codes = {"now": ROOT}
        if a.baseline:
            base = tmp / "baseline"
            base.mkdir()
            tar = subprocess.run(["git", "-C", str(ROOT), "archive", a.baseline, "genver"], check=True,
                                 capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=tar, check=True)
            codes["baseline"] = base
        times: dict[str, list[float]] = {}
        for _ in range(a.reps):
            for label, code in codes.items():
                gh, gf = tmp / f"gh_{label}", tmp / f"gf_{label}"
                for src, dst in ((tmp / "gh", gh), (tmp / "gf", gf)):
                    shutil.rmtree(dst, ignore_errors=True)
                    shutil.copytree(src, dst)
                suffix = "" if label == "now" else "_baseline"
                pdf = [] if label == "baseline" else ["--pdf"]  # the baseline always wrote PDFs
                for name, cmd in (("plot_cold", ["plot", str(gh)]), ("plot_warm", ["plot", str(gh)]),
                                  ("plot_cold_pdf", ["plot", str(gh), *pdf]),
                                  ("report_cold", ["report", str(gf)]), ("report_warm", ["report", str(gf)])):
                    if name == "report_cold":
                        _clean(gf)
                    if name == "plot_cold_pdf":
                        _clean(gh)
                    try:
                        w, c = _time(cmd, code, tmp)
                    except subprocess.CalledProcessError as e:
                        if name.startswith("report") and e.returncode == 1:  # a FAIL verdict: still timed
                            w, c = float("nan"), float("nan")
                        else:
                            raise
                    times.setdefault(name + suffix, []).append(w)
                    times.setdefault(name + suffix + "_cpu", []).append(c)
    load1 = _load()

    def med(v):
        v = sorted(v)
        return v[len(v) // 2]

    rows = []
    for name in ("plot_cold", "plot_warm", "plot_cold_pdf", "report_cold", "report_warm"):
        for kind in ("", "_cpu"):
            now = times[name + kind]
            row = {"name": name + kind, "median_s": med(now), "min_s": min(now), "max_s": max(now)}
            if name + "_baseline" + kind in times:
                b = times[name + "_baseline" + kind]
                row |= {"baseline_median_s": med(b), "ratio": med(b) / med(now),
                        "ratio_min": min(b) / max(now), "ratio_max": max(b) / min(now)}
            rows.append(row)
    if a.json:
        print(json.dumps({"rows": rows, "reps": a.reps, "loadavg_before": load0, "loadavg_after": load1}))
        return 0
    print(f"reps {a.reps}; load average {load0} before, {load1} after")
    print(f"{'command':<17} {'now (s) median [min, max]':>28} {'baseline (s)':>13} {'baseline/now [min, max]':>26}")
    for r in rows:
        base = f"{r['baseline_median_s']:.2f}" if "ratio" in r else "—"
        ratio = f"{r['ratio']:.1f} [{r['ratio_min']:.1f}, {r['ratio_max']:.1f}]" if "ratio" in r else "—"
        spread = f"[{r['min_s']:.2f}, {r['max_s']:.2f}]"
        print(f"{r['name']:<17} {r['median_s']:>10.2f} {spread}{'':>4} {base:>13} {ratio:>26}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
