"""Policies (sequence <-> token conditionals) and exact soft RL, against tests/naive.py
brute force and closed forms."""
import math

import numba
import numpy as np
import pytest
from conftest import assert_logp_equal, cond_to_dict, lse, naive_cond_array, random_logp
from scipy.special import expit, logsumexp

import naive
from genver import _kernels
from genver.classes import induced_reward
from genver.policy import Policy, random_policy, sequence_logp_from_cond, uniform_policy
from genver.softrl import J_beta, expected_reward, kl, kl_rows, soft_optimal
from genver.spaces import TreeSpace

NINF = -np.inf
TREES = [(2, 2, 1), (2, 2, 2), (2, 2, 3), (2, 3, 1), (2, 3, 2), (2, 3, 3)]


# ----------------------------------------------------------------------------- policies
@pytest.mark.parametrize("P,V,H", TREES)
@pytest.mark.parametrize("zero_frac", [0.0, 0.3])
def test_cond_matches_naive_token_conditionals(P, V, H, zero_frac):
    rng = np.random.default_rng(100 + 10 * V + H)
    sp = TreeSpace(P, V, H)
    logp = random_logp(rng, sp, zero_frac=zero_frac, zero_prefix=zero_frac > 0)
    pol = Policy(sp, logp)
    want = naive_cond_array(sp, naive.token_conditionals(logp, V, H))
    assert_logp_equal(pol.cond, want, atol=1e-12)
    for h in range(H):
        off = sp.offset(h)
        np.testing.assert_array_equal(pol.token_logp(h), pol.cond[:, off : off + V**h])
    if zero_frac > 0 and H >= 2:
        # prompt 0 never reaches prefix (0,): its conditional is uniform by convention
        np.testing.assert_allclose(pol.cond[0, sp.offset(1) + 0], np.full(V, -math.log(V)), rtol=0, atol=1e-15)
        assert pol.cond[0, 0, 0] == NINF
        assert not pol.full_support


@pytest.mark.parametrize("P,V,H", TREES)
def test_from_cond_round_trip_and_sequence_logp(P, V, H):
    rng = np.random.default_rng(7 * V + H)
    sp = TreeSpace(P, V, H)
    logp = random_logp(rng, sp, zero_frac=0.3, zero_prefix=True)
    pol = Policy(sp, logp)
    back = Policy.from_cond(sp, pol.cond)
    assert_logp_equal(back.logp, logp, atol=1e-12)
    # the sequence log-probs of naive's conditionals are the same numbers
    seq = naive.sequence_logp_from_conditionals(cond_to_dict(sp, pol.cond), P, V, H)
    assert_logp_equal(sequence_logp_from_cond(sp, pol.cond), seq, atol=1e-12)
    # cond -> policy -> cond is the identity for a full-support policy given by its conditionals
    ref = random_policy(sp, 3)
    again = Policy(sp, ref.logp.copy())
    np.testing.assert_allclose(again.cond, ref.cond, rtol=0, atol=1e-12)


@pytest.mark.parametrize("P,V,H", TREES)
def test_prefix_logp_matches_naive(P, V, H):
    rng = np.random.default_rng(11 * V + H)
    sp = TreeSpace(P, V, H)
    logp = random_logp(rng, sp, zero_frac=0.3, zero_prefix=True)
    pol = Policy(sp, logp)
    for h in range(H + 1):
        got = pol.prefix_logp(h)
        assert got.shape == (P, V**h)
        want = np.array([[naive.prefix_logp(logp, V, H, x, s) for s in naive._all_prefixes(V, H, h)]
                         for x in range(P)])
        assert_logp_equal(got, want, atol=1e-12)
    np.testing.assert_allclose(pol.prefix_logp(0)[:, 0], 0.0, atol=1e-12)


