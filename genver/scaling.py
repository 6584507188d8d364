r"""Scaling laws: how ``N_ε`` grows with the class dimension, against the learning-theory bound.

The public front door of the scaling-law fits, which are statistics and are implemented in
:mod:`genver.stats.scaling` (its docstring states the quantities, the censored fits and the
bootstrap); this module re-exports them, so ``genver.scaling.scaling_laws`` and the names below
keep working.
"""
from __future__ import annotations

from .stats.scaling import (
    AGGREGATE_WORDS,
    DEFAULT_AGAINST,
    DEFAULT_RATIO_AGAINST,
    DESCRIPTORS,
    ScalingLaws,
    censored_fit,
    descriptor_values,
    scaling_laws,
)

__all__ = ["AGGREGATE_WORDS", "DESCRIPTORS", "DEFAULT_AGAINST", "DEFAULT_RATIO_AGAINST", "ScalingLaws",
           "scaling_laws", "censored_fit", "descriptor_values"]

