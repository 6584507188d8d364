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
* :class:`FinitePolicyClass` — ``K`` explicit members ``(K, P, T)`` of sequence log-probs;
  generators for ``Π(R)`` and ``Π(R) ∪ D`` with random distractors ``D``.
  RL step: exact argmax of ``J_β`` over members, lowest index among values within a relative
  ``1e-12`` of the best (rounding never decides between near-identical members). ``J_β`` is
  ``Σ_x ρ_x (Σ_y π_k r − β KL(π_k ‖ π_ref))``: the member probabilities and KL terms are
  computed once per reference and kept on the (immutable) class, so each further reward costs
  one multiply-add per member entry; :meth:`FinitePolicyClass.rl_argmax_many` takes several
  rewards in one pass.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import _kernels
from .._solve import finite_pick, lbfgs
from .._validation import as_generator, check_beta, check_positive_int, check_prompt_weights
from ..policy import Policy, logsumexp_rows, node_score_coeff, sequence_logp_from_cond
from ..runcache import RunCache, cache_key
from ..softrl import kl_rows, rho_weighted, soft_optimal
from ..spaces import TreeSpace
from .rewards import FiniteRewardClass, LinearRewardClass

if TYPE_CHECKING:  # annotations only
    from .base import PolicyClass

__all__ = ["TabularPolicyClass", "LogLinearPolicyClass", "SoftOptimalPolicyClass",
           "FinitePolicyClass", "RLResult", "random_policy_class"]


@dataclass
class RLResult:
    """Outcome of an RL step ``argmax_{π∈Π} J_β(π; r)``.

    ``index`` is the chosen member (finite classes), ``params`` the parameters (parametric
    classes), ``objective`` the attained ``J_β``, ``residual_kl`` = ``E_x KL(π̂ ‖ π*_r)``
    (0 iff the class contains ``π*_r`` and it was found), ``grad_norm``/``iterations`` the
    optimiser's certificate where an optimiser ran.
    """

    policy: Policy
    objective: float
    residual_kl: float
    index: int | None = None
    params: np.ndarray | None = None
    grad_norm: float = 0.0
    iterations: int = 0


def _rl_common(space, ref, reward, beta, prompt_weights):
    if not isinstance(ref, Policy) or ref.space != space:
        raise ValueError(f"ref must be a Policy on {space!r}")
    beta = check_beta(beta)
    r = space.check_array("reward", reward)
    rho = check_prompt_weights(prompt_weights, space.P)
    return r, beta, rho


def _residual(policy: Policy, target_logp, rho) -> float:
    return float(rho_weighted(kl_rows(policy.logp, target_logp), rho))


class _PolicyClassDefaults:
    """What a :class:`~genver.classes.base.PolicyClass` provides unless the family knows better."""

    def as_finite(self) -> FinitePolicyClass | None:
        """The class as an explicit member list, or ``None`` (not a finite class)."""
        return None

    @property
    def identifiable_dim(self: PolicyClass) -> float | None:
        """``n_params``: every parameter is identifiable unless the family says otherwise."""
        return self.n_params

    def rl_argmax_many(self: PolicyClass, rewards, ref: Policy, beta: float, prompt_weights=None, *,
                       cache: RunCache | None = None) -> list[RLResult]:
        """:meth:`rl_argmax` for each reward in turn (``cache``: a run's
        :class:`~genver.runcache.RunCache`, unused here)."""
        return [self.rl_argmax(r, ref, beta, prompt_weights) for r in rewards]


def _rl_by_lbfgs(negJ, x0, policy_of, r, ref, beta, rho, gtol, max_iter) -> RLResult:
    """Maximise ``J_β`` over a parametric class by L-BFGS; certify with the gradient norm and
    the reverse-KL residual to ``π*_r``."""
    res, gnorm = lbfgs(negJ, x0, gtol=gtol, max_iter=max_iter)
    pol = policy_of(res.x)
    target = soft_optimal(r, ref, beta).policy
    return RLResult(policy=pol, objective=-float(res.fun), params=res.x,
                    residual_kl=_residual(pol, target.logp, rho), grad_norm=gnorm, iterations=int(res.nit))


