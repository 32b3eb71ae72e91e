"""Checkpoints: round trip without pickle, atomic writes, clear errors for bad files
and for the wrong architecture."""

import json
import os
import zipfile

import numpy as np
import pytest

import tinyalex
from tinyalex import checkpoint as C
from tinyalex import models, optim
from tinyalex.ops.loss import cross_entropy

RECIPE = {"model": "lenet", "epochs": 3, "batch_size": 4, "lr": 0.1, "momentum": 0.9,
          "weight_decay": 0.0, "resize": 28, "seed": 7}


def trained_lenet(steps=2):
    """A LeNet with SGD momentum buffers filled by a couple of real steps."""
    tinyalex.manual_seed(3)
    net = models.lenet()
    net.apply(models.init_weights_xavier)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        X = tinyalex.tensor(rng.random((4, 1, 28, 28), dtype=np.float32))
        y = tinyalex.tensor(rng.integers(0, 10, 4))
        opt.zero_grad()
        cross_entropy(net(X), y).backward()
        opt.step()
    return net, opt


def test_round_trip_without_pickle(tmp_path):
    net, opt = trained_lenet()
    path = tmp_path / "ck.npz"
    C.save_checkpoint(path, net, opt, epoch=2, recipe=RECIPE, metrics={"epochs": [{"epoch": 1}]})
    with np.load(path, allow_pickle=False) as z:       # plain arrays only
        assert all(z[k].dtype != object for k in z.files)
        assert json.loads(str(z["recipe"]))["model"] == "lenet"
        assert z["rng_state"].shape == () and z["rng_state"].dtype.kind == "U"
        assert "param/0.weight" in z.files and "momentum/0.weight" in z.files
    ck = C.load_checkpoint(path)
    assert ck.epoch == 2 and ck.recipe == RECIPE and ck.format_version == C.FORMAT_VERSION
    assert ck.metrics == {"epochs": [{"epoch": 1}]}
    assert ck.rng_state == tinyalex.random.get_rng_state()
    assert ck.data_order["seed"] == 7
    assert list(ck.params) == list(net.state_dict())
    for name, p in net.state_dict().items():
        np.testing.assert_array_equal(ck.params[name], p.numpy())

    # weights and momentum buffers restored into fresh objects
    tinyalex.manual_seed(99)
    other = models.lenet()
    other_opt = optim.SGD(other.parameters(), lr=0.5)
    C.load_weights(other, ck)
    C.load_optimizer(other_opt, other, ck)
    assert other_opt.momentum == 0.9 and other_opt.lr == 0.1
    for a, b in zip(opt.momentum_buffers, other_opt.momentum_buffers):
        np.testing.assert_array_equal(a, b)


def test_load_model_builds_the_architecture_and_keeps_the_rng(tmp_path):
    net, opt = trained_lenet(1)
    C.save_checkpoint(tmp_path / "ck.npz", net, opt, epoch=1, recipe=RECIPE)
    before = tinyalex.random.get_rng_state()
    model, ck = C.load_model(tmp_path / "ck.npz")
    assert tinyalex.random.get_rng_state() == before
    assert not model.training
    for (n, a), (_, b) in zip(model.state_dict().items(), net.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=n)


def test_wrong_architecture_names_the_keys(tmp_path):
    net, opt = trained_lenet(0)
    C.save_checkpoint(tmp_path / "ck.npz", net, opt, epoch=0, recipe=RECIPE)
    ck = C.load_checkpoint(tmp_path / "ck.npz")
    with pytest.raises(ValueError) as err:
        C.load_weights(models.alexnet(), ck)
    msg = str(err.value)
    assert "ck.npz" in msg and "a LeNet" in msg
    assert "0.weight: shape (6, 1, 5, 5)" in msg and "missing key 14.weight" in msg
    assert "unexpected key 11.weight" in msg
    # a checkpoint whose recipe says alexnet but holds LeNet weights
    C.save_checkpoint(tmp_path / "lie.npz", net, opt, epoch=0, recipe=dict(RECIPE, model="alexnet"))
    with pytest.raises(ValueError, match=r"lie\.npz.*does not fit"):
        C.load_model(tmp_path / "lie.npz")


