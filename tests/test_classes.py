"""Feature maps, policy classes and reward classes."""
import math

import numpy as np
import pytest
from conftest import assert_logp_equal, lse, random_logp
from scipy.special import logsumexp

import naive
from genver.classes import (
    FinitePolicyClass,
    FiniteRewardClass,
    LinearRewardClass,
    LogLinearPolicyClass,
    SoftOptimalPolicyClass,
    TabularPolicyClass,
    TabularRewardClass,
    induced_reward,
    induced_reward_class,
    random_policy_class,
    random_reward_class,
)
from genver.features import TOKEN_FEATURES, TRAJECTORY_FEATURES, token_features, trajectory_features
from genver.policy import Policy, random_policy, uniform_policy
from genver.softrl import soft_optimal
from genver.spaces import TreeSpace

# V=2, H=3 completions in index order: 000 001 010 011 100 101 110 111
SP223 = TreeSpace(2, 2, 3)


# ------------------------------------------------------------------- trajectory features
def test_token_counts_by_hand():
    phi = trajectory_features(SP223, "token_counts")
    assert phi.shape == (2, 8, 2)
    ones = [0, 1, 1, 2, 1, 2, 2, 3]
    np.testing.assert_array_equal(phi[0, :, 1], ones)
    np.testing.assert_array_equal(phi[0, :, 0], [3 - k for k in ones])
    np.testing.assert_array_equal(phi[1], phi[0])
    np.testing.assert_array_equal(phi.sum(axis=2), 3.0)
    phi3 = trajectory_features(TreeSpace(1, 3, 2), "token_counts")
    np.testing.assert_array_equal(phi3[0, 8], [0, 0, 2])  # y = (2, 2)
    np.testing.assert_array_equal(phi3[0, 5], [0, 1, 1])  # y = (1, 2)


def test_parity_and_first_last_by_hand():
    par1 = trajectory_features(SP223, ("parity", {"token": 1}))
    np.testing.assert_array_equal(par1[:, :, 0], [[0, 1, 1, 0, 1, 0, 0, 1]] * 2)
    par0 = trajectory_features(SP223, "parity")  # token 0 by default
    np.testing.assert_array_equal(par0[0, :, 0], [1, 0, 0, 1, 0, 1, 1, 0])
    flm = trajectory_features(SP223, "first_last_match")
    np.testing.assert_array_equal(flm[:, :, 0], [[1, 0, 1, 0, 0, 1, 0, 1]] * 2)
    with pytest.raises(ValueError, match="parity: token must lie in"):
        trajectory_features(SP223, ("parity", {"token": 2}))


def test_target_match_and_hamming_by_hand():
    target = np.array([[0, 0, 0], [1, 0, 1]])
    tm = trajectory_features(SP223, {"name": "target_match", "target": target})
    assert tm.shape == (2, 8, 3)
    np.testing.assert_array_equal(tm[1, 5], [1, 1, 1])  # y = 101 is the target of prompt 1
    np.testing.assert_array_equal(tm[1, 2], [0, 0, 0])  # y = 010
    np.testing.assert_array_equal(tm[0, 4], [0, 1, 1])  # y = 100 vs 000
    ham = trajectory_features(SP223, ("hamming", {"target": target}))
    np.testing.assert_array_equal(ham[0, :, 0], [0, -1, -1, -2, -1, -2, -2, -3])
    np.testing.assert_array_equal(ham[1, :, 0], [-2, -1, -3, -2, -1, 0, -2, -1])
    np.testing.assert_array_equal(ham[..., 0], -(3 - tm.sum(axis=2)))
    # a drawn target is reproducible for the same seed
    a = trajectory_features(SP223, "hamming", random_state=4)
    b = trajectory_features(SP223, "hamming", random_state=4)
    np.testing.assert_array_equal(a, b)
    assert a.max() == 0 and a.min() == -3


