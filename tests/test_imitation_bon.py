"""Imitation estimators (SFT, MaxEnt IRL + RL, SPIN) and exact best-of-N.

Expected values come from ``naive.py`` (sections 16-20) or from closed forms written here.
"""
import math
from collections import Counter

import numpy as np
import pytest
from conftest import random_logp

import naive
from genver.classes import (
    FinitePolicyClass,
    FiniteRewardClass,
    LinearRewardClass,
    LogLinearPolicyClass,
    SoftOptimalPolicyClass,
    TabularPolicyClass,
    TabularRewardClass,
    induced_reward_class,
    random_policy_class,
    random_reward_class,
)
from genver.estimators import (
    DEFAULT_L2,
    Demonstrations,
    best_of_n,
    best_of_n_kl_bound,
    maxent_irl,
    maxent_irl_rl,
    sample_demonstrations,
    sft,
    spin,
)
from genver.estimators.tabular import _irl_tabular_objective, _sft_tabular_objective
from genver.features import token_features, trajectory_features
from genver.policy import Policy, random_policy, uniform_policy
from genver.spaces import TreeSpace

BETA = 0.7


def _world(seed=0, P=2, V=2, H=2, K=6):
    rng = np.random.default_rng(seed)
    sp = TreeSpace(P, V, H)
    ref = random_policy(sp, rng)
    truth = random_policy(sp, rng)
    Pi = random_policy_class(sp, K, rng)
    return rng, sp, ref, truth, Pi


def _fd_grad(f, u, eps=1e-6):
    g = np.zeros_like(u)
    for i in np.ndindex(u.shape):
        e = np.zeros_like(u)
        e[i] = eps
        g[i] = (f(u + e) - f(u - e)) / (2 * eps)
    return g


# ---------------------------------------------------------------------------- demonstrations
def test_demonstrations_counts_head_and_sampling():
    _, sp, ref, truth, _ = _world(1, P=3)
    d = sample_demonstrations(truth, 400, 7)
    d2 = sample_demonstrations(truth, 400, 7)
    np.testing.assert_array_equal(d.as_array(), d2.as_array())
    assert not np.array_equal(d.as_array(), sample_demonstrations(truth, 400, 8).as_array())
    assert len(d) == 400 and d.x.dtype == np.int64 and d.y.dtype == np.int64
    C = d.counts()
    cnt = Counter((int(x), int(y)) for x, y in d.as_array())
    expect = np.zeros(sp.shape)
    for (x, y), k in cnt.items():
        expect[x, y] = k
    np.testing.assert_array_equal(C, expect)
    for n in (0, 5, 400):
        np.testing.assert_array_equal(d.head(n).as_array(), d.as_array()[:n])
    rt = Demonstrations.from_array(sp, d.as_array())
    np.testing.assert_array_equal(rt.counts(), C)
    # prompt weights: prompt 1 never drawn; completions follow the policy (large sample)
    big = sample_demonstrations(truth, 60000, 3, prompt_weights=[0.5, 0.0, 0.5])
    Cb = big.counts()
    assert Cb[1].sum() == 0
    for x in (0, 2):
        np.testing.assert_allclose(Cb[x] / Cb[x].sum(), truth.probs[x], atol=0.015)


def test_demonstrations_validation_names_argument():
    sp = TreeSpace(2, 2, 2)
    with pytest.raises(ValueError, match="demos must have shape"):
        Demonstrations.from_array(sp, np.zeros((3, 3), dtype=int))
    with pytest.raises(ValueError, match="demos must be an integer array"):
        Demonstrations.from_array(sp, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"demos\[:, 0\] \(prompt\)"):
        Demonstrations.from_array(sp, [[2, 0]])
    with pytest.raises(ValueError, match=r"demos\[:, 1\] \(completion\)"):
        Demonstrations.from_array(sp, [[0, 4]])
    with pytest.raises(ValueError, match=r"demos\[:, 1\]"):
        Demonstrations.from_array(sp, [[0, -1]])
    d = Demonstrations.from_array(sp, [[0, 1], [1, 3]])
    with pytest.raises(ValueError, match="n = 3 exceeds"):
        d.head(3)
    with pytest.raises(ValueError, match="n must be"):
        sample_demonstrations(uniform_policy(sp), -1, 0)
    with pytest.raises(ValueError, match="prompt_weights"):
        sample_demonstrations(uniform_policy(sp), 3, 0, prompt_weights=[1.0])
    with pytest.raises(ValueError, match="policy must be a genver Policy"):
        sample_demonstrations(np.zeros(sp.shape), 3, 0)


