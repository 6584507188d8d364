r"""The sweep signatures of genver's built-in estimators and metrics, named by the entries of
:mod:`genver.experiments.registry`:

* ``fit(instance, counts, rng, options) -> FitResult`` — one estimator on one data set
  (``counts``: :class:`~genver.preferences.PairCounts`; ``rng``: the cell's generator);
* ``path(instance, stream, sizes, options, cache) -> list[FitResult] | None`` — the nested-sizes fast
  path of an estimator over finite classes (``None`` where it does not apply; ``cache``: the run's
  :class:`~genver.runcache.RunCache`);
* ``metric(π̂, instance)`` (policy metrics) or ``metric(r̂, instance)`` (reward metrics): implemented
  in :mod:`genver.experiments.adapters_metrics` and re-exported here.
"""
from __future__ import annotations

import numpy as np

from ..classes import induced_reward_class
from ..estimators import dpo, dpo_path, ipo, reward_mle, rl_step, rm_rl, rm_rl_path, sft
from ..estimators.gradient import dpo_gd
from ..estimators.imitation import Demonstrations
from ..estimators.online import dpo_2x, online_dpo, policy_gradient
from ..preferences import PairCounts
from .adapters_metrics import (  # re-exported: the registry names them as genver.experiments.adapters:<name>
    bon_reward,
    bt_loglik,
    bt_loglik_opt,
    expected_reward,
    kl_to_optimal,
    kl_to_reference,
    optimal_mass,
    suboptimality,
    win_rate,
)

__all__ = ["fit_dpo", "fit_dpo_restricted", "fit_dpo_2x", "fit_dpo_gd", "fit_ipo", "fit_sft_preferred", "fit_rm_rl",
           "fit_online_dpo", "fit_policy_gradient", "fit_oracle_rl", "fit_reward_mle", "path_dpo",
           "path_dpo_restricted", "path_rm_rl",
           # the metrics (genver.experiments.adapters_metrics)
           "optimal_mass", "bt_loglik_opt", "bon_reward", "suboptimality", "kl_to_optimal", "kl_to_reference",
           "expected_reward", "win_rate", "bt_loglik"]


# -- estimators ------------------------------------------------------------------------------
def _l2(o):
    return o.get("l2")


def fit_dpo(inst, data, rng, o):
    """DPO over ``Π`` (:func:`genver.estimators.dpo`): the offline route's likelihood fit.

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (unused).
    o : dict
        the estimator's options from the spec: ``l2`` (ridge weight, or None).

    Returns
    -------
    FitResult
        the fit.
    """
    return dpo(data, inst.policy_class, inst.ref, inst.beta, l2=_l2(o))


def fit_dpo_restricted(inst, data, rng, o):
    """DPO over the restricted class ``Π(R)`` (:func:`genver.estimators.dpo`); a ``ValueError`` when
    the generator has none.

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (unused).
    o : dict
        the estimator's options from the spec: ``l2``.

    Returns
    -------
    FitResult
        the fit.
    """
    if inst.restricted_class is None:
        raise ValueError("dpo_restricted: this generator has no restricted class Π(R)")
    return dpo(data, inst.restricted_class, inst.ref, inst.beta, l2=_l2(o))


def fit_dpo_2x(inst, data, rng, o):
    """DPO over ``Π`` with twice the data (:func:`genver.estimators.online.dpo_2x`).

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (unused).
    o : dict
        the estimator's options from the spec: ``l2``.

    Returns
    -------
    FitResult
        the fit.
    """
    return dpo_2x(data, inst.policy_class, inst.ref, inst.beta, l2=_l2(o))


def fit_dpo_gd(inst, data, rng, o):
    """DPO over ``Π`` by gradient descent (:func:`genver.estimators.gradient.dpo_gd`).

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (unused).
    o : dict
        the estimator's options from the spec: ``steps`` (100), ``lr`` (1.0), ``l2``, ``normalise``
        (False).

    Returns
    -------
    FitResult
        the fit.
    """
    return dpo_gd(data, inst.policy_class, inst.ref, inst.beta, steps=o.get("steps", 100), lr=o.get("lr", 1.0),
                  l2=_l2(o), normalise=o.get("normalise", False))


