r"""Instance generators: the class pairs whose generation–verification gap the sweeps dial.

Each generator takes validated parameters and two random generators and returns an
:class:`Instance`: the world (``TreeSpace``, ``π_ref``, ``β``, ``r*``, prompt weights ``ρ``,
sampling policy ``μ``), the verifier class ``R``, the generator class ``Π`` and, where it is
smaller than ``Π``, the restricted class ``Π(R)``.

=================  =============================================================================
``finite_gap``     ``R`` = ``K_R`` random reward tables (entries ``N(0, scale²)``), ``r* ∈ R``;
                   ``Π = Π(R) ∪ D`` with ``|D| = n_distractors`` soft-optimal policies of other
                   random tables. Gap ``log(|Π|/|R|)``; none at ``|D| = 0`` (Theorem 2.2).
``linear_gap``     ``R = {w·φ}`` with named trajectory features (non-additive by default),
                   ``r* = w*·φ``, ``w* ~ N(0, w_scale²)`` (with ``normalise_reward``, rescaled so
                   the per-prompt spread of ``r*`` is ``w_scale``); ``Π`` = tabular class with
                   ``P(V**H − 1)`` parameters. The gap grows with ``H`` (``gap_horizon``) and
                   closes as ``φ`` spans every reward (``gap_verifier``).
``additive_target``  ``r*(x, y) = −scale·Hamming(y, t_x)`` for a hidden per-prompt target ``t``;
                   ``R`` = additive rewards (position-token features), ``Π`` = the position-token
                   log-linear class over a uniform ``π_ref``: isomorphic classes, no gap
                   (the ROUGE-L analogue).
``linear_bandit``  Li, Xu, Yu (2023): a contextual bandit (``H = 1``, ``V = 4`` actions) whose
                   context ``s ~ U[0, 1]`` is **discretised** to the ``P`` grid midpoints
                   ``s_x = (x + ½)/P`` (uniform ``ρ``); ``φ(s, a) = [(a+1) cos πs, sin πs/(a+1)]``,
                   ``r* = θ*·φ`` (``theta_star``, default ``[1, 2]``), ``R = {w·φ}``; ``Π`` =
                   log-linear ``π_θ(a|s) ∝ π_ref(a|s) exp(θ·ψ(s, a))`` with ``ψ = φ``
                   (``policy_features = "matched"``: ``R = R(Π)``) or sin/cos swapped,
                   ``ψ = [(a+1) sin πs, cos πs/(a+1)]`` (``"swapped"``: the misspecification
                   switch); uniform ``π_ref``.
``peaked_bandit``  Tajwar et al. (2024): one prompt, ``V`` actions (``H = 1``), ``π_ref`` a
                   discretised Gaussian around action ``ref_mode`` (width ``ref_width``; all
                   data come from it), ``r*(a) = −scale·((a − peak)/(V − 1))²``; ``R`` =
                   quadratic rewards ``{w·[a/(V−1), (a/(V−1))²]}`` (a global verifier that
                   extrapolates, ``r* ∈ R``), ``Π`` = tabular.
``dichotomy``      Shi et al. (2025): one bandit prompt per ``x`` (``H = 1``), a per-prompt
                   orthonormal basis ``q_0 = const, q_1, q_2, q_3, …`` of ``ℝ^T``;
                   ``r* = w_scale·(c_1 q_1 + c_2 q_2)`` with ``c ~ N(0, I)``. The reward class
                   is linear on ``[q_1, q_2]`` (realisable) or ``[q_1, q_3]`` (misspecified),
                   the policy class log-linear on the same choice of features (``π*_{r*} ∈ Π``
                   iff realisable); ``case`` = ``none`` | ``policy`` | ``reward`` | ``both``
                   names what is misspecified (``both``: ``R = R(Π)``, both misspecified).
``long_linear``    beyond enumeration (e.g. ``V = 16, H = 8``): ``linear_gap``'s features on a
                   position-wise reference, no tables; only neural estimators, evaluated by
                   Monte-Carlo estimates with standard errors (:mod:`genver.neural.long`)
``sparse_reward``  Shi et al. (2025), statistical part: one prompt, ``V`` actions (``H = 1``),
                   Gaussian features ``φ ∈ ℝ^d`` (unit-norm columns), ``r* = Σ_{j∈S} ±s φ_j``
                   with ``|S| = k``; ``R`` = every such ``k``-sparse signed reward
                   (finite, ``log|R| = log(C(d, k) 2^k)``); ``Π`` = the dense log-linear family
                   ``π_θ ∝ π_ref exp(θ·φ)`` (``d`` parameters), which does not know the sparsity.
=================  =============================================================================

Optional parameters (schema default ``None``) enter a setting's parameters — and so its
``setting_id`` — only when a spec sets them; the others always do. Every generator accepts:

* ``data_prompts`` (optional int ``k``): labelled pairs are drawn only from prompts
  ``0..k−1`` (uniformly; ``Instance.data_prompt_weights``) while the RL step and every metric
  use all prompts with ``ρ`` (prompt augmentation; Li et al.'s extra unlabelled states).

Randomness: ``instance_rng`` draws the world and classes in a fixed order (reference, reward
class, true reward, distractors), so settings that differ only in a later knob (e.g. the number
of distractors) share everything drawn before it — common random numbers across the sweep.
Every generator is called as ``fn(params, rng, *, cache=None)``. Given a run's
:class:`~genver.runcache.RunCache`, ``finite_gap`` memoises its instance on (parameters,
generator state) — the same call returns the same classes (in a fresh :class:`Instance`) and
leaves the generator where the draws would have — and its distractor pools; without one it
draws everything afresh and keeps nothing.
"""
from __future__ import annotations

