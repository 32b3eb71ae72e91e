"""Resources: running out of memory gives a clear error that suggests a smaller batch
(in a training step, in evaluation and while building the model), a long run keeps
its memory flat (no graph survives a step), and the loader resizes batch by batch.

There is no GPU here, so CuPy's and CUDA's out-of-memory errors are stand-ins: classes
with the names and modules CuPy gives theirs (CuPy's OutOfMemoryError
is a MemoryError subclass in ``cupy.cuda.memory``; cuBLAS and the CUDA runtime raise
their own errors naming ``ALLOC_FAILED`` or ``cudaErrorMemoryAllocation``). The
translation recognises them by type name and module, so the same code path runs.
A real MemoryError is produced too, by limiting a training process's address space.
"""

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from helpers.reliability import ROOT, tiny_dataset
from tinyalex import cli, data, nn, optim, train


def stand_in(name, module, base, message):
    return type(name, (base,), {"__module__": module})(message)


CUPY_OOM = ("OutOfMemoryError", "cupy.cuda.memory", MemoryError,
            "Out of memory allocating 411,041,792 bytes (allocated so far: 79,989,554,688 "
            "bytes).")
CUBLAS = ("CUBLASError", "cupy_backends.cuda.libs.cublas", RuntimeError,
          "CUBLAS_STATUS_ALLOC_FAILED")
CUDA_RUNTIME = ("CUDARuntimeError", "cupy_backends.cuda.api.runtime", RuntimeError,
                "cudaErrorMemoryAllocation: out of memory")
NOT_OOM = ("CUDARuntimeError", "cupy_backends.cuda.api.runtime", RuntimeError,
           "cudaErrorInvalidValue: invalid argument")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return data.load_fashion_mnist(tiny_dataset(tmp_path_factory.mktemp("tiny")))


RECIPE = {"model": "lenet", "epochs": 2, "batch_size": 16}


@pytest.mark.parametrize("error", [CUPY_OOM, CUBLAS, CUDA_RUNTIME],
                         ids=lambda e: e[0])
def test_out_of_memory_in_a_training_step(tiny, monkeypatch, error):
    calls = [0]
    real = train.epoch.cross_entropy

    def failing(logits, y):
        calls[0] += 1
        if calls[0] == 2:
            raise stand_in(*error)
        return real(logits, y)
    monkeypatch.setattr(train.epoch, "cross_entropy", failing)
    with pytest.raises(train.OutOfMemory) as err:
        train.fit(RECIPE, tiny, log=lambda s: None)
    msg = str(err.value)
    assert msg.startswith("out of GPU memory in training step 2 of epoch 1 (a batch of 16 "
                          "images of 28x28")
    assert "use a smaller batch, e.g. --batch-size 8" in msg and error[3][:20] in msg


def test_out_of_memory_in_evaluation(tiny, monkeypatch, tmp_path):
    real = nn.Linear.forward

    def forward(self, x):
        if not self.training and x.shape[0] > 1:      # evaluation (not the size check)
            raise stand_in(*CUPY_OOM)
        return real(self, x)
    monkeypatch.setattr(nn.Linear, "forward", forward)
    with pytest.raises(train.OutOfMemory, match=r"out of GPU memory in evaluation \(batch 1\)"
                                                r".*--batch-size 8"):
        train.fit(RECIPE, tiny, out_dir=tmp_path, log=lambda s: None)
    assert not (tmp_path / "checkpoint.npz").exists()   # the epoch was not complete


def test_a_cuda_error_that_is_not_memory_is_not_disguised(tiny, monkeypatch):
    monkeypatch.setattr(train.epoch, "cross_entropy", lambda *a: (_ for _ in ()).throw(
        stand_in(*NOT_OOM)))
    with pytest.raises(RuntimeError, match="cudaErrorInvalidValue") as err:
        train.fit(RECIPE, tiny, log=lambda s: None)
    assert not isinstance(err.value, train.OutOfMemory)


def test_out_of_memory_through_the_scripts(tmp_path, monkeypatch, capsys):
    folder = tiny_dataset(tmp_path / "data")
    monkeypatch.setattr(train.epoch, "cross_entropy", lambda *a: (_ for _ in ()).throw(
        stand_in(*CUPY_OOM)))
    assert cli.main("lenet", ["--data-dir", str(folder), "--out", str(tmp_path / "run"),
                              "--backend", "numpy", "--no-progress", "--batch-size", "64"]) == 2
    err = capsys.readouterr().err
    assert "error: out of GPU memory in training step 1 of epoch 1" in err
    assert "--batch-size 32" in err and "Traceback" not in err


REAL_OOM = """
import resource, sys
from tinyalex import cli
def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize"):
            return int(line.split()[1]) * 1024
limit = vm_bytes() + int(sys.argv[1]) * 2**20        # this much more address space
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.exit(cli.main("alexnet", sys.argv[2:]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                    reason="needs /proc to size the address-space limit")
def test_a_real_memory_error_in_alexnet_training(tmp_path):
    """AlexNet at batch 256 with 1.2 GiB of address space left: building the network
    fits (~0.4 GiB), the first step does not (its activations alone are ~1.5 GiB), and
    NumPy's real MemoryError comes out as the clear error, exit status 2."""
    folder = tiny_dataset(tmp_path / "data", n_train=256, n_test=8)
    script = tmp_path / "oom.py"
    script.write_text(REAL_OOM)
    proc = subprocess.run(
        [sys.executable, str(script), "1200", "--backend", "numpy", "--data-dir", str(folder),
         "--out", str(tmp_path / "run"), "--batch-size", "256", "--epochs", "1",
         "--no-progress"], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=dict(os.environ, TINYALEX_CPU_THREADS="1"))   # no thread needs a new stack
    assert proc.returncode == 2, proc.stderr
    assert "error: out of host memory in training step 1 of epoch 1 (a batch of 256 images " \
           "of 224x224 on numpy; MemoryError: Unable to allocate" in proc.stderr
    assert "--batch-size 128" in proc.stderr and "Traceback" not in proc.stderr


