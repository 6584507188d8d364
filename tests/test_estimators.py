"""Offline/online estimators against brute force, optimality conditions and the theorems.

References: finite classes by enumeration with ``naive.class_bt_loglik``; convex problems by
a generic scipy optimiser on the naive objective (``naive_penalised_bt``); closed forms for
the literature cases.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import lse
from scipy import optimize

import naive
from genver.classes import (
    FinitePolicyClass,
    LinearRewardClass,
    LogLinearPolicyClass,
    SoftOptimalPolicyClass,
    TabularPolicyClass,
    TabularRewardClass,
    induced_reward_class,
    random_reward_class,
)
from genver.estimators import dpo, ipo, reward_mle, rm_rl
from genver.estimators.online import dpo_2x, online_dpo, policy_gradient
from genver.features import token_features, trajectory_features
from genver.policy import Policy, random_policy
from genver.preferences import Preferences, sample_preferences
from genver.softrl import soft_optimal
from genver.spaces import TreeSpace

BETA = 0.7


@pytest.fixture
def world():
    sp = TreeSpace(P=2, V=2, H=3)
    ref = random_policy(sp, 11)
    r_star = np.random.default_rng(12).normal(size=sp.shape)
    return sp, ref, r_star


def naive_penalised_bt(pairs, P, T, l2, to_reward):
    """argmax_v Σ log σ(r(v)[y⁺] − r(v)[y⁻]) − (λ/2) Σ_x Σ_y (r − r̄_x)² with a generic
    optimiser (BFGS, numerical gradients) over the full parameter vector ``v``."""
    def neg(v):
        r = to_reward(v)
        rc = r - r.mean(axis=1, keepdims=True)
        return -(naive.bt_loglik(r, pairs) - 0.5 * l2 * np.sum(rc * rc))
    res = optimize.minimize(neg, np.zeros(P * T), method="BFGS", options={"gtol": 1e-10})
    r = to_reward(res.x)
    return r - r.mean(axis=1, keepdims=True)


def centred(r):
    return r - r.mean(axis=1, keepdims=True)


# -- finite classes -------------------------------------------------------------------------
def test_finite_dpo_and_reward_mle_match_enumeration(world):
    sp, ref, r_star = world
    R = random_reward_class(sp, 6, 1)
    Pi = FinitePolicyClass.soft_optimal_of(R, ref, BETA).with_distractors(30, 2, ref=ref, beta=BETA)
    for n in (1, 3, 10, 100):
        d = sample_preferences(r_star, ref, n, 100 + n)
        pairs = d.as_array()
        ll = naive.class_bt_loglik(BETA * (Pi.logp - ref.logp[None]), pairs)
        res = dpo(d, Pi, ref, BETA)
        assert res.policy_index == int(np.argmax(ll))
        assert res.objective == pytest.approx(ll.max(), rel=1e-12, abs=1e-12)
        llr = naive.class_bt_loglik(R.tables, pairs)
        rm = reward_mle(d, R)
        assert rm.reward_index == int(np.argmax(llr))
        assert rm.objective == pytest.approx(llr.max(), rel=1e-12, abs=1e-12)


def test_finite_ties_lowest_index_and_set_valued_flag(world):
    sp, ref, _ = world
    base = random_policy(sp, 3).logp
    other = random_policy(sp, 4).logp
    # member 2 differs from member 0 only on prompt 1, which the data never touches
    m2 = base.copy()
    m2[1] = other[1]
    Pi = FinitePolicyClass(sp, np.stack([base, other, m2, base]))
    d = Preferences.from_array(sp, np.array([[0, 1, 2], [0, 3, 1]]))
    ll = naive.class_bt_loglik(BETA * (Pi.logp - ref.logp[None]), d.as_array())
    assert ll[0] == pytest.approx(ll[2]) and ll[0] == pytest.approx(ll[3])
    res = dpo(d, Pi, ref, BETA)
    if ll[0] >= ll[1]:
        assert res.policy_index == 0 and res.set_valued  # 0, 2 differ; 3 is a copy of 0
    # an exact duplicate alone is not a set of optima
    Pi2 = FinitePolicyClass(sp, np.stack([base, base]))
    r2 = dpo(d, Pi2, ref, BETA)
    assert r2.policy_index == 0 and not r2.set_valued


# -- Theorem 2.2: isomorphic classes, same optima ------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5, 20, 200])
def test_theorem_2_2_finite(world, n):
    sp, ref, r_star = world
    Pi = FinitePolicyClass.soft_optimal_of(random_reward_class(sp, 5, 7), ref, BETA).with_distractors(
        60, 8, ref=ref, beta=BETA)
    R_Pi = induced_reward_class(Pi, ref, BETA)
    d = sample_preferences(r_star, ref, n, n)
    off, on = dpo(d, Pi, ref, BETA), rm_rl(d, R_Pi, Pi, ref, BETA)
    assert off.policy_index == on.policy_index == on.reward_index
    np.testing.assert_array_equal(off.policy.logp, on.policy.logp)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 30, 300])
def test_theorem_2_2_tabular(world, n):
    sp, ref, r_star = world
    d = sample_preferences(r_star, ref, n, 1000 + n)
    off = dpo(d, TabularPolicyClass(sp), ref, BETA, l2=0.05)
    on = rm_rl(d, TabularRewardClass(sp), TabularPolicyClass(sp), ref, BETA, l2=0.05)
    np.testing.assert_allclose(off.policy.logp, on.policy.logp, atol=1e-10)  # exact Newton on both sides
    assert off.grad_norm < 1e-10 and on.grad_norm < 1e-10
    # with few pairs coverage is partial: untouched completions are flagged unidentified
    if n <= 3:
        assert not on.identified.all()
    np.testing.assert_array_equal(off.identified, on.identified)


def test_theorem_2_2_broken_variant_separates(world):
    """Non-isomorphic pair (R a random finite class, not R(Π)): the routes differ."""
    sp, ref, r_star = world
    Pi = FinitePolicyClass.soft_optimal_of(random_reward_class(sp, 5, 7), ref, BETA).with_distractors(
        60, 8, ref=ref, beta=BETA)
    R_other = random_reward_class(sp, 5, 99)
    gaps = []
    for seed in range(10):
        d = sample_preferences(r_star, ref, 50, seed)
        gaps.append(np.abs(dpo(d, Pi, ref, BETA).policy.logp - rm_rl(d, R_other, Pi, ref, BETA).policy.logp).max())
    assert max(gaps) > 1e-3


def test_tabular_reward_mle_matches_generic_optimiser(world):
    sp, ref, r_star = world
    d = sample_preferences(r_star, ref, 12, 5)
    l2 = 0.3
    rm = reward_mle(d, TabularRewardClass(sp), l2=l2)
    ref_r = naive_penalised_bt(d.as_array(), sp.P, sp.T, l2, lambda v: v.reshape(sp.shape))
    np.testing.assert_allclose(centred(rm.reward), ref_r, atol=1e-5)
    # untouched completions sit at the per-prompt mean (which is 0)
    np.testing.assert_allclose(rm.reward[~rm.identified], 0.0, atol=1e-12)
    np.testing.assert_allclose(rm.reward.mean(axis=1), 0.0, atol=1e-8)


def test_tabular_dpo_matches_generic_optimiser(world):
    sp, ref, r_star = world
    d = sample_preferences(r_star, ref, 12, 6)
    l2 = 0.3
    res = dpo(d, TabularPolicyClass(sp), ref, BETA, l2=l2)

    def reward_of_logits(z):
        s = ref.logp + z.reshape(sp.shape)
        return BETA * (s - lse(s)[:, None] - ref.logp)
    r = naive_penalised_bt(d.as_array(), sp.P, sp.T, l2, reward_of_logits)
    np.testing.assert_allclose(centred(res.reward), r, atol=1e-5)


def test_linear_reward_mle_kkt_and_generic(world):
    sp, ref, r_star = world
    phi = trajectory_features(sp, ["token_counts", "parity", "first_last_match"])
    R = LinearRewardClass(sp, phi)
    d = sample_preferences(r_star, ref, 40, 9)
    l2 = 0.1
    rm = reward_mle(d, R, l2=l2)
    pairs = d.as_array()

    def neg(w):
        return -(naive.bt_loglik(phi @ w, pairs) - 0.5 * l2 * w @ w)
    w_ref = optimize.minimize(neg, np.zeros(R.n_params), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(rm.params, w_ref, atol=1e-5)  # BFGS with finite-difference gradients
    assert rm.grad_norm <= 1e-13 * 40 and rm.converged and rm.extra["solver"] == "newton"


def test_loglinear_dpo_position_token_kkt(world):
    """Position-token class: the per-node normalisers cancel, DPO is concave; check the
    stationarity by finite differences of the naive objective."""
    sp, ref, r_star = world
    LL = LogLinearPolicyClass(sp, ref, token_features(sp, "position_token"))
    d = sample_preferences(r_star, ref, 30, 3)
    l2 = 0.05
    res = dpo(d, LL, ref, BETA, l2=l2)
    pairs = d.as_array()

    def obj(theta):
        pol = LL.policy(theta)
        return naive.bt_loglik(BETA * (pol.logp - ref.logp), pairs) - 0.5 * l2 * BETA**2 * theta @ theta
    eps = 1e-5
    g = np.array([(obj(res.params + eps * e) - obj(res.params - eps * e)) / (2 * eps) for e in np.eye(LL.n_params)])
    assert np.abs(g).max() < 1e-5
    assert res.objective == pytest.approx(obj(res.params), rel=1e-10)


# -- Theorem 3.1: online with R_sim = MLE over Π(R_sim) ------------------------------------
@pytest.mark.parametrize("n", [1, 4, 16, 64])
def test_theorem_3_1_finite(world, n):
    sp, ref, _ = world
    R = random_reward_class(sp, 8, 21)
    r_star = R.member(3)
    Pi_R = FinitePolicyClass.soft_optimal_of(R, ref, BETA)
    Pi = Pi_R.with_distractors(200, 22, ref=ref, beta=BETA)
    d = sample_preferences(r_star, ref, n, 50 + n)
    on = rm_rl(d, R, Pi, ref, BETA)
    restricted = dpo(d, Pi_R, ref, BETA)
    assert on.policy_index == restricted.policy_index  # Π(R) occupies the first |R| members
    np.testing.assert_allclose(on.policy.logp, restricted.policy.logp, atol=1e-12)


def test_theorem_3_1_linear(world):
    """Online: ridge reward MLE over R_lin, then exact backward induction over the *tabular*
    class; offline restricted to Π(R_lin) (exponential family): the same policy."""
    sp, ref, r_star = world
    R = LinearRewardClass(sp, trajectory_features(sp, ["token_counts", "first_last_match"]))
    d = sample_preferences(r_star, ref, 25, 4)
    on = rm_rl(d, R, TabularPolicyClass(sp), ref, BETA, l2=0.1)
    restricted = dpo(d, SoftOptimalPolicyClass(R, ref, BETA), ref, BETA, l2=0.1)
    np.testing.assert_allclose(on.policy.logp, restricted.policy.logp, atol=1e-9)


# -- IPO and the literature cases -----------------------------------------------------------
def test_ipo_finite_matches_enumeration(world):
    sp, ref, r_star = world
    Pi = FinitePolicyClass.soft_optimal_of(random_reward_class(sp, 20, 5), ref, BETA)
    d = sample_preferences(r_star, ref, 15, 2)
    tau = 0.8
    for average, scale in (("sequence", 1.0), ("token", 1.0 / sp.H)):
        loss = [sum((scale * ((lp[x, a] - ref.logp[x, a]) - (lp[x, b] - ref.logp[x, b])) - 1 / (2 * tau)) ** 2
                    for x, a, b in d.as_array()) for lp in Pi.logp]
        res = ipo(d, Pi, ref, tau=tau, average=average)
        assert res.policy_index == int(np.argmin(loss))
        assert -res.objective == pytest.approx(min(loss), rel=1e-10)


@pytest.mark.parametrize("beta", [0.1, 1.0, 10.0])
def test_azar_deterministic_preferences_dpo_degenerates_ipo_does_not(beta):
    """Azar et al.: y0 ≻ y1 always. DPO's optimum is at infinity whatever β: as the ridge
    weight λ → 0 its log-ratio margin grows without bound (≈ log(1/λ)/β) and π(y1) → 0;
    IPO's optimum keeps the margin at exactly 1/(2τ), whatever λ."""
    sp = TreeSpace(P=1, V=2, H=1)
    ref = Policy.from_probs(sp, np.array([[0.5, 0.5]]))
    d = Preferences.from_array(sp, np.array([[0, 0, 1]] * 10))
    tau = 0.5
    dpo_margin, ipo_margin = [], []
    for l2 in (1e-2, 1e-5, 1e-8):
        lp = dpo(d, TabularPolicyClass(sp), ref, beta, l2=l2).policy.logp[0]
        dpo_margin.append(lp[0] - lp[1])
        lp = ipo(d, TabularPolicyClass(sp), ref, tau=tau, l2=l2).policy.logp[0]
        ipo_margin.append(lp[0] - lp[1])
    assert all(b - a > 0.5 * np.log(1e3) / beta for a, b in zip(dpo_margin, dpo_margin[1:]))
    np.testing.assert_allclose(ipo_margin[1:], 1 / (2 * tau), atol=1e-4)  # ref ratio is 1


