#!/usr/bin/env bash
# GPU checks in one go (< 10 min on one H200), each step's result saved as it ends:
#   bash bench/gpu_suite.sh OUT
# OUT/results.json + OUT/results.md (one file, updated after every step), a log per step,
# OUT/gpu_suite.tar.gz (the small outputs). On a machine set up as ../shared/GPU.md says:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#     --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:src bash bench/gpu_suite.sh OUT
# (the .whl folder holds pydantic, openpyxl, fastapi/uvicorn and pytest: see bench/README.md).
# Without CUDA it runs its CPU half and says so in the results.
set -uo pipefail
OUT=${1:-bench/gpu_results}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}src PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
R="$OUT/results.json"

step() {  # step NAME SECONDS CMD...: run with a time limit, log it, record it
  local name=$1 limit=$2
  shift 2
  local log="$OUT/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_').log" start=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout --signal=KILL "$limit" "$@" >"$log" 2>&1
  local rc=$?
  [ $rc -eq 137 ] && echo "(killed at the ${limit}s limit)" >>"$log"
  "$PY" bench/gpu_results.py "$R" "$name" --status $rc --seconds $((SECONDS - start)) --log "$log"
  tail -n 3 "$log"
}

step "environment" 60 "$PY" -c '
import importlib.util, os, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")
print("cpus:", os.cpu_count())
for m in ("pydantic", "openpyxl", "yaml", "cv2", "pandas", "dlib", "fastapi", "uvicorn", "pytest", "ray"):
    print(m, "present" if importlib.util.find_spec(m) else "absent")
'

if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  # Ordered by what matters most (each result is on disk when its step ends, so a run cut
  # short keeps the first ones): correctness, the target figure, then where time goes.
  step "gpu tests (pytest -m gpu)" 180 "$PY" -m pytest -m gpu tests/test_gpu.py -q -s -p no:cacheprovider
  step "paper recipe (CLI) and one-fold-at-a-time baseline" 300 \
    "$PY" bench/gpu_recipe.py --out "$OUT/recipe" --results "$R"
  step "packed step profile (SE-ResNeXt-50, 224 px, batch 2, pack 26)" 90 \
    "$PY" bench/packed_profile.py --device cuda --pack 26 --json "$R"
  step "packed step profile, CUDA graph replay" 90 "$PY" bench/packed_profile.py \
    --device cuda --pack 26 --set train.cuda_graphs=true --label "cuda graphs" --json "$R"
  step "packed convolutions, layer by layer (pack 26)" 90 \
    "$PY" bench/packed_convs.py --device cuda --pack 26 --json "$R"
  step "packed step profile, cuDNN benchmark off" 60 "$PY" bench/packed_profile.py \
    --device cuda --pack 26 --set train.cudnn_benchmark=false --label "cudnn benchmark off" --json "$R"
  step "train throughput (SE-ResNeXt-50, 224 px, batch 2; pack of 26)" 90 \
    "$PY" bench/train_throughput.py --device cuda --models seresnext50_32x4d --batches 2 \
    --modes fp32 cl+bf16 --packs 26 --iters 10
  step "packed semantics (CPU tests, this torch)" 60 "$PY" -m pytest tests/test_packed.py tests/test_device_sync.py -q -x -p no:cacheprovider
else
  "$PY" bench/gpu_results.py "$R" "NO CUDA DEVICE" --status 0 --seconds 0 \
    --note "no CUDA device here: only the CPU half ran; the GPU steps are pending"
  step "packed semantics (CPU tests)" 600 "$PY" -m pytest tests/test_packed.py tests/test_device_sync.py -q -x -p no:cacheprovider
  step "packed step profile (CPU, tiny)" 120 "$PY" bench/packed_profile.py --quick --json "$R"
  step "packed convolutions (CPU, tiny)" 120 "$PY" bench/packed_convs.py --quick --json "$R"
  step "training speed, this tree vs c44ca01 (CPU)" 600 "$PY" bench/train_speed_vs_ref.py --ref c44ca01
fi

(cd "$OUT" && find . -maxdepth 1 \( -name '*.json' -o -name '*.md' -o -name '*.log' \) -print0 \
  | tar -czf gpu_suite.tar.gz --null -T -) && echo "results: $R ($OUT/results.md)"
