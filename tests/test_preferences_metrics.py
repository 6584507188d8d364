"""Bradley–Terry preference sampling, sufficient statistics, BT kernels and exact metrics."""
import math

import numba
import numpy as np
import pytest
from conftest import random_logp
from scipy.special import expit
from scipy.stats import chi2

import naive
from genver import _kernels
from genver.metrics import (
    evaluate,
    expected_bt_loglik,
    heldout_bt_loglik,
    kl_to_optimal,
    kl_to_reference,
    suboptimality,
    win_rate,
)
from genver.policy import Policy, random_policy, uniform_policy
from genver.preferences import Preferences, sample_preferences
from genver.softrl import expected_reward, soft_optimal
from genver.spaces import TreeSpace


def _world(seed=0, P=2, V=2, H=2):
    rng = np.random.default_rng(seed)
    sp = TreeSpace(P, V, H)
    return rng, sp, random_policy(sp, rng), rng.normal(size=sp.shape)


# ------------------------------------------------------------------------- preferences
def test_same_seed_same_data_and_nested_heads():
    _, sp, ref, r = _world()
    a = sample_preferences(r, ref, 300, random_state=7)
    b = sample_preferences(r, ref, 300, random_state=7)
    c = sample_preferences(r, ref, 300, random_state=8)
    np.testing.assert_array_equal(a.as_array(), b.as_array())
    assert not np.array_equal(a.as_array(), c.as_array())
    assert len(a) == 300 and a.as_array().shape == (300, 3)
    prev = naive.pair_counts(np.empty((0, 3), dtype=np.int64))
    for n in (0, 10, 50, 300):
        h = a.head(n)
        assert len(h) == n
        np.testing.assert_array_equal(h.as_array(), a.as_array()[:n])
        cur = naive.pair_counts(h.as_array())
        assert all(cur[k] >= v for k, v in prev.items())  # nested multisets
        prev = cur


def test_counts_match_naive_pair_counts():
    _, sp, ref, r = _world(1, P=3, V=2, H=2)
    data = sample_preferences(r, ref, 500, random_state=3)
    c = data.counts()
    got = {(int(x), int(p), int(n)): k for x, p, n, k in zip(c.x, c.y_pos, c.y_neg, c.count)}
    assert got == dict(naive.pair_counts(data.as_array()))
    assert c.n_pairs == 500
    trip = np.stack([c.x, c.y_pos, c.y_neg], 1)
    assert [tuple(t) for t in trip] == sorted(tuple(t) for t in trip)  # unique, sorted
    assert len(set(map(tuple, trip))) == len(trip)
    np.testing.assert_array_equal(c.pos_flat, c.x * sp.T + c.y_pos)
    np.testing.assert_array_equal(c.neg_flat, c.x * sp.T + c.y_neg)
    assert c.count.dtype == np.float64


def test_label_frequency_of_a_fixed_pair_is_sigmoid():
    # one prompt, sampler on completions {0, 2} only: half of all pairs compare 0 with 2
    sp = TreeSpace(1, 2, 2)
    mu = Policy.from_probs(sp, [[0.5, 0.0, 0.5, 0.0]])
    r = np.array([[0.0, 5.0, 0.8, -5.0]])
    for temperature in (1.0, 2.0):
        data = sample_preferences(r, mu, 100000, random_state=11, temperature=temperature)
        arr = data.as_array()
        assert set(np.unique(arr[:, 1:])) <= {0, 2}  # never a zero-probability completion
        mixed = arr[arr[:, 1] != arr[:, 2]]
        n = len(mixed)
        assert abs(n - 50000) < 5 * math.sqrt(100000 * 0.25)
        freq = np.mean(mixed[:, 1] == 2)
        p = expit(0.8 / temperature)
        # Hoeffding: P(|freq - p| > t) <= 2 exp(-2 n t^2) = 1e-6
        t = math.sqrt(math.log(2 / 1e-6) / (2 * n))
        assert abs(freq - p) < t


