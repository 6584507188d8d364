"""Exact Newton for tabular SFT / MaxEnt IRL and for the linear (ridge-logistic) reward MLE.

References are independent of genver's solver code: first-order conditions from a plain loop
(softmax and log-sigmoid written with ``math``), scipy's BFGS / trust-exact on objectives written
here, closed forms (population counts at a linear true reward), and a brute-force feasibility
argument for separability.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from genver._solve import lbfgs
from genver.classes import LinearRewardClass, SoftOptimalPolicyClass, TabularPolicyClass, TabularRewardClass
from genver.estimators import Demonstrations, dpo, maxent_irl, maxent_irl_rl, reward_mle, sample_demonstrations, sft
from genver.experiments.cells import population_counts
from genver.features import trajectory_features
from genver.policy import random_policy
from genver.preferences import PairCounts, Preferences, sample_preferences
from genver.spaces import TreeSpace


def log_softmax_loop(s):
    m = max(s)
    lse = m + math.log(sum(math.exp(v - m) for v in s))
    return [v - lse for v in s]


def tabular_foc(u, C, ref_logp, beta, l2):
    """``∂/∂u [Σ C log softmax(log π_ref + u/β) − (λ/2) Σ_x Σ_y (u − ū(x))²]`` by loops."""
    P, T = C.shape
    g = np.empty((P, T))
    for x in range(P):
        lp = log_softmax_loop([ref_logp[x, y] + u[x, y] / beta for y in range(T)])
        N = sum(C[x])
        ub = sum(u[x]) / T
        for y in range(T):
            g[x, y] = (C[x, y] - N * math.exp(lp[y])) / beta - l2 * (u[x, y] - ub)
    return g


def sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def linear_bt_grad(w, phi, c: PairCounts, l2):
    """``∂/∂w [Σ_k c_k log σ(w·(φ(x,y⁺) − φ(x,y⁻))) − (λ/2)‖w‖²]`` by a loop over the pairs."""
    g = -l2 * np.asarray(w, dtype=float)
    for x, a, b, n in zip(c.x, c.y_pos, c.y_neg, c.count):
        dk = phi[x, a] - phi[x, b]
        g = g + n * sigmoid(-float(dk @ w)) * dk
    return g


BETA = 0.7


# -- tabular SFT and MaxEnt IRL ------------------------------------------------------------------
@pytest.mark.parametrize("n,l2,beta", [(1, 0.1, 0.3), (5, 1e-3, 0.7), (40, 0.05, 5.0), (400, 1.0, 0.7),
                                       (3000, 0.01, 0.3), (2, 1e-6, 1.0)])
def test_sft_irl_first_order_conditions(n, l2, beta):
    sp = TreeSpace(P=3, V=2, H=3)
    ref = random_policy(sp, 11)
    demos = sample_demonstrations(random_policy(sp, 12, temperature=0.5), n, n)
    C = demos.counts()
    a = sft(demos, TabularPolicyClass(sp), ref, beta, l2=l2)
    b = maxent_irl(demos, TabularRewardClass(sp), ref, beta, l2=l2)
    for res, u in ((a, a.reward), (b, b.reward)):
        assert res.extra["solver"] == "newton" and res.converged and res.iterations >= 1
        assert res.grad_norm <= 1e-13 * max(1, n) or res.extra["solver_status"] == "rounding"
        assert np.abs(tabular_foc(u, C, ref.logp, beta, l2)).max() <= 1e-9
    np.testing.assert_allclose(b.reward.mean(axis=1), 0.0, atol=1e-12)
    # Theorem 2.3 (tabular pair) to the float64 floor; the old L-BFGS route agreed to ~1e-6
    c = maxent_irl_rl(demos, TabularRewardClass(sp), TabularPolicyClass(sp), ref, beta, l2=l2)
    np.testing.assert_allclose(a.policy.logp, c.policy.logp, rtol=0, atol=1e-10)


def test_sft_irl_match_scipy_bfgs():
    """Same optimum as scipy's BFGS on an objective written here (loop gradient)."""
    sp = TreeSpace(P=2, V=2, H=3)
    ref = random_policy(sp, 3)
    demos = sample_demonstrations(random_policy(sp, 4), 60, 5)
    C, l2 = demos.counts(), 0.2

    def plain(uflat):
        u = uflat.reshape(sp.shape)
        ll = 0.0
        for x in range(sp.P):
            lp = log_softmax_loop(list(ref.logp[x] + u[x] / BETA))
            ll += sum(C[x, y] * lp[y] for y in range(sp.T))
        uc = u - u.mean(axis=1, keepdims=True)
        return -(ll - 0.5 * l2 * np.sum(uc * uc)), -tabular_foc(u, C, ref.logp, BETA, l2).ravel()

    bf = optimize.minimize(plain, np.zeros(sp.P * sp.T), jac=True, method="BFGS", options={"gtol": 1e-10})
    u_ref = bf.x.reshape(sp.shape)
    u_ref = u_ref - u_ref.mean(axis=1, keepdims=True)
    irl = maxent_irl(demos, TabularRewardClass(sp), ref, BETA, l2=l2)
    np.testing.assert_allclose(irl.reward, u_ref, atol=1e-7)
    assert irl.objective >= -bf.fun - 1e-12 * abs(bf.fun)
    a = sft(demos, TabularPolicyClass(sp), ref, BETA, l2=l2)
    np.testing.assert_allclose(a.reward - a.reward.mean(axis=1, keepdims=True), u_ref, atol=1e-7)


