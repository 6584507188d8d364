"""Names and option schemas of the neural sweep estimators (importable without PyTorch, so
specs are validated — and a missing ``torch`` reported — before any work)."""
from __future__ import annotations

ARCH_OPTIONS = {"d_model": int, "n_layers": int, "n_heads": int}
TRAIN_OPTIONS = {"steps": int, "lr": float, "batch_size": int, "weight_decay": float, "compile": bool,
                 "schedule": frozenset({"constant", "linear"})}
RM_OPTIONS = {"rm": frozenset({"global", "linear", "local"}), "rm_steps": int, "rl_steps": int, "K": int}
#: name -> option schema ({option: type or set of allowed strings})
NEURAL_SCHEMAS = {
    "neural_dpo": {**ARCH_OPTIONS, **TRAIN_OPTIONS},
    "neural_sft_preferred": {**ARCH_OPTIONS, **TRAIN_OPTIONS},
    "neural_rm_rl": {**ARCH_OPTIONS, **TRAIN_OPTIONS, **RM_OPTIONS},
    "neural_online_dpo": {**ARCH_OPTIONS, **TRAIN_OPTIONS, **RM_OPTIONS, "rounds": int,
                          "labels": frozenset({"top_bottom", "bradley_terry"})},
}
#: default route of each neural estimator
NEURAL_ROUTES = {"neural_dpo": "offline", "neural_sft_preferred": "offline", "neural_rm_rl": "online",
                 "neural_online_dpo": "online"}
