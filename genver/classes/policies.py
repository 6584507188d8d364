r"""Policy classes ``Π`` (generators). Each reports ``size`` (finite classes) or ``n_params``
(parametric classes), and solves the RL step ``argmax_{π∈Π} J_β(π; r)`` — by the reverse-KL
identity of :mod:`genver.softrl`, the reverse-KL projection of ``π*_r`` onto ``Π``.

* :class:`TabularPolicyClass` — every full-support token-level policy; ``P·(V**H − 1)``
  free parameters (``V − 1`` per internal node). RL step: exact backward induction.
* :class:`LogLinearPolicyClass` — ``π_θ(a|x,s) ∝ π_ref(a|x,s) exp(θ·ψ(x,s,a))``, ``d``
  parameters. Sequence score gradient ``∇_θ log π_θ(y|x) = Σ_h ψ(x,s_h,a_h) − E_{π_θ(·|s_h)} ψ``.
  RL step: L-BFGS on ``−J_β`` with the exact gradient
  ``∇J = Σ_x ρ_x Σ_y π_θ(y|x) g(x,y) ∇ log π_θ(y|x)``, ``g = r − β log π_θ/π_ref``; ``J_β`` is
  concave in ``θ`` only in special cases, so the result carries the final gradient norm and the
  reverse-KL residual ``KL(π_θ ‖ π*_r)`` as its certificate (zero iff ``π*_r`` was reached).
* :class:`SoftOptimalPolicyClass` — ``Π(R) = { π*_r : r ∈ R }`` for a finite or linear ``R``.
  For linear ``R`` it is the trajectory-level exponential family
  ``π_w(y|x) ∝ π_ref(y|x) exp(w·φ(x,y)/β)``.
* :class:`~genver.classes.finite_policies.FinitePolicyClass` — ``K`` explicit members; exact
  argmax of ``J_β`` over them (:mod:`genver.classes.finite_policies`, with
  :func:`~genver.classes.finite_policies.random_policy_class`; both re-exported here, as is
  :class:`~genver.classes.base.RLResult`).
"""
from __future__ import annotations

import numpy as np

from .._solve import lbfgs
from .._validation import check_beta
from ..policy import Policy, logsumexp_rows, node_score_coeff, sequence_logp_from_cond
from ..softrl import soft_optimal
from ..spaces import TreeSpace
from .base import PolicyClassDefaults, RLResult, check_rl_inputs, reverse_kl_residual
from .finite_policies import FinitePolicyClass
from .finite_policies import random_policy_class as random_policy_class  # re-export (old import path)
from .rewards import FiniteRewardClass, LinearRewardClass

# documented here: the classes defined in this module (FinitePolicyClass, random_policy_class and
# RLResult are re-exported from genver.classes.finite_policies and .base, where they are documented)
__all__ = ["TabularPolicyClass", "LogLinearPolicyClass", "SoftOptimalPolicyClass"]


def _rl_by_lbfgs(negJ, x0, policy_of, r, ref, beta, rho, gtol, max_iter) -> RLResult:
    """Maximise ``J_β`` over a parametric class by L-BFGS; certify with the gradient norm and
    the reverse-KL residual to ``π*_r``."""
    res, gnorm = lbfgs(negJ, x0, gtol=gtol, max_iter=max_iter)
    pol = policy_of(res.x)
    target = soft_optimal(r, ref, beta).policy
    return RLResult(policy=pol, objective=-float(res.fun), params=res.x,
                    residual_kl=reverse_kl_residual(pol, target.logp, rho), grad_norm=gnorm, iterations=int(res.nit))



class TabularPolicyClass(PolicyClassDefaults):
    """Every full-support token-level policy on ``space``."""

    kind = "tabular"
    size = None

    def __init__(self, space: TreeSpace):
        self.space = space

    @property
    def n_params(self) -> int:
        """``P·(T − 1)``: ``V − 1`` free logits per internal node."""
        return self.space.P * (self.space.T - 1)

    def rl_argmax(self, reward, ref: Policy, beta: float, prompt_weights=None) -> RLResult:
        """The RL step by exact backward induction: ``π*_r`` itself (``residual_kl = 0``).

        Parameters
        ----------
        reward : array_like
            The reward ``r``, shape ``(P, T)``.
        ref : Policy
            The reference ``π_ref``.
        beta : float
            The KL weight ``β > 0``.
        prompt_weights : array_like or None
            ``ρ``, shape ``(P,)``; ``None``: uniform.

        Returns
        -------
        RLResult
            The maximiser, its ``J_β`` and the certificate (``residual_kl``, ``grad_norm``).
        """
        r, beta, rho = check_rl_inputs(self.space, ref, reward, beta, prompt_weights)
        so = soft_optimal(r, ref, beta)
        return RLResult(policy=so.policy, objective=float(beta * so.log_Z @ rho), residual_kl=0.0)

    def __repr__(self):
        return f"TabularPolicyClass({self.space!r})"