class TabularPolicyClass(_PolicyClassDefaults):
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
        r, beta, rho = _rl_common(self.space, ref, reward, beta, prompt_weights)
        so = soft_optimal(r, ref, beta)
        return RLResult(policy=so.policy, objective=float(beta * so.log_Z @ rho), residual_kl=0.0)

    def __repr__(self):
        return f"TabularPolicyClass({self.space!r})"


class LogLinearPolicyClass(_PolicyClassDefaults):
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
        r, beta, rho = _rl_common(self.space, ref, reward, beta, prompt_weights)
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


class FinitePolicyClass(_PolicyClassDefaults):
    """``K`` explicit policies, sequence log-probs ``logp`` of shape (K, P, T)."""

    kind = "finite"
    n_params = None
    #: ``(token, K)`` when the members are the first ``K`` of a sequence of members named by the
    #: hashable ``token``: classes of one lineage agree on their common leading members (nested
    #: classes, e.g. ``Π(R) ∪ D`` for growing ``|D|`` from the same draws), so per-member work —
    #: likelihood paths, RL parts — is computed once for the lineage. ``None``: no lineage.
    lineage: tuple[Hashable, int] | None = None

    def __init__(self, space: TreeSpace, logp):
        lp = np.asarray(logp)
        if lp.ndim != 3 or lp.shape[1:] != space.shape or lp.shape[0] < 1:
            raise ValueError(f"logp must have shape (K, P, T) with K >= 1 and (P, T) = {space.shape}, got {lp.shape}")
        lp = np.ascontiguousarray(lp, dtype=np.float64)
        if np.isnan(lp).any() or np.isposinf(lp).any():
            raise ValueError("logp contains NaN or +inf")
        norm = logsumexp_rows(lp)
        if (np.abs(norm) > 1e-8).any():
            k, x = np.argwhere(np.abs(norm) > 1e-8)[0]
            raise ValueError(f"logp rows must be normalised; member {k}, prompt {x} has logsumexp {norm[k, x]:.3g}")
        lp.setflags(write=False)
        self.space, self.logp = space, lp

    @property
    def size(self) -> int:
        """``K = |Π|``."""
        return self.logp.shape[0]

    @property
    def log_size(self) -> float:
        """``log |Π|``, the term of the finite-class bounds."""
        return float(np.log(self.size))

    def as_finite(self) -> FinitePolicyClass:
        """The class itself.

        Returns
        -------
        FinitePolicyClass
            ``self``.
        """
        return self

    def member(self, k: int) -> Policy:
        """Member ``k`` as a :class:`Policy`.

        Parameters
        ----------
        k : int
            The member index, ``0 ≤ k < K``.

        Returns
        -------
        Policy
            ``π_k`` (a read-only view of row ``k`` of ``logp``).
        """
        if not 0 <= k < self.size:
            raise ValueError(f"member index must lie in [0, {self.size - 1}], got {k}")
        return Policy.from_normalised(self.space, self.logp[k])  # rows checked (or built normalised) with the class

    # -- generators --------------------------------------------------------------------
    @classmethod
    def soft_optimal_of(cls, reward_class: FiniteRewardClass, ref: Policy, beta: float) -> FinitePolicyClass:
        """``Π(R) = { π*_r : r ∈ R }`` in closed form ``log π_ref + r/β − log Z_r``.

        Parameters
        ----------
        reward_class : FiniteRewardClass
            ``R``.
        ref : Policy
            The reference ``π_ref``.
        beta : float
            The KL weight ``β > 0``.

        Returns
        -------
        FinitePolicyClass
            ``Π(R)``, member ``k`` the soft-optimal policy of reward ``k``.
        """
        if not isinstance(reward_class, FiniteRewardClass):
            raise ValueError("reward_class must be a FiniteRewardClass")
        beta = check_beta(beta)
        if ref.space != reward_class.space:
            raise ValueError("ref and reward_class live on different spaces")
        s = ref.logp[None] + reward_class.tables / beta
        return cls(reward_class.space, s - logsumexp_rows(s)[..., None])

    def with_distractors(self, n: int, random_state=None, *, ref: Policy | None = None,
                         beta: float = 1.0, scale: float = 1.0, lineage=None) -> FinitePolicyClass:
        """``Π ∪ D``: append ``n`` distractors, soft-optimal policies (w.r.t. ``ref``, default
        uniform) of reward tables with i.i.d. ``N(0, scale²)`` entries — members of the tabular
        class that are, almost surely, outside ``Π(R)``.

        Parameters
        ----------
        n : int
            Number of distractors, ``≥ 0`` (0: the class itself).
        random_state : None, int, SeedSequence or Generator
            Seed of the distractor tables.
        ref : Policy or None
            The reference of the distractors' soft-optimal policies; ``None``: uniform.
        beta : float
            Their KL weight ``β > 0``.
        scale : float
            Standard deviation of the distractor tables' entries.
        lineage : Hashable or None
            A token naming the member sequence the result begins (:attr:`lineage`; the caller
            vouches for it).

        Returns
        -------
        FinitePolicyClass
            The ``K + n`` members, the first ``K`` those of this class.
        """
        n = check_positive_int(n, "n", minimum=0)
        if n == 0:
            return self
        from ..policy import uniform_policy
        ref = uniform_policy(self.space) if ref is None else ref
        beta = check_beta(beta)
        scale = check_beta(scale, "scale")
        rng = as_generator(random_state)
        if (self.size + n) * self.space.P * self.space.T > 2**28:
            raise ValueError(f"(K + n)*P*T = {(self.size + n) * self.space.P * self.space.T} entries exceeds 2**28")
        lp = np.empty((self.size + n,) + self.space.shape)
        lp[: self.size] = self.logp
        d = lp[self.size :]
        if type(rng) is np.random.Generator:  # the same draws as rng.standard_normal((n, P, T)), in place
            _kernels.standard_normal_fill(rng, d.reshape(-1))
        else:
            rng.standard_normal(out=d)
        _kernels.soft_optimal_tables(np.ascontiguousarray(ref.logp, dtype=np.float64), d, scale, beta, d)
        return FinitePolicyClass._trusted(self.space, lp, lineage)  # normalised by construction

    @classmethod
    def _trusted(cls, space: TreeSpace, lp: np.ndarray, lineage=None) -> FinitePolicyClass:
        """A class from log-probs normalised by construction (C-contiguous float64 (K, P, T)):
        skips the validating constructor's passes over ``K·P·T`` entries. ``lineage``: a token
        naming the member sequence ``lp`` begins (see :attr:`lineage`)."""
        obj = cls.__new__(cls)
        lp.setflags(write=False)
        obj.space, obj.logp = space, lp
        if lineage is not None:
            obj.lineage = (lineage, lp.shape[0])
        return obj

    # -- RL ----------------------------------------------------------------------------
    def _rl_arrays(self, ref: Policy, cache: RunCache | None = None):
        """``(π_k, KL(π_k ‖ π_ref) per prompt)`` for every member: the reward-independent parts
        of ``J_β``, computed once per reference (the class is immutable) and reused by every
        RL step against another reward. Given a run's ``cache`` (memo ``"lineage_rl_parts"``:
        lineage token, ``log π_ref`` -> the parts of its first members), classes of one
        lineage share the parts of their common members."""
        cached = getattr(self, "_rl_cache", None)
        if cached is not None and (cached[0] is ref.logp or np.array_equal(cached[0], ref.logp)):
            return cached[1], cached[2]
        ref_lp = np.ascontiguousarray(ref.logp, dtype=np.float64)
        K = self.size
        key = None if self.lineage is None or cache is None else cache_key(self.lineage[0], ref_lp)
        have = None if key is None or cache is None else cache.get("lineage_rl_parts", key)
        Kc = 0 if have is None else have[0].shape[0]
        if have is not None and Kc >= K:  # a longer class of the lineage computed them
            probs, kl = have[0][:K], have[1][:K]
        else:  # members Kc … K−1 (each member's parts are computed alone: the same bits)
            probs = np.empty(self.logp.shape)
            kl = np.empty(self.logp.shape[:2])
            if have is not None:  # Kc ≥ 1: parts are stored for at least one member
                probs[:Kc], kl[:Kc] = have
            _kernels.finite_rl_parts(self.logp[Kc:], ref_lp, probs[Kc:], kl[Kc:])
            probs.setflags(write=False)
            kl.setflags(write=False)
            now = None if key is None or cache is None else cache.get("lineage_rl_parts", key)
            if key is not None and cache is not None and (now is None or now[0].shape[0] < K):
                # the longer parts replace the shorter
                cache.put("lineage_rl_parts", key, (probs, kl), probs.nbytes + kl.nbytes)
        self._rl_cache = (ref.logp, probs, kl)
        return probs, kl

    def J_all(self, reward, ref: Policy, beta: float, prompt_weights=None) -> np.ndarray:
        """``J_β(π_k; r) = Σ_x ρ_x (Σ_y π_k(y|x) r(x, y) − β KL(π_k ‖ π_ref)(x))`` for every
        member.

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
        np.ndarray
            ``J_β`` of each member, shape ``(K,)``.
        """
        return self._J_many([reward], ref, beta, prompt_weights)[1][0]

    def _J_many(self, rewards, ref: Policy, beta: float, prompt_weights=None, cache: RunCache | None = None):
        """``(rewards (m, P, T), J (m, K), β, ρ)`` for m rewards in one pass over the members."""
        checked = [_rl_common(self.space, ref, r, beta, prompt_weights) for r in rewards]
        beta, rho = checked[0][1], checked[0][2]
        R = np.ascontiguousarray(np.stack([c[0] for c in checked]), dtype=np.float64)
        probs, kl = self._rl_arrays(ref, cache)
        J = np.empty((len(rewards), self.size))
        _kernels.finite_J(probs, kl, R, beta, rho, J)
        return R, J, beta, rho

    def rl_argmax(self, reward, ref: Policy, beta: float, prompt_weights=None) -> RLResult:
        """The RL step: the exact argmax of ``J_β`` over the members (lowest index among ties).

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
        return self.rl_argmax_many([reward], ref, beta, prompt_weights)[0]

    def rl_argmax_many(self, rewards, ref: Policy, beta: float, prompt_weights=None, *,
                       cache: RunCache | None = None) -> list[RLResult]:
        """:meth:`rl_argmax` for several rewards, with ``J_β`` of every member against all of
        them computed in one pass (the same numbers as one call per reward).

        Parameters
        ----------
        rewards : sequence of array_like
            The rewards, each of shape ``(P, T)``.
        ref : Policy
            The reference ``π_ref``.
        beta : float
            The KL weight ``β > 0``.
        prompt_weights : array_like or None
            ``ρ``, shape ``(P,)``; ``None``: uniform.
        cache : RunCache or None
            A run's :class:`~genver.runcache.RunCache` (see :meth:`_rl_arrays`).

        Returns
        -------
        list of RLResult
            One result per reward, in order.
        """
        R, Js, beta, rho = self._J_many(rewards, ref, beta, prompt_weights, cache)
        out = []
        for r, J in zip(R, Js):
            k, _, _ = finite_pick(J, self.logp)  # lowest index within rounding of the best
            pol = self.member(k)
            target = soft_optimal(r, ref, beta).policy
            out.append(RLResult(policy=pol, objective=float(J[k]), index=k,
                                residual_kl=_residual(pol, target.logp, rho)))
        return out

    def __repr__(self):
        return f"FinitePolicyClass(K={self.size}, {self.space!r})"


class SoftOptimalPolicyClass(_PolicyClassDefaults):
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
        """``Π(R)`` of a finite ``R`` as a :class:`FinitePolicyClass` (:meth:`FinitePolicyClass.soft_optimal_of`).

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
        r, beta, rho = _rl_common(self.space, ref, reward, beta, prompt_weights)
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


def random_policy_class(space: TreeSpace, K: int, random_state=None, *,
                        concentration: float = 1.0) -> FinitePolicyClass:
    """``K`` random token-level policies (each node ``~ Dirichlet(concentration)``).

    Parameters
    ----------
    space : TreeSpace
        The tree.
    K : int
        Number of members, ``≥ 1``.
    random_state : None, int, SeedSequence or Generator
        Seed (members drawn in order from one generator).
    concentration : float
        Dirichlet concentration ``> 0``.

    Returns
    -------
    FinitePolicyClass
        The ``K`` members (:func:`~genver.policy.random_policy`).
    """
    from ..policy import random_policy
    K = check_positive_int(K, "K")
    if K * space.P * space.T > 2**28:
        raise ValueError(f"K*P*T = {K * space.P * space.T} entries exceeds the limit 2**28")
    rng = as_generator(random_state)
    return FinitePolicyClass(space, np.stack([random_policy(space, rng, concentration=concentration).logp
                                              for _ in range(K)]))
