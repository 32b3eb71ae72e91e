"""The processor a backend computes on, in words: what metrics.json and the main
script record beside every measured figure (``device_name("numpy")`` gives
``"CPU: <model name>, <n> logical cores"``, ``device_name("cupy")`` the GPU's name).
"""

from __future__ import annotations

import os
import platform

from . import backend as B


def device_name(backend: str) -> str:
    """The processor ``backend`` computes on, in words (for metrics.json)."""
    if backend == "cupy":
        cp = B.cupy_module()
        dev = cp.cuda.Device()
        name = cp.cuda.runtime.getDeviceProperties(dev.id)["name"]
        return f"GPU {dev.id}: {name.decode() if isinstance(name, bytes) else name}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} logical cores"