def test_random_tabular_and_concatenation():
    g = trajectory_features(SP223, ("random_gaussian", {"d": 3}), random_state=0)
    assert g.shape == (2, 8, 3)
    np.testing.assert_array_equal(g, trajectory_features(SP223, ("random_gaussian", {"d": 3}), random_state=0))
    tab = trajectory_features(SP223, "tabular")
    np.testing.assert_array_equal(tab.reshape(16, 16), np.eye(16))
    both = trajectory_features(SP223, ["parity", "token_counts", "first_last_match"])
    assert both.shape == (2, 8, 4)
    np.testing.assert_array_equal(both[..., 1:3], trajectory_features(SP223, "token_counts"))
    assert set(TRAJECTORY_FEATURES) == {"token_counts", "parity", "first_last_match", "hamming",
                                        "target_match", "position_token", "random_gaussian", "random_orthonormal",
                                        "tabular"}
    pt = trajectory_features(SP223, "position_token").reshape(2, 8, 2, 3, 2)  # (x, y, x', h, a)
    for x in range(2):
        for y, toks in enumerate(naive.all_completions(2, 3)):
            want = np.zeros((2, 3, 2))
            for h, a in enumerate(toks):
                want[x, h, a] = 1.0
            np.testing.assert_array_equal(pt[x, y], want)


def test_random_orthonormal_features_nested_and_spanning():
    sp = TreeSpace(2, 2, 3)
    full = trajectory_features(sp, ("random_orthonormal", {"d": 8}), random_state=4)
    part = trajectory_features(sp, ("random_orthonormal", {"d": 3}), random_state=4)
    for x in range(2):
        np.testing.assert_allclose(full[x].T @ full[x], np.eye(8), atol=1e-12)  # orthonormal basis of R^T
        np.testing.assert_allclose(full[x][:, 0], 1 / np.sqrt(8), atol=1e-12)    # first column constant
        np.testing.assert_array_equal(part[x], full[x][:, :3])                   # nested in d
    with pytest.raises(ValueError, match="exceeds T"):
        trajectory_features(sp, ("random_orthonormal", {"d": 9}))


def test_unknown_feature_names():
    with pytest.raises(ValueError, match="unknown trajectory feature 'nope'"):
        trajectory_features(SP223, "nope")
    with pytest.raises(ValueError, match="unknown token feature 'nope'"):
        token_features(SP223, "nope")
    with pytest.raises(ValueError, match="at least one feature map"):
        trajectory_features(SP223, [])
    with pytest.raises(ValueError, match="feature spec"):
        trajectory_features(SP223, [3])


def test_token_features_layout():
    sp = TreeSpace(2, 3, 2)
    psi = token_features(sp, "position_token")
    assert psi.shape == (2, 4, 3, 2 * 2 * 3)
    np.testing.assert_array_equal(psi.sum(axis=3), 1.0)
    for x in range(2):
        for h in range(2):
            for j in range(3**h):
                for a in range(3):
                    assert psi[x, sp.offset(h) + j, a, (x * 2 + h) * 3 + a] == 1.0
    tab = token_features(sp, "tabular")
    np.testing.assert_array_equal(tab.reshape(24, 24), np.eye(24))
    g = token_features(sp, "random_gaussian", random_state=1, d=5)
    assert g.shape == (2, 4, 3, 5)
    assert set(TOKEN_FEATURES) == {"position_token", "tabular", "random_gaussian"}


# --------------------------------------------------------------------- log-linear class
def _product_ref(rng, sp):
    """A reference whose conditionals depend only on (x, depth): a product distribution."""
    cond = np.empty((sp.P, sp.n_internal, sp.V))
    for h in range(sp.H):
        logits = rng.normal(size=(sp.P, 1, sp.V))
        c = logits - lse(logits)[..., None]
        cond[:, sp.offset(h) : sp.offset(h) + sp.V**h] = c
    return Policy.from_cond(sp, cond)


def test_position_token_class_contains_soft_optimal_of_additive_reward():
    rng = np.random.default_rng(0)
    sp = TreeSpace(2, 3, 3)
    ref = _product_ref(rng, sp)
    w = rng.normal(size=(sp.P, sp.H, sp.V))
    toks = sp.all_tokens()
    r = np.stack([sum(w[x, h, toks[:, h]] for h in range(sp.H)) for x in range(sp.P)])
    beta = 0.7
    cls = LogLinearPolicyClass(sp, ref, token_features(sp, "position_token"))
    assert cls.n_params == sp.P * sp.H * sp.V
    res = cls.rl_argmax(r, ref, beta)
    assert res.residual_kl < 1e-10
    assert_logp_equal(res.policy.logp, naive.soft_optimal_closed_form(r, ref.logp, beta), atol=1e-5)
    assert res.objective == pytest.approx(beta * logsumexp(ref.logp + r / beta, axis=1).mean(), abs=1e-10)


