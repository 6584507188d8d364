"""Estimators: the offline and online routes and their relatives (see submodules)."""
from .base import FitResult
from .best_of_n import best_of_n, best_of_n_kl_bound
from .imitation import Demonstrations, maxent_irl, maxent_irl_rl, sample_demonstrations, sft, spin
from .mle import DEFAULT_L2, dpo, dpo_path, ipo, reward_mle, reward_mle_path, rl_step, rm_rl, rm_rl_path

__all__ = ["FitResult", "DEFAULT_L2", "dpo", "ipo", "reward_mle", "rl_step", "rm_rl", "dpo_path", "reward_mle_path",
           "rm_rl_path",
           "Demonstrations", "sample_demonstrations", "sft", "maxent_irl", "maxent_irl_rl", "spin",
           "best_of_n", "best_of_n_kl_bound"]
