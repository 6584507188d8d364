r"""The one registry of genver's sweeps: every estimator, metric and instance generator a spec
can name, with its callable and its schema. Spec validation (:mod:`genver.experiments.spec`),
the units (:mod:`genver.experiments.cells`), the runner and the CLI read these tables; adding an
estimator, a metric or a generator is one entry here (plus its function, in one module).

Callables are named by ``"module:attribute"`` strings (as gymnasium's ``entry_point``) or given
directly, and imported on first use: this module imports neither numba nor PyTorch, so a spec
is validated — and a missing optional extra reported — before any work. The built-in
estimators' and metrics' sweep signatures are in :mod:`genver.experiments.adapters`.

* :data:`ESTIMATORS` — ``name -> EstimatorEntry(name, target, options, route, reward_only,
  path_target, neural, cli)``; ``entry.fit`` is ``fit(instance, counts, rng, options) -> FitResult``, ``options`` the
  schema of its
  spec keys (``{option: type or frozenset of allowed strings}``), ``route`` its default route
  (``offline`` | ``online`` | ``other``), ``reward_only`` for estimators without a policy,
  ``entry.path(instance, stream, sizes, options, cache)`` an optional nested-sizes fast path (one
  ``FitResult`` per size, equal to the per-size fits, or ``None`` where it does not apply) and
  ``neural`` for the PyTorch estimators (imported on first use: ``torch`` is an optional extra,
  so their entries validate without it); ``cli`` marks the estimators ``genver fit`` offers.
* :data:`METRICS` — ``name -> MetricEntry(name, kind, target)``: ``kind`` = ``policy``
  (``entry.fn(π̂, instance)``), ``reward`` (``entry.fn(r̂, instance)``) or ``fit`` (read from
  ``FitResult.extra``, no function);
  :func:`metric_entry` also resolves the family ``bon_reward@N``.
* :data:`GENERATORS` — ``name -> GeneratorEntry(name, target, params, max_entries)``:
  ``entry.fn(params, rng, *, cache=None) -> Instance`` (:mod:`genver.experiments.generators`), ``params`` the
  schema ``{parameter: (type, default)}`` (default ``None``: optional), ``max_entries`` the
  ``TreeSpace.max_entries`` of worlds without tables (``None``: enumerable).

Estimators (:data:`ESTIMATORS`; ``name``: what runs, with the instance's classes ``R``, ``Π``, ``Π(R)``):

====================  ============================================================================
``dpo``               offline MLE over ``Π``
``dpo_restricted``    offline MLE over ``Π(R)`` (proper learning; equals ``rm_rl`` by Theorem 3.1)
``dpo_2x``            DPO on doubled counts (the "two epochs" control)
``dpo_gd``            budget-limited DPO: ``steps`` gradient-ascent steps of size ``lr`` on the
                      mean tabular DPO objective from ``π_ref`` (``normalise``: steps of max-abs
                      size ``lr``; :mod:`genver.estimators.gradient`)
``ipo``               IPO over ``Π`` (options ``tau``, ``average``)
``sft_preferred``     SFT on the preferred completions only (filtered supervised learning, no
                      negative gradient; :func:`genver.estimators.sft` over ``Π``)
``rm_rl``             reward MLE over ``R``, then exact RL over ``Π`` (the online route); option
                      ``rl_prompts`` = ``all`` (RL on ``ρ``, default) | ``data`` (RL only on the
                      empirical prompt distribution of the pairs: no unlabelled prompts)
``online_dpo``        reward MLE over ``R``, then online DPO over ``Π`` labelled by ``r̂`` (options
                      ``K``, ``rounds``, ``pairs_per_round``, ``labels`` = top_bottom |
                      bradley_terry | all_pairs, ``start`` = ref | dpo, ``label_source`` = fitted
                      (``r̂``, default) | true (fresh Bradley–Terry labels from ``r*`` on the
                      on-policy pairs: online preference queries))
``policy_gradient``   reward MLE over ``R``, then KL-regularised policy gradient (options ``steps``,
                      ``lr``, ``K``, ``exact``, ``normalise``)
``oracle_rl``         exact RL over ``Π`` against ``r*`` itself: ``argmax_{π∈Π} J_β(π; r*)``, the
                      best policy in ``Π``. It is the population fixed point of online DPO with
                      the PILAF sampler and ``r*``-labelled on-policy pairs (Shi et al. 2025,
                      Theorem 2: that loss's gradient is the gradient of ``J_β(·; r*)``), i.e. with
                      unlimited preference queries — a reference, not a sample-size competitor
``reward_mle``        a reward model only (no policy): reward MLE over ``R`` (``reward_class =
                      "verifier"``, the global RM) or over ``R(Π)`` (``"induced"``: the policy's own
                      reward class fitted as a reward, the local RM; finite or tabular ``Π``)
``neural_*``          the neural routes (``neural_dpo``, ``neural_rm_rl``, …;
                      :mod:`genver.neural.estimators`): a small transformer
                      trained by offline DPO / SFT, or a reward model (global, linear, local) then
                      REINFORCE-LOO or online DPO; its exact distribution is the fitted ``π̂``. They
                      run on the sweep's ``device`` (``genver run --device``)
====================  ============================================================================

Metrics (:data:`METRICS`): *policy* metrics evaluate ``π̂`` and are skipped (no row) for
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

import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from ..neural.long import LONG_SCHEMA, NO_TABLES  # numpy only

__all__ = ["EstimatorEntry", "MetricEntry", "GeneratorEntry", "ESTIMATORS", "METRICS", "GENERATORS",
           "register_estimator", "default_route", "metric_entry", "metric_kind", "resolve"]


def resolve(target: str | Callable, what: str = "") -> Callable:
    """``target`` itself if callable, else the attribute named by ``"package.module:attribute"``
    (imported on first use, then remembered; an ImportError becomes a ``ValueError`` naming
    ``what`` and the extra to install).

    Parameters
    ----------
    target : str or callable
        the callable, or its ``"package.module:attribute"``.
    what : str
        what the target is (``"estimator dpo"``), named in the error.

    Returns
    -------
    callable
        the target.

    Examples
    --------
    >>> resolve("genver.experiments.adapters:fit_dpo").__name__
    'fit_dpo'
    """
    if callable(target):
        return target
    try:
        return _import(target)
    except ImportError as e:
        extra = " pip install 'genver[neural]'" if target.startswith("genver.neural") else ""
        raise ValueError(f"{what or target} needs a missing package:{extra} ({e})") from e


@functools.cache
def _import(target: str) -> Callable:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class EstimatorEntry:
    """One sweep estimator (see the module docstring)."""

    name: str
    target: str | Callable
    options: dict = field(default_factory=dict)
    route: str = "other"
    reward_only: bool = False
    path_target: str | Callable | None = None
    neural: bool = False
    #: offered by ``genver fit`` (one fit on an instance file's classes, :mod:`genver.cli`)
    cli: bool = False

    @property
    def fit(self) -> Callable:
        """``fit(instance, counts, rng, options) -> FitResult``."""
        return resolve(self.target, f"estimator {self.name}")

    @property
    def path(self) -> Callable | None:
        """``path(instance, stream, sizes, options, cache) -> list[FitResult] | None``, or None."""
        return None if self.path_target is None else resolve(self.path_target, f"estimator {self.name}")


@dataclass(frozen=True)
class MetricEntry:
    """One metric: ``kind`` is ``policy``, ``reward`` or ``fit`` (see the module docstring)."""

    name: str
    kind: str
    target: str | Callable | None = None

    @property
    def fn(self) -> Callable | None:
        """``fn(π̂, instance)`` (policy metrics) or ``fn(r̂, instance)`` (reward metrics) ->
        float; None for a ``fit`` metric (read from the fit itself).
        """
        return None if self.target is None else resolve(self.target, f"metric {self.name}")


@dataclass(frozen=True)
class GeneratorEntry:
    """One instance generator (see the module docstring); enumerable generators accept the
    optional ``data_prompts`` (:func:`genver.experiments.generators.with_data_prompts`)."""

    name: str
    target: str | Callable
    params: dict
    max_entries: int | None = None

    @functools.cached_property
    def fn(self) -> Callable:
        """``fn(params, rng, *, cache=None) -> Instance`` (``cache``: a run's
        :class:`~genver.runcache.RunCache`, passed to generators that take one); wrapped once
        per entry, not per instance built."""
        from .generators import with_data_prompts, without_cache
        fn = resolve(self.target, f"generator {self.name}")
        return with_data_prompts(fn) if "data_prompts" in self.params else without_cache(fn)


# -- estimators ----------------------------------------------------------------------------
_A = "genver.experiments.adapters:"
_N = "genver.neural.estimators:"
_L2 = {"l2": float}
#: the neural estimators' options (validated without PyTorch)
ARCH_OPTIONS = {"d_model": int, "n_layers": int, "n_heads": int}
TRAIN_OPTIONS = {"steps": int, "lr": float, "batch_size": int, "weight_decay": float, "compile": bool,
                 "schedule": frozenset({"constant", "linear"}), "optimizer": frozenset({"adamw", "lbfgs"}),
                 "stop": bool, "stop_window": int, "stop_tol": float, "gap_tol": float}
RM_OPTIONS = {"rm": frozenset({"global", "linear", "local"}), "rm_steps": int, "rl_steps": int, "K": int,
              "rm_optimizer": frozenset({"adamw", "lbfgs"}), "rm_l2": float}

#: name -> :class:`EstimatorEntry`
ESTIMATORS: dict[str, EstimatorEntry] = {}


def register_estimator(name: str, fit: str | Callable, options: dict | None = None, **kw) -> EstimatorEntry:
    """Add (or replace) the estimator ``name``: ``fit`` is its sweep function or its
    ``"module:attribute"``; ``options`` its option schema; ``kw`` the other fields of
    :class:`EstimatorEntry` (``route``, ``reward_only``, ``path_target``, ``neural``, ``cli``).

    Parameters
    ----------
    name : str
        the name specs use in ``[[estimators]] name``.
    fit : str or callable
        ``fit(instance, counts, rng, options) -> FitResult`` (:mod:`genver.experiments.adapters`),
        or its ``"module:attribute"`` (imported on first use).
    options : dict or None
        option name -> type (a Python type, a tuple of types, or a ``frozenset`` of allowed
        strings).
    **kw
        the other fields of :class:`EstimatorEntry`.

    Returns
    -------
    EstimatorEntry
        the entry, now in :data:`ESTIMATORS`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"estimator name must be a non-empty string, got {name!r}")
    entry = EstimatorEntry(name, fit, dict(options or {}), **kw)
    if entry.route not in ("offline", "online", "other"):
        raise ValueError(f"estimator {name}: route must be offline, online or other, got {entry.route!r}")
    ESTIMATORS[name] = entry
    return entry