def test_tabular_token_features_reach_soft_optimal_of_any_reward():
    rng = np.random.default_rng(1)
    sp = TreeSpace(2, 2, 2)
    ref = random_policy(sp, rng)
    r = rng.normal(size=sp.shape) * 2
    beta = 0.5
    cls = LogLinearPolicyClass(sp, ref, token_features(sp, "tabular"))
    res = cls.rl_argmax(r, ref, beta)
    assert res.residual_kl < 1e-10
    assert_logp_equal(res.policy.logp, naive.soft_optimal_closed_form(r, ref.logp, beta), atol=1e-5)


def test_loglinear_cond_definition():
    rng = np.random.default_rng(2)
    sp = TreeSpace(2, 3, 2)
    ref = random_policy(sp, rng)
    psi = token_features(sp, "random_gaussian", rng, d=3)
    cls = LogLinearPolicyClass(sp, ref, psi)
    theta = rng.normal(size=3)
    logits = ref.cond + np.einsum("pnvd,d->pnv", psi, theta)
    np.testing.assert_allclose(cls.cond(theta), logits - lse(logits)[..., None], rtol=0, atol=1e-13)
    np.testing.assert_allclose(cls.cond(np.zeros(3)), ref.cond, rtol=0, atol=1e-13)


def test_contract_score_vs_finite_differences():
    rng = np.random.default_rng(3)
    sp = TreeSpace(2, 2, 3)
    ref = random_policy(sp, rng)
    psi = token_features(sp, "random_gaussian", rng, d=4)
    cls = LogLinearPolicyClass(sp, ref, psi)
    theta = rng.normal(size=4) * 0.5
    g = rng.normal(size=sp.shape)

    def F(t):  # Σ_x Σ_y g(x,y) log π_θ(y|x), sequence log-probs from naive's product of conditionals
        c = cls.cond(t)
        d = {}
        for x in range(sp.P):
            for h in range(sp.H):
                for j, s in enumerate(naive._all_prefixes(sp.V, sp.H, h)):
                    d[(x, s)] = c[x, sp.offset(h) + j]
        return float((g * naive.sequence_logp_from_conditionals(d, sp.P, sp.V, sp.H)).sum())

    eps = 1e-6
    fd = np.array([(F(theta + eps * e) - F(theta - eps * e)) / (2 * eps) for e in np.eye(4)])
    np.testing.assert_allclose(cls.contract_score(cls.cond(theta), g), fd, rtol=1e-6, atol=1e-7)


def test_loglinear_rl_argmax_is_stationary_and_improves_on_reference():
    rng = np.random.default_rng(4)
    sp = TreeSpace(2, 2, 3)
    ref = random_policy(sp, rng)
    psi = token_features(sp, "random_gaussian", rng, d=3)
    cls = LogLinearPolicyClass(sp, ref, psi)
    r = rng.normal(size=sp.shape)
    beta = 0.8
    rho = np.array([0.7, 0.3])
    res = cls.rl_argmax(r, ref, beta, rho)
    assert res.grad_norm < 1e-6
    J = lambda t: naive.J_beta(cls.policy(t).logp, r, ref.logp, beta, rho)  # noqa: E731
    assert res.objective == pytest.approx(J(res.params), abs=1e-12)
    eps = 1e-5
    fd = np.array([(J(res.params + eps * e) - J(res.params - eps * e)) / (2 * eps) for e in np.eye(3)])
    np.testing.assert_allclose(fd, 0.0, atol=1e-6)
    assert res.objective >= J(np.zeros(3))  # theta = 0 is pi_ref
    assert J(np.zeros(3)) == pytest.approx(float(rho @ (ref.probs * r).sum(1)), abs=1e-12)
    # reverse-KL identity: J = beta E log Z - beta E KL(pi ‖ pi*); residual is that KL (> 0 here)
    log_Z = logsumexp(ref.logp + r / beta, axis=1)
    star = naive.soft_optimal_closed_form(r, ref.logp, beta)
    assert res.residual_kl == pytest.approx(naive.kl(res.policy.logp, star, rho), abs=1e-12)
    assert res.objective == pytest.approx(beta * rho @ log_Z - beta * res.residual_kl, abs=1e-10)
    assert res.residual_kl > 1e-4  # three random features cannot express pi*


