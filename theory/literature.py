r"""Two results from the literature, reproduced exactly (Xu et al. 2024; Azar et al. 2023).

Proposition A — Xu et al. (2024), "Is DPO superior to PPO for LLM alignment?", §4.1
----------------------------------------------------------------------------------
Let ``π_ref`` put zero mass on a set ``U`` of completions ("unseen") and let the preference data
involve only completions in ``S = supp(π_ref)``. Then

1. the DPO log-likelihood of a policy depends only on its log-ratios on ``S``:
   replacing ``π`` by ``(1−m')·π(·|S) + m'·q`` for any mass ``m'`` and any ``q`` on ``U``
   leaves ``Σ_i log σ(β log π/π_ref(y_i⁺) − β log π/π_ref(y_i⁻))`` unchanged, so DPO over a class
   whose members put mass on ``U`` can (and here does) return a policy with ``π(U) > 0``;
2. RM + KL-regularised RL keeps ``π(U) = 0`` exactly: ``π*_r̂ ∝ π_ref e^{r̂/β}`` vanishes where
   ``π_ref`` does, whatever ``r̂``.

Proposition B — Azar et al. (2023), "A general theoretical paradigm to understand learning from
human preferences" (IPO), §4–5
------------------------------------------------------------------------------------------------
Deterministic preferences: ``n`` copies of one pair ``y⁺ ≻ y⁻``. With genver's tabular ridge
(``(λ/2) Σ_y (u(y) − ū)²`` on the log-ratio scale ``u = log π/π_ref`` for IPO, on ``r_π = βu`` for
DPO; untouched completions sit at the mean), the optima solve in closed form

* DPO: the reward margin ``m = β h`` (``h = u(y⁺) − u(y⁻)``) solves ``n σ(−m) = λ m / 2``, so
  ``h = m/β ≈ (log(1/λ) + log(2n) − log m)/β → ∞`` as ``λ → 0``, whatever ``β``: DPO drives the
  policy to a deterministic one;
* IPO with target ``t = 1/(2τ)`` and scale ``s`` (1 for summed log-probabilities,
  ``1/H`` for length-averaged ones): ``h = 4nst/(4ns² + λ) → t/s`` — bounded, ``H·t`` for the
  token-averaged variant.

What is measured
----------------
A: random ``(V, H)`` with ``T ∈ {3, 4, 8, 9}``, ``π_ref`` zero on a random nonempty ``U``,
``n ∈ [1, 30]`` Bradley–Terry pairs inside ``S``, a finite class of 3–20 members with mass
``m ∈ [0.3, 0.95]`` on ``U`` plus one member with none. Discrepancy:
``max_k |ℓ_k − ℓ'_k| / max(1, |ℓ_k|)`` (``ℓ'`` after redrawing every member's ``U`` mass) +
``1[DPO's pick ≠ the closed-form argmax]`` + ``π̂_RM+RL(U)`` (``reward_mle`` tabular +
``rl_step`` tabular). Rows report ``π̂_DPO(U)``.
B: random ``(V, H)``, reference, ``β ∈ [0.1, 10]``, ``τ ∈ [0.25, 2]``, ``n ∈ [1, 50]``, averaging
mode, ``λ ∈ {1e-1, 1e-2, 1e-3, 1e-4}``; discrepancy ``|h_fit − h_closed form| / max(1, |h|)`` for
``dpo`` and ``ipo`` (tabular class).

Tolerance ``1e-9``: the tabular fits are solved by exact Newton (observed ≤ 2.2e-12 over 2100
cases, full run, seed 0; it was ``1e-4`` for L-BFGS on the flat DPO objective at ``λ = 1e-4``).

Broken variants: (A) the claim "DPO also keeps ``π(U) = 0``" — discrepancy ``π̂_DPO(U)``;
(B) IPO's target misspecified as ``1/τ`` instead of ``1/(2τ)``, and DPO's margin predicted to stay
bounded like IPO's (``h = t/s``), each measured as above.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize

from ..classes import FinitePolicyClass, TabularPolicyClass, TabularRewardClass
from ..estimators import dpo, ipo, reward_mle, rl_step
from ..policy import Policy, random_policy
from ..preferences import Preferences
from ..spaces import TreeSpace
from ._common import case_generators, make_row

ID = "literature"
STATEMENT = ("Xu et al.: DPO ignores unseen y (RM+RL keeps π(y)=0); "
             "Azar et al.: DPO margin ~ log(1/λ)/β, IPO's → 1/(2τ)")
TOLERANCE = 1e-9
_LAMBDAS = (1e-1, 1e-2, 1e-3, 1e-4)
_SHAPES = [(3, 1), (2, 2), (2, 3), (3, 2)]


def _log_sigmoid(z):
    return np.where(z >= 0, -np.log1p(np.exp(-np.abs(z))), z - np.log1p(np.exp(-np.abs(z))))


def _xu_case(rng):
    V, H = _SHAPES[int(rng.integers(len(_SHAPES)))]
    sp = TreeSpace(1, V, H)
    T = sp.T
    beta = float(np.exp(rng.uniform(np.log(0.1), np.log(5.0))))
    n_unseen = int(rng.integers(1, T - 1))
    perm = rng.permutation(T)
    U, S = np.sort(perm[:n_unseen]), np.sort(perm[n_unseen:])
    ref_p = np.zeros(T)
    ref_p[S] = rng.dirichlet(np.ones(S.size))
    ref = Policy.from_probs(sp, ref_p[None])
    # data: pairs inside S, Bradley–Terry labels of a random reward
    n = int(rng.integers(1, 31))
    r_star = 2.0 * rng.standard_normal(T)
    a = S[rng.integers(S.size, size=n)]
    b = S[rng.integers(S.size, size=n)]
    first = rng.random(n) < 1.0 / (1.0 + np.exp(-(r_star[a] - r_star[b])))
    pairs = np.stack([np.zeros(n, np.int64), np.where(first, a, b), np.where(first, b, a)], axis=1)
    data = Preferences.from_array(sp, pairs, self_pairs="keep")  # a sampled stream: y⁺ = y⁻ included

    def members(K, masses):
        out = np.empty((K, T))
        for k in range(K):
            pS = rng.dirichlet(np.full(S.size, 0.5)) + 1e-12
            pU = rng.dirichlet(np.ones(U.size))
            out[k, S] = (1 - masses[k]) * pS / pS.sum()
            out[k, U] = masses[k] * pU
        return out

    K = int(rng.integers(3, 21))
    probs = members(K, rng.uniform(0.3, 0.95, size=K))
    no_u = np.zeros(T)
    no_u[S] = rng.dirichlet(np.ones(S.size)) + 1e-12
    no_u /= no_u.sum()
    probs = np.concatenate([no_u[None], probs])
    with np.errstate(divide="ignore"):
        Pi = FinitePolicyClass(sp, np.log(probs)[:, None, :])
        # the same members with their U mass (amount and shape) redrawn
        probs2 = probs.copy()
        for k in range(1, K + 1):
            m_new = rng.uniform(0.01, 0.99)
            q = rng.dirichlet(np.ones(U.size))
            sS = probs[k, S] / probs[k, S].sum()
            probs2[k, S] = (1 - m_new) * sS
            probs2[k, U] = m_new * q
        Pi2 = FinitePolicyClass(sp, np.log(probs2)[:, None, :])
    off = dpo(data, Pi, ref, beta)
    off2 = dpo(data, Pi2, ref, beta)
    ll, ll2 = off.extra["loglik_all"], off2.extra["loglik_all"]
    # closed-form DPO log-likelihood by plain numpy
    lr = np.log(np.where(ref_p > 0, ref_p, 1.0))
    with np.errstate(divide="ignore"):
        lp = np.log(probs)
    z = beta * ((lp[:, pairs[:, 1]] - lr[pairs[:, 1]]) - (lp[:, pairs[:, 2]] - lr[pairs[:, 2]]))
    ll_cf = _log_sigmoid(z).sum(axis=1)
    k_cf = int(np.flatnonzero(ll_cf >= ll_cf.max() - 1e-12 * max(1.0, abs(ll_cf.max())))[0])
    rm = reward_mle(data, TabularRewardClass(sp), l2=float(np.exp(rng.uniform(np.log(1e-3), 0.0))))
    on = rl_step(rm.reward, TabularPolicyClass(sp), ref, beta)
    on_U = float(on.policy.probs[0, U].sum())
    off_U = float(off.policy.probs[0, U].sum())
    sound = (float(np.max(np.abs(ll - ll2) / np.maximum(1.0, np.abs(ll))))
             + float(np.max(np.abs(ll - ll_cf) / np.maximum(1.0, np.abs(ll))))
             + float(off.policy_index != k_cf) + on_U)
    st = dict(V=V, H=H, T=T, beta=beta, N=n, unseen=int(U.size), class_size=Pi.size, dpo_mass_unseen=off_U,
              rm_rl_mass_unseen=on_U)
    return sound, off_U, st


def _dpo_margin(n, beta, lam):
    m = optimize.brentq(lambda m: n * np.exp(-np.logaddexp(0.0, m)) - lam * m / 2.0, 0.0, 1e4, xtol=1e-14,
                      rtol=1e-14)
    return m / beta


def _ipo_margin(n, s, t, lam):
    return 4.0 * n * s * t / (4.0 * n * s * s + lam)


def _azar_case(rng):
    V, H = _SHAPES[int(rng.integers(len(_SHAPES)))]
    sp = TreeSpace(1, V, H)
    ref = random_policy(sp, rng)
    beta = float(np.exp(rng.uniform(np.log(0.1), np.log(10.0))))
    tau = float(np.exp(rng.uniform(np.log(0.25), np.log(2.0))))
    n = int(rng.integers(1, 51))
    average = "token" if rng.random() < 0.5 else "sequence"
    s = 1.0 / H if average == "token" else 1.0
    yp, yn = rng.choice(sp.T, size=2, replace=False)
    data = Preferences.from_array(sp, np.array([[0, yp, yn]] * n))
    t = 1.0 / (2.0 * tau)
    out = []
    for lam in _LAMBDAS:
        u = dpo(data, TabularPolicyClass(sp), ref, beta, l2=lam).policy.logp[0] - ref.logp[0]
        h_dpo = u[yp] - u[yn]
        u = ipo(data, TabularPolicyClass(sp), ref, tau=tau, average=average, l2=lam).policy.logp[0] - ref.logp[0]
        h_ipo = u[yp] - u[yn]
        pred_dpo, pred_ipo = _dpo_margin(n, beta, lam), _ipo_margin(n, s, t, lam)
        st = dict(V=V, H=H, T=sp.T, beta=beta, tau=tau, N=n, average=average, l2=lam, dpo_margin=h_dpo,
                  ipo_margin=h_ipo, dpo_margin_pred=pred_dpo, ipo_margin_pred=pred_ipo)
        sound = max(abs(h_dpo - pred_dpo) / max(1.0, abs(pred_dpo)), abs(h_ipo - pred_ipo) / max(1.0, abs(pred_ipo)))
        bad_ipo = abs(h_ipo - _ipo_margin(n, s, 2.0 * t, lam)) / max(1.0, abs(h_ipo))
        bad_dpo = abs(h_dpo - t / s) / max(1.0, t / s)
        out.append((sound, bad_ipo, bad_dpo, st))
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
    n_xu, n_azar = (150, 15) if quick else (1500, 150)
    rows = []
    for i, rng in enumerate(case_generators(random_state, n_xu, stream=0)):
        sound, off_U, st = _xu_case(rng)
        rows.append(make_row(ID, "sound", i, sound, TOLERANCE, "Xu: DPO blind to U, RM+RL keeps π(U)=0", **st))
        rows.append(make_row(ID, "broken", i, off_U, TOLERANCE, "Xu: claim DPO keeps π(U)=0", **st))
    j, b = n_xu, n_xu
    for rng in case_generators(random_state, n_azar, stream=1):
        for sound, bad_ipo, bad_dpo, st in _azar_case(rng):
            rows.append(make_row(ID, "sound", j, sound, TOLERANCE, "Azar: DPO/IPO margins (closed form)", **st))
            rows.append(make_row(ID, "broken", b, bad_ipo, TOLERANCE, "Azar: IPO target 1/τ", **st))
            rows.append(make_row(ID, "broken", b + 1, bad_dpo, TOLERANCE, "Azar: DPO bounded like IPO", **st))
            j, b = j + 1, b + 2
    return rows