register_estimator("dpo", _A + "fit_dpo", _L2, route="offline", path_target=_A + "path_dpo", cli=True)
register_estimator("dpo_restricted", _A + "fit_dpo_restricted", _L2, path_target=_A + "path_dpo_restricted")
register_estimator("dpo_2x", _A + "fit_dpo_2x", _L2, route="offline")
register_estimator("dpo_gd", _A + "fit_dpo_gd", {**_L2, "steps": int, "lr": float, "normalise": bool}, route="offline")
register_estimator("ipo", _A + "fit_ipo", {**_L2, "tau": float, "average": frozenset({"sequence", "token"})},
                   route="offline", cli=True)
register_estimator("sft_preferred", _A + "fit_sft_preferred", _L2, route="offline")
register_estimator("rm_rl", _A + "fit_rm_rl", {**_L2, "rl_prompts": frozenset({"all", "data"})}, route="online",
                   path_target=_A + "path_rm_rl", cli=True)
register_estimator("online_dpo", _A + "fit_online_dpo",
                   {**_L2, "K": int, "rounds": int, "pairs_per_round": int,
                    "labels": frozenset({"top_bottom", "bradley_terry", "all_pairs"}),
                    "start": frozenset({"ref", "dpo"}), "label_source": frozenset({"fitted", "true"})},
                   route="online")
