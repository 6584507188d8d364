"""The `gap_finite` cells computed the obvious way in numpy: every (seed, n) from scratch.

This is the baseline of ``sweep_vs_numpy`` (``bench_sweep.py``): what a researcher would write
without genver's kernels and reuse. It draws the *same* instances and pair streams as genver
(through ``genver.experiments.cells.make_instance`` and ``sample_preferences``, so the numbers
can be compared to 1e-9), and then, for every sample size ``n`` separately:

* pair counts of the first ``n`` pairs with ``np.unique``;
* offline DPO: the Bradley–Terry log-likelihood of every member of ``Π`` by gather +
  ``logaddexp`` (chunked over members), lowest-index argmax within a relative 1e-12;
* online: the same over ``R``, then ``J_β`` of every member of ``Π`` against ``r̂`` and its argmax;
* metrics: suboptimality ``β E_x KL(π̂‖π*)`` with ``π*`` in closed form, ``KL(π̂‖π_ref)``,
  ``E r*`` and the win rate against ``π_ref`` by the full ``T × T`` double sum.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from genver.experiments.cells import make_instance, seed_sequence
from genver.experiments.spec import setting_id
from genver.preferences import sample_preferences


def _lse(a, axis=-1):
    m = a.max(axis=axis, keepdims=True)
    return (np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m).squeeze(axis)


def _loglik(scores, pos, neg, offset, count, scale, chunk=2000):
    out = np.empty(scores.shape[0])
    for a in range(0, scores.shape[0], chunk):
        z = scale * (scores[a : a + chunk, pos] - scores[a : a + chunk, neg]) + offset
        out[a : a + chunk] = -np.logaddexp(0.0, -z) @ count
    return out


def _pick(values):
    best = values.max()
    return int(np.flatnonzero(values >= best - 1e-12 * max(1.0, abs(best)))[0])


def _kl(lp, lq):
    p = np.exp(lp)
    return (p * (lp - lq)).sum(axis=-1)


def _metrics(lp, inst, opt_lp):
    ref, r, beta = inst.ref.logp, inst.reward_true, inst.beta
    p, q = np.exp(lp), np.exp(ref)
    sig = 1.0 / (1.0 + np.exp(-(r[:, :, None] - r[:, None, :])))  # (P, T, T)
    kl_opt = _kl(lp, opt_lp).mean()
    kl_opt = 0.0 if abs(kl_opt) < 1e-13 else kl_opt
    return {"suboptimality": beta * kl_opt, "kl_to_reference": _kl(lp, ref).mean(),
            "expected_reward": (p * r).sum(axis=1).mean(),
            "win_rate": np.einsum("pt,pts,ps->p", p, sig, q).mean()}


def run(spec) -> pd.DataFrame:
    rows = []
    for params in spec.settings():
        sid = setting_id(params)
        for seed in range(spec.seeds):
            inst = make_instance(spec.generator, params, spec.root_seed, seed)
            data = sample_preferences(inst.reward_true, inst.sampler, max(spec.sizes),
                                      np.random.default_rng(seed_sequence(spec.root_seed, seed, 1)))
            T, beta = inst.space.T, inst.beta
            ref = inst.ref.logp.ravel()
            s = inst.ref.logp + inst.reward_true / beta
            opt = s - _lse(s)[:, None]
            Pi = inst.policy_class.logp
            R = inst.reward_class.tables
            for n in spec.sizes:
                trip, cnt = np.unique(data.as_array()[:n], axis=0, return_counts=True)
                pos, neg, cnt = trip[:, 0] * T + trip[:, 1], trip[:, 0] * T + trip[:, 2], cnt.astype(float)
                k_off = _pick(_loglik(Pi.reshape(len(Pi), -1), pos, neg, -beta * (ref[pos] - ref[neg]), cnt, beta))
                k_r = _pick(_loglik(R.reshape(len(R), -1), pos, neg, 0.0, cnt, 1.0))
                r_hat = R[k_r]
                J = (np.exp(Pi) * (r_hat - beta * (Pi - inst.ref.logp))).sum(axis=2).mean(axis=1)
                k_on = _pick(J)
                for label, k in (("offline", k_off), ("online", k_on)):
                    for m, v in _metrics(Pi[k], inst, opt).items():
                        rows.append({"setting_id": sid, "seed": seed, "n": n, "estimator": label, "metric": m,
                                     "value": float(v)})
    return pd.DataFrame(rows)
