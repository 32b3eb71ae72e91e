"""Data-parallel training (tinyalex/dist/, tinyalex/train/): N processes are one
process with the same global batch.

Jobs of 2 processes are started for real with ``mpiexec -n 2`` (CI installs mpi4py
and the mpich wheel; there a missing mpiexec fails these tests), on LeNet at 28x28
and a small MLP with dropout, on the tiny random data sets of helpers/reliability.py.

The tolerances, and why:

* 2 processes against an in-process reference that sums the same two shards the
  same way: **bit for bit**. Both run the same float32 operations in the same order
  (an allreduce of 2 processes is one addition per element, g0 + g1), with one CPU
  thread each; any difference is a bug in the slicing, the loss scaling, the dropout
  offsets, the broadcasts or the reduction.
* 2 processes against 1 process: the same mathematics in another summation order
  (each process's weight gradients sum 32 rows, then the two halves are added,
  where one process sums 64 at once), so float32 rounding noise: weights within
  **1e-5 relative to each tensor's largest value** after 3 steps (measured: < 1e-6),
  and the epoch's loss, train and test accuracy within **1e-4** (absolute; the
  accuracies are counts over 150 and 100 examples, so in fact equal).
* resumed across a change of N: the same noise (the resumed part runs on another
  number of processes), the same tolerances.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np
import pytest

import tinyalex
from tinyalex import dist, nn
from tinyalex import random as R
from tinyalex.checkpoint import load_checkpoint
from tinyalex.cli import main
from tinyalex.data import load_fashion_mnist
from tinyalex.dist.nccl import nccl_unavailable_reason
from tinyalex.launcher import launch_from_env
from tinyalex.ops.activation import dropout
from tinyalex.train import D2L_RECIPES, fit

from helpers.dist import (FAULTY, JOB, RECIPE, REFERENCE, finish, lenet_args, mpi_job,
                          mpmd, ok, pids, require_mpi, require_netns, run, start_job, stop,
                          wait_for)
from helpers.reliability import epochs_printed, read_metrics, tiny_dataset

WEIGHTS_RTOL = 1e-5        # relative to each tensor's largest value (module docstring)
METRICS_ATOL = 1e-4


def quiet(*args, **kwargs):
    pass


# --------------------------------------------------------------------------------------
# Pieces without MPI: blocks of rows, the launcher's variables, the choice of group
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 2, 3, 22, 64, 96, 97])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_rows_are_contiguous_blocks_covering_the_batch_once(n, size):
    blocks = [dist.rows(n, r, size) for r in range(size)]
    assert blocks[0].start == 0 and blocks[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
    lengths = [b.stop - b.start for b in blocks]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
    assert n == 0 or lengths[0] > 0          # rank 0 has a row whenever there is one


def test_rows_refuses_a_rank_outside_the_group():
    with pytest.raises(ValueError, match="rank"):
        dist.rows(10, 2, 2)


def test_launch_is_read_from_each_launchers_variables():
    assert launch_from_env({}).alone
    hydra = launch_from_env({"PMI_SIZE": "4", "PMI_RANK": "3", "MPI_LOCALNRANKS": "2",
                             "MPI_LOCALRANKID": "1"})
    assert (hydra.size, hydra.rank, hydra.local_size, hydra.local_rank) == (4, 3, 2, 1)
    assert "PMI_SIZE=4" in hydra.describe()
    ompi = launch_from_env({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1",
                            "OMPI_COMM_WORLD_LOCAL_SIZE": "2"})
    assert (ompi.launcher, ompi.size, ompi.rank, ompi.local_size) == ("Open MPI", 2, 1, 2)
    with pytest.raises(ValueError, match="PMI_SIZE='two'"):
        launch_from_env({"PMI_SIZE": "two"})


def test_cpu_threads_default_to_the_cores_shared_among_local_processes(monkeypatch):
    from tinyalex.kernels import cpu_threads
    monkeypatch.delenv("TINYALEX_CPU_THREADS", raising=False)
    for name in ("PMI_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert cpu_threads._threads_from_env() == 16
    monkeypatch.setenv("PMI_SIZE", "8")
    monkeypatch.setenv("MPI_LOCALNRANKS", "4")
    assert cpu_threads._threads_from_env() == 4
    monkeypatch.setenv("MPI_LOCALNRANKS", "32")
    assert cpu_threads._threads_from_env() == 1
    monkeypatch.setenv("TINYALEX_CPU_THREADS", "3")        # the variable still decides
    assert cpu_threads._threads_from_env() == 3


def test_auto_is_none_alone_nccl_on_cupy_mpi_on_numpy():
    alone, four = launch_from_env({}), launch_from_env({"PMI_SIZE": "4"})
    assert dist.choose("auto", "numpy", alone) == "none"
    assert dist.choose("auto", "cupy", alone) == "none"
    assert dist.choose("auto", "numpy", four) == "mpi"
    assert dist.choose("auto", "cupy", four) == "nccl"
    assert dist.make_group("auto", "numpy", environ={}) is dist.SOLO


def test_contradicting_flags_are_clear_errors():
    four = launch_from_env({"PMI_SIZE": "4"})
    with pytest.raises(ValueError, match=r"--dist none, but MPICH/Hydra \(PMI\) started 4 "
                                         r"processes \(PMI_SIZE=4\)"):
        dist.choose("none", "numpy", four)
    with pytest.raises(ValueError, match="--dist nccl .* needs --backend cupy"):
        dist.choose("nccl", "numpy", four)
    with pytest.raises(ValueError, match="--dist 'gloo': expected one of auto, none, mpi"):
        dist.choose("gloo", "numpy", four)


def test_the_script_under_mpi_with_dist_none_says_which_flag_contradicts(monkeypatch,
                                                                          capsys, tmp_path):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    assert main("lenet", ["--dist", "none", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--dist none, but MPICH/Hydra (PMI) started 2 processes" in err
    assert not (tmp_path / "run").exists()


def test_mpi_without_mpi4py_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "mpi4py", None)     # import mpi4py now fails
    with pytest.raises(dist.DistributedError, match=r"--dist mpi, which needs mpi4py .*"
                                                     r"pip install mpi4py mpich"):
        dist.make_group("mpi", "numpy", environ={})
    monkeypatch.setenv("PMI_SIZE", "2")
    assert main("lenet", ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--dist auto trains on all of them (MPICH/Hydra (PMI) started 2 processes" in err
    assert "pip install mpi4py mpich" in err and "pip install -e '.[mpi]'" in err


# --------------------------------------------------------------------------------------
# Dropout at an offset: each process draws its rows of the global batch's masks
# --------------------------------------------------------------------------------------

def test_seed_at_shifts_the_counter_of_the_mask():
    seed, p = 123456789, 0.3
    whole = R.keep_mask(seed, 1000, p)
    for offset in (1, 17, 999):
        np.testing.assert_array_equal(R.keep_mask(R.seed_at(seed, offset), 1000 - offset, p),
                                      whole[offset:])


@pytest.mark.parametrize("first", [1, 3, 5])
def test_dropout_of_a_block_of_rows_is_those_rows_of_the_batch(backend, kernel_mode, first):
    """Forward and backward of rows first.. as dropout(first_row=first) equal those rows
    of the whole batch's, with the same seed drawn, on every backend and kernel set."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 5, 7)).astype(np.float32)        # (N, C, H, W)
    gy = rng.standard_normal(x.shape).astype(np.float32)

    def forward_backward(rows, first_row):
        tinyalex.manual_seed(7)
        t = tinyalex.tensor(x[rows], requires_grad=True, backend=backend)
        y = dropout(t, 0.5, first_row=first_row)
        y.backward(tinyalex.tensor(gy[rows], backend=backend))
        return tinyalex.backend.to_numpy(y.array), tinyalex.backend.to_numpy(t.grad.array)

    y_all, g_all = forward_backward(slice(None), 0)
    y_part, g_part = forward_backward(slice(first, None), first)
    np.testing.assert_array_equal(y_part, y_all[first:])
    np.testing.assert_array_equal(g_part, g_all[first:])
    assert 0.3 < (y_all == 0).mean() < 0.7       # a mask that drops about half


