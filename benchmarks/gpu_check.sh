#!/usr/bin/env bash
# One script for a machine with a GPU: the GPU tests, the training benchmark against
# PyTorch (TF32 and strict FP32), and a short real training run of AlexNet on
# Fashion-MNIST on the cupy backend; the benchmark table is printed last. Needs no
# network: CuPy (and PyTorch with CUDA, for the comparison) must be installed, and the
# Fashion-MNIST IDX files must lie in .data/ (git-ignored) or in $FASHION_MNIST_DIR.
#
#     bash benchmarks/gpu_check.sh                  # everything, ~10 minutes on an H100
#     QUICK=1 bash benchmarks/gpu_check.sh          # fewer steps, batch 128 only
#
# Results land in $OUT (default benchmarks/results/gpu): tests.txt, train_cupy.json,
# bench.txt, train_run.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
# Scripts run as `python3 examples/x.py` see their own folder, not the checkout: import
# this checkout's tinyalex (and nothing pip installed elsewhere) in every process.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
if [ -z "${FASHION_MNIST_DIR:-}" ] && [ -d .data ]; then export FASHION_MNIST_DIR=$PWD/.data; fi
status=0

echo "== GPU: $(python3 -c 'import cupy as c; p=c.cuda.runtime.getDeviceProperties(0); n=p["name"]; print(n.decode() if isinstance(n, bytes) else n, "cupy", c.__version__)' 2>&1 | tail -1)"
python3 -c "import tinyalex; assert tinyalex.cupy_available(), tinyalex.backend.cupy_unavailable_reason()" \
  || { echo "gpu_check: the cupy backend is not usable here"; exit 2; }
# One launch of each kind in seconds (numba.cuda compiling with NVVM, kernels on CuPy
# arrays and CuPy's stream, a cuBLAS GEMM under the TF32 switch) before minutes of tests.
python3 - <<'PY' || { echo "gpu_check: the GPU kernels do not run here (above)"; exit 2; }
import numpy as np, numba, tinyalex.kernels as kernels
from tinyalex import backend as B
from tinyalex.kernels.geometry import conv_geometry
from tinyalex.ops import activation, conv
cp = B.cupy_module()
x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
g = conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
fast = conv.conv2d_algorithm(g, x.dtype, "cupy")
y, _ = fast.forward(cp.asarray(x), cp.asarray(w), None, g, False)
np.testing.assert_allclose(B.to_numpy(y), conv.REFERENCE.forward(x, w, None, g, False)[0], rtol=1e-2, atol=1e-2)
drop = activation.activation_algorithm("dropout", x.dtype, "cupy")
np.testing.assert_array_equal(B.to_numpy(drop.forward(cp.asarray(x), 0.5, 2**64 - 1)), activation.DROPOUT_REFERENCE.forward(x, 0.5, 2**64 - 1))
print(f"kernels: numba {numba.__version__}, {fast.name} and {drop.name} run on CuPy arrays")
PY

echo "== 1. GPU tests (kernels against the references, TF32 flag, a step vs the CPU)"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu_kernels.py tests/test_kernels_cuda_sim.py \
  2>&1 | tee "$OUT/tests.txt" | tail -5
[ "${PIPESTATUS[0]}" = 0 ] || status=1

echo "== 2. a short real training run (examples/train_alexnet.py --backend cupy)"
if [ -f examples/train_alexnet.py ]; then
  python3 examples/train_alexnet.py --backend cupy --train-limit "${TRAIN_LIMIT:-4096}" \
    --test-limit 1000 --epochs 1 --no-progress --out "$OUT/alexnet_run" --overwrite \
    2>&1 | tee "$OUT/train_run.txt" | tail -4
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
else
  echo "examples/train_alexnet.py is missing; skipped" | tee "$OUT/train_run.txt"
  status=1
fi

echo "== 3. training throughput against PyTorch (same process, interleaved)"
if [ -n "${QUICK:-}" ]; then
  bench_args=(--cases alexnet:128,lenet:256 --steps 20)
else
  bench_args=()
fi
if ! python3 -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  echo "PyTorch with CUDA is not usable here: tinyalex alone, no ratio"
  bench_args+=(--no-torch)
fi
python3 benchmarks/bench_train.py --backend cupy ${bench_args[@]+"${bench_args[@]}"} \
  --json "$OUT/train_cupy.json" > "$OUT/bench.txt" 2> "$OUT/bench_progress.txt"
[ $? = 0 ] || status=1

echo "== summary (tests: $(tail -1 "$OUT/tests.txt"))"
cat "$OUT/bench.txt"
exit $status