# ---------------------------------------------------------------------------- SFT
def test_sft_finite_matches_naive_including_ties_and_zero_support():
    rng, sp, ref, truth, Pi = _world(2, K=5)
    logp = Pi.logp.copy()
    logp = np.concatenate([logp, logp[2:3]], axis=0)  # member 5 duplicates member 2
    # member 6: zero probability on completion 0 of prompt 0 (in the data below)
    z = random_logp(rng, sp)
    z[0, 0] = -np.inf
    z[0] -= np.log(np.exp(z[0]).sum())
    logp = np.concatenate([logp, z[None]], axis=0)
    cls = FinitePolicyClass(sp, logp)
    for n, seed in [(1, 0), (3, 1), (30, 2)]:
        d = sample_demonstrations(truth, n, seed)
        d = Demonstrations.from_array(sp, np.vstack([[0, 0], d.as_array()]))
        ll, best, maximisers = naive.sft_finite(logp, d.as_array())
        assert ll[6] == -np.inf
        fit = sft(d, cls, ref, BETA)
        np.testing.assert_allclose(fit.extra["loglik_all"], ll, rtol=1e-12, atol=1e-12)
        assert fit.policy_index == maximisers[0]
        assert fit.objective == pytest.approx(best, rel=1e-12)
        np.testing.assert_array_equal(fit.policy.logp, logp[maximisers[0]])
        # the duplicate is never "set-valued"; distinct maximisers would be
        assert fit.set_valued is False
    # exact tie between distinct members: two members equal on the demonstrated entries
    a = Pi.logp[0].copy()
    b = a.copy()
    b[1] = a[1][::-1]  # differs only on prompt 1
    tie = FinitePolicyClass(sp, np.stack([Pi.logp[1], b, a]))
    d = Demonstrations.from_array(sp, [[0, 0], [0, 3]])
    fit = sft(d, tie, ref, BETA)
    ll, _, maximisers = naive.sft_finite(tie.logp, d.as_array())
    assert maximisers == [1, 2] and fit.policy_index == 1 and fit.set_valued is True


def test_sft_tabular_matches_naive_and_kkt():
    _, sp, ref, truth, _ = _world(3, P=2, V=2, H=2)
    d = Demonstrations.from_array(sp, [[0, 1], [0, 1], [0, 2], [1, 3]])  # partial coverage
    for l2 in (DEFAULT_L2, 0.5):
        fit = sft(d, TabularPolicyClass(sp), ref, BETA, l2=l2)
        assert fit.converged and fit.grad_norm <= 1e-12 and fit.extra["solver"] == "newton"
        logp_n, obj_n = naive.tabular_penalised_sft(ref.logp, BETA, d.as_array(), l2)
        np.testing.assert_allclose(fit.policy.probs, np.exp(logp_n), atol=2e-6)
        assert fit.objective == pytest.approx(obj_n, abs=1e-8)
        # stationarity from the definition: C - N_x π - λ β (r_π - mean r_π) = 0
        C = d.counts()
        f = BETA * (fit.policy.logp - ref.logp)
        kkt = C - C.sum(1, keepdims=True) * fit.policy.probs - l2 * BETA * (f - f.mean(1, keepdims=True))
        assert np.abs(kkt).max() < 1e-10
        np.testing.assert_allclose(fit.reward, f)
        assert fit.identified.all()  # both prompts demonstrated
    # an undemonstrated prompt stays at the reference
    d1 = Demonstrations.from_array(sp, [[0, 1], [0, 0]])
    fit = sft(d1, TabularPolicyClass(sp), ref, BETA)
    np.testing.assert_allclose(fit.policy.logp[1], ref.logp[1], atol=1e-12)
    np.testing.assert_array_equal(fit.identified, [[True] * 4, [False] * 4])
    fit0 = sft(d1.head(0), TabularPolicyClass(sp), ref, BETA)
    np.testing.assert_allclose(fit0.policy.logp, ref.logp, atol=1e-12)


