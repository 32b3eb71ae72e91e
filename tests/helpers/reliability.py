"""Helpers shared by the reliability tests (test_faults.py, test_resources.py,
test_determinism.py): a tiny Fashion-MNIST-shaped IDX data set written by the test,
the training command line, and comparisons of runs.

The data set is random pixels with random labels: nothing to learn, but every byte
of the real pipeline (IDX parsing, batching, checkpoints, metrics, curves) runs, and
a LeNet epoch over it takes milliseconds, so a test can start, kill and resume real
training processes many times.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TIMING_KEYS = {"examples_per_sec", "seconds", "train_seconds", "eval_seconds"}
PNG_END = b"IEND\xaeB`\x82"          # the last chunk of every complete PNG file


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic 0x08 0x<ndim>, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def tiny_dataset(folder: Path, n_train: int = 96, n_test: int = 32, seed: int = 0) -> Path:
    """Four IDX files named as Fashion-MNIST's, random 28x28 images and labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte",
                  rng.integers(0, 10, n, dtype=np.uint8))
    return folder


def train_cmd(out: Path, data_dir: Path, *extra: str) -> list[str]:
    """The LeNet training script on the tiny data, small batches, no progress bar."""
    return [sys.executable, str(ROOT / "examples" / "train_lenet.py"), "--backend", "numpy",
            "--data-dir", str(data_dir), "--batch-size", "16", "--no-progress",
            "--out", str(out), *extra]


def child_env() -> dict:
    """The environment of a training subprocess: unbuffered output, so that a test
    reading its lines sees them as they are printed."""
    return dict(os.environ, PYTHONUNBUFFERED="1")


def signal_after_line(cmd: list[str], starts_with: str, sig: int, timeout: float = 60):
    """Start ``cmd``, send it ``sig`` as soon as a line of its output starts with
    ``starts_with``, and return ``(returncode, stderr)``; the process never outlives the
    call."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    try:
        for line in proc.stdout:
            if line.startswith(starts_with):
                break
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stderr


def epochs_printed(stdout: str) -> list[int]:
    """The epochs a training run reported, from its ``epoch K/N: loss ...`` lines (each
    printed when the epoch's training and evaluation are done, before its files are
    written)."""
    return [int(line.split()[1].split("/")[0]) for line in stdout.splitlines()
            if line.startswith("epoch ") and ": loss " in line]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def checkpoint_params(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith(("param/", "momentum/"))}


def assert_same_arrays(a: dict, b: dict) -> None:
    """The same names in the same order, each array of the same dtype, shape and bits."""
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_same_checkpoint(a, b) -> None:
    """Two loaded checkpoints (tinyalex.checkpoint.Checkpoint) hold the same contents:
    every parameter, every momentum buffer, the optimizer's hyper-parameters, epoch,
    recipe, RNG state, data order, metrics and format version (the path aside)."""
    assert_same_arrays(a.params, b.params)
    oa, ob = a.optimizer_state, b.optimizer_state
    assert (oa is None) == (ob is None)
    if oa is not None:
        assert {k: v for k, v in oa.items() if k != "momentum_buffers"} == \
            {k: v for k, v in ob.items() if k != "momentum_buffers"}
        assert len(oa["momentum_buffers"]) == len(ob["momentum_buffers"])
        for name, x, y in zip(oa["params"], oa["momentum_buffers"], ob["momentum_buffers"]):
            assert (x is None) == (y is None), name
            if x is not None:
                np.testing.assert_array_equal(x, y, err_msg=f"momentum of {name}")
    for field in ("epoch", "recipe", "rng_state", "data_order", "metrics", "format_version"):
        assert getattr(a, field) == getattr(b, field), field


def read_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def temp_files(out: Path) -> list[str]:
    return sorted(n for n in os.listdir(out) if n.endswith(".tmp")) if out.is_dir() else []


# A training script that reports each SGD update and holds update ``SLOW_STEP`` (counted
# over the run, from 1) until the file ``RELEASE`` exists: a test reads "step K:
# updating", signals the process, then creates the file, so that the signal is sure to
# arrive while batch K is in progress. "step K: updated" is printed once its update
# is applied.
MID_BATCH = """
import os, sys, time
from tinyalex import optim
real, calls = optim.SGD.step, [0]
def step(self):
    calls[0] += 1
    k = calls[0]
    if k == int(os.environ["SLOW_STEP"]):
        print(f"step {k}: updating", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    real(self)
    print(f"step {k}: updated", flush=True)
optim.SGD.step = step
from tinyalex.cli import main
sys.exit(main(sys.argv[1], sys.argv[2:]))
"""


def signal_in_batch(tmp_path: Path, model: str, args: list[str], step: int, sig: int,
                    timeout: float = 120):
    """Run the ``model`` training script with ``args``, send it ``sig`` while its
    ``step``-th update is in progress; return ``(returncode, stdout, stderr)``."""
    script = tmp_path / "mid_batch.py"
    script.write_text(MID_BATCH)
    release = tmp_path / f"release{step}"
    env = dict(child_env(), SLOW_STEP=str(step), RELEASE=str(release))
    proc = subprocess.Popen([sys.executable, str(script), model, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line == f"step {step}: updating\n":
                break
        proc.send_signal(sig)
        release.touch()
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(seen) + stdout, stderr
