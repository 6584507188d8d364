r"""What every policy class ``Π`` and reward class ``R`` provides: the protocols
:class:`PolicyClass` and :class:`RewardClass` (structural: a class need not inherit from them).

Every class lives on one ``TreeSpace`` (``space``) and reports its size the way the
finite-class bounds read it: ``size`` = ``|Π|`` or ``|R|`` for a finite class (``None`` for a
parametric one) and ``n_params`` = the number of free parameters (``None`` for a finite one);
``identifiable_dim`` is the part of ``n_params`` that Bradley–Terry data or the softmax can see
(a linear ``R``: the rank of its features centred within each prompt; a log-linear ``Π``: the
rank of its token features centred over each node's actions; otherwise ``n_params``).
``kind`` is a short label for tables and messages, never a dispatch key.

``as_finite()`` returns the class as an explicit member list when it is one (a finite class
itself; ``Π(R)`` of a finite ``R``), else ``None``: the estimators that enumerate members use it.

A policy class solves the RL step ``argmax_{π∈Π} J_β(π; r)`` (:meth:`PolicyClass.rl_argmax`);
several rewards at once with :meth:`PolicyClass.rl_argmax_many` (the same results as one call
per reward; a run's ``cache`` lets a finite class reuse its reward-independent parts). A reward class draws a member
for probes (:meth:`RewardClass.draw`).

The likelihood estimators (DPO, IPO, reward MLE, SFT, MaxEnt IRL, policy gradient) dispatch
on the class too, but their solvers live with the estimators (``genver.estimators``: one
``functools.singledispatch`` function per estimator, one module per class family), so this
layer never depends on the estimators'.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # annotations only
    from ..policy import Policy
    from ..runcache import RunCache
    from ..spaces import TreeSpace
    from .policies import FinitePolicyClass, RLResult
    from .rewards import FiniteRewardClass

__all__ = ["PolicyClass", "RewardClass"]


@runtime_checkable
class PolicyClass(Protocol):
    """A policy class ``Π`` (see the module docstring)."""

    space: TreeSpace
    kind: str

    @property
    def size(self) -> int | None:
        """``|Π|`` of a finite class; ``None`` for a parametric one."""

    @property
    def n_params(self) -> int | None:
        """Number of free parameters; ``None`` for a finite class."""

    @property
    def identifiable_dim(self) -> float | None:
        """The part of :attr:`n_params` the softmax can see (the rank of centred token features
        of a log-linear class); ``None`` for a finite class."""

    def as_finite(self) -> FinitePolicyClass | None:
        """The class as an explicit member list, when it is one.

        Returns
        -------
        FinitePolicyClass or None
            The members (a finite class itself), or ``None`` for a class that is not finite.
        """

    def rl_argmax(self, reward, ref: Policy, beta: float, prompt_weights=None) -> RLResult:
        """The RL step ``argmax_{π∈Π} J_β(π; r)``.

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
            The maximiser, its ``J_β`` and the solver's certificate.
        """

    def rl_argmax_many(self, rewards, ref: Policy, beta: float, prompt_weights=None, *,
                       cache: RunCache | None = None) -> list[RLResult]:
        """:meth:`rl_argmax` for several rewards (the same results as one call per reward).

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
            A run's memos, where the class can reuse its reward-independent parts.

        Returns
        -------
        list of RLResult
            One result per reward, in order.
        """


@runtime_checkable
class RewardClass(Protocol):
    """A reward class ``R`` (see the module docstring)."""

    space: TreeSpace
    kind: str

    @property
    def size(self) -> int | None:
        """``|R|`` of a finite class; ``None`` for a parametric one."""

    @property
    def n_params(self) -> int | None:
        """Number of free parameters; ``None`` for a finite class."""

    @property
    def identifiable_dim(self) -> float | None:
        """The part of :attr:`n_params` Bradley–Terry data can see (per-prompt constants are
        invisible); ``None`` for a finite class."""

    def as_finite(self) -> FiniteRewardClass | None:
        """The class as an explicit member list, when it is one.

        Returns
        -------
        FiniteRewardClass or None
            The members, or ``None`` for a class that is not finite.
        """

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A member drawn for probes.

        Parameters
        ----------
        rng : np.random.Generator
            The generator the draw consumes.

        Returns
        -------
        np.ndarray
            A reward table ``r``, shape ``(P, T)``.
        """