def test_sft_irl_degenerate_demonstrations():
    """A prompt without demonstrations keeps π_ref (reward 0); no demonstrations at all: zero
    iterations; one completion demonstrated many times with a tiny ridge: far-out optimum, still
    at the first-order conditions; duplicate demonstrations act only through their counts."""
    sp = TreeSpace(P=3, V=2, H=2)
    ref = random_policy(sp, 6)
    d = Demonstrations.from_array(sp, [[1, 2]] * 50 + [[1, 0]])
    for l2 in (1e-6, 0.3):
        a = sft(d, TabularPolicyClass(sp), ref, BETA, l2=l2)
        b = maxent_irl(d, TabularRewardClass(sp), ref, BETA, l2=l2)
        np.testing.assert_allclose(a.policy.logp[[0, 2]], ref.logp[[0, 2]], rtol=0, atol=1e-14)
        np.testing.assert_allclose(b.reward[[0, 2]], 0.0, atol=1e-14)
        for u in (a.reward, b.reward):
            assert np.abs(tabular_foc(u, d.counts(), ref.logp, BETA, l2)).max() <= 1e-9
        # the ridge is the only curvature left for completions with π ≈ e^-17: log π is
        # pinned to (gradient floor) / λ
        np.testing.assert_allclose(a.policy.logp, b.policy.logp, rtol=0, atol=max(1e-12, 1e-15 / l2))
    empty = d.head(0)
    a = sft(empty, TabularPolicyClass(sp), ref, BETA, l2=0.1)
    b = maxent_irl(empty, TabularRewardClass(sp), ref, BETA, l2=0.1)
    assert a.iterations == 0 and b.iterations == 0 and b.grad_norm == 0.0
    np.testing.assert_array_equal(b.reward, 0.0)
    np.testing.assert_allclose(a.policy.logp, ref.logp, rtol=0, atol=1e-15)
    shuffled = Demonstrations.from_array(sp, d.as_array()[::-1])
    np.testing.assert_array_equal(sft(shuffled, TabularPolicyClass(sp), ref, BETA, l2=0.3).policy.logp,
                                  sft(d, TabularPolicyClass(sp), ref, BETA, l2=0.3).policy.logp)