def test_the_gpu_kernel_whose_seed_lives_on_the_device_draws_the_same_rows(emulated_cupy):
    """The GPU's dropout kernel takes its seed from device memory (a stream number of
    ``DeviceRNG``), so the offset cannot be folded into the seed: the op runs the kernel
    over the rows before the block too (``rows_of_larger_batch``). Here the GPU path's
    own algorithm, its CUDA source built for the CPU (``emulated_cupy``)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 40)).astype(np.float32)                # (N, F)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    runs = []
    for first in (0, 4):
        tinyalex.manual_seed(7)          # a new generator: the device state starts again
        launches = emulated_cupy.modules.launches
        t = tinyalex.tensor(x[first:], requires_grad=True)
        y = dropout(t, 0.5, first_row=first)
        y.backward(tinyalex.tensor(gy[first:]))
        assert emulated_cupy.modules.launches > launches       # the emulated GPU kernel ran
        runs.append((y.numpy(), t.grad.numpy()))
    (y_all, g_all), (y_part, g_part) = runs
    np.testing.assert_array_equal(y_part, y_all[4:])
    np.testing.assert_array_equal(g_part, g_all[4:])
    assert 0.3 < (y_all == 0).mean() < 0.7


def test_outside_batch_rows_the_seed_is_untouched():
    """Alone nothing changes: offset 0 is the mask of the seed itself; a share's rows
    are set on the network's Dropout layers for its step only (train/shares.py)."""
    from tinyalex.train.shares import batch_rows
    net = tinyalex.models.alexnet()
    layers = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(layers) == 2
    assert all(m.first_row == 0 for m in layers) and R.seed_at(42, 0) == 42
    with batch_rows(net, 5):
        assert all(m.first_row == 5 for m in layers)
    assert all(m.first_row == 0 for m in layers)


