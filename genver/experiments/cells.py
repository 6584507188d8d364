r"""One *unit* of a sweep: a (setting, seed) pair, computing all its (n, estimator) cells.

A unit draws its instance and one stream of ``max(sizes)`` Bradley–Terry pairs, then for every
sample size ``n`` (the first ``n`` pairs: nested data sets) fits every estimator and evaluates
every metric exactly. Pairs are drawn with the instance's data prompt distribution
(``Instance.data_weights``: ``ρ`` unless the generator's ``data_prompts`` restricts it); the RL
step and the metrics always use ``ρ``. With ``[data] population = true`` the pairs are replaced
by their exact expected counts (:func:`population_counts`): every estimator then solves its
population objective scaled by ``n`` ("exact optimisation" in the sense of Shi et al. 2025),
and seeds differ only through the instance. Random numbers come from one root
``SeedSequence(root_seed)``:

* instance: ``spawn_key = (seed, 0)``; data: ``(seed, 1)``; the estimator ``k`` at size ``n``
  (online DPO, policy gradient): ``(seed, 2, n, k)``.

They depend only on the replicate seed and the cell — never on the setting, the worker, or
the order of execution — so settings of one sweep share their random draws (common random
numbers) and a cell's numbers are the same however the sweep is scheduled.

Within a run, what settings share is computed once: the unit functions take the run's
:class:`~genver.runcache.RunCache` as ``cache=`` and pass it on (to the generator, the nested-size
paths and the RL step of finite classes). Here it holds the pair stream of a seed, keyed by
everything it is drawn from (seeds, size, ``r*``, ``μ`` and the data weights, label
temperature), and the policy metrics of a picked member, keyed by the member's log-probs and
the instance's ``r*``, ``π_ref``, ``β`` and ``ρ``. Without a cache (``cache=None``, the default)
a unit computes everything afresh and keeps nothing.

Estimators (``name``: what runs, with the instance's classes ``R``, ``Π``, ``Π(R)``):

==================  ============================================================================
``dpo``             offline MLE over ``Π``
``dpo_restricted``  offline MLE over ``Π(R)`` (proper learning; equals ``rm_rl`` by Theorem 3.1)
``dpo_2x``          DPO on doubled counts (the "two epochs" control)
``dpo_gd``          budget-limited DPO: ``steps`` gradient-ascent steps of size ``lr`` on the
                    mean tabular DPO objective from ``π_ref`` (``normalise``: steps of max-abs
                    size ``lr``; :mod:`genver.estimators.gradient`)
``ipo``             IPO over ``Π`` (options ``tau``, ``average``)
``sft_preferred``   SFT on the preferred completions only (filtered supervised learning, no
                    negative gradient; :func:`genver.estimators.sft` over ``Π``)
``rm_rl``           reward MLE over ``R``, then exact RL over ``Π`` (the online route); option
                    ``rl_prompts`` = ``all`` (RL on ``ρ``, default) | ``data`` (RL only on the
                    empirical prompt distribution of the pairs: no unlabelled prompts)
``online_dpo``      reward MLE over ``R``, then online DPO over ``Π`` labelled by ``r̂`` (options
                    ``K``, ``rounds``, ``pairs_per_round``, ``labels`` = top_bottom |
                    bradley_terry | all_pairs, ``start`` = ref | dpo, ``label_source`` = fitted
                    (``r̂``, default) | true (fresh Bradley–Terry labels from ``r*`` on the
                    on-policy pairs: online preference queries))
``policy_gradient`` reward MLE over ``R``, then KL-regularised policy gradient (options ``steps``,
                    ``lr``, ``K``, ``exact``, ``normalise``)
``oracle_rl``       exact RL over ``Π`` against ``r*`` itself: ``argmax_{π∈Π} J_β(π; r*)``, the
                    best policy in ``Π``. It is the population fixed point of online DPO with
                    the PILAF sampler and ``r*``-labelled on-policy pairs (Shi et al. 2025,
                    Theorem 2: that loss's gradient is the gradient of ``J_β(·; r*)``), i.e. with
                    unlimited preference queries — a reference, not a sample-size competitor
``reward_mle``      a reward model only (no policy): reward MLE over ``R`` (``reward_class =
                    "verifier"``, the global RM) or over ``R(Π)`` (``"induced"``: the policy's own
                    reward class fitted as a reward, the local RM; finite or tabular ``Π``)
``neural_dpo``,      the neural routes (:mod:`genver.neural.estimators`): a small transformer
``neural_rm_rl``, …  trained by offline DPO / SFT, or a reward model (global, linear, local) then
                    REINFORCE-LOO or online DPO; its exact distribution is the fitted ``π̂``. They
                    run on the sweep's ``device`` (``genver run --device``)
==================  ============================================================================

Metrics (:data:`METRIC_KINDS`): *policy* metrics evaluate ``π̂`` and are skipped (no row) for
estimators without a policy; *reward* metrics evaluate the fit's reward ``r̂`` — the reward
model where there is one (``reward_mle``, ``rm_rl``, ``online_dpo``, ``policy_gradient``), else
the implicit reward ``β log π̂/π_ref`` (DPO-style estimators):

=====================  =====================================================================
``suboptimality``      ``J_β(π*; r*) − J_β(π̂; r*)``
``kl_to_optimal``      ``E_x KL(π̂ ‖ π*)``
``kl_to_reference``    ``E_x KL(π̂ ‖ π_ref)``
``expected_reward``    ``E_x E_{π̂} r*``
``win_rate``           ``P(π̂ ≻ π_ref)`` under Bradley–Terry with ``r*``
``optimal_mass``       ``E_x π̂(argmax_y r*(x, y) | x)`` (mass on the reward peak; ties summed)
``bt_loglik``          exact expected Bradley–Terry log-likelihood of ``r̂`` on fresh pairs from
                       the data distribution (``μ``, prompts from the data weights), labels
                       from ``r*`` (held-out, in distribution)
``bt_loglik_opt``      the same on pairs from ``π* = π*_{r*}`` (prompts ``ρ``): the distribution
                       RL moves to (out of distribution)
``bon_reward@N``       ``E_x E_{π_BoN} r*`` for best-of-``N`` sampling from ``π_ref`` ranked by
                       ``r̂`` (exact; ``[metrics] best_of_n = [..]`` adds one per ``N``);
                       values of ``r̂`` within a relative 1e-8 are ties (broken uniformly), so
                       solver rounding never decides a ranking
``opt_residual``       *fit* metric: the fit's optimisation residual, the gap of its own
                       objective to that objective's optimum over every policy on the same data
                       (neural fits, :mod:`genver.neural.residual`; no row for exact solvers)
=====================  =====================================================================
"""
from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd

from .. import metrics as M
from .._validation import check_prompt_weights
from ..classes import FiniteRewardClass, induced_reward_class
from ..estimators import (best_of_n, dpo, dpo_path, ipo, reward_mle, rl_step, rm_rl, rm_rl_path,
                          sft)
from ..estimators.mle import _policy_members
from ..estimators.base import FitResult
from ..estimators.gradient import dpo_gd
from ..estimators.imitation import Demonstrations
from ..estimators.online import dpo_2x, online_dpo, policy_gradient
from ..neural.schema import NEURAL_ROUTES, NEURAL_SCHEMAS
from ..preferences import NestedCounts, PairCounts, sample_preferences
from ..softrl import soft_optimal
from ..runcache import RunCache, cache_key
from .generators import GENERATORS, Instance

__all__ = ["ESTIMATORS", "REWARD_ONLY", "METRIC_KINDS", "default_route", "make_instance", "run_unit", "unit_columns",
           "unit_frame", "seed_sequence", "population_counts", "metric_kind", "fit_reward"]


def _l2(o):
    return o.get("l2")


def _dpo(inst, data, rng, o):
    return dpo(data, inst.policy_class, inst.ref, inst.beta, l2=_l2(o))


def _dpo_restricted(inst, data, rng, o):
    if inst.restricted_class is None:
        raise ValueError("dpo_restricted: this generator has no restricted class Π(R)")
    return dpo(data, inst.restricted_class, inst.ref, inst.beta, l2=_l2(o))


