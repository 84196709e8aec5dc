#!/usr/bin/env bash
# Everything GPU in one command, for a machine with an NVIDIA GPU, its driver and the CUDA
# toolkit (nvcc, cuBLAS, cuDNN, NCCL): configures a build with the CUDA backend forced on, builds
# it, runs the `gpu` tests (which skip, visibly, without a device), then the GPU benchmarks.
#
# usage: scripts/gpu-check.sh [BUILD_DIR]      (default build-gpu; JOBS=N to limit the build)
# Exit status: non-zero if the build or any gpu test fails. Benchmark tables go to stdout and to
# BUILD_DIR/gpu-bench.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
JOBS=${JOBS:-$(nproc)}

if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: nvidia-smi sees no GPU; the gpu tests would all be skipped" >&2
fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=ON
cmake --build "$BUILD" -j "$JOBS" --target gpu_tests core_tests resnet50_gpu tandem
ctest --test-dir "$BUILD" -L gpu --output-on-failure
# The CPU-side probe (label unit, runs everywhere) on the same build.
ctest --test-dir "$BUILD" -R CudaProbe --output-on-failure

{
  echo "== resnet50_gpu (tandem alone)"
  "$BUILD/benchmarks/resnet50_gpu" --batch 64 --precision fp32 --steps 30
  "$BUILD/benchmarks/resnet50_gpu" --batch 64 --precision tf32 --steps 30
  echo "== tandem vs PyTorch (torchvision's resnet50, channels-last, cudnn.benchmark)"
  if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    python3 benchmarks/compare_pytorch_gpu.py --build "$BUILD" --configs fp32:64,tf32:64,bf16:256
  else
    echo "(skipped: python3 has no CUDA-enabled torch)"
  fi
} | tee "$BUILD/gpu-bench.txt"