def fit_ipo(inst, data, rng, o):
    """IPO over ``Π`` (:func:`genver.estimators.ipo`).

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (unused).
    o : dict
        the estimator's options from the spec: ``tau`` (1.0), ``average`` (``"sequence"``), ``l2``.

    Returns
    -------
    FitResult
        the fit.
    """
    return ipo(data, inst.policy_class, inst.ref, inst.beta, tau=o.get("tau", 1.0),
               average=o.get("average", "sequence"), l2=_l2(o))


class _CountDemonstrations(Demonstrations):
    """Demonstrations given by (possibly fractional) counts ``C(x, y)``."""

    _C: np.ndarray  # the (P, T) counts (set in __init__: the dataclass is frozen)

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
    """SFT on the preferred completions (:func:`genver.estimators.sft`), their counts ``C(x, y⁺)``
    taken as demonstrations.

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (unused).
    o : dict
        the estimator's options from the spec: ``l2``.

    Returns
    -------
    FitResult
        the fit, ``estimator = "sft_preferred"``.
    """
    sp = data.space
    C = np.bincount(data.pos_flat, weights=data.count, minlength=sp.P * sp.T).reshape(sp.shape)
    res = sft(_CountDemonstrations(sp, C), inst.policy_class, inst.ref, inst.beta, l2=_l2(o))
    res.estimator = "sft_preferred"
    return res


def _prompt_weights_of(data: PairCounts) -> np.ndarray:
    w = np.bincount(data.x, weights=data.count, minlength=data.space.P)
    return w / w.sum()


def fit_rm_rl(inst, data, rng, o):
    """Reward MLE over ``R``, then exact soft RL over ``Π`` (:func:`genver.estimators.rm_rl`): the
    online route.

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (unused).
    o : dict
        the estimator's options from the spec: ``l2``; ``rl_prompts`` (``"all"``: RL on ``ρ``, else
        on the prompts' share in the data).

    Returns
    -------
    FitResult
        the fit.
    """
    mode = o.get("rl_prompts", "all")
    rho = inst.prompt_weights if mode == "all" else _prompt_weights_of(data)
    return rm_rl(data, inst.reward_class, inst.policy_class, inst.ref, inst.beta, l2=_l2(o), prompt_weights=rho)


def fit_online_dpo(inst, data, rng, o):
    """Reward MLE over ``R``, then online DPO rounds labelled by ``r̂`` (or ``r*``)
    (:func:`genver.estimators.online.online_dpo`).

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (draws the online samples).
    o : dict
        the estimator's options from the spec: ``l2``, ``label_source`` (``"fitted"``), ``start``
        (``"ref"`` | ``"dpo"``), ``K``, ``rounds``, ``pairs_per_round``, ``labels``.

    Returns
    -------
    FitResult
        the fit, with ``reward = r̂``.
    """
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
    """Reward MLE over ``R``, then policy-gradient RL on ``r̂``
    (:func:`genver.estimators.online.policy_gradient`).

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (draws the policy-gradient samples).
    o : dict
        the estimator's options from the spec: ``l2``, ``steps`` (200), ``lr`` (0.5), ``K`` (8),
        ``exact``, ``normalise``.

    Returns
    -------
    FitResult
        the fit.
    """
    r_hat = reward_mle(data, inst.reward_class, l2=_l2(o)).reward
    return policy_gradient(r_hat, inst.policy_class, inst.ref, inst.beta, steps=o.get("steps", 200),
                           lr=o.get("lr", 0.5), K=o.get("K", 8), exact=o.get("exact", False),
                           normalise=o.get("normalise", False), prompt_weights=inst.prompt_weights,
                           random_state=rng)