def test_ipo_length_averaging_rescales_the_target():
    """Equal-length completions: length-averaged IPO with τ equals summed IPO with τ/H."""
    sp = TreeSpace(P=1, V=2, H=3)
    ref = random_policy(sp, 0)
    d = Preferences.from_array(sp, np.array([[0, 5, 2]] * 4 + [[0, 2, 7]]))
    a = ipo(d, TabularPolicyClass(sp), ref, tau=1.0, average="token", l2=1e-6)
    b = ipo(d, TabularPolicyClass(sp), ref, tau=1.0 / sp.H, average="sequence", l2=1e-6)
    u_a, u_b = a.policy.logp - ref.logp, b.policy.logp - ref.logp
    assert (u_a[0, 5] - u_a[0, 2]) == pytest.approx(u_b[0, 5] - u_b[0, 2], rel=1e-2)
    assert u_a[0, 5] - u_a[0, 2] > 1.0  # the token-averaged margin is H times the summed one


def test_xu_et_al_unseen_response():
    """Xu et al. 2024: π_ref = (½, ½, 0), data only y1 ≻ y2. DPO's optimum over a class that
    contains a policy with mass on the unseen y3 can pick it; RM + KL-regularised RL keeps
    π(y3) = 0 exactly."""
    sp = TreeSpace(P=1, V=3, H=1)
    ref = Policy.from_probs(sp, np.array([[0.5, 0.5, 0.0]]))
    with np.errstate(divide="ignore"):
        members = np.log(np.array([[[0.98, 0.01, 0.01]], [[0.1, 0.001, 0.899]], [[0.5, 0.5, 0.0]]]))
    Pi = FinitePolicyClass(sp, members)
    d = Preferences.from_array(sp, np.array([[0, 0, 1]] * 5))
    off = dpo(d, Pi, ref, 1.0)
    assert off.policy_index == 1 and off.policy.probs[0, 2] == pytest.approx(0.899)
    on = rm_rl(d, TabularRewardClass(sp), TabularPolicyClass(sp), ref, 1.0, l2=1e-3)
    assert on.policy.probs[0, 2] == 0.0
    assert on.policy.probs[0, 0] > 0.9


