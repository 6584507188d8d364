r"""The finite policy class ``Π = {π_1, …, π_K}`` (generators) and its constructions.

* :class:`FinitePolicyClass` — ``K`` explicit members ``(K, P, T)`` of sequence log-probs
  ``log π_k(y|x)``; ``size = |Π| = K``, ``log_size = log K`` (the finite-class bounds' term).
  RL step: exact argmax of ``J_β(π_k; r) = Σ_x ρ_x (Σ_y π_k(y|x) r(x,y) − β KL(π_k(·|x) ‖ π_ref(·|x)))``
  over the members, lowest index among values within a relative ``1e-12`` of the best
  (rounding never decides between near-identical members). The member probabilities
  ``π_k(y|x)`` and KL terms are computed once per reference and kept on the (immutable) class,
  so each further reward costs one multiply-add per member entry;
  :meth:`FinitePolicyClass.rl_argmax_many` takes several rewards in one pass. The certificate
  is the reverse-KL residual ``E_x KL(π̂ ‖ π*_r)`` of :class:`~genver.classes.base.RLResult`.
* Constructions: ``Π(R) = { π*_{r_k} : r_k ∈ R }`` of a finite ``R``, member ``k`` the
  soft-optimal ``π*_{r_k}(y|x) = π_ref(y|x) exp(r_k(x,y)/β) / Z_{r_k}(x)``
  (:meth:`FinitePolicyClass.soft_optimal_of`); ``Π ∪ D`` with ``n`` random distractors ``D``,
  each the soft-optimal policy ``π*_d`` (w.r.t. a reference, default uniform) of a reward table
  ``d`` with i.i.d. ``N(0, scale²)`` entries (:meth:`FinitePolicyClass.with_distractors`); and
  ``K`` random token-level policies, each node's next-token distribution
  ``~ Dirichlet(concentration)`` (:func:`random_policy_class`).

The tabular, log-linear and soft-optimal classes live in :mod:`genver.classes.policies`, which
re-exports everything here.
"""
from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from .. import _kernels
from .._solve import finite_pick
from .._validation import as_generator, check_beta, check_positive_int
from ..policy import Policy, logsumexp_rows
from ..runcache import RunCache, cache_key
from ..softrl import soft_optimal
from ..spaces import TreeSpace
from .base import PolicyClassDefaults, RLResult, check_rl_inputs, reverse_kl_residual
from .rewards import FiniteRewardClass

__all__ = ["FinitePolicyClass", "random_policy_class"]


class FinitePolicyClass(PolicyClassDefaults):
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
        return FinitePolicyClass.from_normalised(self.space, lp, lineage)  # normalised by construction

    @classmethod
    def from_normalised(cls, space: TreeSpace, lp: np.ndarray, lineage=None) -> FinitePolicyClass:
        """A class from log-probs normalised by construction, unchecked (as
        :meth:`genver.policy.Policy.from_normalised`): skips the validating constructor's passes
        over ``K·P·T`` entries.

        Parameters
        ----------
        space : TreeSpace
            The members' space.
        lp : np.ndarray
            ``log π_k``, C-contiguous float64 of shape ``(K, P, T)``, each row already normalised;
            made read-only and kept (not copied).
        lineage : hashable, optional
            A token naming the member sequence ``lp`` begins (see :attr:`lineage`).

        Returns
        -------
        FinitePolicyClass
            The class of the ``K`` members.
        """
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
        checked = [check_rl_inputs(self.space, ref, r, beta, prompt_weights) for r in rewards]
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
                                residual_kl=reverse_kl_residual(pol, target.logp, rho)))
        return out

    def __repr__(self):
        return f"FinitePolicyClass(K={self.size}, {self.space!r})"



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
