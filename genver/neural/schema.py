"""Names and option schemas of the neural sweep estimators (importable without PyTorch, so
specs are validated — and a missing ``torch`` reported — before any work)."""
from __future__ import annotations

ARCH_OPTIONS = {"d_model": int, "n_layers": int, "n_heads": int}
TRAIN_OPTIONS = {"steps": int, "lr": float, "batch_size": int, "weight_decay": float, "compile": bool,
                 "schedule": frozenset({"constant", "linear"}), "optimizer": frozenset({"adamw", "lbfgs"}),
                 "stop": bool, "stop_window": int, "stop_tol": float, "gap_tol": float}
RM_OPTIONS = {"rm": frozenset({"global", "linear", "local"}), "rm_steps": int, "rl_steps": int, "K": int,
              "rm_optimizer": frozenset({"adamw", "lbfgs"}), "rm_l2": float}
#: name -> option schema ({option: type or set of allowed strings})
NEURAL_SCHEMAS = {
    "neural_dpo": {**ARCH_OPTIONS, **TRAIN_OPTIONS},
    "neural_sft_preferred": {**ARCH_OPTIONS, **TRAIN_OPTIONS},
    "neural_rm_rl": {**ARCH_OPTIONS, **TRAIN_OPTIONS, **RM_OPTIONS, "rl": frozenset({"reinforce", "exact"}), "polish_steps": int},
    "neural_online_dpo": {**ARCH_OPTIONS, **TRAIN_OPTIONS, **RM_OPTIONS, "rounds": int,
                          "labels": frozenset({"soft", "bradley_terry", "top_bottom"})},
}
#: default route of each neural estimator
NEURAL_ROUTES = {"neural_dpo": "offline", "neural_sft_preferred": "offline", "neural_rm_rl": "online",
                 "neural_online_dpo": "online"}
