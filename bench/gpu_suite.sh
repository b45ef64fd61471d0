#!/usr/bin/env bash
# All GPU-relevant benches in one go on a CUDA machine (run from the repo root):
#   bash bench/gpu_suite.sh [OUT_DIR]
# Needs torch (CUDA) and numpy only: the benches import apexmer.models and
# apexmer.training.packed, and fall back to bench/gpu_compat.py's stand-in config when
# pydantic/PyYAML are missing. Logs go to OUT_DIR (default bench/gpu_results).
set -euo pipefail
OUT=${1:-bench/gpu_results}
mkdir -p "$OUT"
export PYTHONPATH=src
PY=${PYTHON:-python3}
$PY - <<'PY' | tee "$OUT/env.txt"
import torch, sys
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
for m in ("pydantic", "yaml", "cv2", "pandas"):
    try:
        __import__(m); print(m, "present")
    except ImportError:
        print(m, "absent (fine)")
PY
$PY bench/train_throughput.py --device cuda 2>&1 | tee "$OUT/train_throughput.csv"
$PY bench/loso_projection.py --device cuda 2>&1 | tee "$OUT/loso_projection.csv"
# The real recipe, packs of 26, 10 epochs measured and scaled to 100 (fits a 10-min slot);
# run with --epochs 100 when time allows.
$PY bench/loso_projection.py --device cuda --packs 26 --full --epochs 10 2>&1 \
  | tee "$OUT/loso_full.csv"