# -- linear reward MLE ------------------------------------------------------------------------------
@pytest.fixture
def lin_world():
    sp = TreeSpace(P=3, V=2, H=3)
    ref = random_policy(sp, 1)
    phi = trajectory_features(sp, ["token_counts", "parity", "first_last_match"])  # rank-deficient
    return sp, ref, phi


@pytest.mark.parametrize("n,l2", [(50, 0.0), (500, 0.0), (20, 0.01), (3000, 1.0), (7, 3.0)])
def test_linear_reward_mle_first_order_conditions(lin_world, n, l2):
    sp, ref, phi = lin_world
    r = np.random.default_rng(2).normal(size=sp.shape)
    c = sample_preferences(r, ref, n, n).counts()
    res = reward_mle(c, LinearRewardClass(sp, phi), l2=l2)
    assert res.extra["solver"] == "newton" and res.extra["mle_exists"] and res.converged
    assert np.abs(linear_bt_grad(res.params, phi, c, l2)).max() <= 1e-9
    assert res.grad_norm <= 1e-12 * max(1, n)
    # DPO over Π(R_lin) is the same fit
    off = dpo(c, SoftOptimalPolicyClass(LinearRewardClass(sp, phi), ref, BETA), ref, BETA, l2=l2)
    np.testing.assert_array_equal(off.params, res.params)


def test_linear_reward_mle_matches_scipy_trust_exact(lin_world):
    """λ > 0: scipy's trust-exact with a Hessian written here. λ = 0 with rank-deficient
    features: genver returns the minimum-norm maximiser, i.e. the row-space component of any
    maximiser (here scipy's trust-exact on the full-rank reparametrisation)."""
    sp, ref, phi = lin_world
    r = np.random.default_rng(3).normal(size=sp.shape)
    c = sample_preferences(r, ref, 300, 9).counts()
    D = np.array([phi[x, a] - phi[x, b] for x, a, b in zip(c.x, c.y_pos, c.y_neg)])

    def fns(l2, M):
        def f(v):
            z = M @ v
            return -(c.count @ -np.logaddexp(0.0, -z) - 0.5 * l2 * v @ v)

        def g(v):
            return -(M.T @ (c.count / (1.0 + np.exp(M @ v))) - l2 * v)

        def h(v):
            q = c.count / (2.0 + np.exp(M @ v) + np.exp(-(M @ v)))
            return M.T @ (M * q[:, None]) + l2 * np.eye(M.shape[1])
        return f, g, h

    f, g, h = fns(0.05, D)
    tr = optimize.minimize(f, np.zeros(D.shape[1]), jac=g, hess=h, method="trust-exact", options={"gtol": 1e-12})
    res = reward_mle(c, LinearRewardClass(sp, phi), l2=0.05)
    np.testing.assert_allclose(res.params, tr.x, rtol=0, atol=1e-9)
    # λ = 0: token_counts' two columns sum to H, so D[:, 0] = −D[:, 1]; drop column 1
    assert np.array_equal(D[:, 0], -D[:, 1])
    M = D[:, [0, 2, 3]]
    f, g, h = fns(0.0, M)
    tr = optimize.minimize(f, np.zeros(3), jac=g, hess=h, method="trust-exact", options={"gtol": 1e-12})
    w_any = np.array([tr.x[0], 0.0, tr.x[1], tr.x[2]])  # one maximiser; min-norm splits w0 evenly
    w_min = w_any.copy()
    w_min[0], w_min[1] = w_any[0] / 2, -w_any[0] / 2
    res0 = reward_mle(c, LinearRewardClass(sp, phi), l2=0.0)
    np.testing.assert_allclose(res0.params, w_min, rtol=0, atol=1e-9)


