"""examples/main.py, the README's main command, as a newcomer meets it: run again after
Ctrl-C it continues, a finished run is not trained again, Ctrl-C at any moment of
start-up is one line, and an unusable backend is one ``error:`` line with status 2.

The runs are ``--quick`` on a tiny random data set (the real script, in a subprocess):
nothing to learn, but every step of the command runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from helpers.reliability import ROOT, child_env, epochs_printed, tiny_dataset
from tinyalex import backend as B
from tinyalex.checkpoint import load_checkpoint
from tinyalex.recipes import D2L_RECIPES

MAIN = str(ROOT / "examples" / "main.py")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"), n_train=8, n_test=4)


def main_cmd(tiny, out, *extra):
    return [sys.executable, MAIN, "--quick", "--backend", "numpy", "--data-dir", str(tiny),
            "--out", str(out), "--no-progress", *extra]


def run(cmd, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, env=child_env(),
                          timeout=timeout)


def test_rerunning_continues_after_ctrl_c_and_leaves_a_complete_run_alone(tiny, tmp_path):
    out = tmp_path / "runs"
    cmd = main_cmd(tiny, out)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    try:
        for line in proc.stdout:
            if line.startswith("epoch 3/10"):
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    resume = [ln for ln in stderr.splitlines() if ln.startswith("resume with: ")]
    assert resume and resume[0].endswith(" ".join(cmd[2:])), stderr
    kept = load_checkpoint(out / "lenet" / "checkpoint.npz").epoch
    assert 3 <= kept < 10

    again = run(cmd)                                   # the same command continues
    assert again.returncode == 0, again.stderr
    assert f"resuming from {out / 'lenet' / 'checkpoint.npz'} after epoch {kept}" \
        in again.stdout
    assert epochs_printed(again.stdout)[:10 - kept] == list(range(kept + 1, 11))
    assert load_checkpoint(out / "lenet" / "checkpoint.npz").epoch == 10
    assert (out / "comparison.json").is_file()

    third = run(cmd)                                   # complete: nothing trained
    assert third.returncode == 0, third.stderr
    assert epochs_printed(third.stdout) == []
    assert third.stdout.count("not trained again (--overwrite trains afresh)") == 2

    # another recipe into the same folder (--full's AlexNet) is refused, naming the way out
    main = example_main()
    full = dict(D2L_RECIPES["alexnet"])
    with pytest.raises(ValueError, match=r"alexnet/checkpoint\.npz was trained with another "
                                         r"recipe \(batch_size 16 \(now 128\).*--overwrite"):
        main.existing_run("alexnet", full, out / "alexnet")
    quick = dict(D2L_RECIPES["alexnet"], **main.QUICK["alexnet"])
    assert main.existing_run("alexnet", quick, out / "alexnet").epoch == 2


def example_main():
    import importlib.util
    spec = importlib.util.spec_from_file_location("main_script", MAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("after", ["spawn", "first line"])
def test_ctrl_c_during_start_up_is_one_line(tiny, tmp_path, after):
    """SIGINT while Python imports (0.3 s after the start), and once the first line is
    printed (loading the data, building and compiling the networks)."""
    proc = subprocess.Popen(main_cmd(tiny, tmp_path / "runs"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        if after == "spawn":
            time.sleep(0.3)
        else:
            proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 2, stderr
    assert "interrupted" in stderr


@pytest.mark.skipif(B.cupy_available(), reason="a GPU is usable here: cupy is not refused")
@pytest.mark.parametrize("script", ["main.py", "shapes.py"])
def test_an_unusable_cupy_backend_is_one_error_line(script):
    proc = run([sys.executable, str(ROOT / "examples" / script), "--backend", "cupy"])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and "error: " in lines[-1], proc.stderr
    assert "--backend cupy" in lines[-1] and "numpy" in lines[-1], proc.stderr
