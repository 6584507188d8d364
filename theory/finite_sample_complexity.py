r"""Finite-class sample complexity of maximum likelihood (standard learning theory, not a
theorem of the paper; docs/concepts.md, "Why the routes coincide").

Proposition
-----------
Let ``F`` be a finite class of Bradley–Terry preference models ``P_f(y1 ≻ y2 | x) = σ(f(x,y1) −
f(x,y2))`` containing the truth ``f* = r*`` (realisable), and ``f̂`` the maximum-likelihood member on
``N`` i.i.d. labelled pairs ``x ~ ρ``, ``y1, y2 ~ μ``. With
``D²_H(p, q) = (√p − √q)² + (√(1−p) − √(1−q))²`` (squared Hellinger distance between the two
label distributions, without the factor ½) and
``E H²(f̂) = E_{x~ρ, y1,y2~μ} D²_H(P_f̂(·|x,y1,y2), P_f*(·|x,y1,y2))``, for every ``δ ∈ (0, 1)``:

    P( E H²(f̂) > 2 log(|F|/δ) / N ) ≤ δ.

Source: Zhang (2006), "From ε-entropy to KL-entropy: analysis of minimum information complexity
density estimation", Ann. Statist. 34(5) (finite-class case); Agarwal, Kakade, Krishnamurthy,
Sun (2020), FLAMBE, Thm 21 ("MLE generalisation", stated for total variation, TV² ≤ D²_H);
Foster & Rakhlin (2023), *Foundations of RL and interactive decision making*, MLE for
conditional density estimation. Proof in three lines: with
``L_f = ½ Σ_i log(P_f/P_f*)(label_i)``, ``E e^{L_f} = (E BC_f)^N`` (``BC`` the Bhattacharyya
coefficient), so by Markov and a union bound, w.p. ``≥ 1 − δ`` every ``f`` has
``L_f ≤ N log E BC_f + log(|F|/δ)``; the MLE has ``L_f̂ ≥ 0``, hence
``E H² = 2(1 − E BC) ≤ −2 log E BC ≤ 2 log(|F|/δ)/N``.

Both routes of the paper are such MLEs: offline DPO over a finite ``Π`` is the MLE over
``{r_π : π ∈ Π}`` (``|F| = |Π|``), the online reward MLE is over ``R`` (``|F| = |R|``) — the source
of the "online needs ``log|R_sim|``, offline ``log|Π|`` samples" picture.

What is measured
----------------
Random instances: ``r*`` random; ``R = {r*} ∪ {r* + ε_k G_k}`` (``G_k`` standard normal tables,
``ε_k`` log-uniform over two decades, so some members are statistically indistinguishable from
the truth at the sizes used), ``Π = Π(R) ∪ D`` with ``D`` soft-optimal policies of further
perturbations (realisable: ``π*_{r*} ∈ Π``). For each of three ``N`` (including ``N < P·T``) and
``M`` seeds (quick 200, full 1000), the exact ``E H²`` of the fitted model (all ``P·T²`` pairs
enumerated, ``ρ``-weighted, ``μ``-weighted) is compared with the bound at ``δ = 0.1``, for the
offline route (``dpo`` over ``Π``, bound with ``|Π|``) and the online route (``reward_mle`` over
``R``, bound with ``|R|``). Discrepancy per (instance, route, N): ``[p̂ − δ]_+`` with ``p̂`` the
fraction of seeds whose ``E H²`` exceeds the bound. Tolerance ``0.064 = 3·sqrt(δ(1−δ)/200)``
(three Monte-Carlo standard errors at the quick seed count). Rows also report the empirical
``(1 − δ)``-quantile of ``E H²`` beside the bound.

Broken variant: the bound divided by 100 (equivalently, ``log|F|`` and ``log(1/δ)`` replaced by
1% of themselves); its exceedance frequency is far above ``δ``.
"""
from __future__ import annotations

import numpy as np

from ..classes import FinitePolicyClass, FiniteRewardClass
from ..estimators import dpo, reward_mle
from ..preferences import sample_preferences
from ._common import case_generators, make_row, random_world, world_settings

