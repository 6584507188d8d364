r"""Tabular classes (``TabularPolicyClass``, ``TabularRewardClass``): every estimator's solver,
registered in :mod:`genver.estimators.solvers`. Pairs (DPO, IPO, reward MLE):

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
  ``(L_w + λI) u = g`` are solved by :class:`genver._laplacian.LaplacianRidge`: the Laplacian is
  block diagonal over the connected components of the pair graph (a refinement of the
  prompts); prompts and components of at most ``DENSE_MAX`` (a few hundred, the measured
  crossover) touched completions are dense Cholesky/LU solves, larger components
  Jacobi-preconditioned conjugate gradients on a sparse (CSR) matrix (DPO and reward MLE: to
  an inexact-Newton forcing term, then as tightly as the stop test needs; IPO: to a relative
  residual of 1e-13) — Newton stays exact because its stopping rule reads the exactly evaluated
  gradient and bounds the exact step, never trusting a loose one. Untouched completions get no matrix row (their
  Newton component is the
  closed form ``g/λ`` for DPO and IPO, and they are not variables of the reward MLE), and each
  objective/gradient evaluation is ``O(pairs + P·T)``: a fit needs ``O(P·T + distinct pairs)``
  memory (``benchmarks/bench_fit_scale.py``: ``T = 2^20`` with ``10^7`` pairs).

Demonstrations (SFT, MaxEnt IRL): the tabular objective in the reward-scale variable ``u`` and
its per-prompt Sherman–Morrison Newton step, derived in :mod:`genver.estimators.imitation`.
"""
from __future__ import annotations

import numpy as np

from .. import _kernels
from .._laplacian import LaplacianRidge
from .._solve import NEWTON_RTOL, check_l2, converged, newton
from ..classes import TabularPolicyClass, TabularRewardClass
from ..policy import Policy, logsumexp_rows, node_score_coeff
from ..preferences import PairCounts
from .base import DEFAULT_L2, FitResult, bt_weights, newton_gtol
from .solvers import (
    PolicyParametrisation,
    dpo_gd_solver,
    dpo_solver,
    gradient_solver,
    ipo_solver,
    irl_solver,
    reward_mle_solver,
    sft_solver,
)

__all__ = ["dpo_tabular_objective"]


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



def dpo_tabular_objective(c: PairCounts, ref: Policy, beta: float, l2: float):
    """``z ↦ (objective, ∂objective/∂z, log π_z)`` of tabular DPO over the logits ``z`` of
    ``π_z = softmax(log π_ref + z)``: the Bradley–Terry log-likelihood of
    ``f = r_π = β log π_z/π_ref`` (summed over pairs) minus ``(λ/2) Σ_x Σ_y (f − f̄(x))²``. Since
    ``∂f_y/∂z_u = β(δ_yu − π_u)`` within a prompt, ``∂obj/∂z = β(g − π Σ_y g)``, ``g = ∂obj/∂f``.
    Used by :func:`dpo` (Newton; Hessian in the module docstring) and
    :func:`genver.estimators.gradient.dpo_gd` (plain steps).

    Parameters
    ----------
    c : PairCounts
        The pair counts.
    ref : Policy
        The reference ``π_ref``.
    beta : float
        The KL weight ``β > 0``.
    l2 : float
        The ridge weight ``λ ≥ 0``.

    Returns
    -------
    Callable
        ``z ↦ (float, np.ndarray, np.ndarray)``: the objective, its gradient (shape ``(P, T)``)
        and ``log π_z`` (unnormalised rows), for logits ``z`` of shape ``(P, T)``.
    """
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



