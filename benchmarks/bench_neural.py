r"""Neural benchmarks: training throughput, one sweep cell on the device vs the CPU, and a
reduced ``neural_gap_horizon`` sweep on the device. Run by ``benchmarks/neural_gpu.sh`` on a
GPU machine (never in CI); ``--quick`` is a CPU-sized dry run of the same code.

Sections (each printed as a table; ``--json`` prints one JSON object at the end):

1. **Throughput.** A ~1M-parameter :class:`TinyTransformer` (``d_model`` 128, 5 layers, 4 heads)
   on ``P = 4``, ``V = 8``, ``H = 6``: policy training (offline DPO) and reward-model training
   (global RM), ``batch`` sequences per step (``batch/2`` pairs drawn from 100,000 unique
   triples), bf16 autocast on CUDA. Tokens/s = sequences × (H + 1) per step ÷ time per step,
   median of ``--reps`` timed blocks of ``--steps`` steps after a warm-up block, [min, max].
2. **Cell.** The ``neural_gap_horizon`` cell at its shipped size (``H = 6``, ``n = 4096``,
   the spec's neural estimators with their options): wall time on the device, and on the CPU
   with ``--cpu-threads`` intra-op threads (default 2, the 2-core baseline; the sweep's CPU
   cells run with one), ratio = CPU ÷ device. Peak GPU memory of the whole script.
3. **Reduced sweep.** ``neural_gap_horizon`` with ``--seeds`` seeds and sizes ``--sizes`` on the
   device; prints the tabular and the neural sample-efficiency ratios side by side.
4. **Exact-gradient RL.** :func:`train_rl_exact` (``J_β`` over every completion from one
   forward pass of all ``P·V**(H−1)`` prefixes, AdamW) on ``P = 4, V = 8, H = 6`` (131,072
   sequences per step) with the throughput model: tokens/s = sequences × H per step ÷ time per
   step, median of ``--reps`` blocks [min, max].
6. **Exact RL vs tabular RM+RL** (``gap``; CPU, one thread per cell, as the sweep runs it): the
   spec's neural RM+RL and tabular RM+RL cells of ``neural_gap_horizon`` at ``n = --gap-n`` for
   ``H`` in ``--gap-H`` over every seed of the spec, with the sweep's own instances, pair streams
   and cell seeds (:mod:`genver.experiments.cells`); per seed: both suboptimalities, the neural
   ``opt_residual``, optimiser steps (L-BFGS polish evaluations included), why it stopped, seconds;
   per ``H``: the means and their ratio (the issue-19 target: ≤ 2). ``--gap-options`` (JSON)
   overrides neural RM+RL options, e.g. ``'{"polish_steps": 0}'`` for the AdamW-only path.
5. **Beyond enumeration.** One ``neural_long`` cell at its shipped size (``V = 16, H = 8``, the
   largest ``n``, both neural estimators, Monte-Carlo evaluation with ``n_eval`` samples) on the
   device: wall time and the estimated suboptimalities with their standard errors.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genver import metrics as M  # noqa: E402
from genver.experiments.cells import make_instance  # noqa: E402
from genver.experiments.registry import ESTIMATORS  # noqa: E402
from genver.experiments.spec import load_spec  # noqa: E402
from genver.neural import (  # noqa: E402
    GlobalReward,
    NeuralPolicy,
    TinyTransformer,
    TrainConfig,
    TransformerConfig,
    resolve_device,
    train_dpo,
    train_reward,
    train_rl_exact,
)
from genver.policy import random_policy  # noqa: E402
from genver.preferences import PairCounts, sample_preferences  # noqa: E402
from genver.spaces import TreeSpace  # noqa: E402

SPEC = ROOT / "sims" / "neural_gap_horizon.toml"
LONG_SPEC = ROOT / "sims" / "neural_long.toml"


def _summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def throughput(device, *, d_model, n_layers, batch, steps, reps, quick, compile=False):
    sp = TreeSpace(4, 8, 6) if not quick else TreeSpace(2, 4, 4)
    rng = np.random.default_rng(0)
    m = 100_000 if not quick else 2_000
    x = rng.integers(0, sp.P, m)
    a, b = rng.integers(0, sp.T, m), rng.integers(0, sp.T, m)
    data = PairCounts(sp, x, a, b, np.ones(m))
    ref = random_policy(sp, 1)
    cfg_arch = TransformerConfig(sp.P, sp.V, sp.H, d_model=d_model, n_layers=n_layers, n_heads=4)
    torch.manual_seed(0)
    pol = NeuralPolicy(TinyTransformer(cfg_arch).to(device), ref)
    rm = GlobalReward(cfg_arch).to(device)
    cfg = TrainConfig(steps=steps, lr=1e-3, batch_size=batch // 2, compile=compile)
    out = {"n_params": pol.model.n_params(), "task": f"P={sp.P} V={sp.V} H={sp.H}", "batch_sequences": batch,
           "compile": compile}
    for name, fn in (("policy_dpo", lambda s: train_dpo(pol, data, 1.0, cfg, seed=s)),
                     ("reward_model", lambda s: train_reward(rm, data, cfg, seed=s))):
        fn(0)  # warm-up (allocations, autocast caches)
        rates = [fn(s + 1).tokens_per_second for s in range(reps)]
        out[name + "_tokens_per_s"] = _summary(rates)
    return out


def exact_rl_throughput(device, *, d_model, n_layers, steps, reps, quick):
    sp = TreeSpace(4, 8, 6) if not quick else TreeSpace(2, 4, 4)
    ref = random_policy(sp, 1)
    r = np.random.default_rng(2).standard_normal(sp.shape)
    torch.manual_seed(0)
    pol = NeuralPolicy(TinyTransformer(TransformerConfig(sp.P, sp.V, sp.H, d_model=d_model, n_layers=n_layers,
                                                         n_heads=4)).to(device), ref)
    cfg = TrainConfig(steps=steps, lr=1e-3)
    train_rl_exact(pol, r, 1.0, cfg)  # warm-up
    rates = [train_rl_exact(pol, r, 1.0, cfg).tokens_per_second for _ in range(reps)]
    return {"n_params": pol.model.n_params(), "task": f"P={sp.P} V={sp.V} H={sp.H}",
            "sequences_per_step": sp.P * sp.V ** (sp.H - 1), "tokens_per_s": _summary(rates)}


def long_cell(device, quick):
    from genver.experiments.cells import make_instance as make

    spec = load_spec(LONG_SPEC, smoke=quick)
    params = spec.settings()[0]
    world = make(spec.generator, params, spec.root_seed, 0)
    n = max(spec.sizes)
    data = world.preferences(n, np.random.default_rng(1)).counts()
    from genver.neural.long import fit_long

    out = {"cell": f"neural_long V={world.space.V} H={world.space.H} n={n} n_eval={world.n_eval}"}
    for e in spec.estimators:
        t0 = time.perf_counter()
        pol = fit_long(world, e["name"], data, np.random.default_rng(2), {**e["options"], "_device": str(device)})
        t_fit = time.perf_counter() - t0
        est = world.evaluate(pol, seed=3)
        out[e["label"]] = {"train_seconds": t_fit, "eval_seconds": time.perf_counter() - t0 - t_fit,
                           "suboptimality": est["suboptimality"], "kl_to_reference": est["kl_to_reference"]}
    return out


def exact_rl_gap(Hs, n, overrides, quick):
    from genver.experiments.cells import _data, seed_sequence

    spec = load_spec(SPEC, smoke=quick)
    n = min(n, max(spec.sizes))
    k_tab, k_neu = (next(k for k, e in enumerate(spec.estimators) if e["name"] == name) for name in ("rm_rl",
                                                                                                     "neural_rm_rl"))
    rows, summary = [], []
    for params in spec.settings():
        if params["H"] not in Hs:
            continue
        for seed in range(spec.seeds):
            inst = make_instance(spec.generator, params, spec.root_seed, seed)
            counts = _data(spec, inst, seed)(n)  # the sweep's nested pair stream at size n
            row = {"H": params["H"], "seed": seed}
            for key, k, extra in (("tabular", k_tab, {}), ("neural", k_neu, {"_device": "cpu", **overrides})):
                e = spec.estimators[k]
                t0 = time.perf_counter()
                res = ESTIMATORS[e["name"]][0](inst, counts, np.random.default_rng(seed_sequence(spec.root_seed,
                                                                                                 seed, 2, n, k)),
                                               {**e["options"], **extra})
                row[key + "_seconds"] = time.perf_counter() - t0
                row[key] = float(M.suboptimality(res.policy, inst.reward_true, inst.ref, inst.beta,
                                                 inst.prompt_weights))
            row.update(residual=res.extra["opt_residual"], steps=res.iterations,
                       polish_evals=res.extra.get("polish_evals", 0),
                       stopped=res.extra["stopped"])
            rows.append(row)
            print(f"  H={row['H']} seed {seed}: tabular {row['tabular']:.6f}  neural {row['neural']:.6f}  "
                  f"residual {row['residual']:.2e}  steps {row['steps']} (polish {row['polish_evals']}, "
                  f"{row['stopped']})  {row['neural_seconds']:.1f} s", flush=True)
        r = [x for x in rows if x["H"] == params["H"]]
        if r:
            t, nn = statistics.mean(x["tabular"] for x in r), statistics.mean(x["neural"] for x in r)
            summary.append({"H": params["H"], "tabular": t, "neural": nn, "ratio": nn / t,
                            "residual": statistics.mean(x["residual"] for x in r),
                            "neural_seconds": sum(x["neural_seconds"] for x in r)})
    return {"n": n, "overrides": overrides, "rows": rows, "summary": summary,
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def cell(device, cpu_threads, quick):
    spec = load_spec(SPEC, smoke=quick)
    H = max(spec.grid["H"])
    n = max(spec.sizes)
    params = next(p for p in spec.settings() if p["H"] == H)
    inst = make_instance(spec.generator, params, spec.root_seed, 0)
    data = sample_preferences(inst.reward_true, inst.sampler, n, np.random.default_rng(1)).counts()
    neural = [e for e in spec.estimators if e["name"].startswith("neural_")]

    def run_cell(dev):
        t0 = time.perf_counter()
        subopt = {}
        for e in neural:
            opts = {**e["options"], "_device": dev, "_threads": cpu_threads}
            res = ESTIMATORS[e["name"]].fit(inst, data, np.random.default_rng(2), opts)
            subopt[e["label"]] = round(M.suboptimality(res.policy, inst.reward_true, inst.ref, inst.beta), 5)
        return time.perf_counter() - t0, subopt

    t_dev, s_dev = run_cell(str(device))
    out = {"cell": f"neural_gap_horizon H={H} n={n}: " + ", ".join(e["label"] for e in neural),
           "device_seconds": t_dev, "device_suboptimality": s_dev}
    t_cpu, s_cpu = run_cell("cpu")
    out.update(cpu_seconds=t_cpu, cpu_suboptimality=s_cpu, cpu_threads=cpu_threads, ratio_cpu_over_device=t_cpu / t_dev)
    return out


def reduced_sweep(device, seeds, sizes, quick, workdir):
    from genver.experiments.report import load_results, ratios_side_by_side
    from genver.experiments.runner import run

    text = SPEC.read_text()
    text = re.sub(r"(?m)^seeds = \d+", f"seeds = {seeds}", text)
    text = re.sub(r"(?m)^sizes = \[.*\]", f"sizes = {sizes}", text)
    spec_path = pathlib.Path(workdir) / "neural_gap_horizon_reduced.toml"
    spec_path.write_text(text)
    out = pathlib.Path(workdir) / "reduced"
    t0 = time.perf_counter()
    run(spec_path, out, smoke=quick, progress=True, stream=sys.stderr, device=str(device))
    wall = time.perf_counter() - t0
    man, df, settings = load_results(out)
    rows = []
    table = ratios_side_by_side(man, df, settings)
    for _, row in (table.sort_values(["pair", "H"], kind="stable").iterrows() if table is not None else []):
        rows.append({"pair": row["pair"], "H": int(row["H"]), "ratio": float(row["ratio"]),
                     "ratio_lo": float(row["ratio_lo"]), "ratio_hi": float(row["ratio_hi"]),
                     "kind": row["ratio_kind"]})
    return {"wall_seconds": wall, "epsilon": man["expect"].get("epsilon"), "ratios": rows,
            "cells": int(df.groupby(["setting_id", "seed", "n", "estimator"]).ngroups)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="CPU-sized dry run (small model, smoke spec)")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8192, help="sequences per training step")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--sizes", default="[64, 1024, 4096]")
    ap.add_argument("--compile", action="store_true", help="also measure throughput with torch.compile")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: throughput,cell,sweep,exact,long,gap")
    ap.add_argument("--gap-H", default="[4, 6]", help="section gap: the horizons (JSON list)")
    ap.add_argument("--gap-n", type=int, default=4096, help="section gap: the number of pairs")
    ap.add_argument("--gap-options", default="{}", help="section gap: neural RM+RL option overrides (JSON)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.d_model, a.n_layers, a.batch, a.steps, a.reps = 32, 2, 256, 3, 2
    device = resolve_device(a.device)
    skip = set(filter(None, a.skip.split(",")))
    res = {"device": str(device), "torch": torch.__version__, "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(0)
        torch.cuda.reset_peak_memory_stats()
    if "throughput" not in skip:
        for comp in ((False, True) if a.compile else (False,)):
            r = throughput(device, d_model=a.d_model, n_layers=a.n_layers, batch=a.batch, steps=a.steps, reps=a.reps,
                           quick=a.quick, compile=comp)
            res["throughput_compiled" if comp else "throughput"] = r
            print(f"throughput on {device}{' (torch.compile)' if comp else ''} ({r['n_params']:,} parameters, "
                  f"{r['task']}, {r['batch_sequences']} sequences/step):")
            for k in ("policy_dpo_tokens_per_s", "reward_model_tokens_per_s"):
                s = r[k]
                print(f"  {k:<28} {s['median']:.3e} tokens/s  [{s['min']:.3e}, {s['max']:.3e}]")
    if "cell" not in skip:
        r = cell(device, a.cpu_threads, a.quick)
        res["cell"] = r
        print(f"cell {r['cell']}")
        print(f"  {device}: {r['device_seconds']:.2f} s   cpu ({a.cpu_threads} threads requested): "
              f"{r['cpu_seconds']:.2f} s   ratio cpu/{device.type} = {r['ratio_cpu_over_device']:.1f}")
        print(f"  suboptimality {device}: {r['device_suboptimality']}  cpu: {r['cpu_suboptimality']}")
    if "sweep" not in skip:
        with tempfile.TemporaryDirectory() as tmp:
            r = reduced_sweep(device, a.seeds, a.sizes, a.quick, tmp)
        res["sweep"] = r
        print(f"reduced neural_gap_horizon on {device}: {r['cells']} cells in {r['wall_seconds']:.1f} s "
              f"({r['wall_seconds'] / max(r['cells'], 1):.2f} s/cell), ε = {r['epsilon']}")
        for row in r["ratios"]:
            print(f"  {row['pair']:<34} H={row['H']}  ratio {row['ratio']:.3g} [{row['ratio_lo']:.3g}, "
                  f"{row['ratio_hi']:.3g}] ({row['kind']})")
    if "exact" not in skip:
        r = exact_rl_throughput(device, d_model=a.d_model, n_layers=a.n_layers, steps=a.steps, reps=a.reps,
                                quick=a.quick)
        res["exact_rl"] = r
        s = r["tokens_per_s"]
        print(f"exact-gradient RL on {device} ({r['n_params']:,} parameters, {r['task']}, "
              f"{r['sequences_per_step']} sequences/step): {s['median']:.3e} tokens/s [{s['min']:.3e}, {s['max']:.3e}]")
    if "long" not in skip:
        r = long_cell(device, a.quick)
        res["long"] = r
        print(f"cell {r['cell']} on {device} (Monte-Carlo estimates ± standard error):")
        for k, v in r.items():
            if isinstance(v, dict):
                (m, se), (kl, kse) = v["suboptimality"], v["kl_to_reference"]
                print(f"  {k:<20} train {v['train_seconds']:.1f} s, evaluate {v['eval_seconds']:.1f} s: "
                      f"suboptimality {m:.4f} ± {se:.4f}, KL to π_ref {kl:.3f} ± {kse:.3f}")
    if "gap" not in skip:
        print(f"neural vs tabular RM+RL on neural_gap_horizon (CPU, load {open('/proc/loadavg').read().split()[0]}), "
              f"options {a.gap_options}:", flush=True)
        r = exact_rl_gap(json.loads(a.gap_H), a.gap_n, json.loads(a.gap_options), a.quick)
        res["gap"] = r
        for s in r["summary"]:
            print(f"  H={s['H']} n={r['n']}: mean suboptimality tabular {s['tabular']:.6f}  neural {s['neural']:.6f}  "
                  f"ratio {s['ratio']:.2f}  mean residual {s['residual']:.2e}  neural {s['neural_seconds']:.0f} s")
    if device.type == "cuda":
        res["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated()
        print(f"peak GPU memory: {res['peak_gpu_memory_bytes'] / 2**20:.1f} MiB")
    if a.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