def test_tabular_objective_gradients_by_finite_differences():
    rng, sp, ref, truth, _ = _world(4, P=2, V=2, H=2)
    C = sample_demonstrations(truth, 7, 1).counts()
    z = rng.normal(size=sp.shape)
    for fn in (_sft_tabular_objective, _irl_tabular_objective):
        obj, g = fn(z, C, ref.logp, BETA, 0.3)
        fd = _fd_grad(lambda u, fn=fn: fn(u, C, ref.logp, BETA, 0.3)[0], z)
        np.testing.assert_allclose(g, fd, atol=1e-6)
    # both objectives are the same function (z = r/β), and equal the definition
    r = BETA * z
    obj_sft, _ = _sft_tabular_objective(z, C, ref.logp, BETA, 0.3)
    obj_irl, _ = _irl_tabular_objective(r, C, ref.logp, BETA, 0.3)
    demos = np.array([[x, y] for x in range(sp.P) for y in range(sp.T) for _ in range(int(C[x, y]))])
    expect = naive.maxent_irl_loglik(r, ref.logp, BETA, demos) - naive.centred_penalty(r, 0.3)
    assert obj_sft == pytest.approx(expect, abs=1e-10) and obj_irl == pytest.approx(expect, abs=1e-10)


def test_sft_loglinear_stationary():
    rng, sp, ref, truth, _ = _world(5, P=2, V=2, H=3)
    cls = LogLinearPolicyClass(sp, ref, token_features(sp, "position_token"))
    d = sample_demonstrations(truth, 40, 2)
    fit = sft(d, cls, ref, BETA, l2=0.1)
    assert fit.converged and fit.grad_norm <= 1e-6

    def obj(theta):
        return naive.demo_loglik(cls.policy(theta).logp, d.as_array()) - 0.05 * float(theta @ theta)

    assert fit.objective == pytest.approx(obj(fit.params), abs=1e-9)
    np.testing.assert_allclose(_fd_grad(obj, fit.params), 0.0, atol=1e-5)


# ---------------------------------------------------------------------------- MaxEnt IRL
def test_maxent_irl_finite_matches_naive():
    rng, sp, ref, truth, _ = _world(6)
    R = random_reward_class(sp, 7, rng)
    d = sample_demonstrations(truth, 12, 3)
    fit = maxent_irl(d, R, ref, BETA)
    ll = [naive.maxent_irl_loglik(R.tables[k], ref.logp, BETA, d.as_array()) for k in range(R.size)]
    np.testing.assert_allclose(fit.extra["loglik_all"], ll, rtol=1e-12)
    assert fit.reward_index == int(np.argmax(ll))
    np.testing.assert_array_equal(fit.reward, R.tables[fit.reward_index])
    np.testing.assert_allclose(fit.policy.logp, naive.soft_optimal_closed_form(fit.reward, ref.logp, BETA),
                               atol=1e-12)
    # per-prompt constants are invisible: shifting a table ties it with the original, same policy
    shifted = FiniteRewardClass(sp, np.stack([R.tables[0] + np.array([[1.0], [-2.0]]), R.tables[0]]))
    fs = maxent_irl(d, shifted, ref, BETA)
    assert fs.reward_index == 0 and fs.extra["n_maximisers"] == 2 and fs.set_valued is False


def test_maxent_irl_tabular_kkt_and_value():
    _, sp, ref, truth, _ = _world(7)
    d = Demonstrations.from_array(sp, [[0, 0], [0, 0], [0, 3], [1, 2]])
    fit = maxent_irl(d, TabularRewardClass(sp), ref, BETA, l2=0.2)
    assert fit.converged and fit.grad_norm <= 1e-12 and fit.extra["solver"] == "newton"
    r = fit.reward
    np.testing.assert_allclose(r.mean(axis=1), 0.0, atol=1e-12)
    C = d.counts()
    pstar = np.exp(naive.soft_optimal_closed_form(r, ref.logp, BETA))
    kkt = (C - C.sum(1, keepdims=True) * pstar) / BETA - 0.2 * r
    assert np.abs(kkt).max() < 1e-10
    expect = naive.maxent_irl_loglik(r, ref.logp, BETA, d.as_array()) - naive.centred_penalty(r, 0.2)
    assert fit.objective == pytest.approx(expect, abs=1e-10)