def _dpo_2x(inst, data, rng, o):
    return dpo_2x(data, inst.policy_class, inst.ref, inst.beta, l2=_l2(o))


def _dpo_gd(inst, data, rng, o):
    return dpo_gd(data, inst.policy_class, inst.ref, inst.beta, steps=o.get("steps", 100), lr=o.get("lr", 1.0),
                  l2=_l2(o), normalise=o.get("normalise", False))


def _ipo(inst, data, rng, o):
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


def _sft_preferred(inst, data, rng, o):
    sp = data.space
    C = np.bincount(data.pos_flat, weights=data.count, minlength=sp.P * sp.T).reshape(sp.shape)
    res = sft(_CountDemonstrations(sp, C), inst.policy_class, inst.ref, inst.beta, l2=_l2(o))
    res.estimator = "sft_preferred"
    return res


def _prompt_weights_of(data: PairCounts) -> np.ndarray:
    w = np.bincount(data.x, weights=data.count, minlength=data.space.P)
    return w / w.sum()


def _rm_rl(inst, data, rng, o):
    mode = o.get("rl_prompts", "all")
    rho = inst.prompt_weights if mode == "all" else _prompt_weights_of(data)
    return rm_rl(data, inst.reward_class, inst.policy_class, inst.ref, inst.beta, l2=_l2(o), prompt_weights=rho)


def _online_dpo(inst, data, rng, o):
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


def _policy_gradient(inst, data, rng, o):
    r_hat = reward_mle(data, inst.reward_class, l2=_l2(o)).reward
    return policy_gradient(r_hat, inst.policy_class, inst.ref, inst.beta, steps=o.get("steps", 200),
                           lr=o.get("lr", 0.5), K=o.get("K", 8), exact=o.get("exact", False),
                           normalise=o.get("normalise", False), prompt_weights=inst.prompt_weights,
                           random_state=rng)


def _oracle_rl(inst, data, rng, o):
    res = rl_step(inst.reward_true, inst.policy_class, inst.ref, inst.beta, inst.prompt_weights)
    res.estimator = "oracle_rl"
    return res


def _reward_mle(inst, data, rng, o):
    which = o.get("reward_class", "verifier")
    cls = inst.reward_class if which == "verifier" else induced_reward_class(inst.policy_class, inst.ref, inst.beta)
    return reward_mle(data, cls, l2=_l2(o))


_L2 = {"l2": float}
#: name -> (function(instance, data, rng, options) -> FitResult, {option: type or set of allowed strings})
ESTIMATORS = {
    "dpo": (_dpo, _L2),
    "dpo_restricted": (_dpo_restricted, _L2),
    "dpo_2x": (_dpo_2x, _L2),
    "dpo_gd": (_dpo_gd, {**_L2, "steps": int, "lr": float, "normalise": bool}),
    "ipo": (_ipo, {**_L2, "tau": float, "average": frozenset({"sequence", "token"})}),
    "sft_preferred": (_sft_preferred, _L2),
    "rm_rl": (_rm_rl, {**_L2, "rl_prompts": frozenset({"all", "data"})}),
    "online_dpo": (_online_dpo, {**_L2, "K": int, "rounds": int, "pairs_per_round": int,
                                 "labels": frozenset({"top_bottom", "bradley_terry", "all_pairs"}),
                                 "start": frozenset({"ref", "dpo"}),
                                 "label_source": frozenset({"fitted", "true"})}),
    "policy_gradient": (_policy_gradient, {**_L2, "steps": int, "lr": float, "K": int, "exact": bool,
                                           "normalise": bool}),
    "oracle_rl": (_oracle_rl, {}),
    "reward_mle": (_reward_mle, {**_L2, "reward_class": frozenset({"verifier", "induced"})}),
}


