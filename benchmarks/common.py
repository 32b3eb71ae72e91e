"""Shared pieces of the benchmark scripts: the two networks in tinyalex and in PyTorch
with the same weights, one training step for each, the machine and BLAS description,
and memory probes run in a fresh process.

Not a test module and not part of the package: the scripts beside it import it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT = {"alexnet": (1, 224, 224), "lenet": (1, 28, 28), "resnet18": (1, 96, 96)}


# -- the machine ------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's name with its family and model numbers and widest vectors, e.g. "AMD
    EPYC (family 26 model 2, AVX-512)": a virtual machine often names only the brand,
    and machines of one name differ (AMD's family 25 is Zen 3/4, 26 Zen 5)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model", "flags") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or "unknown"
    flags = fields.get("flags", "").split()
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{fields['model name']} (family {fields.get('cpu family', '?')} model "
            f"{fields.get('model', '?')}, {width})")


def blas_description() -> str:
    """Which BLAS NumPy calls and which of its kernels runs (threadpoolctl, if installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to see it)"
    libs = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} kernel, "
            f"{i.get('num_threads')} threads" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    return "; ".join(libs) or "none found"


def machine(backend: str) -> dict:
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host_cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": blas_description(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    try:
        import numba
        info["numba"] = numba.__version__
    except ImportError:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    if backend == "cupy":
        from tinyalex import backend as B
        cp = B.cupy_module()
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cupy"] = cp.__version__
    return info


# -- the networks -----------------------------------------------------------------------

def tinyalex_net(model: str, seed: int = 0):
    import tinyalex
    tinyalex.manual_seed(seed)
    net = {"alexnet": tinyalex.models.alexnet, "lenet": tinyalex.models.lenet,
           "resnet18": tinyalex.models.resnet18}[model]()
    net.apply(tinyalex.models.init_weights_xavier)      # d2l's initialisation
    return net


def torch_net(model: str, weights_from=None):
    """d2l's network in PyTorch; with ``weights_from`` (a tinyalex net) the same weights."""
    import torch
    from torch import nn
    if model == "resnet18":
        net = torch_resnet18()
    elif model == "alexnet":
        net = nn.Sequential(
            nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2), nn.Flatten(),
            nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
            nn.Linear(4096, 10))
    else:
        net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, 10))
    if weights_from is not None:
        from tinyalex import backend as B
        state = {k: torch.from_numpy(B.to_numpy(v.array).copy())
                 for k, v in weights_from.state_dict().items()}     # buffers too
        net.load_state_dict(state)
    return net


def torch_resnet18():
    """d2l's ResNet-18 (train_ch6 edition) in PyTorch, with tinyalex.models.resnet18's
    state-dict keys."""
    from torch import nn
    from torch.nn import functional as F

    class Residual(nn.Module):
        def __init__(self, cin, cout, use_1x1conv=False, strides=1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, padding=1, stride=strides)
            self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, padding=1)
            self.conv3 = nn.Conv2d(cin, cout, kernel_size=1, stride=strides) \
                if use_1x1conv else None
            self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)

        def forward(self, X):
            Y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(X)))))
            return F.relu(Y + (self.conv3(X) if self.conv3 is not None else X))

    def stage(cin, cout, first=False):
        return nn.Sequential(Residual(cin, cout, not first, 1 if first else 2),
                             Residual(cout, cout))
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    return nn.Sequential(b1, stage(64, 64, True), stage(64, 128), stage(128, 256),
                         stage(256, 512), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(512, 10))


def batch(model: str, N: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.random((N,) + INPUT[model], dtype=np.float32)
    y = rng.integers(0, 10, N).astype(np.int64)
    return x, y


class TinyalexStep:
    """One d2l training step: forward, cross-entropy, backward, SGD update.

    On the GPU the parameters lie in one flat buffer (one SGD kernel) and the step is
    ``tinyalex.cuda_graph.TrainStep``: captured as a CUDA graph and replayed where that
    works (``graph=None``: TINYALEX_CUDA_GRAPH decides; ``False``: eager), its loss read
    back once, as a training loop does."""

    def __init__(self, model, N, backend="numpy", lr=0.01, graph=None):
        import tinyalex
        from tinyalex import backend as B, nn
        self.B, self.backend = B, backend
        self.net = tinyalex_net(model).to(backend)
        self.net.train()
        x, y = batch(model, N)
        self.x = tinyalex.tensor(x, backend=backend)
        self.y = tinyalex.tensor(y, backend=backend)
        self.loss = nn.CrossEntropyLoss()
        self.step = None
        if backend == "cupy":
            from tinyalex import cuda_graph
            flat = nn.FlatParameters(self.net.parameters())
            self.opt = tinyalex.optim.SGD(self.net.parameters(), lr=lr, flat=flat)
            self.step = cuda_graph.TrainStep(self.net, self.opt, graphs=graph)
        else:
            self.opt = tinyalex.optim.SGD(self.net.parameters(), lr=lr)

    def __call__(self):
        if self.step is not None:
            return self.step(self.x, self.y).read()[0]     # waits for the GPU
        self.opt.zero_grad()
        loss = self.loss(self.net(self.x), self.y)
        loss.backward()
        self.opt.step()
        self.B.synchronize(self.backend)
        return loss

    @property
    def graphed(self) -> bool:
        return self.step is not None and self.step.captured is not None

    def device_bytes(self) -> int:
        """Device memory of CuPy's default pool and of the step's graph pool."""
        if self.backend != "cupy":
            return 0
        pool = self.B.cupy_module().get_default_memory_pool().total_bytes()
        return int(pool) + (self.step.graph_memory_bytes() if self.step is not None else 0)


class TorchStep:
    def __init__(self, model, N, device="cpu", lr=0.01, weights_from=None):
        import torch
        self.torch, self.device = torch, device
        self.net = torch_net(model, weights_from).to(device)
        self.net.train()
        x, y = batch(model, N)
        self.x = torch.from_numpy(x).to(device)
        self.y = torch.from_numpy(y).to(device)
        self.loss = torch.nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr)

    def __call__(self):
        self.opt.zero_grad()
        loss = self.loss(self.net(self.x), self.y)
        loss.backward()
        self.opt.step()
        if self.device != "cpu":
            self.torch.cuda.synchronize()
        return loss


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_timed(fn) -> float:
    """The process CPU time ``fn()`` takes (every thread's; meaningful on one thread)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


# -- memory -----------------------------------------------------------------------------

def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB, from /proc."""
    cur = peak = float("nan")
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return cur, peak


def return_free_memory() -> bool:
    """Drop the CPU's pool of recycled GEMM results (``kernels/recycle.py``) and hand
    the heap's free memory back to the kernel (glibc's ``malloc_trim``), so that the
    resident size counts live data only; False where there is no glibc. (tinyalex keeps
    freed memory for the next step: ``kernels/cpu_process.py``.)"""
    import ctypes
    dense = sys.modules.get("tinyalex.kernels.dense_cpu")
    if dense is not None:
        dense.RESULTS.clear()
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False


def probe_memory(framework, model, N, backend, steps=3) -> dict:
    """Run ``steps`` training steps in a fresh Python process; its memory figures."""
    cmd = [sys.executable, os.path.join(HERE, "memory_probe.py"), framework, model, str(N),
           backend, str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])
