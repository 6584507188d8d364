r"""Neural module: small transformers on the same prefix-tree tasks, evaluated exactly.

Requires PyTorch (``pip install 'genver[neural]'``). Submodules:

* :mod:`~genver.neural.model` — the decoder-only transformer (:class:`TransformerConfig`,
  :class:`TinyTransformer`);
* :mod:`~genver.neural.policy` — ``π_θ = softmax(log π_ref + g_θ)``, sampling, exact
  enumeration into a tabular :class:`genver.policy.Policy`, Monte-Carlo estimates;
* :mod:`~genver.neural.rewards` — global, linear-feature and local reward models;
* :mod:`~genver.neural.train` — SFT, offline DPO, reward-model training, REINFORCE-LOO + KL,
  online DPO (one :class:`TrainConfig`); the RL trainers live in :mod:`~genver.neural.rl`
  (REINFORCE-LOO, the exact objective and exact-gradient RL), re-exported there;
* :mod:`~genver.neural.optim` — the trainers' optimiser loops (AdamW, full-batch L-BFGS, the
  float64 L-BFGS polish), :class:`TrainConfig`, :class:`StopRule`, :class:`TrainLog`;
* :mod:`~genver.neural.estimators` — the four sweep estimators (``neural_dpo``, …);
* :mod:`~genver.neural.residual` — optimisation residuals of the fits (the ``opt_residual`` rows);
* :mod:`~genver.neural.long` — the ``long_linear`` world beyond enumeration, evaluated by
  Monte-Carlo estimates with standard errors.

Names are imported lazily, so ``import genver.neural.long`` (the ``long_linear`` generator,
read by :mod:`genver.experiments.registry` to validate specs) works without PyTorch; the
neural estimators' option schemas are entries of that registry.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "TransformerConfig": "model", "TinyTransformer": "model",
    "NeuralPolicy": "policy", "PositionalNeuralPolicy": "policy", "monte_carlo_estimate": "policy",
    "MAX_ENUMERATION": "policy", "FeatureReward": "rewards",
    "GlobalReward": "rewards", "LinearReward": "rewards", "LocalReward": "rewards", "reward_table": "rewards",
    "TrainConfig": "optim", "TrainLog": "optim", "resolve_device": "optim", "train_sft": "train", "dpo_loss": "train",
    "train_dpo": "train", "train_reward": "train", "train_rl": "rl", "train_online_dpo": "train",
    "train_rl_exact": "rl", "exact_objective": "rl", "StopRule": "optim",
    "NEURAL_ESTIMATORS": "estimators",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        try:
            mod = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"genver.neural needs PyTorch: pip install 'genver[neural]' ({e})") from e
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