def _neural(name: str):
    """A neural estimator, imported on first use (PyTorch is an optional extra); the sweep's
    device reaches it as the option ``_device``."""
    def fit(inst, data, rng, o):
        try:
            from ..neural.estimators import NEURAL_ESTIMATORS
        except ImportError as e:
            raise ValueError(f"estimator {name} needs PyTorch: pip install 'genver[neural]' ({e})") from e
        return NEURAL_ESTIMATORS[name][0](inst, data, rng, o)
    return fit


ESTIMATORS.update({name: (_neural(name), schema) for name, schema in NEURAL_SCHEMAS.items()})
#: estimators that return a reward model only (no policy: policy metrics give no rows)
REWARD_ONLY = frozenset({"reward_mle"})
_ROUTES = {"dpo": "offline", "dpo_2x": "offline", "dpo_gd": "offline", "ipo": "offline", "sft_preferred": "offline",
           "rm_rl": "online", "online_dpo": "online", "policy_gradient": "online", **NEURAL_ROUTES}


def default_route(name: str) -> str:
    return _ROUTES.get(name, "other")


def seed_sequence(root_seed: int, *key) -> np.random.SeedSequence:
    return np.random.SeedSequence(root_seed, spawn_key=tuple(int(k) for k in key))


def make_instance(generator: str, params: dict, root_seed: int, seed: int, *,
                  cache: RunCache | None = None) -> Instance:
    """The instance of replicate ``seed`` (generator ``spawn_key = (seed, 0)``); ``cache``: the
    run's :class:`~genver.runcache.RunCache`, handed to the generator."""
    fn = GENERATORS[generator][0]
    return fn(params, np.random.default_rng(seed_sequence(root_seed, seed, 0)), cache=cache)


def population_counts(reward_true, sampler, n: float, prompt_weights=None, *, temperature: float = 1.0,
                      deterministic: bool = False) -> PairCounts:
    """Exact expected counts of ``n`` Bradley–Terry pairs: triple ``(x, a ≻ b)`` gets
    ``n ρ(x) · 2 μ(a|x) μ(b|x) P(a ≻ b)`` for ``a ≠ b`` and ``n ρ(x) μ(a|x)²`` for ``a = b`` (a pair
    of equals: no information), so the counts sum to ``n``. Zero counts are dropped."""
    sp = sampler.space
    r = sp.check_array("reward", reward_true)
    rho = check_prompt_weights(prompt_weights, sp.P)
    if sp.P * sp.T * sp.T > 10**7:
        raise ValueError(f"population counts: P*T^2 = {sp.P * sp.T * sp.T} triples exceed 10**7")
    mu = sampler.probs
    d = (r[:, :, None] - r[:, None, :]) / temperature  # (P, a, b)
    if deterministic:
        pwin = np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))
    else:
        pwin = 0.5 * (1.0 + np.tanh(0.5 * d))  # σ(d), stable
    c = 2.0 * n * rho[:, None, None] * mu[:, :, None] * mu[:, None, :] * pwin
    idx = np.arange(sp.T)
    c[:, idx, idx] = n * rho[:, None] * mu**2
    x, a, b = np.nonzero(c > 0)
    return PairCounts(sp, x.astype(np.int64), a.astype(np.int64), b.astype(np.int64), c[x, a, b].astype(np.float64))


# -- metrics ---------------------------------------------------------------------------------
def fit_reward(res: FitResult, inst: Instance):
    """The reward a fit stands for: its reward model, else ``β log π̂/π_ref`` (None if neither)."""
    if res.reward is not None:
        return res.reward
    if res.policy is not None and res.policy.full_support and inst.ref.full_support:
        return inst.beta * (res.policy.logp - inst.ref.logp)
    return None


