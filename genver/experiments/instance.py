r"""The :class:`Instance` every enumerable generator returns (:mod:`genver.experiments.generators`):
one world — the prefix tree ``TreeSpace`` (``P`` prompts × ``T = V**H`` completions), ``π_ref``,
``β``, ``r*`` of shape ``(P, T)``, prompt weights ``ρ``, the sampling policy ``μ`` — with its
verifier class ``R``, generator class ``Π`` and, where smaller than ``Π``, ``Π(R)``; ``π* =
π*_{r*}`` is computed once per instance. Importable as ``genver.experiments.generators.Instance``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..classes import PolicyClass, RewardClass
from ..policy import Policy
from ..spaces import TreeSpace

__all__ = ["Instance"]


@dataclass
class Instance:
    """One enumerable world and its classes (module docstring): ``space``, ``ref`` (``π_ref``),
    ``beta`` (``β``), ``reward_true`` (``r*``, shape ``(P, T)``), ``reward_class`` (``R``),
    ``policy_class`` (``Π``), ``restricted_class`` (``Π(R)`` where smaller than ``Π``, else
    None), ``sampler`` (``μ``, the policy both completions of a pair are drawn from; default
    ``π_ref``), ``prompt_weights`` (``ρ``; None: uniform), ``extra`` (generator-specific values,
    e.g. ``theta_star``) and ``data_prompt_weights`` (the labelled pairs' prompt distribution;
    None: ``ρ``).
    """

    space: TreeSpace
    ref: Policy
    beta: float
    reward_true: np.ndarray
    reward_class: RewardClass
    policy_class: PolicyClass
    restricted_class: PolicyClass | None = None
    #: the policy the pairs' completions are drawn from (``μ``; ``None`` at construction: ``ref``)
    sampler: Policy = None  # type: ignore[assignment]  # None is replaced by ref in __post_init__
    prompt_weights: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    #: prompt distribution of the labelled pairs (``None``: the evaluation weights ``ρ``)
    data_prompt_weights: np.ndarray | None = None

    def __post_init__(self):
        if self.sampler is None:
            self.sampler = self.ref

    @cached_property
    def optimal(self) -> Policy:
        """``π* = π*_{r*}`` (computed once per instance)."""
        from ..softrl import soft_optimal
        return soft_optimal(self.reward_true, self.ref, self.beta).policy

    @cached_property
    def reward_levels(self):
        """The distinct values of ``r*`` per prompt and ``π_ref``'s mass on each
        (:func:`genver.metrics.reward_levels`, computed once per instance): the part of the win
        rate that is the same for every policy evaluated against this instance."""
        from ..metrics import reward_levels
        return reward_levels(self.reward_true, self.ref)

    @property
    def data_weights(self) -> np.ndarray | None:
        """Prompt distribution the preference data are drawn from."""
        return self.prompt_weights if self.data_prompt_weights is None else self.data_prompt_weights