# --------------------------------------------------------------------------------------
# Jobs of 2 processes against 1 process and against the two-shard reference
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("dist") / "data", 256, 128)


@pytest.fixture(scope="module")
def mpiexec():
    return require_mpi(2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data, mpiexec):
    """JOB on 2 processes and alone, and the two-shard REFERENCE, loaded."""
    out = tmp_path_factory.mktemp("runs")
    (out / "two").mkdir()
    (out / "one").mkdir()
    (job := out / "job.py").write_text(JOB)
    (ref := out / "reference.py").write_text(REFERENCE)
    recipe = json.dumps(RECIPE)
    ok(mpi_job(mpiexec, 2, [str(job), str(data), str(out / "two"), recipe]))
    ok(run([sys.executable, str(job), str(data), str(out / "one"), recipe]))
    ok(run([sys.executable, str(ref), str(data), str(out), recipe]))
    load = lambda path: dict(np.load(path, allow_pickle=False))  # noqa: E731
    return {"rank0": load(out / "two" / "rank0.npz"), "rank1": load(out / "two" / "rank1.npz"),
            "one": load(out / "one" / "rank0.npz"), "reference": load(out / "reference.npz")}


def test_a_single_process_never_imports_mpi4py(runs):
    """Alone (no launcher variables) fit and the scripts' modules leave mpi4py alone."""
    assert not runs["one"]["mpi4py"] and runs["rank0"]["mpi4py"]


def test_two_processes_equal_the_two_shard_reference_bit_for_bit(runs):
    assert int(runs["rank0"]["processes"]) == 2 and int(runs["one"]["processes"]) == 1
    for net in ("lenet", "mlp"):
        np.testing.assert_array_equal(runs["rank0"][net], runs["reference"][net], err_msg=net)


