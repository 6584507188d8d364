"""Estimators: the offline and online routes and their relatives (see submodules)."""
from .base import FitResult
from .mle import DEFAULT_L2, dpo, ipo, reward_mle, rl_step, rm_rl

__all__ = ["FitResult", "DEFAULT_L2", "dpo", "ipo", "reward_mle", "rl_step", "rm_rl"]