def test_maxent_irl_linear_matches_naive_and_sft_over_soft_optimal_class():
    rng, sp, ref, truth, _ = _world(8, P=2, V=2, H=3)
    phi = trajectory_features(sp, ["token_counts", "parity", "first_last_match"])
    R = LinearRewardClass(sp, phi)
    d = sample_demonstrations(truth, 25, 4)
    fit = maxent_irl(d, R, ref, BETA, l2=0.3)
    assert fit.converged and fit.grad_norm <= 1e-6
    w_n, obj_n = naive.maxent_irl_linear(phi, ref.logp, BETA, d.as_array(), 0.3)
    assert fit.objective == pytest.approx(obj_n, abs=1e-8)
    np.testing.assert_allclose(fit.policy.probs, np.exp(naive.soft_optimal_closed_form(phi @ w_n, ref.logp, BETA)),
                               atol=1e-5)
    # Theorem 2.3 for the linear pair (R, Π(R)): SFT over Π(R) = IRL + RL over Π(R)
    PiR = SoftOptimalPolicyClass(R, ref, BETA)
    a = sft(d, PiR, ref, BETA, l2=0.3)
    b = maxent_irl_rl(d, R, PiR, ref, BETA, l2=0.3)
    np.testing.assert_allclose(a.policy.probs, b.policy.probs, atol=1e-7)
    np.testing.assert_allclose(b.policy.probs, fit.policy.probs, atol=1e-7)


# ---------------------------------------------------------------------------- Theorem 2.3
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem_2_3_finite(seed):
    rng, sp, ref, truth, Pi = _world(10 + seed, P=2, V=2, H=3, K=12)
    R = induced_reward_class(Pi, ref, BETA)
    stream = sample_demonstrations(truth, 60, seed)
    for n in (0, 1, 2, 3, 5, 60):  # n < T = 8: most completions undemonstrated
        d = stream.head(n)
        a = sft(d, Pi, ref, BETA)
        b = maxent_irl_rl(d, R, Pi, ref, BETA)
        assert a.policy_index == b.reward_index == b.policy_index
        np.testing.assert_array_equal(a.policy.logp, b.policy.logp)
        assert a.set_valued == b.set_valued
        assert b.extra["residual_kl"] == pytest.approx(0.0, abs=1e-12)
    # the same for Π(R) of a finite R, with R itself as the reward class
    R2 = random_reward_class(sp, 9, rng)
    PiR = SoftOptimalPolicyClass(R2, ref, BETA)
    for n in (1, 2, 60):
        a = sft(stream.head(n), PiR, ref, BETA)
        b = maxent_irl_rl(stream.head(n), R2, PiR, ref, BETA)
        assert a.policy_index == b.reward_index == b.policy_index
        np.testing.assert_allclose(a.policy.logp, b.policy.logp, atol=1e-12)


def test_theorem_2_3_tabular():
    _, sp, ref, truth, _ = _world(20, P=2, V=2, H=3)
    stream = sample_demonstrations(truth, 40, 5)
    for n in (1, 2, 5, 40):
        for l2 in (DEFAULT_L2, 0.3):
            a = sft(stream.head(n), TabularPolicyClass(sp), ref, BETA, l2=l2)
            b = maxent_irl_rl(stream.head(n), TabularRewardClass(sp), TabularPolicyClass(sp), ref, BETA, l2=l2)
            np.testing.assert_allclose(a.policy.probs, b.policy.probs, rtol=0, atol=1e-12)
            np.testing.assert_allclose(a.policy.logp, b.policy.logp, rtol=0, atol=1e-10)
            np.testing.assert_array_equal(a.identified, b.identified)


