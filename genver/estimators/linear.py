r"""Linear reward classes and log-linear policy classes (``LinearRewardClass``,
``LogLinearPolicyClass``): every estimator's solver, registered in
:mod:`genver.estimators.solvers` (``Π(R)`` of a linear ``R``, the trajectory-level exponential
family, reaches the linear fits through :mod:`genver.estimators.soft_optimal`). Pairs:

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

Demonstrations (MaxEnt IRL over a linear ``R``, SFT over ``Π(R)`` of it — the same problem — or
a log-linear ``Π``): L-BFGS with the exact gradients of :mod:`genver.estimators.imitation`.
"""
from __future__ import annotations

import numpy as np

from .. import _kernels
from .._solve import check_l2, converged, lbfgs, newton
from ..classes import LinearRewardClass, LogLinearPolicyClass
from ..policy import Policy, logsumexp_rows, sequence_logp_from_cond
from ..preferences import PairCounts
from .base import FitResult, bt_weights, newton_gtol
from .solvers import (
    PolicyParametrisation,
    dpo_solver,
    gradient_solver,
    ipo_solver,
    irl_solver,
    reward_mle_solver,
    sft_solver,
)

__all__ = ["LINEAR_PAIRS_DENSE_MAX", "linear_demo_fit"]

#: Largest ``distinct pairs × d`` for which the linear reward MLE builds ``D = φ(y⁺) − φ(y⁻)``
#: (2**22 float64 = 32 MiB); above it (and ``λ > 0``) :func:`_linear_reward_mle_by_features`.
LINEAR_PAIRS_DENSE_MAX = 2**22


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
    from scipy import linalg
    from scipy import optimize as _opt

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
        wk = bt_weights(Dl @ w, cl)
        if Q is None:
            H = (Dl.T * wk) @ Dl
            H[np.diag_indices(d)] += l2
            return linalg.solve(H, g, assume_a="pos", check_finite=False)
        if Q.shape[1] == 0:
            return np.zeros(d)
        B = Dl @ Q
        return Q @ linalg.solve((B.T * wk) @ B, Q.T @ g, assume_a="pos", check_finite=False)

    return newton(neg, solve, np.zeros(d), gtol)


def _linear_reward_mle_by_features(c: PairCounts, reward_class, phi: np.ndarray, l2: float,
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
        _kernels.pair_laplacian_times(pos, neg_, bt_weights(margins(w), c.count), phi, lphi)
        H = phi.T @ lphi
        H[np.diag_indices(d)] += l2
        return linalg.solve(H, g, assume_a="pos", check_finite=False)

    res = newton(negobj, solve, np.zeros(d), newton_gtol(c) if gtol is None else gtol)
    w = res.x
    return FitResult("reward_mle", -res.fun, reward=reward_class.reward(w), params=w,
                     converged=converged(res.grad_norm, c.n_pairs), iterations=res.nit,
                     grad_norm=res.grad_norm,
                     extra={"l2": l2, "solver": "newton (features)", "solver_status": res.status, "mle_exists": True})


@reward_mle_solver.register(LinearRewardClass)
def _reward_mle(reward_class, c, l2):
    sp = c.space
    l2 = check_l2(0.0 if l2 is None else l2, positive=False)
    phi = reward_class.phi.reshape(sp.P * sp.T, -1)
    if l2 > 0 and c.count.size * phi.shape[1] > LINEAR_PAIRS_DENSE_MAX:
        return _linear_reward_mle_by_features(c, reward_class, phi, l2)
    D = phi[c.pos_flat] - phi[c.neg_flat]  # (M, d)

    def neg(w):
        z = D @ w
        ll = c.count @ np.where(z >= 0, -np.log1p(np.exp(-np.abs(z))), z - np.log1p(np.exp(-np.abs(z))))
        s = 1.0 / (1.0 + np.exp(np.clip(z, -700, 700)))  # σ(−z)
        grad = D.T @ (c.count * s) - l2 * w
        return -(ll - 0.5 * l2 * w @ w), -grad

    res = _linear_bt_newton(neg, D, c.count, l2, newton_gtol(c))
    if res is None:  # λ = 0 and the data are (quasi-)separable: no finite MLE, today's L-BFGS
        lb, g = lbfgs(neg, np.zeros(reward_class.n_params))
        w = lb.x
        return FitResult("reward_mle", -float(lb.fun), reward=reward_class.reward(w), params=w,
                         converged=converged(g, c.n_pairs), iterations=int(lb.nit), grad_norm=g,
                         extra={"l2": l2, "solver": "lbfgs", "mle_exists": False})
    w = res.x
    return FitResult("reward_mle", -res.fun, reward=reward_class.reward(w), params=w,
                     converged=converged(res.grad_norm, c.n_pairs), iterations=res.nit,
                     grad_norm=res.grad_norm,
                     extra={"l2": l2, "solver": "newton", "solver_status": res.status, "mle_exists": True})


@dpo_solver.register(LogLinearPolicyClass)
def _dpo(policy_class, c, ref, beta, l2):
    sp = c.space
    ref.require_full_support("ref")
    l2 = check_l2(0.0 if l2 is None else l2, positive=False)
    if not np.array_equal(ref.logp, policy_class.ref.logp):
        raise ValueError("ref must be the log-linear class's own reference policy")
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
                     converged=converged(g, c.n_pairs), iterations=int(res.nit), grad_norm=g, extra={"l2": l2})


