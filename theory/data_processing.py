r"""Data processing (H1): on-policy labels from ``r̂`` carry nothing about ``r*`` beyond ``r̂``
(Swamy et al. 2026, the data-processing argument; docs/concepts.md).

Proposition
-----------
Let ``r̂`` be a fitted reward and run online DPO with Bradley–Terry labels from ``r̂``
(``labels="bradley_terry"``: each round draws ``y1, y2 ~ π_t(·|x)`` and labels ``y1 ≻ y2`` with
probability ``σ(r̂(x,y1) − r̂(x,y2))``), pairs accumulated in a growing pool, ``π_{t+1}`` the exact
tabular DPO solution on the pool (ridge ``λ``). The labels are a randomised function of ``r̂``
alone, so as the pool grows ``π_t → π*_{r̂}`` (the soft-optimal policy of ``r̂``, which is what
exact RM+RL returns), and its suboptimality under ``r*`` tends to that of RM+RL, never past it.
Quantitatively, for any ``π`` and ``π̃ = π*_{r̂}`` (per prompt, ``SubOpt(π) = β KL(π ‖ π*_{r*})``):

    SubOpt(π̃) − SubOpt(π) ≤ Σ_x ρ_x · range_y(r̂(x,·) − r*(x,·)) · sqrt(KL(π ‖ π̃)(x) / 2),

because ``SubOpt(π̃) − SubOpt(π) = β(E_π̃ g − E_π g) − β KL(π ‖ π̃)`` with
``g = log π̃/π*_{r*} = (r̂ − r*)/β + const``, and ``|E_π̃ g − E_π g| ≤ TV · range(g)`` with Pinsker's
``TV ≤ sqrt(KL/2)``. So online DPO can beat exact RM+RL only by an amount that vanishes with
``KL(π_t ‖ π*_{r̂})``.

What is measured
----------------
Random instances (``P·T ≤ 27`` (quick: ≤ 12), ``β ∈ [0.5, 3]``). ``r̂ = r* + s·E`` with ``E`` the
error of a tabular reward MLE fitted on a few pairs (half the cases) or Gaussian noise, and
``s`` set by bisection so that ``KL(π*_{r*} ‖ π*_{r̂}) = κ``, ``κ ~ U[0.15, 0.6]`` (so ``r̂`` is
far from ``r*`` and the two limits are distinguishable). Online DPO (``K = 2``, 6 rounds,
``λ = 1e-3``) with a final pool of ``N`` pairs, ``N`` chosen so that the asymptotic expected
``KL(π̂_N ‖ π*_{r̂})`` of the Bradley–Terry MLE from on-policy pairs — ``Σ_x tr(C_x I_x⁺)/(2β²N)``,
``C_x`` the policy covariance at ``π*_{r̂}``, ``I_x`` the per-pair Fisher information — is
``5e-4`` (instances needing ``N`` above 2e5 (quick) / 1e6 are redrawn). For the final policy ``π_N``:

    discrepancy = max( KL(π_N ‖ π*_{r̂}),  [gain − bound]_+ ),
    gain = SubOpt_{r*}(π*_{r̂}) − SubOpt_{r*}(π_N)     (how much online DPO beats exact RM+RL),
    bound = the right-hand side above at π = π_N,

all ``ρ``-weighted and exact (sums over every completion). Tolerance ``1e-2``: 20× the expected
statistical KL (observed ratios KL/predicted ≤ 5). Rows also report ``predicted_kl``,
``kl_first`` (after the first round, sound variant) and the log–log slope of ``KL(π_t ‖ π*_{r̂})``
against the pool size (sound variant; noisy, since the first round samples from ``π_ref``),
``gain``, ``bound`` and ``kl_to_r_star_optimum`` = ``KL(π_N ‖ π*_{r*})`` (≈ 0 when broken).

Broken variant: label with ``r*`` instead of ``r̂`` (information ``r̂`` does not have). Then
``π_N → π*_{r*}``: ``KL(π_N ‖ π*_{r̂}) → KL(π*_{r*} ‖ π*_{r̂}) = κ ≥ 0.15`` and ``gain`` is the whole
RM+RL suboptimality.
"""
from __future__ import annotations

import numpy as np

from ..classes import TabularPolicyClass, TabularRewardClass
from ..estimators import reward_mle
from ..estimators.online import online_dpo
from ..metrics import suboptimality
from ..preferences import sample_preferences
from ..softrl import kl, kl_rows, soft_optimal
from ._common import case_generators, make_row, random_world, world_settings

ID = "data_processing"
STATEMENT = "online DPO labelled by r̂ converges to π*_{r̂} and never beats exact RM+RL beyond a KL-vanishing bound"
TOLERANCE = 1e-2
_ROUNDS = 6
_L2 = 1e-3
_TARGET_KL = 5e-4


