r"""The sweep signatures of genver's built-in metrics, named by the ``METRICS`` entries of
:mod:`genver.experiments.registry`: ``metric(π̂, instance)`` (policy metrics: ``ρ``-weighted
optimal mass, suboptimality ``J_β(π*) − J_β(π̂)``, ``KL(π̂‖π*)``, ``KL(π̂‖π_ref)``, expected
reward, win rate against ``π_ref``) or ``metric(r̂, instance)`` (reward metrics: the exact
expected Bradley–Terry log-likelihood of ``r̂`` on pairs from ``μ`` or from ``π*``, and the
expected ``r*`` of best-of-N from ``π_ref`` ranked by ``r̂``). Every value is exact, by
enumeration over the world (:mod:`genver.metrics`). The estimators' sweep signatures are in
:mod:`genver.experiments.adapters`, which re-exports these functions.
"""
from __future__ import annotations

import numpy as np

from .. import metrics as M
from .._validation import check_prompt_weights
from ..estimators import best_of_n
from ..softrl import soft_optimal

__all__ = ["optimal_mass", "bt_loglik_opt", "bon_reward", "suboptimality", "kl_to_optimal", "kl_to_reference",
           "expected_reward", "win_rate", "bt_loglik"]


def optimal_mass(pol, inst):
    """The ``ρ``-weighted mass ``π̂`` puts on each prompt's optimal completions (``r*`` within
    ``1e-12·max(1, max|r*|)`` of its maximum).

    Parameters
    ----------
    pol : Policy
        the fitted policy ``π̂``.
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ``.

    Returns
    -------
    float
        the mass, in ``[0, 1]``.
    """
    r = inst.reward_true
    top = r >= r.max(axis=1, keepdims=True) - 1e-12 * np.maximum(1.0, np.abs(r).max(axis=1, keepdims=True))
    mass = (pol.probs * top).sum(axis=1)
    return float(mass @ check_prompt_weights(inst.prompt_weights, inst.space.P))


def bt_loglik_opt(r, inst):
    """Exact expected per-pair Bradley–Terry log-likelihood of ``r̂`` on pairs drawn from ``π* =
    π*_{r*}`` (:func:`genver.metrics.expected_bt_loglik`).

    Parameters
    ----------
    r : numpy.ndarray
        the fitted reward ``r̂``, shape ``(P, T)``.
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ``.

    Returns
    -------
    float
        the expected log-likelihood (≤ 0).
    """
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
    """Expected true reward of best-of-``N`` sampling from ``π_ref`` ranked by ``r̂``
    (:func:`genver.estimators.best_of_n`; ties of ``r̂`` within rounding snapped to one level).

    Parameters
    ----------
    r : numpy.ndarray
        the fitted reward ``r̂``, shape ``(P, T)``.
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ``.
    N : int
        the number of samples ranked.

    Returns
    -------
    float
        ``E_{π_BoN}[r*]``.
    """
    pol = best_of_n(inst.ref, _snap_ties(r), N).policy
    return M.expected_reward(pol, inst.reward_true, inst.prompt_weights)


def suboptimality(pol, inst):
    """``J_β(π*; r*) − J_β(π̂; r*) = β E_x KL(π̂ ‖ π*_{r*})`` (:func:`genver.metrics.suboptimality`).

    Parameters
    ----------
    pol : Policy
        the fitted policy ``π̂``.
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ``.

    Returns
    -------
    float
        the suboptimality (≥ 0).
    """
    return M.suboptimality(pol, inst.reward_true, inst.ref, inst.beta, inst.prompt_weights, optimal=inst.optimal)


def kl_to_optimal(pol, inst):
    """``E_x KL(π̂ ‖ π*_{r*})`` (:func:`genver.metrics.kl_to_optimal`).

    Parameters
    ----------
    pol : Policy
        the fitted policy ``π̂``.
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ``.

    Returns
    -------
    float
        the divergence (≥ 0).
    """
    return M.kl_to_optimal(pol, inst.reward_true, inst.ref, inst.beta, inst.prompt_weights, optimal=inst.optimal)


def kl_to_reference(pol, inst):
    """``E_x KL(π̂ ‖ π_ref)`` (:func:`genver.metrics.kl_to_reference`).

    Parameters
    ----------
    pol : Policy
        the fitted policy ``π̂``.
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ``.

    Returns
    -------
    float
        the divergence (≥ 0).
    """
    return M.kl_to_reference(pol, inst.ref, inst.prompt_weights)


def expected_reward(pol, inst):
    """``E_{x∼ρ, y∼π̂}[r*(x, y)]`` (:func:`genver.metrics.expected_reward`).

    Parameters
    ----------
    pol : Policy
        the fitted policy ``π̂``.
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ``.

    Returns
    -------
    float
        the expected true reward.
    """
    return M.expected_reward(pol, inst.reward_true, inst.prompt_weights)


def win_rate(pol, inst):
    """``E_x P_{y∼π̂, y'∼π_ref}(y ≻ y')`` under Bradley–Terry with ``r*`` (exact;
    :func:`genver.metrics.win_rate`).

    Parameters
    ----------
    pol : Policy
        the fitted policy ``π̂``.
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ``.

    Returns
    -------
    float
        the win rate, in ``[0, 1]``.
    """
    return M.win_rate(pol, inst.reward_true, inst.ref, inst.prompt_weights, levels=inst.reward_levels)


def bt_loglik(r, inst):
    """Exact expected per-pair Bradley–Terry log-likelihood of ``r̂`` on the data distribution (pairs
    from ``μ``, prompts from the data weights; :func:`genver.metrics.expected_bt_loglik`).

    Parameters
    ----------
    r : numpy.ndarray
        the fitted reward ``r̂``, shape ``(P, T)``.
    inst : Instance
        the world: ``r*``, ``π_ref``, ``β``, ``ρ``.

    Returns
    -------
    float
        the expected log-likelihood (≤ 0).
    """
    return M.expected_bt_loglik(r, inst.reward_true, inst.sampler, inst.data_weights)