register_estimator("policy_gradient", _A + "fit_policy_gradient",
                   {**_L2, "steps": int, "lr": float, "K": int, "exact": bool, "normalise": bool}, route="online")
register_estimator("oracle_rl", _A + "fit_oracle_rl")
register_estimator("reward_mle", _A + "fit_reward_mle", {**_L2, "reward_class": frozenset({"verifier", "induced"})},
                   reward_only=True, cli=True)
register_estimator("neural_dpo", _N + "neural_dpo", {**ARCH_OPTIONS, **TRAIN_OPTIONS}, route="offline", neural=True)
register_estimator("neural_sft_preferred", _N + "neural_sft_preferred", {**ARCH_OPTIONS, **TRAIN_OPTIONS},
                   route="offline", neural=True)
register_estimator("neural_rm_rl", _N + "neural_rm_rl",
                   {**ARCH_OPTIONS, **TRAIN_OPTIONS, **RM_OPTIONS, "rl": frozenset({"reinforce", "exact"}),
                    "polish_steps": int},
                   route="online", neural=True)
register_estimator("neural_online_dpo", _N + "neural_online_dpo",
                   {**ARCH_OPTIONS, **TRAIN_OPTIONS, **RM_OPTIONS, "rounds": int,
                    "labels": frozenset({"soft", "bradley_terry", "top_bottom"})}, route="online", neural=True)


def default_route(name: str) -> str:
    """The route of estimator ``name`` when a spec gives none.

    Parameters
    ----------
    name : str
        an estimator name.

    Returns
    -------
    str
        ``"offline"``, ``"online"`` or ``"other"`` (also for an unknown name).

    Examples
    --------
    >>> default_route("dpo"), default_route("rm_rl"), default_route("oracle_rl")
    ('offline', 'online', 'other')
    """
    return ESTIMATORS[name].route if name in ESTIMATORS else "other"