def test_from_probs_hand_conditionals():
    sp = TreeSpace(1, 2, 2)
    pol = Policy.from_probs(sp, [[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(np.exp(pol.cond[0]), [[0.3, 0.7], [1 / 3, 2 / 3], [3 / 7, 4 / 7]], rtol=1e-13)
    np.testing.assert_allclose(pol.probs, [[0.1, 0.2, 0.3, 0.4]], rtol=1e-13)
    np.testing.assert_allclose(np.exp(pol.prefix_logp(1)), [[0.3, 0.7]], rtol=1e-13)


@pytest.mark.parametrize("P,V,H", TREES)
def test_uniform_and_random_policies_normalised(P, V, H):
    sp = TreeSpace(P, V, H)
    u = uniform_policy(sp)
    np.testing.assert_allclose(u.logp, -H * math.log(V), rtol=1e-14)
    np.testing.assert_allclose(u.cond, -math.log(V), rtol=1e-14)
    r = random_policy(sp, 5)
    assert r.full_support
    np.testing.assert_allclose(np.exp(r.logp).sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.exp(r.cond).sum(axis=2), 1.0, rtol=0, atol=1e-12)
    assert_logp_equal(r.logp, naive.sequence_logp_from_conditionals(cond_to_dict(sp, r.cond), P, V, H))


def test_random_policy_reproducible_and_tempered():
    sp = TreeSpace(2, 3, 2)
    a, b, c = random_policy(sp, 42), random_policy(sp, 42), random_policy(sp, 43)
    np.testing.assert_array_equal(a.logp, b.logp)
    assert not np.allclose(a.logp, c.logp)
    g = random_policy(sp, np.random.default_rng(42))
    np.testing.assert_array_equal(g.logp, a.logp)
    ss = random_policy(sp, np.random.SeedSequence(42))
    np.testing.assert_array_equal(ss.logp, a.logp)
    # temperature t: pi_t(a|s) ∝ pi_1(a|s)^(1/t)
    t = random_policy(sp, 42, temperature=2.0)
    want = a.cond / 2.0 - lse(a.cond / 2.0)[..., None]
    np.testing.assert_allclose(t.cond, want, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- soft RL
def _ref_with_zeros(rng, sp):
    return Policy(sp, random_logp(rng, sp, zero_frac=0.25, zero_prefix=True))


@pytest.mark.parametrize("P,V,H", TREES)
@pytest.mark.parametrize("zeros", [False, True])
def test_soft_optimal_matches_naive_backward_induction(P, V, H, zeros):
    rng = np.random.default_rng(1000 + 31 * V + 7 * H + zeros)
    sp = TreeSpace(P, V, H)
    ref = _ref_with_zeros(rng, sp) if zeros else random_policy(sp, rng)
    # integer rewards: many ties
    r = rng.integers(-2, 3, size=sp.shape).astype(float)
    beta = 0.7
    so = soft_optimal(r, ref, beta)
    nv = naive.soft_optimal(r, ref.logp, beta, V, H)
    for h in range(H + 1):
        want = np.array([[nv["V"][(x, s)] for s in naive._all_prefixes(V, H, h)] for x in range(P)])
        np.testing.assert_allclose(so.V(h), want, rtol=0, atol=1e-10)
    for h in range(H):
        want = np.array([[nv["Q"][(x, s)] for s in naive._all_prefixes(V, H, h)] for x in range(P)])
        np.testing.assert_allclose(so.Q(h), want, rtol=0, atol=1e-10)
    assert_logp_equal(so.policy.cond, naive_cond_array(sp, nv["cond"]), atol=1e-10)
    assert_logp_equal(so.policy.logp, nv["logp"], atol=1e-10)
    assert_logp_equal(so.policy.logp, naive.soft_optimal_closed_form(r, ref.logp, beta), atol=1e-10)
    np.testing.assert_allclose(so.log_Z, nv["log_Z"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(so.values[:, 0], beta * nv["log_Z"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(so.reward, r)
    assert so.beta == beta
    if zeros:
        # pi* has exactly pi_ref's support
        np.testing.assert_array_equal(np.isneginf(so.policy.logp), np.isneginf(ref.logp))


def test_soft_optimal_H1_bandit_by_hand():
    sp = TreeSpace(1, 3, 1)
    ref = Policy.from_probs(sp, [[0.5, 0.25, 0.25]])
    r = np.array([[1.0, 0.0, 2.0]])
    w = np.array([0.5 * math.e, 0.25, 0.25 * math.e**2])
    so = soft_optimal(r, ref, 1.0)
    np.testing.assert_allclose(so.policy.probs[0], w / w.sum(), rtol=1e-13)
    assert so.log_Z[0] == pytest.approx(math.log(w.sum()), rel=1e-14)
    np.testing.assert_allclose(so.Q(0)[0, 0], [1.0, 0.0, 2.0])
    # beta = 2 with a zero-probability token: weights (1/2, 3/2, 0) -> pi* = (1/4, 3/4, 0)
    ref2 = Policy.from_probs(sp, [[0.5, 0.5, 0.0]])
    so2 = soft_optimal([[0.0, 2 * math.log(3.0), 5.0]], ref2, 2.0)
    np.testing.assert_allclose(so2.policy.probs[0], [0.25, 0.75, 0.0], rtol=1e-13, atol=0)
    assert so2.policy.logp[0, 2] == NINF
    assert so2.V(0)[0, 0] == pytest.approx(2 * math.log(2.0), rel=1e-14)


def test_soft_optimal_H2_by_hand():
    # uniform reference, V=2, H=2, beta=1, r = (0, ln 3, 0, 0) on (00, 01, 10, 11)
    sp = TreeSpace(1, 2, 2)
    so = soft_optimal([[0.0, math.log(3.0), 0.0, 0.0]], uniform_policy(sp), 1.0)
    # V_1(0) = log((1 + 3)/2) = log 2, V_1(1) = 0, V_0 = log((2 + 1)/2)
    np.testing.assert_allclose(so.V(1)[0], [math.log(2.0), 0.0], atol=1e-15)
    assert so.V(0)[0, 0] == pytest.approx(math.log(1.5), rel=1e-14)
    np.testing.assert_allclose(so.policy.probs[0], [1 / 6, 3 / 6, 1 / 6, 1 / 6], rtol=1e-13)
    np.testing.assert_allclose(np.exp(so.policy.cond[0, 0]), [2 / 3, 1 / 3], rtol=1e-13)


def test_beta_limits():
    rng = np.random.default_rng(3)
    sp = TreeSpace(2, 3, 2)
    ref = random_policy(sp, rng)
    r = rng.normal(size=sp.shape)
    # beta -> infinity: pi* -> pi_ref
    big = soft_optimal(r, ref, 1e8)
    np.testing.assert_allclose(big.policy.logp, ref.logp, rtol=0, atol=1e-7)
    # beta -> 0: all mass on the argmax (gaps >= 0.05 -> other mass <= T e^{-50})
    r2 = rng.permutation(np.arange(sp.T))[None, :].repeat(2, 0) * 0.05
    small = soft_optimal(r2, ref, 1e-3)
    best = np.argmax(r2, axis=1)
    np.testing.assert_allclose(small.policy.probs[np.arange(2), best], 1.0, rtol=0, atol=1e-15)
    # V_0 = max r + beta log pi_ref(argmax) up to e^{-50}
    np.testing.assert_allclose(small.V(0)[:, 0], r2.max(axis=1) + 1e-3 * ref.logp[np.arange(2), best],
                               rtol=0, atol=1e-12)
    # tied maximisers share the mass in proportion to pi_ref
    r3 = np.zeros(sp.shape)
    r3[:, [1, 5]] = 1.0
    tied = soft_optimal(r3, ref, 1e-3).policy.probs
    q = ref.probs[:, [1, 5]]
    np.testing.assert_allclose(tied[:, [1, 5]], q / q.sum(axis=1, keepdims=True), rtol=1e-10)


def _random_pi_in_support(rng, ref_logp, extra_zero=True):
    logits = rng.normal(size=ref_logp.shape)
    logits[~np.isfinite(ref_logp)] = NINF
    if extra_zero:
        logits[0, np.flatnonzero(np.isfinite(ref_logp[0]))[0]] = NINF
    return logits - lse(logits)[:, None]


@pytest.mark.parametrize("zeros", [False, True])
def test_reverse_kl_identity_and_J_vs_naive(zeros):
    rng = np.random.default_rng(21 + zeros)
    sp = TreeSpace(3, 2, 3)
    ref = _ref_with_zeros(rng, sp) if zeros else random_policy(sp, rng)
    r = rng.normal(size=sp.shape)
    beta = 1.3
    rho = np.array([0.5, 0.3, 0.2])
    so = soft_optimal(r, ref, beta)
    for _ in range(3):
        pi = Policy(sp, _random_pi_in_support(rng, ref.logp))
        per = J_beta(pi, r, ref, beta, per_prompt=True)
        np.testing.assert_allclose(per, naive.J_beta_per_prompt(pi.logp, r, ref.logp, beta), rtol=0, atol=1e-12)
        np.testing.assert_allclose(per, beta * so.log_Z - beta * kl(pi, so.policy, per_prompt=True),
                                   rtol=0, atol=1e-10)
        assert J_beta(pi, r, ref, beta, rho) == pytest.approx(naive.J_beta(pi.logp, r, ref.logp, beta, rho), abs=1e-12)
        assert J_beta(pi, r, ref, beta) == pytest.approx(naive.J_beta(pi.logp, r, ref.logp, beta), abs=1e-12)
        assert kl(pi, ref, rho) == pytest.approx(naive.kl(pi.logp, ref.logp, rho), abs=1e-12)
        np.testing.assert_allclose(kl(pi, ref, per_prompt=True), naive.kl_per_prompt(pi.logp, ref.logp),
                                   rtol=0, atol=1e-12)
        assert expected_reward(pi, r, rho) == pytest.approx(float(rho @ (pi.probs * r).sum(1)), abs=1e-14)
        # pi* is the maximiser: J(pi) <= J(pi*) = beta E log Z
        assert J_beta(pi, r, ref, beta, rho) < J_beta(so.policy, r, ref, beta, rho)
    np.testing.assert_allclose(J_beta(so.policy, r, ref, beta, per_prompt=True), beta * so.log_Z, rtol=0, atol=1e-10)


def test_J_and_kl_off_support_and_zero_weight_prompts():
    sp = TreeSpace(2, 2, 1)
    ref = Policy.from_probs(sp, [[0.5, 0.5], [1.0, 0.0]])
    pi = uniform_policy(sp)  # puts mass on prompt 1's zero-probability completion
    r = np.array([[1.0, -1.0], [0.5, 2.0]])
    assert kl(pi, ref, per_prompt=True)[1] == np.inf
    assert kl(pi, ref) == np.inf
    assert J_beta(pi, r, ref, 1.0) == -np.inf
    assert naive.J_beta(pi.logp, r, ref.logp, 1.0) == -np.inf
    # a prompt of weight zero is skipped entirely (no 0 * inf = NaN)
    rho = [1.0, 0.0]
    assert J_beta(pi, r, ref, 1.0, rho) == naive.J_beta(pi.logp, r, ref.logp, 1.0, rho) == 0.0
    assert kl(pi, ref, rho) == naive.kl(pi.logp, ref.logp, rho) == 0.0


def test_kl_support_read_from_log_not_from_underflowing_exp():
    sp = TreeSpace(1, 2, 1)
    p = Policy(sp, [[0.0, -800.0]])  # exp(-800) underflows to 0 but the probability is > 0
    q = Policy.from_probs(sp, [[1.0, 0.0]])
    assert naive.kl(p.logp, q.logp) == np.inf
    assert kl(p, q) == np.inf
    assert J_beta(p, np.zeros(sp.shape), q, 1.0) == -np.inf


@pytest.mark.parametrize("P,V,H", [(2, 2, 3), (2, 3, 2)])
def test_telescoping_identity(P, V, H):
    rng = np.random.default_rng(5 * V + H)
    sp = TreeSpace(P, V, H)
    ref = _ref_with_zeros(rng, sp)
    r = rng.normal(size=sp.shape) * 2
    beta = 0.8
    so = soft_optimal(r, ref, beta)
    toks = sp.all_tokens()
    tel = np.zeros(sp.shape)
    for y, a in enumerate(toks):
        for h in range(H):
            node = sp.offset(h) + (naive.encode(tuple(a[:h]), V) if h else 0)
            with np.errstate(invalid="ignore"):
                tel[:, y] += beta * (so.policy.cond[:, node, a[h]] - ref.cond[:, node, a[h]])
    fin = np.isfinite(ref.logp)
    expect = r - so.V(0)
    np.testing.assert_allclose(tel[fin], expect[fin], rtol=0, atol=1e-10)
    # same numbers from naive's telescoped reward on the same conditionals
    nt = naive.telescoped_local_reward(cond_to_dict(sp, so.policy.cond), cond_to_dict(sp, ref.cond), beta, V, H, P)
    np.testing.assert_allclose(nt[fin], expect[fin], rtol=0, atol=1e-10)


def test_bradley_terry_partition_cancellation():
    rng = np.random.default_rng(8)
    sp = TreeSpace(2, 3, 2)
    ref = random_policy(sp, rng)
    r = rng.normal(size=sp.shape)
    beta = 0.6
    star = soft_optimal(r, ref, beta).policy
    # induced reward of pi*_r is r - beta log Z_r(x)
    log_Z = logsumexp(ref.logp + r / beta, axis=1)
    ind = induced_reward(star, ref, beta)
    np.testing.assert_allclose(ind, r - beta * log_Z[:, None], rtol=0, atol=1e-10)
    # sigma(r(y1) - r(y2)) = sigma(beta(log pi*(y1) - log pi*(y2)) - beta(log ref(y1) - log ref(y2)))
    d_true = r[:, :, None] - r[:, None, :]
    lp, lr = star.logp, ref.logp
    d_pol = beta * (lp[:, :, None] - lp[:, None, :]) - beta * (lr[:, :, None] - lr[:, None, :])
    np.testing.assert_allclose(expit(d_pol), expit(d_true), rtol=0, atol=1e-10)


def test_backward_induction_bitwise_identical_across_threads():
    rng = np.random.default_rng(9)
    sp = TreeSpace(8, 3, 3)
    ref = random_policy(sp, rng)
    r = rng.normal(size=sp.shape)
    ref_cond = ref.cond  # read-only C-contiguous float64, as soft_optimal passes it (one compiled signature)
    outs = []
    old = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            values = np.empty((sp.P, sp.n_internal))
            logpi = np.empty((sp.P, sp.n_internal, sp.V))
            logp = np.empty(sp.shape)
            _kernels.backward_induction(r, ref_cond, 0.9, sp.V, sp.H, values, logpi, logp)
            outs.append((values, logpi, logp))
    finally:
        numba.set_num_threads(old)
    for a, b in zip(*outs):
        assert a.tobytes() == b.tobytes()
    assert numba.get_num_threads() == old
    assert_logp_equal(outs[0][2], naive.soft_optimal_closed_form(r, ref.logp, 0.9), atol=1e-10)


def test_kl_rounding_floor_is_exact_zero_but_real_differences_survive():
    """Backward induction and the closed form give the same π* up to ~1e-16 per log-prob:
    its KL is reported as exactly 0; a genuine 1e-5 perturbation still gives ≈ ½ Σ p Δ²."""
    sp = TreeSpace(3, 2, 4)
    rng = np.random.default_rng(0)
    ref = random_policy(sp, 1)
    r = rng.normal(size=sp.shape)
    so = soft_optimal(r, ref, 0.5)
    closed = ref.logp + r / 0.5
    closed = closed - lse(closed)[:, None]
    assert np.abs(so.policy.logp - closed).max() > 0  # the two computations do differ in the last bits
    np.testing.assert_array_equal(kl_rows(so.policy.logp, closed), 0.0)
    delta = 1e-5 * rng.normal(size=sp.shape)
    pert = closed + delta
    pert = pert - lse(pert)[:, None]
    d = pert - closed
    p = np.exp(pert)
    want = 0.5 * (p * (d - (p * d).sum(axis=1, keepdims=True)) ** 2).sum(axis=1)
    np.testing.assert_allclose(kl_rows(pert, closed), want, rtol=1e-3)
