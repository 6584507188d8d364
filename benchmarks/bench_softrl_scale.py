"""Soft RL and the exact metrics at scale: ``softrl_fraction_of_bandwidth``, ``softrl_vs_numpy``,
``softrl_vs_jax``, and every policy metric at T = 2**20 and 2**24 completions per prompt.

Run by hand (never in CI):  python benchmarks/bench_softrl_scale.py [--reps 7] [--json]
                                [--only bi metrics] [--max-log2T 24] [--clock wall|cpu]

* Backward induction (``genver._kernels.backward_induction``: values, token log-probs of π*,
  sequence log-probs) at (P, V, H) = (1, 2, 20), (1, 16, 5), (1, 2, 18), (4, 8, 6).
  "The bytes" are those of ``bench_perf.py``: 8 × (reward + log π_ref conditionals + values +
  log π* conditionals + log π*(y) + one T-sized buffer), the least a sweep must read and write.
  ``softrl_fraction_of_bandwidth`` = (bytes / kernel time) ÷ (bytes / time of ``np.copyto`` of
  an array of bytes/2 into another: it reads and writes the same number of bytes). Target ≥ 0.5
  at V=2, H=20 and V=16, H=5.
* ``softrl_vs_numpy``: numpy's per-depth reshape + log-sum-exp (``bench_core.numpy_backward``)
  ÷ the kernel. Target ≥ 3.
* ``softrl_vs_jax``: the same per-depth reshape + ``jax.nn.logsumexp`` under ``jax.jit``
  (float64, CPU) ÷ the kernel, at every size above. Target ≥ 1.5. Reported as missing (not a
  crash) when jax is not installed (``pip install 'genver[bench]'``). That contender returns
  only the conditionals and ``V_0``; ``softrl_vs_jax_same_outputs`` (no target, for reading the
  first) times the jitted function that also returns what the kernel writes: ``V_h`` at every
  node and ``log π*(y)``, summed top-down in path order (checked against the kernel's to 1e-10).
* Metrics (P = 1, V = 2, H = 20 and 24): J_β, KL(π̂‖π_ref), suboptimality (π* given), win rate
  (reward levels given), building the reward levels, expected reward, the expected
  Bradley–Terry log-likelihood (``r = r*``: as many joint values as reward levels, ~1,000),
  ``Policy.cond`` from the sequence log-probabilities (and ``policy_cond_numpy``, the per-depth
  numpy version it replaced), each against a copy of the policy's log-probabilities (T
  doubles), with the peak memory each adds (VmHWM, reset through /proc/self/clear_refs).

Each timing: median [min, max] of ``--reps`` runs after a warm-up, contenders timed in turns
(``bench_perf.interleaved``); ratios' min/max are (min baseline ÷ max genver, max ÷ min). The
1-minute load average is printed at the start and the end.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from genver import _kernels
from genver import metrics as M
from genver.policy import Policy, logsumexp_rows, random_policy
from genver.softrl import J_beta, expected_reward, kl, soft_optimal
from genver.spaces import TreeSpace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_core import numpy_backward  # noqa: E402
from bench_perf import ratio  # noqa: E402

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = [time.perf_counter]  # set by --clock


def interleaved(fns: dict, reps: int) -> dict:
    """``bench_perf.interleaved`` on the clock chosen with ``--clock``: ``cpu`` (process CPU time,
    all threads) is robust to a busy machine, which inflates every wall time by the number of
    runnable processes per core. genver's backward induction takes its parallel driver at every
    size here (two threads on 2 cores: its wall time gains from the second core, its CPU time
    does not), jax runs XLA's threads, numpy and the copy one thread."""
    for fn in fns.values():
        fn()
    ts = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = CLOCK[0]()
            fn()
            ts[k].append(CLOCK[0]() - t0)
    return {k: np.array(v) for k, v in ts.items()}

SIZES = ((1, 2, 20), (1, 16, 5), (1, 2, 18), (4, 8, 6))
BANDWIDTH_SIZES = ((1, 2, 20), (1, 16, 5))


def load() -> float:
    return float(open("/proc/loadavg").read().split()[0])


def stats(ts) -> dict:
    return {"median_s": float(np.median(ts)), "min_s": float(np.min(ts)), "max_s": float(np.max(ts))}


