"""examples/visualize.py and examples/compare.py on tiny checkpoints and runs made
here with the training engine (tinyalex.train.fit, tinyalex.checkpoint), on a tiny
Fashion-MNIST-format data set written here, so that no real data is needed."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import tinyalex
from tinyalex.study import plots as P
from tinyalex.checkpoint import load_model, save_checkpoint
from tinyalex.study.compare import load_run
from tinyalex.study.net_views import feature_maps, initial_model, pick_channels
from tinyalex.study.summary import layer_rows
from tinyalex.train import fit

ROOT = Path(__file__).resolve().parents[2]


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_idx(path, array):
    """An IDX file: zero, zero, type 0x08 (ubyte), rank, big-endian sizes, data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def tiny_images(n, seed):
    """n 28x28 images: a bright rectangle of random size and place on noise."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for img in imgs:
        top, left = rng.integers(2, 10, size=2)
        img[top:top + rng.integers(8, 16), left:left + rng.integers(6, 16)] = 220
    return imgs, rng.integers(0, 10, size=n).astype(np.uint8)


def assert_png(path, size_in):
    """A readable PNG of exactly size_in inches at the plots' DPI, not blank."""
    img = imread(str(path))
    w, h = size_in
    assert img.shape[:2] == (round(h * P.DPI), round(w * P.DPI)), path
    assert img[..., :3].std() > 0.05, f"{path} is blank"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    train, test = tiny_images(64, 1), tiny_images(16, 2)
    data_dir = d / "fashion"
    data_dir.mkdir()
    for split, (imgs, labels) in (("train", train), ("t10k", test)):
        write_idx(data_dir / f"{split}-images-idx3-ubyte", imgs)
        write_idx(data_dir / f"{split}-labels-idx1-ubyte", labels)
    data = (train[0], train[1].astype(np.int64), test[0], test[1].astype(np.int64))
    quiet = lambda *a: None  # noqa: E731
    fit(dict(model="lenet", epochs=2, batch_size=16), data, out_dir=d / "lenet", log=quiet)
    # AlexNet is costly on a CPU: one step of 4 images is enough to have a trained run
    fit(dict(model="alexnet", epochs=1, batch_size=4, train_limit=4, test_limit=4), data,
        out_dir=d / "alexnet", log=quiet)
    untrained = dict(model="lenet", epochs=2, batch_size=16, seed=0)
    save_checkpoint(d / "lenet0.npz", initial_model(untrained), epoch=0, recipe=untrained)
    return d, data_dir


def test_initial_model_is_where_fit_starts(work):
    d, _ = work
    train = tiny_images(16, 3)
    data = (train[0], train[1].astype(np.int64)) * 2
    # a learning rate so small that float32 weights cannot move: fit's starting point
    net, _ = fit(dict(model="lenet", epochs=1, batch_size=16, lr=1e-30, seed=5), data,
                 log=lambda *a: None)
    start = initial_model({"model": "lenet", "seed": 5})
    for (name, a), (_, b) in zip(net.state_dict().items(), start.state_dict().items()):
        assert np.array_equal(a.numpy(), b.numpy()), name


def test_feature_maps_are_the_layers_outputs(work):
    d, _ = work
    net, _ = load_model(d / "lenet" / "checkpoint.npz")
    x = tinyalex.rand(1, 1, 28, 28)
    maps, probs = feature_maps(net, x)
    assert [label for label, _ in maps] == ["0: Conv2d", "2: AvgPool2d", "3: Conv2d",
                                            "5: AvgPool2d"]
    with tinyalex.no_grad():
        np.testing.assert_array_equal(maps[0][1], net[0](x).numpy()[0])
        np.testing.assert_allclose(probs.sum(), 1.0)
        assert probs.argmax() == net(x).numpy()[0].argmax()
    chans = pick_channels(maps, 4)
    strength = np.abs(maps[2][1]).mean(axis=(1, 2))
    assert chans[2] == list(np.argsort(-strength)[:4])


def test_visualize_alexnet_against_its_initialisation(work):
    d, data_dir = work
    out, lines = d / "vis_alexnet", []
    rc = load_example("visualize").main(
        [str(d / "alexnet" / "checkpoint.npz"), "--before-init", "--data-dir",
         str(data_dir), "--index", "3", "--out", str(out)], print_fn=lines.append)
    assert rc == 0
    assert sum("predicts" in line for line in lines) == 2
    assert_png(out / "filters.png", P.filters_figsize(96, 2))      # 96 filters, twice
    # AlexNet: 5 conv + 3 pool layers, 8 strongest channels each, two networks
    assert_png(out / "feature_maps.png", P.feature_maps_figsize(8, 8, 2))