def test_an_optimizer_that_contradicts_the_recipe_is_refused(tmp_path):
    """Resuming restores SGD's hyper-parameters from the optimizer entry while the run
    reports the recipe's: the two must agree, on saving and on loading (a file edited
    by hand, or written by other code), else a run would train on hidden values."""
    net, opt = trained_lenet(1)
    with pytest.raises(ValueError, match=r"save_checkpoint: the optimizer contradicts the "
                                         r"recipe: lr 0\.1 \(recipe: 0\.5\)"):
        C.save_checkpoint(tmp_path / "a.npz", net, opt, epoch=1, recipe=dict(RECIPE, lr=0.5))
    # the defaults count: d2l's LeNet recipe has lr 0.9 and no momentum
    with pytest.raises(ValueError, match=r"lr 0\.1 \(recipe: 0\.9\), momentum 0\.9 "
                                         r"\(recipe: 0\.0\)"):
        C.save_checkpoint(tmp_path / "a.npz", net, opt, epoch=1, recipe={"model": "lenet"})
    assert not list(tmp_path.iterdir())
    C.save_checkpoint(tmp_path / "ck.npz", net, opt, epoch=1, recipe=RECIPE)
    with np.load(tmp_path / "ck.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    optimizer = json.loads(str(arrays["optimizer"]))
    arrays["optimizer"] = np.array(json.dumps(dict(optimizer, weight_decay=0.5)))
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(ValueError, match=r"edited\.npz: optimizer entry contradicts its "
                                         r"recipe: weight_decay 0\.5 \(recipe: 0\.0\)"):
        C.load_checkpoint(tmp_path / "edited.npz")


def test_failed_save_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    net, opt = trained_lenet(1)
    path = tmp_path / "ck.npz"
    C.save_checkpoint(path, net, opt, epoch=1, recipe=RECIPE)
    old = path.read_bytes()

    def boom(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        C.save_checkpoint(path, net, opt, epoch=2, recipe=RECIPE)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["ck.npz"]
    assert C.load_checkpoint(path).epoch == 1


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        C.load_checkpoint(tmp_path / "nope.npz")


def _rewrite(src, dst, change):
    """Copy a checkpoint's entries, changed by ``change(dict)``, to ``dst``."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(dst, **arrays)


@pytest.mark.parametrize("change,expected", [
    (lambda a: a.pop("recipe"), r"missing entries \['recipe'\]"),
    (lambda a: a.update(format_version=np.array("2")), "format_version 2.*newer"),
    (lambda a: a.update(epoch=np.array("-1")), "epoch must be a non-negative"),
    (lambda a: a.update(recipe=np.array('{"model": "vgg"}')), "recipe must name a model"),
    (lambda a: a.update(recipe=np.array("{not json")), "'recipe' is not valid JSON"),
    (lambda a: a.update(epoch=np.array([1, 2])), "'epoch' must be JSON text"),
    (lambda a: a.update(rng_state=np.array('"x"')), "rng_state is not a generator state"),
    (lambda a: a.update({"param/0.weight": np.full((6, 1, 5, 5), np.nan, np.float32)}),
     "'0.weight' holds NaN"),
    (lambda a: a.update({"param/0.bias": np.zeros(6, np.int32)}), "'0.bias' has dtype int32"),
    (lambda a: a.pop("momentum/0.bias"), "momentum buffer 'momentum/0.bias' is listed but missing"),
    (lambda a: [a.pop(k) for k in list(a) if k.startswith("param/")], "holds no parameters"),
])
def test_bad_contents_name_file_and_problem(tmp_path, change, expected):
    net, opt = trained_lenet(1)
    good = tmp_path / "good.npz"
    C.save_checkpoint(good, net, opt, epoch=1, recipe=RECIPE)
    bad = tmp_path / "bad.npz"
    _rewrite(good, bad, change)
    with pytest.raises(ValueError, match=expected) as err:
        C.load_checkpoint(bad)
    assert "bad.npz" in str(err.value)


def test_truncated_and_garbage_files_are_value_errors(tmp_path):
    net, opt = trained_lenet(1)
    good = tmp_path / "good.npz"
    C.save_checkpoint(good, net, opt, epoch=1, recipe=RECIPE)
    raw = good.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        C.load_checkpoint(cut)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"hello, not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        C.load_checkpoint(junk)
    one = tmp_path / "one.npy"
    np.save(one, np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        C.load_checkpoint(one)
    # a damaged member: flip bytes inside the stored data (CRC no longer matches)
    damaged = tmp_path / "damaged.npz"
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("param/0.weight.npy")
    data = bytearray(raw)
    start = info.header_offset + 30 + len(info.filename) + 200
    data[start:start + 16] = bytes(16)
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged.npz"):
        C.load_checkpoint(damaged)


def test_save_rejects_bad_arguments(tmp_path):
    net, opt = trained_lenet(0)
    with pytest.raises(ValueError, match="recipe\\['model'\\]"):
        C.save_checkpoint(tmp_path / "x.npz", net, opt, epoch=0, recipe={"model": "resnet"})
    with pytest.raises(ValueError, match="epoch"):
        C.save_checkpoint(tmp_path / "x.npz", net, opt, epoch=-1, recipe=RECIPE)
    assert not os.listdir(tmp_path)