def test_every_process_holds_the_same_parameters_and_random_state(runs):
    for key in ("lenet", "mlp", "rng", "lenet_records", "mlp_stats", "mlp_acc"):
        if key in ("lenet_records", "mlp_stats"):       # the same numbers, timings aside
            a, b = (json.loads(str(runs[r][key])) for r in ("rank0", "rank1"))
            for x, y in zip(a, b):
                assert {k: v for k, v in x.items() if "sec" not in k} == \
                    {k: v for k, v in y.items() if "sec" not in k}
        else:
            np.testing.assert_array_equal(runs["rank0"][key], runs["rank1"][key], err_msg=key)


def test_two_processes_equal_one_to_float32_noise(runs):
    two, one = runs["rank0"], runs["one"]
    for net in ("lenet", "mlp"):
        diff = np.abs(two[net] - one[net]).max() / np.abs(one[net]).max()
        assert diff <= WEIGHTS_RTOL, f"{net}: {diff:.2e}"
    (rec2,), (rec1,) = json.loads(str(two["lenet_records"])), json.loads(str(one["lenet_records"]))
    assert rec2["examples"] == rec1["examples"] == 150
    for key in ("loss", "train_acc", "test_acc"):
        assert abs(rec2[key] - rec1[key]) <= METRICS_ATOL, key
    for s2, s1 in zip(json.loads(str(two["mlp_stats"])), json.loads(str(one["mlp_stats"]))):
        for key in ("loss", "train_acc"):
            assert abs(s2[key] - s1[key]) <= METRICS_ATOL, key
    assert abs(float(two["mlp_acc"]) - float(one["mlp_acc"])) <= METRICS_ATOL
    np.testing.assert_array_equal(two["rng"], one["rng"])      # the same dropout seeds drawn


# --------------------------------------------------------------------------------------
# The training script under mpiexec: rank 0 alone prints, writes and reads
# --------------------------------------------------------------------------------------

def assert_checkpoints_close(got_path, want_path):
    got, want = load_checkpoint(got_path), load_checkpoint(want_path)
    assert got.epoch == want.epoch and got.recipe == want.recipe
    assert got.rng_state == want.rng_state
    for name, w in want.params.items():
        diff = np.abs(got.params[name] - w).max() / np.abs(w).max()
        assert diff <= WEIGHTS_RTOL, f"{name}: {diff:.2e}"
    for name, g, w in zip(want.optimizer_state["params"], got.optimizer_state["momentum_buffers"],
                          want.optimizer_state["momentum_buffers"]):
        assert np.abs(g - w).max() <= WEIGHTS_RTOL * np.abs(w).max(), f"momentum of {name}"
    for g, w in zip(got.metrics["epochs"], want.metrics["epochs"]):
        assert g["examples"] == w["examples"]
        for key in ("loss", "train_acc", "test_acc"):
            assert abs(g[key] - w[key]) <= METRICS_ATOL, key