# -- metrics -------------------------------------------------------------------------------
#: name -> :class:`MetricEntry` (plus the family ``bon_reward@N``, :func:`metric_entry`)
METRICS: dict[str, MetricEntry] = {e.name: e for e in (
    *(MetricEntry(m, "policy", _A + m) for m in ("suboptimality", "kl_to_optimal", "kl_to_reference",
                                                 "expected_reward", "win_rate", "optimal_mass")),
    *(MetricEntry(m, "reward", _A + m) for m in ("bt_loglik", "bt_loglik_opt")),
    MetricEntry("opt_residual", "fit"),
)}
BON_METRIC = re.compile(r"^bon_reward@([1-9][0-9]*)$")


def metric_entry(name: str) -> MetricEntry | None:
    """The metric ``name`` (``bon_reward@N``: best-of-``N`` sampling ranked by ``r̂``), or None.

    Parameters
    ----------
    name : str
        a metric name of :data:`METRICS`, or ``bon_reward@N`` with ``N >= 1``.

    Returns
    -------
    MetricEntry or None
        the entry, or None for an unknown name.
    """
    if name in METRICS:
        return METRICS[name]
    m = BON_METRIC.match(name)
    if m is None:
        return None
    return MetricEntry(name, "reward", partial(resolve(_A + "bon_reward"), N=int(m.group(1))))


def metric_kind(name: str) -> str | None:
    """The kind of metric ``name``: ``"policy"``, ``"reward"`` or ``"fit"``; None when unknown.

    Parameters
    ----------
    name : str
        a metric name (``bon_reward@N`` included).

    Returns
    -------
    str or None
        the kind.

    Examples
    --------
    >>> metric_kind("suboptimality"), metric_kind("bon_reward@4"), metric_kind("opt_residual"), metric_kind("x")
    ('policy', 'reward', 'fit', None)
    """
    entry = metric_entry(name)
    return None if entry is None else entry.kind


# -- generators ----------------------------------------------------------------------------
_G = "genver.experiments.generators:"
_WORLD = {"P": (int, 4), "V": (int, 2), "H": (int, 4), "beta": (float, 1.0),
          "ref_concentration": (float, 1.0), "sampler_concentration": (float, 0.0)}
#: the optional parameter every enumerable generator accepts
_OPTIONAL = {"data_prompts": (int, None)}

#: name -> :class:`GeneratorEntry`
GENERATORS: dict[str, GeneratorEntry] = {e.name: e for e in (
    GeneratorEntry("finite_gap", _G + "finite_gap", {**_WORLD, "K_R": (int, 4), "n_distractors": (int, 0),
                                                     "scale": (float, 0.5), **_OPTIONAL}),
    GeneratorEntry("linear_gap", _G + "linear_gap", {**_WORLD, "P": (int, 1),
                                                     "features": (list, ["token_counts", "parity", "first_last_match"]),
                                                     "d": (int, 4), "per_prompt": (bool, False),
                                                     "w_scale": (float, 1.0), "normalise_reward": (bool, False),
                                                     "uniform_ref": (bool, False), **_OPTIONAL}),
    GeneratorEntry("additive_target", _G + "additive_target", {"P": (int, 4), "V": (int, 3), "H": (int, 4),
                                                               "beta": (float, 1.0), "scale": (float, 1.0),
                                                               "sampler_concentration": (float, 0.0), **_OPTIONAL}),
    GeneratorEntry("linear_bandit", _G + "linear_bandit", {"P": (int, 20), "V": (int, 4), "H": (int, 1),
                                                           "beta": (float, 0.01), "theta_star": (list, [1.0, 2.0]),
                                                           "policy_features": (str, "matched"), **_OPTIONAL}),
    GeneratorEntry("peaked_bandit", _G + "peaked_bandit", {"P": (int, 1), "V": (int, 100), "H": (int, 1),
                                                           "beta": (float, 0.1), "ref_mode": (int, 20),
                                                           "ref_width": (float, 10.0), "peak": (int, 80),
                                                           "scale": (float, 10.0), **_OPTIONAL}),
    GeneratorEntry("dichotomy", _G + "dichotomy", {"P": (int, 1), "V": (int, 8), "H": (int, 1), "beta": (float, 1.0),
                                                   "ref_concentration": (float, 1.0), "w_scale": (float, 1.0),
                                                   "case": (str, "none"), **_OPTIONAL}),
    GeneratorEntry("sparse_reward", _G + "sparse_reward", {"P": (int, 1), "V": (int, 64), "H": (int, 1),
                                                           "beta": (float, 1.0), "ref_concentration": (float, 1.0),
                                                           "d": (int, 16), "k": (int, 1), "scale": (float, 1.0),
                                                           **_OPTIONAL}),
    # beyond enumeration: a sampled world (no tables; its units are run and evaluated by the world
    # itself, Monte-Carlo estimates with standard errors; genver.neural.long)
    GeneratorEntry("long_linear", "genver.neural.long:long_linear", dict(LONG_SCHEMA), max_entries=NO_TABLES),
)}
