"""tinyalex.models' modern CNNs (vgg11, nin, googlenet, resnet18, densenet) are the book's
networks: each has the state-dict keys and shapes of the network the book's train_ch6
edition builds in PyTorch (examples/d2l/<section>_ch6.py's model cells, run on real
PyTorch as tests/d2l/test_d2l_modern_chapters.py runs them), takes that network's weights,
and then gives its logits in eval mode (batch norm on its running statistics)."""

from __future__ import annotations

import contextlib
import io
import runpy

import re

import numpy as np
import pytest

import tinyalex
from helpers.checks import require_torch
from helpers.reliability import ROOT
from test_d2l_modern_chapters import TRAINING, model_cells

torch = require_torch()

SMALL_VGG = ((1, 16), (1, 32), (2, 64), (2, 128), (2, 128))
# VGG's script is cut before it builds the full network (its definitions suffice)
UNTIL = {"vgg_ch6": re.compile(r"^net = vgg\(conv_arch\)", re.M)}
CASES = {  # model: (script, its network from the script's globals, input side)
    "vgg11": ("vgg_ch6", lambda g: g["vgg"](SMALL_VGG), 224),
    "nin": ("nin_ch6", lambda g: g["net"], 224),
    "googlenet": ("googlenet_ch6", lambda g: g["net"], 96),
    "resnet18": ("resnet_ch6", lambda g: g["net"], 96),
    "densenet": ("densenet_ch6", lambda g: g["net"], 96),
}


@pytest.mark.parametrize("name", list(CASES))
def test_model_is_the_books_network(name, tmp_path, monkeypatch):
    script, pick, side = CASES[name]
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "helpers"))  # the script's d2l stand-in
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = pick(runpy.run_path(str(model_cells(script, tmp_path, True,
                                                     UNTIL.get(script, TRAINING)))))
    ours = tinyalex.models.vgg11(conv_arch=SMALL_VGG) if name == "vgg11" \
        else getattr(tinyalex.models, name)()
    want = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == want
    with torch.no_grad():                 # running statistics away from 0 and 1
        for name_, b in theirs.named_buffers():
            if b.dtype == torch.float32:
                b.uniform_(0.5, 1.5)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    theirs.eval(), ours.eval()
    x = np.random.default_rng(0).random((1, 1, side, side), dtype=np.float32)
    with torch.no_grad():
        expected = theirs(torch.tensor(x)).numpy()
    with tinyalex.no_grad():
        got = ours(tinyalex.tensor(x)).numpy()
    assert got.shape == (1, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
