"""Core kernels against the straightforward numpy version of the same computation.

Run by hand (never in CI):  python benchmarks/bench_core.py [--reps 7] [--json]

1. Backward induction (soft-optimal policy and values), V=8, H=6, P=4 (262,144 completions
   per prompt): genver's numba kernel vs per-depth numpy reshape + log-sum-exp.
2. Bradley–Terry log-likelihood of every member of a finite class (K = 10,000 members,
   P·T = 4,096 completions, N = 10,000 pairs): genver's kernel vs numpy gather + logaddexp
   (chunked over members so the intermediate fits in memory).

Each ratio is numpy time ÷ genver time measured in the same run: median of ``--reps``
repetitions after one warm-up (which also compiles), with min and max. The results of both
versions are compared before timing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from genver import _kernels
from genver.policy import Policy, logsumexp_rows, random_policy
from genver.preferences import sample_preferences
from genver.softrl import soft_optimal
from genver.spaces import TreeSpace


def timeit(fn, reps):
    fn()  # warm-up (compiles)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return np.array(ts)


def numpy_backward(reward, ref: Policy, beta):
    """Per-depth reshape + log-sum-exp, returns (logp of π*, V_0)."""
    sp = ref.space
    v = reward / beta
    conds = []
    for h in range(sp.H - 1, -1, -1):
        q = ref.token_logp(h) + v.reshape(sp.P, sp.V**h, sp.V)
        v = logsumexp_rows(q)
        conds.append(q - v[..., None])
    return conds, beta * v[:, 0]


def numpy_class_loglik(scores, pos, neg, count, chunk=500):
    out = np.empty(scores.shape[0])
    for a in range(0, scores.shape[0], chunk):
        z = scores[a : a + chunk, pos] - scores[a : a + chunk, neg]
        out[a : a + chunk] = -np.logaddexp(0.0, -z) @ count
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = {}

    # 1. backward induction
    sp = TreeSpace(P=4, V=8, H=6)
    ref = random_policy(sp, 0)
    r = np.random.default_rng(1).standard_normal(sp.shape)
    beta = 0.5
    _ = ref.cond  # conditionals of the reference are an input, computed once for both
    so = soft_optimal(r, ref, beta)
    _, v0 = numpy_backward(r, ref, beta)
    assert np.allclose(so.values[:, 0], v0, rtol=1e-10, atol=1e-10)
    t_g = timeit(lambda: soft_optimal(r, ref, beta), args.reps)
    t_n = timeit(lambda: numpy_backward(r, ref, beta), args.reps)
    results["backward_induction"] = dict(genver_s=float(np.median(t_g)), numpy_s=float(np.median(t_n)),
                                         ratio_median=float(np.median(t_n) / np.median(t_g)),
                                         ratio_min=float(t_n.min() / t_g.max()), ratio_max=float(t_n.max() / t_g.min()))

    # 2. finite-class Bradley–Terry log-likelihood
    sp2 = TreeSpace(P=4, V=4, H=5)
    K, N = 10_000, 10_000
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((K, sp2.P * sp2.T))
    ref2 = random_policy(sp2, 3)
    data = sample_preferences(scores[0].reshape(sp2.shape), ref2, N, 4)
    c = data.counts()
    pos, neg, cnt = c.pos_flat, c.neg_flat, c.count
    zero = np.zeros(cnt.size)
    out = np.empty(K)
    _kernels.class_bt_loglik(scores, pos, neg, zero, cnt, 1.0, out)
    assert np.allclose(out, numpy_class_loglik(scores, pos, neg, cnt), rtol=1e-10)
    t_g = timeit(lambda: _kernels.class_bt_loglik(scores, pos, neg, zero, cnt, 1.0, out), args.reps)
    t_n = timeit(lambda: numpy_class_loglik(scores, pos, neg, cnt), args.reps)
    results["class_bt_loglik"] = dict(genver_s=float(np.median(t_g)), numpy_s=float(np.median(t_n)),
                                      ratio_median=float(np.median(t_n) / np.median(t_g)),
                                      ratio_min=float(t_n.min() / t_g.max()), ratio_max=float(t_n.max() / t_g.min()),
                                      unique_pairs=int(cnt.size))
    meta = dict(nproc=os.cpu_count(), cpu=platform.processor() or platform.machine(),
                date=time.strftime("%Y-%m-%d"), reps=args.reps)
    if args.json:
        print(json.dumps({"meta": meta, **results}))
        return
    print(f"machine: {meta}")
    print(f"{'benchmark':<22}{'genver (s)':>12}{'numpy (s)':>12}{'ratio median [min, max]':>28}")
    for k, v in results.items():
        print(f"{k:<22}{v['genver_s']:>12.4f}{v['numpy_s']:>12.4f}"
              f"{v['ratio_median']:>12.1f} [{v['ratio_min']:.1f}, {v['ratio_max']:.1f}]")


if __name__ == "__main__":
    main()
