"""Soft RL and the exact metrics at T = 2**20 completions per prompt (closed forms of an additive
world), the blocked backward induction and the fused metric kernels against tests/naive.py on
small trees, and their independence of blocking, driver and thread count."""
import math

import numba
import numpy as np
import pytest
from conftest import assert_logp_equal, naive_cond_array, random_logp

import naive
from genver import _kernels
from genver.metrics import kl_to_reference, reward_levels, suboptimality, win_rate
from genver.policy import Policy, random_policy
from genver.softrl import J_beta, expected_reward, kl, kl_rows, soft_optimal
from genver.spaces import TreeSpace


def _digits(V, H):
    """tokens a_h of every completion y (H, T): y = Σ_h a_h V**(H-1-h)."""
    y = np.arange(V**H)
    return np.stack([(y // V ** (H - 1 - h)) % V for h in range(H)])


def test_additive_world_at_a_million_completions_matches_closed_forms():
    V, H, beta = 2, 20, 0.7
    sp = TreeSpace(1, V, H)
    rng = np.random.default_rng(20)
    ref_pos = np.log(rng.dirichlet(np.ones(V), size=H))  # (H, V): π_ref,h(a), whatever the prefix
    w = rng.integers(0, 2, size=(H, V)).astype(float)  # integer weights: few distinct rewards
    w[:, 0] = 0.0  # r(y) = number of positions h with a_h = 1 and w[h, 1] = 1
    cond = np.concatenate([np.broadcast_to(ref_pos[h], (V**h, V)) for h in range(H)])[None]
    ref = Policy.from_cond(sp, cond)
    dig = _digits(V, H)
    r = w[np.arange(H)[:, None], dig].sum(axis=0)[None]
    opt_pos, log_Z = naive.factorised_soft_optimal(ref_pos, w, beta)

    so = soft_optimal(r, ref, beta)
    np.testing.assert_allclose(so.log_Z, [log_Z], rtol=1e-13)
    for h in (0, 7, H - 1):  # every node's conditional is the position's
        np.testing.assert_allclose(so.policy.token_logp(h)[0], np.broadcast_to(opt_pos[h], (V**h, V)), atol=1e-12)
    want_logp = opt_pos[np.arange(H)[:, None], dig].sum(axis=0)
    np.testing.assert_allclose(so.policy.logp[0], want_logp, atol=1e-11)

    opt = so.policy
    assert J_beta(opt, r, ref, beta) == pytest.approx(beta * log_Z, rel=1e-12)
    assert kl(opt, ref) == pytest.approx(naive.factorised_kl(opt_pos, ref_pos), rel=1e-11)
    assert kl_to_reference(ref, opt) == pytest.approx(naive.factorised_kl(ref_pos, opt_pos), rel=1e-11)
    assert suboptimality(ref, r, ref, beta, optimal=opt) == pytest.approx(
        beta * naive.factorised_kl(ref_pos, opt_pos), rel=1e-11)
    assert suboptimality(opt, r, ref, beta, optimal=opt) == 0.0  # the rounding floor: exactly 0
    want_er = float((np.exp(opt_pos) * w).sum())
    assert expected_reward(opt, r) == pytest.approx(want_er, rel=1e-12)
    # win rate: r = count of rewarded positions holding token 1 (Poisson-binomial under each policy)
    rewarded = w[:, 1] == 1.0
    pa = naive.factorised_count_pmf(opt_pos[rewarded], 1)
    pb = naive.factorised_count_pmf(ref_pos[rewarded], 1)
    k = np.arange(pa.size)
    want_wr = float(pa @ (1.0 / (1.0 + np.exp(-(k[:, None] - k[None, :])))) @ pb)
    assert win_rate(opt, r, ref, levels=reward_levels(r, ref)) == pytest.approx(want_wr, rel=1e-12)


@pytest.mark.parametrize("P,V,H", [(2, 2, 5), (2, 3, 4), (1, 4, 3), (3, 2, 7), (1, 8, 3), (2, 16, 2)])
def test_blocked_backward_induction_matches_naive_and_is_blocking_independent(P, V, H, monkeypatch):
    """Subtrees of 1, V, V², … leaves (several rounds, forward and backward) give the same bits
    as one block, and match the brute-force recursion with zero-probability reference tokens and
    tied rewards."""
    rng = np.random.default_rng(10 * V + H)
    sp = TreeSpace(P, V, H)
    ref = Policy(sp, random_logp(rng, sp, zero_frac=0.3, zero_prefix=True))
    r = np.round(rng.normal(size=sp.shape), 1)  # ties
    want = naive.soft_optimal(r, ref.logp, 0.6, V, H)
    outs = []
    for leaves in (V, V**2, 4096):
        monkeypatch.setattr(_kernels, "_BI_LEAVES", leaves)
        so = soft_optimal(r, ref, 0.6)
        outs.append((so.values, so.policy.cond, so.policy.logp))
        assert_logp_equal(so.policy.logp, want["logp"], atol=1e-12)
        np.testing.assert_allclose(so.log_Z, want["log_Z"], rtol=1e-13)
    for a, b in zip(outs[0], outs[-1]):
        assert a.tobytes() == b.tobytes()
    for a, b in zip(outs[1], outs[-1]):
        assert a.tobytes() == b.tobytes()


def test_log_block_and_exp_block_against_libm():
    x = np.concatenate([[0.0, 1.0, 2.0, 3.0, 16.0, 256.0, 2.0**1000],
                        1.0 + 255.0 * np.random.default_rng(1).random(10_000)])
    out = np.empty_like(x)
    _kernels.log_block(x, out, np.empty(x.size, np.int64))
    assert out[0] == -np.inf and out[1] == 0.0
    with np.errstate(divide="ignore"):
        want = np.log(x)
    np.testing.assert_allclose(out[1:], want[1:], rtol=0, atol=4.5e-16 * (1 + np.abs(want[1:])).max())
    assert np.max(np.abs(out[1:] - want[1:]) / (1 + np.abs(want[1:]))) <= 2e-16


@pytest.mark.parametrize("T", [1, 7, 8, 100, 128, 129, 1000, 5000])
def test_kl_rows_fused_matches_brute_force_and_conventions(T):
    rng = np.random.default_rng(T)
    lp = rng.normal(size=(4, T))
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    lq = rng.normal(size=(4, T))
    lq -= np.log(np.exp(lq).sum(1, keepdims=True))
    if T > 2:
        lp[1, ::3] = -np.inf  # p has zeros: 0·log 0 = 0
        lq[2, 1::2] = -np.inf  # q has zeros where p has mass: +∞
        lp[3, ::2] = -np.inf  # and both
        lq[3, ::2] = -np.inf
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    lq -= np.log(np.exp(lq).sum(1, keepdims=True))
    got = kl_rows(lp, lq)
    want = naive.kl_per_prompt(lp, lq)
    for g, wv in zip(got, want):
        if np.isinf(wv):
            assert g == np.inf
        else:
            assert g == pytest.approx(wv, rel=1e-13, abs=1e-15)
    np.testing.assert_array_equal(kl_rows(lp, lp), 0.0)  # rounding floor
    # broadcasting leading axes, as the finite-class code uses it
    stacked = kl_rows(np.stack([lp, lq]), lq)
    assert stacked.shape == (2, 4)
    assert stacked.tobytes() == np.stack([got, kl_rows(lq, lq)]).tobytes()
    # a deliberately broken reference (plain exp sum without the support rule) disagrees
    if T > 2:
        with np.errstate(invalid="ignore"):
            broken = (np.exp(lp) * (lp - lq)).sum(1)
        assert not np.isfinite(broken[1]) and np.isfinite(got[1])


def test_policy_row_stats_identical_for_any_driver_and_thread_count():
    rng = np.random.default_rng(3)
    sp = TreeSpace(16, 2, 12)  # P·T = 65,536: the parallel driver
    pol, ref = random_policy(sp, rng), random_policy(sp, rng)
    r = rng.normal(size=sp.shape)
    old = numba.get_num_threads()
    outs = []
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            outs.append((kl(pol, ref, per_prompt=True), J_beta(pol, r, ref, 0.5, per_prompt=True)))
    finally:
        numba.set_num_threads(old)
    with _kernels.serial_kernels():
        outs.append((kl(pol, ref, per_prompt=True), J_beta(pol, r, ref, 0.5, per_prompt=True)))
    for o in outs[1:]:
        assert o[0].tobytes() == outs[0][0].tobytes() and o[1].tobytes() == outs[0][1].tobytes()
    want = naive.J_beta_per_prompt(pol.logp, r, ref.logp, 0.5)
    np.testing.assert_allclose(outs[0][1], want, rtol=1e-12)
    assert math.isfinite(float(outs[0][0].sum()))



def test_policy_cond_kernel_at_a_million_completions_and_for_any_driver():
    """A policy that factorises over positions, π(y) = Π_h p_h(a_h), has π(a|s) = p_h(a) at every
    node of depth h (closed form); at T = 2**20 the kernel's conditionals are exactly that (to
    rounding), and on a small tree with unreachable prefixes the serial and parallel drivers give
    the same bits as each other and the naive conditionals to 1e-12."""
    V, H = 2, 20
    sp = TreeSpace(1, V, H)
    rng = np.random.default_rng(11)
    p = rng.dirichlet(np.ones(V), size=H)  # p_h(a)
    logp = np.log(p)[np.arange(H)[:, None], _digits(V, H)].sum(0)[None]
    cond = Policy(sp, logp).cond
    for h in range(H):
        off = sp.offset(h)
        np.testing.assert_allclose(cond[0, off : off + V**h], np.broadcast_to(np.log(p[h]), (V**h, V)),
                                   rtol=0, atol=1e-12)
    small = TreeSpace(3, 3, 4)
    lp = random_logp(rng, small, zero_frac=0.3, zero_prefix=True)
    outs = []
    for k in (_kernels._token_cond_ser, _kernels._token_cond_par):
        out = np.empty((small.P, small.n_internal, small.V))
        k(lp, small.V, small.H, math.log(small.V), out)
        outs.append(out)
    assert outs[0].tobytes() == outs[1].tobytes()
    naive_c = naive.token_conditionals(lp, small.V, small.H)
    for (x, prefix), want in naive_c.items():
        h = len(prefix)
        j = sum(a * small.V ** (h - 1 - i) for i, a in enumerate(prefix))
        assert_logp_equal(outs[0][x, small.offset(h) + j], want, atol=1e-12)


def test_level_masses_block_by_block_are_bitwise_bincount():
    """The win rate's level masses, summed over blocks of ``_MASS_BLOCK`` entries, are
    ``np.bincount`` of the whole probability array bit for bit (rows longer than a block)."""
    from genver import metrics as M
    sp = TreeSpace(2, 2, 17)  # P·T = 2**18: four blocks
    rng = np.random.default_rng(4)
    ref, pol = random_policy(sp, rng), Policy(sp, random_logp(rng, sp, zero_frac=0.2))
    r = np.round(rng.normal(size=sp.shape), 1)
    lv = reward_levels(r, ref)
    assert sp.P * sp.T > 2 * M._MASS_BLOCK
    assert lv.mass_of(pol).tobytes() == lv.mass(pol.probs).tobytes()
    assert lv.ref_mass.tobytes() == lv.mass(ref.probs).tobytes()
    for x in range(sp.P):  # the levels are np.unique's (as numbers: which of 0.0 and -0.0 names
        u, inv = np.unique(r[x], return_inverse=True)  # their level depends on the sort)
        s = lv.starts[x]
        np.testing.assert_array_equal(lv.values[s : lv.starts[x + 1]], u)
        np.testing.assert_array_equal(lv.level[x * sp.T : (x + 1) * sp.T], inv + s)


@pytest.mark.parametrize("n_levels", [1, 2, 3, 17, 1000])
def test_level_index_is_searchsorted(n_levels):
    """The branch-free binary search of the reward levels: ``np.searchsorted`` on every entry
    (lengths not a multiple of its block of 16; one level; repeated values)."""
    rng = np.random.default_rng(n_levels)
    u = np.unique(rng.normal(size=n_levels))
    for size in (1, 15, 16, 33, 4099):
        row = u[rng.integers(0, u.size, size)]
        out = np.empty(size, dtype=np.int64)
        _kernels.level_index(u, row, 7, out)
        np.testing.assert_array_equal(out, np.searchsorted(u, row) + 7)


# -- the level passes of backward induction: V = 2 (pairs), 8 ≤ V ≤ 16 (node-major rows), other V
# (token-major blocks), each against the brute-force recursion and the additive closed form


@pytest.mark.parametrize("P,V,H", [(2, 2, 6), (1, 3, 4), (2, 5, 3), (1, 8, 3), (2, 16, 2), (1, 17, 2)])
def test_every_level_path_matches_naive_values_conditionals_and_sequences(P, V, H):
    """Zero-probability reference tokens, whole unreachable prefixes (uniform π*) and tied rewards."""
    rng = np.random.default_rng(100 * V + H)
    sp = TreeSpace(P, V, H)
    ref = Policy(sp, random_logp(rng, sp, zero_frac=0.3, zero_prefix=True))
    r = np.round(rng.normal(size=sp.shape), 1)
    beta = 0.45
    so = soft_optimal(r, ref, beta)
    nv = naive.soft_optimal(r, ref.logp, beta, V, H)
    for h in range(H):
        want = np.array([[nv["V"][(x, s)] for s in naive._all_prefixes(V, H, h)] for x in range(P)])
        np.testing.assert_allclose(so.V(h), want, rtol=1e-13, atol=1e-13)
    assert_logp_equal(so.policy.cond, naive_cond_array(sp, nv["cond"]), atol=1e-12)
    assert_logp_equal(so.policy.logp, nv["logp"], atol=1e-12)
    assert np.isneginf(so.policy.cond).any()  # the zero-probability tokens were exercised


@pytest.mark.parametrize("P,V,H", [(1, 16, 4), (1, 8, 5), (2, 3, 9), (1, 2, 16), (2, 4, 7)])
def test_every_level_path_matches_the_additive_closed_form_at_size(P, V, H):
    """``r(y) = Σ_h w[h, a_h]`` under a position-wise reference: π* factorises (closed form in
    tests/naive.py); sizes large enough for several subtree rounds and the parallel driver."""
    sp = TreeSpace(P, V, H)
    rng = np.random.default_rng(V + 10 * H)
    ref_pos = np.log(rng.dirichlet(np.ones(V), size=H))
    w = rng.normal(size=(H, V))
    cond = np.concatenate([np.broadcast_to(ref_pos[h], (V**h, V)) for h in range(H)])
    ref = Policy.from_cond(sp, np.broadcast_to(cond, (P,) + cond.shape))
    dig = _digits(V, H)
    r = np.broadcast_to(w[np.arange(H)[:, None], dig].sum(axis=0), sp.shape)
    opt_pos, log_Z = naive.factorised_soft_optimal(ref_pos, w, 0.8)
    so = soft_optimal(r, ref, 0.8)
    np.testing.assert_allclose(so.log_Z, log_Z, rtol=1e-13)
    for h in range(H):
        np.testing.assert_allclose(so.policy.token_logp(h), np.broadcast_to(opt_pos[h], (P, V**h, V)), atol=1e-12)
    want_logp = opt_pos[np.arange(H)[:, None], dig].sum(axis=0)
    np.testing.assert_allclose(so.policy.logp, np.broadcast_to(want_logp, sp.shape), atol=1e-11)


@pytest.mark.parametrize("V,H,leaves", [(2, 11, 8), (3, 6, 9), (16, 3, 16), (9, 3, 9)])
def test_parallel_driver_is_bitwise_the_serial_one_for_any_thread_count(V, H, leaves):
    """Each round's subtrees are the parallel driver's items (several per prompt here): the same
    bits as the serial driver with 1 and 2 threads."""
    rng = np.random.default_rng(V * H)
    sp = TreeSpace(2, V, H)
    ref = Policy(sp, random_logp(rng, sp, zero_frac=0.2, zero_prefix=True))
    r = rng.normal(size=sp.shape)
    rc = ref.cond

    def run(driver):
        out = (np.empty((sp.P, sp.n_internal)), np.empty((sp.P, sp.n_internal, V)), np.empty(sp.shape))
        driver(r, rc, 0.3, V, H, *out, leaves)
        return b"".join(a.tobytes() for a in out)

    want = run(_kernels._backward_induction_ser)
    old = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            assert run(_kernels._backward_induction_par) == want
    finally:
        numba.set_num_threads(old)
    assert_logp_equal(np.frombuffer(want[-8 * sp.P * sp.T:]).reshape(sp.shape),
                      naive.soft_optimal_closed_form(r, ref.logp, 0.3), atol=1e-10)


def test_inlined_exp_and_log_give_the_bits_of_exp_block_and_log_block():
    """The fused level passes evaluate e^x and log x entry by entry (:func:`_kernels._exp_poly`,
    :func:`_kernels._log_poly`): the operations, hence the bits, of the block versions, edge
    cases included (−∞, the −750 clamp, subnormal results, NaN, log 0)."""
    rng = np.random.default_rng(3)
    x = np.concatenate([[0.0, -0.0, -np.inf, -750.0, -800.0, -745.0, -740.0, -708.5, 700.0, np.nan],
                        rng.uniform(-760.0, 0.0, 5000), rng.uniform(-1.0, 1.0, 2000)])
    want = np.empty_like(x)
    _kernels.exp_block(x, want, np.empty(x.size, np.int64), np.empty(x.size, np.int64))
    got = np.array([_kernels._exp_poly(v) for v in x])
    assert got.tobytes() == want.tobytes()
    assert got[0] == 1.0 and got[2] == 0.0 and np.isnan(got[9])  # e^0 = 1 exactly: the pair pass relies on it
    y = np.concatenate([[0.0, 1.0, 2.0, 16.0, 2.0**1000], 1.0 + 255.0 * rng.random(5000), 1.0 + rng.random(2000)])
    want = np.empty_like(y)
    _kernels.log_block(y, want, np.empty(y.size, np.int64))
    got = np.array([_kernels._log_poly(v) for v in y])
    assert got.tobytes() == want.tobytes()
    assert got[0] == -np.inf and got[1] == 0.0


def test_add_rounded_keeps_the_product_rounded_where_a_plain_add_fuses_it():
    """The in-order sums of the level passes add each exponential after rounding it (as a sum
    over a stored array does): ``_add_rounded(s, a·b)`` is ``s + RN(a·b)``, while the same add
    compiled with the package's ``contract`` flag becomes one FMA, with other bits."""
    rounded = numba.njit(fastmath=_kernels.FASTMATH_POLY)(lambda s, a, b: _kernels._add_rounded(s, a * b))
    fused = numba.njit(fastmath=_kernels.FASTMATH_POLY)(lambda s, a, b: s + a * b)
    rng = np.random.default_rng(4)
    s, a, b = rng.random(2000), rng.random(2000), rng.random(2000)
    want = np.array([float(si) + float(ai) * float(bi) for si, ai, bi in zip(s, a, b)])  # Python: product rounded
    assert np.array([rounded(*v) for v in zip(s, a, b)]).tobytes() == want.tobytes()
    assert np.any(np.array([fused(*v) for v in zip(s, a, b)]) != want)  # the check can fail
