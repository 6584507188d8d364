#!/usr/bin/env bash
# Neural benchmark on one GPU (H100/H200), prepared to finish in one go within 8 minutes.
# Needs python3 with torch (CUDA), numpy, scipy, numba, pandas, pyarrow, matplotlib,
# threadpoolctl — the device image has them all; genver is imported from this checkout.
# Prints: training tokens/s (policy DPO and global RM, ~1M parameters, 8192 sequences/step,
# bf16 autocast), one shipped-size neural_gap_horizon cell on the GPU and on the CPU with 2
# threads (ratio), peak GPU memory, then a reduced neural_gap_horizon sweep on the GPU with its
# tabular and neural sample-efficiency ratios. The JSON line at the end goes to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
log="${OUT:-/tmp}/neural_gpu.log"
timeout 470 python3 benchmarks/bench_neural.py --device cuda --compile --json "$@" 2>&1 | tee "$log"