def _optimal_mass(pol, inst):
    r = inst.reward_true
    top = r >= r.max(axis=1, keepdims=True) - 1e-12 * np.maximum(1.0, np.abs(r).max(axis=1, keepdims=True))
    mass = (pol.probs * top).sum(axis=1)
    return float(mass @ check_prompt_weights(inst.prompt_weights, inst.space.P))


def _bt_loglik_opt(r, inst):
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


def _bon_reward(r, inst, N):
    pol = best_of_n(inst.ref, _snap_ties(r), N).policy
    return M.expected_reward(pol, inst.reward_true, inst.prompt_weights)


_POLICY_METRICS = {
    "suboptimality": lambda pol, inst: M.suboptimality(pol, inst.reward_true, inst.ref, inst.beta, inst.prompt_weights,
                                                       optimal=inst.optimal),
    "kl_to_optimal": lambda pol, inst: M.kl_to_optimal(pol, inst.reward_true, inst.ref, inst.beta, inst.prompt_weights,
                                                       optimal=inst.optimal),
    "kl_to_reference": lambda pol, inst: M.kl_to_reference(pol, inst.ref, inst.prompt_weights),
    "expected_reward": lambda pol, inst: M.expected_reward(pol, inst.reward_true, inst.prompt_weights),
    "win_rate": lambda pol, inst: M.win_rate(pol, inst.reward_true, inst.ref, inst.prompt_weights,
                                             levels=inst.reward_levels),
    "optimal_mass": _optimal_mass,
}
_REWARD_METRICS = {
    "bt_loglik": lambda r, inst: M.expected_bt_loglik(r, inst.reward_true, inst.sampler, inst.data_weights),
    "bt_loglik_opt": _bt_loglik_opt,
}
#: metrics a fit reports about itself (``FitResult.extra[name]``; no row where it has none)
_FIT_METRICS = ("opt_residual",)
#: metric name -> "policy" | "reward" | "fit" (plus the family ``bon_reward@N``, kind "reward")
METRIC_KINDS = {**{m: "policy" for m in _POLICY_METRICS}, **{m: "reward" for m in _REWARD_METRICS},
                **{m: "fit" for m in _FIT_METRICS}}
BON_METRIC = re.compile(r"^bon_reward@([1-9][0-9]*)$")


def metric_kind(name: str) -> str | None:
    if name in METRIC_KINDS:
        return METRIC_KINDS[name]
    return "reward" if BON_METRIC.match(name) else None


def _evaluate(name: str, res: FitResult, inst: Instance):
    """The metric's value, or None when it does not apply to this fit (no row is written)."""
    kind = metric_kind(name)
    if kind == "policy":
        return None if res.policy is None else float(_POLICY_METRICS[name](res.policy, inst))
    if kind == "fit":
        v = res.extra.get(name)
        return None if v is None else float(v)
    r = fit_reward(res, inst)
    if r is None:
        return None
    m = BON_METRIC.match(name)
    if m:
        return float(_bon_reward(r, inst, int(m.group(1))))
    return float(_REWARD_METRICS[name](r, inst))


def _f64(a) -> np.ndarray | None:
    return None if a is None else np.ascontiguousarray(a, dtype=np.float64)


def _draw_stream(spec, inst: Instance, seed: int):
    """The unit's stream of ``max(sizes)`` pairs (generator ``spawn_key = (seed, 1)``), read-only."""
    data = sample_preferences(inst.reward_true, inst.sampler, max(spec.sizes),
                              np.random.default_rng(seed_sequence(spec.root_seed, seed, 1)),
                              prompt_weights=inst.data_weights, temperature=spec.temperature,
                              deterministic=spec.deterministic)
    for a in (data.x, data.y_pos, data.y_neg):
        a.setflags(write=False)  # shared by the units of this seed
    return data


