"""Data at scale: Bradley–Terry pairs for ``n`` up to 10⁷ per cell at ``T = 2²⁰`` (``P = 1``).

Run by hand (never in CI):  python benchmarks/bench_data_scale.py [--ns 1000000,10000000] [--reps 3] [--json]

Each ``n`` runs in a fresh subprocess (so its peak resident memory is its own) and times, over
``--reps`` repetitions:

* ``draw`` — :func:`genver.preferences.sample_preferences` of ``n`` pairs (the unit's stream);
* ``count`` — one :meth:`Preferences.counts` of the whole stream (a fresh ``np.unique``);
* ``nested`` — :class:`genver.preferences.NestedCounts` over the unit's grid of nested sizes
  (``--grid`` log-spaced sizes from 1,000 to ``n``, a factor ~1.41 apart), decoding each size's
  :class:`PairCounts` as the sweep does; ``per_extension`` lists the seconds of each size's
  extension (sort of the new segment + merge + decode); ``fresh`` is the old way, a fresh
  ``np.unique`` of every prefix ``head(n)`` (timed once, at the smaller sizes only when it
  would take long);
* ``peak_rss_MiB`` — ``ru_maxrss`` of the subprocess after drawing and counting every size,
  and ``stream_MiB`` the stream's own arrays.

The world: ``V = 2``, ``H = 20``, a random Dirichlet ``π_ref`` as the sampler (some
completions rare) and a Gaussian ``r*``. Reports the cost slope against ``n`` (log-log, draw
and nested counting) and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _world(H):
    from genver.policy import random_policy
    from genver.spaces import TreeSpace

    sp = TreeSpace(1, 2, H)
    ref = random_policy(sp, random_state=0)
    r = np.random.default_rng(1).normal(size=sp.shape)
    return sp, ref, r


def one(n, H, reps, grid_points):
    from genver.preferences import NestedCounts, sample_preferences

    sp, ref, r = _world(H)
    sizes = np.unique(np.round(np.geomspace(1000, n, grid_points)).astype(np.int64))
    draw, count, nested, ext_all, distinct = [], [], [], [], 0
    warm = NestedCounts(sample_preferences(r, ref, 2000, np.random.default_rng(99)))  # numba kernels loaded
    warm.at(1000), warm.at(2000)
    for rep in range(reps):
        t0 = time.perf_counter()
        data = sample_preferences(r, ref, n, np.random.default_rng(rep))
        draw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        c = data.counts()
        count.append(time.perf_counter() - t0)
        distinct = int(c.x.size)
        del c
        nc = NestedCounts(data, release=True)
        ext = []
        t0 = time.perf_counter()
        for m in sizes:
            t1 = time.perf_counter()
            c = nc.at(int(m))  # the unit holds one size's counts at a time
            ext.append(time.perf_counter() - t1)
        nested.append(time.perf_counter() - t0)
        ext_all.append(ext)
        stream_mib = 3 * data.x.nbytes / 2**20
        del c, nc, data
    # the old way: a fresh np.unique of every prefix (once; capped where it would take long)
    data = sample_preferences(r, ref, n, np.random.default_rng(0))
    t0 = time.perf_counter()
    for m in sizes:
        data.head(int(m)).counts()
    fresh = time.perf_counter() - t0
    del data
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ext_med = np.median(np.array(ext_all), axis=0)
    return {"n": n, "T": sp.T, "sizes": sizes.tolist(), "draw": draw, "count": count, "nested": nested,
            "per_extension": ext_med.tolist(), "fresh_every_prefix": fresh, "distinct_pairs": distinct,
            "peak_rss_MiB": peak, "stream_MiB": stream_mib}


def _med(v):
    return f"{np.median(v):.3f} s [{min(v):.3f}, {max(v):.3f}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", default="1000000,10000000")
    ap.add_argument("--H", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--grid", type=int, default=31, help="nested sizes from 1,000 to n (log-spaced)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.H, a.reps, a.grid)))
        return
    load0 = open("/proc/loadavg").read().split()[:3]
    res = []
    for n in [int(v) for v in a.ns.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--H", str(a.H), "--reps", str(a.reps),
                              "--grid", str(a.grid)], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        res.append(json.loads(out.stdout.strip().splitlines()[-1]))
    load1 = open("/proc/loadavg").read().split()[:3]
    if a.json:
        print(json.dumps({"results": res, "load": [load0, load1]}, indent=1))
        return
    print(f"load average before {' '.join(load0)}, after {' '.join(load1)}")
    for r in res:
        ext = r["per_extension"]
        print(f"n = {r['n']:,}, T = {r['T']:,}: draw {_med(r['draw'])}; count once {_med(r['count'])}; "
              f"{len(r['sizes'])} nested sizes incrementally {_med(r['nested'])} (fresh np.unique of every "
              f"prefix {r['fresh_every_prefix']:.3f} s); last three extensions "
              f"{', '.join(f'{e * 1e3:.0f} ms' for e in ext[-3:])}; distinct pairs {r['distinct_pairs']:,}; "
              f"stream {r['stream_MiB']:.0f} MiB; peak RSS {r['peak_rss_MiB']:.0f} MiB")
    if len(res) >= 2:
        ns = np.array([r["n"] for r in res], float)
        for what in ("draw", "nested"):
            t = np.array([np.median(r[what]) for r in res])
            print(f"log-log slope of {what} time against n: {np.polyfit(np.log(ns), np.log(t), 1)[0]:.2f}")


if __name__ == "__main__":
    main()
