"""Determinism on the NumPy backend: what is bit-identical, and what only close.

* The same seed gives bit-identical metrics and weights: twice in one process, and
  in two separate processes (fresh interpreters, fresh Numba threads), with the
  optional augmentation on; another seed gives other numbers (so the comparison can
  fail).
* Across a resume: tests/training/test_train.py resumes LeNet (momentum, weight decay,
  augmentation) and AlexNet (dropout) in one process; tests/reliability/test_faults.py resumes
  runs killed at random moments in other processes. Both end bit-identical to an
  uninterrupted run.
* Not bit-identical, only close (measured here and printed): the fast kernels against
  the reference kernels (other summation orders), and different
  ``TINYALEX_CPU_THREADS`` (the batch and large GEMMs are split over that many
  threads, which changes the order of some sums).
"""

import subprocess

import numpy as np
import pytest

import tinyalex.kernels as kernels
from helpers.reliability import (assert_same_arrays, checkpoint_params, child_env,
                                 read_metrics, tiny_dataset, train_cmd, without_timing)
from tinyalex import data, train

RECIPE = {"model": "lenet", "epochs": 2, "batch_size": 16, "seed": 3, "flip": True,
          "crop_padding": 2, "momentum": 0.9}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("tiny"), n_train=256, n_test=32)


def weights(net):
    return {k: v.numpy() for k, v in net.state_dict().items()}


def test_same_seed_twice_in_one_process(tiny_dir):
    d = data.load_fashion_mnist(tiny_dir)
    runs = [train.fit(RECIPE, d, log=lambda s: None) for _ in range(2)]
    assert without_timing(runs[0][1]) == without_timing(runs[1][1])
    assert_same_arrays(weights(runs[0][0]), weights(runs[1][0]))
    other, _ = train.fit(dict(RECIPE, seed=4), d, log=lambda s: None)
    assert any(not np.array_equal(a, b) for a, b in zip(weights(other).values(),
                                                        weights(runs[0][0]).values()))


def run_process(out, tiny_dir, threads):
    # batch 64: large enough that the direct convolution splits the batch over threads
    flags = ["--epochs", "2", "--seed", "3", "--flip", "--crop-padding", "2",
             "--momentum", "0.9", "--batch-size", "64"]
    proc = subprocess.run(train_cmd(out, tiny_dir, *flags), capture_output=True, text=True,
                          timeout=120, env=dict(child_env(), TINYALEX_CPU_THREADS=threads))
    assert proc.returncode == 0, proc.stderr
    return read_metrics(out)["epochs"], checkpoint_params(out / "checkpoint.npz")


def test_same_seed_in_two_processes_and_other_thread_counts(tiny_dir, tmp_path):
    a = run_process(tmp_path / "a", tiny_dir, "2")
    b = run_process(tmp_path / "b", tiny_dir, "2")
    assert without_timing(a[0]) == without_timing(b[0])
    assert_same_arrays(a[1], b[1])
    one = run_process(tmp_path / "one", tiny_dir, "1")
    diff = max(float(np.abs(one[1][k] - a[1][k]).max()) for k in a[1])
    same = all(np.array_equal(one[1][k], a[1][k]) for k in a[1])
    print(f"\nTINYALEX_CPU_THREADS=1 against 2: bit-identical {same}, largest weight "
          f"difference {diff:.2e}")
    for k in a[1]:
        np.testing.assert_allclose(one[1][k], a[1][k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_fast_and_reference_kernels_agree_closely(tiny_dir):
    d = data.load_fashion_mnist(tiny_dir)
    results = {}
    for mode in ("fast", "reference"):
        with kernels.use(mode):
            net, records = train.fit(RECIPE, d, log=lambda s: None)
        results[mode] = weights(net), records
    fast, ref = results["fast"], results["reference"]
    diff = max(float(np.abs(fast[0][k] - ref[0][k]).max()) for k in fast[0])
    same = all(np.array_equal(fast[0][k], ref[0][k]) for k in fast[0])
    print(f"\nfast against reference kernels: bit-identical {same}, largest weight "
          f"difference {diff:.2e}, losses {[r['loss'] for r in fast[1]]} vs "
          f"{[r['loss'] for r in ref[1]]}")
    for k in fast[0]:
        np.testing.assert_allclose(fast[0][k], ref[0][k], rtol=1e-4, atol=1e-6, err_msg=k)
    for f, r in zip(fast[1], ref[1]):
        assert f["loss"] == pytest.approx(r["loss"], rel=1e-5)
        assert f["train_acc"] == r["train_acc"] and f["test_acc"] == r["test_acc"]
