r"""Reverse-KL identity of KL-regularised RL (a lemma of Swamy et al. 2026; docs/concepts.md).

Proposition
-----------
For every reward ``r``, full-support reference ``π_ref``, ``β > 0`` and every policy ``π``
(zeros allowed, ``0·log 0 = 0``), per prompt ``x``:

    J_β(π; r)(x) = β log Z_r(x) − β KL(π(·|x) ‖ π*_r(·|x)),

with ``J_β(π; r)(x) = E_{y~π} r(x,y) − β KL(π ‖ π_ref)``,
``π*_r = π_ref e^{r/β} / Z_r`` and ``Z_r(x) = Σ_y π_ref(y|x) e^{r(x,y)/β}``. Hence RL against ``r``
over a class ``Π`` is the reverse-KL projection of ``π*_r`` onto ``Π``, and ``π*_r`` is the unique
maximiser over all policies. (Standard: e.g. Rafailov et al. 2023, DPO, App. A.1; Korbak et al.
2022, "RL with KL penalties is better viewed as Bayesian inference".)

What is measured
----------------
Random instances (``P ≤ 3``, ``V ∈ {2,3}``, ``H ≤ 3``, ``β`` log-uniform in [0.1, 5], random
reference, reward scale and policy, a third of them with zero-probability completions).
The left side is computed directly (:func:`genver.softrl.J_beta`, per prompt), the right side
from the token-level backward induction (:func:`genver.softrl.soft_optimal`: ``V_0 = β log Z``)
and :func:`genver.softrl.kl`. A second sound row compares ``V_0/β`` with the closed form
``log Σ_y π_ref e^{r/β}`` (plain numpy). Discrepancy: ``max_x |lhs − rhs| / max(1, |lhs|)``.
Tolerance ``1e-9`` (float64 rounding of sums of ``T ≤ 27`` terms).

Broken variant: drop the partition function, ``rhs' = −β KL(π‖π*_r)``; its discrepancy is
``β |log Z_r(x)|`` scaled the same way, which is large on generic instances.
"""
from __future__ import annotations

import numpy as np

from ..policy import Policy, random_policy
from ..softrl import J_beta, kl, soft_optimal
from ._common import case_generators, make_row, random_world, world_settings

ID = "reverse_kl"
STATEMENT = "J_β(π; r) = β log Z_r − β KL(π ‖ π*_r) per prompt, for every π"
TOLERANCE = 1e-9


def _closed_form_logZ(r, ref_logp, beta):
    s = ref_logp + r / beta
    m = s.max(axis=1, keepdims=True)
    return np.log(np.exp(s - m).sum(axis=1)) + m[:, 0]


def _random_pi(rng, sp):
    pi = random_policy(sp, rng, concentration=float(rng.uniform(0.3, 2.0)))
    if rng.random() < 1 / 3 and sp.T > 1:  # zero out some completions (keep one per prompt)
        logp = pi.logp.copy()
        mask = rng.random(sp.shape) < 0.4
        mask[np.arange(sp.P), rng.integers(sp.T, size=sp.P)] = False
        logp[mask] = -np.inf
        m = logp.max(axis=1, keepdims=True)
        logp = logp - (np.log(np.exp(logp - m).sum(axis=1, keepdims=True)) + m)
        pi = Policy(sp, logp)
    return pi


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
    n = 200 if quick else 3000
    rows = []
    for i, rng in enumerate(case_generators(random_state, n)):
        w = random_world(rng)
        sp, beta, ref, r = w["space"], w["beta"], w["ref"], w["r_star"]
        pi = _random_pi(rng, sp)
        so = soft_optimal(r, ref, beta)
        lhs = J_beta(pi, r, ref, beta, per_prompt=True)
        kl_star = kl(pi, so.policy, per_prompt=True)
        rhs = beta * so.log_Z - beta * kl_star
        scale = np.maximum(1.0, np.abs(lhs))
        st = world_settings(w)
        st["pi_has_zeros"] = not pi.full_support
        rows.append(make_row(ID, "sound", 2 * i, np.max(np.abs(lhs - rhs) / scale), TOLERANCE,
                             "J = β log Z − β KL", **st))
        logz_cf = _closed_form_logZ(r, ref.logp, beta)
        rows.append(make_row(ID, "sound", 2 * i + 1,
                             np.max(np.abs(so.log_Z - logz_cf) / np.maximum(1.0, np.abs(logz_cf))),
                             TOLERANCE, "V_0/β = log Σ π_ref e^{r/β}", **st))
        broken = -beta * kl_star  # partition function dropped
        rows.append(make_row(ID, "broken", i, np.max(np.abs(lhs - broken) / scale), TOLERANCE,
                             "log Z dropped", **st))
    return rows