ID = "finite_sample_complexity"
STATEMENT = "finite realisable MLE: P(E H²(f̂) > 2 log(|F|/δ)/N) ≤ δ, offline (|Π|) and online (|R|)"
DELTA = 0.1
TOLERANCE = 0.064
BROKEN_FACTOR = 100.0


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def expected_hellinger(tables, r_true, mu_probs, rho):
    """``E_{x~ρ, y1,y2~μ} D²_H`` between the Bradley–Terry label laws of each table in
    ``tables`` (K, P, T) and of ``r_true`` (P, T); shape (K,).

    Parameters
    ----------
    tables : numpy.ndarray, shape (K, P, T)
        Candidate reward tables.
    r_true : numpy.ndarray, shape (P, T)
        The true reward.
    mu_probs : numpy.ndarray, shape (P, T)
        The sampling distribution ``μ`` of the completions.
    rho : numpy.ndarray, shape (P,)
        The prompt distribution ρ.

    Returns
    -------
    numpy.ndarray, shape (K,)
        The expected squared Hellinger distances.
    """
    p_true = _sigmoid(r_true[:, :, None] - r_true[:, None, :])  # (P, T, T)
    w = rho[:, None, None] * mu_probs[:, :, None] * mu_probs[:, None, :]
    out = np.empty(tables.shape[0])
    for k, f in enumerate(tables):
        p = _sigmoid(f[:, :, None] - f[:, None, :])
        h2 = (np.sqrt(p) - np.sqrt(p_true)) ** 2 + (np.sqrt(1 - p) - np.sqrt(1 - p_true)) ** 2
        out[k] = float(np.sum(w * h2))
    return out


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
    n_inst, M = (6, 200) if quick else (24, 1000)
    rows = []
    idx = {"sound": 0, "broken": 0}
    for rng in case_generators(random_state, n_inst):
        w = random_world(rng, max_T=9, max_PT=18, beta_range=(0.3, 3.0))
        sp, beta, ref, mu, r_star = w["space"], w["beta"], w["ref"], w["mu"], w["r_star"]
        rho = np.full(sp.P, 1.0 / sp.P)
        K_R = int(rng.integers(4, 17))
        eps = np.exp(rng.uniform(np.log(0.03), np.log(3.0), size=K_R - 1))
        noise = rng.standard_normal((K_R - 1,) + sp.shape)
        tables = np.concatenate([r_star[None], r_star[None] + eps[:, None, None] * noise])
        tables = tables[rng.permutation(K_R)]
        R = FiniteRewardClass(sp, tables)
        n_D = int(rng.integers(10, 101))
        eps_d = np.exp(rng.uniform(np.log(0.03), np.log(3.0), size=n_D))
        d_tables = r_star[None] + eps_d[:, None, None] * rng.standard_normal((n_D,) + sp.shape)
        Pi = FinitePolicyClass(sp, np.concatenate([
            FinitePolicyClass.soft_optimal_of(R, ref, beta).logp,
            FinitePolicyClass.soft_optimal_of(FiniteRewardClass(sp, d_tables), ref, beta).logp]))
        h2 = {"offline": expected_hellinger(beta * (Pi.logp - ref.logp[None]), r_star, mu.probs, rho),
              "online": expected_hellinger(R.tables, r_star, mu.probs, rho)}
        size = {"offline": Pi.size, "online": R.size}
        PT = sp.P * sp.T
        ns = sorted({max(1, PT // 2), 4 * PT, 32 * PT})
        picked = {(route, n): np.empty(M) for route in h2 for n in ns}
        for s, srng in enumerate(case_generators(rng.integers(2**63), M)):
            data = sample_preferences(r_star, mu, ns[-1], srng)
            for n in ns:
                d = data.head(n).counts()
                picked[("offline", n)][s] = h2["offline"][dpo(d, Pi, ref, beta).policy_index]
                picked[("online", n)][s] = h2["online"][reward_mle(d, R).reward_index]
        for (route, n), vals in picked.items():
            bound = 2.0 * np.log(size[route] / DELTA) / n
            q = float(np.quantile(vals, 1.0 - DELTA))
            st = dict(world_settings(w), route=route, N=n, class_size=size[route], seeds=M, bound=bound,
                      quantile=q, mean_h2=float(vals.mean()))
            for variant, b in (("sound", bound), ("broken", bound / BROKEN_FACTOR)):
                freq = float(np.mean(vals > b))
                rows.append(make_row(ID, variant, idx[variant], max(0.0, freq - DELTA), TOLERANCE,
                                     f"{route}: bound" + ("" if variant == "sound" else " / 100"),
                                     exceed_freq=freq, **st))
                idx[variant] += 1
    return rows