def test_theorem_2_3_broken_variants_differ():
    """The test can fail: with R ≠ R(Π) (or a different penalty) the two routes differ."""
    diffs = []
    for seed in range(6):
        rng, sp, ref, truth, Pi = _world(30 + seed, P=2, V=2, H=3, K=12)
        R = random_reward_class(sp, 12, rng)  # not R(Π)
        d = sample_demonstrations(truth, 20, seed)
        a = sft(d, Pi, ref, BETA)
        b = maxent_irl_rl(d, R, Pi, ref, BETA)
        diffs.append(np.abs(a.policy.probs - b.policy.probs).max())
    assert max(diffs) > 1e-3
    _, sp, ref, truth, _ = _world(40, P=2, V=2, H=3)
    d = sample_demonstrations(truth, 10, 1)
    a = sft(d, TabularPolicyClass(sp), ref, BETA, l2=0.01)
    b = maxent_irl_rl(d, TabularRewardClass(sp), TabularPolicyClass(sp), ref, BETA, l2=1.0)
    assert np.abs(a.policy.probs - b.policy.probs).max() > 1e-3
    phi = trajectory_features(sp, ["parity"])
    c = maxent_irl_rl(d, LinearRewardClass(sp, phi), TabularPolicyClass(sp), ref, BETA)
    assert np.abs(a.policy.probs - c.policy.probs).max() > 1e-3


# ---------------------------------------------------------------------------- SPIN
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_spin_offline_equals_online_finite(seed):
    rng, sp, ref, truth, Pi = _world(50 + seed, P=2, V=2, H=3, K=10)
    d = sample_demonstrations(truth, 6, seed)
    off = spin(d, Pi, ref, BETA, rounds=3, n_synthetic=2, random_state=seed, route="offline")
    on = spin(d, Pi, ref, BETA, rounds=3, n_synthetic=2, random_state=seed, route="online")
    assert [r["policy_index"] for r in off.extra["rounds"]] == [r["policy_index"] for r in on.extra["rounds"]]
    for po, pn, qo, qn in zip(off.extra["policies"], on.extra["policies"], off.extra["pairs"], on.extra["pairs"]):
        np.testing.assert_array_equal(po.logp, pn.logp)
        np.testing.assert_array_equal(qo.as_array(), qn.as_array())
    assert off.policy_index == on.policy_index and len(off.extra["rounds"]) == 3
    # round 0 against the definition: pairs (demo ≻ draw from ref), DPO = BT-MLE over R(Π) w.r.t. ref
    pairs = off.extra["pairs"][0].as_array()
    assert pairs.shape == (12, 3)
    np.testing.assert_array_equal(pairs[:, :2], np.repeat(d.as_array(), 2, axis=0))
    ll = naive.class_bt_loglik(BETA * (Pi.logp - ref.logp[None]), pairs)
    assert off.extra["rounds"][0]["policy_index"] == int(np.argmax(ll))
    # round 1 uses π_1 as the reference
    pi1 = off.extra["policies"][0]
    ll1 = naive.class_bt_loglik(BETA * (Pi.logp - pi1.logp[None]), off.extra["pairs"][1].as_array())
    assert off.extra["rounds"][1]["policy_index"] == int(np.argmax(ll1))


def test_spin_offline_equals_online_tabular_and_soft_optimal_class():
    rng, sp, ref, truth, _ = _world(60, P=2, V=2, H=2)
    d = sample_demonstrations(truth, 5, 1)
    off = spin(d, TabularPolicyClass(sp), ref, BETA, rounds=2, random_state=3, route="offline", l2=0.2)
    on = spin(d, TabularPolicyClass(sp), ref, BETA, rounds=2, random_state=3, route="online", l2=0.2)
    for qo, qn in zip(off.extra["pairs"], on.extra["pairs"]):
        np.testing.assert_array_equal(qo.as_array(), qn.as_array())
    np.testing.assert_allclose(off.policy.probs, on.policy.probs, atol=1e-12)
    R = random_reward_class(sp, 6, rng)
    PiR = SoftOptimalPolicyClass(R, ref, BETA)
    a = spin(d, PiR, ref, BETA, rounds=3, random_state=4, route="offline")
    b = spin(d, PiR, ref, BETA, rounds=3, random_state=4, route="online")
    np.testing.assert_array_equal(a.policy.logp, b.policy.logp)