# -- online DPO, policy gradient, DPO 2× ----------------------------------------------------
def test_online_dpo_bradley_terry_labels_approach_soft_optimal_of_rhat(world):
    sp, ref, _ = world
    r_hat = np.random.default_rng(3).normal(size=sp.shape)
    res = online_dpo(r_hat, TabularPolicyClass(sp), ref, BETA, K=2, rounds=4, pairs_per_round=20000,
                     labels="bradley_terry", l2=1e-6, random_state=0)
    kl = res.extra["kl_to_target"]
    small = online_dpo(r_hat, TabularPolicyClass(sp), ref, BETA, K=2, rounds=1, pairs_per_round=200,
                       labels="bradley_terry", l2=1e-6, random_state=0)
    assert kl[-1] < 2e-3 < small.extra["kl_to_target"][-1]
    assert res.extra["n_pairs"] == 80000


def test_online_dpo_top_bottom_is_reproducible_and_uses_the_pool(world):
    sp, ref, _ = world
    r_hat = np.random.default_rng(3).normal(size=sp.shape)
    a = online_dpo(r_hat, TabularPolicyClass(sp), ref, BETA, K=5, rounds=3, pairs_per_round=50, random_state=1)
    b = online_dpo(r_hat, TabularPolicyClass(sp), ref, BETA, K=5, rounds=3, pairs_per_round=50, random_state=1)
    np.testing.assert_array_equal(a.policy.logp, b.policy.logp)
    assert a.extra["n_pairs"] == 150


