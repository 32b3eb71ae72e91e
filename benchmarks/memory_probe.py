"""Peak memory of a few training steps, measured in a process of its own.

    python3 benchmarks/memory_probe.py tinyalex alexnet 32 numpy 3
    python3 benchmarks/memory_probe.py torch alexnet 32 numpy 3

Prints one JSON line. On the CPU: the resident set size (RSS) after the imports
(``base_mb``), its peak over model building and the steps (``peak_mb``, from the
kernel's VmHWM) and the difference (``grown_mb``: what training itself needed). Both
frameworks' probes import numpy, tinyalex and torch first, so ``base_mb`` is alike.
On the GPU: the peak device memory the framework's allocator held (CuPy's memory
pool, PyTorch's caching allocator's max_memory_reserved).
"""

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
    if framework == "tinyalex":
        step = common.TinyalexStep(model, N, backend)
    else:
        step = common.TorchStep(model, N, "cpu" if backend == "numpy" else "cuda")
    peak_pool = 0
    for _ in range(steps):
        step()
        if backend == "cupy" and framework == "tinyalex":
            from tinyalex import backend as B
            peak_pool = max(peak_pool, B.cupy_module().get_default_memory_pool().total_bytes())
    cur, peak = common.rss_mb()
    out.update(base_mb=round(base, 1), peak_mb=round(peak, 1), grown_mb=round(peak - base, 1))
    if backend == "cupy":
        out["device_peak_mb"] = round((peak_pool if framework == "tinyalex" else
                                       torch.cuda.max_memory_reserved()) / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    f, m, n, b, s = sys.argv[1:6]
    if f not in ("tinyalex", "torch") or m not in common.INPUT or b not in ("numpy", "cupy"):
        sys.exit("usage: memory_probe.py tinyalex|torch alexnet|lenet N numpy|cupy STEPS")
    main(f, m, int(n), b, int(s))
