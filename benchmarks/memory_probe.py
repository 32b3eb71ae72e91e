"""Peak memory of a few training steps, measured in a process of its own.

    python3 benchmarks/memory_probe.py tinyalex alexnet 32 numpy 3
    python3 benchmarks/memory_probe.py torch alexnet 32 numpy 3

Prints one JSON line. On the CPU, resident set sizes (RSS): ``base_mb`` after the
imports (both probes import numpy, tinyalex and torch); ``code_mb`` what a first step
of the model at batch 1 leaves behind once its tensors are freed (compiled code: Numba's
LLVM and its kernels for tinyalex, oneDNN's for PyTorch); ``build_peak_mb`` the peak
over building the real model and its first step; then the kernel's peak counter is
reset (``/proc/self/clear_refs``) and ``peak_mb`` is the peak over the next steps.
``grown_mb`` = peak_mb - (base_mb + code_mb): what training holds at its high point
(parameters, gradients, activations, workspaces), the figure compared.
On the GPU: the peak device memory the framework's allocator held (CuPy's memory
pool and the captured CUDA graph's own pool, PyTorch's caching allocator's
max_memory_reserved).
"""

import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def main(framework, model, N, backend, steps):
    import tinyalex  # noqa: F401
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    base, _ = common.rss_mb()
    out = {"framework": framework, "model": model, "batch": N, "backend": backend}

    def make(batch):
        if framework == "tinyalex":
            return common.TinyalexStep(model, batch, backend)
        return common.TorchStep(model, batch, "cpu" if backend == "numpy" else "cuda")

    warm = make(1)
    warm()
    del warm
    gc.collect()
    common.return_free_memory()     # freed blocks the allocator keeps are not code
    code, _ = common.rss_mb()
    step = make(N)
    step()
    _, build_peak = common.rss_mb()
    out["build_peak_mb"] = round(build_peak, 1)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                       # reset the peak RSS (VmHWM) to the current RSS
    except OSError:
        out["note"] = "could not reset VmHWM: peak_mb includes building the model"
    peak_pool = 0
    for _ in range(steps):
        step()
        if backend == "cupy" and framework == "tinyalex":
            peak_pool = max(peak_pool, step.device_bytes())   # default pool + graph pool
    cur, peak = common.rss_mb()
    out.update(base_mb=round(base, 1), code_mb=round(code - base, 1), peak_mb=round(peak, 1),
               grown_mb=round(peak - code, 1))
    if backend == "cupy":
        out["device_peak_mb"] = round((peak_pool if framework == "tinyalex" else
                                       torch.cuda.max_memory_reserved()) / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    f, m, n, b, s = sys.argv[1:6]
    if f not in ("tinyalex", "torch") or m not in common.INPUT or b not in ("numpy", "cupy"):
        sys.exit("usage: memory_probe.py tinyalex|torch alexnet|lenet N numpy|cupy STEPS")
    main(f, m, int(n), b, int(s))
