"""Devices with PyTorch's names (tinyalex/devices.py, tinyalex/cuda.py) and d2l's device
helpers: what they print, what they move, and the errors for devices that are not there."""

from __future__ import annotations

import pytest

import tinyalex
from helpers.checks import require_torch
from tinyalex import backend as B
from tinyalex import d2l, nn

GPU = B.cupy_available()
NO_GPU_REASON = B.cupy_unavailable_reason()


@pytest.mark.parametrize("spec", ["cpu", "cuda", "cuda:0", "cuda:3"])
def test_device_prints_as_pytorch_does(spec):
    torch = require_torch()
    ours, theirs = tinyalex.device(spec), torch.device(spec)
    assert (str(ours), repr(ours)) == (str(theirs), repr(theirs))
    assert (ours.type, ours.index) == (theirs.type, theirs.index)


def test_device_from_type_and_index_and_from_a_device():
    assert tinyalex.device("cuda", 1) == tinyalex.device("cuda:1")
    assert tinyalex.device(tinyalex.device("cpu")) == tinyalex.device("cpu")
    assert tinyalex.device("cpu") != tinyalex.device("cuda:0")
    assert {tinyalex.device("cuda:0"), tinyalex.device("cuda", 0)} == {tinyalex.device("cuda:0")}
    assert tinyalex.device("cpu").backend == "numpy" and tinyalex.device("cuda").backend == "cupy"


@pytest.mark.parametrize("spec, error, match", [
    ("gpu", ValueError, r"unknown device 'gpu'; expected 'cpu', 'cuda', 'cuda:N'"),
    ("cuda:x", ValueError, r"device 'cuda:x': after 'cuda:' comes the device index, an int "
                           r">= 0 \(e.g. 'cuda:0'\), got 'x'"),
    ("cuda:-1", ValueError, r"after 'cuda:' comes the device index.*got '-1'"),
    ("cpu:1", ValueError, r"the cpu has no index 1"),
    (0, TypeError, r"device: expected a string such as 'cpu', 'cuda'.*got int 0"),
])
def test_bad_device_names(spec, error, match):
    with pytest.raises(error, match=match):
        tinyalex.device(spec)


def test_tensor_device_and_to_accept_devices():
    x = tinyalex.randn(2, 3)
    assert repr(x.device) == "device(type='cpu')" and str(x.device) == "cpu"
    for target in ("cpu", tinyalex.device("cpu"), "numpy", d2l.cpu()):
        assert x.to(target) is x                         # already there: no copy
    net = nn.Linear(3, 2).to(tinyalex.device("cpu"))
    assert str(next(net.parameters()).device) == "cpu"


@pytest.mark.skipif(GPU, reason="a GPU is usable here: no missing-GPU error to see")
@pytest.mark.parametrize("move", [lambda d: tinyalex.zeros(2).to(d),
                                  lambda d: nn.Linear(1, 1).to(d)])
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", tinyalex.device("cuda", 1)])
def test_cuda_without_a_gpu_says_what_is_missing(move, spec):
    with pytest.raises(ValueError, match=r"device 'cuda(:\d)?': no usable CUDA GPU here \(.+\);"
                                         r" tinyalex's cuda device is its CuPy backend.*"
                                         r"pip install -e '\.\[cuda13\]'. in the "
                                         r"tinyalex checkout.*or use 'cpu'"):
        move(spec)


@pytest.mark.skipif(not GPU, reason=f"needs a usable GPU: {NO_GPU_REASON}")
def test_cuda_devices_on_a_gpu():
    x = tinyalex.randn(2, 3).to("cuda")
    assert x.backend == "cupy" and repr(x.device) == "device(type='cuda', index=0)"
    assert x.to(d2l.try_gpu()) is x and x.to("cpu").backend == "numpy"
    count = tinyalex.cuda.device_count()
    with pytest.raises(ValueError, match=rf"device 'cuda:{count}' does not exist: CuPy sees "
                                         rf"{count} CUDA device"):
        x.to(f"cuda:{count}")


def test_cuda_questions_and_d2l_helpers_agree():
    n = tinyalex.cuda.device_count()
    assert tinyalex.cuda.is_available() == (n > 0) == GPU
    assert d2l.num_gpus() == n
    assert d2l.cpu() == tinyalex.device("cpu") and d2l.gpu(2) == tinyalex.device("cuda:2")
    assert d2l.try_gpu() == (tinyalex.device("cuda:0") if n else tinyalex.device("cpu"))
    assert d2l.try_gpu(n) == tinyalex.device("cpu")              # one past the last GPU
    assert d2l.try_all_gpus() == ([tinyalex.device(f"cuda:{i}") for i in range(n)]
                                  or [tinyalex.device("cpu")])
    with pytest.raises(ValueError, match=r"d2l.gpu: i must be a non-negative int, got -1"):
        d2l.gpu(-1)