def test_deterministic_labels_prefer_higher_reward():
    _, sp, ref, _ = _world(2, P=2, V=3, H=1)
    r = np.array([[0.0, 1.0, 1.0], [2.0, -1.0, 0.5]])  # a tie in prompt 0
    data = sample_preferences(r, ref, 2000, random_state=5, deterministic=True)
    arr = data.as_array()
    rp, rn = r[arr[:, 0], arr[:, 1]], r[arr[:, 0], arr[:, 2]]
    assert (rp >= rn).all()
    diff = arr[:, 1] != arr[:, 2]
    unequal = rp != rn
    assert (rp[unequal] > rn[unequal]).all()
    # ties are a fair coin: both orders of (1, 2) occur
    tied = (arr[:, 0] == 0) & diff & ~unequal
    assert tied.sum() > 50
    assert 0 < np.mean(arr[tied, 1] == 1) < 1


def test_sampler_and_prompt_frequencies_match():
    rng = np.random.default_rng(3)
    sp = TreeSpace(3, 2, 2)
    mu = Policy(sp, random_logp(rng, sp, zero_frac=0.2))
    rho = np.array([0.2, 0.5, 0.3])
    N = 20000
    data = sample_preferences(rng.normal(size=sp.shape), mu, N, random_state=9, prompt_weights=rho)
    arr = data.as_array()
    # prompts ~ rho
    obs = np.bincount(arr[:, 0], minlength=3)
    stat = ((obs - N * rho) ** 2 / (N * rho)).sum()
    assert stat < chi2.ppf(1 - 1e-6, df=2)
    # y1 and y2 are i.i.d. mu(.|x); the label only swaps them, so y_pos ∪ y_neg ~ 2 draws per pair
    cells = np.zeros(sp.shape)
    np.add.at(cells, (arr[:, 0], arr[:, 1]), 1)
    np.add.at(cells, (arr[:, 0], arr[:, 2]), 1)
    expect = 2 * obs[:, None] * mu.probs
    zero = ~np.isfinite(mu.logp)
    assert cells[zero].sum() == 0
    stat = ((cells[~zero] - expect[~zero]) ** 2 / expect[~zero]).sum()
    # y_pos and y_neg of one pair are independent draws, so the 2N draws per prompt are i.i.d.
    assert stat < chi2.ppf(1 - 1e-6, df=int((~zero).sum()) - 3)


def test_from_array_round_trip_and_validation():
    sp = TreeSpace(2, 2, 2)
    arr = np.array([[0, 1, 2], [1, 3, 0]])
    d = Preferences.from_array(sp, arr)
    np.testing.assert_array_equal(d.as_array(), arr)
    assert len(Preferences.from_array(sp, np.empty((0, 3), dtype=int))) == 0
    with pytest.raises(ValueError, match=r"pairs must have shape \(N, 3\)"):
        Preferences.from_array(sp, np.zeros((3, 2), dtype=int))
    with pytest.raises(ValueError, match=r"pairs must have shape \(N, 3\)"):
        Preferences.from_array(sp, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="pairs must be an integer array"):
        Preferences.from_array(sp, arr.astype(float))
    with pytest.raises(ValueError, match=r"pairs\[:, 0\] \(prompt\) must lie in \[0, 1\]"):
        Preferences.from_array(sp, [[2, 0, 1]])
    with pytest.raises(ValueError, match=r"pairs\[:, 0\] \(prompt\)"):
        Preferences.from_array(sp, [[-1, 0, 1]])
    with pytest.raises(ValueError, match=r"pairs\[:, 1:\] \(completions\) must lie in \[0, 3\]"):
        Preferences.from_array(sp, [[0, 0, 4]])
    with pytest.raises(ValueError, match="mine must have shape"):
        Preferences.from_array(sp, np.zeros((1, 4), dtype=int), name="mine")
    with pytest.raises(ValueError, match="n = 3 exceeds the 2 pairs"):
        d.head(3)


