#!/usr/bin/env bash
# The GPU half in one call, on a fresh NVIDIA machine (Python 3.10+ and pip; ≤ 8 minutes on an H100/H200
# once installed): install hssl with TensorRT, run the gpu-marked tests, then benchmarks/gpu_check.py —
# `base` trained in bf16 (samples/s, fraction of the bf16 peak), TensorRT fp16/int8 engines of a distilled
# student and of the `base` teacher through the parity gate, timed against ONNX Runtime's CUDA EP and
# PyTorch eager. Writes OUT_DIR/gpu_check_<device>.json (+ gpu_tests.xml) and prints the tables.
#
#   bash scripts/gpu_check.sh [OUT_DIR]          # default benchmarks/results
#   HSSL_GPU_PYTHON=python3 bash scripts/gpu_check.sh   # use an interpreter that already has everything
#
# Anything unexpected stops it with a non-zero status: no GPU, an install that fails, a gpu-marked test
# that fails or is skipped, a back end that is missing. Extra arguments after OUT_DIR go to gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results}
shift || true

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or sees no device)" >&2
  exit 1
fi
nvidia-smi -L

if [[ -n "${HSSL_GPU_PYTHON:-}" ]]; then
  PY=$HSSL_GPU_PYTHON
else
  python3 -m venv .venv-gpu
  PY=.venv-gpu/bin/python
  "$PY" -m pip install --disable-pip-version-check -q -e '.[dev,tensorrt]'
  # ONNX Runtime's CUDA execution provider ships in onnxruntime-gpu, which provides the same module
  if ! "$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
    version=$("$PY" -c "import onnxruntime; print(onnxruntime.__version__)")
    "$PY" -m pip uninstall -q -y onnxruntime
    "$PY" -m pip install --disable-pip-version-check -q "onnxruntime-gpu==$version" \
      || "$PY" -m pip install --disable-pip-version-check -q onnxruntime-gpu
  fi
fi

mkdir -p "$OUT"
"$PY" -m pytest -q -m gpu -p no:cacheprovider --junitxml "$OUT/gpu_tests.xml" tests
"$PY" benchmarks/gpu_check.py --out "$OUT" --tests "$OUT/gpu_tests.xml" "$@"
