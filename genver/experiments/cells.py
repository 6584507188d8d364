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

The estimators, metrics and generators a unit runs are the entries of
:mod:`genver.experiments.registry` (their tables and schemas are documented there).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from .._validation import check_prompt_weights
from ..estimators.base import FitResult
from ..neural.long import LongWorld  # numpy only
from ..policy import Policy
from ..preferences import NestedCounts, PairCounts, Preferences, sample_preferences
from ..runcache import RunCache, cache_key
from .generators import Instance
from .registry import ESTIMATORS, GENERATORS, metric_entry, metric_kind

__all__ = ["make_instance", "run_unit", "unit_columns", "unit_frame", "seed_sequence", "population_counts",
           "fit_reward"]


def seed_sequence(root_seed: int, *key) -> np.random.SeedSequence:
    """The seed sequence of one random stream of a run: ``SeedSequence(root_seed, spawn_key=key)``.
    Every stream a run draws has its own key — ``(seed, 0)`` the instance, ``(seed, 1)`` the pair
    stream, ``(seed, 2, n, k)`` estimator ``k``'s cell at size ``n`` — so the numbers do not depend
    on the order, worker or thread that draws them.

    Parameters
    ----------
    root_seed : int
        the spec's ``[data] root_seed``.
    *key : int
        the stream's spawn key.

    Returns
    -------
    numpy.random.SeedSequence
        the stream's seed sequence.

    Examples
    --------
    >>> a = seed_sequence(0, 3, 1).generate_state(2)
    >>> b = seed_sequence(0, 3, 1).generate_state(2)
    >>> bool((a == b).all()), bool((a == seed_sequence(0, 3, 0).generate_state(2)).all())
    (True, False)
    """
    return np.random.SeedSequence(root_seed, spawn_key=tuple(int(k) for k in key))


def make_instance(generator: str, params: dict, root_seed: int, seed: int, *,
                  cache: RunCache | None = None) -> Instance | LongWorld:
    """The instance of replicate ``seed`` (generator ``spawn_key = (seed, 0)``); ``cache``: the
    run's :class:`~genver.runcache.RunCache`, handed to the generator.

    Parameters
    ----------
    generator : str
        a generator name of :data:`genver.experiments.registry.GENERATORS`.
    params : dict
        the setting's full generator parameters.
    root_seed : int
        the spec's ``[data] root_seed``.
    seed : int
        the replicate seed.
    cache : RunCache or None
        the run's cache (None: the instance is drawn afresh).

    Returns
    -------
    Instance or LongWorld
        the enumerable world (:class:`~genver.experiments.generators.Instance`), or a sampled one
        (:class:`genver.neural.long.LongWorld`) for generators beyond enumeration.
    """
    fn = GENERATORS[generator].fn
    return fn(params, np.random.default_rng(seed_sequence(root_seed, seed, 0)), cache=cache)


def population_counts(reward_true, sampler, n: float, prompt_weights=None, *, temperature: float = 1.0,
                      deterministic: bool = False) -> PairCounts:
    """Exact expected counts of ``n`` Bradley–Terry pairs: triple ``(x, a ≻ b)`` gets
    ``n ρ(x) · 2 μ(a|x) μ(b|x) P(a ≻ b)`` for ``a ≠ b`` and ``n ρ(x) μ(a|x)²`` for ``a = b`` (a pair
    of equals: no information), so the counts sum to ``n``. Zero counts are dropped.

    Parameters
    ----------
    reward_true : numpy.ndarray
        ``r*``, shape ``(P, T)``.
    sampler : Policy
        ``μ``, the policy both completions are drawn from.
    n : float
        the number of pairs (the counts' total; need not be an integer).
    prompt_weights : numpy.ndarray or None
        ``ρ``, shape ``(P,)`` (None: uniform).
    temperature : float
        the Bradley–Terry temperature ``τ``: ``P(a ≻ b) = σ((r*(a) − r*(b))/τ)``.
    deterministic : bool
        noise-free labels: ``P(a ≻ b) ∈ {0, ½, 1}`` by the sign of ``r*(a) − r*(b)``.

    Returns
    -------
    PairCounts
        the triples with positive expected count, fractional multiplicities summing to ``n``.
    """
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
    """The reward a fit stands for: its reward model, else ``β log π̂/π_ref`` (None if neither).

    Parameters
    ----------
    res : FitResult
        the fit.
    inst : Instance
        the world (``β``, ``π_ref``).

    Returns
    -------
    numpy.ndarray or None
        the reward, shape ``(P, T)``; None when the fit has no reward and its policy (or
        ``π_ref``) lacks full support.
    """
    if res.reward is not None:
        return res.reward
    if res.policy is not None and res.policy.full_support and inst.ref.full_support:
        return inst.beta * (res.policy.logp - inst.ref.logp)
    return None