def fit_oracle_rl(inst, data, rng, o):
    """Exact soft RL over ``Π`` on the true reward ``r*`` (:func:`genver.estimators.rl_step`): the
    data-free reference.

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (unused).
    o : dict
        the estimator's options from the spec (none used).

    Returns
    -------
    FitResult
        the fit, ``estimator = "oracle_rl"``.
    """
    res = rl_step(inst.reward_true, inst.policy_class, inst.ref, inst.beta, inst.prompt_weights)
    res.estimator = "oracle_rl"
    return res


def fit_reward_mle(inst, data, rng, o):
    """Reward MLE (:func:`genver.estimators.reward_mle`) over the verifier class ``R`` or the class
    ``Π`` induces.

    Parameters
    ----------
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ`` and the classes ``Π``, ``R``
        (:class:`genver.experiments.generators.Instance`).
    data : PairCounts
        the labelled pairs of the cell.
    rng : numpy.random.Generator
        the cell's generator (unused).
    o : dict
        the estimator's options from the spec: ``l2``, ``reward_class`` (``"verifier"``: ``R``, else
        ``{β log π/π_ref : π ∈ Π}``).

    Returns
    -------
    FitResult
        the fit.
    """
    which = o.get("reward_class", "verifier")
    cls = inst.reward_class if which == "verifier" else induced_reward_class(inst.policy_class, inst.ref, inst.beta)
    return reward_mle(data, cls, l2=_l2(o))


def path_dpo(inst, data, sizes, o, cache=None, cls=None):
    """DPO at every size along one stream (:func:`genver.estimators.dpo_path`), over a finite class.

    Parameters
    ----------
    inst : Instance
        the world and its classes.
    data : Preferences
        the unit's stream of ``max(sizes)`` pairs; size ``n`` is its first ``n`` pairs.
    sizes : list of int
        the increasing sample sizes ``n``.
    o : dict
        the estimator's options from the spec.
    cache : RunCache or None
        the run's :class:`~genver.runcache.RunCache` (None: nothing is kept).
    cls : PolicyClass or None
        the class to fit (default: ``inst.policy_class``).

    Returns
    -------
    list of FitResult or None
        one fit per size, or None where the fast path does not apply (the cells are then fitted one
        by one).
    """
    cls = inst.policy_class if cls is None else cls
    if cls.as_finite() is None:
        return None
    return dpo_path(data, sizes, cls, inst.ref, inst.beta, cache=cache)


def path_dpo_restricted(inst, data, sizes, o, cache=None):
    """DPO over ``Π(R)`` at every size along one stream (None without a restricted class).

    Parameters
    ----------
    inst : Instance
        the world and its classes.
    data : Preferences
        the unit's stream of ``max(sizes)`` pairs; size ``n`` is its first ``n`` pairs.
    sizes : list of int
        the increasing sample sizes ``n``.
    o : dict
        the estimator's options from the spec.
    cache : RunCache or None
        the run's :class:`~genver.runcache.RunCache` (None: nothing is kept).

    Returns
    -------
    list of FitResult or None
        one fit per size, or None where the fast path does not apply (the cells are then fitted one
        by one).
    """
    return None if inst.restricted_class is None else path_dpo(inst, data, sizes, o, cache, inst.restricted_class)


def path_rm_rl(inst, data, sizes, o, cache=None):
    """Reward MLE + soft RL at every size along one stream (:func:`genver.estimators.rm_rl_path`), for
    a finite ``R`` with RL on ``ρ``.

    Parameters
    ----------
    inst : Instance
        the world and its classes.
    data : Preferences
        the unit's stream of ``max(sizes)`` pairs; size ``n`` is its first ``n`` pairs.
    sizes : list of int
        the increasing sample sizes ``n``.
    o : dict
        the estimator's options from the spec.
    cache : RunCache or None
        the run's :class:`~genver.runcache.RunCache` (None: nothing is kept).

    Returns
    -------
    list of FitResult or None
        one fit per size, or None where the fast path does not apply (the cells are then fitted one
        by one).
    """
    if o.get("rl_prompts", "all") != "all" or inst.reward_class.as_finite() is None:
        return None
    return rm_rl_path(data, sizes, inst.reward_class, inst.policy_class, inst.ref, inst.beta,
                      prompt_weights=inst.prompt_weights, cache=cache)
