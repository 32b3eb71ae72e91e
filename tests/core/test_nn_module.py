"""Module and Sequential: registration order, PyTorch's state_dict keys, load round
trips and mismatches, train/eval, backends and dtypes."""

from collections import OrderedDict

import numpy as np
import pytest

import tinyalex
from tinyalex import nn
from helpers.checks import host, require_torch

ALEXNET_KEYS = ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias",
                "8.weight", "8.bias", "10.weight", "10.bias", "14.weight", "14.bias",
                "17.weight", "17.bias", "20.weight", "20.bias"]


class Net(nn.Module):
    """A custom module as users write them: attributes register in definition order."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.flat = nn.Flatten()
        self.fc = nn.Linear(2, 3)
        self.scale = nn.Parameter(np.ones(1, np.float32))

    def forward(self, x):
        return self.fc(self.flat(self.features(x))) * self.scale


@pytest.fixture(scope="module")
def alexnet():
    return tinyalex.models.alexnet()


def test_alexnet_state_dict_keys_are_pytorchs(alexnet):
    assert list(alexnet.state_dict()) == ALEXNET_KEYS
    assert [n for n, _ in alexnet.named_parameters()] == ALEXNET_KEYS


def test_alexnet_state_dict_keys_equal_torchs_sequential(alexnet):
    require_torch()
    from helpers.torch_nets import torch_alexnet
    ref = torch_alexnet()
    theirs = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    ours = [(k, v.shape) for k, v in alexnet.state_dict().items()]
    assert ours == theirs


def test_custom_module_names_and_order():
    net = Net()
    # PyTorch's order: a module's own parameters, then its children's, depth first
    assert [n for n, _ in net.named_parameters()] == [
        "scale", "features.0.weight", "features.0.bias", "fc.weight", "fc.bias"]
    assert list(net.state_dict()) == [n for n, _ in net.named_parameters()]
    assert [n for n, _ in net.named_modules()] == [
        "", "features", "features.0", "features.1", "features.2", "flat", "fc"]
    assert [n for n, _ in net.named_children()] == ["features", "flat", "fc"]
    assert net(tinyalex.randn(2, 1, 4, 4)).shape == (2, 3)


def test_shared_parameters_are_listed_once():
    lin = nn.Linear(3, 3)
    net = nn.Sequential(lin, nn.ReLU(), lin)
    assert list(net.state_dict()) == ["0.weight", "0.bias"]
    assert len(list(net.parameters())) == 2


def test_assigning_a_non_parameter_to_a_parameter_slot_is_refused():
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight' of Linear"):
        lin.weight = np.zeros((2, 2))
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]


def test_module_without_super_init_is_explained():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)
    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Bad()


def test_state_dict_load_round_trip():
    tinyalex.manual_seed(1)
    a = tinyalex.models.lenet()
    tinyalex.manual_seed(2)
    b = tinyalex.models.lenet()
    x = tinyalex.randn(2, 1, 28, 28)
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        np.testing.assert_array_equal(host(va), host(vb))
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    # loading copies: changing the source later does not reach the loaded network
    a[0].weight.data += 1.0
    assert not np.array_equal(a[0].weight.numpy(), b[0].weight.numpy())


def test_load_state_dict_accepts_numpy_arrays_and_converts_dtype():
    lin = nn.Linear(2, 3)
    state = {"weight": np.arange(6.0).reshape(3, 2), "bias": np.array([1, 2, 3])}
    lin.load_state_dict(state)
    assert lin.weight.dtype == np.float32 and lin.bias.dtype == np.float32
    np.testing.assert_array_equal(lin.weight.numpy(), np.arange(6.0).reshape(3, 2))


def test_mismatched_load_names_every_key_and_shape_and_changes_nothing(alexnet):
    state = OrderedDict(alexnet.state_dict())
    del state["3.bias"], state["17.weight"]
    state["0.weight"] = np.zeros((96, 3, 11, 11), np.float32)  # a 3-channel first conv
    state["20.weight"] = np.zeros((1000, 4096), np.float32)    # ImageNet's classifier
    state["fc.weight"] = np.zeros((2, 2), np.float32)
    state["21.bias"] = np.zeros(10, np.float32)
    net = tinyalex.models.alexnet()
    before = net[0].weight.numpy()
    with pytest.raises(ValueError) as info:
        net.load_state_dict(state)
    msg = str(info.value)
    assert "load_state_dict into Sequential failed" in msg
    assert "0.weight: shape (96, 3, 11, 11) in the state dict, (96, 1, 11, 11) in the model" in msg
    assert "20.weight: shape (1000, 4096) in the state dict, (10, 4096) in the model" in msg
    assert "missing key 3.bias (model expects shape (256,))" in msg
    assert "missing key 17.weight (model expects shape (4096, 4096))" in msg
    assert "unexpected key fc.weight" in msg and "unexpected key 21.bias" in msg
    np.testing.assert_array_equal(net[0].weight.numpy(), before)   # all or nothing


def test_non_strict_load_reports_keys_but_still_refuses_shapes():
    lin = nn.Linear(2, 3)
    result = lin.load_state_dict({"weight": np.ones((3, 2)), "extra": np.ones(1)},
                                 strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(lin.weight.numpy(), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"weight: shape \(2, 3\) in the state dict, "
                                         r"\(3, 2\) in the model"):
        lin.load_state_dict({"weight": np.ones((2, 3))}, strict=False)


def test_load_state_dict_refuses_non_mappings_and_non_numeric_values():
    lin = nn.Linear(1, 1)
    with pytest.raises(TypeError, match="mapping of names to arrays, got list"):
        lin.load_state_dict([np.ones((1, 1))])
    with pytest.raises(ValueError, match="weight: dtype <U1 is not numeric"):
        lin.load_state_dict({"weight": np.array([["a"]]), "bias": np.zeros(1)})


def test_train_and_eval_reach_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_sequential_is_iterable_indexable_and_sized():
    layers = [nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)]
    net = nn.Sequential(*layers)
    assert len(net) == 3 and list(net) == layers
    assert net[0] is layers[0] and net[-1] is layers[2]
    head = net[:2]
    assert isinstance(head, nn.Sequential) and list(head) == layers[:2]
    assert head(tinyalex.randn(5, 4)).shape == (5, 3)
    with pytest.raises(IndexError, match="index 3 out of range for 3 layers"):
        net[3]
    named = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 1, 1)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["conv.weight", "conv.bias"]


def test_zero_grad_and_num_parameters():
    net = nn.Sequential(nn.Linear(3, 2))
    (net(tinyalex.randn(4, 3)).sum()).backward()
    assert net[0].weight.grad is not None
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert net.num_parameters() == 3 * 2 + 2


def test_double_and_float_convert_parameters():
    net = Net().double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net(tinyalex.randn(1, 1, 4, 4, dtype=np.float64)).dtype == np.float64
    assert all(p.dtype == np.float32 for p in net.float().parameters())


def test_module_to_backend_round_trip(backend):
    net = Net()
    values = [p.numpy() for p in net.parameters()]
    assert net.to(backend) is net
    assert all(p.backend == backend for p in net.parameters())
    net.to("numpy")
    for v, p in zip(values, net.parameters()):
        np.testing.assert_array_equal(v, p.numpy())


def test_repr_reads_like_pytorchs():
    text = repr(tinyalex.models.lenet())
    assert text.startswith("Sequential(\n  (0): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), "
                           "padding=(2, 2))")
    assert "(7): Linear(in_features=400, out_features=120, bias=True)" in text


def test_lenet_runs_each_conv_sigmoid_pool_block_as_one_op_on_the_cpu():
    """Sequential runs d2l's LeNet blocks (Conv2d, Sigmoid, AvgPool2d) as one op on the
    CPU (FUSED_CPU): the same float32 numbers as the three layers one after the other
    (``net.fuse = False``), the output and the fully connected layers' gradients bit
    for bit (the blocks' input gradients are), the convolutions' filter and bias
    gradients (summed in another order) to rounding; a subclass of one of the layers
    (which may have its own forward) is not fused."""
    from tinyalex.ops.conv import Conv2dSigmoidAvgPool
    fused = "Conv2d+Sigmoid+AvgPool2d"
    net = tinyalex.models.lenet()
    assert net.fusions("numpy") == {0: fused, 3: fused} and net.fusions("cupy") == {}
    x = tinyalex.tensor(np.random.default_rng(0).standard_normal((5, 1, 28, 28),
                                                                 dtype=np.float32))
    results = []
    for fuse in (True, False):
        net.fuse = fuse
        net.zero_grad()
        y = net(x)
        nodes, stack = [], [y.creator]                  # every op of the graph
        while stack:
            node = stack.pop()
            nodes.append(node)
            stack += [e for e in getattr(node, "edges", ()) if hasattr(e, "edges")]
        assert sum(isinstance(n, Conv2dSigmoidAvgPool) for n in nodes) == (2 if fuse else 0)
        y.backward(np.ones(y.shape, np.float32))
        results.append([y.numpy()] + [p.grad.numpy() for p in net.parameters()])
    conv_grads = {1, 2, 3, 4}                           # conv1 W, b, conv2 W, b
    for i, (a, b) in enumerate(zip(*results)):
        if i in conv_grads:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
        else:
            np.testing.assert_array_equal(a, b)

    class MySigmoid(nn.Sigmoid):
        pass
    assert nn.Sequential(nn.Conv2d(1, 2, 3), MySigmoid(), nn.AvgPool2d(2)).fusions("numpy") == {}
