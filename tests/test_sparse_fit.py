"""The sparse path of the tabular Newton solver (``genver._solve.LaplacianRidge``): connected
components of the pair graph, small ones dense, large ones by conjugate gradients.

References are independent of genver's solver code: the matrix ``L_w + λI`` built by a loop
and solved densely (``naive.laplacian_ridge_matrix``), the tabular reward MLE by brute dense
Newton over all ``P·T`` coordinates (``naive.tabular_reward_mle_dense``), DPO's optimum from
it through Theorem 2.2 (``π = softmax(log π_ref + r̂/β)`` for the tabular pair with one ridge),
and the closed form of untouched completions (at the prompt's mean). Each comparison runs with
the automatic threshold and with it forced both ways.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import naive
from genver import _solve
from genver._solve import LaplacianRidge, laplacian_dense_max
from genver.classes import TabularPolicyClass, TabularRewardClass
from genver.estimators import dpo, ipo, reward_mle
from genver.policy import random_policy
from genver.preferences import PairCounts, sample_preferences
from genver.spaces import TreeSpace

BETA = 0.7


def random_pair_graph(seed):
    """Blocks (prompts) of 1..60 coordinates; inside each block a few clusters (disconnected
    components), repeated and reversed pairs, self-pairs; one block without pairs and one
    whose only pair is a self-pair (a single touched coordinate)."""
    rng = np.random.default_rng(seed)
    sizes = [60, 1, 37, 5, 44, 2, 12]
    block = np.concatenate([np.full(m, k) for k, m in enumerate(sizes)])
    rng.shuffle(block)
    a, b = [], []
    for k, m in enumerate(sizes):
        members = np.flatnonzero(block == k)
        if k == 1:
            a.append(members[0])  # the one-coordinate block: a self-pair only
            b.append(members[0])
            continue
        if k == 5:  # no pairs at all
            continue
        cuts = np.sort(rng.choice(np.arange(1, m), size=min(3, m - 1), replace=False))
        for cluster in np.split(members, cuts):
            for _ in range(2 * cluster.size):
                a.append(rng.choice(cluster))
                b.append(rng.choice(cluster))
    a, b = np.array(a), np.array(b)
    a, b = np.concatenate([a, a[:9], b[:4]]), np.concatenate([b, b[:9], a[:4]])  # repeats, reversed
    return block, a, b, rng


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dense_max", [math.inf, None, 8, 0])
def test_sparse_and_dense_solvers_agree(seed, dense_max):
    block, a, b, rng = random_pair_graph(seed)
    n = block.size
    lam = [0.37, 1e-2, 1e-3][seed]
    w = rng.uniform(0.0, 3.0, a.size) * (rng.random(a.size) < 0.9)  # some zero weights
    rhs = rng.standard_normal(n)
    want = np.linalg.solve(naive.laplacian_ridge_matrix(n, a, b, w, lam), rhs)
    lap = LaplacianRidge(block, a, b, dense_max=dense_max)
    u = lap.solve(w, lam, rhs)
    np.testing.assert_allclose(u, want, rtol=0, atol=1e-10 * np.abs(want).max())
    # which path ran: every block here has at most 60 coordinates (≤ DENSE_MAX by default)
    on_cg = lap._cg is not None
    assert on_cg == (dense_max is not None and dense_max < 60)
    if on_cg:
        assert lap.last_cg[0] >= 1 and lap.last_cg[1] <= _solve.CG_RTOL


def test_components_above_threshold_never_dense():
    """No dense batch is wider than the threshold; the components of a large block that are
    small go dense, the large ones to conjugate gradients; the coordinates are covered once."""
    block, a, b, _ = random_pair_graph(3)
    for dm in (0, 5, 20):
        lap = LaplacianRidge(block, a, b, dense_max=dm)
        widths = [m for _, m, *_ in lap._batches]
        assert all(m <= dm for m in widths)
        covered = np.concatenate([c for _, _, c, *_ in lap._batches] + [lap._cg["coords"]])
        assert np.array_equal(np.sort(covered), np.arange(block.size))
    broken = LaplacianRidge(block, a, b, dense_max=math.inf)  # what the check catches: one dense 60-wide block
    assert max(m for _, m, *_ in broken._batches) == 60


def test_threshold_context_and_validation():
    block, a, b, _ = random_pair_graph(4)
    with laplacian_dense_max(0):
        assert LaplacianRidge(block, a, b)._cg is not None
        assert LaplacianRidge(block, a, b, dense_max=math.inf)._cg is None  # explicit wins
    assert LaplacianRidge(block, a, b)._cg is None  # the context is gone
    with pytest.raises(ValueError, match="dense_max"):
        LaplacianRidge(block, a, b, dense_max=-1)
    with pytest.raises(ValueError, match="dense_max"):
        with laplacian_dense_max(float("nan")):
            pass
    with pytest.raises(ValueError, match="one block"):
        LaplacianRidge(np.array([0, 0, 1]), np.array([0]), np.array([2]), dense_max=0)


# -- fits on the sparse path ---------------------------------------------------------------
def pair_counts_with_untouched(sp, seed, n):
    """Pairs on a random reward; prompt 1 gets none; about a third of the completions of the
    other prompts are never drawn (π_ref gives them little mass... they are simply excluded)."""
    rng = np.random.default_rng(seed)
    r_star = rng.normal(scale=1.5, size=sp.shape)
    ref = random_policy(sp, seed + 1)
    c = sample_preferences(r_star, ref, n, seed + 2).counts()
    allowed = rng.random(sp.shape) < 0.65
    keep = (c.x != 1) & allowed[c.x, c.y_pos] & allowed[c.x, c.y_neg]
    c = PairCounts(sp, c.x[keep], c.y_pos[keep], c.y_neg[keep], c.count[keep])
    return c, ref


def naive_pairs(c):
    return np.stack([c.x, c.y_pos, c.y_neg], axis=1), c.count


@pytest.mark.parametrize("dense_max", [None, 4, 0])
def test_fits_on_sparse_path_match_brute_dense_newton(dense_max, monkeypatch):
    sp = TreeSpace(P=3, V=2, H=6)  # T = 64 ≤ DENSE_MAX: None is the dense path, 4 and 0 sparse
    c, ref = pair_counts_with_untouched(sp, 10, 300)
    l2 = 0.05
    calls = []
    cg = LaplacianRidge._conjugate_gradients
    monkeypatch.setattr(LaplacianRidge, "_conjugate_gradients", lambda self, *x: calls.append(1) or cg(self, *x))
    want = naive.tabular_reward_mle_dense(sp.P, sp.T, *naive_pairs(c), l2)
    with laplacian_dense_max(math.inf if dense_max is None else dense_max):
        rm = reward_mle(c, TabularRewardClass(sp), l2=l2)
        off = dpo(c, TabularPolicyClass(sp), ref, BETA, l2=l2)
    assert bool(calls) == (dense_max is not None)
    np.testing.assert_allclose(rm.reward, want, rtol=0, atol=1e-10)
    s = ref.logp + want / BETA  # Theorem 2.2: DPO's optimum is π*_{r̂}
    want_logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(off.policy.logp, want_logp, rtol=0, atol=1e-10)
    gtol = _solve.NEWTON_RTOL * c.count.sum()
    for res in (rm, off):
        assert res.extra["solver_status"] in ("gtol", "rounding") and res.grad_norm <= gtol and res.converged
    # untouched completions: reward exactly at the prompt's mean 0; DPO's r_π at the prompt's mean
    untouched = ~rm.identified
    assert untouched.sum() > 20 and untouched[1].all()
    np.testing.assert_array_equal(rm.reward[untouched], 0.0)
    f = BETA * (off.policy.logp - ref.logp)
    f = f - f.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(f[untouched], 0.0, rtol=0, atol=1e-12)


def test_automatic_choice_takes_sparse_path_above_threshold(monkeypatch):
    """One prompt with more touched completions than DENSE_MAX: the fit runs conjugate
    gradients without being told to and agrees with the brute dense reference."""
    m = int(1.3 * _solve.DENSE_MAX)  # touched completions (fewer than T: the rest untouched)
    sp = TreeSpace(P=1, V=2, H=math.ceil(math.log2(m + 1)))
    rng = np.random.default_rng(5)
    touched = rng.choice(sp.T, size=m, replace=False)
    k = 3 * m
    ia, ib = touched[rng.integers(0, m, k)], touched[rng.integers(0, m, k)]
    key = np.unique(ia * sp.T + ib)
    c = PairCounts(sp, np.zeros(key.size, dtype=np.int64), key // sp.T, key % sp.T,
                   rng.integers(1, 4, key.size).astype(np.float64))
    calls = []
    cg = LaplacianRidge._conjugate_gradients
    monkeypatch.setattr(LaplacianRidge, "_conjugate_gradients", lambda self, *x: calls.append(1) or cg(self, *x))
    l2 = 0.02
    rm = reward_mle(c, TabularRewardClass(sp), l2=l2)
    assert calls
    want = naive.tabular_reward_mle_dense(sp.P, sp.T, *naive_pairs(c), l2)
    np.testing.assert_allclose(rm.reward, want, rtol=0, atol=1e-10)
    assert rm.extra["solver_status"] in ("gtol", "rounding") and rm.grad_norm <= _solve.NEWTON_RTOL * c.count.sum()
    assert rm.identified.sum() == np.unique(np.concatenate([c.y_pos, c.y_neg])).size < sp.T


def test_ipo_sparse_equals_dense():
    """IPO's quadratic objective: the one Newton step on the sparse path lands on the dense
    path's optimum."""
    sp = TreeSpace(P=2, V=2, H=6)
    c, ref = pair_counts_with_untouched(sp, 20, 400)
    with laplacian_dense_max(math.inf):
        dense = ipo(c, TabularPolicyClass(sp), ref, tau=0.8, l2=0.1)
    with laplacian_dense_max(0):
        sparse = ipo(c, TabularPolicyClass(sp), ref, tau=0.8, l2=0.1)
    np.testing.assert_allclose(sparse.policy.logp, dense.policy.logp, rtol=0, atol=1e-10)
    assert sparse.grad_norm <= _solve.NEWTON_RTOL * c.count.sum()


