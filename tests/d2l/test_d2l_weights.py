"""Weights both ways with PyTorch through safetensors files (tinyalex/safetensors_io.py):
a file PyTorch's d2l networks save loads into tinyalex's and gives the same logits, and
the reverse, in both d2l editions' naming; bad files are ValueErrors naming the entry,
and nothing is ever unpickled."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest

import tinyalex
from tinyalex import d2l, nn
from tinyalex.safetensors_io import model_from_file
from helpers.checks import require_torch
from helpers.reliability import ROOT

torch = require_torch()                     # at module level: skips or fails the module
import safetensors.torch  # noqa: E402  (needs torch)
from helpers.torch_nets import logits_of, torch_alexnet, torch_lenet  # noqa: E402


NETS = {"lenet": (torch_lenet, tinyalex.models.lenet, 28),
        "alexnet": (torch_alexnet, tinyalex.models.alexnet, 224)}


@pytest.mark.parametrize("name", ["lenet", "alexnet"])
def test_pytorch_weights_load_into_tinyalex_and_give_the_same_logits(name, tmp_path):
    make_torch, make_ours, size = NETS[name]
    torch.manual_seed(0)
    theirs = make_torch()
    path = tmp_path / f"{name}.safetensors"
    safetensors.torch.save_file(theirs.state_dict(), str(path))
    ours = make_ours()
    ours.load_state_dict(tinyalex.load(path))
    got, want = logits_of(ours, theirs, size)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6 * np.abs(want).max())
    assert not np.allclose(want[0], want[1])             # two images, two answers


@pytest.mark.parametrize("name", ["lenet", "alexnet"])
def test_tinyalex_weights_load_into_pytorch_and_give_the_same_logits(name, tmp_path):
    make_torch, make_ours, size = NETS[name]
    tinyalex.manual_seed(1)
    ours = make_ours()
    ours.apply(tinyalex.models.init_weights_xavier)
    path = tmp_path / f"{name}.safetensors"
    tinyalex.save(ours.state_dict(), path)
    theirs = make_torch()
    result = theirs.load_state_dict(safetensors.torch.load_file(str(path)))
    assert not result.missing_keys and not result.unexpected_keys
    got, want = logits_of(ours, theirs, size, seed=1)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6 * np.abs(want).max())


class TorchLeNetV1(torch.nn.Module):
    """d2l 1.0's LeNet as PyTorch builds it: lazy layers kept in self.net."""

    def __init__(self):
        super().__init__()
        t = torch.nn
        self.net = t.Sequential(
            t.LazyConv2d(6, kernel_size=5, padding=2), t.Sigmoid(), t.AvgPool2d(2, 2),
            t.LazyConv2d(16, kernel_size=5), t.Sigmoid(), t.AvgPool2d(2, 2), t.Flatten(),
            t.LazyLinear(120), t.Sigmoid(), t.LazyLinear(84), t.Sigmoid(), t.LazyLinear(10))

    def forward(self, X):
        return self.net(X)


class LeNetV1(d2l.Classifier):
    """d2l 1.0's LeNet as its chapter writes it, on tinyalex."""

    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
            nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
            nn.LazyLinear(120), nn.Sigmoid(), nn.LazyLinear(84), nn.Sigmoid(),
            nn.LazyLinear(num_classes))


def test_d2l_v1_models_trade_weights_both_ways(tmp_path):
    theirs = TorchLeNetV1()
    theirs(torch.zeros(1, 1, 28, 28))                    # materialise PyTorch's lazy layers
    torch_file = tmp_path / "torch_v1.safetensors"
    safetensors.torch.save_file(theirs.state_dict(), str(torch_file))
    ours = LeNetV1()
    ours.apply_init([tinyalex.zeros(1, 1, 28, 28)], d2l.init_cnn)
    assert list(ours.state_dict())[:2] == ["net.0.weight", "net.0.bias"]
    ours.load_state_dict(tinyalex.load(torch_file))
    got, want = logits_of(ours, theirs, 28)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # and back: a fresh PyTorch model takes tinyalex's file
    ours_file = tmp_path / "ours_v1.safetensors"
    tinyalex.save(ours.state_dict(), ours_file)
    again = TorchLeNetV1()
    again(torch.zeros(1, 1, 28, 28))
    again.load_state_dict(safetensors.torch.load_file(str(ours_file)))
    np.testing.assert_allclose(logits_of(ours, again, 28)[1], want, rtol=0, atol=0)
    # the example scripts' loader takes the 1.0 names too (net. prefix)
    net, name = model_from_file(ours_file)
    assert name == "lenet" and type(net) is nn.Sequential
    np.testing.assert_array_equal(net[0].weight.numpy(), ours.net[0].weight.numpy())