def _data(spec, inst: Instance, seed: int, cache: RunCache | None = None):
    """``n -> PairCounts`` for the unit (nested heads of one stream, counted incrementally by
    :class:`genver.preferences.NestedCounts`, or population counts); the stream is
    ``data_of.stream``. With a ``cache`` (memo ``"pair_streams"``: root seed, seed, size,
    ``r*``, ``μ``, data weights, ``τ``, deterministic -> stream) the settings of a seed share it."""
    if getattr(spec, "population", False):
        return lambda n: population_counts(inst.reward_true, inst.sampler, n, inst.data_weights,
                                           temperature=spec.temperature, deterministic=spec.deterministic)
    if cache is None:
        data = _draw_stream(spec, inst, seed)
    else:
        key = cache_key("pair_stream", spec.root_seed, seed, max(spec.sizes), _f64(inst.reward_true),
                        _f64(inst.sampler.logp), _f64(inst.data_weights), spec.temperature, spec.deterministic)
        data = cache.get("pair_streams", key)
        if data is None:
            data = _draw_stream(spec, inst, seed)
            cache.put("pair_streams", key, data, data.x.nbytes * 3)
    # the unit asks for its sizes in increasing order: each extends the last counts (one sort of
    # the new segment, one merge); the stream is let go once its last pair is counted
    nested = NestedCounts(data, release=True)

    def data_of(n):
        return nested.at(n)
    data_of.stream = data
    return data_of


def _dpo_path(inst, data, sizes, o, cache, cls=None):
    cls = inst.policy_class if cls is None else cls
    if _policy_members(cls) is None:
        return None
    return dpo_path(data, sizes, cls, inst.ref, inst.beta, cache=cache)


def _dpo_restricted_path(inst, data, sizes, o, cache):
    return None if inst.restricted_class is None else _dpo_path(inst, data, sizes, o, cache, inst.restricted_class)


def _rm_rl_path(inst, data, sizes, o, cache):
    if o.get("rl_prompts", "all") != "all" or not isinstance(inst.reward_class, FiniteRewardClass):
        return None
    return rm_rl_path(data, sizes, inst.reward_class, inst.policy_class, inst.ref, inst.beta,
                      prompt_weights=inst.prompt_weights, cache=cache)


#: estimators with a nested-sizes fast path (finite classes): name -> function(instance, stream,
#: sizes, options, cache) returning one FitResult per size, or None when the path does not
#: apply; results equal the per-size fits
PATHS = {"dpo": _dpo_path, "dpo_restricted": _dpo_restricted_path, "rm_rl": _rm_rl_path}


def _known_metrics(pol, values: dict, cache: RunCache | None, world, n_policy_metrics: int) -> dict | None:
    """The ``{metric: value}`` dict of policy ``pol`` (None when there is no policy or no policy
    metric): the unit's own (``values``: id -> (policy, dict)), else the run's (``cache``, memo
    ``"policy_metrics"`` keyed by ``log π̂`` and the world), else a new one."""
    if pol is None or not n_policy_metrics:
        return None
    hit = values.get(id(pol))
    if hit is not None and hit[0] is pol:
        return hit[1]
    known = None
    if cache is not None:
        key = cache_key(pol.logp, world)
        known = cache.get("policy_metrics", key)
        if known is None:
            known = {}
            cache.put("policy_metrics", key, known, 128 * (1 + n_policy_metrics))
    known = {} if known is None else known
    values[id(pol)] = (pol, known)
    return known


def run_unit(spec, params: dict, sid: str, seed: int, *, cache: RunCache | None = None) -> pd.DataFrame:
    """All cells of one (setting, seed): tidy rows with the setting's knobs as columns
    (``cache``: the run's :class:`~genver.runcache.RunCache`, or None to keep nothing)."""
    return unit_frame(unit_columns(spec, params, sid, seed, cache=cache))


