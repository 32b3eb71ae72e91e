"""d2l's training loops on tinyalex, in process: train_ch6 (the train_ch6 edition) and
Trainer.fit (d2l 1.0) learn, measure and plot as the book's do; their helpers
(Accumulator, Timer, accuracy, save_hyperparameters, add_to_class, clip_gradients); and
the live figures of a plain script (a PNG, its path said once)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import tinyalex
from tinyalex import d2l, nn
from tinyalex.d2l import plotting
from helpers.reliability import PNG_END
from test_d2l_data import small_folder


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """The first 2048/512 real images through $FASHION_MNIST_DIR; the test runs in tmp_path."""
    monkeypatch.setenv("FASHION_MNIST_DIR", str(small_folder(tmp_path / "data", 2048, 512)))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def small_cnn():
    """A ReLU network that learns Fashion-MNIST in two short epochs (LeNet's sigmoids
    need thousands of steps to leave their plateau, more than a test should wait)."""
    return nn.Sequential(nn.Conv2d(1, 8, kernel_size=3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(kernel_size=2, stride=2), nn.Flatten(),
                         nn.Linear(8 * 14 * 14, 10))


def test_train_ch6_learns_and_prints_d2ls_lines(data_dir, capsys):
    tinyalex.manual_seed(0)
    net = small_cnn()
    train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size=128)
    d2l.train_ch6(net, train_iter, test_iter, 2, 0.1, d2l.try_gpu())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "training on cpu" and len(lines) == 4
    assert re.fullmatch(rf"\(animator: no display in a plain script; the figure is written "
                        rf"to {re.escape(str(data_dir))}/\w+_animator\.png as it changes\)",
                        lines[1])
    loss, train_acc, test_acc = map(float, re.fullmatch(
        r"loss (\d\.\d{3}), train acc (\d\.\d{3}), test acc (\d\.\d{3})", lines[2]).groups())
    assert loss < 1.5 and train_acc > 0.55 and test_acc > 0.55
    assert re.fullmatch(r"\d+\.\d examples/sec on cpu", lines[3])
    # test acc is evaluate_accuracy_gpu's figure for the trained net
    assert d2l.evaluate_accuracy_gpu(net, test_iter) == pytest.approx(test_acc, abs=5e-4)
    assert not net.training                                  # evaluation left it in eval
    png = next(data_dir.glob("*_animator.png")).read_bytes()
    assert png.startswith(b"\x89PNG") and png.endswith(PNG_END)


# one epoch gives the Animator xlim [1, 1], which matplotlib widens with a warning (as in d2l)
@pytest.mark.filterwarnings("ignore:Attempting to set identical low and high xlims")
def test_train_ch6_initialises_conv_and_linear_with_xavier(data_dir, capsys, monkeypatch):
    seen = []
    real = nn.init.xavier_uniform_
    monkeypatch.setattr(nn.init, "xavier_uniform_", lambda w: seen.append(w.shape) or real(w))
    train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size=1024)
    d2l.train_ch6(small_cnn(), train_iter, test_iter, 1, 0.1, d2l.cpu())
    assert seen == [(8, 1, 3, 3), (10, 8 * 14 * 14)]


class MLP(d2l.Classifier):
    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(64), nn.ReLU(),
                                 nn.LazyLinear(num_classes))


def test_trainer_fits_a_classifier_and_draws_the_board(data_dir, capsys):
    tinyalex.manual_seed(0)
    data = d2l.FashionMNIST(batch_size=128)
    model = MLP(lr=0.1)
    model.apply_init([next(iter(data.get_dataloader(True)))[0]], d2l.init_cnn)
    trainer = d2l.Trainer(max_epochs=2, num_gpus=1)          # no GPU here: the CPU
    trainer.fit(model, data)
    assert trainer.gpus == ([] if not tinyalex.cuda.is_available() else [d2l.gpu(0)])
    assert (trainer.num_train_batches, trainer.num_val_batches) == (16, 4)
    assert trainer.train_batch_idx == 32 and trainer.val_batch_idx == 8
    board = model.board
    assert list(board.data) == ["train_loss", "val_loss", "val_acc"]
    assert [len(board.data[k]) for k in board.data] == [4, 2, 2]     # 2 and 1 per epoch
    # x: the mean of train_batch_idx / 16 over each half epoch, counted before the step
    assert [round(p[0], 3) for p in board.data["train_loss"]] == [0.219, 0.719, 1.219, 1.719]
    assert board.data["val_acc"][-1][1] > 0.6 and board.xlim == [0, 2]
    out = capsys.readouterr().out.splitlines()              # the Trainer prints nothing
    assert len(out) == 1 and out[0].startswith("(board: no display in a plain script")
    with tinyalex.no_grad():
        model.eval()
        X, y = next(iter(data.val_dataloader()))
        assert float(model.accuracy(model(X), y)) > 0.6
        per_example = model.accuracy(model(X), y, averaged=False)
        assert per_example.shape == (128,) and set(np.unique(per_example.numpy())) <= {0, 1}
        assert model.loss(model(X), y, averaged=False).shape == (128,)


def test_trainer_arguments_and_gradient_clipping():
    for kwargs, match in ((dict(max_epochs=-1), r"Trainer: max_epochs must be a non-negative int, got -1"),
                          (dict(max_epochs=1, num_gpus=-1), r"Trainer: num_gpus must be a non-negative int, got -1"),
                          (dict(max_epochs=1, gradient_clip_val=float("nan")),
                           r"Trainer: gradient_clip_val must be a finite number >= 0")):
        with pytest.raises(ValueError, match=match):
            d2l.Trainer(**kwargs)
    trainer = d2l.Trainer(max_epochs=1, gradient_clip_val=1.0)
    net = nn.Linear(3, 2)
    (net(tinyalex.ones(4, 3)) * 100).sum().backward()
    trainer.clip_gradients(1.0, net)
    norm = np.sqrt(sum((p.grad.numpy().astype(np.float64) ** 2).sum() for p in net.parameters()))
    assert norm == pytest.approx(1.0, rel=1e-5)


def test_small_helpers_behave_as_d2ls():
    acc = d2l.Accumulator(3)
    acc.add(1, tinyalex.tensor(2.5), np.float32(3))
    acc.add(1, 1, 1)
    assert acc[0] == 2 and acc[1] == 3.5 and acc.data == [2.0, 3.5, 4.0]
    acc.reset()
    assert acc.data == [0.0] * 3
    timer = d2l.Timer()
    timer.stop()
    timer.start()
    timer.stop()
    assert len(timer.times) == 2 and timer.sum() == pytest.approx(sum(timer.cumsum()[-1:]))
    logits = tinyalex.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert d2l.accuracy(logits, tinyalex.tensor([1, 1, 1])) == 2.0
    assert d2l.accuracy(tinyalex.tensor([1, 0]), tinyalex.tensor([1, 1])) == 1.0
    assert d2l.size(logits) == 6 and d2l.argmax(logits, axis=1).tolist() == [1, 0, 1]
    assert d2l.reduce_sum(d2l.astype(d2l.reshape(logits, -1) > 0.5, d2l.int64)).item() == 3

    class Thing(d2l.HyperParameters):
        def __init__(self, a, b=2, _hidden=3, ignored=4):
            self.save_hyperparameters(ignore=["ignored"])

    t = Thing(1)
    assert t.hparams == {"a": 1, "b": 2} and (t.a, t.b) == (1, 2)
    assert not hasattr(t, "ignored") and not hasattr(t, "_hidden")

    @d2l.add_to_class(Thing)
    def twice(self):
        return 2 * self.a
    assert t.twice() == 2


def test_script_figures_write_a_png_say_where_once_and_keep_the_last_state(tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(plotting, "SAVE_INTERVAL", 3600.0)   # every later update waits
    animator = d2l.Animator(xlabel="epoch", xlim=[1, 3], legend=["a", "b"])
    for x in range(1, 4):
        animator.add(x, (x * 0.5, None))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("(animator: no display in a plain script")
    shower = animator._shower
    assert shower.path.parent == tmp_path and shower.path.name.endswith("_animator.png")
    assert animator.X == [[1, 2, 3], []] and animator.Y == [[0.5, 1.0, 1.5], []]
    first = shower.path.read_bytes()                 # written at the first update
    assert first.startswith(b"\x89PNG") and first.endswith(PNG_END)
    assert shower.pending is animator.fig
    shower.flush()                                   # what runs at exit: the latest state
    assert shower.pending is None and shower.path.read_bytes() != first
    second = d2l.Animator()
    second.add(1, 1)
    assert second._shower.path == shower.path.with_name(
        shower.path.name.replace("_animator.png", "_animator_2.png"))
    assert capsys.readouterr().out.count("no display in a plain script") == 1
