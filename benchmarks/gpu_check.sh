#!/usr/bin/env bash
# Two commands for a GPU machine lent with no network, at most 10 minutes a command and
# 15 in all: each command's stage limits add up to at most 450 s (7.5 minutes), so a
# command ends, with its results, before the machine's limit ends it.
#
#     bash benchmarks/gpu_check.sh           # 1. the most important figures, <= 7.5 min:
#                                            #    versions, the GPU tests, the ratios
#                                            #    against PyTorch at AlexNet b128, kernels
#     bash benchmarks/gpu_check.sh recipe    # 2. d2l's AlexNet recipe (10 epochs, 224x224,
#                                            #    batch 128; target test accuracy >= 0.88),
#                                            #    <= 7.5 min; out of time, the same command
#                                            #    resumes from the last complete epoch
#     EMULATE=1 bash benchmarks/gpu_check.sh [recipe]   # no GPU: this script's own check
#                                            #    (the emulation and the numpy backend, a
#                                            #    tiny recipe; no figure means anything)
#     bash benchmarks/gpu_check.sh limits    # each command's stage limits and their sum
#
# Needs the GPU backend (pip install -e '.[cuda13]', or '.[cuda12]' for a CUDA 12
# driver) and, for the ratios, a CUDA build of PyTorch, installed beforehand; the
# Fashion-MNIST IDX files where tinyalex.data looks ($FASHION_MNIST_DIR, ...). Each
# stage has its own time limit, so a stage that hangs or fails still leaves the
# others' results and the table. Results land in $OUT (default benchmarks/results/gpu;
# under EMULATE a folder of its own in $TMPDIR):
# versions.json, tests.txt, train_cupy.json (bench_train.py), bench.txt, kernels.json,
# recipe/ (checkpoint.npz, metrics.json, curves.png) and the *.log of each stage.
#
# Command 1:
#   versions  driver, CUDA runtime, NVRTC, CuPy, the GPU, the GEMM path, PyTorch
#   tests     (-m gpu: the tests that need a GPU; the emulated ones run in CI)
#             the kernels (NVRTC-compiled) against the references, the two GEMM paths,
#             TF32, the loss's device flag, the fused layers, a step against the CPU,
#             CUDA graph capture and graph-vs-eager equality
#   bench     against PyTorch in the same process (bench_train.py): AlexNet b128, TF32
#             and strict FP32, 20 steps each, with device memory
#   kernels   GPU time per kernel (CUDA events) at AlexNet batch-128 shapes, and host
#             microseconds per launch
# Command 2:
#   recipe    examples/train_alexnet.py --backend cupy, d2l's recipe (its defaults)
# Then the table (both commands print it, with whatever results $OUT holds).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${EMULATE:-}" ]; then      # never mixed with a GPU's results (or resumed)
  OUT=${OUT:-${TMPDIR:-/tmp}/tinyalex-gpu-check-emulated}
else
  OUT=${OUT:-benchmarks/results/gpu}
fi
what=${1:-first}
status=0

# stage limits in seconds: each command's sum stays <= 450 (the machine allows 600)
declare -A LIMIT=([versions]=30 [tests]=180 [bench]=170 [kernels]=70 [recipe]=450)
COMMANDS_first="versions tests bench kernels"
COMMANDS_recipe="recipe"

total() { local sum=0 s; for s in $1; do sum=$((sum + LIMIT[$s])); done; echo $sum; }
case $what in
  first|recipe) ;;
  limits)
    for c in first recipe; do
      list=COMMANDS_$c
      echo "$c: ${!list} = $(total "${!list}") s"
    done
    exit 0 ;;
  *) echo "gpu_check: unknown command '$what'; expected nothing (the first command)," \
          "'recipe' or 'limits'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"

stage() {   # stage NAME command...: run within LIMIT[NAME], log it, note failures
  local name=$1 limit=${LIMIT[$1]}
  shift
  echo "== $name (at most ${limit}s)"
  # SIGINT first: training stops after its batch, keeping the last complete epoch
  timeout --signal=INT --kill-after=15 "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "gpu_check: stage $name failed (exit $rc; 124 = out of time), see $OUT/$name.log"
    status=1
  fi
  return $rc
}

if [ -n "${EMULATE:-}" ]; then
  echo "gpu_check: EMULATE=1, no GPU: checking this script, not measuring anything"
else
  python3 -c "import tinyalex, sys; sys.exit(not tinyalex.backend.cupy_available())" \
    || { echo "gpu_check: the cupy backend is not usable here: $(python3 -c 'import tinyalex; print(tinyalex.backend.cupy_unavailable_reason())')"; exit 2; }
fi

if [ "$what" = first ]; then
  stage versions python3 benchmarks/gpu_probe.py versions --out "$OUT"
  stage tests python3 -m pytest -q -p no:cacheprovider -rs -m gpu \
    tests/gpu/test_gpu_kernels.py tests/gpu/test_cuda_graph.py
  cp "$OUT/tests.log" "$OUT/tests.txt" 2>/dev/null
  if [ -n "${EMULATE:-}" ]; then
    echo "== bench: skipped under EMULATE (it needs the GPU and PyTorch with CUDA)"
    stage kernels python3 benchmarks/gpu_probe.py kernels --out "$OUT" --emulate
  else
    bench_args=(--backend cupy --cases alexnet:128 --steps 20 --precision tf32,fp32
                --json "$OUT/train_cupy.json")
    if ! python3 -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
      echo "PyTorch with CUDA is not usable here: tinyalex alone, no ratio"
      bench_args+=(--no-torch)
    fi
    stage bench python3 benchmarks/bench_train.py "${bench_args[@]}"
    cp "$OUT/bench.log" "$OUT/bench.txt" 2>/dev/null
    stage kernels python3 benchmarks/gpu_probe.py kernels --out "$OUT" --batch 128
  fi
else
  recipe_args=(--out "$OUT/recipe" --no-progress)
  [ -f "$OUT/recipe/checkpoint.npz" ] && recipe_args+=(--resume)
  if [ -n "${EMULATE:-}" ]; then      # the wiring only: 2 epochs of 32 images on the CPU
    recipe_args+=(--backend numpy --epochs 2 --batch-size 16 --train-limit 32
                  --test-limit 32)
  else
    recipe_args+=(--backend cupy)     # d2l's recipe: the script's defaults
  fi
  stage recipe python3 examples/train_alexnet.py "${recipe_args[@]}"
  [ -f "$OUT/recipe/metrics.json" ] && cp "$OUT/recipe/metrics.json" "$OUT/recipe.json"
fi

echo "== device memory now"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv 2>/dev/null \
  || echo "(nvidia-smi not available)"

echo "== table (tests: $(tail -1 "$OUT/tests.txt" 2>/dev/null))"
python3 benchmarks/gpu_probe.py table --out "$OUT"
exit $status