def test_linear_reward_mle_fractional_counts_recover_truth(lin_world):
    """Population (fractional) counts at a linear true reward ``r* = φ·w*``: the Bradley–Terry
    population gradient vanishes at ``w*``, so the unpenalised MLE is ``w*`` on the identifiable
    subspace (margins ``D w`` exact)."""
    sp, ref, phi = lin_world
    w_star = np.array([0.4, -0.1, 1.3, -0.8])
    c = population_counts(phi @ w_star, random_policy(sp, 8), 123.4)
    assert not np.allclose(c.count, np.round(c.count))
    res = reward_mle(c, LinearRewardClass(sp, phi), l2=0.0)
    D = phi[c.x, c.y_pos] - phi[c.x, c.y_neg]
    np.testing.assert_allclose(D @ res.params, D @ w_star, rtol=0, atol=1e-10)
    assert abs(res.params[0] + res.params[1]) <= 1e-12  # min-norm along the null direction (1, 1, 0, 0)


def test_linear_reward_mle_duplicates_and_reversals(lin_world):
    sp, _, phi = lin_world
    R = LinearRewardClass(sp, phi)
    merged = PairCounts(sp, np.array([0, 0, 1, 2]), np.array([1, 2, 3, 5]), np.array([0, 1, 0, 6]),
                        np.array([3.0, 1.0, 2.0, 1.5]))
    dup = PairCounts(sp, np.array([0, 0, 1, 0, 1, 0, 2, 2]), np.array([1, 2, 3, 1, 3, 1, 5, 5]),
                     np.array([0, 1, 0, 0, 0, 0, 6, 6]), np.array([1.0, 1.0, 1.5, 1.0, 0.5, 1.0, 1.0, 0.5]))
    for l2 in (0.0, 0.1):
        a, b = reward_mle(merged, R, l2=l2), reward_mle(dup, R, l2=l2)
        if a.extra["mle_exists"]:
            np.testing.assert_allclose(a.params, b.params, rtol=0, atol=1e-12)
    # each pair in both directions equally often: no information, the optimum is w = 0
    tie = PairCounts(sp, np.array([0, 0, 1, 1]), np.array([1, 3, 2, 7]), np.array([3, 1, 7, 2]),
                     np.array([2.0, 2.0, 0.5, 0.5]))
    res = reward_mle(tie, R, l2=0.0)
    assert res.extra["mle_exists"] and res.extra["solver"] == "newton"
    np.testing.assert_allclose(res.params, 0.0, atol=1e-15)


def test_linear_reward_mle_separable_without_ridge_keeps_lbfgs(lin_world):
    """λ = 0 and separable data: no finite MLE. genver reports it and returns the former L-BFGS
    point (unchanged behaviour); with a ridge the Newton fit exists and satisfies the FOC."""
    sp, ref, phi = lin_world
    R = LinearRewardClass(sp, phi)
    # two pairs, both explained by the parity feature alone (a separating direction)
    d = Preferences.from_array(sp, np.array([[0, 1, 0], [1, 2, 3]]))
    c = d.counts()
    D = phi[c.x, c.y_pos] - phi[c.x, c.y_neg]
    res = reward_mle(d, R, l2=0.0)
    assert res.extra["mle_exists"] is False and res.extra["solver"] == "lbfgs"
    assert np.all(D @ res.params > 5.0)  # far along a separating direction

    def neg(w):
        z = D @ w
        return float(np.sum(np.logaddexp(0.0, -z))), -(D.T @ (1.0 / (1.0 + np.exp(z))))
    old, _ = lbfgs(neg, np.zeros(4))
    np.testing.assert_allclose(res.params, old.x, rtol=1e-10, atol=1e-10)
    ridge = reward_mle(d, R, l2=0.1)
    assert ridge.extra["mle_exists"] and np.abs(linear_bt_grad(ridge.params, phi, c, 0.1)).max() <= 1e-9
    # adding the reversed pairs makes the data non-separable: the MLE exists (here w = 0 on them)
    both = Preferences.from_array(sp, np.array([[0, 1, 0], [1, 2, 3], [0, 0, 1], [1, 3, 2]]))
    res2 = reward_mle(both, R, l2=0.0)
    assert res2.extra["mle_exists"] and res2.extra["solver"] == "newton"
    np.testing.assert_allclose(res2.params, 0.0, atol=1e-15)
