"""Policy classes Π (generators) and reward classes R (verifiers); see the submodules."""
from .base import PolicyClass, RewardClass
from .policies import (
                       FinitePolicyClass,
                       LogLinearPolicyClass,
                       RLResult,
                       SoftOptimalPolicyClass,
                       TabularPolicyClass,
                       random_policy_class,
)
from .rewards import (
                       FiniteRewardClass,
                       LinearRewardClass,
                       TabularRewardClass,
                       induced_reward,
                       induced_reward_class,
                       random_reward_class,
)

__all__ = [
    "PolicyClass", "RewardClass",
    "FinitePolicyClass", "LogLinearPolicyClass", "RLResult", "SoftOptimalPolicyClass",
    "TabularPolicyClass", "random_policy_class", "FiniteRewardClass", "LinearRewardClass",
    "TabularRewardClass", "induced_reward", "induced_reward_class", "random_reward_class",
]
