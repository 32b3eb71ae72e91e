#!/usr/bin/env bash
# The real CUDA compiler for the GPU-less tests: CuPy for CUDA 13 with the NVRTC and
# cuda-runtime wheels (NVRTC, and the CUDA headers CuPy compiles with), so that
# tests/gpu/test_cuda_sources.py compiles every kernels/cuda/ source with the NVRTC a GPU
# user gets, for sm_80 and sm_90, on a machine without a GPU. cuBLAS (~440 MB) is left
# out: nothing runs without a GPU. About 130 MB of wheels (pip keeps them in its
# cache for the next run). Safe to run again; called by scripts/setup.sh. In CI (CI
# set) a failed install stops the set-up, as the compile tests would otherwise fail.
# A GPU user installs the whole backend instead: pip install -e '.[cuda13]'.
set -euo pipefail
cd "$(dirname "$0")/.."

usable() {
  python3 -c "import cupy; cupy.cuda.nvrtc.getVersion()" 2>/dev/null
}

if ! usable; then
  echo "setup: installing CuPy and NVRTC for CUDA 13 (compile tests, ~130 MB)" >&2
  python3 -m pip install -q --disable-pip-version-check 'cupy-cuda13x>=14' \
    'cuda-toolkit[nvrtc,cudart]==13.*' || true
  if ! usable; then
    if [ -n "${CI:-}" ]; then
      echo "setup: ERROR: CuPy and NVRTC could not be installed or loaded (pip install" \
           "'cupy-cuda13x>=14' 'cuda-toolkit[nvrtc,cudart]==13.*'); CI needs them: the" \
           "CUDA sources are compiled with the real NVRTC there" >&2
      exit 1
    fi
    echo "setup: CuPy/NVRTC not installed; the NVRTC compile tests will be skipped" \
         "(in CI they fail)" >&2
  fi
fi