# ------------------------------------------------------------------------ finite classes
def _finite_setup(seed=5, K=4):
    rng = np.random.default_rng(seed)
    sp = TreeSpace(2, 2, 2)
    ref = random_policy(sp, rng)
    R = random_reward_class(sp, K, rng)
    return rng, sp, ref, R


def test_soft_optimal_of_matches_soft_optimal_per_member():
    rng, sp, ref, R = _finite_setup()
    beta = 0.9
    Pi = FinitePolicyClass.soft_optimal_of(R, ref, beta)
    assert Pi.size == R.size == 4
    assert Pi.log_size == pytest.approx(math.log(4))
    for k in range(R.size):
        assert_logp_equal(Pi.logp[k], naive.soft_optimal_closed_form(R.tables[k], ref.logp, beta), atol=1e-12)
        assert_logp_equal(Pi.member(k).logp, soft_optimal(R.member(k), ref, beta).policy.logp, atol=1e-12)
    # with a reference that has zeros the members keep its support
    ref0 = Policy(sp, random_logp(rng, sp, zero_frac=0.3, zero_prefix=True))
    Pi0 = FinitePolicyClass.soft_optimal_of(R, ref0, beta)
    for k in range(R.size):
        assert_logp_equal(Pi0.logp[k], naive.soft_optimal_closed_form(R.tables[k], ref0.logp, beta), atol=1e-12)


def test_finite_rl_argmax_matches_naive_with_lowest_index_ties():
    rng, sp, ref, R = _finite_setup(6)
    beta = 0.7
    r = rng.normal(size=sp.shape)
    rho = np.array([0.4, 0.6])
    a, b, c = (random_policy(sp, rng).logp for _ in range(3))
    deterministic = np.array([[0.0, -np.inf, -np.inf, -np.inf], [-np.inf, 0.0, -np.inf, -np.inf]])
    members = [a, b, c, deterministic]
    J = np.array([naive.J_beta(m, r, ref.logp, beta, rho) for m in members])
    best = int(np.argmax(J))
    # duplicate the best member after the others: the first copy must win
    logp = np.stack(members + [members[best]])
    cls = FinitePolicyClass(sp, logp)
    np.testing.assert_allclose(cls.J_all(r, ref, beta, rho), list(J) + [J[best]], rtol=0, atol=1e-12)
    res = cls.rl_argmax(r, ref, beta, rho)
    assert res.index == best
    assert res.objective == pytest.approx(J[best], abs=1e-12)
    star = naive.soft_optimal_closed_form(r, ref.logp, beta)
    assert res.residual_kl == pytest.approx(naive.kl(members[best], star, rho), abs=1e-12)
    # put the duplicate first: now index 0 wins
    cls2 = FinitePolicyClass(sp, np.stack([members[best]] + members))
    assert cls2.rl_argmax(r, ref, beta, rho).index == 0
    # a member that is pi*_r itself is found with zero residual
    cls3 = FinitePolicyClass(sp, np.stack(members[:3] + [star]))
    res3 = cls3.rl_argmax(r, ref, beta, rho)
    assert res3.index == 3 and res3.residual_kl < 1e-12


def test_induced_reward_class_of_soft_optimal_class_is_R_up_to_constants():
    _, sp, ref, R = _finite_setup(7)
    beta = 1.1
    Pi = FinitePolicyClass.soft_optimal_of(R, ref, beta)
    RPi = induced_reward_class(Pi, ref, beta)
    assert isinstance(RPi, FiniteRewardClass) and RPi.size == R.size
    for k in range(R.size):
        log_Z = np.array([naive._logsumexp_list(ref.logp[x] + R.tables[k, x] / beta) for x in range(sp.P)])
        np.testing.assert_allclose(RPi.tables[k], R.tables[k] - beta * log_Z[:, None], rtol=0, atol=1e-12)
        np.testing.assert_allclose(RPi.tables[k], induced_reward(Pi.member(k), ref, beta), rtol=0, atol=0)
    tab = induced_reward_class(TabularPolicyClass(sp), ref, beta)
    assert isinstance(tab, TabularRewardClass) and tab.n_params == sp.P * (sp.T - 1)


