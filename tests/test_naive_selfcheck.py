"""Self-checks of tests/naive.py against hand-computable closed forms.

These never import genver: they only make sure the brute-force references are
themselves right, so that they can be trusted to check the fast code.
"""

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import naive  # noqa: E402

NINF = float("-inf")


def _log(p):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=float))


def _random_logp(rng, P, T, zero_frac=0.0):
    """Random row-normalised log-probs, with about zero_frac of entries set to -inf."""
    logits = rng.normal(size=(P, T))
    mask = rng.random((P, T)) < zero_frac
    for x in range(P):
        if mask[x].all():
            mask[x, rng.integers(T)] = False
    logits[mask] = NINF
    m = logits.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return logits - lse


# ---------------------------------------------------------------- indexing

def test_encode_decode_roundtrip_and_order():
    assert naive.encode((0, 0, 1), 2) == 1
    assert naive.encode((1, 0, 0), 2) == 4
    assert naive.encode((2, 1), 3) == 7
    assert naive.decode(7, 3, 2) == (2, 1)
    comps = naive.all_completions(3, 3)
    assert len(comps) == 27
    assert comps[0] == (0, 0, 0) and comps[1] == (0, 0, 1) and comps[-1] == (2, 2, 2)
    for i, y in enumerate(comps):
        assert naive.encode(y, 3) == i
        assert naive.decode(i, 3, 3) == y
    # completions sharing a first token are one contiguous block
    assert [y[0] for y in comps] == sorted(y[0] for y in comps)


def test_prefix_logp_hand():
    # V=2, H=2: probs (0.1, 0.2, 0.3, 0.4) on (00, 01, 10, 11)
    logp = _log([[0.1, 0.2, 0.3, 0.4]])
    assert naive.prefix_logp(logp, 2, 2, 0, ()) == pytest.approx(0.0, abs=1e-12)
    assert naive.prefix_logp(logp, 2, 2, 0, (0,)) == pytest.approx(math.log(0.3))
    assert naive.prefix_logp(logp, 2, 2, 0, (1,)) == pytest.approx(math.log(0.7))
    assert naive.prefix_logp(logp, 2, 2, 0, (1, 0)) == pytest.approx(math.log(0.3))
    cond = naive.token_conditionals(logp, 2, 2)
    np.testing.assert_allclose(np.exp(cond[(0, ())]), [0.3, 0.7])
    np.testing.assert_allclose(np.exp(cond[(0, (1,))]), [3 / 7, 4 / 7])


def test_token_conditionals_zero_prefix_is_uniform():
    # prefix (0,) has probability 0 -> conditional there is uniform by convention
    logp = np.array([[NINF, NINF, math.log(0.5), math.log(0.5)]])
    cond = naive.token_conditionals(logp, 2, 2)
    assert cond[(0, ())][0] == NINF
    np.testing.assert_allclose(cond[(0, (0,))], [math.log(0.5)] * 2)
    back = naive.sequence_logp_from_conditionals(cond, 1, 2, 2)
    np.testing.assert_array_equal(back[0, :2], [NINF, NINF])
    np.testing.assert_allclose(back[0, 2:], logp[0, 2:])


@pytest.mark.parametrize("zero_frac", [0.0, 0.3])
def test_conditionals_recover_sequence_logp(zero_frac):
    rng = np.random.default_rng(0)
    P, V, H = 2, 3, 3
    logp = _random_logp(rng, P, V ** H, zero_frac)
    cond = naive.token_conditionals(logp, V, H)
    for key, c in cond.items():
        assert naive._logsumexp_list(c) == pytest.approx(0.0, abs=1e-12), key
    back = naive.sequence_logp_from_conditionals(cond, P, V, H)
    np.testing.assert_array_equal(np.isneginf(back), np.isneginf(logp))
    fin = np.isfinite(logp)
    np.testing.assert_allclose(back[fin], logp[fin], rtol=0, atol=1e-12)


# ---------------------------------------------------------------- soft-optimal

def test_soft_optimal_H1_hand():
    # pi_ref = (1/2, 1/4, 1/4), r = (1, 0, 2), beta = 1
    ref = _log([[0.5, 0.25, 0.25]])
    r = np.array([[1.0, 0.0, 2.0]])
    w = [0.5 * math.e, 0.25, 0.25 * math.e ** 2]
    Z = sum(w)
    out = naive.soft_optimal(r, ref, 1.0, 3, 1)
    np.testing.assert_allclose(np.exp(out["logp"][0]), [wi / Z for wi in w], rtol=1e-12)
    assert out["log_Z"][0] == pytest.approx(math.log(Z), rel=1e-12)
    assert out["V"][(0, ())] == pytest.approx(math.log(Z), rel=1e-12)
    np.testing.assert_allclose(out["Q"][(0, ())], [1.0, 0.0, 2.0])
    np.testing.assert_allclose(np.exp(naive.soft_optimal_closed_form(r, ref, 1.0)[0]),
                               [wi / Z for wi in w], rtol=1e-12)