# -- the linear reward MLE without the (pairs × d) difference matrix ---------------------------
def _linear_ridge_logistic_reference(phi, pairs, counts, l2):
    """argmax_w Σ_k c_k log σ((φ_{a_k} − φ_{b_k})·w) − (l2/2)‖w‖² by scipy's BFGS on the plain
    formula (pairs as a Python loop), polished by Newton steps on the dense D-matrix Hessian."""
    from scipy import optimize
    D = np.array([phi[a] - phi[b] for a, b in pairs])

    def f(w):
        z = D @ w
        return -(counts @ np.array([naive.log_sigmoid(v) for v in z]) - 0.5 * l2 * w @ w)

    w = optimize.minimize(f, np.zeros(phi.shape[1]), method="BFGS", options={"gtol": 1e-10}).x
    for _ in range(20):
        s = 1.0 / (1.0 + np.exp(D @ w))
        g = D.T @ (counts * s) - l2 * w
        H = (D.T * (counts * s * (1 - s))) @ D + l2 * np.eye(D.shape[1])
        w = w + np.linalg.solve(H, g)
    return w


def test_linear_reward_mle_by_features_equals_the_difference_matrix_path(monkeypatch):
    from genver.classes import LinearRewardClass
    from genver.estimators import linear
    from genver.preferences import Preferences
    from genver.spaces import TreeSpace

    rng = np.random.default_rng(7)
    sp = TreeSpace(2, 2, 4)
    phi = rng.standard_normal((2, 16, 5))
    R = LinearRewardClass(sp, phi)
    a = np.column_stack([rng.integers(0, 2, 300), rng.integers(0, 16, 300), rng.integers(0, 16, 300)])
    a[:5, 2] = a[:5, 1]  # self-pairs (kept: they add a constant) and repeats (300 draws of 512 pairs)
    data = Preferences.from_array(sp, a, self_pairs="keep").counts()
    dense = reward_mle(data, R, l2=0.1)
    monkeypatch.setattr(linear, "LINEAR_PAIRS_DENSE_MAX", 0)
    feat = reward_mle(data, R, l2=0.1)
    assert feat.extra["solver"] == "newton (features)" and dense.extra["solver"] == "newton"
    assert feat.converged and feat.grad_norm <= 1e-13 * 300
    assert np.abs(feat.params - dense.params).max() <= 1e-10
    assert feat.objective == pytest.approx(dense.objective, rel=1e-13)
    flat = phi.reshape(32, 5)
    ref = _linear_ridge_logistic_reference(flat, list(zip(data.pos_flat, data.neg_flat)), data.count, 0.1)
    assert np.abs(feat.params - ref).max() <= 1e-9
    # λ = 0 keeps the D path (row space, separability LP) whatever the size
    assert reward_mle(data, R, l2=0.0).extra["solver"] in ("newton", "lbfgs")