def test_policy_gradient_exact_and_sampled(world):
    sp, ref, _ = world
    r_hat = np.random.default_rng(4).normal(size=sp.shape)
    ex = policy_gradient(r_hat, TabularPolicyClass(sp), ref, BETA, steps=3000, lr=4.0, exact=True)
    assert ex.extra["gap_to_optimum"] < 1e-6
    target = soft_optimal(r_hat, ref, BETA).policy
    np.testing.assert_allclose(ex.policy.logp, target.logp, atol=1e-3)
    sa = policy_gradient(r_hat, TabularPolicyClass(sp), ref, BETA, steps=400, lr=0.5, K=8, random_state=0)
    h = sa.extra["gap_history"]
    assert sa.extra["gap_to_optimum"] < h[0] / 5
    LL = LogLinearPolicyClass(sp, ref, token_features(sp, "tabular"))
    ll = policy_gradient(r_hat, LL, ref, BETA, steps=3000, lr=4.0, exact=True)
    assert ll.extra["gap_to_optimum"] < 1e-6


def test_dpo_2x_equals_half_the_penalty(world):
    sp, ref, r_star = world
    d = sample_preferences(r_star, ref, 20, 8)
    a = dpo_2x(d, TabularPolicyClass(sp), ref, BETA, l2=0.2)
    b = dpo(d, TabularPolicyClass(sp), ref, BETA, l2=0.1)
    np.testing.assert_allclose(a.policy.logp, b.policy.logp, atol=1e-10)


