r"""The two routes of preference fine-tuning, each solved to its global optimum.

Notation as in ``paper-notes.md`` §2, with ``(x_i, y_i⁺, y_i⁻)`` the ``N`` pairs (used only
through their counts) and ``r_π = β log π/π_ref`` the local (implicit) reward.

* **Offline (DPO):** ``π̂_off ∈ argmax_{π∈Π} Σ_i log σ(r_π(x_i,y_i⁺) − r_π(x_i,y_i⁻)) − pen(π)``.
* **IPO:** ``argmin_{π∈Π} Σ_i (h_π(i) − 1/(2τ))²`` (finite: enumeration; tabular: the same
  centred ridge on ``log π/π_ref`` as DPO; log-linear: ridge ``(λ/2)‖θ‖²``, L-BFGS) with
  ``h_π(i) = log π(y⁺)/π_ref(y⁺) − log π(y⁻)/π_ref(y⁻)`` (``average="sequence"``) or the same
  divided by the length ``H`` (``average="token"``, length-averaged log-probabilities).
* **Reward MLE:** ``r̂ ∈ argmax_{r∈R} Σ_i log σ(r(x_i,y_i⁺) − r(x_i,y_i⁻)) − pen(r)``.
* **Online (RM + RL):** ``π̂_on ∈ argmax_{π∈Π} J_β(π; r̂)`` (exact; see
  :mod:`genver.classes.policies`).

Nested sample sizes (``*_path``)
-------------------------------
For finite classes, :func:`dpo_path`, :func:`reward_mle_path` and :func:`rm_rl_path` fit every
prefix ``data.head(n)`` of one pair stream at once: one log-sigmoid per (member, unique
*unordered* pair) — the reversed pair has margin ``−z`` and ``log σ(−z) = log σ(z) − z`` share
``log1p(e^{−|z|})``; pairs ``y⁺ = y⁻`` are included (``log σ(0)`` for a finite member) — then one
multiply-add per (segment between sizes, ordered pair in it), so the cost stops growing with
``n`` once every distinct pair has been seen (``_kernels.class_bt_loglik_stream``); the RL step
runs once for all distinct ``r̂`` of the path (one pass over the members). They return, for each
``n``, the result :func:`dpo` / :func:`reward_mle` / :func:`rm_rl` return on ``data.head(n)``
(same pick; objectives equal up to summation order and the ~1e-15 relative error of the
vectorised log-sigmoid); ``wall_time`` is the path's time divided by the number of sizes.

Solvers and well-posedness rules
--------------------------------
* Finite classes: exhaustive enumeration of every member's objective (numba kernel, one
  ``prange`` item per member); the first maximiser wins (lowest index); ``set_valued`` reports
  ties between members with different policies/rewards.
* Tabular classes: the likelihood can be maximised at infinity and completions no pair
  touches are unidentified, so both tabular routes use the **same ridge penalty on the reward
  scale**, invariant to per-prompt constants (which Bradley–Terry cannot see):
  ``pen(r) = (λ/2) Σ_x Σ_y (r(x,y) − r̄(x))²`` with ``r̄(x)`` the mean over the ``T``
  completions, applied to ``r`` for the reward MLE and to ``r_π`` for DPO. The objective is
  then strictly concave modulo constants and has one solution. For the reward MLE, since the
  Bradley–Terry gradient sums to zero within each prompt, the maximiser has ``r̄(x) = 0`` and
  every coordinate untouched by the data is exactly ``0 = r̄(x)``: genver solves only for the
  touched coordinates. DPO is solved over the logits ``z`` of ``π = softmax(log π_ref + z)``
  (all ``P·T`` of them), a different computation that must land on the same policy
  (Theorem 2.2). ``identified`` marks the touched coordinates; ``λ`` must be ``> 0``.
* Tabular solver: exact damped Newton (:func:`genver._solve.newton`), to ``max|∇| ≤ 1e-13·N``
  or the float64 floor of the gradient (L-BFGS stalled at a few 1e-7). The Hessians are
  block diagonal over prompts. With margins ``d_k = f(y⁺_k) − f(y⁻_k)`` of the pairs and
  Bradley–Terry weights ``w_k = c_k σ(d_k) σ(−d_k)``, let ``L_w`` be the weighted graph
  Laplacian of the pairs (``Σ_k w_k (e_{y⁺} − e_{y⁻})(e_{y⁺} − e_{y⁻})ᵀ`` per prompt) and
  ``C = I − 11ᵀ/T`` the centring. Reward MLE (touched coordinates ``v``): ``−∇² = L_w + λI``.
  DPO in the logits: ``f = β(z − A(z))`` with ``A`` the per-prompt log-partition; since the
  objective's gradient in ``f``, ``g``, sums to zero within each prompt (Bradley–Terry and the
  centred ridge are both blind to per-prompt constants), the log-partition curvature term
  ``−β (Σ_y g_y) ∇²A`` vanishes and ``J = β(I − 1πᵀ)`` acts as ``β·I`` on both sides, so
  ``−∇²_z = β² (L_w + λC)`` — singular only along the per-prompt constants, which leave ``π``
  unchanged. On ``1⊥`` it equals ``β²(L_w + λI)``, whose untouched coordinates decouple:
  the Newton step solves ``(L_w + λI)`` on the touched block and divides by ``λβ²`` elsewhere.
  IPO: ``−∇²_z = 2s² L_c + λC`` (``s`` the length scale, weights the counts) — the objective is
  quadratic in ``z`` and one Newton step is exact. Other classes keep L-BFGS. The systems
  ``(L_w + λI) u = g`` are solved by :class:`genver._solve.LaplacianRidge`: the Laplacian is
  block diagonal over the connected components of the pair graph (a refinement of the
  prompts); prompts and components of at most ``DENSE_MAX`` (a few hundred, the measured
  crossover) touched completions are dense Cholesky/LU solves, larger components
  Jacobi-preconditioned conjugate gradients on a sparse (CSR) matrix (DPO and reward MLE: to
  an inexact-Newton forcing term, then as tightly as the stop test needs; IPO: to a relative
  residual of 1e-13) — Newton stays exact because its stopping rule reads the exactly evaluated
  gradient and bounds the exact step, never trusting a loose one. Untouched completions get no matrix row (their Newton component is the
  closed form ``g/λ`` for DPO and IPO, and they are not variables of the reward MLE), and each
  objective/gradient evaluation is ``O(pairs + P·T)``: a fit needs ``O(P·T + distinct pairs)``
  memory (``benchmarks/bench_fit_scale.py``: ``T = 2^20`` with ``10^7`` pairs).
* Linear rewards / log-linear policies: ridge on the reward-scale parameters, ``(λ/2)‖w‖²``
  for ``r_w = w·φ`` and ``(λ/2)‖βθ‖²`` for ``π_θ`` (whose local reward is
  ``β θ·Σ_h ψ − normalisers``), so that isomorphic pairs — e.g. additive rewards on
  position-token features and the position-token log-linear class under a position-factorised
  ``π_ref`` — stay exactly equivalent (``λ ≥ 0``). Linear reward MLE (and DPO over ``Π(R)`` of a
  linear ``R``, which is the same fit): ridge-logistic regression on ``D_k = φ(y⁺_k) − φ(y⁻_k)``,
  concave, gradient ``Dᵀ(c ∘ σ(−Dw)) − λw`` and ``−∇² = Dᵀ diag(c σ(Dw)σ(−Dw)) D + λI``; solved
  by exact damped Newton (dense ``d × d``; for ``λ = 0`` in the row space of ``D``, giving the
  minimum-norm maximiser, see ``_linear_bt_newton``) to ``max|∇| ≤ 1e-13·N`` or the float64
  floor (L-BFGS stalled at ~1e-7). With ``λ = 0`` and (weakly) separable data — some
  identifiable direction ``v`` with ``D v ≥ 0`` — no finite MLE exists; genver then keeps its
  former behaviour: L-BFGS from ``w = 0``, stopped where ``max|∇| ≤ 1e-9`` (margins of ~20–30
  along the separating direction, an arbitrary point on the way to infinity), with
  ``extra["mle_exists"] = False`` and ``extra["solver"] = "lbfgs"``. The log-linear fits use
  L-BFGS with exact gradients. DPO over a log-linear class is concave when the per-node normalisers cancel between
  ``y⁺`` and ``y⁻`` (e.g. position-token features), and otherwise reported with its gradient
  norm.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from .. import _kernels
from ..runcache import RunCache, cache_key
from .._validation import check_beta, check_prompt_weights
from ..classes import (FinitePolicyClass, FiniteRewardClass, LinearRewardClass, LogLinearPolicyClass,
                       SoftOptimalPolicyClass, TabularPolicyClass, TabularRewardClass)
from ..policy import Policy, logsumexp_rows
from ..preferences import PairCounts, Preferences, pair_keys
from .._solve import (NEWTON_RTOL, LaplacianRidge, check_l2, converged, finite_pick, lbfgs, newton,
                      tie_tolerance)
from .base import FitResult

__all__ = ["dpo", "ipo", "reward_mle", "rl_step", "rm_rl", "DEFAULT_L2", "dpo_path", "reward_mle_path",
           "rm_rl_path", "dpo_tabular_objective"]

#: Default ridge weight for the tabular classes (λ in the module docstring).
DEFAULT_L2 = 1e-2


def _counts(data) -> PairCounts:
    if isinstance(data, Preferences):
        return data.counts()
    if isinstance(data, PairCounts):
        return data
    raise ValueError(f"data must be Preferences or PairCounts, got {type(data).__name__}")


def _identified(space, c: PairCounts, flat=None) -> np.ndarray:
    pos, neg = (c.pos_flat, c.neg_flat) if flat is None else flat
    mask = np.zeros(space.P * space.T, dtype=bool)
    mask[pos] = True
    mask[neg] = True
    return mask.reshape(space.shape)


# -- tabular Newton plumbing (the Hessians are derived in the module docstring) -------------
def _touched_system(c: PairCounts, flat=None):
    """``(cov, pos, neg, lap)``: the touched flat coordinates ``cov`` (sorted, so grouped by
    prompt), the pairs' positions in ``cov`` and the per-prompt :class:`LaplacianRidge` on them
    (``flat``: the pairs' flat indices ``(c.pos_flat, c.neg_flat)`` when already at hand).
    Untouched coordinates get no row: ``O(P·T)`` index vectors and ``O(pairs)`` work."""
    sp = c.space
    pos_flat, neg_flat = (c.pos_flat, c.neg_flat) if flat is None else flat
    cov = np.flatnonzero(_identified(sp, c, (pos_flat, neg_flat)).ravel())
    loc = np.full(sp.P * sp.T, -1, dtype=np.int64)
    loc[cov] = np.arange(cov.size)
    pos, neg = loc[pos_flat], loc[neg_flat]
    del loc
    return cov, pos, neg, LaplacianRidge(cov // sp.T, pos, neg)


def _bt_weights(d: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``c σ(d) σ(−d)`` (the Bradley–Terry curvature of each pair), without overflow."""
    e = np.exp(-np.abs(d))
    return count * e / (1.0 + e) ** 2


def _logit_newton_solve(c: PairCounts, weights, lam: float, scale2: float, flat=None):
    """``solve(z, g)`` for :func:`newton` on a tabular logit problem with ``−∇²_z =
    scale2·(L_w + λC)``, ``w = weights(z)``: on ``1⊥`` (the gradient's per-prompt mean is
    removed first, and the step's afterwards) ``(L_w + λI)⁻¹`` on each prompt's touched
    block, ``1/λ`` elsewhere; ``rtol``: the inexact-Newton forcing term for
    :meth:`LaplacianRidge.solve`."""
    sp = c.space
    cov, _, _, lap = _touched_system(c, flat)

    def solve(zflat, g, rtol=None):
        g = g.reshape(sp.shape)
        g = (g - g.mean(axis=1, keepdims=True)).ravel()
        u = g / lam
        if cov.size:
            u[cov] = lap.solve(weights(zflat), lam, g[cov], rtol)
        u = u.reshape(sp.shape)
        return (u - u.mean(axis=1, keepdims=True)).ravel() / scale2  # rounding leaks into 1: drop it

    return solve


def _gtol(c: PairCounts) -> float:
    return NEWTON_RTOL * max(1.0, float(c.count.sum()))


def _linear_bt_newton(neg, D: np.ndarray, count: np.ndarray, l2: float, gtol: float):
    """Newton solve of the linear reward MLE (ridge-logistic regression on the pair feature
    differences ``D_k = φ(x_k, y⁺_k) − φ(x_k, y⁻_k)``, see the module docstring), or ``None``
    when ``λ = 0`` and no finite maximiser exists.

    ``−∇² = Dᵀ diag(w) D + λI`` with ``w_k = c_k σ(D_k·w) σ(−D_k·w)`` (dense ``d × d``). For
    ``λ > 0`` it is positive definite (Cholesky solve). For ``λ = 0`` the objective is flat along
    ``null(D)`` (of the pairs with ``c_k > 0``); the iterates stay in the row space ``S`` of ``D``
    (orthonormal basis ``Q`` from an SVD, singular values below ``1e-10·s_max`` dropped) and the
    step solves ``Qᵀ H Q`` there, so the result is the minimum-norm maximiser (the point
    L-BFGS from 0 approached too). On ``S`` the objective is strictly concave and has a finite
    maximiser unless some ``v ∈ S∖{0}`` has ``D v ≥ 0`` (weakly separable data: the likelihood
    increases along ``v`` forever); that is decided by a linear programme,
    ``max 1ᵀ(DQv) s.t. DQv ≥ 0, ‖v‖_∞ ≤ 1`` (> 1e-6·max(1, max|DQ|) means separable)."""
    from scipy import linalg, optimize as _opt

    live = count > 0
    Dl, cl = D[live], count[live]
    d = D.shape[1]
    if l2 > 0.0:
        Q = None
    else:
        if Dl.shape[0] == 0:
            Q = np.zeros((d, 0))
        else:
            _, sv, Vt = np.linalg.svd(Dl, full_matrices=False)
            Q = Vt[sv > 1e-10 * sv[0]].T if sv.size and sv[0] > 0 else np.zeros((d, 0))
        if Q.shape[1]:
            B = Dl @ Q
            lp = _opt.linprog(-B.sum(axis=0), A_ub=-B, b_ub=np.zeros(B.shape[0]), bounds=[(-1.0, 1.0)] * Q.shape[1],
                              method="highs")
            if lp.status != 0 or -lp.fun > 1e-6 * max(1.0, float(np.abs(B).max())):
                return None

    def solve(w, g):
        wk = _bt_weights(Dl @ w, cl)
        if Q is None:
            H = (Dl.T * wk) @ Dl
            H[np.diag_indices(d)] += l2
            return linalg.solve(H, g, assume_a="pos", check_finite=False)
        if Q.shape[1] == 0:
            return np.zeros(d)
        B = Dl @ Q
        return Q @ linalg.solve((B.T * wk) @ B, Q.T @ g, assume_a="pos", check_finite=False)

    return newton(neg, solve, np.zeros(d), gtol)


def _finite_loglik_pick(scores: np.ndarray, members: np.ndarray, c: PairCounts, offset: np.ndarray, scale: float):
    """``(loglik_all, k, set_valued, n_maximisers)`` of a finite class: every member's
    Bradley–Terry log-likelihood by the vectorised kernel (absolute error ≤ 3e-16 a term), the
    pick of :func:`genver._solve.finite_pick`, and — where that leaves several members tied — the
    tied members recomputed with every term accurate relative to itself
    (``_kernels.class_bt_loglik_exact``) and picked again. So saturated members (log-likelihoods
    such as −1e-19, −1e-59, −1e-119, which the vectorised sum rounds to one 0) are told apart,
    while the common case costs nothing extra. A member with ``π(y⁺) = π(y⁻) = 0`` (NaN) scores
    ``−∞``: it cannot explain that pair."""
    out = np.empty(scores.shape[0])
    _kernels.class_bt_loglik(scores, c.pos_flat, c.neg_flat, offset, c.count, scale, out)
    out[np.isnan(out)] = -np.inf
    k, set_valued, n_max = finite_pick(out, members)
    if n_max > 1 and np.isfinite(out[k]):
        vmax = float(out.max())
        ties = np.flatnonzero(out >= vmax - tie_tolerance(out, vmax))
        exact = np.empty(ties.size)
        _kernels.class_bt_loglik_exact(scores, ties, c.pos_flat, c.neg_flat, offset, c.count, float(scale), exact)
        exact[np.isnan(exact)] = -np.inf
        out = out.copy()
        out[ties] = exact
        k, set_valued, n_max = finite_pick(out, members)
    return out, k, set_valued, n_max


# -- reward MLE ---------------------------------------------------------------------------
#: Largest ``distinct pairs × d`` for which the linear reward MLE builds ``D = φ(y⁺) − φ(y⁻)``
#: (2**22 float64 = 32 MiB); above it (and ``λ > 0``) :func:`_linear_reward_mle_by_features`.
LINEAR_PAIRS_DENSE_MAX = 2**22


def _linear_reward_mle_by_features(c: PairCounts, reward_class, phi: np.ndarray, l2: float, t0: float,
                                   gtol: float | None = None) -> FitResult:
    """The linear reward MLE with ``λ > 0`` without the ``(pairs × d)`` matrix ``D``: margins
    ``D w = (φw)[y⁺] − (φw)[y⁻]``, gradient ``Dᵀ(c ∘ σ(−Dw)) − λw = φᵀ(scatter of c ∘ σ(−Dw) to
    y⁺, minus to y⁻) − λw`` and ``−∇² = Dᵀ diag(w) D + λI = φᵀ L_w φ + λI`` with the weighted
    pair Laplacian ``L_w`` (``_kernels.pair_laplacian_times``): ``O(P·T·d + pairs)`` memory,
    ``O(pairs·d + P·T·d²)`` time per Newton step. The same objective and optimum as the ``D``
    path (``λ > 0``: strictly concave, always a finite maximiser)."""
    from scipy import linalg

    pos, neg_ = c.pos_flat, c.neg_flat
    n, d = phi.shape
    lphi = np.empty((n, d))

    def margins(w):
        f = phi @ w
        return f[pos] - f[neg_]

    def negobj(w):
        z = margins(w)
        e = np.exp(-np.abs(z))
        ll = c.count @ (np.minimum(z, 0.0) - np.log1p(e))
        s = c.count / (1.0 + np.exp(np.clip(z, -700, 700)))  # c σ(−z)
        g = np.bincount(pos, weights=s, minlength=n) - np.bincount(neg_, weights=s, minlength=n)
        return -(ll - 0.5 * l2 * w @ w), -(phi.T @ g - l2 * w)

    def solve(w, g):
        _kernels.pair_laplacian_times(pos, neg_, _bt_weights(margins(w), c.count), phi, lphi)
        H = phi.T @ lphi
        H[np.diag_indices(d)] += l2
        return linalg.solve(H, g, assume_a="pos", check_finite=False)

    res = newton(negobj, solve, np.zeros(d), _gtol(c) if gtol is None else gtol)
    w = res.x
    return FitResult("reward_mle", -res.fun, reward=reward_class.reward(w), params=w,
                     converged=converged(res.grad_norm, c.n_pairs), iterations=res.nit,
                     grad_norm=res.grad_norm, wall_time=time.perf_counter() - t0,
                     extra={"l2": l2, "solver": "newton (features)", "solver_status": res.status, "mle_exists": True})


def reward_mle(data, reward_class, *, l2: float | None = None) -> FitResult:
    """Bradley–Terry maximum likelihood over a reward class (finite, linear or tabular)."""
    t0 = time.perf_counter()
    c = _counts(data)
    sp = c.space
    if reward_class.space != sp:
        raise ValueError("data and reward_class live on different spaces")
    if isinstance(reward_class, FiniteRewardClass):
        out, k, set_valued, n_max = _finite_loglik_pick(reward_class.tables.reshape(reward_class.size, -1),
                                                        reward_class.tables, c, np.zeros(c.count.size), 1.0)
        return FitResult("reward_mle", float(out[k]), reward=reward_class.tables[k], reward_index=k,
                         set_valued=set_valued, wall_time=time.perf_counter() - t0,
                         extra={"n_maximisers": n_max, "loglik_all": out})
    if isinstance(reward_class, LinearRewardClass):
        l2 = check_l2(0.0 if l2 is None else l2, positive=False)
        phi = reward_class.phi.reshape(sp.P * sp.T, -1)
        if l2 > 0 and c.count.size * phi.shape[1] > LINEAR_PAIRS_DENSE_MAX:
            return _linear_reward_mle_by_features(c, reward_class, phi, l2, t0)
        D = phi[c.pos_flat] - phi[c.neg_flat]  # (M, d)

        def neg(w):
            z = D @ w
            ll = c.count @ np.where(z >= 0, -np.log1p(np.exp(-np.abs(z))), z - np.log1p(np.exp(-np.abs(z))))
            s = 1.0 / (1.0 + np.exp(np.clip(z, -700, 700)))  # σ(−z)
            grad = D.T @ (c.count * s) - l2 * w
            return -(ll - 0.5 * l2 * w @ w), -grad

        res = _linear_bt_newton(neg, D, c.count, l2, _gtol(c))
        if res is None:  # λ = 0 and the data are (quasi-)separable: no finite MLE, today's L-BFGS
            lb, g = lbfgs(neg, np.zeros(reward_class.n_params))
            w = lb.x
            return FitResult("reward_mle", -float(lb.fun), reward=reward_class.reward(w), params=w,
                             converged=converged(g, c.n_pairs), iterations=int(lb.nit), grad_norm=g,
                             wall_time=time.perf_counter() - t0,
                             extra={"l2": l2, "solver": "lbfgs", "mle_exists": False})
        w = res.x
        return FitResult("reward_mle", -res.fun, reward=reward_class.reward(w), params=w,
                         converged=converged(res.grad_norm, c.n_pairs), iterations=res.nit,
                         grad_norm=res.grad_norm, wall_time=time.perf_counter() - t0,
                         extra={"l2": l2, "solver": "newton", "solver_status": res.status, "mle_exists": True})
    if isinstance(reward_class, TabularRewardClass):
        l2 = check_l2(DEFAULT_L2 if l2 is None else l2, positive=True)
        cov, pos, neg_, lap = _touched_system(c)
        ident = np.zeros(sp.P * sp.T, dtype=bool)
        ident[cov] = True
        ident = ident.reshape(sp.shape)
        grad = np.empty(cov.size)

        def neg(v):
            ll = _kernels.bt_loglik_grad(v, pos, neg_, c.count, 1.0, grad)
            return -(ll - 0.5 * l2 * v @ v), -(grad - l2 * v)

        blk = cov // sp.T
        size = np.maximum(np.bincount(blk, minlength=sp.P), 1)

        def bmean(u):  # per-prompt mean over the touched coordinates
            return (np.bincount(blk, u, minlength=sp.P) / size)[blk]

        def solve(v, g, rtol=None):  # −∇² = L_w + λI, w from the margins v(y⁺) − v(y⁻)
            # per-prompt constants have curvature λ only; their Newton component is exactly the
            # current mean v̄ (the Bradley–Terry gradient sums to 0 in a prompt, so ḡ = λv̄):
            # take it as v̄, not as ḡ/λ, which would amplify rounding in ḡ by 1/λ
            u = lap.solve(_bt_weights(v[pos] - v[neg_], c.count), l2, g - bmean(g), rtol)
            return u - bmean(u) + bmean(v)

        res = newton(neg, solve, np.zeros(cov.size), _gtol(c), inexact=True, hess_min=l2)
        r = np.zeros(sp.P * sp.T)
        r[cov] = res.x
        return FitResult("reward_mle", -res.fun, reward=r.reshape(sp.shape),
                         converged=converged(res.grad_norm, c.n_pairs), iterations=res.nit,
                         grad_norm=res.grad_norm, identified=ident, wall_time=time.perf_counter() - t0,
                         extra={"l2": l2, "solver": "newton", "solver_status": res.status})
    raise ValueError(f"reward_mle: unsupported reward class {type(reward_class).__name__}")


# -- RL step and the online route ---------------------------------------------------------
def rl_step(reward, policy_class, ref: Policy, beta: float, prompt_weights=None) -> FitResult:
    """``argmax_{π∈Π} J_β(π; r)`` (exact: enumeration, backward induction or L-BFGS)."""
    t0 = time.perf_counter()
    res = policy_class.rl_argmax(reward, ref, beta, prompt_weights)
    return FitResult("rl_step", res.objective, policy=res.policy, reward=np.asarray(reward),
                     policy_index=res.index, params=res.params, iterations=res.iterations,
                     converged=res.params is None or res.grad_norm <= 1e-6,
                     grad_norm=res.grad_norm, wall_time=time.perf_counter() - t0,
                     extra={"residual_kl": res.residual_kl})


def rm_rl(data, reward_class, policy_class, ref: Policy, beta: float, *, l2: float | None = None,
          prompt_weights=None) -> FitResult:
    """The online route: reward MLE over ``R``, then exact RL over ``Π`` against ``r̂``."""
    t0 = time.perf_counter()
    rm = reward_mle(data, reward_class, l2=l2)
    rl = rl_step(rm.reward, policy_class, ref, beta, prompt_weights)
    return FitResult("rm_rl", rm.objective, policy=rl.policy, reward=rm.reward,
                     policy_index=rl.policy_index, reward_index=rm.reward_index, params=rm.params,
                     converged=rm.converged and rl.converged, iterations=rm.iterations + rl.iterations,
                     grad_norm=max(rm.grad_norm, rl.grad_norm), set_valued=rm.set_valued,
                     identified=rm.identified, wall_time=time.perf_counter() - t0,
                     extra={"rl_objective": rl.objective, "residual_kl": rl.extra["residual_kl"], **rm.extra})


# -- offline: DPO and IPO -----------------------------------------------------------------
def _policy_members(policy_class) -> FinitePolicyClass | None:
    if isinstance(policy_class, FinitePolicyClass):
        return policy_class
    if isinstance(policy_class, SoftOptimalPolicyClass) and isinstance(policy_class.reward_class, FiniteRewardClass):
        return policy_class.to_finite()
    return None


def _pair_offsets(ref: Policy, c: PairCounts, beta: float) -> np.ndarray:
    lr = ref.logp.ravel()
    return -beta * (lr[c.pos_flat] - lr[c.neg_flat])


def dpo_tabular_objective(c: PairCounts, ref: Policy, beta: float, l2: float):
    """``z ↦ (objective, ∂objective/∂z, log π_z)`` of tabular DPO over the logits ``z`` of
    ``π_z = softmax(log π_ref + z)``: the Bradley–Terry log-likelihood of
    ``f = r_π = β log π_z/π_ref`` (summed over pairs) minus ``(λ/2) Σ_x Σ_y (f − f̄(x))²``. Since
    ``∂f_y/∂z_u = β(δ_yu − π_u)`` within a prompt, ``∂obj/∂z = β(g − π Σ_y g)``, ``g = ∂obj/∂f``.
    Used by :func:`dpo` (Newton; Hessian in the module docstring) and
    :func:`genver.estimators.gradient.dpo_gd` (plain steps)."""
    return _dpo_objective(c, (c.pos_flat, c.neg_flat), ref, beta, l2)


def _dpo_objective(c: PairCounts, flat, ref: Policy, beta: float, l2: float):
    """:func:`dpo_tabular_objective` with the pairs' flat indices ``flat = (pos, neg)`` given."""
    sp = c.space
    lr = ref.logp
    grad_f = np.empty(sp.P * sp.T)
    pos, neg = flat

    def objective(z):
        s = lr + z
        logp = s - logsumexp_rows(s)[:, None]
        f = beta * (logp - lr)
        ll = _kernels.bt_loglik_grad(f.ravel(), pos, neg, c.count, 1.0, grad_f)
        fc = f - f.mean(axis=1, keepdims=True)
        obj = ll - 0.5 * l2 * np.sum(fc * fc)
        gf = grad_f.reshape(sp.shape) - l2 * fc
        gz = beta * (gf - np.exp(logp) * gf.sum(axis=1, keepdims=True))
        return obj, gz, logp

    return objective


def dpo(data, policy_class, ref: Policy, beta: float, *, l2: float | None = None) -> FitResult:
    """Offline MLE (DPO) over a finite, soft-optimal (finite or linear ``R``), tabular or
    log-linear policy class."""
    t0 = time.perf_counter()
    c = _counts(data)
    sp = c.space
    beta = check_beta(beta)
    if not isinstance(ref, Policy) or ref.space != sp:
        raise ValueError("ref must be a Policy on the data's space")
    fin = _policy_members(policy_class)
    if fin is None:
        ref.require_full_support("ref")
    elif not (np.isfinite(ref.logp.ravel()[c.pos_flat]).all() and np.isfinite(ref.logp.ravel()[c.neg_flat]).all()):
        raise ValueError("ref must give positive probability to every completion in the data")
    if fin is not None:
        out, k, set_valued, n_max = _finite_loglik_pick(fin.logp.reshape(fin.size, -1), fin.logp, c,
                                                        _pair_offsets(ref, c, beta), beta)
        # member k of Π(R) is π*_{r_k}
        rk = k if isinstance(policy_class, SoftOptimalPolicyClass) else None
        return FitResult("dpo", float(out[k]), policy=fin.member(k), policy_index=k, reward_index=rk,
                         set_valued=set_valued, wall_time=time.perf_counter() - t0,
                         extra={"n_maximisers": n_max, "loglik_all": out})
    if isinstance(policy_class, SoftOptimalPolicyClass):  # linear R: π_w ∝ π_ref e^{w·φ/β}
        if beta != policy_class.beta or not np.array_equal(ref.logp, policy_class.ref.logp):
            raise ValueError("Π(R) is defined for its own (ref, beta); DPO must use the same ones")
        rm = reward_mle(c, policy_class.reward_class, l2=l2)
        pol = policy_class.policy(rm.params)
        return FitResult("dpo", rm.objective, policy=pol, reward=rm.reward, params=rm.params,
                         converged=rm.converged, iterations=rm.iterations, grad_norm=rm.grad_norm,
                         wall_time=time.perf_counter() - t0, extra=rm.extra)
    if isinstance(policy_class, TabularPolicyClass):
        l2 = check_l2(DEFAULT_L2 if l2 is None else l2, positive=True)
        lr = ref.logp
        pos, neg_ = c.pos_flat, c.neg_flat  # computed once, shared by the objective and the solver
        objective = _dpo_objective(c, (pos, neg_), ref, beta, l2)

        def neg(zflat):
            obj, gz, _ = objective(zflat.reshape(sp.shape))
            return -obj, -gz.ravel()

        # −∇²_z = β²(L_w + λC), w from the reward margins f(y⁺) − f(y⁻) = β(z(y⁺) − z(y⁻))
        solve = _logit_newton_solve(c, lambda z: _bt_weights(beta * (z[pos] - z[neg_]), c.count), l2, beta * beta,
                                    (pos, neg_))
        res = newton(neg, solve, np.zeros(sp.P * sp.T), _gtol(c), inexact=True, hess_min=beta * beta * l2)
        s = lr + res.x.reshape(sp.shape)
        pol = Policy(sp, s - logsumexp_rows(s)[:, None])
        return FitResult("dpo", -res.fun, policy=pol, reward=beta * (pol.logp - lr),
                         converged=converged(res.grad_norm, c.n_pairs), iterations=res.nit, grad_norm=res.grad_norm,
                         identified=_identified(sp, c, (pos, neg_)), wall_time=time.perf_counter() - t0,
                         extra={"l2": l2, "solver": "newton", "solver_status": res.status})
    if isinstance(policy_class, LogLinearPolicyClass):
        l2 = check_l2(0.0 if l2 is None else l2, positive=False)
        if not np.array_equal(ref.logp, policy_class.ref.logp):
            raise ValueError("ref must be the log-linear class's own reference policy")
        from ..policy import sequence_logp_from_cond
        lr = ref.logp
        grad_f = np.empty(sp.P * sp.T)

        def neg(theta):
            cond = policy_class.cond(theta)
            logp = sequence_logp_from_cond(sp, cond)
            f = beta * (logp - lr)
            ll = _kernels.bt_loglik_grad(f.ravel(), c.pos_flat, c.neg_flat, c.count, 1.0, grad_f)
            lam = l2 * beta * beta  # ridge on the reward-scale parameters βθ
            grad = beta * policy_class.contract_score(cond, grad_f.reshape(sp.shape)) - lam * theta
            return -(ll - 0.5 * lam * theta @ theta), -grad

        res, g = lbfgs(neg, np.zeros(policy_class.n_params))
        pol = policy_class.policy(res.x)
        return FitResult("dpo", -float(res.fun), policy=pol, reward=beta * (pol.logp - lr), params=res.x,
                         converged=converged(g, c.n_pairs), iterations=int(res.nit), grad_norm=g,
                         wall_time=time.perf_counter() - t0, extra={"l2": l2})
    raise ValueError(f"dpo: unsupported policy class {type(policy_class).__name__}")


def ipo(data, policy_class, ref: Policy, beta: float = 1.0, *, tau: float = 1.0, average: str = "sequence",
        l2: float | None = None) -> FitResult:
    """IPO: least squares of the log-ratio margin ``h_π`` to the target ``1/(2τ)``.

    ``beta`` is unused by the IPO loss itself (kept for a uniform signature); ``average``
    selects summed (``"sequence"``) or length-averaged (``"token"``) log-probabilities.
    """
    t0 = time.perf_counter()
    c = _counts(data)
    sp = c.space
    tau = check_beta(tau, "tau")
    if not isinstance(ref, Policy) or ref.space != sp:
        raise ValueError("ref must be a Policy on the data's space")
    ref.require_full_support("ref")
    if average not in ("sequence", "token"):
        raise ValueError(f"average must be 'sequence' or 'token', got {average!r}")
    scale = 1.0 if average == "sequence" else 1.0 / sp.H
    target = 1.0 / (2.0 * tau)
    lr = ref.logp.ravel()
    fin = _policy_members(policy_class)
    if fin is not None:
        h = scale * ((fin.logp.reshape(fin.size, -1)[:, c.pos_flat] - lr[c.pos_flat])
                     - (fin.logp.reshape(fin.size, -1)[:, c.neg_flat] - lr[c.neg_flat]))
        loss = ((h - target) ** 2) @ c.count
        k, set_valued, n_max = finite_pick(-loss, fin.logp)
        return FitResult("ipo", -float(loss[k]), policy=fin.member(k), policy_index=k, set_valued=set_valued,
                         wall_time=time.perf_counter() - t0, extra={"n_maximisers": n_max, "average": average})
    if isinstance(policy_class, TabularPolicyClass):
        l2 = check_l2(DEFAULT_L2 if l2 is None else l2, positive=True)
        lr2 = ref.logp

        def neg(zflat):
            s = lr2 + zflat.reshape(sp.shape)
            logp = s - logsumexp_rows(s)[:, None]
            u = (logp - lr2).ravel()  # log π/π_ref
            h = scale * (u[c.pos_flat] - u[c.neg_flat])
            resid = h - target
            gu = np.zeros(sp.P * sp.T)
            np.add.at(gu, c.pos_flat, -2.0 * scale * c.count * resid)
            np.add.at(gu, c.neg_flat, 2.0 * scale * c.count * resid)
            uc = (logp - lr2) - (logp - lr2).mean(axis=1, keepdims=True)
            obj = -(c.count @ resid**2) - 0.5 * l2 * np.sum(uc * uc)
            gu = gu.reshape(sp.shape) - l2 * uc
            gz = gu - np.exp(logp) * gu.sum(axis=1, keepdims=True)
            return -obj, -gz.ravel()

        # quadratic in z: −∇²_z = 2s²L_c + λC = 2s²(L_c + (λ/2s²)C), constant weights (the counts)
        solve = _logit_newton_solve(c, lambda z: c.count, l2 / (2.0 * scale * scale), 2.0 * scale * scale)
        res = newton(neg, solve, np.zeros(sp.P * sp.T), _gtol(c))
        s = lr2 + res.x.reshape(sp.shape)
        pol = Policy(sp, s - logsumexp_rows(s)[:, None])
        return FitResult("ipo", -res.fun, policy=pol, converged=converged(res.grad_norm, c.n_pairs),
                         iterations=res.nit, grad_norm=res.grad_norm, identified=_identified(sp, c),
                         wall_time=time.perf_counter() - t0,
                         extra={"l2": l2, "average": average, "solver": "newton", "solver_status": res.status})
    if isinstance(policy_class, LogLinearPolicyClass):
        l2 = check_l2(0.0 if l2 is None else l2, positive=False)
        if not np.array_equal(ref.logp, policy_class.ref.logp):
            raise ValueError("ref must be the log-linear class's own reference policy")
        from ..policy import sequence_logp_from_cond

        def neg(theta):
            cond = policy_class.cond(theta)
            u = (sequence_logp_from_cond(sp, cond) - ref.logp).ravel()  # log π_θ/π_ref
            resid = scale * (u[c.pos_flat] - u[c.neg_flat]) - target
            gu = np.zeros(sp.P * sp.T)
            np.add.at(gu, c.pos_flat, -2.0 * scale * c.count * resid)
            np.add.at(gu, c.neg_flat, 2.0 * scale * c.count * resid)
            obj = -(c.count @ resid**2) - 0.5 * l2 * theta @ theta
            grad = policy_class.contract_score(cond, gu.reshape(sp.shape)) - l2 * theta
            return -obj, -grad

        res, g = lbfgs(neg, np.zeros(policy_class.n_params))
        pol = policy_class.policy(res.x)
        return FitResult("ipo", -float(res.fun), policy=pol, params=res.x, converged=converged(g, c.n_pairs),
                         iterations=int(res.nit), grad_norm=g, wall_time=time.perf_counter() - t0,
                         extra={"l2": l2, "average": average})
    raise ValueError(f"ipo: unsupported policy class {type(policy_class).__name__}")


# -- nested sample sizes --------------------------------------------------------------------
def _stream(data: Preferences, sizes, cache: RunCache | None = None):
    """The stream's unique *unordered* pairs and its segments between consecutive sizes.

    Returns ``(pos, neg, (seg_idx, seg_cnt, seg_ptr), sizes)``: unordered pair ``u`` is
    ``(x, a ≤ b)`` with flat indices ``pos_u = x·T + a``, ``neg_u = x·T + b``; an ordered pair
    of the stream is entry ``u`` when ``a ≻ b`` and ``U + u`` when ``b ≻ a``. Segment ``s`` holds
    the ordered pairs first seen or repeated between ``sizes[s−1]`` and ``sizes[s]`` (in the
    order of their ordered keys) with their counts (see ``_kernels.class_bt_loglik_stream``).
    Given a run's ``cache`` the paths of one stream share them (see :func:`_derived`)."""
    if not isinstance(data, Preferences):
        raise ValueError(f"data must be Preferences (a pair stream), got {type(data).__name__}")
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or (np.diff(sizes) <= 0).any() or sizes[0] < 1:
        raise ValueError(f"sizes must be a non-empty increasing list of positive integers, got {sizes.tolist()}")
    if sizes[-1] > len(data):
        raise ValueError(f"sizes: {int(sizes[-1])} exceeds the {len(data)} pairs of the stream")
    return _segments(data, sizes, cache)


def _segments(data: Preferences, sizes: np.ndarray, cache: RunCache | None = None):
    """:func:`_stream` for validated ``sizes``, memoised in ``cache``."""
    if pair_keys(data, 0, 0) is None:
        T = data.space.T
        raise ValueError(f"nested sizes: P·T² = {data.space.P * T * T} ordered pairs overflow the int64 keys")
    return _derived(data, ("segments", sizes), lambda: _segments_of(data, sizes), cache)


def _segments_of(data: Preferences, sizes: np.ndarray):
    # per segment between consecutive sizes (pair i is in segment s when sizes[s−1] ≤ i < sizes[s]):
    # its unique ordered keys (sorted) and counts, one sort per segment; the stream's unique keys
    # are their union (no sort of the whole stream, no inverse index of length n)
    T = data.space.T
    bounds = np.concatenate([[0], sizes])
    seg_keys, seg_cnt = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        k, c = np.unique(pair_keys(data, int(lo), int(hi)), return_counts=True)
        seg_keys.append(k)
        seg_cnt.append(c)
    uniq = np.unique(np.concatenate(seg_keys))
    x, a, b = uniq // (T * T), (uniq // T) % T, uniq % T
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    upair, uinv = np.unique((x * T + lo) * T + hi, return_inverse=True)
    U = upair.size
    entry = uinv.ravel() + np.where(a <= b, 0, U)  # ordered unique pair -> entry in [0, 2U)
    pos = (upair // T).astype(np.int64)  # x·T + a
    neg = ((upair // (T * T)) * T + upair % T).astype(np.int64)  # x·T + b
    ptr = np.concatenate([[0], np.cumsum([k.size for k in seg_keys])]).astype(np.int64)
    segments = (entry[np.searchsorted(uniq, np.concatenate(seg_keys))].astype(np.int64),
                np.concatenate(seg_cnt).astype(np.float64), ptr)
    return (pos, neg, segments, sizes)


_STREAM_TOKENS = itertools.count()


def _stream_token(data: Preferences) -> int | None:
    """A token naming ``data`` for as long as it lives, or None when its arrays are writeable
    (values derived from it could go stale)."""
    if data.x.flags.writeable or data.y_pos.flags.writeable or data.y_neg.flags.writeable:
        return None
    tok = data.__dict__.get("_token")
    if tok is None:
        tok = next(_STREAM_TOKENS)
        object.__setattr__(data, "_token", tok)  # a frozen dataclass: a private slot
    return tok


def _stream_id(data: Preferences) -> tuple:
    """What names a stream in a cache key: its token while its arrays are read-only (a sweep's
    streams, ``genver.experiments.cells``: no pass over the pairs), else the pairs themselves."""
    tok = _stream_token(data)
    return ("stream token", tok) if tok is not None else ("stream pairs", data.x, data.y_pos, data.y_neg)


def _derived(data: Preferences, key: tuple, make, cache: RunCache | None):
    """``make()``, a function of the stream ``data`` (and ``key``), memoised in a run's
    ``cache`` (memo ``"stream_derived"``): a sweep's settings share one read-only stream per seed
    (``genver.experiments.cells``) and derive its segments, the reward MLE path and the
    likelihood paths of nested classes once. Without a cache it is computed afresh."""
    if cache is None:
        return make()
    return cache.get_or_make("stream_derived", cache_key(_stream_id(data), *key), make)


def _class_path(fin: FinitePolicyClass, data: Preferences, pos, neg, offset, segments, sizes, scale,
                cache: RunCache | None = None):
    """:func:`_path` over the members of ``fin``; given a run's ``cache``, for a class of a
    lineage (its members the first ``K`` of a sequence shared by nested classes,
    ``FinitePolicyClass.lineage``) the columns of members already computed for a class of the
    same lineage on the same stream are reused and only the new members' columns computed (each
    member's column is computed alone by the kernel, so the values are the same bits)."""
    scores = fin.logp.reshape(fin.size, -1)
    if fin.lineage is None or cache is None:
        return _path(scores, pos, neg, offset, segments, sizes, scale)
    key = cache_key(_stream_id(data), "lineage_path", sizes, fin.lineage[0], offset, float(scale))
    have = cache.get("stream_derived", key)
    K, Kc = fin.size, 0 if have is None else have.shape[1]
    if Kc >= K:
        return have[:, :K]
    new = _path(scores[Kc:], pos, neg, offset, segments, sizes, scale)
    ll = new if have is None else np.concatenate([have, new], axis=1)
    ll.setflags(write=False)
    now = cache.get("stream_derived", key)
    if now is None or now.shape[1] < K:  # the longer path replaces the shorter
        cache.put("stream_derived", key, ll, ll.nbytes)
    return ll


def _pick_rows(ll: np.ndarray, members: np.ndarray):
    """:func:`finite_pick` of every row of ``ll`` (S, K): the same rule, the maxima and tie
    sets of all rows at once (``finite_pick`` itself runs only for rows with ties)."""
    from .._solve import TIE_RTOL
    vmax = ll.max(axis=1)
    with np.errstate(invalid="ignore"):  # −∞ − (−∞)
        ties = ll >= (vmax - TIE_RTOL * np.maximum(1.0, np.abs(vmax)))[:, None]
    ties[vmax == -np.inf] = True
    n_max = ties.sum(axis=1)
    first = ties.argmax(axis=1)
    return [(int(first[s]), False, 1) if n_max[s] == 1 else finite_pick(ll[s], members) for s in range(ll.shape[0])]


def _path(scores, pos, neg, offset, segments, sizes, scale):
    out = np.empty((sizes.size, scores.shape[0]))
    _kernels.class_bt_loglik_stream(np.ascontiguousarray(scores, dtype=np.float64), pos, neg,
                                    np.ascontiguousarray(offset, dtype=np.float64), *segments, float(scale), out)
    out[np.isnan(out)] = -np.inf  # as in dpo(): a member with π(y⁺) = π(y⁻) = 0 cannot explain the pair
    return out


def dpo_path(data: Preferences, sizes, policy_class, ref: Policy, beta: float, *,
             cache: RunCache | None = None) -> list[FitResult]:
    """:func:`dpo` over a finite class on every prefix ``data.head(n)``, ``n`` in ``sizes``
    (``cache``: a run's :class:`~genver.runcache.RunCache` for what the stream's other paths
    and nested classes share; None computes afresh)."""
    t0 = time.perf_counter()
    beta = check_beta(beta)
    fin = _policy_members(policy_class)
    if fin is None:
        raise ValueError("dpo_path needs a finite policy class (or Π(R) of a finite R)")
    pos, neg, segments, sizes = _stream(data, sizes, cache)
    lr = ref.logp.ravel()
    if not (np.isfinite(lr[pos]).all() and np.isfinite(lr[neg]).all()):
        raise ValueError("ref must give positive probability to every completion in the data")
    ll = _class_path(fin, data, pos, neg, -beta * (lr[pos] - lr[neg]), segments, sizes, beta, cache)
    rk = isinstance(policy_class, SoftOptimalPolicyClass)
    wall = (time.perf_counter() - t0) / sizes.size
    out, members = [], {}
    for row, (k, set_valued, n_max) in zip(ll, _pick_rows(ll, fin.logp)):
        if k not in members:  # one Policy object per picked member
            members[k] = fin.member(k)
        out.append(FitResult("dpo", float(row[k]), policy=members[k], policy_index=k,
                             reward_index=k if rk else None, set_valued=set_valued, wall_time=wall,
                             extra={"n_maximisers": n_max}))
    return out


def reward_mle_path(data: Preferences, sizes, reward_class, *, cache: RunCache | None = None) -> list[FitResult]:
    """:func:`reward_mle` over a finite class on every prefix ``data.head(n)`` (``cache``: as
    in :func:`dpo_path`)."""
    t0 = time.perf_counter()
    if not isinstance(reward_class, FiniteRewardClass):
        raise ValueError("reward_mle_path needs a finite reward class")
    pos, neg, segments, sizes = _stream(data, sizes, cache)
    K = reward_class.size

    def fit():
        ll = _path(reward_class.tables.reshape(K, -1), pos, neg, np.zeros(pos.size), segments, sizes, 1.0)
        return ll, _pick_rows(ll, reward_class.tables)

    ll, picks = _derived(data, ("reward_mle_path", sizes, reward_class.tables), fit, cache)
    wall = (time.perf_counter() - t0) / sizes.size
    out = []
    for row, (k, set_valued, n_max) in zip(ll, picks):
        out.append(FitResult("reward_mle", float(row[k]), reward=reward_class.tables[k], reward_index=k,
                             set_valued=set_valued, wall_time=wall, extra={"n_maximisers": n_max}))
    return out


def rm_rl_path(data: Preferences, sizes, reward_class, policy_class, ref: Policy, beta: float, *,
               prompt_weights=None, cache: RunCache | None = None) -> list[FitResult]:
    """:func:`rm_rl` with a finite ``R`` on every prefix; the RL step runs once per distinct
    ``r̂`` (``cache``: as in :func:`dpo_path`)."""
    t0 = time.perf_counter()
    rms = reward_mle_path(data, sizes, reward_class, cache=cache)
    rl_cache: dict = {}
    if isinstance(policy_class, FinitePolicyClass):  # J_β against every distinct r̂ in one pass
        need = list(dict.fromkeys(rm.reward_index for rm in rms))
        t1 = time.perf_counter()
        many = policy_class.rl_argmax_many([reward_class.tables[j] for j in need], ref, beta, prompt_weights,
                                           cache=cache)
        wall = (time.perf_counter() - t1) / len(need)
        for j, res in zip(need, many):  # as rl_step() wraps rl_argmax()
            rl_cache[j] = FitResult("rl_step", res.objective, policy=res.policy, reward=reward_class.tables[j],
                                    policy_index=res.index, params=res.params, iterations=res.iterations,
                                    converged=True, grad_norm=res.grad_norm, wall_time=wall,
                                    extra={"residual_kl": res.residual_kl})
    out = []
    for rm in rms:
        if rm.reward_index not in rl_cache:
            rl_cache[rm.reward_index] = rl_step(rm.reward, policy_class, ref, beta, prompt_weights)
        rl = rl_cache[rm.reward_index]
        out.append(FitResult("rm_rl", rm.objective, policy=rl.policy, reward=rm.reward,
                             policy_index=rl.policy_index, reward_index=rm.reward_index, params=rl.params,
                             converged=rl.converged, iterations=rl.iterations, grad_norm=rl.grad_norm,
                             set_valued=rm.set_valued, extra={"rl_objective": rl.objective,
                                                              "residual_kl": rl.extra["residual_kl"], **rm.extra}))
    wall = (time.perf_counter() - t0) / len(out)
    for r in out:
        r.wall_time = wall
    return out
