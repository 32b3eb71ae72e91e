"""The training loop on real Fashion-MNIST: learning, exact resume, stopping on
SIGINT or SIGTERM after the current batch and resuming from there, the command line.
Small subsets keep it to seconds (d2l's full LeNet recipe: tests/d2l/test_d2l_recipe.py)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyalex
from tinyalex import cli, models, nn, optim, train
from tinyalex.checkpoint import load_checkpoint, load_model
from helpers.checks import real_fashion_mnist
from helpers.reliability import assert_same_arrays, checkpoint_params, signal_in_batch

ROOT = Path(__file__).resolve().parents[2]
TIMING_KEYS = {"examples_per_sec", "seconds", "train_seconds", "eval_seconds"}


@pytest.fixture(scope="module")
def fashion():
    return real_fashion_mnist()


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        np.testing.assert_array_equal(sa[name].numpy(), sb[name].numpy(), err_msg=name)


# ------------------------------------------------------------------ learning

def relu_lenet():
    """LeNet's shape with ReLU and max pooling. d2l's sigmoid LeNet sits on a plateau
    (loss 2.30) for its whole first full epoch, so a few hundred images cannot show
    it learning; this one learns from them in seconds."""
    return nn.Sequential(nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
                         nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2, 2),
                         nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, 10))


def test_short_real_run_learns(fashion):
    """train_epoch and evaluate_accuracy on 512 real images: the loss falls far below
    chance level (ln 10 = 2.303) and unseen test images are mostly classified right."""
    tinyalex.manual_seed(0)
    net = relu_lenet()
    net.apply(models.init_weights_xavier)
    opt = optim.SGD(net.parameters(), lr=0.05)
    recipe = dict(train.D2L_RECIPES["lenet"], batch_size=16)
    X, y = fashion[0][:512], fashion[1][:512]
    chance = train.evaluate_accuracy(net, fashion[2][:500], fashion[3][:500], 100, "numpy")
    losses = [train.train_epoch(net, opt, X, y, recipe, "numpy", epoch)["loss"]
              for epoch in range(4)]
    assert losses == sorted(losses, reverse=True), losses
    assert losses[-1] < 1.5, losses
    acc = train.evaluate_accuracy(net, fashion[2][:500], fashion[3][:500], 100, "numpy")
    assert acc > 0.5 and acc > chance + 0.3, (chance, acc)


def test_fit_writes_metrics_curves_and_checkpoints(fashion, tmp_path):
    recipe = {"model": "lenet", "epochs": 2, "batch_size": 64, "train_limit": 256,
              "test_limit": 100}
    lines = []
    _, records = train.fit(recipe, fashion, out_dir=tmp_path, log=lines.append)
    losses = [r["loss"] for r in records]
    assert losses[1] < losses[0]            # off the initial loss, onto the plateau
    # the algorithms once, then d2l's summary line once per epoch and once at the end
    assert len(lines) == 4 and lines[0].startswith("algorithms on numpy (")
    assert lines[1].startswith("epoch 1/2: loss ")
    assert lines[-1].startswith(f"loss {losses[-1]:.3f}, train acc ")
    assert lines[-1].endswith(" examples/sec on numpy")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["backend"] == "numpy"
    assert metrics["recipe"]["lr"] == 0.9 and metrics["device"].startswith("CPU")
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2]
    for r in metrics["epochs"]:
        assert {"epoch", "loss", "train_acc", "test_acc", "examples_per_sec", "seconds"} <= set(r)
        assert r["examples"] == 256 and r["seconds"] >= r["train_seconds"] > 0
        assert r["examples_per_sec"] == pytest.approx(256 / r["train_seconds"])
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:4] == b"\x89PNG"
    # d2l's one-axes figure, 5 x 3.5 inches at 100 dpi: IHDR's width and height
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (500, 350)
    assert load_checkpoint(tmp_path / "checkpoint.npz").epoch == 2


def test_accuracy_counts_the_partial_last_batch(fashion):
    net, _ = train.fit({"model": "lenet", "epochs": 1, "train_limit": 64, "test_limit": 10,
                        "batch_size": 32}, fashion, log=lambda s: None)
    X, y = fashion[2][:70], fashion[3][:70]
    predicted = train.predict(net, X, 32, "numpy")
    assert predicted.shape == (70,)
    assert train.evaluate_accuracy(net, X, y, 32, "numpy") == pytest.approx(
        float((predicted == y).mean()))
    np.testing.assert_array_equal(train.predict(net, X, 7, "numpy"), predicted)


# ------------------------------------------------------------------ exact resume

@pytest.mark.parametrize("model,recipe", [
    ("lenet", {"batch_size": 32, "lr": 0.9, "momentum": 0.9, "weight_decay": 1e-4,
               "train_limit": 96, "test_limit": 40, "seed": 3, "flip": True,
               "crop_padding": 2}),
    # AlexNet has dropout: its random stream must resume too (a handful of 224x224 images)
    ("alexnet", {"batch_size": 2, "lr": 0.01, "train_limit": 4, "test_limit": 2, "seed": 5}),
])
def test_resume_equals_uninterrupted_run(fashion, tmp_path, model, recipe):
    recipe = dict(recipe, model=model)
    quiet = dict(log=lambda s: None)
    net_a, rec_a = train.fit(dict(recipe, epochs=2), fashion, out_dir=tmp_path / "a", **quiet)
    train.fit(dict(recipe, epochs=1), fashion, out_dir=tmp_path / "b", **quiet)
    net_b, rec_b = train.fit(dict(recipe, epochs=2), fashion, out_dir=tmp_path / "b",
                             resume=tmp_path / "b" / "checkpoint.npz", **quiet)
    assert without_timing(rec_a) == without_timing(rec_b)
    assert_same_weights(net_a, net_b)
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert without_timing(a["epochs"]) == without_timing(b["epochs"])
    loaded, ck = load_model(tmp_path / "b" / "checkpoint.npz")
    assert ck.epoch == 2 and ck.recipe["model"] == model
    assert_same_weights(loaded, net_a)


def test_resume_refuses_a_different_recipe(fashion, tmp_path):
    recipe = {"model": "lenet", "epochs": 1, "batch_size": 32, "train_limit": 32, "test_limit": 8}
    train.fit(recipe, fashion, out_dir=tmp_path, log=lambda s: None)
    with pytest.raises(ValueError, match="lr: checkpoint 0.9 vs now 0.5"):
        train.fit(dict(recipe, epochs=2, lr=0.5), fashion,
                  resume=tmp_path / "checkpoint.npz", log=lambda s: None)


# ------------------------------------------------------------------ command line

def run_cli(model, *args):
    return cli.main(model, list(args))


def test_cli_resume_rules(fashion, tmp_path, capsys):
    out = str(tmp_path / "run")
    common = ["--backend", "numpy", "--train-limit", "32", "--test-limit", "8",
              "--batch-size", "16", "--no-progress", "--out", out]
    assert run_cli("lenet", *common, "--epochs", "1") == 0
    assert "test acc" in capsys.readouterr().out
    # a second fresh run must not overwrite silently
    assert run_cli("lenet", *common, "--epochs", "1") == 2
    assert "already exists" in capsys.readouterr().err
    # resuming with a changed recipe is refused, with the flag named
    assert run_cli("lenet", "--out", out, "--resume", "--lr", "0.1") == 2
    assert "--lr 0.1 (checkpoint: 0.9)" in capsys.readouterr().err
    # AlexNet's script refuses LeNet's checkpoint, naming what it holds
    assert run_cli("alexnet", "--out", out, "--resume") == 2
    assert "holds a LeNet checkpoint" in capsys.readouterr().err
    # the flags come from the checkpoint; --epochs may grow
    assert run_cli("lenet", "--out", out, "--resume", "--epochs", "2", "--no-progress") == 0
    text = capsys.readouterr().out
    assert "resuming from" in text and "epoch 2/2" in text and "epoch 1/2" not in text
    assert load_checkpoint(Path(out) / "checkpoint.npz").epoch == 2
    assert run_cli("lenet", "--out", out, "--resume", "--no-progress") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert run_cli("lenet", "--out", str(tmp_path / "none"), "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_evaluate_script(fashion, tmp_path):
    out = tmp_path / "run"
    assert run_cli("lenet", "--backend", "numpy", "--train-limit", "64", "--test-limit", "8",
                   "--epochs", "1", "--no-progress", "--out", str(out)) == 0
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "evaluate.py"),
                           str(out / "checkpoint.npz"), "--test-limit", "300",
                           "--backend", "numpy"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "test acc" in proc.stdout and "ankle boot" in proc.stdout and "t-shirt" in proc.stdout
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([sys.executable, str(ROOT / "examples" / "evaluate.py"),
                          str(tmp_path / "missing.npz")], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "missing.npz" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------ Ctrl-C

SIGNALLED = {"model": "lenet", "epochs": 3, "batch_size": 32, "momentum": 0.9,
             "train_limit": 256, "test_limit": 64}          # 8 steps an epoch


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopped_by_a_signal_mid_batch_then_resumed_equals_an_uninterrupted_run(
        fashion, tmp_path, sig, status):
    """The training script signalled while the 4th update of epoch 2 is in progress:
    it finishes that batch (its update is applied) and starts no other, keeps epoch
    1's checkpoint, exits 128 + signal with no traceback; --resume then ends with the
    weights, momentum buffers and metrics (timing aside) of an uninterrupted run."""
    out = tmp_path / "run"
    flags = ["--backend", "numpy", "--epochs", "3", "--batch-size", "32", "--momentum", "0.9",
             "--train-limit", "256", "--test-limit", "64", "--no-progress", "--out", str(out)]
    step = 8 + 4
    code, stdout, stderr = signal_in_batch(tmp_path, "lenet", flags, step, sig)
    name = signal.Signals(sig).name
    assert code == status, (stdout, stderr)
    assert f"{name}: stopping after this batch" in stderr
    assert f"training interrupted by {name} during epoch 2" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    assert f"step {step}: updated" in stdout, stdout           # the batch was finished
    assert f"step {step + 1}:" not in stdout, stdout          # and no other begun
    assert "epoch 1/3: loss" in stdout and "epoch 2/3" not in stdout
    ck = load_checkpoint(out / "checkpoint.npz")
    metrics = json.loads((out / "metrics.json").read_text())
    assert ck.epoch == 1 and len(metrics["epochs"]) == 1
    assert metrics["status"] == "interrupted" and metrics["interrupted_in_epoch"] == 2
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "curves.png", "metrics.json"]

    assert run_cli("lenet", "--out", str(out), "--resume", "--no-progress") == 0
    _, records = train.fit(SIGNALLED, fashion, out_dir=tmp_path / "ref", log=lambda s: None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    assert without_timing(metrics["epochs"]) == without_timing(records)
    saved = checkpoint_params(out / "checkpoint.npz")           # weights and momentum
    assert len(saved) == 2 * 10
    assert_same_arrays(saved, checkpoint_params(tmp_path / "ref" / "checkpoint.npz"))
    assert load_checkpoint(out / "checkpoint.npz").epoch == 3


# ------------------------------------------------------------------ recipe checks

def tiny_data(n=4):
    images = np.zeros((n, 28, 28), np.uint8)
    labels = np.arange(n) % 10
    return images, labels, images, labels


@pytest.mark.parametrize("change,expected", [
    ({"resize": 32}, "lenet cannot take 32x32 inputs .*expected input of shape \\(N, 400\\)"),
    ({"model": "vgg"}, "model must be one of"),
    ({"batchsize": 8}, "unknown keys \\['batchsize'\\]"),
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"lr": -1.0}, "lr must be a positive number"),
    ({"train_limit": 0}, "train_limit must be a positive int or None"),
])
def test_bad_recipes_fail_before_training(change, expected):
    with pytest.raises(ValueError, match=expected):
        train.fit(dict({"model": "lenet", "epochs": 1}, **change), tiny_data(), log=lambda s: None)


def test_a_run_says_once_which_algorithm_computes_each_layer(tmp_path):
    """One line at the start names every distinct choice with its layers, and
    metrics.json records them."""
    lines = []
    train.fit({"model": "lenet", "epochs": 1, "batch_size": 2}, tiny_data(), log=lines.append,
              out_dir=tmp_path)
    said = [s for s in lines if s.startswith("algorithms on numpy")]
    assert said == ["algorithms on numpy (fast kernels, TINYALEX_CONV=auto): direct: "
                    "layers 0, 3; avg-pool loop: layers 2, 5"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["algorithms"] == {"layer 0": "direct", "layer 2": "avg-pool loop",
                                     "layer 3": "direct", "layer 5": "avg-pool loop"}


def test_the_algorithms_are_chosen_for_the_batch_that_trains():
    """Winograd pays only where a batch has enough tiles: AlexNet's conv4 runs im2col +
    GEMM for one image and F(6x6, 3x3) for four, and ``algorithms`` says so for the
    batch it is given (the run asks for its training batch); the shapes come from one
    image whatever the batch."""
    from tinyalex import nn
    net = nn.Sequential(nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(kernel_size=3, stride=2))
    assert net.algorithms((1, 384, 12, 12))[0] == (0, "im2col+GEMM")
    assert net.algorithms((4, 384, 12, 12))[0] == (0, "winograd F(6,3)")
    assert net.algorithms((4096, 384, 12, 12))[0] == (0, "winograd F(6,3)")


def test_an_epoch_through_the_one_call_step_equals_the_plain_loop():
    """The GPU's path through train_epoch (a cuda_graph.TrainStep, one read back per
    step) run on the CPU, where the step is eager: the same weights and record as
    d2l's loop, plus the startup time it keeps apart (none here: no warm-up)."""
    from tinyalex import nn, optim
    from tinyalex.cuda_graph import TrainStep
    from tinyalex.train.epoch import train_epoch
    images = np.random.default_rng(0).integers(0, 256, (96, 28, 28), dtype=np.uint8)
    labels = np.arange(96) % 10
    recipe = dict(train.D2L_RECIPES["lenet"], batch_size=32, epochs=1)

    def epoch(one_call):
        tinyalex.manual_seed(0)
        net = tinyalex.models.lenet()
        flat = nn.FlatParameters(net.parameters())
        opt = optim.SGD(net.parameters(), lr=0.9, flat=flat)
        step = TrainStep(net, opt) if one_call else None
        record = train_epoch(net, opt, images, labels, recipe, "numpy", 0, step=step)
        if one_call:
            assert step.counts == {"eager": 3, "warm-up": 0, "capture": 0, "replay": 0}
        return record, [p.numpy() for p in net.parameters()]

    plain, w_plain = epoch(False)
    stepped, w_stepped = epoch(True)
    assert stepped.pop("startup_seconds") == 0.0
    for key in ("loss", "train_acc", "examples"):
        assert stepped[key] == plain[key], key
    for a, b in zip(w_plain, w_stepped):
        np.testing.assert_array_equal(a, b)


def test_docs_quote_train_step_as_the_code_has_it():
    """docs/convolution.md's "The step, as the code has it" quotes train_step verbatim."""
    import inspect
    import re
    from pathlib import Path

    from tinyalex.train.epoch import train_step
    doc = (Path(__file__).resolve().parents[2] / "docs" / "convolution.md").read_text()
    section = doc.split("## The step, as the code has it", 1)
    assert len(section) == 2, "docs/convolution.md lost its section quoting train_step"
    quote = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert quote is not None, "the section holds no python block"
    assert quote.group(1) == inspect.getsource(train_step)
    assert "optimizer.zero_grad()" in quote.group(1) and "loss.backward()" in quote.group(1)
