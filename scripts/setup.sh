#!/usr/bin/env bash
# Set-up on a fresh machine, safe to run again: tinyalex (editable) with its test
# tools, mpi4py and the mpich wheel (the `mpi` extra: the distributed tests start
# `mpiexec -n 2`), the Fashion-MNIST files from Debian's package, and the CPU build of
# PyTorch that the cross-check tests and benchmarks compare against. MPI and PyTorch
# are best effort on a developer's machine; in CI (CI set) a failed install stops the
# set-up, as the tests that need them would otherwise fail there (tests/conftest.py,
# tests/dist_helpers.py).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

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

data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/t10k-labels-idx1-ubyte.gz" ] && [ -z "${FASHION_MNIST_DIR:-}" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -q dataset-fashion-mnist \
    || { $sudo apt-get update -q && $sudo apt-get install -y -q dataset-fashion-mnist; }
fi

bash scripts/setup_gpu_wheels.sh      # the real NVRTC for tests/test_cuda_sources.py