def test_with_distractors():
    rng, sp, ref, R = _finite_setup(8, K=3)
    Pi = FinitePolicyClass.soft_optimal_of(R, ref, 1.0)
    D = Pi.with_distractors(5, random_state=1)
    assert D.size == 8
    assert D.log_size == pytest.approx(math.log(8))
    np.testing.assert_array_equal(D.logp[:3], Pi.logp)
    np.testing.assert_allclose(np.exp(D.logp).sum(axis=2), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(D.logp, Pi.with_distractors(5, random_state=1).logp)
    assert not np.allclose(D.logp[3:], Pi.with_distractors(5, random_state=2).logp[3:])
    assert Pi.with_distractors(0) is Pi
    # distractors are soft-optimal (w.r.t. uniform) of Gaussian tables: log-ratios to uniform differ per y
    assert np.ptp(D.logp[3:] - uniform_policy(sp).logp, axis=2).min() > 0


def test_soft_optimal_policy_class_linear():
    rng = np.random.default_rng(9)
    sp = TreeSpace(2, 2, 3)
    ref = random_policy(sp, rng)
    phi = trajectory_features(sp, ["parity", "first_last_match", "token_counts"])
    R = LinearRewardClass(sp, phi)
    assert R.n_params == 4
    beta = 0.6
    cls = SoftOptimalPolicyClass(R, ref, beta)
    assert cls.n_params == 4 and cls.size is None
    w = rng.normal(size=4)
    np.testing.assert_allclose(R.reward(w), phi @ w, rtol=0, atol=0)
    want = naive.soft_optimal_closed_form(phi @ w, ref.logp, beta)
    assert_logp_equal(cls.policy(w).logp, want, atol=1e-12)
    assert_logp_equal(cls.policy(w).logp, soft_optimal(phi @ w, ref, beta).policy.logp, atol=1e-12)
    res = cls.rl_argmax(phi @ w, ref, beta)
    assert res.residual_kl < 1e-10
    assert_logp_equal(res.policy.logp, want, atol=1e-5)
    with pytest.raises(ValueError, match="same ones"):
        cls.rl_argmax(phi @ w, ref, 2 * beta)
    with pytest.raises(ValueError, match="linear reward class"):
        SoftOptimalPolicyClass(random_reward_class(sp, 2, 0), ref, beta).policy(w)


def test_soft_optimal_policy_class_finite():
    _, sp, ref, R = _finite_setup(10)
    beta = 0.5
    cls = SoftOptimalPolicyClass(R, ref, beta)
    assert cls.size == 4
    fin = cls.to_finite()
    for k in range(4):
        res = cls.rl_argmax(R.tables[k], ref, beta)
        assert res.index == k and res.residual_kl < 1e-12
        assert_logp_equal(fin.logp[k], naive.soft_optimal_closed_form(R.tables[k], ref.logp, beta), atol=1e-12)


def test_tabular_policy_class_rl_argmax():
    rng = np.random.default_rng(11)
    sp = TreeSpace(2, 3, 2)
    ref = Policy(sp, random_logp(rng, sp, zero_frac=0.2, zero_prefix=True))
    r = rng.normal(size=sp.shape)
    rho = np.array([0.25, 0.75])
    cls = TabularPolicyClass(sp)
    assert cls.n_params == 2 * 8
    res = cls.rl_argmax(r, ref, 0.4, rho)
    nv = naive.soft_optimal(r, ref.logp, 0.4, 3, 2)
    assert_logp_equal(res.policy.logp, nv["logp"], atol=1e-10)
    assert res.objective == pytest.approx(0.4 * rho @ nv["log_Z"], abs=1e-12)
    assert res.objective == pytest.approx(naive.J_beta(nv["logp"], r, ref.logp, 0.4, rho), abs=1e-10)


def test_random_policy_class_and_reward_classes():
    sp = TreeSpace(2, 2, 2)
    pc = random_policy_class(sp, 3, 0)
    assert pc.size == 3
    np.testing.assert_allclose(np.exp(pc.logp).sum(axis=2), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pc.logp, random_policy_class(sp, 3, 0).logp)
    rc = random_reward_class(sp, 3, 0, scale=2.0)
    assert rc.tables.shape == (3, 2, 4) and rc.size == 3
    np.testing.assert_allclose(rc.tables, 2.0 * random_reward_class(sp, 3, 0).tables, rtol=1e-15)
    np.testing.assert_array_equal(rc.tables, random_reward_class(sp, 3, 0, scale=2.0).tables)
    assert not np.allclose(rc.tables, random_reward_class(sp, 3, 1, scale=2.0).tables)
    assert rc.log_size == pytest.approx(math.log(3))
    assert TabularRewardClass(sp).n_params == 6
