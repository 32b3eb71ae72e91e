#!/usr/bin/env bash
# Set-up on a fresh machine, safe to run again: tinyalex (editable) with its test
# tools, mpi4py and the mpich wheel (the `mpi` extra: the distributed tests start
# `mpiexec -n 2`), the Fashion-MNIST files from Debian's package, and the CPU build of
# PyTorch that the cross-check tests and benchmarks compare against. MPI and PyTorch
# are best effort on a developer's machine; in CI (CI set) a failed install stops the
# set-up, as the tests that need them would otherwise fail there (tests/helpers/checks.py,
# tests/helpers/dist.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# one line per stage, as it starts, with the time it took; the total at the end
started=$SECONDS
stage_start=$SECONDS
stage() { echo "setup [$1/5] $2" >&2; stage_start=$SECONDS; }
stage_done() { echo "setup       ... $1 ($((SECONDS - stage_start)) s)" >&2; }

stage 1 "tinyalex (editable) with numpy, numba, matplotlib, safetensors and the test tools: pip install -e '.[test]'"

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
stage_done "done"

stage 2 "mpi4py and the mpich wheel, for training on several processes: pip install -e '.[mpi]'"

if ! python3 -c "from mpi4py import MPI" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check -e '.[mpi]' || true
  if ! python3 -c "from mpi4py import MPI" 2>/dev/null; then
    if [ -n "${CI:-}" ]; then
      echo "setup: ERROR: mpi4py and an MPI could not be installed or imported (pip" \
           "install 'tinyalex[mpi]': mpi4py, mpich); CI needs them: the distributed" \
           "tests start mpiexec -n 2 and must run there" >&2
      exit 1
    fi
    echo "setup: mpi4py/MPI not installed; the distributed tests will be skipped" \
         "(in CI they fail)" >&2
  fi
fi

stage_done "$(python3 -c "from mpi4py import MPI; print('mpi4py', MPI.Get_library_version().splitlines()[0])" 2>/dev/null || echo 'not installed')"

stage 3 "PyTorch's CPU build (torch==2.13.0, about 1 GB), the reference the tests and benchmarks compare against (tinyalex never imports it)"
if ! python3 -c "import torch" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check torch==2.13.0 || true
  if ! python3 -c "import torch" 2>/dev/null; then
    if [ -n "${CI:-}" ]; then
      echo "setup: ERROR: PyTorch could not be installed or imported (pip install" \
           "torch==2.13.0); CI needs it: the PyTorch parity tests are the only external" \
           "check and must run there" >&2
      exit 1
    fi
    echo "setup: PyTorch not installed; tests that compare against it will be skipped" \
         "(in CI they fail)" >&2
  fi
fi

stage_done "$(python3 -c "import torch; print('torch', torch.__version__)" 2>/dev/null || echo 'not installed')"

data=/usr/share/datasets/fashion-mnist
stage 4 "the Fashion-MNIST files: ${FASHION_MNIST_DIR:-$data} (Debian's dataset-fashion-mnist, installed with apt-get when missing)"
if [ ! -f "$data/t10k-labels-idx1-ubyte.gz" ] && [ -z "${FASHION_MNIST_DIR:-}" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -q dataset-fashion-mnist \
    || { $sudo apt-get update -q && $sudo apt-get install -y -q dataset-fashion-mnist; }
fi
stage_done "$(ls "${FASHION_MNIST_DIR:-$data}" 2>/dev/null | grep -c ubyte) IDX files in ${FASHION_MNIST_DIR:-$data}"
stage 5 "CuPy for CUDA 13 with the NVRTC wheel (no GPU needed), so that the tests compile kernels/cuda/ with the real NVRTC"
bash scripts/setup_gpu_wheels.sh
stage_done "$(python3 -c 'import cupy; v = cupy.cuda.nvrtc.getVersion(); print("CuPy", cupy.__version__, "NVRTC %d.%d" % v)' 2>/dev/null || echo 'not installed')"

echo "setup: done in $((SECONDS - started)) s" >&2
