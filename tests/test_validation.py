"""Bad input: every public entry point raises ValueError naming the offending argument."""
import numpy as np
import pytest

from genver.classes import (
    FinitePolicyClass,
    FiniteRewardClass,
    LinearRewardClass,
    LogLinearPolicyClass,
    SoftOptimalPolicyClass,
    TabularPolicyClass,
    induced_reward,
    induced_reward_class,
    random_policy_class,
    random_reward_class,
)
from genver.features import hidden_target, token_features, trajectory_features
from genver.metrics import evaluate, expected_bt_loglik, heldout_bt_loglik, kl_to_optimal, suboptimality, win_rate
from genver.policy import Policy, random_policy, sequence_logp_from_cond, uniform_policy
from genver.preferences import Preferences, sample_preferences
from genver.softrl import J_beta, expected_reward, kl, soft_optimal
from genver.spaces import TreeSpace

SP = TreeSpace(2, 2, 2)
REF = random_policy(SP, 0)
R = np.random.default_rng(0).normal(size=SP.shape)
PARTIAL = Policy.from_probs(SP, [[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])  # not full support

BAD_BETAS = [0.0, -1.0, np.nan, np.inf, True, "1", None]


@pytest.mark.parametrize("beta", BAD_BETAS)
def test_bad_beta_everywhere(beta):
    calls = [
        lambda: soft_optimal(R, REF, beta),
        lambda: J_beta(REF, R, REF, beta),
        lambda: induced_reward(REF, REF, beta),
        lambda: induced_reward_class(random_policy_class(SP, 2, 0), REF, beta),
        lambda: FinitePolicyClass.soft_optimal_of(random_reward_class(SP, 2, 0), REF, beta),
        lambda: SoftOptimalPolicyClass(random_reward_class(SP, 2, 0), REF, beta),
        lambda: TabularPolicyClass(SP).rl_argmax(R, REF, beta),
        lambda: random_policy_class(SP, 2, 0).rl_argmax(R, REF, beta),
        lambda: suboptimality(REF, R, REF, beta),
        lambda: evaluate(REF, R, REF, beta),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="beta must be"):
            call()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_reward(bad):
    r = R.copy()
    r[1, 2] = bad
    calls = [
        lambda: soft_optimal(r, REF, 1.0),
        lambda: J_beta(REF, r, REF, 1.0),
        lambda: expected_reward(REF, r),
        lambda: sample_preferences(r, REF, 5, 0),
        lambda: win_rate(REF, r, REF),
        lambda: expected_bt_loglik(r, R, REF),
        lambda: TabularPolicyClass(SP).rl_argmax(r, REF, 1.0),
        lambda: random_policy_class(SP, 2, 0).rl_argmax(r, REF, 1.0),
        lambda: suboptimality(REF, r, REF, 1.0),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"^reward contains"):
            call()
    with pytest.raises(ValueError, match=r"^reward_true contains"):
        expected_bt_loglik(R, r, REF)


def test_reward_shape_mismatch():
    r = np.zeros((2, 3))
    for call in (lambda: soft_optimal(r, REF, 1.0), lambda: J_beta(REF, r, REF, 1.0),
                 lambda: sample_preferences(r, REF, 5, 0), lambda: win_rate(REF, r, REF),
                 lambda: heldout_bt_loglik(r, Preferences.from_array(SP, [[0, 1, 2]]))):
        with pytest.raises(ValueError, match=r"reward must have shape \(P, T\) = \(2, 4\), got \(2, 3\)"):
            call()


def test_reference_without_full_support():
    with pytest.raises(ValueError, match="ref must have full support.*completion 2 of prompt 0"):
        induced_reward(REF, PARTIAL, 1.0)
    with pytest.raises(ValueError, match="policy must have full support"):
        induced_reward(PARTIAL, REF, 1.0)
    with pytest.raises(ValueError, match="ref must have full support"):
        LogLinearPolicyClass(SP, PARTIAL, token_features(SP, "tabular"))
    with pytest.raises(ValueError, match="ref must have full support"):
        induced_reward_class(random_policy_class(SP, 2, 0), PARTIAL, 1.0)
    with pytest.raises(ValueError, match="policy_class members must have full support"):
        induced_reward_class(FinitePolicyClass(SP, PARTIAL.logp[None]), REF, 1.0)


def test_mismatched_spaces_and_shapes():
    other = TreeSpace(2, 4, 1)  # same (P, T) = (2, 4), different tree
    ref_other = uniform_policy(other)
    with pytest.raises(ValueError, match="q lives on"):
        kl(REF, ref_other)
    with pytest.raises(ValueError, match="ref lives on"):
        J_beta(REF, R, ref_other, 1.0)
    with pytest.raises(ValueError, match="ref lives on"):
        kl_to_optimal(REF, R, ref_other, 1.0)
    with pytest.raises(ValueError, match="ref"):
        win_rate(REF, R, ref_other)
    with pytest.raises(ValueError, match="policy lives on .* but ref on"):
        induced_reward(REF, ref_other, 1.0)
    with pytest.raises(ValueError, match=r"prompt_weights must have shape \(P,\) = \(2,\)"):
        J_beta(REF, R, REF, 1.0, [1.0])
    with pytest.raises(ValueError, match="prompt_weights must sum to 1"):
        kl(REF, REF, [0.5, 0.6])
    with pytest.raises(ValueError, match="prompt_weights must be finite and non-negative"):
        expected_reward(REF, R, [1.5, -0.5])
    with pytest.raises(ValueError, match=r"logp must have shape \(P, T\)"):
        Policy(SP, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"cond must have shape \(P, n_internal, V\)"):
        Policy.from_cond(SP, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"cond must have shape \(P, n_internal, V\)"):
        sequence_logp_from_cond(SP, np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="psi must have shape"):
        LogLinearPolicyClass(SP, REF, np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="psi contains NaN"):
        LogLinearPolicyClass(SP, REF, np.full((2, 3, 2, 1), np.nan))
    cls = LogLinearPolicyClass(SP, REF, token_features(SP, "random_gaussian", 0, d=2))
    with pytest.raises(ValueError, match=r"theta must have shape \(d,\) = \(2,\)"):
        cls.policy(np.zeros(3))
    with pytest.raises(ValueError, match="theta contains NaN"):
        cls.cond([np.nan, 0.0])
    with pytest.raises(ValueError, match="ref must be the class's own reference"):
        cls.rl_argmax(R, random_policy(SP, 1), 1.0)
    with pytest.raises(ValueError, match="phi must have shape"):
        LinearRewardClass(SP, np.zeros((2, 4)))
    lin = LinearRewardClass(SP, np.ones((2, 4, 3)))
    with pytest.raises(ValueError, match=r"w must have shape \(d,\) = \(3,\)"):
        lin.reward([1.0, 2.0])
    with pytest.raises(ValueError, match="tables must have shape"):
        FiniteRewardClass(SP, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="tables contains NaN or inf"):
        FiniteRewardClass(SP, np.full((1, 2, 4), np.inf))
    with pytest.raises(ValueError, match=r"logp must have shape \(K, P, T\)"):
        FinitePolicyClass(SP, np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="member index must lie in"):
        random_policy_class(SP, 2, 0).member(2)
    with pytest.raises(ValueError, match="target must be an integer array of shape"):
        hidden_target(SP, target=np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="target tokens must lie in"):
        hidden_target(SP, target=np.full((2, 2), 2))
    with pytest.raises(ValueError, match="space must be a TreeSpace"):
        Policy("space", np.zeros(4))


def test_unnormalised_or_invalid_logp():
    with pytest.raises(ValueError, match=r"logp rows must be normalised.*prompt 1"):
        Policy(SP, REF.logp + np.array([[0.0], [0.1]]))
    with pytest.raises(ValueError, match="logp rows must be normalised"):
        Policy(SP, np.full(SP.shape, -np.inf))
    with pytest.raises(ValueError, match="logp contains NaN"):
        Policy(SP, np.where(np.eye(2, 4) > 0, np.nan, REF.logp))
    with pytest.raises(ValueError, match=r"logp contains \+inf"):
        Policy(SP, np.where(np.eye(2, 4) > 0, np.inf, REF.logp))
    with pytest.raises(ValueError, match="probs rows must be normalised"):
        Policy.from_probs(SP, np.full(SP.shape, 0.3))
    with pytest.raises(ValueError, match="probs must be non-negative"):
        Policy.from_probs(SP, [[1.5, -0.5, 0, 0], [0.25] * 4])
    with pytest.raises(ValueError, match="cond: every node's next-token distribution must be normalised"):
        Policy.from_cond(SP, np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match=r"cond contains NaN or \+inf"):
        Policy.from_cond(SP, np.full((2, 3, 2), np.nan))
    with pytest.raises(ValueError, match=r"logp rows must be normalised; member 1, prompt 0"):
        FinitePolicyClass(SP, np.stack([REF.logp, REF.logp + 0.5]))


def test_preference_and_metric_arguments():
    data = sample_preferences(R, REF, 10, 0)
    with pytest.raises(ValueError, match="sampler must be a genver Policy"):
        sample_preferences(R, REF.logp, 10, 0)
    with pytest.raises(ValueError, match="n must be >= 0"):
        sample_preferences(R, REF, -1, 0)
    with pytest.raises(ValueError, match="n must be an integer"):
        sample_preferences(R, REF, 2.5, 0)
    with pytest.raises(ValueError, match="temperature must be"):
        sample_preferences(R, REF, 10, 0, temperature=0.0)
    with pytest.raises(ValueError, match="prompt_weights must sum to 1"):
        sample_preferences(R, REF, 10, 0, prompt_weights=[0.2, 0.2])
    with pytest.raises(ValueError, match="random_state must be a non-negative integer"):
        sample_preferences(R, REF, 10, -3)
    with pytest.raises(ValueError, match="random_state must be None, an int"):
        sample_preferences(R, REF, 10, "seed")
    with pytest.raises(ValueError, match="n must be >= 0"):
        data.head(-1)
    with pytest.raises(ValueError, match="data must be a Preferences object"):
        heldout_bt_loglik(R, data.as_array())
    with pytest.raises(ValueError, match="data has no pairs"):
        heldout_bt_loglik(R, data.head(0))
    with pytest.raises(ValueError, match="policy must be a genver Policy"):
        J_beta(REF.logp, R, REF, 1.0)


def test_generator_arguments():
    with pytest.raises(ValueError, match="concentration must be"):
        random_policy(SP, 0, concentration=0.0)
    with pytest.raises(ValueError, match="temperature must be"):
        random_policy(SP, 0, temperature=-1.0)
    with pytest.raises(ValueError, match="K must be >= 1"):
        random_policy_class(SP, 0)
    with pytest.raises(ValueError, match="K must be an integer"):
        random_reward_class(SP, 1.5)
    with pytest.raises(ValueError, match="scale must be"):
        random_reward_class(SP, 2, 0, scale=-1.0)
    with pytest.raises(ValueError, match="n must be >= 0"):
        random_policy_class(SP, 2, 0).with_distractors(-1)
    with pytest.raises(ValueError, match="d must be >= 1"):
        trajectory_features(SP, ("random_gaussian", {"d": 0}))
    with pytest.raises(ValueError, match="d must be an integer"):
        token_features(SP, "random_gaussian", 0, d=1.5)
    with pytest.raises(ValueError, match="reward_class must be a FiniteRewardClass"):
        FinitePolicyClass.soft_optimal_of(LinearRewardClass(SP, np.ones((2, 4, 1))), REF, 1.0)
    with pytest.raises(ValueError, match="reward_class must be a FiniteRewardClass or LinearRewardClass"):
        SoftOptimalPolicyClass(R, REF, 1.0)
    with pytest.raises(ValueError, match="ref must be a Policy"):
        TabularPolicyClass(SP).rl_argmax(R, REF.logp, 1.0)
