#!/usr/bin/env bash
# One script for a GPU machine lent for ten minutes, with no network: what runs there,
# what it costs, and how it compares with PyTorch in the same process; a table last.
#
#     bash benchmarks/gpu_check.sh                 # about 6-9 minutes on an H100/H200
#     QUICK=1 bash benchmarks/gpu_check.sh         # AlexNet b128 and LeNet b256 only
#     EMULATE=1 bash benchmarks/gpu_check.sh       # no GPU: this script's own check (the
#                                                  # probes on the g++ emulation and the
#                                                  # numpy backend; no figure means anything)
#
# Needs CuPy (cupy-cuda12x) and, for the ratios, a CUDA build of PyTorch, installed
# beforehand. Each stage has its own time limit, so a stage that hangs or fails still
# leaves the others' results and the table. Results land in $OUT (default
# benchmarks/results/gpu): versions.json, tests.txt, kernels.json, steps.json,
# train_cupy.json (bench_train.py), bench.txt, and the *.log of each stage.
#
#   1. versions: driver, CUDA runtime, NVRTC, CuPy, the GPU, the GEMM path, PyTorch
#   2. the GPU tests: the kernels (NVRTC-compiled) against the references, the two GEMM
#      paths, TF32, the loss's device flag, the fused layers, a step against the CPU,
#      CUDA graph capture and graph-vs-eager equality
#   3. GPU time per kernel (CUDA events) at AlexNet batch-128 shapes, and host
#      microseconds per launch (tinyalex's launch path, a bare RawKernel, a CuPy op)
#   4. 20 timed training steps, eager and graphed (AlexNet b128, LeNet b256), the first
#      step's time (compiling, loading) apart
#   5. against PyTorch in the same process (bench_train.py): TF32 and strict FP32,
#      AlexNet b128/b256, LeNet b256, with device memory from separate processes
#   6. the table
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
status=0

stage() {   # stage NAME SECONDS command...: run with a time limit, log it, note failures
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit}s)"
  timeout --signal=INT --kill-after=15 "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "gpu_check: stage $name failed (exit $rc; 124 = out of time), see $OUT/$name.log"
    status=1
  fi
  return $rc
}

emulate=()
stage versions 60 python3 benchmarks/gpu_probe.py versions --out "$OUT"
if [ -n "${EMULATE:-}" ]; then
  emulate=(--emulate)
  echo "gpu_check: EMULATE=1, no GPU: checking this script, not measuring anything"
else
  python3 -c "import tinyalex, sys; sys.exit(not tinyalex.backend.cupy_available())" \
    || { echo "gpu_check: the cupy backend is not usable here: $(python3 -c 'import tinyalex; print(tinyalex.backend.cupy_unavailable_reason())')"; exit 2; }
fi

stage tests 240 python3 -m pytest -q -p no:cacheprovider -rs \
  tests/test_gpu_kernels.py tests/test_cuda_graph.py
cp "$OUT/tests.log" "$OUT/tests.txt" 2>/dev/null

if [ -n "${EMULATE:-}" ]; then
  stage kernels 120 python3 benchmarks/gpu_probe.py kernels --out "$OUT" "${emulate[@]}"
else
  stage kernels 120 python3 benchmarks/gpu_probe.py kernels --out "$OUT" --batch 128
fi

if [ -n "${QUICK:-}" ]; then
  cases=alexnet:128,lenet:256
else
  cases=alexnet:128,alexnet:256,lenet:256
fi
if [ -n "${EMULATE:-}" ]; then
  stage steps 150 python3 benchmarks/gpu_probe.py steps --out "$OUT" "${emulate[@]}"
  echo "== bench: skipped under EMULATE (it needs the GPU and PyTorch with CUDA)"
else
  stage steps 150 python3 benchmarks/gpu_probe.py steps --out "$OUT" --steps 20 \
    --cases alexnet:128,lenet:256
  bench_args=(--backend cupy --cases "$cases" --steps 20 --precision tf32,fp32
              --json "$OUT/train_cupy.json")
  if ! python3 -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "PyTorch with CUDA is not usable here: tinyalex alone, no ratio"
    bench_args+=(--no-torch)
  fi
  stage bench 300 python3 benchmarks/bench_train.py "${bench_args[@]}"
  cp "$OUT/bench.log" "$OUT/bench.txt" 2>/dev/null
fi

echo "== device memory now"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv 2>/dev/null \
  || echo "(nvidia-smi not available)"

echo "== table (tests: $(tail -1 "$OUT/tests.txt" 2>/dev/null))"
python3 benchmarks/gpu_probe.py table --out "$OUT"
exit $status
