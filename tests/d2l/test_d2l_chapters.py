"""The chapters' own code (examples/d2l/*.py, the book's PyTorch listings with the three
imports changed) runs end to end as a user runs it: a subprocess in a fresh folder, the
data found through $FASHION_MNIST_DIR (the first images of the real set, written by the
test as IDX files). Every line a script prints is checked: d2l's lines and nothing else.

LeNet's scripts run as they are (10 epochs on a few thousand images take seconds);
AlexNet's run 1 epoch, the one line that says 10 epochs changed in a copy of the
script (the full recipe is a GPU's job): the train_ch6 edition on 512 training and
256 test images (four batches of d2l's 128), the 1.0 edition, which shares its network and loop underneath, on
256 and 128 (the suite's time on 2 cores)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers.reliability import PNG_END, ROOT, child_env
from test_d2l_data import small_folder

EXAMPLES = ROOT / "examples" / "d2l"
TRAINED = [r"training on (cpu|cuda:0)",
           r"\(animator: no display in a plain script; the figure is written to .*"
           r"_animator\.png as it changes\)",
           r"loss \d+\.\d{3}, train acc [01]\.\d{3}, test acc [01]\.\d{3}",
           r"\d+\.\d examples/sec on (cpu|cuda:0)"]
BOARD = [r"\(board: no display in a plain script; the figure is written to .*_board\.png "
         r"as it changes\)",
         r"val acc [01]\.\d{3} after \d+ epochs"]
LENET_SHAPES = ["Conv2d (1, 6, 28, 28)", "Sigmoid (1, 6, 28, 28)", "AvgPool2d (1, 6, 14, 14)",
                "Conv2d (1, 16, 10, 10)", "Sigmoid (1, 16, 10, 10)", "AvgPool2d (1, 16, 5, 5)",
                "Flatten (1, 400)", "Linear (1, 120)", "Sigmoid (1, 120)", "Linear (1, 84)",
                "Sigmoid (1, 84)", "Linear (1, 10)"]
ALEXNET_SHAPES = [
    "Conv2d (1, 96, 54, 54)", "ReLU (1, 96, 54, 54)", "MaxPool2d (1, 96, 26, 26)",
    "Conv2d (1, 256, 26, 26)", "ReLU (1, 256, 26, 26)", "MaxPool2d (1, 256, 12, 12)",
    "Conv2d (1, 384, 12, 12)", "ReLU (1, 384, 12, 12)", "Conv2d (1, 384, 12, 12)",
    "ReLU (1, 384, 12, 12)", "Conv2d (1, 256, 12, 12)", "ReLU (1, 256, 12, 12)",
    "MaxPool2d (1, 256, 5, 5)", "Flatten (1, 6400)", "Linear (1, 4096)", "ReLU (1, 4096)",
    "Dropout (1, 4096)", "Linear (1, 4096)", "ReLU (1, 4096)", "Dropout (1, 4096)",
    "Linear (1, 10)"]


@pytest.fixture(scope="module")
def lenet_data(tmp_path_factory):
    return small_folder(tmp_path_factory.mktemp("lenet_data"), 2560, 512)


@pytest.fixture(scope="module")
def alexnet_data(tmp_path_factory):
    return small_folder(tmp_path_factory.mktemp("alexnet_data"), 512, 256)


@pytest.fixture(scope="module")
def alexnet_small_data(tmp_path_factory):
    return small_folder(tmp_path_factory.mktemp("alexnet_small_data"), 256, 128)


def run_chapter(name, data, folder, replace=None, timeout=900):
    """Run examples/d2l/<name>.py (or a copy with one line replaced) in ``folder``."""
    script = EXAMPLES / f"{name}.py"
    if replace is not None:
        old, new = replace
        source = script.read_text()
        assert source.count(old) == 1, f"{script} should hold {old!r} once"
        script = folder / f"{name}.py"
        script.write_text(source.replace(old, new))
    env = dict(child_env(), FASHION_MNIST_DIR=str(data))
    out = subprocess.run([sys.executable, str(script)], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def shapes(lines):
    """PyTorch's shape lines, 'Conv2d output shape: \t torch.Size([1, 6, 28, 28])' (the
    train_ch6 edition's spacing; 1.0's has no space before the tab), as 'Conv2d (1, 6, 28,
    28)'; any other line is left as it is, and fails the comparison."""
    found = [re.fullmatch(r"(\w+) output shape: ?\t torch\.Size\(\[([\d, ]+)\]\)", line)
             for line in lines]
    return [f"{m[1]} ({m[2]})" if m else line for m, line in zip(found, lines)]


def assert_lines(lines, patterns):
    assert len(lines) == len(patterns), "\n".join(lines)
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern, line), (line, pattern)


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and data.endswith(PNG_END)


def test_lenet_train_ch6_edition(lenet_data, tmp_path):
    lines = run_chapter("lenet_ch6", lenet_data, tmp_path)
    assert shapes(lines[:12]) == LENET_SHAPES
    assert_lines(lines[12:], TRAINED)
    assert_png(tmp_path / "lenet_ch6_animator.png")


def test_lenet_v1_edition(lenet_data, tmp_path):
    lines = run_chapter("lenet_v1", lenet_data, tmp_path)
    assert shapes(lines[:12]) == LENET_SHAPES
    assert_lines(lines[12:], BOARD)
    assert lines[-1].endswith("after 10 epochs")
    assert_png(tmp_path / "lenet_v1_board.png")


def test_alexnet_train_ch6_edition(alexnet_data, tmp_path):
    lines = run_chapter("alexnet_ch6", alexnet_data, tmp_path,
                        replace=("lr, num_epochs = 0.01, 10", "lr, num_epochs = 0.01, 1"))
    assert shapes(lines[:21]) == ALEXNET_SHAPES
    assert_lines(lines[21:], TRAINED)
    assert_png(tmp_path / "alexnet_ch6_animator.png")


def test_alexnet_v1_edition(alexnet_small_data, tmp_path):
    lines = run_chapter("alexnet_v1", alexnet_small_data, tmp_path,
                        replace=("d2l.Trainer(max_epochs=10, num_gpus=1)",
                                 "d2l.Trainer(max_epochs=1, num_gpus=1)"))
    assert shapes(lines[:21]) == ALEXNET_SHAPES
    assert_lines(lines[21:], BOARD)
    assert lines[-1].endswith("after 1 epochs")
    assert_png(tmp_path / "alexnet_v1_board.png")