def _evaluate(name: str, res: FitResult, inst: Instance):
    """The metric's value, or None when it does not apply to this fit (no row is written)."""
    entry = metric_entry(name)
    if entry is None:
        raise ValueError(f"metric {name!r}: not in genver.experiments.registry.METRICS (nor bon_reward@N)")
    if entry.kind == "fit":
        v = res.extra.get(name)
        return None if v is None else float(v)
    fn = entry.fn
    if fn is None:
        raise ValueError(f"metric {name!r}: its registry entry names no function")
    if entry.kind == "policy":
        return None if res.policy is None else float(fn(res.policy, inst))
    r = fit_reward(res, inst)
    return None if r is None else float(fn(r, inst))


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


class _UnitCounts:
    """``n -> PairCounts`` of a unit (``counts_of(n)``); ``stream``: the sampled stream the
    counts come from (None for population counts), held until the unit lets it go."""

    def __init__(self, counts_of: Callable[[int], PairCounts], stream: Preferences | None = None):
        self._counts_of = counts_of
        self.stream = stream

    def __call__(self, n: int) -> PairCounts:
        return self._counts_of(n)


def _data(spec, inst: Instance, seed: int, cache: RunCache | None = None) -> _UnitCounts:
    """``n -> PairCounts`` for the unit (nested heads of one stream, counted incrementally by
    :class:`genver.preferences.NestedCounts`, or population counts); the stream is
    ``data_of.stream``. With a ``cache`` (memo ``"pair_streams"``: root seed, seed, size,
    ``r*``, ``μ``, data weights, ``τ``, deterministic -> stream) the settings of a seed share it."""
    if getattr(spec, "population", False):
        return _UnitCounts(lambda n: population_counts(inst.reward_true, inst.sampler, n, inst.data_weights,
                                                       temperature=spec.temperature,
                                                       deterministic=spec.deterministic))
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
    return _UnitCounts(NestedCounts(data, release=True).at, data)


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


def _fit_cell(spec, inst: Instance, est: dict, counts: PairCounts, key: tuple) -> tuple[FitResult, float]:
    """One estimator ``est`` (a parsed ``[[estimators]]`` entry) on one data set, with the cell's
    generator (``spawn_key = key = (seed, 2, n, k)``): ``(fit, wall time in seconds)``."""
    entry = ESTIMATORS[est["name"]]
    rng = np.random.default_rng(seed_sequence(spec.root_seed, *key))
    opts = est["options"]
    if entry.neural:
        opts = {**opts, "_device": getattr(spec, "device", "auto")}
    t0 = time.perf_counter()
    res = entry.fit(inst, counts, rng, opts)
    return res, time.perf_counter() - t0


def _metric_values(res: FitResult, inst: Instance, is_policy: list, known: dict | None) -> list[tuple[str, float]]:
    """``(metric, value)`` of a fit for each metric of ``is_policy`` (``[(metric, is a policy
    metric)]``) that applies to it; the policy metrics are read from and written to ``known``
    (the ``{metric: value}`` of its policy, :func:`_known_metrics`) when given."""
    out = []
    for m, policy_kind in is_policy:
        memo = known if policy_kind else None
        v = memo.get(m) if memo is not None else None
        if v is None:
            v = _evaluate(m, res, inst)
            if memo is not None and v is not None:
                memo[m] = v
        if v is not None:
            out.append((m, v))
    return out


