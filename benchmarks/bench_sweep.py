"""Whole-sweep performance: genver's runner against the obvious numpy version, cold and warm
wall times, cells per second, peak memory, and how cost grows with n, K and V**H.

Run by hand (never in CI):  python benchmarks/bench_sweep.py [--reps 5] [--seeds 30] [--parts sweep,cold,scaling]
[--json]

* ``sweep_vs_numpy`` — the shipped ``gap_finite`` sweep with ``--seeds`` seeds (default 30, the
  shipped size: the numpy side takes ~40 s a round; ``--seeds 4`` for a quick look): numpy
  time (``naive_sweep.py``: every (seed, n) from scratch, one process) ÷ ``genver.experiments.runner.run`` time
  (warm: compiled kernels; each run makes its own cache), for two configurations — in process (``--executor
  local``, numba's parallel kernels) and two unit threads (``--executor threads --workers 2``)
  — over ``--reps`` interleaved rounds: median and [min, max] of the per-round ratios. Every
  value of each table must agree with numpy's to 1e-9. Target ≥ 50.
* ``cold_warm`` — ``genver run SPEC`` as a subprocess (in process, and ``--executor threads
  --workers 2``) for ``gap_finite`` and ``gap_horizon``: cold (an empty numba cache directory)
  and warm wall time, cells/s, and the peak resident memory of the process.
* ``scaling`` — seconds per unit for the finite sweep as one knob grows (log-log slope):
  ``n`` (one size per run, 64 … 262,144 pairs; split into drawing and counting the pairs, which
  grows with ``n``, and the rest of the unit given the counted pairs, which grows only with the
  number of distinct pairs: cost must stop growing once all distinct pairs are counted), ``K``
  (distractors) and ``V**H``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import naive_sweep  # noqa: E402

from genver.estimators import mle_paths  # noqa: E402
from genver.experiments.cells import _data, make_instance, run_unit  # noqa: E402
from genver.experiments.runner import run  # noqa: E402
from genver.experiments.spec import load_spec, parse_spec, setting_id  # noqa: E402
from genver.experiments.store import ResultStore  # noqa: E402
from genver.runcache import RunCache  # noqa: E402


def _spec_text(name, seeds=None):
    text = (ROOT / "sims" / f"{name}.toml").read_text()
    if seeds is not None:
        import re
        text = re.sub(r"^seeds = \d+", f"seeds = {seeds}", text, flags=re.M)
    return text


#: the genver configurations timed against numpy: (label, executor, workers)
CONFIGS = (("in-process", "local", 1), ("threads-2", "threads", 2))


def sweep_vs_numpy(seeds, reps):
    """``reps`` interleaved rounds (genver in process, genver with two threads, numpy) after
    one warm-up of each, so that all see the same machine load; each configuration's ratio per
    round (numpy time ÷ genver time), median [min, max]. Each timed genver run builds its own
    instances in its own :class:`~genver.runcache.RunCache`, as a fresh `genver run` process would."""
    tmp = pathlib.Path(tempfile.mkdtemp())
    spec_path = tmp / "gap_finite.toml"
    spec_path.write_text(_spec_text("gap_finite", seeds))
    spec = load_spec(spec_path)
    for label, ex, w in CONFIGS:
        run(spec_path, tmp / f"warmup-{label}", progress=False, executor=ex, workers=w)  # compile
    naive = naive_sweep.run(spec)  # warm-up (imports, first-touch memory)
    t_g = {label: [] for label, _, _ in CONFIGS}
    t_n = []
    for i in range(reps):
        for label, ex, w in CONFIGS:
            t0 = time.perf_counter()
            run(spec_path, tmp / f"{label}{i}", progress=False, executor=ex, workers=w)
            t_g[label].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        naive = naive_sweep.run(spec)
        t_n.append(time.perf_counter() - t0)
    keys = ["setting_id", "seed", "n", "estimator", "metric"]
    out = {"seeds": seeds, "reps": reps, "numpy_s": float(np.median(t_n)), "cells": int(len(naive)) // 4}
    for label, _, _ in CONFIGS:
        ours = ResultStore(tmp / f"{label}0").load()
        merged = ours.merge(naive, on=keys, suffixes=("", "_numpy"))
        assert len(merged) == len(naive) > 0, "the two sweeps do not cover the same cells"
        gap = float(np.abs(merged["value"] - merged["value_numpy"]).max())
        assert gap <= 1e-9, f"numbers differ by {gap}"
        ratio = np.array(t_n) / np.array(t_g[label])
        out[label] = {"median": float(np.median(ratio)), "min": float(ratio.min()), "max": float(ratio.max()),
                      "genver_s": float(np.median(t_g[label])), "max_abs_difference": gap}
    shutil.rmtree(tmp)
    return out


def cold_warm(name):
    """``genver run`` as a subprocess, in process and with two unit threads: cold (an empty numba
    cache directory: every kernel compiles) and warm; wall time, cells/s, peak resident memory."""
    tmp = pathlib.Path(tempfile.mkdtemp())
    out = {}
    for label, ex, w in CONFIGS:
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp / f"numba-cache-{label}"))
        for state in ("cold", "warm"):
            t0 = time.perf_counter()
            # GNU time reports this child's own peak resident set (KiB) on stderr
            proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "genver.cli", "run",
                                   str(ROOT / "sims" / f"{name}.toml"), "--out", str(tmp / f"{label}-{state}"),
                                   "--executor", ex, "--workers", str(w)],
                                  env=env, check=True, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            peak_kib = int(proc.stderr.strip().splitlines()[-1])
            man = ResultStore(tmp / f"{label}-{state}").read_manifest()
            out[f"{label} {state}"] = {"wall_s": wall, "cells": man["cells_total"],
                                       "cells_per_s": man["cells_total"] / wall,
                                       "peak_rss_MiB": peak_kib / 1024}
    shutil.rmtree(tmp)
    return out


def _unit_seconds(raw, reps=3):
    """Median seconds of one unit (one setting, one seed, every size of ``raw``) from scratch;
    of drawing its pairs and counting the distinct ones (``sample_preferences`` and the stream's
    segments); and of the unit once its instance and counted pairs are in a run cache (the fits
    and metrics) — a new cache for each repetition."""
    spec = parse_spec(raw)
    p = spec.settings()[0]
    run_unit(spec, p, setting_id(p), 0)
    ts, tp, tr, U = [], [], [], []
    for s in range(reps):
        t0 = time.perf_counter()
        run_unit(spec, p, setting_id(p), s + 1, cache=RunCache())
        ts.append(time.perf_counter() - t0)
        cache = RunCache()
        inst = make_instance(spec.generator, p, spec.root_seed, s + 1, cache=cache)
        t0 = time.perf_counter()
        # distinct unordered pairs
        U.append(mle_paths._stream(_data(spec, inst, s + 1, cache).stream, spec.sizes, cache)[0].size)
        tp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_unit(spec, p, setting_id(p), s + 1, cache=cache)
        tr.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.median(tp)), float(np.median(tr)), int(np.median(U))


def _slope(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def scaling():
    import tomllib
    base = tomllib.loads(_spec_text("gap_finite"))
    base.pop("smoke", None)
    base["metrics"] = {"names": ["suboptimality"]}
    res = {}
    ns = [64, 256, 1024, 4096, 16384, 65536, 262144]
    t, tp, rest, distinct = [], [], [], []
    for n in ns:
        raw = copy.deepcopy(base)
        raw["grid"] = {"n_distractors": [1024]}
        raw["data"]["sizes"] = [n]
        a, b, c, u = _unit_seconds(raw)
        t.append(a)
        tp.append(b)
        rest.append(c)
        distinct.append(u)
    res["n"] = {"values": ns, "seconds_per_unit": t, "slope_all": _slope(ns, t), "slope_last3": _slope(ns[-3:], t[-3:]),
                "pairs_seconds": tp, "after_counting_seconds": rest, "distinct_pairs": distinct,
                "after_counting_vs_distinct_slope": _slope(distinct, rest),
                "after_counting_slope_last3": _slope(ns[-3:], rest[-3:])}
    ks = [16, 256, 4096, 16384]
    t = []
    for k in ks:
        raw = copy.deepcopy(base)
        raw["grid"] = {"n_distractors": [k]}
        t.append(_unit_seconds(raw)[0])
    res["K"] = {"values": ks, "seconds_per_unit": t, "slope": _slope(np.array(ks) + 4, t)}
    hs = [2, 3, 4, 5, 6]
    t = []
    for h in hs:
        raw = copy.deepcopy(base)
        raw["instance"]["H"] = h
        raw["grid"] = {"n_distractors": [256]}
        t.append(_unit_seconds(raw)[0])
    res["V**H"] = {"values": [2**h for h in hs], "seconds_per_unit": t, "slope": _slope([2**h for h in hs], t)}
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--parts", default="sweep,cold,scaling",
                    help="comma-separated subset of sweep (sweep_vs_numpy), cold (cold_warm), scaling")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    res = {}
    if "sweep" in parts:
        res["sweep_vs_numpy"] = sweep_vs_numpy(args.seeds, args.reps)
    if "cold" in parts:
        res["cold_warm"] = {name: cold_warm(name) for name in ("gap_finite", "gap_horizon")}
    if "scaling" in parts:
        res["scaling"] = scaling()
    if args.json:
        print(json.dumps(res))
        return
    s = res.get("sweep_vs_numpy")
    if s:
        for label, _, _ in CONFIGS:
            c = s[label]
            print(f"sweep_vs_numpy {label:<10} {c['median']:.1f}  [min {c['min']:.1f}, max {c['max']:.1f}]  "
                  f"genver {c['genver_s']:.3f} s, numpy {s['numpy_s']:.2f} s ({s['seeds']} seeds, medians of "
                  f"{s['reps']} rounds), max |difference| {c['max_abs_difference']:.1e}")
    for name, v in res.get("cold_warm", {}).items():
        for label, w in v.items():
            print(f"{name:<12} {label:<16}: {w['wall_s']:.1f} s, {w['cells']} cells, {w['cells_per_s']:.0f} cells/s, "
                  f"peak RSS {w['peak_rss_MiB']:.0f} MiB")
    for knob, v in res.get("scaling", {}).items():
        extra = f", last three points {v['slope_last3']:.2f}" if "slope_last3" in v else ""
        print(f"cost vs {knob:<5} slope {v.get('slope', v.get('slope_all')):.2f}{extra}  "
              f"({', '.join(f'{x}: {t * 1e3:.1f} ms' for x, t in zip(v['values'], v['seconds_per_unit']))})")
        if "pairs_seconds" in v:
            print(f"  of which drawing and counting the pairs: "
                  f"{', '.join(f'{x}: {t * 1e3:.1f} ms' for x, t in zip(v['values'], v['pairs_seconds']))}")
            print(f"  the unit with its pairs counted (fits, metrics), slope over the last three points "
                  f"{v['after_counting_slope_last3']:.2f}: "
                  f"{', '.join(f'{x}: {t * 1e3:.1f} ms' for x, t in zip(v['values'], v['after_counting_seconds']))}")
            print(f"  distinct unordered pairs (of P·T(T+1)/2 = 544): "
                  f"{', '.join(f'{x}: {u}' for x, u in zip(v['values'], v['distinct_pairs']))}; "
                  f"log-log slope of the counted unit's cost against them {v['after_counting_vs_distinct_slope']:.2f}")


if __name__ == "__main__":
    main()