# ---------------------------------------------------------------------- BT kernels
def _random_pairs(rng, sp, n):
    x = rng.integers(0, sp.P, n)
    return np.stack([x, rng.integers(0, sp.T, n), rng.integers(0, sp.T, n)], 1)


def test_class_bt_loglik_kernel_vs_naive():
    rng = np.random.default_rng(4)
    sp = TreeSpace(2, 2, 2)
    pairs = _random_pairs(rng, sp, 60)  # includes repeats and y+ == y-
    c = Preferences.from_array(sp, pairs, self_pairs="keep").counts()
    scores = rng.normal(size=(5, sp.P, sp.T)) * 3
    flat = np.ascontiguousarray(scores.reshape(5, -1))
    zero = np.zeros(len(c.count))
    for scale in (1.0, 0.37):
        out = np.empty(5)
        _kernels.class_bt_loglik(flat, c.pos_flat, c.neg_flat, zero, c.count, scale, out)
        np.testing.assert_allclose(out, naive.class_bt_loglik(scale * scores, pairs), rtol=1e-12)
    # per-pair offsets: Σ_j c_j log σ(scale·Δ_kj + o_j), brute force over the raw pairs
    offset = rng.normal(size=len(c.count))
    o_of = {(int(x), int(p), int(n)): o for x, p, n, o in zip(c.x, c.y_pos, c.y_neg, offset)}
    out = np.empty(5)
    _kernels.class_bt_loglik(flat, c.pos_flat, c.neg_flat, offset, c.count, 0.37, out)
    want = [math.fsum(naive.log_sigmoid(0.37 * (scores[k, x, p] - scores[k, x, n]) + o_of[(x, p, n)])
                      for x, p, n in pairs.tolist()) for k in range(5)]
    np.testing.assert_allclose(out, want, rtol=1e-12)


def test_bt_loglik_grad_vs_naive_and_finite_differences():
    rng = np.random.default_rng(5)
    sp = TreeSpace(2, 2, 2)
    pairs = _random_pairs(rng, sp, 40)
    c = Preferences.from_array(sp, pairs, self_pairs="keep").counts()
    f = rng.normal(size=sp.P * sp.T)
    for scale in (1.0, 0.37):
        grad = np.empty_like(f)
        total = _kernels.bt_loglik_grad(f, c.pos_flat, c.neg_flat, c.count, scale, grad)
        L = lambda v, scale=scale: naive.bt_loglik(scale * v.reshape(sp.shape), pairs)  # noqa: E731
        assert total == pytest.approx(L(f), rel=1e-12)
        eps = 1e-6
        fd = np.array([(L(f + eps * e) - L(f - eps * e)) / (2 * eps) for e in np.eye(f.size)])
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
        assert abs(grad.sum()) < 1e-12  # adding a constant changes nothing


def test_bt_kernels_extreme_scores_are_finite():
    f = np.array([0.0, 800.0])
    pos, neg, cnt = np.array([0, 1]), np.array([1, 0]), np.array([1.0, 1.0])
    grad = np.empty(2)
    total = _kernels.bt_loglik_grad(f, pos, neg, cnt, 1.0, grad)
    assert total == pytest.approx(-800.0, rel=1e-15)  # log σ(-800) + log σ(800)
    # d/df0 [log σ(f0 - f1) + log σ(f1 - f0)] = σ(f1 - f0) - σ(f0 - f1) = σ(800) - σ(-800)
    np.testing.assert_allclose(grad, [1.0, -1.0], rtol=1e-15)


def test_class_bt_loglik_bitwise_identical_across_threads():
    rng = np.random.default_rng(6)
    sp = TreeSpace(2, 3, 2)
    pairs = _random_pairs(rng, sp, 400)
    c = Preferences.from_array(sp, pairs, self_pairs="keep").counts()
    scores = rng.normal(size=(64, sp.P * sp.T))
    offset = rng.normal(size=len(c.count))
    outs = []
    old = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            out = np.empty(64)
            _kernels.class_bt_loglik(scores, c.pos_flat, c.neg_flat, offset, c.count, 1.0, out)
            outs.append(out)
    finally:
        numba.set_num_threads(old)
    assert outs[0].tobytes() == outs[1].tobytes()
    assert numba.get_num_threads() == old