def jax_backward():
    """The per-depth reshape + logsumexp in JAX (float64, CPU), jitted per shape; None if jax
    is not installed."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp

    def make(P, V, H, beta, same_outputs=False):
        def f(reward, conds):  # conds[h]: (P, V**h, V) log π_ref(a|s)
            v = reward / beta
            out = []
            values = []
            for h in range(H - 1, -1, -1):
                q = conds[h] + v.reshape(P, V**h, V)
                v = jax.nn.logsumexp(q, axis=-1)
                out.append(q - v[..., None])
                values.append(beta * v)
            if not same_outputs:
                return out, beta * v[:, 0]
            # genver's outputs too: V_h at every node and log π*(y), summed top-down in path order
            lp = out[-1].reshape(P, V)
            for c in out[-2::-1]:
                lp = (lp[..., None] + c).reshape(P, -1)
            return out, values, lp
        return jax.jit(f), jnp
    return make


def bench_bi(reps):
    out = {k: {} for k in ("softrl_fraction_of_bandwidth", "softrl_vs_numpy", "softrl_vs_jax",
                           "softrl_vs_jax_same_outputs")}
    make_jax = jax_backward()
    if make_jax is None:
        out["softrl_vs_jax"] = {"missing": "jax is not installed: pip install 'genver[bench]'"}
        out["softrl_vs_jax_same_outputs"] = dict(out["softrl_vs_jax"])
    beta = 0.5
    for P, V, H in SIZES:
        key = f"V{V}_H{H}_P{P}"
        sp = TreeSpace(P=P, V=V, H=H)
        ref = random_policy(sp, 0)
        r = np.random.default_rng(1).standard_normal(sp.shape)
        rc = ref.cond
        vals = np.empty((P, sp.n_internal))
        lpi = np.empty((P, sp.n_internal, V))
        lp = np.empty(sp.shape)
        nbytes = 8 * (r.size + rc.size + vals.size + lpi.size + lp.size + sp.T)
        src = np.random.default_rng(2).standard_normal(nbytes // 16)
        dst = np.empty_like(src)
        fns = {"genver": lambda: _kernels.backward_induction(r, rc, beta, V, H, vals, lpi, lp),
               "copy": lambda: np.copyto(dst, src),
               "numpy": lambda: numpy_backward(r, ref, beta)}
        conds_np, v0 = numpy_backward(r, ref, beta)
        _kernels.backward_induction(r, rc, beta, V, H, vals, lpi, lp)
        assert np.allclose(vals[:, 0], v0, rtol=1e-12, atol=1e-12)
        if make_jax is not None:
            jf, jnp = make_jax(P, V, H, beta)
            jr = jnp.asarray(r)
            jc = [jnp.asarray(ref.token_logp(h)) for h in range(H)]

            def run_jax():
                o = jf(jr, jc)
                o[1].block_until_ready()
                for c in o[0]:
                    c.block_until_ready()
            fns["jax"] = run_jax
            assert np.allclose(np.asarray(jf(jr, jc)[1]), v0, rtol=1e-12, atol=1e-12)
            jf_all, _ = make_jax(P, V, H, beta, same_outputs=True)

            def run_jax_all():
                conds, values, lp_j = jf_all(jr, jc)
                for a in (*conds, *values, lp_j):
                    a.block_until_ready()
            fns["jax_same_outputs"] = run_jax_all
            assert np.allclose(np.asarray(jf_all(jr, jc)[2]), lp, rtol=1e-10, atol=1e-10)
        ts = interleaved(fns, reps)
        t_g, t_c = ts["genver"], ts["copy"]
        frac = {"median": float(np.median(t_c) / np.median(t_g)), "min": float(t_c.min() / t_g.max()),
                "max": float(t_c.max() / t_g.min()), "bytes": int(nbytes), "genver_s": float(np.median(t_g)),
                "copy_s": float(np.median(t_c)), "genver_GBps": nbytes / float(np.median(t_g)) / 1e9,
                "copy_GBps": nbytes / float(np.median(t_c)) / 1e9}
        if (P, V, H) in BANDWIDTH_SIZES:
            out["softrl_fraction_of_bandwidth"][key] = frac
        else:
            out["softrl_fraction_of_bandwidth"].setdefault("other_sizes", {})[key] = frac
        out["softrl_vs_numpy"][key] = ratio(ts["numpy"], t_g)
        if "jax" in ts:
            out["softrl_vs_jax"][key] = {**ratio(ts["jax"], t_g), "jax_fraction_of_bandwidth":
                                         float(np.median(t_c) / np.median(ts["jax"]))}
            out["softrl_vs_jax_same_outputs"][key] = ratio(ts["jax_same_outputs"], t_g)
    return out


def _rss_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def peak_added_mib(fn) -> float:
    """Peak resident memory ``fn`` adds above the current RSS (VmHWM reset first), MiB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    before = _rss_kib("VmRSS")
    fn()
    return (_rss_kib("VmHWM") - before) / 1024


