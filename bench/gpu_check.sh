#!/usr/bin/env bash
# One-command GPU check (issue 15 §5), no internet or datasets needed: versions, the paper profile's dry run on
# the device, and ResNet-18 throughput through the harness against a minimal loop (bench/throughput.py).
#   bench/gpu_check.sh                 CUDA: bf16 autocast, channels_last and torch.compile on; about 8 minutes
#   bench/gpu_check.sh --device cpu    CI: the same at tiny sizes (dry run of the baseline table only), all three off
# PYTHON picks the interpreter (default .venv/bin/python). Exits non-zero if the dry run or the benchmark fails.
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda
if [ "${1:-}" = "--device" ]; then device=${2:?usage: bench/gpu_check.sh [--device cpu|cuda]}; fi
py=${PYTHON:-.venv/bin/python}
status=0

echo "== versions"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/GPU, driver: /'
else
  echo "GPU, driver: none (nvidia-smi not found)"
fi
"$py" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda} (built for), cuDNN",
  torch.backends.cudnn.version(), "| CUDA available:", torch.cuda.is_available())' || status=1

echo "== dry run of the paper profile on $device"
if [ "$device" = cuda ]; then  # the time cap keeps the whole check within ~8 minutes; tables past it are listed
  "$py" -m curriculab dryrun --profile paper --device cuda --time-budget 240 || status=1
else
  "$py" -m curriculab dryrun --profile paper --device cpu --tables baseline || status=1
fi

echo "== ResNet-18 throughput: harness vs minimal loop on $device"
if [ "$device" = cuda ]; then
  "$py" bench/throughput.py --device cuda || status=1
else
  "$py" bench/throughput.py --device cpu --batch 16 --steps 3 --repeats 2 || status=1
fi
exit $status