def test_spin_online_with_foreign_reward_class_differs():
    diffs = []
    for seed in range(5):
        rng, sp, ref, truth, Pi = _world(70 + seed, P=2, V=2, H=3, K=10)
        d = sample_demonstrations(truth, 8, seed)
        off = spin(d, Pi, ref, BETA, rounds=2, random_state=seed, route="offline")
        on = spin(d, Pi, ref, BETA, rounds=2, random_state=seed, route="online",
                  reward_class=random_reward_class(sp, 10, rng))
        diffs.append(np.abs(off.policy.probs - on.policy.probs).max())
    assert max(diffs) > 1e-3


# ---------------------------------------------------------------------------- best-of-N
def test_best_of_n_matches_brute_force_with_ties_and_zero_mass():
    rng = np.random.default_rng(80)
    sp = TreeSpace(2, 2, 2)
    probs = np.array([[0.1, 0.0, 0.6, 0.3], [0.25, 0.25, 0.4, 0.1]])
    r = np.array([[1.0, 5.0, 1.0, 0.0],   # tie between 0 and 2; zero-mass completion 1 has the top reward
                  [2.0, 2.0, 2.0, -1.0]])  # three-way tie
    base = Policy.from_probs(sp, probs)
    for N in (1, 2, 3, 4):
        fit = best_of_n(base, r, N)
        expect = naive.best_of_n(probs, r, N)
        np.testing.assert_allclose(fit.policy.probs, expect, atol=1e-14)
        assert fit.policy.logp[0, 1] == -np.inf
        assert fit.objective == pytest.approx(np.mean((expect * r).sum(1)), abs=1e-12)
    # a random instance with V=2, H=3 (8**3 tuples), integer rewards (many ties)
    sp3 = TreeSpace(2, 2, 3)
    lp = random_logp(rng, sp3, zero_frac=0.25)
    r3 = rng.integers(0, 3, size=sp3.shape).astype(float)
    fit = best_of_n(Policy(sp3, lp), r3, 3)
    np.testing.assert_allclose(fit.policy.probs, naive.best_of_n(np.exp(lp), r3, 3), atol=1e-14)


def test_best_of_n_one_returns_base_and_tiny_mass_survives():
    _, sp, ref, _, _ = _world(81)
    r = np.random.default_rng(0).normal(size=sp.shape)
    fit = best_of_n(ref, r, 1)
    np.testing.assert_array_equal(fit.policy.logp, ref.logp)
    assert fit.extra["kl"] == 0.0 and fit.extra["kl_bound"] == 0.0
    # a completion with base mass e^-800 at the top reward keeps positive mass ≈ N e^-800
    sp1 = TreeSpace(1, 2, 1)
    lp = np.array([[0.0, -800.0]])
    lp[0, 0] = np.log1p(-np.exp(-800.0))
    f = best_of_n(Policy(sp1, lp), np.array([[0.0, 1.0]]), 3)
    assert f.policy.logp[0, 1] == pytest.approx(-800.0 + math.log(3.0), abs=1e-9)


def test_best_of_n_kl_bound_holds_and_is_approached():
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_kl_bound(2) == pytest.approx(math.log(2) - 0.5)
    rng = np.random.default_rng(82)
    sp = TreeSpace(2, 2, 3)
    for trial in range(40):
        lp = random_logp(rng, sp, zero_frac=0.2 * (trial % 2))
        r = rng.integers(0, 4, size=sp.shape).astype(float) if trial % 3 == 0 else rng.normal(size=sp.shape)
        N = int(rng.integers(1, 9))
        fit = best_of_n(Policy(sp, lp), r, N)
        p, q = fit.policy.probs, np.exp(lp)
        m = p > 0
        kl = np.array([np.sum(p[x][m[x]] * (fit.policy.logp[x][m[x]] - lp[x][m[x]])) for x in range(sp.P)])
        np.testing.assert_allclose(fit.extra["kl_per_prompt"], kl, atol=1e-12)
        assert (kl <= best_of_n_kl_bound(N) + 1e-12).all()
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
        assert ((q == 0) <= (p == 0)).all()
    # distinct rewards, uniform base, T = 2**10 ≫ N = 4: KL within 1e-3 of the bound
    big = TreeSpace(1, 2, 10)
    r = rng.permutation(big.T).astype(float)[None]
    fit = best_of_n(uniform_policy(big), r, 4)
    gap = best_of_n_kl_bound(4) - fit.extra["kl"]
    assert 0.0 <= gap < 1e-3
    # exact closed form for the uniform case: q_j = (j/T)^N - ((j-1)/T)^N on the j-th smallest reward
    T = big.T
    j = np.argsort(np.argsort(r[0])) + 1
    np.testing.assert_allclose(fit.policy.probs[0], (j / T) ** 4 - ((j - 1) / T) ** 4, rtol=1e-10, atol=1e-16)