class LogLinearPolicyClass(PolicyClassDefaults):
    """``π_θ(a|x,s) ∝ π_ref(a|x,s) exp(θ·ψ(x,s,a))``, ``psi`` of shape (P, n_internal, V, d)."""

    kind = "loglinear"
    size = None

    def __init__(self, space: TreeSpace, ref: Policy, psi):
        if not isinstance(ref, Policy) or ref.space != space:
            raise ValueError(f"ref must be a Policy on {space!r}")
        ref.require_full_support("ref")
        f = np.asarray(psi)
        want = (space.P, space.n_internal, space.V)
        if f.ndim != 4 or f.shape[:3] != want or f.shape[3] < 1:
            raise ValueError(f"psi must have shape (P, n_internal, V, d) with leading {want}, got {f.shape}")
        f = np.ascontiguousarray(f, dtype=np.float64)
        if not np.isfinite(f).all():
            raise ValueError("psi contains NaN or inf")
        self.space, self.ref, self.psi = space, ref, f

    @property
    def n_params(self) -> int:
        """``d``, the width of ``psi``."""
        return self.psi.shape[3]

    @property
    def identifiable_dim(self):
        """Parameters that change the policy: the rank of the token features centred over the
        ``V`` actions of each node (a shift common to a node's actions cancels in its softmax);
        ``n_params`` when ``psi`` has more than 2**24 entries (the rank would cost too much)."""
        psi = self.psi
        if psi.size > 2**24:
            return self.n_params
        centred = psi - psi.mean(axis=2, keepdims=True)
        return float(np.linalg.matrix_rank(centred.reshape(-1, psi.shape[3])))

    def _check_theta(self, theta):
        t = np.asarray(theta, dtype=np.float64)
        if t.shape != (self.n_params,):
            raise ValueError(f"theta must have shape (d,) = ({self.n_params},), got {t.shape}")
        if not np.isfinite(t).all():
            raise ValueError("theta contains NaN or inf")
        return t

    def cond(self, theta) -> np.ndarray:
        """Flat token conditionals ``log π_θ(a|x,s)``, shape (P, n_internal, V).

        Parameters
        ----------
        theta : array_like
            The parameters ``θ``, shape ``(d,)``.

        Returns
        -------
        np.ndarray
            ``log π_θ(a|x,s)``, shape ``(P, n_internal, V)``.
        """
        logits = self.ref.cond + self.psi @ self._check_theta(theta)
        return logits - logsumexp_rows(logits)[..., None]

    def policy(self, theta) -> Policy:
        """The member ``π_θ``.

        Parameters
        ----------
        theta : array_like
            The parameters ``θ``, shape ``(d,)``.

        Returns
        -------
        Policy
            ``π_θ``, its token conditionals cached.
        """
        return Policy.from_cond(self.space, self.cond(theta))

    def contract_score(self, cond: np.ndarray, g: np.ndarray) -> np.ndarray:
        """``Σ_x Σ_y g(x,y) ∇_θ log π_θ(y|x)`` for weights ``g`` (P, T), computed on the tree:
        ``Σ_h Σ_{s,a} ψ(s,a) [G(s·a) − π(a|s) G(s)]`` with ``G(node) = Σ_{y ⊒ node} g(y)``.

        Parameters
        ----------
        cond : np.ndarray
            ``log π_θ(a|x,s)`` (:meth:`cond`), shape ``(P, n_internal, V)``.
        g : np.ndarray
            Per-completion weights, shape ``(P, T)``.

        Returns
        -------
        np.ndarray
            The contraction, shape ``(d,)``.
        """
        coeff = node_score_coeff(self.space, cond, g)
        return np.tensordot(coeff, self.psi, axes=3)

    def rl_argmax(self, reward, ref: Policy, beta: float, prompt_weights=None, *, theta0=None,
                  gtol: float = 1e-10, max_iter: int = 5000) -> RLResult:
        """The RL step by L-BFGS on ``−J_β(π_θ; r)`` with the exact gradient (module docstring).

        Parameters
        ----------
        reward : array_like
            The reward ``r``, shape ``(P, T)``.
        ref : Policy
            The reference ``π_ref``.
        beta : float
            The KL weight ``β > 0``.
        prompt_weights : array_like or None
            ``ρ``, shape ``(P,)``; ``None``: uniform.
        theta0 : array_like or None
            Starting parameters, shape ``(d,)``; ``None``: ``θ = 0`` (``π_θ = π_ref``).
        gtol : float
            L-BFGS gradient tolerance (max-abs gradient).
        max_iter : int
            L-BFGS iteration cap.

        Returns
        -------
        RLResult
            The maximiser, its ``J_β`` and the certificate (``residual_kl``, ``grad_norm``).
        """
        r, beta, rho = check_rl_inputs(self.space, ref, reward, beta, prompt_weights)
        if ref.space != self.ref.space or not np.array_equal(ref.logp, self.ref.logp):
            raise ValueError("ref must be the class's own reference policy")
        ref_logp = self.ref.logp

        def negJ(theta):
            cond = self.cond(theta)
            logp = sequence_logp_from_cond(self.space, cond)
            p = np.exp(logp)
            g = r - beta * (logp - ref_logp)
            val = (p * g).sum(axis=-1) @ rho
            grad = self.contract_score(cond, p * g * rho[:, None])
            return -val, -grad

        x0 = np.zeros(self.n_params) if theta0 is None else self._check_theta(theta0)
        return _rl_by_lbfgs(negJ, x0, self.policy, r, ref, beta, rho, gtol, max_iter)

    def __repr__(self):
        return f"LogLinearPolicyClass(d={self.n_params}, {self.space!r})"



