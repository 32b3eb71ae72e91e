"""Messages a newcomer meets say what was wrong and what works; the checkpoint's atomic
write is proven in order; a checkpoint goes to PyTorch through examples/export.py.

* a file is called a pickle only when the pickle protocol's opcodes say so;
* output paths name the path the user gave (never the temporary file) and what is
  wrong with it; AlexNet's wrong input size lists the sizes it takes; the
  oversubscription warning suggests what is not already in effect;
* ``atomic_write`` flushes and fsyncs the data before the rename, and a kill right
  after the rename leaves a checkpoint that loads.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

import tinyalex
from tinyalex import atomic, data, train
from tinyalex import checkpoint as C
from tinyalex.recipes import (D2L_RECIPES, a_model, build_model, check_input_size,
                              epochs_word, sizes_that_fit)
from tinyalex.train import run as train_run
from helpers.reliability import ROOT, tiny_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("tiny"), n_train=32, n_test=16)


@pytest.fixture(scope="module")
def lenet_run(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("lenet")
    train.fit({"model": "lenet", "epochs": 1, "batch_size": 16}, data.load_fashion_mnist(tiny),
              out_dir=out, log=lambda *a, **k: None)
    return out


def example(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------ what is a pickle

@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_real_pickle_is_called_one(tmp_path, protocol):
    path = tmp_path / "weights.npz"
    path.write_bytes(pickle.dumps({"0.weight": [1.0, 2.0], "note": "x"}, protocol=protocol))
    with pytest.raises(ValueError, match="is a Python pickle"):
        C.load_checkpoint(path)
    with pytest.raises(ValueError, match="Python pickle"):
        tinyalex.load(path)


@pytest.mark.parametrize("head", [b"(see the notes)\n", b"]]", b"}{", b"c", b"\x80\x04"])
def test_text_or_random_bytes_that_start_like_a_pickle_are_not_called_one(tmp_path, head):
    path = tmp_path / "notes.npz"
    path.write_bytes(head + np.random.default_rng(0).bytes(300))
    with pytest.raises(ValueError) as err:
        C.load_checkpoint(path)
    assert "pickle" not in str(err.value) and "not a zip archive" in str(err.value)


def test_tinyalex_load_of_a_training_checkpoint_names_the_export(lenet_run):
    with pytest.raises(ValueError, match=r"examples/export\.py CHECKPOINT OUT\.safetensors"):
        tinyalex.load(lenet_run / "checkpoint.npz")


def test_export_writes_the_checkpoints_weights_for_pytorch(lenet_run, tmp_path, capsys):
    out = tmp_path / "lenet.safetensors"
    assert example("export").main([str(lenet_run / "checkpoint.npz"), str(out)]) == 0
    assert "a LeNet after 1 epoch, 10 tensors, 61,706 parameters" in capsys.readouterr().out
    ckpt = C.load_checkpoint(lenet_run / "checkpoint.npz")
    exported = tinyalex.load(out)
    assert sorted(exported) == sorted(ckpt.params)
    for name, value in ckpt.params.items():
        np.testing.assert_array_equal(exported[name].numpy(), value)
    from helpers.torch_nets import logits_of, safetensors, torch_lenet  # PyTorch's side
    theirs = torch_lenet()
    result = theirs.load_state_dict(safetensors.torch.load_file(str(out)))
    assert not result.missing_keys and not result.unexpected_keys
    ours, _ = C.load_model(lenet_run / "checkpoint.npz")
    got, want = logits_of(ours, theirs, 28)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6 * np.abs(want).max())
    with pytest.raises(SystemExit):
        example("export").main([str(lenet_run / "checkpoint.npz"), str(tmp_path / "x.pt")])


# ------------------------------------------------------------------------ output paths

def test_atomic_write_names_the_path_given_not_its_temporary_file(tmp_path):
    with pytest.raises(OSError) as err:
        atomic.atomic_write(tmp_path, lambda f: f.write(b"x"))
    assert err.value.errno == errno.EISDIR
    assert str(err.value) == f"cannot write {tmp_path}: it is a folder; give the path of a file"
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(OSError, match=f"^cannot write {plain}/confusion.png: {plain} is a "
                                      "file, not a folder$"):
        atomic.atomic_write(plain / "confusion.png", lambda f: f.write(b"x"))
    assert os.listdir(tmp_path) == ["plain"]


def test_scripts_name_the_output_path_and_what_it_takes(lenet_run, tiny, tmp_path, capsys):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rc = example("evaluate").main([str(lenet_run / "checkpoint.npz"), "--data-dir", str(tiny),
                                   "--confusion", str(folder)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: cannot write {folder}: it is a folder"), err
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with pytest.raises(SystemExit) as exit_:
        example("visualize").main([str(lenet_run / "checkpoint.npz"), "--out", str(plain)])
    assert exit_.value.code == 2
    assert f"--out {plain} is a file; --out takes a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------ sizes, words, threads

def test_alexnets_wrong_size_lists_the_sizes_it_takes():
    net = build_model("alexnet")
    fits = sizes_that_fit(net)
    assert fits == list(range(193, 225))
    for side in (192, 193, 224, 225):                  # the arithmetic against a forward pass
        recipe = dict(D2L_RECIPES["alexnet"], resize=side)
        if side in fits:
            check_input_size(net, recipe)
        else:
            with pytest.raises(ValueError, match=r"the sizes it takes \(--resize\): 193-224"):
                check_input_size(net, recipe)
    assert sizes_that_fit(build_model("lenet")) == [28, 29, 30, 31]


def test_counts_and_articles_read_as_english():
    assert (epochs_word(1), epochs_word(4)) == ("1 epoch", "4 epochs")
    assert (a_model("alexnet"), a_model("lenet")) == ("an AlexNet", "a LeNet")


@pytest.mark.parametrize("threads, env, advice", [
    (2, None, "set TINYALEX_CPU_THREADS=1"),
    (2, "2", "set TINYALEX_CPU_THREADS=1 (it is 2 now)"),
    (1, "1", "start at most 2 processes on h (mpiexec -n 2)")])
def test_the_oversubscription_warning_suggests_what_is_not_in_effect(monkeypatch, threads,
                                                                     env, advice):
    monkeypatch.setattr(train_run.cpu_threads, "THREADS", threads)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    if env is None:
        monkeypatch.delenv("TINYALEX_CPU_THREADS", raising=False)
    else:
        monkeypatch.setenv("TINYALEX_CPU_THREADS", env)
    group = types.SimpleNamespace(describe=lambda: "4 processes", host="h", local_size=4)
    line = train_run._group_line(group, "numpy")
    assert "warning: 4 processes on h" in line and advice in line, line
    if env == "1":
        assert "TINYALEX_CPU_THREADS=" not in line


# ------------------------------------------------------------------------ atomic, in order

def test_atomic_write_flushes_and_fsyncs_the_data_before_the_rename(tmp_path, monkeypatch):
    """Records the write's calls: every byte written, then flushed, then fsynced (on the
    temporary file's descriptor), then renamed over the target, then the folder fsynced.
    Moving os.replace in front of flush or fsync in tinyalex/atomic.py fails here."""
    events = []
    real_fdopen, real_fsync, real_replace = os.fdopen, os.fsync, os.replace

    class Recorded:
        def __init__(self, f):
            self._f = f

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            self._f.__enter__()
            return self

        def __exit__(self, *exc):
            events.append(("close", self._f.fileno()))
            return self._f.__exit__(*exc)

        def write(self, b):
            events.append(("write", len(b)))
            return self._f.write(b)

        def flush(self):
            events.append(("flush", self._f.fileno()))
            return self._f.flush()

    def fdopen(fd, *args, **kwargs):
        return Recorded(real_fdopen(fd, *args, **kwargs))

    def fsync(fd):
        events.append(("fsync", fd))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.getsize(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "checkpoint.npz"
    target.write_bytes(b"old")
    payload = [b"a" * 1000, b"b" * 24]
    atomic.atomic_write(target, lambda f: [f.write(p) for p in payload])
    assert target.read_bytes() == b"".join(payload)

    kinds = [e[0] for e in events]
    file_fd = next(fd for kind, fd in events if kind == "flush")
    rename = kinds.index("replace")
    flush = max(i for i, e in enumerate(events) if e == ("flush", file_fd))
    fsync = kinds.index("fsync")
    assert events[fsync] == ("fsync", file_fd), events      # the data's own descriptor
    last_write = max(i for i, k in enumerate(kinds) if k == "write")
    assert last_write < flush < fsync < rename, events
    assert events[rename] == ("replace", 1024), events      # the whole file, on disk
    assert kinds[rename + 1:] == ["fsync"], events          # then the folder's entry


KILL_AFTER_RENAME = """
import os, signal, sys
import tinyalex
from tinyalex import checkpoint, models
real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    os.kill(os.getpid(), signal.SIGKILL)        # the instant after the rename
os.replace = replace
tinyalex.manual_seed(3)
net = models.lenet()
net.apply(models.init_weights_xavier)
checkpoint.save_checkpoint(sys.argv[1], net, epoch=2, recipe={"model": "lenet"})
"""


def test_a_kill_right_after_the_rename_leaves_a_checkpoint_that_loads(tmp_path):
    path = tmp_path / "checkpoint.npz"
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_RENAME, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckpt = C.load_checkpoint(path)
    assert ckpt.epoch == 2 and ckpt.model_name == "lenet"
    tinyalex.manual_seed(3)
    net = tinyalex.models.lenet()
    net.apply(tinyalex.models.init_weights_xavier)
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(ckpt.params[name], value.numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_curves_after_one_epoch_show_a_point_per_curve(tmp_path, monkeypatch):
    """A run's curves.png after one epoch: each curve is one point, drawn with a marker
    (a line without markers draws nothing for a single point)."""
    from tinyalex.study import plots
    drawn = {}
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (drawn.setdefault("fig", fig),
                                                           real_save(fig, path))[1])
    record = {"epoch": 1, "loss": 2.1, "train_acc": 0.3, "test_acc": 0.35, "seconds": 1.0}
    plots.plot_curves([record], tmp_path / "curves.png")
    lines = drawn["fig"].axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["train loss", "train acc", "test acc"]
    assert all(len(ln.get_xdata()) == 1 and ln.get_marker() not in (None, "", "None")
               for ln in lines)


def test_export_refuses_a_missing_checkpoint_with_one_line(tmp_path, capsys):
    missing = tmp_path / "runs" / "checkpoint.npz"
    assert example("export").main([str(missing), str(tmp_path / "w.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "w.safetensors").exists()