def test_evaluate_script_takes_a_pytorch_safetensors_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "torch_lenet.safetensors"
    safetensors.torch.save_file(torch_lenet().state_dict(), str(path))
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "evaluate.py"), str(path),
                          "--test-limit", "100", "--backend", "numpy",
                          "--confusion", str(tmp_path / "cm.png")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"lenet weights ({path}), 100 test images on numpy")
    assert "test acc " in out.stdout and (tmp_path / "cm.png").stat().st_size > 0


# -- bad files --------------------------------------------------------------------------

class Payload:
    """Unpickling this creates ``marker``: proof that a loader ran the pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickles_are_refused_and_never_run(tmp_path):
    control = tmp_path / "control-ran"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists()                          # the payload works when unpickled
    marker = tmp_path / "ran"
    torch_save = tmp_path / "torch_save.pt"
    torch.save({"0.weight": Payload(marker)}, torch_save)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"0.weight": Payload(marker)}))
    with pytest.raises(ValueError, match=r"torch_save.pt: not a safetensors file: it is a zip "
                                         r"archive \(PyTorch's torch.save format"):
        tinyalex.load(torch_save)
    with pytest.raises(ValueError, match=r"raw.safetensors: not a safetensors file: it is a "
                                         r"Python pickle, which tinyalex never loads"):
        tinyalex.load(raw)
    with pytest.raises(ValueError, match=r"not a safetensors file"):
        model_from_file(raw)
    assert not marker.exists()


def good_file(tmp_path, **extra):
    path = tmp_path / "w.safetensors"
    tensors = {"0.weight": torch.ones(6, 1, 5, 5), "0.bias": torch.zeros(6)}
    tensors.update(extra)
    safetensors.torch.save_file(tensors, str(path))
    return path


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[:5], r"not a safetensors file: 5 bytes, fewer than the 8 that give the "
                      r"header's length"),
    (lambda b: b[:100], r"not a safetensors file: its first 8 bytes give a header of \d+ bytes, "
                        r"but the file holds 92 after them"),
    (lambda b: b[:-4], r"entry '0.weight' has data_offsets \[\d+, \d+\], expected \[begin, "
                       r"end\] within the \d+ data bytes"),
    (lambda b: b[:8] + b"[" + b[9:], r"not a safetensors file: its header is not JSON"),
    (lambda b: b"hello, world! this is text", r"not a safetensors file: its first 8 bytes "
                                              r"give a header of"),
    (lambda b: b.replace(b'"F32"', b'"F99"', 1), r"entry '0\..*' has dtype 'F99', which NumPy "
                                                 r"\(and so tinyalex\) cannot hold"),
    (lambda b: b.replace(b"[6,1,5,5]", b"[6,1,5,4]", 1), r"entry '0.weight' \(F32, shape "
                                                         r"\(6, 1, 5, 4\)\) needs 480 bytes, "
                                                         r"its data_offsets .* give 600"),
])
def test_damaged_files_are_value_errors_naming_file_and_entry(tmp_path, damage, match):
    path = good_file(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=match) as info:
        tinyalex.load(path)
    assert str(path) in str(info.value)


def test_a_bfloat16_entry_is_named_with_what_to_do(tmp_path):
    path = good_file(tmp_path, **{"1.weight": torch.ones(3, dtype=torch.bfloat16)})
    with pytest.raises(ValueError, match=r"entry '1.weight' has dtype 'BF16', which NumPy \(and "
                                         r"so tinyalex\) cannot hold; expected one of F64, F32, "
                                         r"F16.*convert first, e.g. \{k: v.float\(\)"):
        tinyalex.load(path)


def test_other_names_shapes_and_dtypes_are_named(tmp_path):
    torch.manual_seed(0)
    state = OrderedDict(torch_lenet().state_dict())
    state["0.weight"] = torch.zeros(6, 3, 5, 5)           # a three-channel first layer
    del state["3.bias"]
    state["fc.weight"] = torch.zeros(2, 2)
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file(state, str(path))
    with pytest.raises(ValueError) as info:
        tinyalex.models.lenet().load_state_dict(tinyalex.load(path))
    msg = str(info.value)
    assert "0.weight: shape (6, 3, 5, 5) in the state dict, (6, 1, 5, 5) in the model" in msg
    assert "missing key 3.bias (model expects shape (16,))" in msg
    assert "unexpected key fc.weight" in msg
    with pytest.raises(ValueError, match=r"entry '0.weight' has shape \(6, 3, 5, 5\) .*which is "
                                         r"neither d2l network's first convolution \(lenet: "
                                         r"\(6, 1, 5, 5\); alexnet: \(96, 1, 11, 11\)\)"):
        model_from_file(path)
    ints = OrderedDict((k, v.to(torch.int64)) for k, v in torch_lenet().state_dict().items())
    safetensors.torch.save_file(ints, str(path))
    with pytest.raises(ValueError, match=r"entry '0.bias' has dtype I64, expected a "
                                         r"floating-point weight \(F64, F32, F16"):
        model_from_file(path)
    doubles = OrderedDict((k, v.double()) for k, v in torch_lenet().state_dict().items())
    safetensors.torch.save_file(doubles, str(path))
    net = tinyalex.models.lenet()
    net.load_state_dict(tinyalex.load(path))              # float64 is cast, as PyTorch does
    assert net[0].weight.dtype == np.float32


@pytest.mark.parametrize("state, error, match", [
    ([1, 2], TypeError, r"tinyalex.save: expected a mapping of names to tensors \(e.g. "
                        r"net.state_dict\(\)\), got list"),
    ({1: tinyalex.zeros(2)}, TypeError, r"tinyalex.save: names must be non-empty strings, "
                                        r"got 1"),
    ({"w": [1.0, 2.0]}, TypeError, r"tinyalex.save: entry 'w' must be a Tensor or an array, "
                                   r"got list"),
    ({"w": np.array(["a"])}, TypeError, r"tinyalex.save: entry 'w' has dtype <U1; a "
                                        r"safetensors file holds F64, F32"),
])
def test_save_refuses_what_a_safetensors_file_cannot_hold(tmp_path, state, error, match):
    with pytest.raises(error, match=match):
        tinyalex.save(state, tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())                   # nothing half-written


def test_save_replaces_a_file_whole_and_round_trips_every_dtype(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old")
    values = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3), "f64": np.ones(2),
              "f16": np.ones(3, np.float16), "i64": np.arange(4), "u8": np.arange(3, dtype=np.uint8),
              "b": np.array([True, False]), "t": tinyalex.randn(2, 2)}
    tinyalex.save(values, path)
    back = tinyalex.load(path)
    assert sorted(back) == sorted(values)
    for k, v in values.items():
        v = v.numpy() if isinstance(v, tinyalex.Tensor) else v
        assert back[k].dtype == v.dtype and np.array_equal(back[k].numpy(), v)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]   # no temporary left


def test_readme_weights_block_runs_both_ways(tmp_path, monkeypatch):
    """The README's "d2l's code, imports changed" section shows both directions: run it."""
    import re
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## d2l's code, imports changed\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md lost its section \"d2l's code, imports changed\""
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    assert blocks[0].splitlines()[:3] == ["import tinyalex as torch          # instead of: "
                                          "import torch", "from tinyalex import nn           "
                                          "#             from torch import nn",
                                          "from tinyalex import d2l          #             "
                                          "from d2l import torch as d2l"]
    weights = next(b for b in blocks if "safetensors.torch" in b)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(weights, "README.md", "exec"), namespace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet_pt.safetensors",
                                                          "lenet_tinyalex.safetensors"]
    got, want = logits_of(namespace["net"], namespace["pt_lenet"], 28)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
