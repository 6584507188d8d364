r"""Theorem 2.2 (equivalence under isomorphic classes; Swamy et al. 2026; docs/concepts.md).

Proposition
-----------
Let ``Π`` be a policy class and ``R = R(Π) = { r_π = β log π/π_ref : π ∈ Π }`` its induced
reward class. For every data set ``D = {(x_i, y_i⁺, y_i⁻)}_{i≤N}`` — any ``N``, any coverage —
the offline route ``argmax_{π∈Π} Σ_i log σ(r_π(x_i,y_i⁺) − r_π(x_i,y_i⁻))`` (DPO) and the online
route (reward MLE over ``R``, then ``argmax_{π∈Π} J_β(π; r̂)``) have the same set of optima.
Proof idea (Swamy et al. 2025, Thm 2.2): stage 1 maximises exactly the DPO objective over
``R(Π)``, so ``r̂ = r_{π̂_DPO}``; ``π*_{r̂} = π̂_DPO`` (its ``Z`` is 1) lies in ``Π``, so the
reverse-KL projection of stage 2 returns it.

What is measured
----------------
Random instances (:func:`genver.theory._common.random_world`): ``P ≤ 3``, ``V ∈ {2,3}``,
``H ≤ 3``, ``β``, reference, true reward ``r*``, and a sampler ``μ`` whose temperature in
[0.15, 1] dials coverage; nested data sets of several sizes ``N ∈ [1, 20·P·T]``, always one with
``N < P·T`` (so some trajectories are never seen). Two class pairs:

* ``"finite"``: ``Π = Π(R₀) ∪ D`` (random ``R₀``, 0–60 distractors) or ``K`` random token-level
  policies, optionally with *twins* (members equal to another one on prompt 0 only, so that
  partial coverage produces ties); ``R = induced_reward_class(Π)``. Both routes are exact
  enumerations. Discrepancy: ``1[r̂'s index ≠ π̂_off's index] + |maximiser sets Δ| +
  max_k |ℓ_DPO(π_k) − ℓ_RM(r_{π_k})| / max(1, |ℓ|) + TV(π̂_off, π̂_on) + 1[π̂ indices differ and
  TV > 1e-10]`` (the two stage-1 objectives agree member by member, their sets of maximisers —
  members within a relative 1e-12 of the maximum — agree, and so do the returned policies; TV is
  the largest per-prompt total variation). The RL step of the online route may return another
  member whose policy equals π̂_off to float64 precision: at small ``β`` the soft-optimal members
  are nearly deterministic and ``J_β`` cannot separate members that differ by ~e⁻⁴⁰ of mass;
  such a member counts as the same optimum (TV ≤ 1e-10, a decade below the tolerance) — see
  :func:`genver.theory._common.finite_policy_gap`.
* ``"tabular"``: ``Π`` tabular, ``R`` tabular, the same ridge ``λ`` (log-uniform in [0.05, 1];
  see :mod:`genver.estimators.mle`), ``β ∈ [0.3, 5]``. Discrepancy
  ``max_{x,y} |log π̂_off − log π̂_on|``.

Tolerance ``1e-9``, set by the optimiser, not by the theorem: both tabular fits are solved by
exact Newton (:func:`genver._solve.newton`) to gradients near the float64 floor (≲ 1e-13·N);
strong concavity ``λ`` turns a gradient ``g`` into ``|Δr| ≲ g/λ`` and ``|Δ log π| ≲ 2g/(λβ)``.
Observed: ≤ 1.1e-11 over ~7900 cases (full run, seed 0), ≤ 9e-12 on quick runs with seeds 1–5.
(With L-BFGS, which stalls at gradients ≈ 1e-7…1e-6, this had to be 1e-4.) The finite pair is
exact (observed ≤ 1e-15).

Broken variant (the hypothesis ``R = R(Π)`` removed): finite — ``R`` a random finite class of
the same size (discrepancy ``TV + 1[different member]``); tabular — ``R`` linear in
non-spanning features (``token_counts`` + ``first_last_match``), discrepancy ``max |Δ log π|``.
Both are O(1) on generic instances.
"""
from __future__ import annotations

import numpy as np

