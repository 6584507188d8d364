r"""One *unit* of a sweep: a (setting, seed) pair, computing all its (n, estimator) cells.

A unit draws its instance and one stream of ``max(sizes)`` Bradley–Terry pairs, then for every
sample size ``n`` (the first ``n`` pairs: nested data sets) fits every estimator and evaluates
every metric exactly. Random numbers come from one root ``SeedSequence(root_seed)``:

* instance: ``spawn_key = (seed, 0)``; data: ``(seed, 1)``; the estimator ``k`` at size ``n``
  (online DPO, policy gradient): ``(seed, 2, n, k)``.

They depend only on the replicate seed and the cell — never on the setting, the worker, or
the order of execution — so settings of one sweep share their random draws (common random
numbers) and a cell's numbers are the same however the sweep is scheduled.

Estimators (``name``: what runs, with the instance's classes ``R``, ``Π``, ``Π(R)``):

==================  ============================================================================
``dpo``             offline MLE over ``Π``
``dpo_restricted``  offline MLE over ``Π(R)`` (proper learning; equals ``rm_rl`` by Theorem 3.1)
``dpo_2x``          DPO on doubled counts (the "two epochs" control)
``ipo``             IPO over ``Π`` (options ``tau``, ``average``)
``rm_rl``           reward MLE over ``R``, then exact RL over ``Π`` (the online route)
``online_dpo``      reward MLE over ``R``, then online DPO over ``Π`` labelled by ``r̂`` (options
                    ``K``, ``rounds``, ``pairs_per_round``, ``labels``, ``start`` = ref | dpo)
``policy_gradient`` reward MLE over ``R``, then KL-regularised policy gradient (options ``steps``,
                    ``lr``, ``K``, ``exact``)
==================  ============================================================================
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .. import metrics as M
from ..estimators import dpo, ipo, reward_mle, rm_rl
from ..estimators.online import dpo_2x, online_dpo, policy_gradient
from ..preferences import sample_preferences
from .generators import GENERATORS, Instance

__all__ = ["ESTIMATORS", "default_route", "make_instance", "run_unit", "seed_sequence"]


def _dpo(inst, data, rng, o):
    return dpo(data, inst.policy_class, inst.ref, inst.beta, l2=o.get("l2"))


def _dpo_restricted(inst, data, rng, o):
    if inst.restricted_class is None:
        raise ValueError("dpo_restricted: this generator has no restricted class Π(R)")
    return dpo(data, inst.restricted_class, inst.ref, inst.beta, l2=o.get("l2"))


def _dpo_2x(inst, data, rng, o):
    return dpo_2x(data, inst.policy_class, inst.ref, inst.beta, l2=o.get("l2"))


def _ipo(inst, data, rng, o):
    return ipo(data, inst.policy_class, inst.ref, inst.beta, tau=o.get("tau", 1.0),
               average=o.get("average", "sequence"), l2=o.get("l2"))


def _rm_rl(inst, data, rng, o):
    return rm_rl(data, inst.reward_class, inst.policy_class, inst.ref, inst.beta, l2=o.get("l2"),
                 prompt_weights=inst.prompt_weights)


def _online_dpo(inst, data, rng, o):
    r_hat = reward_mle(data, inst.reward_class, l2=o.get("l2")).reward
    start = None
    if o.get("start", "ref") == "dpo":
        start = dpo(data, inst.policy_class, inst.ref, inst.beta, l2=o.get("l2")).policy
    return online_dpo(r_hat, inst.policy_class, inst.ref, inst.beta, K=o.get("K", 25), rounds=o.get("rounds", 5),
                      pairs_per_round=o.get("pairs_per_round", 64), labels=o.get("labels", "top_bottom"),
                      start=start, l2=o.get("l2"), prompt_weights=inst.prompt_weights, random_state=rng)


def _policy_gradient(inst, data, rng, o):
    r_hat = reward_mle(data, inst.reward_class, l2=o.get("l2")).reward
    return policy_gradient(r_hat, inst.policy_class, inst.ref, inst.beta, steps=o.get("steps", 200),
                           lr=o.get("lr", 0.5), K=o.get("K", 8), exact=o.get("exact", False),
                           prompt_weights=inst.prompt_weights, random_state=rng)


_L2 = {"l2": float}
#: name -> (function(instance, data, rng, options) -> FitResult, {option: type})
ESTIMATORS = {
    "dpo": (_dpo, _L2),
    "dpo_restricted": (_dpo_restricted, _L2),
    "dpo_2x": (_dpo_2x, _L2),
    "ipo": (_ipo, {**_L2, "tau": float, "average": str}),
    "rm_rl": (_rm_rl, _L2),
    "online_dpo": (_online_dpo, {**_L2, "K": int, "rounds": int, "pairs_per_round": int, "labels": str,
                                 "start": str}),
    "policy_gradient": (_policy_gradient, {**_L2, "steps": int, "lr": float, "K": int, "exact": bool}),
}
_ROUTES = {"dpo": "offline", "dpo_2x": "offline", "ipo": "offline", "rm_rl": "online",
           "online_dpo": "online", "policy_gradient": "online"}


def default_route(name: str) -> str:
    return _ROUTES.get(name, "other")


def seed_sequence(root_seed: int, *key) -> np.random.SeedSequence:
    return np.random.SeedSequence(root_seed, spawn_key=tuple(int(k) for k in key))


def make_instance(generator: str, params: dict, root_seed: int, seed: int) -> Instance:
    fn = GENERATORS[generator][0]
    return fn(params, np.random.default_rng(seed_sequence(root_seed, seed, 0)))


_METRIC_FN = {
    "suboptimality": lambda pol, inst: M.suboptimality(pol, inst.reward_true, inst.ref, inst.beta, inst.prompt_weights),
    "kl_to_optimal": lambda pol, inst: M.kl_to_optimal(pol, inst.reward_true, inst.ref, inst.beta, inst.prompt_weights),
    "kl_to_reference": lambda pol, inst: M.kl_to_reference(pol, inst.ref, inst.prompt_weights),
    "expected_reward": lambda pol, inst: M.expected_reward(pol, inst.reward_true, inst.prompt_weights),
    "win_rate": lambda pol, inst: M.win_rate(pol, inst.ref, inst.reward_true, inst.prompt_weights),
}


def run_unit(spec, params: dict, sid: str, seed: int) -> pd.DataFrame:
    """All cells of one (setting, seed): tidy rows with the setting's knobs as columns."""
    inst = make_instance(spec.generator, params, spec.root_seed, seed)
    data = sample_preferences(inst.reward_true, inst.sampler, max(spec.sizes),
                              np.random.default_rng(seed_sequence(spec.root_seed, seed, 1)),
                              prompt_weights=inst.prompt_weights, temperature=spec.temperature,
                              deterministic=spec.deterministic)
    rows = []
    knobs = {k: params[k] for k in spec.knobs}
    for n in spec.sizes:
        counts = data.head(n).counts()
        for k, est in enumerate(spec.estimators):
            fn = ESTIMATORS[est["name"]][0]
            rng = np.random.default_rng(seed_sequence(spec.root_seed, seed, 2, n, k))
            t0 = time.perf_counter()
            res = fn(inst, counts, rng, est["options"])
            wall = time.perf_counter() - t0
            for m in spec.metrics:
                rows.append({"experiment": spec.name, "setting_id": sid, **knobs, "seed": seed, "n": n,
                             "estimator": est["label"], "route": est["route"], "metric": m,
                             "value": float(_METRIC_FN[m](res.policy, inst)), "converged": bool(res.converged),
                             "wall_time": wall})
    return pd.DataFrame(rows)