def test_out_of_memory_while_building_the_model(tiny, monkeypatch):
    monkeypatch.setattr(train.run, "init_weights_xavier",
                        lambda m: (_ for _ in ()).throw(MemoryError("Unable to allocate")))
    with pytest.raises(train.OutOfMemory, match="out of host memory building lenet on numpy "
                                                r"\(MemoryError: Unable to allocate\), before "
                                                "any training"):
        train.fit(RECIPE, tiny, log=lambda s: None)


# ------------------------------------------------------------------ long runs

LONG_RUN = r"""
import gc, json, os, sys
import numpy as np
import tinyalex
from tinyalex import models, optim, train
from tinyalex.tensor import Function, Tensor


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_steps(n_steps, every, keep_graphs=False):
    rng = np.random.default_rng(0)
    N = 4 * n_steps
    X, y = rng.integers(0, 256, (N, 28, 28), dtype=np.uint8), rng.integers(0, 10, N)
    tinyalex.manual_seed(0)
    net = models.lenet()
    net.apply(models.init_weights_xavier)
    opt = optim.SGD(net.parameters(), lr=0.1)
    real = Tensor.backward
    kept = []
    if keep_graphs:                     # the leak the measurement must be able to see
        def backward(self, grad=None, retain_graph=False):
            kept.append(self)
            return real(self, grad, retain_graph=True)
        Tensor.backward = backward
    samples, step = [], [0]

    def check():
        step[0] += 1
        if step[0] % every == 0:
            live = sum(isinstance(o, (Function, Tensor)) for o in gc.get_objects())
            samples.append((step[0], rss_bytes(), live))
    gc.collect()
    gc.disable()
    try:
        train.train_epoch(net, opt, X, y, dict(train.D2L_RECIPES["lenet"], batch_size=4),
                          "numpy", 0, check=check)
    finally:
        gc.enable()
        Tensor.backward = real
    return samples


flat = run_steps(3000, 250)
kept = run_steps(400, 100, keep_graphs=True)
print(json.dumps({"flat": flat, "kept": kept}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS is read from /proc")
def test_thousands_of_steps_keep_memory_flat(tmp_path):
    """3000 LeNet steps (batch 4) in a fresh process (in this one, memory freed by
    earlier tests would hide growth), the cyclic garbage collector off so that only
    reference counting frees anything: from step 500 to 3000 the resident memory grows
    by less than 1 MiB and the number of live Function and Tensor objects never
    changes. Then, in the same process, 400 steps that keep their graphs
    (retain_graph, as a loop that stored its losses would): ~15 MiB per 100 steps, so
    the tolerance is 1/40 of what one kept graph per step costs over the run."""
    script = tmp_path / "long_run.py"
    script.write_text(LONG_RUN)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    samples, leak = runs["flat"], runs["kept"]
    base = next(s for s in samples if s[0] == 500)
    growth = max(s[1] for s in samples if s[0] >= 500) - base[1]
    counts = {s[2] for s in samples}
    leak_growth = leak[-1][1] - leak[0][1]
    print(f"\nRSS growth steps 500-3000: {growth / 2**20:.2f} MiB; live graph objects "
          f"{sorted(counts)}; kept graphs, steps 100-400: {leak_growth / 2**20:.1f} MiB, "
          f"objects {[s[2] for s in leak]}")
    assert growth < 1 << 20
    assert len(counts) == 1
    assert leak_growth > 20 << 20 and leak[-1][2] > leak[0][2] + 1000


# ------------------------------------------------------------------ the loader

def tiny_net():
    """Takes (N, 1, 112, 112): an 8x8/8 convolution, then a Linear."""
    return nn.Sequential(nn.Conv2d(1, 2, 8, stride=8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 14 * 14, 10))


def test_the_loader_resizes_batch_by_batch(monkeypatch):
    """1024 images resized to 112x112 in training and evaluation: resize_bilinear sees
    one batch at a time (never more than batch_size images), and the peak of traced
    memory during an epoch stays below a tenth of the whole resized set (51 MB)."""
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (1024, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 1024)
    sizes, real = [], data.resize_bilinear

    def recording(x, size):
        sizes.append(x.shape[0])
        return real(x, size)
    monkeypatch.setattr(data, "resize_bilinear", recording)
    net = tiny_net()
    opt = optim.SGD(net.parameters(), lr=0.01)
    recipe = dict(train.D2L_RECIPES["lenet"], batch_size=16, resize=112)
    whole = 1024 * 112 * 112 * 4
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        train.train_epoch(net, opt, X, y, recipe, "numpy", 0)
        train_peak = tracemalloc.get_traced_memory()[1] - start
        trained = list(sizes)
        sizes.clear()
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        train.evaluate_accuracy(net, X, y, 16, "numpy", 112)
        eval_peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    print(f"\npeak traced memory: training {train_peak / 2**20:.1f} MiB, evaluation "
          f"{eval_peak / 2**20:.1f} MiB; the whole resized set {whole / 2**20:.0f} MiB")
    assert trained == [16] * 64 and sizes == [16] * 64
    assert train_peak < whole / 10 and eval_peak < whole / 10