def unit_frame(columns: dict) -> pd.DataFrame:
    """The table of :func:`unit_columns`' columns (an empty frame for a unit without rows)."""
    return pd.DataFrame(columns) if columns else pd.DataFrame([])


def unit_columns(spec, params: dict, sid: str, seed: int, *, cache: RunCache | None = None) -> dict:
    """The cells of :func:`run_unit` as ``{column: list}`` (``{}`` without rows): the executors
    pass these on and the result store builds one frame per batch of units, not one per unit."""
    inst = make_instance(spec.generator, params, spec.root_seed, seed, cache=cache)
    if getattr(inst, "sampled", False):  # beyond enumeration: the world samples and evaluates (genver.neural.long)
        return inst.unit_columns(spec, params, sid, seed)
    population = getattr(spec, "population", False)
    data_of = _data(spec, inst, seed, cache)
    paths = {}
    if not population:
        for k, est in enumerate(spec.estimators):
            if est["name"] in PATHS:
                paths[k] = PATHS[est["name"]](inst, data_of.stream, spec.sizes, est["options"], cache)
        del data_of.stream  # from here on only the counts need it (and let it go at the end)
    # one list per varying column; the unit's constant columns are filled in at the end
    knobs = {k: params[k] for k in spec.knobs}
    cols = {c: [] for c in ("n", "estimator", "route", "metric", "value", "converged", "wall_time")}
    c_n, c_est, c_route, c_metric, c_value, c_conv, c_wall = cols.values()
    # a picked finite member is evaluated once per run, whichever unit, estimator or size picked it
    # (a policy metric is a function of log π̂ and the instance's r*, π_ref, β, ρ): with a cache, memo
    # "policy_metrics" maps (log π̂, world) to a dict {metric: value}
    world = None if cache is None else cache_key(inst.space.P, inst.space.V, inst.space.H, _f64(inst.reward_true),
                                                 _f64(inst.ref.logp), float(inst.beta), _f64(inst.prompt_weights))
    is_policy = [(m, metric_kind(m) == "policy") for m in spec.metrics]
    n_policy_metrics = sum(kind for _, kind in is_policy)
    # id of the policy object -> (the object, {metric: value}) for this unit: the paths share one object
    # per picked member; the object is held, so its id is not reused by another while the unit runs
    values = {}
    for i, n in enumerate(spec.sizes):
        counts = None
        for k, est in enumerate(spec.estimators):
            if paths.get(k) is not None:
                res = paths[k][i]
                wall = res.wall_time
            else:
                counts = data_of(n) if counts is None else counts
                fn = ESTIMATORS[est["name"]][0]
                rng = np.random.default_rng(seed_sequence(spec.root_seed, seed, 2, n, k))
                opts = est["options"]
                if est["name"] in NEURAL_SCHEMAS:
                    opts = {**opts, "_device": getattr(spec, "device", "auto")}
                t0 = time.perf_counter()
                res = fn(inst, counts, rng, opts)
                wall = time.perf_counter() - t0
            pol = res.policy
            label, route, conv = est["label"], est["route"], bool(res.converged)
            known = _known_metrics(pol, values, cache, world, n_policy_metrics)  # {metric: value} of this policy
            for m, policy_kind in is_policy:
                memo = policy_kind and known is not None
                v = known.get(m) if memo else None
                if v is None:
                    v = _evaluate(m, res, inst)
                    if memo and v is not None:
                        known[m] = v
                if v is None:
                    continue
                c_n.append(n)
                c_est.append(label)
                c_route.append(route)
                c_metric.append(m)
                c_value.append(v)
                c_conv.append(conv)
                c_wall.append(wall)
    N = len(cols["metric"])
    if N == 0:
        return {}
    # the columns (and their order) a list of row dicts {experiment, setting_id, **knobs, seed, n, …} gives
    return {"experiment": [spec.name] * N, "setting_id": [sid] * N, **{k: [x] * N for k, x in knobs.items()},
            "seed": [seed] * N, **cols}