def test_rank_0_alone_prints_writes_and_reads_and_a_run_resumes_across_a_change_of_n(
        tmp_path, data, mpiexec):
    """2 processes for epoch 1 then 1 process for epoch 2, and 1 then 2, both equal to
    an uninterrupted run of 1 process to float32 noise. Rank 1 is given another --out
    (mpiexec's A : B form): it neither writes there nor needs a checkpoint there."""
    first, second = tmp_path / "first", tmp_path / "second"
    args = lambda out, *extra: lenet_args(data, out, *extra)       # noqa: E731
    two = run(mpmd(mpiexec, [args(tmp_path / "a", "--epochs", "1"),
                             args(first, "--epochs", "1")]))
    out = ok(two)
    lines = out.splitlines()
    assert sum(line.startswith("epoch 1/1: loss ") for line in lines) == 1
    assert [line for line in lines if line.startswith("epoch ")][0].endswith(
        "examples/sec on numpy x 2 processes")
    assert len(lines) == len(set(lines)), "a line printed by more than one process"
    assert "distributed: 2 processes on 1 machine (mpi)" in out
    assert sorted(os.listdir(tmp_path / "a")) == ["checkpoint.npz", "curves.png",
                                                  "metrics.json"]
    assert not first.exists()                     # rank 1 wrote nothing
    assert read_metrics(tmp_path / "a")["processes"] == 2

    # the runs of 1 process in this process, through the API the script calls
    fashion = load_fashion_mnist(data)
    recipe = dict(D2L_RECIPES["lenet"], **RECIPE)
    fit(dict(recipe, epochs=2), fashion, out_dir=tmp_path / "a", log=quiet,
        resume=tmp_path / "a" / "checkpoint.npz")
    fit(dict(recipe, epochs=1), fashion, out_dir=tmp_path / "b", log=quiet)
    fit(dict(recipe, epochs=2), fashion, out_dir=tmp_path / "u", log=quiet)
    resumed = ok(run(mpmd(mpiexec, [args(tmp_path / "b", "--epochs", "2", "--resume"),
                                    args(second, "--epochs", "2", "--resume")])))
    assert epochs_printed(resumed) == [2] and not second.exists()
    for path in ("a", "b"):                       # 2 -> 1 and 1 -> 2 processes
        assert_checkpoints_close(tmp_path / path / "checkpoint.npz",
                                 tmp_path / "u" / "checkpoint.npz")


# --------------------------------------------------------------------------------------
# Faults: a process that raises, signals, a killed process
# --------------------------------------------------------------------------------------

def test_a_process_that_raises_ends_the_whole_job_at_once_with_its_message(
        tmp_path, data, mpiexec):
    """Process 1 raises in its second update; without MPI_Abort process 0 would wait
    in its next collective until the test's timeout."""
    (script := tmp_path / "faulty.py").write_text(FAULTY)
    done = run([mpiexec, "-n", "2", sys.executable, str(script),
                *lenet_args(data, tmp_path / "run", "--epochs", "2")[1:]],
               FAULT="raise", FAULT_STEP=2)
    ended = time.time()
    assert done.returncode == 2, done.stderr           # a ValueError's status (exits.py)
    assert "error on process 1 of 2" in done.stderr
    assert "bad batch on process 1 (injected)" in done.stderr
    raised = float(next(line.split()[-1] for line in done.stdout.splitlines()
                        if line.startswith("rank 1 raises at")))
    assert ended - raised < 10, f"the job took {ended - raised:.1f} s to end"


def test_a_process_with_another_copy_of_the_data_set_ends_the_job_before_training(
        tmp_path, data, mpiexec):
    other = tiny_dataset(tmp_path / "other", 256, 128, seed=1)
    done = run(mpmd(mpiexec, [lenet_args(data, tmp_path / "run", "--epochs", "1"),
                              lenet_args(other, tmp_path / "run1", "--epochs", "1")]))
    assert done.returncode == 2, done.stderr
    assert "process 1 on" in done.stderr and "reads other training images than rank 0" \
        in done.stderr
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_an_uncaught_exception_on_one_process_aborts_the_job(tmp_path, mpiexec):
    code = ("from tinyalex.dist import make_group\n"
            "group = make_group('mpi', 'numpy')\n"
            "if group.rank == 1:\n    raise KeyError('only on process 1')\n"
            "group.sum_host([0.0])\n")
    done = run([mpiexec, "-n", "2", sys.executable, "-c", code], timeout=60)
    assert done.returncode == 1 and done.seconds < 30
    assert "KeyError: 'only on process 1'" in done.stderr     # its traceback
    assert "error on process 1 of 2" in done.stderr


