"""The kernels behind the fast finite-class sweep, against libm, plain numpy and the brute-force
references of ``tests/naive.py``: the vectorisable exp and log-sigmoid (whole float range), the
orientation-paired stream likelihood, the cached RL parts of a finite class, and the
distractor generator — each also bitwise identical at 1 and 2 numba threads."""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import naive
from genver import _kernels
from genver.classes import FinitePolicyClass, random_reward_class
from genver.estimators.mle_paths import _stream
from genver.policy import Policy, logsumexp_rows, random_policy
from genver.preferences import sample_preferences
from genver.runcache import RunCache
from genver.softrl import J_beta_arrays, kl_rows
from genver.spaces import TreeSpace


def _libm_log_sigmoid(z):
    return np.array([naive.log_sigmoid(v) if v == v else math.nan for v in z])


def _float_range():
    """Both signs of: 0, subnormals, 1e-300 … 1e308 (log-spaced), a dense grid on [−800, 800],
    the exp underflow edge, ±∞ and NaN."""
    mags = np.concatenate([[0.0, 5e-324, 1e-310, 2.2250738585072014e-308], np.logspace(-300, 308, 4001),
                           np.linspace(0, 800, 160001), np.linspace(700, 760, 6001), [np.inf]])
    return np.concatenate([mags, -mags, [np.nan]])


def _threads(fn):
    """``fn()`` at 1 and 2 numba threads (where the machine allows 2)."""
    old = numba.get_num_threads()
    outs = []
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            outs.append(fn())
    finally:
        numba.set_num_threads(old)
    return outs


def test_log_sigmoid_matches_libm_over_the_whole_float_range():
    z = _float_range()
    got = np.empty_like(z)
    _kernels.log_sigmoid_array(z, got)
    want = _libm_log_sigmoid(z)
    assert np.isnan(got[-1]) and np.isnan(want[-1])
    g, w = got[:-1], want[:-1]
    normal = (np.abs(w) >= 1e-290) & np.isfinite(w)  # below 1e-290, e^{−|z|} is subnormal: compare absolutely
    rel = np.abs(g[normal] - w[normal]) / np.abs(w[normal])
    assert rel.max() <= 1e-13, (rel.max(), z[:-1][normal][np.argmax(rel)])
    assert rel.max() <= 2e-15  # measured 1e-15: a few ulp, not just inside the requirement
    tiny = np.abs(w) < 1e-290
    assert np.abs(g[tiny] - w[tiny]).max() <= 1e-300
    assert got[z == np.inf].tolist() == [0.0] and got[z == -np.inf].tolist() == [-np.inf]
    # a few exact anchors
    _kernels.log_sigmoid_array(np.array([0.0, 800.0, -800.0]), got[:3])
    assert got[0] == pytest.approx(-math.log(2.0), rel=1e-15) and got[1] == 0.0 and got[2] == -800.0


def test_exp_block_matches_libm():
    x = np.concatenate([-np.logspace(-300, math.log10(745.0), 4001), np.linspace(-760, 709, 300001),
                        np.logspace(-300, math.log10(709.0), 2001), [0.0, -0.0, -np.inf, np.nan]])
    out = np.empty_like(x)
    _kernels.exp_block(x, out, np.empty(x.size, np.int64), np.empty(x.size, np.int64))
    want = np.array([math.exp(v) if v == v else math.nan for v in x])
    assert np.isnan(out[-1]) and out[-2] == 0.0
    ok = want >= 1e-290
    assert (np.abs(out[ok] - want[ok]) / want[ok]).max() <= 4e-16
    assert np.abs(out[~ok & ~np.isnan(want)] - want[~ok & ~np.isnan(want)]).max() <= 1e-300


def _stream_world(seed, with_zeros=False):
    rng = np.random.default_rng(seed)
    sp = TreeSpace(3, 2, 3)
    ref = random_policy(sp, rng)
    R = random_reward_class(sp, 3, rng, scale=0.8)
    Pi = FinitePolicyClass.soft_optimal_of(R, ref, 0.7).with_distractors(37, rng, ref=ref, beta=0.7, scale=0.8)
    lp = np.array(Pi.logp)
    if with_zeros:  # members that put no mass on some completions (log π = −∞)
        lp[5, 0, :4] = -np.inf
        lp[5, 0] -= logsumexp_rows(lp[5, 0])
        lp[6, 1, 2:] = -np.inf
        lp[6, 1] -= logsumexp_rows(lp[6, 1])
    d = sample_preferences(R.member(0), ref, 300, rng)
    return sp, ref, FinitePolicyClass(sp, lp), d