class SoftOptimalPolicyClass(PolicyClassDefaults):
    """``Π(R)`` for a finite or linear reward class ``R`` (reference ``ref``, KL weight β)."""

    kind = "soft_optimal"

    def __init__(self, reward_class, ref: Policy, beta: float):
        if not isinstance(reward_class, (FiniteRewardClass, LinearRewardClass)):
            raise ValueError("reward_class must be a FiniteRewardClass or LinearRewardClass")
        if not isinstance(ref, Policy) or ref.space != reward_class.space:
            raise ValueError("ref must be a Policy on the reward class's space")
        self.reward_class, self.ref, self.beta = reward_class, ref, check_beta(beta)
        self.space = reward_class.space

    @property
    def size(self):
        """``|R|`` of a finite ``R``; ``None`` for a linear one."""
        return self.reward_class.size

    @property
    def n_params(self):
        """``d`` of a linear ``R``; ``None`` for a finite one."""
        return self.reward_class.n_params

    def as_finite(self) -> FinitePolicyClass | None:
        """``Π(R)`` of a finite ``R`` as its member list (:meth:`to_finite`); ``None`` for a
        linear ``R``.

        Returns
        -------
        FinitePolicyClass or None
            The members, or ``None``.
        """
        return self.to_finite() if isinstance(self.reward_class, FiniteRewardClass) else None

    def to_finite(self) -> FinitePolicyClass:
        """``Π(R)`` of a finite ``R`` as a :class:`~genver.classes.finite_policies.FinitePolicyClass`
        (:meth:`~genver.classes.finite_policies.FinitePolicyClass.soft_optimal_of`).

        Returns
        -------
        FinitePolicyClass
            The soft-optimal policies of the members of ``R``, in order.
        """
        if not isinstance(self.reward_class, FiniteRewardClass):
            raise ValueError("only Π(R) of a finite R is a finite class")
        return FinitePolicyClass.soft_optimal_of(self.reward_class, self.ref, self.beta)

    def policy(self, w) -> Policy:
        """``π*_{w·φ}`` for linear ``R``.

        Parameters
        ----------
        w : array_like
            The reward weights, shape ``(d,)``.

        Returns
        -------
        Policy
            ``π_w(y|x) ∝ π_ref(y|x) exp(w·φ(x,y)/β)``.
        """
        if not isinstance(self.reward_class, LinearRewardClass):
            raise ValueError("policy(w) needs a linear reward class; use to_finite().member(k)")
        s = self.ref.logp + self.reward_class.reward(w) / self.beta
        return Policy(self.space, s - logsumexp_rows(s)[:, None])

    def rl_argmax(self, reward, ref: Policy, beta: float, prompt_weights=None, *,
                  gtol: float = 1e-10, max_iter: int = 5000) -> RLResult:
        """The RL step over ``Π(R)``: exact over the members of a finite ``R``, L-BFGS over ``w`` for a linear one.

        Parameters
        ----------
        reward : array_like
            The reward ``r``, shape ``(P, T)``.
        ref : Policy
            The reference ``π_ref``.
        beta : float
            The KL weight ``β > 0``.
        prompt_weights : array_like or None
            ``ρ``, shape ``(P,)``; ``None``: uniform.
        gtol : float
            L-BFGS gradient tolerance (max-abs gradient).
        max_iter : int
            L-BFGS iteration cap.

        Returns
        -------
        RLResult
            The maximiser, its ``J_β`` and the certificate (``residual_kl``, ``grad_norm``).
        """
        r, beta, rho = check_rl_inputs(self.space, ref, reward, beta, prompt_weights)
        if beta != self.beta or not np.array_equal(ref.logp, self.ref.logp):
            raise ValueError("Π(R) is defined for its own (ref, beta); RL must use the same ones")
        if isinstance(self.reward_class, FiniteRewardClass):
            return self.to_finite().rl_argmax(r, ref, beta, rho)
        phi = self.reward_class.phi

        def negJ(w):
            s = ref.logp + phi @ w / beta
            logp = s - logsumexp_rows(s)[:, None]
            p = np.exp(logp)
            g = r - beta * (logp - ref.logp)
            val = (p * g).sum(axis=-1) @ rho
            # ∇_w log π_w(y) = (φ(y) − E_w φ)/β and Σ_y π ∇log π = 0
            centred = g - (p * g).sum(axis=-1, keepdims=True)
            grad = np.einsum("pt,ptd->d", p * centred * rho[:, None], phi) / beta
            return -val, -grad

        return _rl_by_lbfgs(negJ, np.zeros(self.n_params), self.policy, r, ref, beta, rho, gtol, max_iter)

    def __repr__(self):
        return f"SoftOptimalPolicyClass({self.reward_class!r}, beta={self.beta})"