def test_soft_optimal_H1_hand_with_zero_and_beta2():
    # pi_ref = (1/2, 1/2, 0), r = (0, 2 ln 3, 5), beta = 2
    # weights (1/2, 3/2, 0) -> Z = 2, pi* = (1/4, 3/4, 0)
    ref = np.array([[math.log(0.5), math.log(0.5), NINF]])
    r = np.array([[0.0, 2 * math.log(3.0), 5.0]])
    out = naive.soft_optimal(r, ref, 2.0, 3, 1)
    np.testing.assert_allclose(np.exp(out["logp"][0]), [0.25, 0.75, 0.0], rtol=1e-12)
    assert out["logp"][0, 2] == NINF
    assert out["log_Z"][0] == pytest.approx(math.log(2.0), rel=1e-12)
    assert out["V"][(0, ())] == pytest.approx(2 * math.log(2.0), rel=1e-12)


def test_soft_optimal_recursion_matches_closed_form_random_tree():
    rng = np.random.default_rng(1)
    P, V, H, beta = 2, 3, 3, 0.7
    T = V ** H
    ref = _random_logp(rng, P, T, zero_frac=0.3)
    r = rng.normal(size=(P, T)) * 2
    out = naive.soft_optimal(r, ref, beta, V, H)
    closed = naive.soft_optimal_closed_form(r, ref, beta)
    np.testing.assert_array_equal(np.isneginf(out["logp"]), np.isneginf(ref))
    np.testing.assert_array_equal(np.isneginf(closed), np.isneginf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(out["logp"][fin], closed[fin], rtol=0, atol=1e-10)
    for x in range(P):
        lz = naive._logsumexp_list([ref[x, y] + r[x, y] / beta for y in range(T) if fin[x, y]])
        assert out["log_Z"][x] == pytest.approx(lz, abs=1e-10)
    # V at full length is r, and Q_h(s, a) = V_{h+1}(s.a)
    for x in range(P):
        for y in naive.all_completions(V, H):
            assert out["V"][(x, y)] == r[x, naive.encode(y, V)]
            for h in range(H):
                assert out["Q"][(x, y[:h])][y[h]] == out["V"][(x, y[:h + 1])]
    # telescoping lemma: sum_h beta log pi*/pi_ref = r - V_0 on pi_ref's support
    ref_cond = naive.token_conditionals(ref, V, H)
    tel = naive.telescoped_local_reward(out["cond"], ref_cond, beta, V, H, P)
    expect = r - beta * out["log_Z"][:, None]
    np.testing.assert_allclose(tel[fin], expect[fin], rtol=0, atol=1e-10)
    assert np.isnan(tel[~fin]).all()  # 0/0 log-ratio off the support


# ---------------------------------------------------------------- J_beta and KL

def test_J_beta_reverse_kl_identity():
    rng = np.random.default_rng(2)
    P, V, H, beta = 3, 2, 3, 1.3
    T = V ** H
    ref = _random_logp(rng, P, T, zero_frac=0.2)
    ref[1, 0] = NINF  # make sure prompt 1's reference misses a completion
    ref[1] -= naive._logsumexp_list(ref[1])
    r = rng.normal(size=(P, T))
    star = naive.soft_optimal_closed_form(r, ref, beta)
    log_Z = np.array([naive._logsumexp_list(ref[x] + r[x] / beta) for x in range(P)])
    rho = np.array([0.5, 0.3, 0.2])
    # random pi inside pi_ref's support, with some extra zeros
    logits = rng.normal(size=(P, T))
    logits[~np.isfinite(ref)] = NINF
    logits[0, np.flatnonzero(np.isfinite(ref[0]))[0]] = NINF
    pi = logits - np.array([naive._logsumexp_list(row) for row in logits])[:, None]
    per = naive.J_beta_per_prompt(pi, r, ref, beta)
    expect = beta * log_Z - beta * naive.kl_per_prompt(pi, star)
    np.testing.assert_allclose(per, expect, rtol=0, atol=1e-10)
    assert naive.J_beta(pi, r, ref, beta, rho) == pytest.approx(float(rho @ expect), abs=1e-10)
    # pi* itself attains beta log Z
    np.testing.assert_allclose(naive.J_beta_per_prompt(star, r, ref, beta), beta * log_Z,
                               rtol=0, atol=1e-10)
    # mass outside pi_ref's support -> KL = inf, J = -inf
    bad = pi.copy()
    bad[1] = np.log(np.full(T, 1.0 / T))
    assert naive.kl_per_prompt(bad, ref)[1] == math.inf
    assert naive.J_beta(bad, r, ref, beta) == -math.inf
    # ... unless that prompt has weight zero
    assert math.isfinite(naive.J_beta(bad, r, ref, beta, np.array([0.5, 0.0, 0.5])))


def test_kl_hand():
    p = _log([[0.5, 0.5, 0.0]])
    q = _log([[0.25, 0.5, 0.25]])
    assert naive.kl(p, q) == pytest.approx(0.5 * math.log(2.0), rel=1e-12)
    assert naive.kl(q, p) == math.inf
    assert naive.kl(p, p) == 0.0


# ---------------------------------------------------------------- Bradley-Terry

def test_log_sigmoid():
    assert naive.log_sigmoid(0.0) == pytest.approx(-math.log(2.0), rel=1e-15)
    assert naive.log_sigmoid(1e4) == pytest.approx(0.0, abs=1e-300)
    assert naive.log_sigmoid(-1e4) == pytest.approx(-1e4, rel=1e-15)
    assert naive.log_sigmoid(math.log(3.0)) == pytest.approx(math.log(0.75), rel=1e-14)
    assert naive.log_sigmoid(-math.log(3.0)) == pytest.approx(math.log(0.25), rel=1e-14)


def test_bt_loglik_and_counts():
    r = np.array([[0.0, math.log(3.0)], [1.0, 1.0]])
    pairs = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0]])
    expect = 2 * math.log(0.75) + math.log(0.25) + math.log(0.5)
    assert naive.bt_loglik(r, pairs) == pytest.approx(expect, rel=1e-13)
    scores = np.stack([r, r + 5.0, np.zeros_like(r)])
    np.testing.assert_allclose(naive.class_bt_loglik(scores, pairs),
                               [expect, expect, 4 * math.log(0.5)], rtol=1e-13)
    c = naive.pair_counts(pairs)
    assert c == {(0, 1, 0): 2, (0, 0, 1): 1, (1, 0, 1): 1}