def test_visualize_two_lenet_checkpoints(work):
    d, data_dir = work
    out = d / "vis_lenet"
    rc = load_example("visualize").main(
        [str(d / "lenet0.npz"), str(d / "lenet" / "checkpoint.npz"), "--data-dir",
         str(data_dir), "--channels", "4", "--out", str(out)], print_fn=lambda *a: None)
    assert rc == 0
    assert_png(out / "filters.png", P.filters_figsize(6, 2))
    assert_png(out / "feature_maps.png", P.feature_maps_figsize(4, 4, 2))


def test_visualize_refuses_mixed_models(work, capsys):
    d, data_dir = work
    assert load_example("visualize").main([str(d / "lenet0.npz"),
                                           str(d / "alexnet" / "checkpoint.npz"),
                                           "--data-dir", str(data_dir), "--out",
                                           str(d / "x")]) == 2
    assert "error: visualize: the checkpoints hold different models" in capsys.readouterr().err
    assert not (d / "x").exists()


def test_compare_tabulates_both_runs(work):
    d, _ = work
    out, lines = d / "compare", []
    rc = load_example("compare").main([str(d / "alexnet"), str(d / "lenet" / "metrics.json"),
                                       "--out", str(out)], print_fn=lines.append)
    assert rc == 0
    md = (out / "comparison.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]]
            for line in md.splitlines() if line.startswith("| ") and line.count("|") == 4}
    assert md.splitlines()[2].split("|")[2:4] == [" AlexNet ", " LeNet "]
    assert rows["parameters"] == ["46,764,746", "61,706"]
    macs = [sum(r["macs"] for r in layer_rows(m(), (1, 1, s, s)))
            for m, s in ((tinyalex.models.alexnet, 224), (tinyalex.models.lenet, 28))]
    assert rows["MACs per image"] == [f"{m:,}" for m in macs]
    assert rows["activation"] == ["7 x ReLU", "4 x Sigmoid"]
    assert rows["pooling"] == ["3 x max 3x3, stride 2", "2 x average 2x2, stride 2"]
    assert rows["dropout"] == ["2 x p=0.5", "none"]
    assert rows["conv channels"] == ["1 -> 96 -> 256 -> 384 -> 384 -> 256", "1 -> 6 -> 16"]
    assert rows["depth (layers with weights)"][0].startswith("8: 5 conv")
    for col, run in enumerate(("alexnet", "lenet")):
        metrics = json.loads((d / run / "metrics.json").read_text())
        secs = [r["seconds"] for r in metrics["epochs"]]
        assert rows["time per epoch"][col] == (f"{sum(secs) / len(secs):.1f} s mean, "
                                               f"{min(secs):.1f} s fastest")
        assert rows["final test accuracy"][col] == f"{metrics['epochs'][-1]['test_acc']:.3f}"
    assert_png(out / "curves.png", P.CURVES_SIZE)


def test_compare_reports_bad_runs(work, tmp_path):
    d, _ = work
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        load_run(tmp_path)
    bad = tmp_path / "metrics.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_run(bad)
    metrics = json.loads((d / "lenet" / "metrics.json").read_text())
    del metrics["epochs"][0]["test_acc"]
    bad.write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="lacks"):
        load_run(bad)


# -- docs/convolution.md: the tour must point at code that exists --------------------------

DOC = ROOT / "docs" / "convolution.md"


def defined_names(path):
    """Top-level functions and classes of a Python file, and Class.method names."""
    import ast
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{f.name}" for f in node.body
                      if isinstance(f, ast.FunctionDef)}
    return names


def test_doc_links_name_functions_that_exist():
    import re
    text = DOC.read_text()
    links = re.findall(r"\[`([^`]+)`\]\(([^)#]+)\)", text)
    assert len(links) > 25
    for name, target in links:
        path = (DOC.parent / target).resolve()
        assert path.is_file(), f"{name}: {target} does not exist"
        if path.suffix == ".py" and not name.endswith(".py"):
            symbol = name.split("nn.")[-1].split("kernels.")[-1]
            assert symbol in defined_names(path), f"{name} is not defined in {target}"
    for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        img = imread(str(DOC.parent / target))
        assert img.shape[0] > 100 and img.shape[1] > 100, target


def test_doc_table_is_the_current_summary():
    import re
    from tinyalex.study.summary import format_table
    text = DOC.read_text()
    rows = layer_rows(tinyalex.models.alexnet(), (1, 1, 224, 224))
    assert format_table(rows) in text
    params = sum(r["parameters"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    fc = sum(r["parameters"] for r in rows if r["name"] == "Linear") / params
    conv = sum(r["macs"] for r in rows if r["name"] == "Conv2d") / macs
    m = re.search(r"layers hold (\d+)% of the parameters; the five\s+convolutions do "
                  r"(\d+)% of the multiply-accumulates", text)
    assert m and (int(m[1]), int(m[2])) == (round(100 * fc), round(100 * conv))