@pytest.mark.parametrize("target", ["launcher", "process 1"])
def test_sigterm_stops_every_process_at_the_same_step_and_the_checkpoint_is_whole(
        tmp_path, data, mpiexec, target):
    """SIGTERM while update 5 (epoch 2's second) is in progress, to mpiexec (which
    forwards it to every process) or to process 1 alone: both stop after that step,
    status 143, and the checkpoint of epoch 1 loads."""
    (script := tmp_path / "faulty.py").write_text(FAULTY)
    release, out = tmp_path / "release", tmp_path / "run"
    proc = start_job([mpiexec, "-n", "2", sys.executable, str(script),
                      *lenet_args(data, out, "--epochs", "3")[1:]],
                     FAULT="hold", FAULT_STEP=5, RELEASE=release)
    try:
        for rank in (0, 1):
            wait_for(proc, proc.out_lines, f"rank {rank} step 5: holding")
        ranks = pids(proc.out_lines)
        os.kill(proc.pid if target == "launcher" else ranks[1], signal.SIGTERM)
        wait_for(proc, proc.err_lines, "SIGTERM: stopping after this batch",
                 2 if target == "launcher" else 1)
        release.touch()                   # once the signal is in, the step may end
        stdout, stderr = finish(proc)
    finally:
        stop(proc)
    assert proc.returncode == 143, stderr
    assert "rank 0: 5 steps" in stdout and "rank 1: 5 steps" in stdout
    assert "training interrupted by SIGTERM during epoch 2" in stderr
    assert load_checkpoint(out / "checkpoint.npz").epoch == 1
    metrics = read_metrics(out)
    assert metrics["status"] == "interrupted" and metrics["interrupted_in_epoch"] == 2


def test_sigkill_of_one_process_ends_the_job_and_resume_continues(tmp_path, data, mpiexec):
    (script := tmp_path / "faulty.py").write_text(FAULTY)
    release, out = tmp_path / "release", tmp_path / "run"
    proc = start_job([mpiexec, "-n", "2", sys.executable, str(script),
                      *lenet_args(data, out, "--epochs", "2")[1:]],
                     FAULT="hold", FAULT_STEP=5, RELEASE=release)
    try:
        for rank in (0, 1):
            wait_for(proc, proc.out_lines, f"rank {rank} step 5: holding")
        os.kill(pids(proc.out_lines)[1], signal.SIGKILL)
        killed = time.monotonic()
        release.touch()
        finish(proc)
        took = time.monotonic() - killed
    finally:
        stop(proc)
    assert proc.returncode != 0 and took < 30
    assert load_checkpoint(out / "checkpoint.npz").epoch == 1
    resumed = ok(run([sys.executable, *lenet_args(data, out, "--epochs", "2", "--resume")]))
    assert epochs_printed(resumed) == [2]


# --------------------------------------------------------------------------------------
# Two machines: network namespaces on this one, MPI over TCP between them
# --------------------------------------------------------------------------------------

@pytest.fixture
def hosts(tmp_path):
    """Two machines (helpers.dist.NetnsHosts: namespaces, a veth pair, hostnames of
    their own), deleted after the test whatever happened."""
    with require_netns(tmp_path) as made:
        yield made