@pytest.mark.parametrize("with_zeros", [False, True])
def test_paired_stream_likelihood_equals_brute_force_per_prefix(with_zeros):
    """Every member at every prefix size = the brute-force sum over the prefix's pairs (libm
    log-sigmoids, ``math.fsum``), with the DPO offsets; pairs y⁺ = y⁻ included (the stream has
    them: completions are drawn with replacement); −∞ log-probs give −∞ or NaN exactly where
    the per-pair formula does."""
    sp, ref, Pi, d = _stream_world(3, with_zeros)
    beta = 0.7
    sizes = [1, 2, 5, 17, 60, 151, 300]
    pos, neg, segments, sz = _stream(d, sizes)
    assert (pos <= neg).all() and (pos // sp.T == neg // sp.T).all()
    assert (pos == neg).any()  # ties are in the stream
    lr = ref.logp.ravel()
    K = Pi.size
    scores = Pi.logp.reshape(K, -1)
    out = np.empty((len(sizes), K))
    _kernels.class_bt_loglik_stream(scores, pos, neg, -beta * (lr[pos] - lr[neg]), *segments, beta, out)
    f = beta * (Pi.logp - ref.logp[None])  # implicit rewards: z = f(y⁺) − f(y⁻)
    arr = d.as_array()
    for s, n in enumerate(sizes):
        for k in range(K):
            with np.errstate(invalid="ignore"):
                z = [f[k, x, a] - f[k, x, b] for x, a, b in arr[:n]]
            terms = [naive.log_sigmoid(v) if v == v else math.nan for v in z]
            if any(t != t for t in terms):
                assert np.isnan(out[s, k])
            elif -math.inf in terms:
                assert out[s, k] == -math.inf
            else:
                assert out[s, k] == pytest.approx(math.fsum(terms), rel=1e-13, abs=1e-13)
    if with_zeros:
        assert np.isnan(out[-1]).any() or np.isneginf(out[-1]).any()


def test_stream_segments_reproduce_the_prefix_counts():
    sp, ref, Pi, d = _stream_world(4)
    sizes = [3, 10, 99, 300]
    pos, neg, (idx, cnt, ptr), _ = _stream(d, sizes)
    U = pos.size
    T = sp.T
    acc = {}
    for s, n in enumerate(sizes):
        for e in range(ptr[s], ptr[s + 1]):
            u = idx[e] % U
            a, b = (pos[u], neg[u]) if idx[e] < U else (neg[u], pos[u])
            key = (a // T, a % T, b % T)
            acc[key] = acc.get(key, 0.0) + cnt[e]
        h = d.head(n).counts()
        want = {(int(x), int(p), int(q)): c for x, p, q, c in zip(h.x, h.y_pos, h.y_neg, h.count)}
        assert acc == want
    # a pair y⁺ = y⁻ is one unordered pair used in one orientation only
    diag = np.flatnonzero(pos == neg)
    assert not np.isin(idx, diag + U).any()


def test_stream_kernel_bitwise_identical_across_threads():
    sp, ref, Pi, d = _stream_world(5)
    pos, neg, segments, sizes = _stream(d, [4, 40, 300])
    lr = ref.logp.ravel()
    scores = Pi.logp.reshape(Pi.size, -1)
    off = -0.7 * (lr[pos] - lr[neg])

    def run():
        out = np.empty((sizes.size, Pi.size))
        _kernels.class_bt_loglik_stream(scores, pos, neg, off, *segments, 0.7, out)
        return out

    a, b = _threads(run)
    assert a.tobytes() == b.tobytes()


def test_finite_rl_parts_and_J_match_numpy_and_naive():
    rng = np.random.default_rng(6)
    sp = TreeSpace(3, 2, 3)
    ref_lp = np.array(random_policy(sp, rng).logp)
    ref_lp[2, :3] = -np.inf  # a reference with zeros: members with mass there have KL = +∞
    ref_lp[2] -= logsumexp_rows(ref_lp[2])
    ref = Policy(sp, ref_lp)
    members = [random_policy(sp, rng).logp for _ in range(70)]
    inside = np.array(random_policy(sp, rng).logp)
    inside[2, :3] = -np.inf
    inside[2] -= logsumexp_rows(inside[2])
    members += [inside, ref_lp]  # KL to ref finite, and exactly 0 (the rounding floor)
    cls = FinitePolicyClass(sp, np.stack(members))
    r = rng.normal(size=sp.shape)
    for rho in (np.array([0.2, 0.5, 0.3]), np.array([0.5, 0.5, 0.0])):
        got = cls.J_all(r, ref, 0.6, rho)
        want = J_beta_arrays(cls.logp, r, ref.logp, 0.6, rho)
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        fin = np.isfinite(want)
        np.testing.assert_allclose(got[fin], want[fin], rtol=1e-14, atol=1e-14)
        for k in (0, 70, 71):
            assert got[k] == pytest.approx(naive.J_beta(cls.logp[k], r, ref.logp, 0.6, rho), abs=1e-12)
    # π_ref itself (last rho: prompt 2 unweighted): KL = 0 exactly, J = E_{π_ref} r
    assert got[71] == pytest.approx(float((np.exp(ref_lp) * r).sum(axis=1)[:2] @ [0.5, 0.5]), rel=1e-15)

    def parts():
        probs = np.empty(cls.logp.shape)
        kl = np.empty(cls.logp.shape[:2])
        _kernels.finite_rl_parts(cls.logp, ref.logp, probs, kl)
        return probs, kl

    (p1, k1), (p2, k2) = _threads(parts)
    assert p1.tobytes() == p2.tobytes() and k1.tobytes() == k2.tobytes()
    np.testing.assert_allclose(p1, np.exp(cls.logp), rtol=4e-16, atol=0)
    want_kl = kl_rows(cls.logp, ref.logp)
    assert (k1[-1] == 0.0).all() and (want_kl[-1] == 0.0).all()  # π_ref itself: the floor gives exactly 0
    np.testing.assert_array_equal(np.isposinf(k1), np.isposinf(want_kl))
    np.testing.assert_allclose(k1[np.isfinite(want_kl)], want_kl[np.isfinite(want_kl)], rtol=1e-13, atol=1e-15)


def test_rl_step_reuses_the_reward_independent_parts():
    rng = np.random.default_rng(7)
    sp = TreeSpace(2, 2, 3)
    ref = random_policy(sp, rng)
    cls = FinitePolicyClass(sp, np.stack([random_policy(sp, rng).logp for _ in range(20)]))
    r1, r2 = rng.normal(size=sp.shape), rng.normal(size=sp.shape)
    a = cls.rl_argmax(r1, ref, 0.5)
    cached = cls._rl_cache[1]
    b = cls.rl_argmax(r2, ref, 0.5)
    assert cls._rl_cache[1] is cached  # same reference: not recomputed
    fresh = FinitePolicyClass(sp, cls.logp)
    assert (a.index, b.index) == (fresh.rl_argmax(r1, ref, 0.5).index,
                                  FinitePolicyClass(sp, cls.logp).rl_argmax(r2, ref, 0.5).index)
    other = random_policy(sp, rng)  # another reference: recomputed, and right
    c = cls.rl_argmax(r1, other, 0.5)
    J = [naive.J_beta(cls.logp[k], r1, other.logp, 0.5) for k in range(cls.size)]
    assert c.index == int(np.argmax(J)) and c.objective == pytest.approx(max(J), abs=1e-12)


@pytest.mark.parametrize("bitgen,size", [(np.random.PCG64, 2_000_003), (np.random.MT19937, 50_001),
                                          (np.random.Philox, 50_001), (np.random.SFC64, 50_001)])
def test_standard_normal_fill_is_numpys_draws_bit_for_bit(bitgen, size):
    """numba's ziggurat gives numpy's standard normals and leaves the generator where numpy
    would (2M draws reach the ziggurat's wedge and tail branches thousands of times)."""
    a = np.random.Generator(bitgen(np.random.SeedSequence([7, size])))
    b = np.random.Generator(bitgen(np.random.SeedSequence([7, size])))
    out = np.empty(size)
    _kernels.standard_normal_fill(a, out)
    want = b.standard_normal(size)
    assert out.tobytes() == want.tobytes()
    assert np.abs(want).max() > 3.66  # the tail branch (beyond the ziggurat's r = 3.654) was exercised
    assert a.random(64).tobytes() == b.random(64).tobytes()  # the generators were left in the same state


def test_distractors_are_the_closed_form_soft_optimal_policies():
    rng_a, rng_b = np.random.default_rng(8), np.random.default_rng(8)
    sp = TreeSpace(3, 3, 2)
    ref_lp = np.array(random_policy(sp, np.random.default_rng(1)).logp)
    ref_lp[1, :2] = -np.inf
    ref_lp[1] -= logsumexp_rows(ref_lp[1])
    ref = Policy(sp, ref_lp)
    base = FinitePolicyClass(sp, ref_lp[None])
    D = base.with_distractors(300, rng_a, ref=ref, beta=0.4, scale=1.3)
    z = rng_b.standard_normal((300,) + sp.shape)  # the same draws
    s = ref_lp[None] + 1.3 * z / 0.4
    want = s - logsumexp_rows(s)[..., None]
    assert D.logp[0].tobytes() == ref_lp.tobytes() and not D.logp.flags.writeable
    np.testing.assert_array_equal(np.isneginf(D.logp[1:]), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(D.logp[1:][fin], want[fin], rtol=0, atol=1e-13)
    np.testing.assert_allclose(logsumexp_rows(D.logp), 0.0, atol=1e-13)
    for k in (1, 150, 300):
        np.testing.assert_allclose(D.logp[k][fin[k - 1]], naive.soft_optimal_closed_form(1.3 * z[k - 1], ref_lp,
                                                                                         0.4)[fin[k - 1]],
                                   atol=1e-12)

    def gen():
        out = np.empty((300,) + sp.shape)
        _kernels.soft_optimal_tables(ref.logp, z, 1.3, 0.4, out)
        return out

    a, b = _threads(gen)
    assert a.tobytes() == b.tobytes() == D.logp[1:].tobytes()


@pytest.mark.parametrize("shape", [(4, 2, 4), (3, 3, 3), (2, 8, 3), (5, 4, 2)])
def test_serial_and_parallel_drivers_are_bitwise_identical(shape):
    """Small problems take the serial driver, large ones the parallel one: the same numbers."""
    rng = np.random.default_rng(sum(shape))
    sp = TreeSpace(*shape)
    ref = random_policy(sp, rng)
    r, r2 = rng.normal(size=sp.shape), rng.normal(size=sp.shape)
    outs = []
    for f in (_kernels._backward_induction_ser, _kernels._backward_induction_par):
        v, lpi, lp = np.empty((sp.P, sp.n_internal)), np.empty((sp.P, sp.n_internal, sp.V)), np.empty(sp.shape)
        f(r, ref.cond, 0.7, sp.V, sp.H, v, lpi, lp)
        outs.append(v.tobytes() + lpi.tobytes() + lp.tobytes())
    assert outs[0] == outs[1]
    mu = np.exp(ref.logp)
    a, b = np.empty(sp.P), np.empty(sp.P)
    one_per_group = np.arange(0, sp.P * sp.T + 1, sp.T)  # every completion its own group
    _kernels._grouped_bt_loglik_ser(r.ravel(), r2.ravel(), mu.ravel(), one_per_group, a)
    _kernels._grouped_bt_loglik_par(r.ravel(), r2.ravel(), mu.ravel(), one_per_group, b)
    assert a.tobytes() == b.tobytes()
    assert a @ np.full(sp.P, 1 / sp.P) == pytest.approx(naive.expected_bt_loglik(r, r2, ref.logp), rel=1e-12)
    n_a, n_b = rng.integers(1, 30, sp.P), rng.integers(1, 30, sp.P)
    sa, sb = np.concatenate([[0], np.cumsum(n_a)]), np.concatenate([[0], np.cumsum(n_b)])
    va, ma, vb, mb = rng.normal(size=sa[-1]), rng.random(sa[-1]), rng.normal(size=sb[-1]), rng.random(sb[-1])
    a, b = np.empty(sp.P), np.empty(sp.P)
    _kernels._grouped_win_rate_ser(va, ma, vb, mb, sa, sb, a)
    _kernels._grouped_win_rate_par(va, ma, vb, mb, sa, sb, b)
    assert a.tobytes() == b.tobytes()
    want = [sum(ma[i] * mb[j] / (1 + math.exp(vb[j] - va[i])) for i in range(sa[p], sa[p + 1])
                for j in range(sb[p], sb[p + 1])) for p in range(sp.P)]
    np.testing.assert_allclose(a, want, rtol=1e-13)
    K, M = 11, 37  # members not a multiple of the group of 4
    scores = rng.normal(size=(K, sp.P * sp.T))
    pos, neg = rng.integers(0, sp.P * sp.T, M), rng.integers(0, sp.P * sp.T, M)
    off, cnt = rng.normal(size=M), rng.integers(1, 5, M).astype(float)
    a, b = np.empty(K), np.empty(K)
    _kernels._class_bt_ser(scores, pos, neg, off, cnt, 0.8, a)
    _kernels._class_bt_par(scores, pos, neg, off, cnt, 0.8, b)
    assert a.tobytes() == b.tobytes()
    want = [sum(c * -np.logaddexp(0.0, -(0.8 * (f[i] - f[j]) + o)) for i, j, o, c in zip(pos, neg, off,
                                                                                         cnt)) for f in scores]
    np.testing.assert_allclose(a, want, rtol=1e-13)


def test_serial_kernels_switch_sends_every_dispatcher_to_its_serial_driver(monkeypatch):
    """Inside ``serial_kernels()`` no parallel driver runs, however large the problem (numba's
    workqueue layer aborts on parallel regions started from two threads); outside, large
    problems go parallel again."""
    calls = []
    for name in ("_backward_induction_par", "_stream_par", "_soft_optimal_par", "_class_bt_par",
                 "_grouped_bt_loglik_par", "_grouped_win_rate_par"):
        real = getattr(_kernels, name)
        monkeypatch.setattr(_kernels, name, lambda *a, _n=name, _f=real: calls.append(_n) or _f(*a))
    sp = TreeSpace(4, 4, 5)  # P·T = 4,096 entries per member
    ref = random_policy(sp, np.random.default_rng(0))
    base = FinitePolicyClass(sp, ref.logp[None])

    def work():
        base.with_distractors(20, np.random.default_rng(1), ref=ref)  # 20·4,096 ≥ _PARALLEL_MIN_WORK
        scores = np.random.default_rng(2).normal(size=(64, sp.P * sp.T))
        pos = np.arange(600, dtype=np.int64)
        _kernels.class_bt_loglik(scores, pos, pos + 1, np.zeros(600), np.ones(600), 1.0, np.empty(64))

    assert _kernels._parallel(10**9)
    with _kernels.serial_kernels():
        assert not _kernels._parallel(10**9)
        work()
    assert calls == [] and _kernels._parallel(10**9)
    work()
    assert calls == ["_soft_optimal_par", "_class_bt_par"]


def test_finite_gap_memo_returns_the_same_instance_and_generator_state():
    from genver.experiments.generators import _finite_gap
    from genver.experiments.registry import GENERATORS
    fn, schema = GENERATORS["finite_gap"].fn, GENERATORS["finite_gap"].params
    p = {k: v for k, (_, v) in schema.items() if v is not None}
    p.update(P=3, V=2, H=3, n_distractors=50, data_prompts=2)
    fresh_rng = np.random.default_rng(123)
    want = _finite_gap(p, fresh_rng)
    insts = []
    cache = RunCache()
    for _ in range(3):  # a miss, then hits
        rng = np.random.default_rng(123)
        insts.append(fn(p, rng, cache=cache))
        assert rng.bit_generator.state == fresh_rng.bit_generator.state
    for inst in insts:
        assert inst.policy_class.logp.tobytes() == want.policy_class.logp.tobytes()
        assert inst.reward_true.tobytes() == want.reward_true.tobytes()
        assert inst.ref.logp.tobytes() == want.ref.logp.tobytes()
        np.testing.assert_array_equal(inst.data_prompt_weights, [0.5, 0.5, 0.0])
    assert insts[1] is not insts[2] and insts[1].extra is not insts[2].extra
    insts[1].data_prompt_weights = None  # a caller's change stays in its own copy
    assert insts[2].data_prompt_weights is not None
    other = dict(p, n_distractors=51)
    assert fn(other, np.random.default_rng(123), cache=cache).policy_class.size == p["K_R"] + 51


def test_stream_memo_never_returns_a_stale_stream():
    sp, ref, Pi, d = _stream_world(9)
    sizes = [5, 50, 300]
    cache = RunCache()
    a = _stream(d, sizes, cache)
    assert _stream(d, sizes, cache) is a  # the unit's second path reuses it
    i = int(np.flatnonzero(d.y_pos[:300] != d.y_neg[:300])[0])
    d.y_pos[i], d.y_neg[i] = d.y_neg[i], d.y_pos[i]  # the same object, changed in place
    b = _stream(d, sizes, cache)
    assert b is not a
    c = _stream(d, [5, 60, 300], cache)
    assert not np.array_equal(c[2][2], b[2][2]) or not np.array_equal(c[2][0], b[2][0])