def test_pair_laplacian_times_is_the_dense_laplacian_product():
    from genver import _kernels
    rng = np.random.default_rng(3)
    n, d, M = 12, 3, 40
    a, b = rng.integers(0, n, M), rng.integers(0, n, M)
    w = rng.random(M)
    phi = rng.standard_normal((n, d))
    out = np.empty((n, d))
    _kernels.pair_laplacian_times(a, b, w, phi, out)
    L = naive.laplacian_ridge_matrix(n, a, b, w, 0.0)
    assert np.abs(out - L @ phi).max() <= 1e-12


# -- inexact Newton on the conjugate-gradient path -------------------------------------------
def bt_ridge_objective(a, b, count, lam):
    """``F(v) = −Σ_k c_k log σ(v_a − v_b) + (λ/2)‖v‖²`` and its gradient, in plain numpy."""
    def fun(v):
        d = v[a] - v[b]
        s = 0.5 * (1.0 - np.tanh(0.5 * d))  # σ(−d)
        g = lam * v
        np.add.at(g, a, -count * s)
        np.add.at(g, b, count * s)
        return float(count @ np.logaddexp(0.0, -d) + 0.5 * lam * v @ v), g

    def weights(v):
        d = v[a] - v[b]
        return count * 0.25 / np.cosh(0.5 * d) ** 2  # c σ(d) σ(−d)
    return fun, weights


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inexact_newton_on_cg_path_reaches_the_exact_optimum(seed):
    """Random pair graphs with components, repeated and reversed pairs, self-pairs and an
    isolated block: Newton with forcing-term conjugate gradients (every component on the CG
    path) lands on the optimum of exact Newton with dense solves of the loop-built matrix, to
    1e-10; the loose solves really ran, tightened, and stopped at the residual asked for."""
    block, a, b, rng = random_pair_graph(seed)
    n = block.size
    lam = [0.37, 1e-2, 1e-3][seed]
    count = rng.integers(1, 6, a.size).astype(np.float64) * 3.0
    fun, weights = bt_ridge_objective(a, b, count, lam)
    gtol = _solve.NEWTON_RTOL * count.sum()
    exact = _solve.newton(fun, lambda v, g: np.linalg.solve(naive.laplacian_ridge_matrix(n, a, b, weights(v), lam), g),
                          np.zeros(n), gtol)
    lap = LaplacianRidge(block, a, b, dense_max=0)
    seen = []

    def solve(v, g, rtol):
        u = lap.solve(weights(v), lam, g, rtol)
        resid = g - naive.laplacian_ridge_matrix(n, a, b, weights(v), lam) @ u
        seen.append((rtol, float(np.linalg.norm(resid) / np.linalg.norm(g))))
        return u
    res = _solve.newton(fun, solve, np.zeros(n), gtol, inexact=True, hess_min=lam)
    for r in (exact, res):
        assert r.status == "gtol" and r.grad_norm <= gtol
    np.testing.assert_allclose(res.x, exact.x, rtol=0, atol=1e-10 * max(1.0, np.abs(exact.x).max()))
    loose = [(rt, got) for rt, got in seen if rt is not None]
    assert res.nsolve_loose == len(loose) >= 3 and loose[0][0] == _solve.FORCING_MAX
    assert min(rt for rt, _ in loose) < 1e-2
    for rt, got in seen:  # each solve met its residual target (components: ≤ per component, so overall)
        assert got <= (rt if rt is not None else _solve.CG_RTOL) * (1 + 1e-6) + 1e-15


def test_laplacian_solve_rtol_loosens_cg_and_is_floored_at_cg_rtol():
    block, a, b, rng = random_pair_graph(5)
    n, lam = block.size, 1e-2
    w = rng.uniform(0.0, 3.0, a.size)
    rhs = rng.standard_normal(n)
    A = naive.laplacian_ridge_matrix(n, a, b, w, lam)
    lap = LaplacianRidge(block, a, b, dense_max=0)
    tight = lap.solve(w, lam, rhs)
    it_tight = lap.last_cg[0]
    loose = lap.solve(w, lam, rhs, 1e-3)
    it_loose = lap.last_cg[0]
    assert np.linalg.norm(rhs - A @ loose) <= 1e-3 * np.linalg.norm(rhs)
    assert np.linalg.norm(rhs - A @ tight) <= _solve.CG_RTOL * np.linalg.norm(rhs) * 10
    assert it_loose < it_tight and np.abs(loose - tight).max() > 1e-12  # it really stopped early
    np.testing.assert_array_equal(lap.solve(w, lam, rhs, 1e-20), tight)  # below CG_RTOL: CG_RTOL
    assert lap.cg_iterations == 2 * it_tight + it_loose