def test_two_machines_over_a_network_train_as_two_local_processes_do(hosts, runs, data,
                                                                     mpiexec, tmp_path):
    """JOB started by mpiexec with a hostfile across two machines, one process each,
    MPI's traffic on TCP over the veth pair: the weights equal the local 2-process
    run's and the two-shard reference's bit for bit (only the transport differs), so
    one process's to float32 noise; every process ran on its own machine, and at least
    every allreduce's bytes crossed the network."""
    (job := tmp_path / "job.py").write_text(JOB)
    (out := tmp_path / "two_hosts").mkdir()
    before = hosts.received_bytes(1)
    result = run(hosts.mpiexec(mpiexec, 2, [str(job), str(data), str(out),
                                            json.dumps(RECIPE)]), 120, **hosts.ENV)
    ok(result)
    crossed = hosts.received_bytes(1) - before
    ranks = [dict(np.load(out / f"rank{r}.npz", allow_pickle=False)) for r in (0, 1)]
    assert [str(r["host"]) for r in ranks] == hosts.hostnames
    assert int(ranks[0]["machines"]) == 2 and int(ranks[0]["processes"]) == 2
    for net in ("lenet", "mlp"):
        np.testing.assert_array_equal(ranks[0][net], runs["rank0"][net], err_msg=net)
        np.testing.assert_array_equal(ranks[1][net], ranks[0][net], err_msg=net)
        np.testing.assert_array_equal(ranks[0][net], runs["reference"][net], err_msg=net)
        diff = np.abs(ranks[0][net] - runs["one"][net]).max() / np.abs(runs["one"][net]).max()
        assert diff <= WEIGHTS_RTOL, f"{net}: {diff:.2e}"
    # the gradient allreduces alone: LeNet 3 steps and the MLP 2 epochs of 3, float32
    gradients = 4 * (3 * ranks[0]["lenet"].size + 6 * ranks[0]["mlp"].size)
    assert crossed >= gradients, (crossed, gradients)


def faulty_job_on_two_hosts(hosts, mpiexec, data, tmp_path, timeout_s):
    """The FAULTY LeNet run across the two machines, both processes holding in update
    2; (job, release file)."""
    (script := tmp_path / "faulty.py").write_text(FAULTY)
    release, out = tmp_path / "release", tmp_path / "run"
    proc = start_job(hosts.mpiexec(mpiexec, 2, [str(script),
                                                *lenet_args(data, out, "--epochs", "2")[1:]]),
                     FAULT="hold", FAULT_STEP=2, RELEASE=release,
                     TINYALEX_DIST_TIMEOUT=timeout_s, **hosts.ENV)
    for rank in (0, 1):
        wait_for(proc, proc.out_lines, f"rank {rank} step 2: holding", timeout=60)
    return proc, release


def test_a_process_killed_on_one_machine_ends_the_job_with_a_message(hosts, mpiexec, data,
                                                                     tmp_path):
    """SIGKILL of the process on machine 1 in the middle of a step: the launcher
    reports which process, where, and ends the job."""
    proc, release = faulty_job_on_two_hosts(hosts, mpiexec, data, tmp_path, 10)
    victim = pids(proc.out_lines)[1]
    try:
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        release.touch()
        out, err = finish(proc, 60)
        took = time.monotonic() - killed
    finally:
        stop(proc)
    assert proc.returncode != 0 and took < 30, (proc.returncode, took, out, err)
    assert "rank 1: " not in out                       # never reached its exit
    said = out + err
    assert "BAD TERMINATION" in said and f"PID {victim} RUNNING AT {hosts.addresses[1]}" \
        in said, said


def test_a_machine_whose_link_goes_down_ends_the_job_with_a_message(hosts, mpiexec, data,
                                                                   tmp_path):
    """ip link set tnet down on machine 1 while both processes hold in a step: MPI
    would wait forever (TCP retransmits for minutes); each collective gives up after
    TINYALEX_DIST_TIMEOUT (5 s here) with a message, and the job ends."""
    proc, release = faulty_job_on_two_hosts(hosts, mpiexec, data, tmp_path, 5)
    try:
        hosts.link_down(1)
        down = time.monotonic()
        release.touch()
        out, err = finish(proc, 60)
        took = time.monotonic() - down
    finally:
        stop(proc)
    assert proc.returncode != 0 and took < 30, (proc.returncode, took, out, err)
    assert "did not complete within 5 s" in err and "network between the machines is " \
        "down" in err and "ends the whole job" in err, err


# --------------------------------------------------------------------------------------
# NCCL (CuPy backend): run where CuPy, NCCL and GPUs are; the logic they share with
# the MPI path (blocks of rows, the flat buffer, the sums of metrics) is tested above
# --------------------------------------------------------------------------------------