# ---------------------------------------------------------------------------- bad inputs
def test_bad_inputs_name_the_argument():
    rng, sp, ref, truth, Pi = _world(90)
    d = sample_demonstrations(truth, 5, 0)
    r = np.zeros(sp.shape)
    with pytest.raises(ValueError, match="N must be >= 1"):
        best_of_n(ref, r, 0)
    with pytest.raises(ValueError, match="N must be an integer"):
        best_of_n(ref, r, 2.0)
    with pytest.raises(ValueError, match="N must be"):
        best_of_n_kl_bound(True)
    with pytest.raises(ValueError, match="reward must have shape"):
        best_of_n(ref, np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="reward contains NaN"):
        best_of_n(ref, np.full(sp.shape, np.nan), 2)
    with pytest.raises(ValueError, match="reward contains inf"):
        best_of_n(ref, np.full(sp.shape, np.inf), 2)
    with pytest.raises(ValueError, match="base must be a genver Policy"):
        best_of_n(ref.logp, r, 2)
    with pytest.raises(ValueError, match="demos must be Demonstrations"):
        sft(d.as_array(), Pi, ref, BETA)
    with pytest.raises(ValueError, match="beta must be"):
        sft(d, Pi, ref, 0.0)
    with pytest.raises(ValueError, match="l2 must be finite and > 0"):
        sft(d, TabularPolicyClass(sp), ref, BETA, l2=0.0)
    with pytest.raises(ValueError, match="l2 must be finite and > 0"):
        maxent_irl(d, TabularRewardClass(sp), ref, BETA, l2=-1.0)
    with pytest.raises(ValueError, match="l2 must be finite and >= 0"):
        maxent_irl(d, LinearRewardClass(sp, np.ones(sp.shape + (1,))), ref, BETA, l2=np.nan)
    with pytest.raises(ValueError, match="ref must be a Policy"):
        sft(d, Pi, uniform_policy(TreeSpace(2, 2, 3)), BETA)
    with pytest.raises(ValueError, match="policy_class lives on a different space"):
        sft(d, TabularPolicyClass(TreeSpace(3, 2, 2)), ref, BETA)
    with pytest.raises(ValueError, match="reward_class lives on a different space"):
        maxent_irl_rl(d, TabularRewardClass(TreeSpace(3, 2, 2)), Pi, ref, BETA)
    with pytest.raises(ValueError, match="ref must have full support"):
        sft(d, TabularPolicyClass(sp), Policy.from_probs(sp, [[1, 0, 0, 0], [0.25] * 4]), BETA)
    with pytest.raises(ValueError, match="policy_class must be a genver class"):
        sft(d, object(), ref, BETA)
    with pytest.raises(ValueError, match="sft: unsupported policy class"):
        sft(d, TabularRewardClass(sp), ref, BETA)
    with pytest.raises(ValueError, match="maxent_irl: unsupported reward class"):
        maxent_irl(d, Pi, ref, BETA)
    with pytest.raises(ValueError, match="route must be"):
        spin(d, Pi, ref, BETA, route="both")
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        spin(d, Pi, ref, BETA, rounds=0)
    with pytest.raises(ValueError, match="n_synthetic must be >= 1"):
        spin(d, Pi, ref, BETA, n_synthetic=0)
    with pytest.raises(ValueError, match="reward_class is only used by route='online'"):
        spin(d, Pi, ref, BETA, reward_class=induced_reward_class(Pi, ref, BETA))
    with pytest.raises(ValueError, match="random_state"):
        spin(d, Pi, ref, BETA, random_state=-3)
    with pytest.raises(ValueError, match="spin: unsupported policy class"):
        spin(d, LogLinearPolicyClass(sp, ref, token_features(sp, "position_token")), ref, BETA)
