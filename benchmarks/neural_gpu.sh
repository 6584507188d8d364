#!/usr/bin/env bash
# Neural benchmark on one GPU (H100/H200), prepared to finish in one go within 9 minutes.
# Needs python3 with torch (CUDA), numpy, scipy, numba, pandas, pyarrow, matplotlib,
# threadpoolctl — the device image has them all; genver is imported from this checkout.
# Prints: training tokens/s (policy DPO and global RM, ~1M parameters, 8192 sequences/step,
# bf16 autocast), one shipped-size neural_gap_horizon cell on the GPU and on the CPU with 2
# threads (ratio), peak GPU memory, a reduced neural_gap_horizon sweep on the GPU with its
# tabular and neural sample-efficiency ratios (its neural RM+RL uses the exact-gradient trainer),
# exact-gradient RL tokens/s (train_rl_exact, 131,072 sequences per step), and one full-size
# neural_long cell (V = 16, H = 8, beyond enumeration; Monte-Carlo estimates with standard errors).
# The JSON line at the end goes to $OUT when set. Not run on a GPU yet.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
log="${OUT:-/tmp}/neural_gpu.log"
timeout 540 python3 benchmarks/bench_neural.py --device cuda --compile --json "$@" 2>&1 | tee "$log"