def require_nccl(gpus: int) -> str:
    """mpiexec, and CuPy with NCCL and at least ``gpus`` GPUs, or a skip saying which
    is missing (CI has no GPU: these never run there)."""
    reason = nccl_unavailable_reason()
    if reason:
        pytest.skip(f"CuPy's NCCL is not usable here: {reason}")
    count = tinyalex.backend.cupy_module().cuda.runtime.getDeviceCount()
    if count < gpus:
        pytest.skip(f"{gpus} GPUs needed (NCCL puts one process on each), {count} here")
    return require_mpi(gpus)


NCCL_COLLECTIVES = """
import sys
import numpy as np
from tinyalex import backend as B
from tinyalex.dist import make_group
group = make_group("nccl", "cupy")
cp = B.cupy_module()
assert cp.cuda.Device().id == group.local_rank, (cp.cuda.Device().id, group.local_rank)
a = cp.arange(1000, dtype=cp.float32) * (group.rank + 1)
group.sum_in_place(a)
want = np.arange(1000, dtype=np.float32) * sum(range(1, group.size + 1))
np.testing.assert_array_equal(B.to_numpy(a), want)
b = cp.full(77, group.rank, dtype=cp.float64)
group.broadcast_in_place(b)
assert float(b.max()) == 0.0
print("ok", group.rank, flush=True)
"""


@pytest.mark.parametrize("gpus", [1, 2])
def test_nccl_sums_and_broadcasts_device_buffers_on_the_gpu_of_the_local_rank(gpus):
    mpiexec = require_nccl(gpus)
    done = run([mpiexec, "-n", str(gpus), sys.executable, "-c", NCCL_COLLECTIVES], timeout=120)
    assert ok(done).count("ok ") == gpus


def test_two_gpus_with_nccl_train_as_one_gpu_does(tmp_path, data):
    mpiexec = require_nccl(2)
    gpu = lambda out, *extra: [a if a != "numpy" else "cupy"              # noqa: E731
                               for a in lenet_args(data, out, "--epochs", "1", *extra)]
    out = ok(mpi_job(mpiexec, 2, gpu(tmp_path / "two", "--dist", "nccl"), timeout=300))
    assert "2 processes on 1 machine (nccl)" in out
    ok(run([sys.executable, *gpu(tmp_path / "one")], timeout=300))
    assert_checkpoints_close(tmp_path / "two" / "checkpoint.npz",
                             tmp_path / "one" / "checkpoint.npz")


def test_an_nccl_collective_whose_peer_hangs_times_out_and_ends_the_job():
    mpiexec = require_nccl(2)
    code = ("import time\nfrom tinyalex import backend as B\n"
            "from tinyalex.dist import make_group\n"
            "from tinyalex.dist.mpi import abort_job_on\n"
            "group = make_group('nccl', 'cupy', timeout_s=3)\n"
            "a = B.cupy_module().ones(10, dtype='float32')\n"
            "if group.rank == 1:\n    time.sleep(120)\n"
            "try:\n    group.sum_in_place(a)\n"
            "except Exception as exc:\n    abort_job_on(group.MPI, exc)\n")
    done = run([mpiexec, "-n", "2", sys.executable, "-c", code], timeout=100)
    assert done.returncode != 0 and done.seconds < 60
    assert "did not complete within 3 s" in done.stderr


def test_the_collective_timeout_is_read_from_the_environment_and_checked():
    from tinyalex.dist.mpi import DEFAULT_TIMEOUT_S, collective_timeout_s
    assert collective_timeout_s({}) == DEFAULT_TIMEOUT_S == 600
    assert collective_timeout_s({"TINYALEX_DIST_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ValueError, match=f"TINYALEX_DIST_TIMEOUT='{bad}': expected the "
                                             "seconds a collective waits"):
            collective_timeout_s({"TINYALEX_DIST_TIMEOUT": bad})