@dpo_solver.register(TabularPolicyClass)
def _dpo(policy_class, c, ref, beta, l2):
    sp = c.space
    ref.require_full_support("ref")
    l2 = check_l2(DEFAULT_L2 if l2 is None else l2, positive=True)
    lr = ref.logp
    pos, neg_ = c.pos_flat, c.neg_flat  # computed once, shared by the objective and the solver
    objective = _dpo_objective(c, (pos, neg_), ref, beta, l2)

    def neg(zflat):
        obj, gz, _ = objective(zflat.reshape(sp.shape))
        return -obj, -gz.ravel()

    # −∇²_z = β²(L_w + λC), w from the reward margins f(y⁺) − f(y⁻) = β(z(y⁺) − z(y⁻))
    solve = _logit_newton_solve(c, lambda z: bt_weights(beta * (z[pos] - z[neg_]), c.count), l2, beta * beta,
                                (pos, neg_))
    res = newton(neg, solve, np.zeros(sp.P * sp.T), newton_gtol(c), inexact=True, hess_min=beta * beta * l2)
    s = lr + res.x.reshape(sp.shape)
    pol = Policy(sp, s - logsumexp_rows(s)[:, None])
    return FitResult("dpo", -res.fun, policy=pol, reward=beta * (pol.logp - lr),
                     converged=converged(res.grad_norm, c.n_pairs), iterations=res.nit, grad_norm=res.grad_norm,
                     identified=_identified(sp, c, (pos, neg_)),
                     extra={"l2": l2, "solver": "newton", "solver_status": res.status})


@ipo_solver.register(TabularPolicyClass)
def _ipo(policy_class, c, ref, scale, target, l2, average):
    sp = c.space
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
    res = newton(neg, solve, np.zeros(sp.P * sp.T), newton_gtol(c))
    s = lr2 + res.x.reshape(sp.shape)
    pol = Policy(sp, s - logsumexp_rows(s)[:, None])
    return FitResult("ipo", -res.fun, policy=pol, converged=converged(res.grad_norm, c.n_pairs),
                     iterations=res.nit, grad_norm=res.grad_norm, identified=_identified(sp, c),
                     extra={"l2": l2, "average": average, "solver": "newton", "solver_status": res.status})


@reward_mle_solver.register(TabularRewardClass)
def _reward_mle(reward_class, c, l2):
    sp = c.space
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
        u = lap.solve(bt_weights(v[pos] - v[neg_], c.count), l2, g - bmean(g), rtol)
        return u - bmean(u) + bmean(v)

    res = newton(neg, solve, np.zeros(cov.size), newton_gtol(c), inexact=True, hess_min=l2)
    r = np.zeros(sp.P * sp.T)
    r[cov] = res.x
    return FitResult("reward_mle", -res.fun, reward=r.reshape(sp.shape),
                     converged=converged(res.grad_norm, c.n_pairs), iterations=res.nit,
                     grad_norm=res.grad_norm, identified=ident,
                     extra={"l2": l2, "solver": "newton", "solver_status": res.status})


# -- demonstrations (SFT, MaxEnt IRL) -------------------------------------------------------
def _demo_identified(C: np.ndarray) -> np.ndarray:
    return np.broadcast_to(C.sum(axis=1, keepdims=True) > 0, C.shape).copy()


def _tabular_objective(C: np.ndarray, lr: np.ndarray, beta: float, l2: float):
    """Penalised log-likelihood of ``π = softmax(log π_ref + u/β)`` as a function of the
    reward-scale variable ``u`` (P, T): ``u = β z`` for SFT logits ``z``, ``u = r`` for MaxEnt
    IRL (the same function). Returns ``f(u) -> (obj, grad, logp)``."""
    Nx = C.sum(axis=1, keepdims=True)

    def f(u):
        s = lr + u / beta
        logp = s - logsumexp_rows(s)[:, None]
        uc = u - u.mean(axis=1, keepdims=True)  # = r_π − mean (constants cancel)
        ll = float(np.sum(C * logp))
        obj = ll - 0.5 * l2 * float(np.sum(uc * uc))
        grad = (C - Nx * np.exp(logp)) / beta - l2 * uc
        return obj, grad, logp

    return f