# ---------------------------------------------------------------------------- metrics
def test_win_rate_vs_naive_with_ties():
    rng = np.random.default_rng(7)
    sp = TreeSpace(2, 3, 2)
    ref = Policy(sp, random_logp(rng, sp, zero_frac=0.2, zero_prefix=True))
    pi = Policy(sp, random_logp(rng, sp, zero_frac=0.3))
    r = rng.integers(-1, 2, size=sp.shape).astype(float)  # three values: heavy ties
    rho = np.array([0.3, 0.7])
    assert win_rate(pi, r, ref, rho) == pytest.approx(naive.win_rate(pi.logp, ref.logp, r, rho), abs=1e-13)
    r2 = rng.normal(size=sp.shape)
    assert win_rate(pi, r2, ref) == pytest.approx(naive.win_rate(pi.logp, ref.logp, r2), abs=1e-13)
    assert win_rate(ref, r2, ref) == pytest.approx(0.5, abs=1e-13)
    assert win_rate(pi, np.full(sp.shape, 3.0), ref) == pytest.approx(0.5, abs=1e-13)
    # hand case: pi on y=1, ref uniform on {0,1}, r = (0, ln 3) -> 0.5*0.75 + 0.5*0.5
    sp1 = TreeSpace(1, 2, 1)
    assert win_rate(Policy.from_probs(sp1, [[0.0, 1.0]]), [[0.0, math.log(3.0)]], uniform_policy(sp1)) \
        == pytest.approx(0.625, rel=1e-14)