def numpy_cond(pol):
    """``Policy.cond`` before the kernel: per depth, a reshape + ``logsumexp_rows`` of the whole
    (P, ·) level (``O(P·T)`` temporaries); the baseline of ``policy_cond``."""
    sp = pol.space
    P, V, H = sp.P, sp.V, sp.H
    cond = np.empty((P, sp.n_internal, V))
    child = pol.logp
    for h in range(H - 1, -1, -1):
        c = child.reshape(P, V**h, V)
        parent = logsumexp_rows(c)
        with np.errstate(invalid="ignore"):
            ch = c - parent[..., None]
        ch[~np.isfinite(parent)] = -np.log(V)
        off = sp.offset(h)
        cond[:, off : off + V**h, :] = ch
        child = parent
    return cond


def bench_metrics(reps, max_log2T):
    out = {}
    beta = 0.5
    for H in (20, 24):
        if H > max_log2T:
            continue
        sp = TreeSpace(P=1, V=2, H=H)
        ref = random_policy(sp, 0)
        r = np.round(np.random.default_rng(1).standard_normal(sp.shape), 2)  # ~800 reward levels
        so = soft_optimal(r, ref, beta)
        opt = so.policy
        pol = random_policy(sp, 5)  # the policy evaluated (π̂)
        levels = M.reward_levels(r, ref)
        dst = np.empty_like(pol.logp)
        bare = lambda: Policy.from_normalised(sp, pol.logp)  # noqa: E731  (no cached conditionals)
        fns = {
            "copy_logp": lambda: np.copyto(dst, pol.logp),
            "soft_optimal": lambda: soft_optimal(r, ref, beta),
            "J_beta": lambda: J_beta(pol, r, ref, beta),
            "kl_to_reference": lambda: kl(pol, ref),
            "suboptimality": lambda: M.suboptimality(pol, r, ref, beta, optimal=opt),
            "expected_reward": lambda: expected_reward(pol, r),
            "win_rate": lambda: M.win_rate(pol, r, ref, levels=levels),
            "reward_levels": lambda: M.reward_levels(r, ref),
            "expected_bt_loglik": lambda: M.expected_bt_loglik(r, r, ref),
            "policy_cond": lambda: bare().cond,
            "policy_cond_numpy": lambda: numpy_cond(pol),
        }
        ts = interleaved(fns, reps)
        res = {k: {**stats(v), "vs_copy": float(np.median(v) / np.median(ts["copy_logp"]))} for k, v in ts.items()}
        for k, fn in fns.items():
            res[k]["peak_added_MiB"] = peak_added_mib(fn)
        res["reward_levels"]["levels"] = int(levels.values.size)
        out[f"T2^{H}"] = res
    return {"softrl_metrics": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, choices=["bi", "metrics"])
    ap.add_argument("--max-log2T", type=int, default=24)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = ap.parse_args()
    CLOCK[0] = CLOCKS[args.clock]
    todo = args.only or ["bi", "metrics"]
    meta = {"nproc": os.cpu_count(), "reps": args.reps, "clock": args.clock,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_start": load(), "numpy": np.__version__}
    res = {}
    if "bi" in todo:
        res.update(bench_bi(args.reps))
    if "metrics" in todo:
        res.update(bench_metrics(args.reps, args.max_log2T))
    meta["load_end"] = load()
    if args.json:
        print(json.dumps({"meta": meta, **res}))
        return
    print(f"machine: {meta}")
    for key in ("softrl_fraction_of_bandwidth", "softrl_vs_numpy", "softrl_vs_jax", "softrl_vs_jax_same_outputs"):
        for size, v in res.get(key, {}).items():
            if size == "other_sizes":
                for s2, v2 in v.items():
                    spread = f"[{v2['min']:.2f}, {v2['max']:.2f}]"
                    print(f"{key:<30} {s2:<12} {v2['median']:6.2f} {spread}  (not a target size)")
            elif isinstance(v, dict):
                extra = f"  genver {v['genver_s'] * 1e3:.2f} ms" + (
                    f", copy {v['copy_s'] * 1e3:.2f} ms ({v['bytes'] / 2**20:.0f} MiB)" if "copy_s" in v else
                    f", baseline {v['baseline_s'] * 1e3:.2f} ms")
                print(f"{key:<30} {size:<12} {v['median']:6.2f} [{v['min']:.2f}, {v['max']:.2f}]{extra}")
            else:
                print(f"{key:<30} {v}")
    for T, m in res.get("softrl_metrics", {}).items():
        for k, v in m.items():
            if isinstance(v, dict) and "min_s" in v:
                print(f"metrics {T:<6} {k:<16} {v['median_s'] * 1e3:9.2f} ms [{v['min_s'] * 1e3:.2f}, "
                      f"{v['max_s'] * 1e3:.2f}]  {v['vs_copy']:6.1f}x copy  peak +{v['peak_added_MiB']:.0f} MiB")
            else:
                print(f"metrics {T:<6} {k:<16} {v}")


if __name__ == "__main__":
    main()