def run_unit(spec, params: dict, sid: str, seed: int, *, cache: RunCache | None = None) -> pd.DataFrame:
    """All cells of one (setting, seed): tidy rows with the setting's knobs as columns
    (``cache``: the run's :class:`~genver.runcache.RunCache`, or None to keep nothing).

    Parameters
    ----------
    spec : Spec
        the validated spec (:class:`genver.experiments.spec.Spec`).
    params : dict
        the setting's full generator parameters (one of ``spec.settings()``).
    sid : str
        the setting's id (:func:`genver.experiments.spec.setting_id` of ``params``).
    seed : int
        the replicate seed.
    cache : RunCache or None
        the run's :class:`~genver.runcache.RunCache`, or None to keep nothing.

    Returns
    -------
    pandas.DataFrame
        one row per (n, estimator, metric): ``experiment``, ``setting_id``, the knobs, ``seed``,
        ``n``, ``estimator``, ``route``, ``metric``, ``value``, ``converged``, ``wall_time``.
    """
    return unit_frame(unit_columns(spec, params, sid, seed, cache=cache))


def unit_frame(columns: dict) -> pd.DataFrame:
    """The table of :func:`unit_columns`' columns (an empty frame for a unit without rows).

    Parameters
    ----------
    columns : dict
        ``{column: list}`` from :func:`unit_columns`.

    Returns
    -------
    pandas.DataFrame
        the unit's rows.
    """
    return pd.DataFrame(columns) if columns else pd.DataFrame([])


def unit_columns(spec, params: dict, sid: str, seed: int, *, cache: RunCache | None = None) -> dict:
    """The cells of :func:`run_unit` as ``{column: list}`` (``{}`` without rows): the executors
    pass these on and the result store builds one frame per batch of units, not one per unit.

    Parameters
    ----------
    spec : Spec
        the validated spec (:class:`genver.experiments.spec.Spec`).
    params : dict
        the setting's full generator parameters (one of ``spec.settings()``).
    sid : str
        the setting's id (:func:`genver.experiments.spec.setting_id` of ``params``).
    seed : int
        the replicate seed.
    cache : RunCache or None
        the run's :class:`~genver.runcache.RunCache`, or None to keep nothing.

    Returns
    -------
    dict
        ``{column: list}`` of equal lengths, in :func:`run_unit`'s column order (``{}``: no rows).
    """
    inst = make_instance(spec.generator, params, spec.root_seed, seed, cache=cache)
    if isinstance(inst, LongWorld):  # beyond enumeration: the world samples and evaluates (genver.neural.long)
        return inst.unit_columns(spec, params, sid, seed)
    population = getattr(spec, "population", False)
    data_of = _data(spec, inst, seed, cache)
    paths = {}
    if not population:
        for k, est in enumerate(spec.estimators):
            path = ESTIMATORS[est["name"]].path
            if path is not None:
                paths[k] = path(inst, data_of.stream, spec.sizes, est["options"], cache)
        data_of.stream = None  # from here on only the counts need it (and let it go at the end)
    # one list per varying column; the unit's constant columns are filled in at the end
    knobs = {k: params[k] for k in spec.knobs}
    cols: dict[str, list] = {c: [] for c in ("n", "estimator", "route", "metric", "value", "converged", "wall_time")}
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
    values: dict[int, tuple[Policy, dict]] = {}
    for i, n in enumerate(spec.sizes):
        counts = None
        for k, est in enumerate(spec.estimators):
            if paths.get(k) is not None:
                res = paths[k][i]
                wall = res.wall_time
            else:
                counts = data_of(n) if counts is None else counts
                res, wall = _fit_cell(spec, inst, est, counts, (seed, 2, n, k))
            label, route, conv = est["label"], est["route"], bool(res.converged)
            known = _known_metrics(res.policy, values, cache, world, n_policy_metrics)  # {metric: value} of π̂
            for m, v in _metric_values(res, inst, is_policy, known):
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
