r"""Theorem 2.3 (imitation: SFT ≡ MaxEnt-IRL reward + soft RL, and SPIN offline ≡ online;
Swamy et al. 2026; docs/concepts.md).

Proposition
-----------
Let ``R = R(Π)`` (``r_π = β log π/π_ref``). For every demonstration set
``{(x_i, y_i)}_{i≤N}``:

1. SFT, ``argmax_{π∈Π} Σ_i log π(y_i|x_i)``, and the two-stage route — MaxEnt IRL
   ``r̂ ∈ argmax_{r∈R} Σ_i log π*_r(y_i|x_i)`` with
   ``log π*_r = log π_ref + r/β − log Z_r``, then ``argmax_{π∈Π} J_β(π; r̂)`` — return the same
   policy: ``π*_{r_π} = π`` (its ``Z`` is 1), so stage 1 is SFT reparametrised, and stage 2
   returns ``π*_{r̂} ∈ Π`` (Swamy et al. 2025, Thm 2.3).
2. SPIN-style iteration (``π_0 = π_ref``; round ``t`` pairs each demonstration with draws
   ``y' ~ π_t`` as dispreferred): offline (DPO over ``Π`` with reference ``π_t``) and online
   (Bradley–Terry reward MLE over ``R(Π)`` w.r.t. ``π_t``, then exact RL with reference ``π_t``)
   coincide round by round — Theorem 2.2 applied with reference ``π_t`` at every round, and the
   synthetic draws use the same uniforms.

What is measured
----------------
Random instances (:func:`genver.theory._common.random_world`), demonstrations drawn from
``π*_{r*}`` or from the coverage-dialling sampler ``μ``, several ``N`` (always one with
``N < P·T``). Classes: ``"finite"`` (``Π(R₀) ∪ D`` or random token-level policies,
``R = induced_reward_class(Π)``) and ``"tabular"`` (same ridge ``λ ∈ [0.05, 1]``,
``β ∈ [0.3, 5]``). Discrepancy:

* finite SFT vs IRL+RL: the stage-1 gap (the same rule between SFT's member and the member
  whose induced reward IRL picked) ``+ max_k |ℓ_SFT(π_k) − ℓ_IRL(r_{π_k})| / max(1, |ℓ|) + TV +
  1[policy indices differ and TV > 1e-10]`` (TV: the largest per-prompt total variation between
  the two policies; members equal to float64 precision count as the same optimum, see
  :mod:`genver.theory.thm_2_2`);
* tabular: ``max |Δ log π|``;
* SPIN: the largest over rounds ``t = 1..T`` of the same policy discrepancy between ``π_t^off``
  and ``π_t^on`` (finite: TV + index rule; tabular: ``max |Δ log π|``).

Tolerance ``1e-9``, set by the optimiser: tabular SFT, MaxEnt IRL, DPO and the reward MLE are
all solved by exact Newton (:func:`genver._solve.newton`) to gradients near the float64 floor.
Observed ≤ 6.2e-12 (seed 0) and ≤ 9.9e-12 (seed 1) over ~5300 cases of the full run, ≤ 7.1e-12
on quick runs with seeds 1–5 (with L-BFGS, which stalled at ~3e-6, this had to be 1e-4); the
finite routes agree to ~1e-14. (Quick seed 3 has finite cases at ``β ≈ 0.10``, ``T = 2``, where
two members are the same policy to float64 precision and the two routes pick different ones of
them: the same optimum, counted as such since 2026-11-27.)

Broken variant: ``R`` not isomorphic — a random finite class of the same size (finite), a
linear class on non-spanning features (tabular); for SPIN the online route uses that ``R``.
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
from ..estimators import maxent_irl_rl, sample_demonstrations, sft, spin
from ..features import trajectory_features
from ..softrl import soft_optimal
from ._common import (
    case_generators,
    finite_policy_gap,
    make_row,
    max_abs_logp_diff,
    random_finite_class,
    random_world,
    sample_sizes,
    world_settings,
)

ID = "thm_2_3"
STATEMENT = "R = R(Π) ⇒ SFT ≡ MaxEnt-IRL + soft RL, and SPIN offline ≡ online, for every N"
TOLERANCE = 1e-9


def _demo_policy(rng, w):
    if rng.random() < 0.5:
        return soft_optimal(w["r_star"], w["ref"], w["beta"]).policy
    return w["mu"]


def _spin_gap(a, b, finite):
    d = 0.0
    for t, (pa, pb) in enumerate(zip(a.extra["policies"], b.extra["policies"])):
        if finite:
            d = max(d, finite_policy_gap(a.extra["rounds"][t]["policy_index"], b.extra["rounds"][t]["policy_index"],
                                         pa.logp, pb.logp))
        else:
            d = max(d, max_abs_logp_diff(pa.logp, pb.logp))
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
    n_fin, n_tab = (80, 40) if quick else (1000, 500)
    rows = []
    idx = {"sound": 0, "broken": 0}

    def add(variant, disc, detail, **st):
        rows.append(make_row(ID, variant, idx[variant], disc, TOLERANCE, detail, **st))
        idx[variant] += 1

    for rng in case_generators(random_state, n_fin, stream=0):
        w = random_world(rng)
        sp, beta, ref = w["space"], w["beta"], w["ref"]
        Pi = random_finite_class(rng, w)
        R_Pi = induced_reward_class(Pi, ref, beta)
        R_bad = random_reward_class(sp, Pi.size, rng, scale=float(np.std(R_Pi.tables)) + 1e-3)
        ns = sample_sizes(rng, sp.P * sp.T, 2)
        demos = sample_demonstrations(_demo_policy(rng, w), max(ns), rng)
        for n in ns:
            d = demos.head(n)
            st = dict(world_settings(w), N=n, class_size=Pi.size)
            a = sft(d, Pi, ref, beta)
            b = maxent_irl_rl(d, R_Pi, Pi, ref, beta)
            add("sound", _sft_irl_gap(a, b, Pi), "finite: SFT vs IRL+RL", **st)
            bad = maxent_irl_rl(d, R_bad, Pi, ref, beta)
            add("broken", finite_policy_gap(a.policy_index, bad.policy_index, a.policy.logp, bad.policy.logp),
                "finite: SFT vs IRL+RL, R random", **st)
        d = demos.head(ns[0])
        seed = int(rng.integers(2**31))
        rounds, n_syn = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        off = spin(d, Pi, ref, beta, rounds=rounds, n_synthetic=n_syn, random_state=seed, route="offline")
        on = spin(d, Pi, ref, beta, rounds=rounds, n_synthetic=n_syn, random_state=seed, route="online")
        st = dict(world_settings(w), N=ns[0], class_size=Pi.size, rounds=rounds)
        add("sound", _spin_gap(off, on, True), "finite: SPIN offline vs online", **st)
        bad = spin(d, Pi, ref, beta, rounds=rounds, n_synthetic=n_syn, random_state=seed, route="online",
                   reward_class=R_bad)
        add("broken", _spin_gap(off, bad, True), "finite: SPIN, R random", **st)

    for rng in case_generators(random_state, n_tab, stream=1):
        _tabular_case(rng, add)
    return rows


def _sft_irl_gap(a, b, Pi) -> float:
    """Discrepancy of SFT ``a`` and MaxEnt-IRL + soft RL ``b`` over the finite class ``Pi``: stage 1
    picks the same member, or one with the same policy to float64 precision, and the two
    log-likelihood vectors agree (the same members finite, relative differences)."""
    ll_a, ll_b = a.extra["loglik_all"], b.extra["loglik_all"]
    fin = np.isfinite(ll_a) & np.isfinite(ll_b)
    return (finite_policy_gap(a.policy_index, b.reward_index, a.policy.logp, Pi.member(b.reward_index).logp)
            + finite_policy_gap(a.policy_index, b.policy_index, a.policy.logp, b.policy.logp)
            + float(np.any(np.isfinite(ll_a) != np.isfinite(ll_b)))
            + (float(np.max(np.abs(ll_a[fin] - ll_b[fin]) / np.maximum(1.0, np.abs(ll_a[fin]))))
               if fin.any() else 0.0))


def _tabular_case(rng, add) -> None:
    """One tabular instance of :func:`check` (SFT vs IRL+RL and SPIN offline vs online, with a
    linear reward class as the broken variant), rows through ``add``."""
    w = random_world(rng, beta_range=(0.3, 5.0))
    sp, beta, ref = w["space"], w["beta"], w["ref"]
    l2 = float(np.exp(rng.uniform(np.log(0.05), np.log(1.0))))
    Pi, R_tab = TabularPolicyClass(sp), TabularRewardClass(sp)
    R_lin = LinearRewardClass(sp, trajectory_features(sp, ["token_counts", "first_last_match"]))
    ns = sample_sizes(rng, sp.P * sp.T, 1)
    demos = sample_demonstrations(_demo_policy(rng, w), max(ns), rng)
    for n in ns:
        d = demos.head(n)
        st = dict(world_settings(w), N=n, l2=l2)
        a = sft(d, Pi, ref, beta, l2=l2)
        b = maxent_irl_rl(d, R_tab, Pi, ref, beta, l2=l2)
        add("sound", max_abs_logp_diff(a.policy.logp, b.policy.logp), "tabular: SFT vs IRL+RL", **st)
        bad = maxent_irl_rl(d, R_lin, Pi, ref, beta, l2=l2)
        add("broken", max_abs_logp_diff(a.policy.logp, bad.policy.logp), "tabular: SFT vs IRL+RL, R linear", **st)
    d = demos.head(ns[0])
    seed = int(rng.integers(2**31))
    rounds = int(rng.integers(1, 3))
    off = spin(d, Pi, ref, beta, rounds=rounds, random_state=seed, route="offline", l2=l2)
    on = spin(d, Pi, ref, beta, rounds=rounds, random_state=seed, route="online", l2=l2)
    st = dict(world_settings(w), N=ns[0], l2=l2, rounds=rounds)
    add("sound", _spin_gap(off, on, False), "tabular: SPIN offline vs online", **st)
    bad = spin(d, Pi, ref, beta, rounds=rounds, random_state=seed, route="online", reward_class=R_lin, l2=l2)
    add("broken", _spin_gap(off, bad, False), "tabular: SPIN, R linear", **st)
