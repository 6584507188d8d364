"""Tabular fits at scale: the sparse Laplacian-plus-ridge Newton solver (``genver/_laplacian.py``, ``_solve.py``).

Run by hand (never in CI):  python benchmarks/bench_fit_scale.py [--reps 3] [--json] [--only KEY ...]

Keys:

* ``tabular_fit_slope_T`` — log-log slope of the tabular DPO and reward-MLE fit time against
  ``T = 2^H`` (``P = 1, V = 2``, ``H`` = 10, 12, …, 20) with every completion touched: ``n = 8T``
  pairs, completion ``i`` in the ``i``-th pair and the rest uniform, labelled by Bradley–Terry on a
  standard-normal reward; ``λ = 0.01``, ``β = 1``, uniform ``π_ref``. Least-squares slope of the
  median times; [min, max] over the slopes of each repetition's times. Target ≤ 1.2.
* ``tabular_fit_vs_dense`` — at ``T = 4,096`` (``n = 8T``, as above): the dense path (every
  prompt one dense block, genver's solver before the sparse path: ``laplacian_dense_max(inf)``;
  ``--dense-reps`` fits, default 1, no warm-up needed) ÷ the automatic path; the two optima's
  max difference and gradients are printed. Target ≥ 10.
* ``scale_2e20`` — one fit each of DPO and the reward MLE at ``T = 2^20`` with ``n = 10^6``
  and ``10^7`` uniform pairs (almost all distinct), each in a fresh process: wall time, Newton
  steps, final max-abs gradient and status, peak resident memory (``VmHWM``) of the process
  and before the fit (the pairs alone). Tabular SFT and MaxEnt-IRL with as many
  demonstrations, for their memory. Target ≤ 2 GiB.
* ``forcing`` — the inexact-Newton forcing term (``genver._solve.newton(..., inexact=True)``,
  what the tabular DPO and reward-MLE fits use) against exact Newton with every conjugate-
  gradient solve to ``CG_RTOL`` (the fits before it; here by dropping ``inexact`` in the fits'
  call of :func:`genver._solve.newton`), at ``T = 2^16`` and ``2^18`` with ``n = T`` and ``8T``
  uniform pairs (``n ≈ T``: the sparse random pair graph of ~105 CG iterations per exact
  Newton step), timed in turns: ratio exact ÷ inexact, CG iterations and Newton steps of
  each, max difference of the optima (``log π`` / ``r``).
* ``dense_threshold`` — one Newton-system solve (``LaplacianRidge.solve``) of one component of
  ``m`` coordinates with ``8m`` and ``2m`` random pairs, dense vs conjugate gradients; the
  crossover sets ``genver._solve.DENSE_MAX``.

Pairs are built directly as :class:`~genver.preferences.PairCounts` (sort + count), not
through the sampler. Each timing is the median of ``--reps`` repetitions after a warm-up
(the 2^20 fits: one run each); the load average is printed before and after. ``--clock cpu``
times by the process's CPU time instead of the wall clock (every kernel on these paths is
serial and BLAS is limited to one thread, so it is the fit's own work; a busy machine inflates
it far less than the wall time).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

from genver._solve import LaplacianRidge, blas_one_thread, laplacian_dense_max
from genver.classes import TabularPolicyClass, TabularRewardClass
from genver.estimators import dpo, mle, reward_mle
from genver.policy import Policy
from genver.preferences import PairCounts
from genver.spaces import TreeSpace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_perf import ratio  # noqa: E402

L2 = 1e-2
_clock = time.perf_counter  # --clock cpu: time.process_time (serial kernels, BLAS on one thread)


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def pairs(H: int, n: int, seed: int = 0, cover: bool = True) -> PairCounts:
    """``n`` Bradley–Terry pairs on one prompt of ``T = 2^H`` completions (see the docstring)."""
    sp = TreeSpace(P=1, V=2, H=H)
    T = sp.T
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(T)
    a = rng.integers(0, T, n)
    b = rng.integers(0, T, n)
    if cover:
        a[: min(n, T)] = np.arange(min(n, T))
    win = rng.random(n) < 1.0 / (1.0 + np.exp(-(r[a] - r[b])))
    key = np.where(win, a * T + b, b * T + a)
    del a, b, win, r
    key.sort()
    first = np.concatenate([[True], key[1:] != key[:-1]])
    starts = np.flatnonzero(first)
    count = np.diff(np.append(starts, key.size)).astype(np.float64)
    key = key[starts]
    return PairCounts(sp, np.zeros(key.size, dtype=np.int64), key // T, key % T, count)


def fit(which: str, c: PairCounts):
    sp = c.space
    if which == "dpo":
        ref = Policy.from_probs(sp, np.full(sp.shape, 1.0 / sp.T))
        return dpo(c, TabularPolicyClass(sp), ref, 1.0, l2=L2)
    return reward_mle(c, TabularRewardClass(sp), l2=L2)


def timed(fn, reps):
    fn()  # warm-up (compiles)
    ts = []
    for _ in range(reps):
        t0 = _clock()
        fn()
        ts.append(_clock() - t0)
    return np.array(ts)


def bench_slope(reps, Hs=(10, 12, 14, 16, 18, 20)):
    out = {"load_before": load(), "H": list(Hs)}
    for which in ("dpo", "reward_mle"):
        rows = []
        for H in Hs:
            c = pairs(H, 8 * 2**H)
            r = max(1, reps if H <= 16 else 1)
            ts = timed(lambda: fit(which, c), r) if H <= 18 else np.array([_once_call(lambda: fit(which, c))])
            rows.append(ts)
            print(f"  {which:10s} T = 2^{H}: {np.median(ts):8.3f} s [{ts.min():.3f}, {ts.max():.3f}] "
                  f"(load {load()})", flush=True)
        logT = np.log(2.0 ** np.array(Hs))
        med = np.log([np.median(t) for t in rows])
        k = min(t.size for t in rows)
        per_rep = [np.polyfit(logT, np.log([np.sort(t)[j] for t in rows]), 1)[0] for j in range(k)]
        per_rep += [np.polyfit(logT, np.log([t.min() for t in rows]), 1)[0],
                    np.polyfit(logT, np.log([t.max() for t in rows]), 1)[0]]
        out[which] = {"slope": float(np.polyfit(logT, med, 1)[0]), "min": float(min(per_rep)),
                      "max": float(max(per_rep)), "median_s": [float(np.median(t)) for t in rows],
                      "min_s": [float(t.min()) for t in rows], "max_s": [float(t.max()) for t in rows]}
    out["load_after"] = load()
    return out


def bench_vs_dense(reps, dense_reps, H=12):
    """New path: warm-up + ``reps`` timed fits; dense path: ``dense_reps`` timed fits (each
    ~10 dense Cholesky factorisations of 4,096 × 4,096; compiled already by the warm-up)."""
    c = pairs(H, 8 * 2**H)
    out = {"load_before": load()}
    for which in ("dpo", "reward_mle"):
        got = {}

        def run(path):
            got[path] = fit(which, c)
        new = timed(lambda: run("new"), reps)
        with laplacian_dense_max(math.inf):
            old = np.array([_once_call(lambda: run("dense")) for _ in range(dense_reps)])
        a, b = got["dense"], got["new"]
        va = a.policy.logp if which == "dpo" else a.reward
        vb = b.policy.logp if which == "dpo" else b.reward
        out[which] = {**ratio(old, new), "max_abs_diff": float(np.abs(va - vb).max()),
                      "grad_norm": [a.grad_norm, b.grad_norm], "status": [a.extra["solver_status"],
                                                                          b.extra["solver_status"]],
                      "newton_steps": [a.iterations, b.iterations]}
        print(f"  {which:10s} dense {np.median(old):.3f} s, new {np.median(new):.4f} s: "
              f"{out[which]['median']:.1f} [{out[which]['min']:.1f}, {out[which]['max']:.1f}], "
              f"max|diff| {out[which]['max_abs_diff']:.1e}, max|g| {a.grad_norm:.1e} / {b.grad_norm:.1e} "
              f"(load {load()})", flush=True)
    out["load_after"] = load()
    return out


def _once_call(fn):
    t0 = _clock()
    fn()
    return _clock() - t0


def _vmhwm_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def child(which: str, H: int, n: int):
    """One fit in this (fresh) process; prints one JSON line."""
    if which in ("sft", "maxent_irl"):
        from genver.estimators.imitation import Demonstrations, maxent_irl, sft
        sp = TreeSpace(P=1, V=2, H=H)
        rng = np.random.default_rng(0)
        d = Demonstrations(sp, np.zeros(n, dtype=np.int64), rng.integers(0, sp.T, n))
        ref = Policy.from_probs(sp, np.full(sp.shape, 1.0 / sp.T))
        before = _vmhwm_gib()
        t0 = time.perf_counter()
        res = (sft(d, TabularPolicyClass(sp), ref, 1.0, l2=L2) if which == "sft"
               else maxent_irl(d, TabularRewardClass(sp), ref, 1.0, l2=L2))
    else:
        c = pairs(H, n, cover=False)
        before = _vmhwm_gib()
        t0 = time.perf_counter()
        res = fit(which, c)
    t = time.perf_counter() - t0
    print(json.dumps({"which": which, "H": H, "n": n, "time_s": t, "peak_gib": _vmhwm_gib(), "before_gib": before,
                      "nit": res.iterations, "grad_norm": res.grad_norm, "status": res.extra["solver_status"],
                      "distinct_pairs": None if which in ("sft", "maxent_irl") else int(c.count.size)}))


def bench_2e20(ns=(10**6, 10**7), whiches=("dpo", "reward_mle", "sft", "maxent_irl")):
    out = {"load_before": load(), "runs": []}
    for n in ns:
        for which in whiches:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", which, "20", str(n)],
                               capture_output=True, text=True, timeout=3000)
            if p.returncode != 0:
                raise RuntimeError(p.stderr)
            row = json.loads(p.stdout.strip().splitlines()[-1])
            out["runs"].append(row)
            print(f"  {which:10s} n = {n:.0e}: {row['time_s']:7.1f} s, {row['nit']} Newton steps, "
                  f"max|g| {row['grad_norm']:.1e} ({row['status']}), peak {row['peak_gib']:.2f} GiB "
                  f"(pairs alone {row['before_gib']:.2f}), load {load()}", flush=True)
    out["load_after"] = load()
    return out


def _fit_counting(which, c, exact: bool):
    """``(fit, CG iterations)``; ``exact``: every Newton system to ``CG_RTOL`` (the fits before
    the forcing term)."""
    newton, init, its = mle.newton, LaplacianRidge.__init__, []

    def init_counting(self, *a, **k):
        init(self, *a, **k)
        its.append(self)
    LaplacianRidge.__init__ = init_counting
    if exact:
        mle.newton = lambda *a, inexact=False, hess_min=0.0, **k: newton(*a, **k)
    try:
        res = fit(which, c)
    finally:
        mle.newton, LaplacianRidge.__init__ = newton, init
    return res, sum(lap.cg_iterations for lap in its)


def bench_forcing(reps, Hs=(16, 18), mults=(1, 8)):
    out = {"load_before": load(), "rows": []}
    fit("dpo", pairs(10, 2**10))  # compile
    for H in Hs:
        for mult in mults:
            c = pairs(H, mult * 2**H, cover=False)
            for which in ("dpo", "reward_mle"):
                t = {True: [], False: []}
                got = {}
                for _ in range(max(1, reps if H <= 16 else 1)):
                    for exact in (True, False):
                        t0 = _clock()
                        got[exact] = _fit_counting(which, c, exact)
                        t[exact].append(_clock() - t0)
                (a, ia), (b, ib) = got[True], got[False]
                va = a.policy.logp if which == "dpo" else a.reward
                vb = b.policy.logp if which == "dpo" else b.reward
                row = {"which": which, "H": H, "n": mult * 2**H, **ratio(np.array(t[True]), np.array(t[False])),
                       "exact_s": float(np.median(t[True])), "inexact_s": float(np.median(t[False])),
                       "cg_iterations": [ia, ib], "newton_steps": [a.iterations, b.iterations],
                       "grad_norm": [a.grad_norm, b.grad_norm], "max_abs_diff": float(np.abs(va - vb).max())}
                out["rows"].append(row)
                print(f"  {which:10s} T = 2^{H}, n = {mult}T: exact {row['exact_s']:.2f} s / inexact "
                      f"{row['inexact_s']:.2f} s = {row['median']:.2f} [{row['min']:.2f}, {row['max']:.2f}]; "
                      f"CG {ia} / {ib}, Newton {a.iterations} / {b.iterations}, max|g| {a.grad_norm:.1e} / "
                      f"{b.grad_norm:.1e}, max|diff| {row['max_abs_diff']:.1e} (load {load()})", flush=True)
    out["load_after"] = load()
    return out


def bench_threshold(reps, ms=(64, 128, 192, 256, 320, 384, 512, 768)):
    rng = np.random.default_rng(0)
    out = {"load_before": load(), "m": list(ms)}
    with blas_one_thread():
        for dens in (8, 2):
            rows = []
            for m in ms:
                a, b = rng.integers(0, m, dens * m), rng.integers(0, m, dens * m)
                block = np.zeros(m, dtype=np.int64)
                w = rng.uniform(0.0, 0.25, a.size)
                rhs = rng.standard_normal(m)
                t = {}
                for name, dm in (("dense", math.inf), ("cg", 0)):
                    lap = LaplacianRidge(block, a, b, dense_max=dm)
                    t[name] = float(np.median(timed(lambda: lap.solve(w, L2, rhs), reps)))
                    if name == "cg":
                        t["cg_iterations"] = lap.last_cg[0]
                rows.append(t)
                print(f"  {dens}m pairs, m = {m:4d}: dense {t['dense'] * 1e3:7.3f} ms, "
                      f"CG {t['cg'] * 1e3:7.3f} ms ({t['cg_iterations']} iterations)", flush=True)
            out[f"{dens}m"] = rows
    out["load_after"] = load()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dense-reps", type=int, default=1, help="timed fits of the dense path (vs_dense)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time fits by wall clock or by this process's CPU time (cpu: less inflated on a "
                         "busy machine; the fits are single-threaded)")
    ap.add_argument("--only", nargs="*", default=None,
                    help="any of: threshold vs_dense slope 2e20 forcing")
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global _clock
    _clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    keys = args.only or ["threshold", "vs_dense", "forcing", "slope", "2e20"]
    res = {}
    for key, fn in (("threshold", lambda: bench_threshold(max(args.reps, 5))),
                    ("vs_dense", lambda: bench_vs_dense(args.reps, args.dense_reps)),
                    ("forcing", lambda: bench_forcing(args.reps)),
                    ("slope", lambda: bench_slope(args.reps)),
                    ("2e20", bench_2e20)):
        if key in keys:
            print(f"{key} (load {load()})", flush=True)
            res[key] = fn()
    if "slope" in res:
        for which in ("dpo", "reward_mle"):
            s = res["slope"][which]
            print(f"tabular_fit_slope_T {which}: {s['slope']:.3f} [{s['min']:.3f}, {s['max']:.3f}]")
    if "vs_dense" in res:
        for which in ("dpo", "reward_mle"):
            s = res["vs_dense"][which]
            print(f"tabular_fit_vs_dense {which}: {s['median']:.1f} [{s['min']:.1f}, {s['max']:.1f}]")
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