@ipo_solver.register(LogLinearPolicyClass)
def _ipo(policy_class, c, ref, scale, target, l2, average):
    sp = c.space
    l2 = check_l2(0.0 if l2 is None else l2, positive=False)
    if not np.array_equal(ref.logp, policy_class.ref.logp):
        raise ValueError("ref must be the log-linear class's own reference policy")

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
                     iterations=int(res.nit), grad_norm=g,
                     extra={"l2": l2, "average": average})


# -- demonstrations (SFT, MaxEnt IRL) -------------------------------------------------------
def _linear_objective(C, lr, phi, beta, l2):
    """MaxEnt-IRL log-likelihood over ``π*_w ∝ π_ref exp(w·φ/β)`` minus ``(λ/2)‖w‖²``."""
    Nx = C.sum(axis=1)
    supp = C > 0
    Cphi = np.einsum("pt,ptd->d", C, phi)

    def f(w):
        s = lr + phi @ w / beta
        logp = s - logsumexp_rows(s)[:, None]
        p = np.exp(logp)
        ll = float(np.sum(C[supp] * logp[supp]))
        Ephi = np.einsum("pt,ptd->pd", p, phi)
        grad = (Cphi - Nx @ Ephi) / beta - l2 * w
        return ll - 0.5 * l2 * float(w @ w), grad, logp

    return f


def linear_demo_fit(C, lr, phi, beta, l2):
    """MaxEnt IRL over the linear exponential family ``π*_w ∝ π_ref exp(w·φ/β)`` by L-BFGS from
    ``w = 0``: maximises ``Σ_{x,y} C(x,y) log π*_w(y|x) − (λ/2)‖w‖²``.

    Parameters
    ----------
    C : np.ndarray
        Demonstration counts ``C(x, y)``, shape ``(P, T)``.
    lr : np.ndarray
        ``log π_ref``, shape ``(P, T)``.
    phi : np.ndarray
        Features ``φ``, shape ``(P, T, d)``.
    beta : float
        The KL weight ``β > 0``.
    l2 : float
        The ridge weight ``λ ≥ 0``.

    Returns
    -------
    tuple
        ``(scipy OptimizeResult, max-abs gradient, log π*_ŵ)`` (the last of shape ``(P, T)``).
    """
    f = _linear_objective(C, lr, phi, beta, l2)

    def neg(w):
        obj, g, _ = f(w)
        return -obj, -g

    res, g = lbfgs(neg, np.zeros(phi.shape[2]))
    _, _, logp = f(res.x)
    return res, g, logp


@sft_solver.register(LogLinearPolicyClass)
def _sft(policy_class, C, n, ref, beta, l2):
    sp = ref.space
    l2 = check_l2(0.0 if l2 is None else l2, positive=False)

    def neg(theta):
        cond = policy_class.cond(theta)
        logp = sequence_logp_from_cond(sp, cond)
        ll = float(np.sum(C[C > 0] * logp[C > 0]))
        grad = policy_class.contract_score(cond, C) - l2 * theta
        return -(ll - 0.5 * l2 * float(theta @ theta)), -grad

    res, g = lbfgs(neg, np.zeros(policy_class.n_params))
    pol = policy_class.policy(res.x)
    return FitResult("sft", -float(res.fun), policy=pol, params=res.x, converged=converged(g, n),
                     iterations=int(res.nit), grad_norm=g,
                     extra={"l2": l2})


@irl_solver.register(LinearRewardClass)
def _irl(reward_class, C, n, ref, beta, l2):
    sp = ref.space
    lr = ref.logp
    l2 = check_l2(0.0 if l2 is None else l2, positive=False)
    ref.require_full_support("ref")
    res, g, logp = linear_demo_fit(C, lr, reward_class.phi, beta, l2)
    w = res.x
    return FitResult("maxent_irl", -float(res.fun), policy=Policy(sp, logp), reward=reward_class.reward(w),
                     params=w, converged=converged(g, n), iterations=int(res.nit), grad_norm=g, extra={"l2": l2})


@gradient_solver.register(LogLinearPolicyClass)
def _gradient(policy_class, ref):
    return PolicyParametrisation(np.zeros(policy_class.n_params), policy_class.cond, policy_class.contract_score, True)
