r"""Theorem 3.1 (proper learning: the online route is MLE over the restricted class Π(R_sim);
Swamy et al. 2026; docs/concepts.md).

Proposition
-----------
Let ``R_sim`` be a reward class and ``Π(R_sim) = { π*_r : r ∈ R_sim }`` (soft-optimal policies,
reference ``π_ref``, weight ``β``), and let the generator class contain it, ``Π ⊇ Π(R_sim)``
(here ``Π = Π(R_sim) ∪ D`` with distractors ``D``, or the tabular class). Then the online route
— Bradley–Terry MLE ``r̂`` over ``R_sim`` followed by exact RL over ``Π`` — returns

    π̂_on = π*_{r̂} = argmax_{π ∈ Π(R_sim)} Σ_i log σ(r_π(x_i,y_i⁺) − r_π(x_i,y_i⁻)),

the offline (DPO) maximum-likelihood estimate over the *restricted* class ``Π(R_sim)``, because
``r_{π*_r} = r − β log Z_r`` and the constant cancels in every pair (Swamy et al. 2025, Thm 3.1).
Offline DPO over all of ``Π`` searches a larger set ("improper") and in general returns
something else.

What is measured
----------------
Random instances (:func:`genver.theory._common.random_world`), several ``N`` including
``N < P·T``, coverage dialled by the sampler ``μ``.

* ``"finite"``: ``R_sim`` = 2–10 random tables (``r*`` a member half of the time, otherwise
  misspecified), ``Π = Π(R_sim) ∪ D`` with 10–200 distractors; online
  ``rm_rl(R_sim, Π)`` vs ``dpo(FinitePolicyClass.soft_optimal_of(R_sim))``. Discrepancy
  ``1[r̂'s index ≠ the restricted DPO index] + max_k |ℓ_RM(r_k) − ℓ_DPO(π*_{r_k})| / max(1, |ℓ|)
  + TV + 1[policy indices differ and TV > 1e-10]`` (TV: the largest per-prompt total variation
  between the returned policies; a distractor equal to ``π*_{r̂}`` to float64 precision — small
  ``β``, nearly deterministic members — counts as the same optimum, see
  :mod:`genver.theory.thm_2_2`).
* ``"linear"``: ``R_lin = {w·φ}`` on a random subset of the trajectory features of
  :mod:`genver.features` (``d`` = 1–7), ``Π`` tabular, ridge ``(λ/2)‖w‖²`` with
  ``λ ∈ [0.01, 1]`` in both routes; online ``rm_rl(R_lin, Tabular)`` vs (a)
  ``dpo(SoftOptimalPolicyClass(R_lin))`` and (b) an independent DPO fit written here (L-BFGS on
  ``Σ log σ(β log π_w/π_ref(y⁺) − β log π_w/π_ref(y⁻))`` with ``π_w ∝ π_ref e^{w·φ/β}``
  normalised explicitly, polished by plain Newton steps with a Hessian written here).
  Discrepancy ``max |Δ log π|`` over both comparisons.

Tolerance ``1e-9`` (optimiser accuracy: the linear reward MLE is solved by exact Newton, see
:mod:`genver.estimators.mle`; observed ≤ 3.1e-11 (seed 0) and ≤ 2.1e-11 (seed 1) over ~7800
cases of the full run, ≤ 2.8e-11 on quick runs with seeds 1–5; with L-BFGS, ≤ 8e-7 and a
tolerance of 1e-4; the finite comparison is exact).

Broken variant: offline DPO over the whole ``Π`` (``Π(R_sim) ∪ D``, resp. tabular) in place of
``Π(R_sim)``; it differs from the online route on some (most) seeds.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize

from ..classes import (
    FinitePolicyClass,
    LinearRewardClass,
    SoftOptimalPolicyClass,
    TabularPolicyClass,
    random_reward_class,
)
from ..estimators import dpo, rm_rl
from ..features import trajectory_features
from ..preferences import sample_preferences
from ._common import (
    case_generators,
    coverage_of,
    finite_policy_gap,
    make_row,
    max_abs_logp_diff,
    random_world,
    sample_sizes,
    world_settings,
)

ID = "thm_3_1"
STATEMENT = "online RM+RL with R_sim = offline MLE over Π(R_sim) (not over Π = Π(R_sim) ∪ D)"
TOLERANCE = 1e-9

_FEATURES = ["token_counts", "parity", "first_last_match", "hamming", ("random_gaussian", {"d": 2})]


def _log_softmax(s):
    m = s.max(axis=1, keepdims=True)
    return s - (np.log(np.exp(s - m).sum(axis=1, keepdims=True)) + m)


def _independent_restricted_dpo(data, phi, ref_logp, beta, l2):
    """DPO over Π(R_lin) = {π_w ∝ π_ref e^{w·φ/β}}, written from the definitions."""
    P, T, d = phi.shape
    xs, yp, yn = data.x, data.y_pos, data.y_neg

    def neg(w):
        logp = _log_softmax(ref_logp + phi @ w / beta)
        p = np.exp(logp)
        Ephi = np.einsum("pt,ptd->pd", p, phi)
        z = beta * ((logp[xs, yp] - ref_logp[xs, yp]) - (logp[xs, yn] - ref_logp[xs, yn]))
        ll = np.sum(np.where(z >= 0, -np.log1p(np.exp(-np.abs(z))), z - np.log1p(np.exp(-np.abs(z)))))
        s = np.exp(-np.logaddexp(0.0, z))  # σ(−z)
        # ∂z/∂w = β [(φ(y⁺) − Eφ)/β − (φ(y⁻) − Eφ)/β]
        dz = (phi[xs, yp] - Ephi[xs]) - (phi[xs, yn] - Ephi[xs])
        grad = dz.T @ s - l2 * w
        return -(ll - 0.5 * l2 * w @ w), -grad

    res = optimize.minimize(neg, np.zeros(d), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-10, "ftol": 0.0, "maxiter": 10000, "maxcor": 30})
    # polish by plain Newton steps (L-BFGS stalls at ~1e-7): the margin is linear in w,
    # z = w·(φ(y⁺) − φ(y⁻)), so the negated Hessian is dzᵀ diag(σ(z)σ(−z)) dz + λI (λ > 0 here)
    w, (_, g) = res.x, neg(res.x)
    dz = phi[xs, yp] - phi[xs, yn]
    for _ in range(20):
        z = dz @ w
        q = np.exp(-np.logaddexp(0.0, z) - np.logaddexp(0.0, -z))  # σ(z)σ(−z)
        wn = w - np.linalg.solve(dz.T @ (dz * q[:, None]) + l2 * np.eye(d), g)
        gn = neg(wn)[1]
        if not np.abs(gn).max() < np.abs(g).max():
            break
        w, g = wn, gn
    return _log_softmax(ref_logp + phi @ w / beta)


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
    n_fin, n_lin = (120, 60) if quick else (1500, 800)
    rows = []
    idx = {"sound": 0, "broken": 0}

    def add(variant, disc, detail, **st):
        rows.append(make_row(ID, variant, idx[variant], disc, TOLERANCE, detail, **st))
        idx[variant] += 1

    for rng in case_generators(random_state, n_fin, stream=0):
        w = random_world(rng)
        sp, beta, ref = w["space"], w["beta"], w["ref"]
        R = random_reward_class(sp, int(rng.integers(2, 11)), rng, scale=w["reward_scale"])
        realisable = bool(rng.random() < 0.5)
        r_star = R.member(int(rng.integers(R.size))) if realisable else w["r_star"]
        Pi_R = FinitePolicyClass.soft_optimal_of(R, ref, beta)
        Pi = Pi_R.with_distractors(int(rng.integers(10, 201)), rng, ref=ref, beta=beta, scale=w["reward_scale"])
        ns = sample_sizes(rng, sp.P * sp.T, 3)
        data = sample_preferences(r_star, w["mu"], max(ns), rng)
        for n in ns:
            d = data.head(n)
            on = rm_rl(d, R, Pi, ref, beta)
            res = dpo(d, Pi_R, ref, beta)
            ll_on, ll_res = on.extra["loglik_all"], res.extra["loglik_all"]
            disc = (float(on.reward_index != res.policy_index)  # Π(R) lists R's members in order
                    + finite_policy_gap(on.policy_index, res.policy_index, on.policy.logp, res.policy.logp)
                    + float(np.max(np.abs(ll_on - ll_res) / np.maximum(1.0, np.abs(ll_res)))))
            st = dict(world_settings(w), N=n, coverage=coverage_of(d), R_size=R.size, Pi_size=Pi.size,
                      realisable=realisable, float64_tie=bool(on.policy_index != res.policy_index))
            add("sound", disc, "finite", **st)
            full = dpo(d, Pi, ref, beta)
            add("broken", finite_policy_gap(on.policy_index, full.policy_index, on.policy.logp, full.policy.logp),
                "finite: DPO over all of Π", **st)

    for rng in case_generators(random_state, n_lin, stream=1):
        w = random_world(rng, beta_range=(0.2, 5.0))
        sp, beta, ref = w["space"], w["beta"], w["ref"]
        k = int(rng.integers(1, 4))
        names = [_FEATURES[j] for j in sorted(rng.choice(len(_FEATURES), size=k, replace=False))]
        phi = trajectory_features(sp, names, random_state=rng)
        R_lin = LinearRewardClass(sp, phi)
        l2 = float(np.exp(rng.uniform(np.log(0.01), np.log(1.0))))
        ns = sample_sizes(rng, sp.P * sp.T, 2)
        data = sample_preferences(w["r_star"], w["mu"], max(ns), rng)
        for n in ns:
            d = data.head(n)
            on = rm_rl(d, R_lin, TabularPolicyClass(sp), ref, beta, l2=l2)
            res = dpo(d, SoftOptimalPolicyClass(R_lin, ref, beta), ref, beta, l2=l2)
            indep = _independent_restricted_dpo(d, phi, ref.logp, beta, l2)
            disc = max(max_abs_logp_diff(on.policy.logp, res.policy.logp), max_abs_logp_diff(on.policy.logp, indep))
            st = dict(world_settings(w), N=n, coverage=coverage_of(d), d=R_lin.n_params, l2=l2,
                      features="+".join(f if isinstance(f, str) else f[0] for f in names))
            add("sound", disc, "linear", **st)
            full = dpo(d, TabularPolicyClass(sp), ref, beta, l2=l2)
            add("broken", max_abs_logp_diff(on.policy.logp, full.policy.logp), "linear: DPO over tabular Π", **st)
    return rows
