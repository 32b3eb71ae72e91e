"""The documented way to try a d2l chapter in a minute: TINYALEX_D2L_LIMIT (the first N
images of each split) and TINYALEX_D2L_EPOCHS (epochs in place of the book's), read by
tinyalex.d2l's loaders and trainers, which say so when in effect. The chapters' scripts
run unmodified on the real data set."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers.reliability import ROOT, child_env

EXAMPLES = ROOT / "examples" / "d2l"


def run_small(name, folder, limit, epochs):
    env = dict(child_env(), TINYALEX_D2L_LIMIT=str(limit), TINYALEX_D2L_EPOCHS=str(epochs))
    out = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_the_train_ch6_alexnet_chapter_on_a_subset(tmp_path):
    out = run_small("alexnet_ch6", tmp_path, 64, 1)
    assert ("load_data_fashion_mnist: TINYALEX_D2L_LIMIT=64: the first 64 of 60000 training "
            "and 64 of 10000 test images (unset it for all)") in out
    assert "train_ch6: TINYALEX_D2L_EPOCHS=1: 1 epoch instead of 10 (unset it for the " \
           "book's)" in out
    assert re.search(r"^loss \d\.\d{3}, train acc [01]\.\d{3}, test acc [01]\.\d{3}$", out,
                     re.M), out


def test_the_d2l_1_0_trainer_on_a_subset(tmp_path):
    out = run_small("lenet_v1", tmp_path, 256, 2)
    assert "FashionMNIST: TINYALEX_D2L_LIMIT=256: the first 256 of 60000 training" in out
    assert "Trainer: TINYALEX_D2L_EPOCHS=2: 2 epochs instead of 10" in out
    assert re.search(r"^val acc [01]\.\d{3} after 2 epochs$", out, re.M), out


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_value_names_the_variable_and_what_works(monkeypatch, value):
    from tinyalex.d2l import load_data_fashion_mnist
    monkeypatch.setenv("TINYALEX_D2L_LIMIT", value)
    with pytest.raises(ValueError, match=r"TINYALEX_D2L_LIMIT=.*expected a positive whole "
                                         r"number \(for example TINYALEX_D2L_LIMIT=1024\)"):
        load_data_fashion_mnist(256)