def _tabular_newton(C: np.ndarray, lr: np.ndarray, beta: float, l2: float, a: float):
    """Maximise the tabular objective of :func:`_tabular_objective` over ``x`` with ``u = a·x``
    (``a = β``: SFT logits; ``a = 1``: IRL reward) by :func:`genver._solve.newton`; the Newton
    step is the per-prompt Sherman–Morrison solve of the module docstring. Returns the
    :class:`~genver._solve.NewtonResult` (``fun``/``jac``: the negated objective and its
    gradient in ``x``)."""
    f = _tabular_objective(C, lr, beta, l2)
    shape = C.shape
    k = C.sum(axis=1, keepdims=True) / (beta * beta)

    def neg(xflat):
        obj, gu, _ = f(a * xflat.reshape(shape))
        return -obj, -(a * gu).ravel()

    def solve(xflat, g):  # H_x⁻¹ g with H_x = a² [(N_x/β²)(diag π − ππᵀ) + λ C_T] on 1⊥
        s = lr + (a / beta) * xflat.reshape(shape)
        p = np.exp(s - logsumexp_rows(s)[:, None])
        g = g.reshape(shape)
        g = g - g.mean(axis=1, keepdims=True)
        m = k * p + l2  # M = diag(kπ + λ) > 0
        mg, mp = g / m, p / m
        denom = np.sum(p * (l2 / m), axis=1, keepdims=True)  # 1 − k πᵀM⁻¹π, > 0 for λ > 0
        d = mg + (k * np.sum(p * mg, axis=1, keepdims=True) / denom) * mp
        d = d - d.mean(axis=1, keepdims=True)
        return (d / (a * a)).ravel()

    return newton(neg, solve, np.zeros(C.size), NEWTON_RTOL * max(1.0, float(C.sum())))


def _sft_tabular_objective(z, C, lr, beta, l2):
    """SFT objective and gradient over the logits ``z`` (P, T) (exposed for tests)."""
    obj, gu, _ = _tabular_objective(C, lr, beta, l2)(beta * z)
    return obj, beta * gu


def _irl_tabular_objective(r, C, lr, beta, l2):
    """MaxEnt-IRL objective and gradient over the reward table ``r`` (exposed for tests)."""
    obj, gu, _ = _tabular_objective(C, lr, beta, l2)(r)
    return obj, gu



@sft_solver.register(TabularPolicyClass)
def _sft(policy_class, C, n, ref, beta, l2):
    sp = ref.space
    l2 = check_l2(DEFAULT_L2 if l2 is None else l2, positive=True)
    ref.require_full_support("ref")
    lr = ref.logp
    res = _tabular_newton(C, lr, beta, l2, beta)  # over the logits z (u = βz)
    s = lr + res.x.reshape(sp.shape)
    pol = Policy(sp, s - logsumexp_rows(s)[:, None])
    return FitResult("sft", -res.fun, policy=pol, reward=beta * (pol.logp - lr),
                     converged=converged(res.grad_norm, n), iterations=res.nit, grad_norm=res.grad_norm,
                     identified=_demo_identified(C),
                     extra={"l2": l2, "solver": "newton", "solver_status": res.status})


@irl_solver.register(TabularRewardClass)
def _irl(reward_class, C, n, ref, beta, l2):
    sp = ref.space
    lr = ref.logp
    l2 = check_l2(DEFAULT_L2 if l2 is None else l2, positive=True)
    ref.require_full_support("ref")
    res = _tabular_newton(C, lr, beta, l2, 1.0)  # over the reward table r (u = r)
    r = res.x.reshape(sp.shape)
    r = r - r.mean(axis=1, keepdims=True)
    _, _, logp = _tabular_objective(C, lr, beta, l2)(r)
    return FitResult("maxent_irl", -res.fun, policy=Policy(sp, logp), reward=r,
                     converged=converged(res.grad_norm, n), iterations=res.nit, grad_norm=res.grad_norm,
                     identified=_demo_identified(C),
                     extra={"l2": l2, "solver": "newton", "solver_status": res.status})


@dpo_gd_solver.register(TabularPolicyClass)
def _dpo_gd(policy_class, c, ref, beta, l2):
    ref.require_full_support("ref")
    l2 = check_l2(DEFAULT_L2 if l2 is None else l2, positive=True)
    return dpo_tabular_objective(c, ref, beta, l2), l2


@gradient_solver.register(TabularPolicyClass)
def _gradient(policy_class, ref):
    sp = ref.space

    def cond_of(p):
        return p - logsumexp_rows(p)[..., None]

    def grad_of(cond, g):
        return node_score_coeff(sp, cond, g)

    return PolicyParametrisation(np.array(ref.cond), cond_of, grad_of, False)  # per-node logits, π_0 = π_ref