# -- bad input ------------------------------------------------------------------------------
def test_estimator_bad_input(world):
    sp, ref, r_star = world
    d = sample_preferences(r_star, ref, 5, 0)
    with pytest.raises(ValueError, match="l2"):
        reward_mle(d, TabularRewardClass(sp), l2=0.0)
    with pytest.raises(ValueError, match="beta"):
        dpo(d, TabularPolicyClass(sp), ref, -1.0)
    with pytest.raises(ValueError, match="data"):
        dpo(d.as_array(), TabularPolicyClass(sp), ref, BETA)
    with pytest.raises(ValueError, match="average"):
        ipo(d, TabularPolicyClass(sp), ref, average="mean")
    with pytest.raises(ValueError, match="labels"):
        online_dpo(r_star, TabularPolicyClass(sp), ref, BETA, labels="best")
    with pytest.raises(ValueError, match="K"):
        online_dpo(r_star, TabularPolicyClass(sp), ref, BETA, K=1)


def test_additive_pair_is_isomorphic_and_routes_coincide():
    """Additive verifier (position-token trajectory features) vs the position-token log-linear
    generator under a position-factorised (uniform) reference: R = R(Π), so DPO and
    reward MLE + exact RL give the same policy (Theorem 2.2, ROUGE-L analogue)."""
    from genver.policy import uniform_policy
    sp = TreeSpace(P=2, V=3, H=3)
    ref = uniform_policy(sp)
    target_r = -(1.0 - trajectory_features(sp, "target_match", random_state=0)).sum(axis=2)
    R = LinearRewardClass(sp, trajectory_features(sp, "position_token"))
    LL = LogLinearPolicyClass(sp, ref, token_features(sp, "position_token"))
    for n in (3, 20, 200):
        d = sample_preferences(target_r, ref, n, n)
        off = dpo(d, LL, ref, BETA, l2=0.1)
        on = rm_rl(d, R, TabularPolicyClass(sp), ref, BETA, l2=0.1)
        np.testing.assert_allclose(off.policy.logp, on.policy.logp, atol=1e-6)