def test_expected_and_heldout_bt_loglik_vs_naive():
    rng = np.random.default_rng(8)
    sp = TreeSpace(2, 2, 2)
    mu = Policy(sp, random_logp(rng, sp, zero_frac=0.25))
    rt, rm = rng.normal(size=sp.shape), rng.normal(size=sp.shape)
    rho = np.array([0.6, 0.4])
    assert expected_bt_loglik(rm, rt, mu, rho) == pytest.approx(naive.expected_bt_loglik(rm, rt, mu.logp, rho),
                                                                abs=1e-13)
    # Gibbs: the true reward is best, per-prompt constants are invisible
    best = expected_bt_loglik(rt, rt, mu)
    assert expected_bt_loglik(rt + np.array([[3.0], [-1.0]]), rt, mu) == pytest.approx(best, abs=1e-13)
    assert expected_bt_loglik(rm, rt, mu) < best
    data = sample_preferences(rt, mu, 200, random_state=1)
    assert heldout_bt_loglik(rm, data) == pytest.approx(naive.bt_loglik(rm, data.as_array()) / 200, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_grouped_expected_bt_loglik_vs_naive_with_ties_and_zero_mass(seed):
    """The double sum over groups of equal (r, r*) against the O(T²) naive sum: random rewards,
    heavy ties in one or both rewards (integers), zero-mass completions and prefixes."""
    rng = np.random.default_rng(100 + seed)
    sp = TreeSpace(3, [2, 3, 2, 4, 2, 3][seed], [3, 2, 4, 2, 2, 3][seed])
    mu = Policy(sp, random_logp(rng, sp, zero_frac=0.3, zero_prefix=True))
    rho = rng.dirichlet(np.ones(sp.P))
    cont = rng.normal(size=sp.shape)
    ties = rng.integers(-1, 2, size=sp.shape).astype(float)
    ties2 = rng.integers(0, 2, size=sp.shape) * 0.7
    for rm, rt in ((cont, rng.normal(size=sp.shape)), (ties, cont), (cont, ties), (ties, ties2), (ties, ties)):
        want = naive.expected_bt_loglik(rm, rt, mu.logp, rho)
        assert expected_bt_loglik(rm, rt, mu, rho) == pytest.approx(want, abs=1e-13)


def _structured_bt_world(H=20, p1=0.3):
    """μ(y) = Π_h p(a_h) with p(1) = p1 on V = 2, H = 20 (T = 2**20); with ``c1``, ``c2`` the
    numbers of 1-tokens in the first and the second half, ``r = 0.5·c1`` and ``r* = 0.3·c1 +
    0.8·c2``: 11 × 11 = 121 joint values, while r alone takes 11."""
    sp = TreeSpace(1, 2, H)
    y = np.arange(sp.T, dtype=np.int64)
    half = H // 2
    c1, c2 = np.bitwise_count(y >> half).astype(float), np.bitwise_count(y & (2**half - 1)).astype(float)
    logmu = (c1 + c2) * math.log(p1) + (H - c1 - c2) * math.log(1 - p1)
    return sp, Policy(sp, logmu[None]), (0.5 * c1)[None], (0.3 * c1 + 0.8 * c2)[None], half, p1


def _structured_bt_closed_form(half, p1):
    """Σ over level counts: c1, c2, c1', c2' independent Binomial(half, p1) under μ."""
    from scipy.stats import binom
    c = np.arange(half + 1)
    b = binom.pmf(c, half, p1)
    C1, C2 = np.meshgrid(c, c, indexing="ij")
    w = (b[:, None] * b[None, :]).ravel()
    rm, rt = 0.5 * C1.ravel(), 0.3 * C1.ravel() + 0.8 * C2.ravel()
    d, dt = rm[:, None] - rm[None, :], rt[:, None] - rt[None, :]
    bracket = expit(dt) * -np.logaddexp(0.0, -d) + expit(-dt) * -np.logaddexp(0.0, d)
    return float(w @ bracket @ w)


def test_expected_bt_loglik_at_a_million_completions_matches_level_counts(monkeypatch):
    """T = 2**20 (once refused as O(T²)): exact, equal to the closed form over the binomial level
    counts; a grouping by r alone (ignoring r*) is caught by the same comparison."""
    from genver import metrics as M
    sp, mu, rm, rt, half, p1 = _structured_bt_world()
    want = _structured_bt_closed_form(half, p1)
    assert expected_bt_loglik(rm, rt, mu) == pytest.approx(want, rel=1e-12, abs=1e-13)
    real = M._joint_groups

    def by_r_only(rm_row, rt_row, logmu):  # broken: groups by r, keeps the first member's r*
        g_rm, _, mass = real(rm_row, np.zeros_like(rt_row), logmu)
        first = [int(np.flatnonzero(rm_row == v)[0]) for v in g_rm]
        return g_rm, rt_row[first], mass
    monkeypatch.setattr(M, "_joint_groups", by_r_only)
    broken = expected_bt_loglik(rm, rt, mu)
    assert abs(broken - want) > 1e-3


def test_expected_bt_loglik_refuses_only_on_distinct_joint_values(monkeypatch):
    """The limit is on Σ_x K_x² (K_x distinct (r, r*) values with μ > 0), not on P·T²; the
    error states K, the limit and why."""
    from genver import metrics as M
    rng = np.random.default_rng(5)
    sp = TreeSpace(2, 2, 6)  # P·T² = 8,192
    mu = random_policy(sp, rng)
    rt = rng.integers(0, 3, size=sp.shape).astype(float)
    rm = rng.integers(0, 2, size=sp.shape).astype(float)  # at most 6 joint values per prompt
    monkeypatch.setattr(M, "MAX_PAIR_WORK", 72)
    assert expected_bt_loglik(rm, rt, mu) == pytest.approx(naive.expected_bt_loglik(rm, rt, mu.logp), abs=1e-13)
    with pytest.raises(ValueError, match=r"up to K = 64 distinct \(reward, reward_true\) values.*"
                                         r"sum_x K_x\^2 = 8192.*MAX_PAIR_WORK = 72.*heldout_bt_loglik"):
        expected_bt_loglik(rng.normal(size=sp.shape), rt, mu)


def test_metrics_refuse_the_old_argument_order():
    """Every metric takes (policy, reward, ref, beta, …): a Policy where a reward belongs (the
    old ``win_rate(policy, ref, reward)``) is a TypeError that names the order, never misread."""
    rng, sp, ref, r = _world(3)
    pi = random_policy(sp, rng)
    with pytest.raises(TypeError, match=r"win_rate: reward must be a reward array, got a Policy; "
                                        r"the argument order is win_rate\(policy, reward, ref, prompt_weights\)"):
        win_rate(pi, ref, r)
    with pytest.raises(TypeError, match=r"suboptimality\(policy, reward, ref, beta"):
        suboptimality(pi, ref, r, 1.0)
    with pytest.raises(TypeError, match=r"kl_to_optimal\(policy, reward, ref, beta"):
        kl_to_optimal(pi, ref, r, 1.0)
    with pytest.raises(TypeError, match=r"expected_bt_loglik\(reward, reward_true, sampler"):
        expected_bt_loglik(r, ref, r)
    assert win_rate(pi, r, ref) == pytest.approx(naive.win_rate(pi.logp, ref.logp, r), abs=1e-13)


def test_suboptimality_kl_and_evaluate():
    rng = np.random.default_rng(9)
    sp = TreeSpace(2, 2, 3)
    ref = random_policy(sp, rng)
    r = rng.normal(size=sp.shape)
    beta = 0.7
    rho = np.array([0.35, 0.65])
    pi = random_policy(sp, rng)
    star = naive.soft_optimal_closed_form(r, ref.logp, beta)
    Jstar = naive.J_beta(star, r, ref.logp, beta, rho)
    Jpi = naive.J_beta(pi.logp, r, ref.logp, beta, rho)
    sub = suboptimality(pi, r, ref, beta, rho)
    assert sub == pytest.approx(Jstar - Jpi, abs=1e-12)
    assert sub > 0
    assert kl_to_optimal(pi, r, ref, beta, rho) == pytest.approx(naive.kl(pi.logp, star, rho), abs=1e-12)
    opt = soft_optimal(r, ref, beta).policy
    assert abs(suboptimality(opt, r, ref, beta, rho)) < 1e-12
    assert kl_to_reference(pi, ref, rho) == pytest.approx(naive.kl(pi.logp, ref.logp, rho), abs=1e-13)
    ev = evaluate(pi, r, ref, beta, rho)
    assert set(ev) == {"suboptimality", "kl_to_optimal", "kl_to_reference", "expected_reward", "win_rate"}
    assert ev["suboptimality"] == pytest.approx(Jstar - Jpi, abs=1e-12)
    assert ev["kl_to_optimal"] == pytest.approx(naive.kl(pi.logp, star, rho), abs=1e-12)
    assert ev["kl_to_reference"] == pytest.approx(naive.kl(pi.logp, ref.logp, rho), abs=1e-13)
    assert ev["expected_reward"] == pytest.approx(float(rho @ (np.exp(pi.logp) * r).sum(1)), abs=1e-13)
    assert ev["expected_reward"] == expected_reward(pi, r, rho)
    assert ev["win_rate"] == pytest.approx(naive.win_rate(pi.logp, ref.logp, r, rho), abs=1e-13)


def test_suboptimality_zero_weight_prompt_off_support():
    # prompt 1 has weight 0 and pi leaves pi_ref's (hence pi*'s) support there: skipped, not NaN
    sp = TreeSpace(2, 2, 1)
    ref = Policy.from_probs(sp, [[0.5, 0.5], [1.0, 0.0]])
    pi = uniform_policy(sp)
    r = np.array([[1.0, 0.0], [0.0, 0.0]])
    rho = [1.0, 0.0]
    star = naive.soft_optimal_closed_form(r, ref.logp, 1.0)
    want = naive.J_beta(star, r, ref.logp, 1.0, rho) - naive.J_beta(pi.logp, r, ref.logp, 1.0, rho)
    assert suboptimality(pi, r, ref, 1.0, rho) == pytest.approx(want, abs=1e-13)
    assert suboptimality(pi, r, ref, 1.0) == np.inf