def _r_hat(rng, w):
    sp, beta, ref, r = w["space"], w["beta"], w["ref"], w["r_star"]
    if rng.random() < 0.5:
        n0 = int(rng.integers(max(1, sp.P * sp.T // 2), 2 * sp.P * sp.T + 1))
        E = reward_mle(sample_preferences(r, w["mu"], n0, rng), TabularRewardClass(sp), l2=0.1).reward - r
        E = E - E.mean(axis=1, keepdims=True)
        if np.abs(E).max() < 1e-8:
            E = rng.standard_normal(sp.shape)
    else:
        E = rng.standard_normal(sp.shape)
    kappa = float(rng.uniform(0.15, 0.6))
    opt = soft_optimal(r, ref, beta).policy

    def kl_at(s):
        return kl(opt, soft_optimal(r + s * E, ref, beta).policy)

    lo, hi = 0.0, 1.0
    while kl_at(hi) < kappa and hi < 1e6:
        hi *= 2.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if kl_at(mid) < kappa else (lo, mid)
    return r + hi * E, kappa


def _predicted_kl_times_n(r_hat, ref, beta):
    """Asymptotic ``N · E KL(π̂_N ‖ π̃)`` for the Bradley–Terry MLE of a tabular reward from ``N``
    pairs ``x ~ ρ``, ``y1, y2 ~ π̃ = π*_{r̂}`` labelled by ``r̂``: ``Σ_x tr(C_x I_x^+) / (2β²)`` with
    ``C_x = diag(π̃) − π̃π̃ᵀ`` (the Hessian of ``KL(π_{r̂+δ} ‖ π̃)`` in ``δ``, times ``β²``) and
    ``I_x = Σ_{y1,y2} π̃(y1)π̃(y2) σ'(Δ)(e_{y1} − e_{y2})(e_{y1} − e_{y2})ᵀ`` the per-pair Fisher
    information; the prompt weights cancel."""
    pt = soft_optimal(r_hat, ref, beta).policy.probs
    total = 0.0
    for x in range(pt.shape[0]):
        p = pt[x]
        d = r_hat[x][:, None] - r_hat[x][None, :]
        s = 1.0 / (1.0 + np.exp(-d))
        W = np.outer(p, p) * s * (1.0 - s)
        I = 2.0 * (np.diag(W.sum(axis=1)) - W)
        C = np.diag(p) - np.outer(p, p)
        total += float(np.trace(C @ np.linalg.pinv(I, rcond=1e-12, hermitian=True)))
    return total / (2.0 * beta**2)


def _measure(pi_N, history, sizes, r_hat, w, rho):
    _sp, beta, ref, r = w["space"], w["beta"], w["ref"], w["r_star"]
    target = soft_optimal(r_hat, ref, beta).policy
    kl_x = kl_rows(pi_N.logp, target.logp)
    kl_final = float(kl_x @ rho)
    gain = suboptimality(target, r, ref, beta) - suboptimality(pi_N, r, ref, beta)
    rng_x = (r_hat - r).max(axis=1) - (r_hat - r).min(axis=1)
    bound = float((rng_x * np.sqrt(np.maximum(kl_x, 0.0) / 2.0)) @ rho)
    if history is None:
        kl_first, slope = float("nan"), float("nan")
    else:
        kl_first = float(history[0])
        slope = float(np.polyfit(np.log(sizes), np.log(np.maximum(np.asarray(history), 1e-300)), 1)[0])
    r_opt = soft_optimal(r, ref, beta).policy
    return (max(kl_final, max(0.0, gain - bound)),
            dict(kl_final=kl_final, kl_first=kl_first, slope=slope, gain=float(gain), bound=bound,
                 kl_to_r_star_optimum=kl(pi_N, r_opt)))


def check(quick: bool = True, random_state=None) -> list[dict]:
    """Measure :data:`STATEMENT` on random instances, and a broken variant beside it (module
    docstring): one tidy row per case (:func:`genver.theory._common.make_row`).

    Parameters
    ----------
    quick : bool
        Few instances (the CI size) rather than the full run.
    random_state : None, int, SeedSequence or Generator
        Source of the instances (:func:`genver.theory._common.case_generators`).

    Returns
    -------
    list of dict
        The rows: ``variant`` (``sound`` | ``broken``), ``discrepancy`` and the instance's settings.
    """
    n_cases, max_PT, max_N = (8, 12, 200_000) if quick else (60, 27, 1_000_000)
    rows = []
    for i, rng in enumerate(case_generators(random_state, n_cases)):
        for _attempt in range(50):  # redraw instances whose required pool is too large
            w = random_world(rng, beta_range=(0.5, 3.0), max_PT=max_PT, reward_scale_range=(0.5, 2.0))
            sp, beta, ref = w["space"], w["beta"], w["ref"]
            r_hat, kappa = _r_hat(rng, w)
            c = _predicted_kl_times_n(r_hat, ref, beta)
            if c / _TARGET_KL <= max_N:
                break
        m = int(np.ceil(c / (_TARGET_KL * _ROUNDS)))
        sizes = m * np.arange(1, _ROUNDS + 1)
        rho = np.full(sp.P, 1.0 / sp.P)
        seed = int(rng.integers(2**31))
        st = dict(world_settings(w), N=int(sizes[-1]), kappa=kappa, l2=_L2,
                  predicted_kl=float(c / sizes[-1]))
        for variant, labeller in (("sound", r_hat), ("broken", w["r_star"])):
            res = online_dpo(labeller, TabularPolicyClass(sp), ref, beta, K=2, rounds=_ROUNDS, pairs_per_round=m,
                             labels="bradley_terry", l2=_L2, random_state=seed)
            # online_dpo's own history is KL to π*_{labeller}: the sound run's is KL to π*_{r̂}
            hist = res.extra["kl_to_target"] if variant == "sound" else None
            disc, extra = _measure(res.policy, hist, sizes, r_hat, w, rho)
            rows.append(make_row(ID, variant, i, disc, TOLERANCE,
                                 "labels from r̂" if variant == "sound" else "labels from r* (broken)", **st, **extra))
    return rows