import inspect
from dataclasses import replace

import numpy as np

from ..classes import (
    FinitePolicyClass,
    FiniteRewardClass,
    LinearRewardClass,
    LogLinearPolicyClass,
    SoftOptimalPolicyClass,
    TabularPolicyClass,
    random_reward_class,
)
from ..features import token_features, trajectory_features
from ..neural.long import LongWorld  # numpy only
from ..policy import random_policy, uniform_policy
from ..runcache import RunCache, cache_key
from ..spaces import TreeSpace
from .generators_literature import dichotomy, linear_bandit, peaked_bandit, sparse_reward
from .instance import Instance

__all__ = ["Instance", "describe", "with_data_prompts", "without_cache", "finite_gap", "linear_gap", "additive_target",
           "linear_bandit", "peaked_bandit", "dichotomy", "sparse_reward"]


def _world(p, rng):
    sp = TreeSpace(p["P"], p["V"], p["H"])
    if p.get("uniform_ref", False):
        ref = uniform_policy(sp)
    else:
        ref = random_policy(sp, rng, concentration=p["ref_concentration"])
    return sp, ref


def _sampler(p, sp, ref, rng):
    c = p.get("sampler_concentration", 0.0)
    return ref if not c else random_policy(sp, rng, concentration=c)


def _finite_gap(p, rng, cache: RunCache | None = None) -> Instance:
    sp, ref = _world(p, rng)
    R = random_reward_class(sp, p["K_R"], rng, scale=p["scale"])
    r_star = R.member(0)
    Pi_R = FinitePolicyClass.soft_optimal_of(R, ref, p["beta"])
    Pi = _nested_distractors(p, Pi_R, ref, rng, cache)
    return Instance(sp, ref, p["beta"], r_star, R, Pi, restricted_class=Pi_R, sampler=_sampler(p, sp, ref, rng))


def _nested_distractors(p, Pi_R, ref, rng, cache: RunCache | None):
    """``Π(R) ∪ D`` with ``|D| = n_distractors``. The distractors are drawn in order from the
    generator, so settings that differ only in ``n_distractors`` have nested classes: ``D`` for
    fewer distractors is a prefix of ``D`` for more, and every class of a seed carries one
    lineage token (``FinitePolicyClass.lineage``: a digest of the parameters but
    ``n_distractors`` and of the generator state before the draws). Within a run (``cache``,
    memo ``"distractor_pools"``) the largest class built for a seed is kept; a setting with at
    least as many distractors extends it by the missing draws, continuing from the generator
    state it left (the same draws, the same state after), so the likelihood paths and RL parts
    of the members they share are computed once. A setting with fewer distractors than the kept
    class is drawn afresh (same values, same token)."""
    n = p["n_distractors"]
    kw = {"ref": ref, "beta": p["beta"], "scale": p["scale"]}
    key = cache_key("finite_gap lineage", {k: v for k, v in p.items() if k != "n_distractors"}, rng)
    pool = None if cache is None else cache.get("distractor_pools", key)
    if pool is not None and pool[0].size - Pi_R.size <= n:
        base, state = pool
        rng.bit_generator.state = state
        Pi = base.with_distractors(n - (base.size - Pi_R.size), rng, lineage=key, **kw)
    else:
        Pi = Pi_R.with_distractors(n, rng, lineage=key, **kw)
    if cache is not None and n and (pool is None or Pi.size > pool[0].size):
        cache.put("distractor_pools", key, (Pi, rng.bit_generator.state), Pi.logp.nbytes)
    return Pi


def _instance_bytes(inst: Instance) -> int:
    # the policy class's log-probs, twice: its RL parts (π and KL) are cached on it when used
    R = inst.reward_class
    tables = R.tables.nbytes if isinstance(R, FiniteRewardClass) else 0
    return 2 * getattr(inst.policy_class, "logp", np.empty(0)).nbytes + tables


