r"""The sweep signatures of genver's built-in estimators and metrics, named by the entries of
:mod:`genver.experiments.registry`:

* ``fit(instance, counts, rng, options) -> FitResult`` — one estimator on one data set
  (``counts``: :class:`~genver.preferences.PairCounts`; ``rng``: the cell's generator);
* ``path(instance, stream, sizes, options, cache) -> list[FitResult] | None`` — the nested-sizes fast
  path of an estimator over finite classes (``None`` where it does not apply; ``cache``: the run's
  :class:`~genver.runcache.RunCache`);
* ``metric(π̂, instance)`` (policy metrics) or ``metric(r̂, instance)`` (reward metrics).
"""
from __future__ import annotations

import numpy as np

from .. import metrics as M
from .._validation import check_prompt_weights
from ..classes import induced_reward_class
from ..estimators import best_of_n, dpo, dpo_path, ipo, reward_mle, rl_step, rm_rl, rm_rl_path, sft
from ..estimators.gradient import dpo_gd
from ..estimators.imitation import Demonstrations
from ..estimators.online import dpo_2x, online_dpo, policy_gradient
from ..preferences import PairCounts
from ..softrl import soft_optimal


# -- estimators ------------------------------------------------------------------------------
def _l2(o):
    return o.get("l2")


def fit_dpo(inst, data, rng, o):
    return dpo(data, inst.policy_class, inst.ref, inst.beta, l2=_l2(o))


def fit_dpo_restricted(inst, data, rng, o):
    if inst.restricted_class is None:
        raise ValueError("dpo_restricted: this generator has no restricted class Π(R)")
    return dpo(data, inst.restricted_class, inst.ref, inst.beta, l2=_l2(o))


def fit_dpo_2x(inst, data, rng, o):
    return dpo_2x(data, inst.policy_class, inst.ref, inst.beta, l2=_l2(o))


def fit_dpo_gd(inst, data, rng, o):
    return dpo_gd(data, inst.policy_class, inst.ref, inst.beta, steps=o.get("steps", 100), lr=o.get("lr", 1.0),
                  l2=_l2(o), normalise=o.get("normalise", False))


def fit_ipo(inst, data, rng, o):
    return ipo(data, inst.policy_class, inst.ref, inst.beta, tau=o.get("tau", 1.0),
               average=o.get("average", "sequence"), l2=_l2(o))


class _CountDemonstrations(Demonstrations):
    """Demonstrations given by (possibly fractional) counts ``C(x, y)``."""

    def __init__(self, space, C):
        object.__setattr__(self, "space", space)
        object.__setattr__(self, "x", np.empty(0, np.int64))
        object.__setattr__(self, "y", np.empty(0, np.int64))
        object.__setattr__(self, "_C", C)

    def counts(self):
        return self._C

    def __len__(self):
        return int(round(float(self._C.sum())))


def fit_sft_preferred(inst, data, rng, o):
    sp = data.space
    C = np.bincount(data.pos_flat, weights=data.count, minlength=sp.P * sp.T).reshape(sp.shape)
    res = sft(_CountDemonstrations(sp, C), inst.policy_class, inst.ref, inst.beta, l2=_l2(o))
    res.estimator = "sft_preferred"
    return res


def _prompt_weights_of(data: PairCounts) -> np.ndarray:
    w = np.bincount(data.x, weights=data.count, minlength=data.space.P)
    return w / w.sum()


def fit_rm_rl(inst, data, rng, o):
    mode = o.get("rl_prompts", "all")
    rho = inst.prompt_weights if mode == "all" else _prompt_weights_of(data)
    return rm_rl(data, inst.reward_class, inst.policy_class, inst.ref, inst.beta, l2=_l2(o), prompt_weights=rho)


def fit_online_dpo(inst, data, rng, o):
    r_hat = reward_mle(data, inst.reward_class, l2=_l2(o)).reward
    labels_by = r_hat if o.get("label_source", "fitted") == "fitted" else inst.reward_true
    start = None
    if o.get("start", "ref") == "dpo":
        start = dpo(data, inst.policy_class, inst.ref, inst.beta, l2=_l2(o)).policy
    res = online_dpo(labels_by, inst.policy_class, inst.ref, inst.beta, K=o.get("K", 25), rounds=o.get("rounds", 5),
                     pairs_per_round=o.get("pairs_per_round", 64), labels=o.get("labels", "top_bottom"),
                     start=start, l2=_l2(o), prompt_weights=inst.prompt_weights, random_state=rng)
    res.reward = r_hat
    return res