def test_win_rate():
    rng = np.random.default_rng(3)
    P, T = 2, 8
    ref = _random_logp(rng, P, T, zero_frac=0.25)
    assert naive.win_rate(ref, ref, np.full((P, T), 3.0)) == pytest.approx(0.5, abs=1e-12)
    # sigma(d) + sigma(-d) = 1 -> any r gives 1/2 for pi_ref against itself
    assert naive.win_rate(ref, ref, rng.normal(size=(P, T))) == pytest.approx(0.5, abs=1e-12)
    # deterministic hand case: pi on y=1, pi_ref uniform on {0, 1}, r = (0, ln 3)
    pi = _log([[0.0, 1.0]])
    ref2 = _log([[0.5, 0.5]])
    r = np.array([[0.0, math.log(3.0)]])
    assert naive.win_rate(pi, ref2, r) == pytest.approx(0.5 * 0.75 + 0.5 * 0.5, rel=1e-13)


def test_expected_bt_loglik():
    d = 1.7
    mu = _log([[0.5, 0.5]])
    r = np.array([[d, 0.0]])
    s = 1 / (1 + math.exp(-d))
    ent = s * math.log(s) + (1 - s) * math.log(1 - s)
    expect = 0.25 * (2 * -math.log(2.0) + 2 * ent)
    assert naive.expected_bt_loglik(r, r, mu) == pytest.approx(expect, rel=1e-13)
    # Gibbs: the true reward maximises it; per-prompt constants are invisible
    rng = np.random.default_rng(4)
    P, T = 2, 6
    mu = _random_logp(rng, P, T, zero_frac=0.2)
    rt = rng.normal(size=(P, T))
    best = naive.expected_bt_loglik(rt, rt, mu)
    assert naive.expected_bt_loglik(rt + np.array([[1.0], [-4.0]]), rt, mu) == pytest.approx(best)
    for _ in range(3):
        assert naive.expected_bt_loglik(rng.normal(size=(P, T)), rt, mu) < best