def test_nested_paths_equal_per_size_fits(world):
    """dpo_path / reward_mle_path / rm_rl_path on one stream = the per-n estimators on its
    prefixes: same picks, objectives equal to summation order."""
    from genver.estimators import dpo_path, reward_mle_path, rm_rl_path
    sp, ref, r_star = world
    R = random_reward_class(sp, 5, 31)
    Pi = FinitePolicyClass.soft_optimal_of(R, ref, BETA).with_distractors(300, 32, ref=ref, beta=BETA)
    d = sample_preferences(R.member(0), ref, 400, 33)
    sizes = [1, 2, 3, 7, 20, 64, 150, 400]
    paths = (dpo_path(d, sizes, Pi, ref, BETA), reward_mle_path(d, sizes, R), rm_rl_path(d, sizes, R, Pi, ref, BETA))
    for n, a, b, c in zip(sizes, *paths):
        h = d.head(n)
        for got, want in ((a, dpo(h, Pi, ref, BETA)), (b, reward_mle(h, R)), (c, rm_rl(h, R, Pi, ref, BETA))):
            assert got.policy_index == want.policy_index and got.reward_index == want.reward_index
            assert got.objective == pytest.approx(want.objective, rel=1e-12, abs=1e-12)
            assert got.set_valued == want.set_valued
    with pytest.raises(ValueError, match="increasing"):
        dpo_path(d, [5, 3], Pi, ref, BETA)
    with pytest.raises(ValueError, match="exceeds"):
        dpo_path(d, [500], Pi, ref, BETA)
    with pytest.raises(ValueError, match="finite policy class"):
        dpo_path(d, [5], TabularPolicyClass(sp), ref, BETA)


def test_ipo_loglinear_matches_generic_optimiser(world):
    """IPO over the position-token log-linear class: L-BFGS with the exact tree gradient lands
    on the minimiser a generic optimiser finds on the naive objective."""
    sp, ref, r_star = world
    LL = LogLinearPolicyClass(sp, ref, token_features(sp, "position_token"))
    d = sample_preferences(r_star, ref, 25, 7)
    tau, l2 = 0.7, 0.05
    res = ipo(d, LL, ref, tau=tau, l2=l2)

    def loss(theta):
        u = LL.policy(theta).logp - ref.logp
        return sum(((u[x, a] - u[x, b]) - 1 / (2 * tau)) ** 2 for x, a, b in d.as_array()) + 0.5 * l2 * theta @ theta
    ref_theta = optimize.minimize(loss, np.zeros(LL.n_params), method="BFGS", options={"gtol": 1e-9}).x
    assert loss(res.params) <= loss(ref_theta) + 1e-8
    assert -res.objective == pytest.approx(loss(res.params), rel=1e-9)
    assert res.grad_norm < 1e-6