from ..classes import (
    LinearRewardClass,
    TabularPolicyClass,
    TabularRewardClass,
    induced_reward_class,
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
    random_finite_class,
    random_world,
    sample_sizes,
    world_settings,
)

ID = "thm_2_2"
STATEMENT = "R = R(Π) ⇒ offline DPO and online RM+RL have the same optima, for every N and coverage"
TOLERANCE = 1e-9
_TIE = 1e-12


def _maximisers(ll):
    m = np.max(ll)
    return set(np.flatnonzero(ll >= m - _TIE * max(1.0, abs(m))).tolist())


def _finite_discrepancy(off, on, rm_loglik):
    d = float(on.reward_index != off.policy_index)  # stage 1 picks the same member, exactly
    d += len(_maximisers(off.extra["loglik_all"]) ^ _maximisers(rm_loglik))
    d += finite_policy_gap(off.policy_index, on.policy_index, off.policy.logp, on.policy.logp)
    ll_off = off.extra["loglik_all"]
    d += float(np.max(np.abs(ll_off - rm_loglik) / np.maximum(1.0, np.abs(ll_off))))
    return d


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
    n_fin, n_tab = (120, 60) if quick else (1500, 800)
    rows = []
    sound_i = broken_i = 0
    for rng in case_generators(random_state, n_fin, stream=0):
        w = random_world(rng)
        sp, beta, ref = w["space"], w["beta"], w["ref"]
        Pi = random_finite_class(rng, w)
        R_Pi = induced_reward_class(Pi, ref, beta)
        R_bad = random_reward_class(sp, Pi.size, rng, scale=float(np.std(R_Pi.tables)) + 1e-3)
        ns = sample_sizes(rng, sp.P * sp.T, 3)
        data = sample_preferences(w["r_star"], w["mu"], max(ns), rng)
        for n in ns:
            d = data.head(n)
            off = dpo(d, Pi, ref, beta)
            on = rm_rl(d, R_Pi, Pi, ref, beta)
            st = dict(world_settings(w), N=n, coverage=coverage_of(d), class_size=Pi.size,
                      set_valued=bool(off.set_valued), float64_tie=bool(off.policy_index != on.policy_index))
            rows.append(make_row(ID, "sound", sound_i, _finite_discrepancy(off, on, on.extra["loglik_all"]),
                                 TOLERANCE, "finite", **st))
            sound_i += 1
            bad = rm_rl(d, R_bad, Pi, ref, beta)
            disc = finite_policy_gap(off.policy_index, bad.policy_index, off.policy.logp, bad.policy.logp)
            rows.append(make_row(ID, "broken", broken_i, disc, TOLERANCE, "finite, R random", **st))
            broken_i += 1
    for rng in case_generators(random_state, n_tab, stream=1):
        w = random_world(rng, beta_range=(0.3, 5.0))
        sp, beta, ref = w["space"], w["beta"], w["ref"]
        l2 = float(np.exp(rng.uniform(np.log(0.05), np.log(1.0))))
        Pi = TabularPolicyClass(sp)
        R_lin = LinearRewardClass(sp, trajectory_features(sp, ["token_counts", "first_last_match"]))
        ns = sample_sizes(rng, sp.P * sp.T, 2)
        data = sample_preferences(w["r_star"], w["mu"], max(ns), rng)
        for n in ns:
            d = data.head(n)
            off = dpo(d, Pi, ref, beta, l2=l2)
            on = rm_rl(d, TabularRewardClass(sp), Pi, ref, beta, l2=l2)
            st = dict(world_settings(w), N=n, coverage=coverage_of(d), l2=l2,
                      grad_norm=max(off.grad_norm, on.grad_norm))
            rows.append(make_row(ID, "sound", sound_i, max_abs_logp_diff(off.policy.logp, on.policy.logp),
                                 TOLERANCE, "tabular", **st))
            sound_i += 1
            bad = rm_rl(d, R_lin, Pi, ref, beta, l2=l2)
            rows.append(make_row(ID, "broken", broken_i, max_abs_logp_diff(off.policy.logp, bad.policy.logp),
                                 TOLERANCE, "tabular, R linear non-spanning", **st))
            broken_i += 1
    return rows