def fit_policy_gradient(inst, data, rng, o):
    r_hat = reward_mle(data, inst.reward_class, l2=_l2(o)).reward
    return policy_gradient(r_hat, inst.policy_class, inst.ref, inst.beta, steps=o.get("steps", 200),
                           lr=o.get("lr", 0.5), K=o.get("K", 8), exact=o.get("exact", False),
                           normalise=o.get("normalise", False), prompt_weights=inst.prompt_weights,
                           random_state=rng)


def fit_oracle_rl(inst, data, rng, o):
    res = rl_step(inst.reward_true, inst.policy_class, inst.ref, inst.beta, inst.prompt_weights)
    res.estimator = "oracle_rl"
    return res


def fit_reward_mle(inst, data, rng, o):
    which = o.get("reward_class", "verifier")
    cls = inst.reward_class if which == "verifier" else induced_reward_class(inst.policy_class, inst.ref, inst.beta)
    return reward_mle(data, cls, l2=_l2(o))


def path_dpo(inst, data, sizes, o, cache=None, cls=None):
    cls = inst.policy_class if cls is None else cls
    if cls.as_finite() is None:
        return None
    return dpo_path(data, sizes, cls, inst.ref, inst.beta, cache=cache)


def path_dpo_restricted(inst, data, sizes, o, cache=None):
    return None if inst.restricted_class is None else path_dpo(inst, data, sizes, o, cache, inst.restricted_class)


def path_rm_rl(inst, data, sizes, o, cache=None):
    if o.get("rl_prompts", "all") != "all" or inst.reward_class.as_finite() is None:
        return None
    return rm_rl_path(data, sizes, inst.reward_class, inst.policy_class, inst.ref, inst.beta,
                      prompt_weights=inst.prompt_weights, cache=cache)



# -- metrics -------------------------------------------------------------------------------
def optimal_mass(pol, inst):
    r = inst.reward_true
    top = r >= r.max(axis=1, keepdims=True) - 1e-12 * np.maximum(1.0, np.abs(r).max(axis=1, keepdims=True))
    mass = (pol.probs * top).sum(axis=1)
    return float(mass @ check_prompt_weights(inst.prompt_weights, inst.space.P))


def bt_loglik_opt(r, inst):
    opt = soft_optimal(inst.reward_true, inst.ref, inst.beta).policy
    return M.expected_bt_loglik(r, inst.reward_true, opt, inst.prompt_weights)


def _snap_ties(r: np.ndarray, rtol: float = 1e-8) -> np.ndarray:
    """Per prompt, rewards within ``rtol·max(1, max|r|)`` of their sorted neighbour form one
    level (set to the level's first value), so solver rounding never breaks a tie."""
    out = np.array(r, dtype=float)
    for x in range(out.shape[0]):
        v = out[x]
        o = np.argsort(v, kind="stable")
        sv = v[o]
        new_level = np.concatenate([[True], np.diff(sv) > rtol * max(1.0, float(np.abs(sv).max()))])
        starts = np.flatnonzero(new_level)
        sv = sv[starts][np.cumsum(new_level) - 1]
        v[o] = sv
    return out


def bon_reward(r, inst, N):
    pol = best_of_n(inst.ref, _snap_ties(r), N).policy
    return M.expected_reward(pol, inst.reward_true, inst.prompt_weights)


def suboptimality(pol, inst):
    return M.suboptimality(pol, inst.reward_true, inst.ref, inst.beta, inst.prompt_weights, optimal=inst.optimal)


def kl_to_optimal(pol, inst):
    return M.kl_to_optimal(pol, inst.reward_true, inst.ref, inst.beta, inst.prompt_weights, optimal=inst.optimal)


def kl_to_reference(pol, inst):
    return M.kl_to_reference(pol, inst.ref, inst.prompt_weights)


def expected_reward(pol, inst):
    return M.expected_reward(pol, inst.reward_true, inst.prompt_weights)


def win_rate(pol, inst):
    return M.win_rate(pol, inst.reward_true, inst.ref, inst.prompt_weights, levels=inst.reward_levels)


def bt_loglik(r, inst):
    return M.expected_bt_loglik(r, inst.reward_true, inst.sampler, inst.data_weights)