def finite_gap(p, rng, *, cache: RunCache | None = None) -> Instance:
    """The ``finite_gap`` instance. Given a run's ``cache`` it is memoised (memo
    ``"instances"``) on ``(parameters, generator state) -> (instance, generator state after)``:
    a sweep builds each setting's seed-0 instance up to three times (the spec check, the
    settings table, the unit); a hit returns a fresh :class:`Instance` sharing the immutable
    classes and policies (so their per-reference RL parts are computed once) and leaves the
    caller's generator in the state the generation would have left it. Without a cache the
    instance is drawn afresh.

    Parameters
    ----------
    p : dict
        the setting's full parameters (the schema of its
        :data:`genver.experiments.registry.GENERATORS` entry, defaults filled in).
    rng : numpy.random.Generator
        the instance's generator (``spawn_key = (seed, 0)``), drawn in a fixed order.
    cache : RunCache or None
        the run's :class:`~genver.runcache.RunCache` (None: nothing is kept).

    Returns
    -------
    Instance
        the world, ``R``, ``Π`` and ``Π(R)``.
    """
    if cache is None:
        return _finite_gap(p, rng)
    key = cache_key("finite_gap", p, rng)
    hit = cache.get("instances", key)
    if hit is None:
        inst = _finite_gap(p, rng, cache)
        cache.put("instances", key, (inst, rng.bit_generator.state), _instance_bytes(inst))
    else:
        inst, state = hit
        rng.bit_generator.state = state
    return replace(inst, extra=dict(inst.extra))


def _per_prompt(phi):
    """Block-diagonal replication: separate weights for every prompt."""
    P, T, d = phi.shape
    out = np.zeros((P, T, P * d))
    for x in range(P):
        out[x, :, x * d : (x + 1) * d] = phi[x]
    return out


def linear_gap(p, rng) -> Instance:
    """The ``linear_gap`` instance (module docstring): linear ``R`` on trajectory features, tabular
    ``Π``.

    Parameters
    ----------
    p : dict
        the setting's full parameters (the schema of its
        :data:`genver.experiments.registry.GENERATORS` entry, defaults filled in).
    rng : numpy.random.Generator
        the instance's generator (``spawn_key = (seed, 0)``), drawn in a fixed order.

    Returns
    -------
    Instance
        the world, ``R``, ``Π`` and ``Π(R)``.
    """
    sp, ref = _world(p, rng)
    specs = [(f, {"d": p["d"]}) if f in ("random_gaussian", "random_orthonormal") else f for f in p["features"]]
    phi = trajectory_features(sp, specs, rng)
    if p["per_prompt"]:
        phi = _per_prompt(phi)
    R = LinearRewardClass(sp, phi)
    w_star = p["w_scale"] * rng.standard_normal(R.n_params)
    if p["normalise_reward"]:  # per-completion spread of r* (centred per prompt) = w_scale
        r = R.reward(w_star)
        spread = float(np.sqrt(np.mean((r - r.mean(axis=1, keepdims=True)) ** 2)))
        w_star = w_star * (p["w_scale"] / spread) if spread > 0 else w_star
    return Instance(sp, ref, p["beta"], R.reward(w_star), R, TabularPolicyClass(sp),
                    restricted_class=SoftOptimalPolicyClass(R, ref, p["beta"]),
                    sampler=_sampler(p, sp, ref, rng), extra={"w_star": w_star})


def additive_target(p, rng) -> Instance:
    """The ``additive_target`` instance (module docstring): a hidden per-prompt target, isomorphic
    additive ``R`` and log-linear ``Π``.

    Parameters
    ----------
    p : dict
        the setting's full parameters (the schema of its
        :data:`genver.experiments.registry.GENERATORS` entry, defaults filled in).
    rng : numpy.random.Generator
        the instance's generator (``spawn_key = (seed, 0)``), drawn in a fixed order.

    Returns
    -------
    Instance
        the world, ``R``, ``Π``.
    """
    sp = TreeSpace(p["P"], p["V"], p["H"])
    ref = uniform_policy(sp)
    hamming = trajectory_features(sp, "hamming", rng)[..., 0]
    r_star = p["scale"] * hamming
    R = LinearRewardClass(sp, trajectory_features(sp, "position_token"))
    Pi = LogLinearPolicyClass(sp, ref, token_features(sp, "position_token"))
    return Instance(sp, ref, p["beta"], r_star, R, Pi, sampler=_sampler(p, sp, ref, rng))



def with_data_prompts(fn):
    """``fn`` with the optional ``data_prompts`` parameter applied after it ran (every enumerable
    generator of :data:`genver.experiments.registry.GENERATORS` is wrapped so); the result is
    called as ``gen(params, rng, *, cache=None)`` (the cache reaches generators that take one).

    Parameters
    ----------
    fn : callable
        a generator ``fn(params, rng)`` or ``fn(params, rng, *, cache=None)``.

    Returns
    -------
    callable
        ``gen(params, rng, *, cache=None) -> Instance``.
    """
    takes_cache = "cache" in inspect.signature(fn).parameters

    def gen(p, rng, *, cache: RunCache | None = None) -> Instance:
        inst = fn(p, rng, cache=cache) if takes_cache else fn(p, rng)
        k = p.get("data_prompts")
        if k is not None:
            P = inst.space.P
            if not 1 <= k <= P:
                raise ValueError(f"data_prompts must lie in [1, P = {P}], got {k}")
            w = np.zeros(P)
            w[:k] = 1.0 / k
            inst.data_prompt_weights = w
        return inst

    gen.__name__ = fn.__name__
    gen.__doc__ = fn.__doc__
    return gen


def without_cache(fn):
    """``fn(params, rng)`` called as every generator is, ``(params, rng, *, cache=None)``.

    Parameters
    ----------
    fn : callable
        a generator ``fn(params, rng)`` (the cache is not passed on).

    Returns
    -------
    callable
        ``gen(params, rng, *, cache=None) -> Instance``.
    """
    def gen(p, rng, *, cache: RunCache | None = None):
        return fn(p, rng)

    gen.__name__ = fn.__name__
    gen.__doc__ = fn.__doc__
    return gen


def _log_size(cls) -> float:
    return float(np.log(cls.size)) if cls.size else np.nan


def describe(inst: Instance | LongWorld, n_probe: int = 3, random_state=0) -> dict:
    """Gap descriptors: log-size / identifiable parameter counts of ``R``, ``Π(R)`` and ``Π``; the
    largest reverse-KL residual of projecting ``π*_r`` (``r`` drawn from ``R``) onto ``Π`` — 0 when
    ``Π(R) ⊆ Π``; and the ratio the finite-class bound predicts, ``log|Π| / log|R|`` (or
    ``dim Π / dim R`` for parametric classes, ``dim Π / log|R|`` for a finite ``R`` and a
    parametric ``Π``). A sampled world (:class:`genver.neural.long.LongWorld`) gives its own.

    Parameters
    ----------
    inst : Instance or LongWorld
        the world.
    n_probe : int
        rewards ``r`` drawn from ``R`` for the containment residual.
    random_state : int or numpy.random.Generator
        the draws' seed.

    Returns
    -------
    dict
        ``log_size_R``, ``log_size_Pi``, ``n_params_R``, ``n_params_Pi`` (NaN where undefined),
        ``log_size_Pi_R`` (with a restricted class), ``predicted_ratio`` and
        ``containment_residual``: the settings table's descriptor columns.
    """
    if isinstance(inst, LongWorld):  # a sampled world describes itself
        return inst.describe()
    R, Pi = inst.reward_class, inst.policy_class
    rng = np.random.default_rng(random_state)
    # parameters the data can see (genver.classes.base): a linear R the rank of its per-prompt-centred
    # features, a log-linear Π without the softmax-invisible directions
    n_R, n_Pi = R.identifiable_dim, Pi.identifiable_dim
    out = {"log_size_R": _log_size(R), "log_size_Pi": _log_size(Pi),
           "n_params_R": float(n_R) if n_R else np.nan,
           "n_params_Pi": float(n_Pi) if n_Pi else np.nan}
    if inst.restricted_class is not None:
        out["log_size_Pi_R"] = _log_size(inst.restricted_class)
    if np.isfinite(out["log_size_R"]) and np.isfinite(out["log_size_Pi"]) and out["log_size_R"] > 0:
        out["predicted_ratio"] = out["log_size_Pi"] / out["log_size_R"]
    elif np.isfinite(out["n_params_R"]) and np.isfinite(out["n_params_Pi"]):
        out["predicted_ratio"] = out["n_params_Pi"] / out["n_params_R"]
    elif np.isfinite(out["log_size_R"]) and out["log_size_R"] > 0 and np.isfinite(out["n_params_Pi"]):
        out["predicted_ratio"] = out["n_params_Pi"] / out["log_size_R"]  # finite R, parametric Π
    else:
        out["predicted_ratio"] = np.nan
    residual = 0.0
    for _ in range(n_probe):
        r = R.draw(rng)
        residual = max(residual, Pi.rl_argmax(r, inst.ref, inst.beta, inst.prompt_weights).residual_kl)
    out["containment_residual"] = residual
    return out
