"""Faults injected into real training runs: signals, SIGKILL at random moments and in
the middle of each file write, divergence, and crafted or damaged checkpoints.

Every run here is the real training script (``examples/train_lenet.py``) in a
subprocess, on a tiny IDX data set the test writes (tests/helpers/reliability.py), so that
a run can be started, killed and resumed many times within seconds. What must hold:

* after any kill, the folder holds a checkpoint that loads, of no earlier epoch than
  the last one complete on disk (none only before the first), a metrics.json that
  parses and a curves.png that is whole; leftover temporary files are the only
  trace, and the next run removes them;
* resuming after any number of kills ends with exactly the weights and metrics of an
  uninterrupted run;
* a checkpoint is data: a file holding a pickle is refused and nothing in it runs.
"""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from helpers.reliability import (PNG_END, ROOT, assert_same_arrays, assert_same_checkpoint,
                                 checkpoint_params, child_env, epochs_printed, read_metrics,
                                 signal_after_line, temp_files, tiny_dataset, train_cmd,
                                 without_timing)
from tinyalex import checkpoint as C
from tinyalex import cli, data, train

FILES = ["checkpoint.npz", "curves.png", "metrics.json"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("tiny"))


def uninterrupted(tiny, epochs, **recipe):
    """The reference: the same recipe trained in this process without a stop."""
    net, records = train.fit(dict({"model": "lenet", "epochs": epochs, "batch_size": 16},
                                  **recipe), data.load_fashion_mnist(tiny),
                             log=lambda s: None)
    params = {f"param/{k}": v.numpy() for k, v in net.state_dict().items()}
    return params, records


def check_folder_after_a_kill(out: Path, at_least: int, at_most: int | None = None) -> int:
    """The invariants a killed run must leave; returns the checkpoint's epoch.

    ``at_least``: the epochs known to be complete on disk before the kill (the last
    checkpoint seen, and every epoch whose successor the run had begun); none of them
    may be lost, so with ``at_least`` > 0 a checkpoint must be there. ``at_most``: the
    last epoch the run trained (a checkpoint further on came from somewhere else)."""
    names = os.listdir(out) if out.is_dir() else []
    for n in names:
        assert n in FILES or (n.endswith(".tmp") and any(n.startswith(f".{f}.") for f in FILES)), n
    if "checkpoint.npz" not in names:
        assert at_least == 0, f"epoch {at_least} was complete, but no checkpoint is left"
        assert "metrics.json" not in names        # metrics are written after a checkpoint
        return 0
    ck = C.load_checkpoint(out / "checkpoint.npz")   # raises if damaged
    assert ck.epoch >= at_least, f"checkpoint of epoch {ck.epoch}: epoch {at_least} was lost"
    assert at_most is None or ck.epoch <= at_most, (ck.epoch, at_most)
    if "metrics.json" in names:
        metrics = read_metrics(out)
        assert ck.epoch - 1 <= len(metrics["epochs"]) <= ck.epoch
        assert without_timing(metrics["epochs"]) == \
            without_timing(ck.metrics["epochs"][:len(metrics["epochs"])])
    if "curves.png" in names:
        png = (out / "curves.png").read_bytes()
        assert png.startswith(b"\x89PNG") and png.endswith(PNG_END)
    return ck.epoch


def run_to_completion(out, tiny, epochs):
    resume = ["--resume"] if (out / "checkpoint.npz").exists() else []
    proc = subprocess.run(train_cmd(out, tiny, "--epochs", str(epochs), *resume),
                          capture_output=True, text=True, timeout=120, env=child_env())
    assert proc.returncode == 0, proc.stderr
    return proc


# ------------------------------------------------------------------ SIGKILL at random moments

KILLS = 14
NEVER_DONE = 1000          # the killed runs' --epochs: none of them can finish first


def test_sigkill_at_random_moments_never_loses_work(tiny, tmp_path):
    """14 real training processes killed with SIGKILL at seeded random moments (0 to
    0.6 s after the run prints its recipe, or 0 to 0.8 s after it prints its first
    epoch's line, when that epoch's files are written): loading data, training,
    evaluating, writing any of the three files. Each run resumes the last, from the
    checkpoint the last left; after each kill no complete epoch is lost. A last run
    trains two more epochs; the end equals an uninterrupted run exactly.

    Whether a kill lands inside a file write depends on timing, so it is counted and
    printed here; test_sigkill_in_the_middle_of_each_write kills inside each of the
    three writes every time."""
    out = tmp_path / "run"
    rng = random.Random(20240611)
    landed = Counter()
    epoch = 0                  # the checkpoint's epoch after the last kill
    for kill in range(KILLS):
        resume = ["--resume"] if (out / "checkpoint.npz").exists() else []
        before = set(temp_files(out))
        anchor, longest = rng.choice([("recipe:", 0.6), ("epoch ", 0.8)])
        delay = rng.uniform(0.0, longest)
        proc = subprocess.Popen(train_cmd(out, tiny, "--epochs", str(NEVER_DONE), *resume),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_env())
        try:
            seen = []
            for line in proc.stdout:
                seen.append(line)
                if line.startswith(anchor):
                    break
            time.sleep(delay)
            proc.kill()                              # SIGKILL: no handler runs
            proc.wait(timeout=60)
            stdout = "".join(seen) + proc.stdout.read()
            stderr = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, (kill, proc.returncode, stderr)
        trained = epochs_printed(stdout)
        if trained:                                  # it resumed where the last one stopped
            assert trained == list(range(epoch + 1, trained[-1] + 1)), (epoch, trained)
            if epoch:
                assert f"after epoch {epoch}\n" in stdout, stdout
        # epoch K's line is printed before its files are written, after epoch K-1's are
        at_least = max(epoch, trained[-1] - 1) if trained else epoch
        new = set(temp_files(out)) - before          # a write this run had begun
        landed["in the middle of a file write" if new else
               "before the first checkpoint" if not (out / "checkpoint.npz").exists() else
               "outside the writes"] += 1
        epoch = check_folder_after_a_kill(out, at_least, trained[-1] if trained else epoch)
    print(f"\n{KILLS} SIGKILLs; landed: {dict(landed)}; reached epoch {epoch}")
    assert sum(landed.values()) == KILLS
    assert epoch >= 1, "no run ever completed an epoch: the kills tested start-up only"
    leftover = bool(temp_files(out))

    epochs = epoch + 2
    run = run_to_completion(out, tiny, epochs)
    assert epochs_printed(run.stdout) == [epoch + 1, epoch + 2]
    assert sorted(os.listdir(out)) == FILES          # leftover temporary files removed
    if leftover:
        assert "removed" in run.stdout and "temporary file" in run.stdout
    ck = C.load_checkpoint(out / "checkpoint.npz")
    assert ck.epoch == epochs
    params, records = uninterrupted(tiny, epochs)
    saved = checkpoint_params(out / "checkpoint.npz")
    assert_same_arrays(params, {k: v for k, v in saved.items() if k.startswith("param/")})
    metrics = read_metrics(out)
    assert metrics["status"] == "complete"
    assert without_timing(metrics["epochs"]) == without_timing(records)


# ------------------------------------------------------------------ SIGKILL inside each write

HANG = """
import os, sys, time
import tinyalex.checkpoint as C, tinyalex.train.run as T, tinyalex.study.plots as P
real, calls = C.atomic_write, [0]
def hanging(path, write):
    calls[0] += 1
    if calls[0] != int(os.environ["HANG_AT"]):
        return real(path, write)
    def half(f):                     # write the whole file to a buffer, half to disk
        import io
        buf = io.BytesIO()
        write(buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        open(os.environ["MARKER"], "w").close()
        time.sleep(float(os.environ["HANG_SECONDS"]))
        f.write(buf.getvalue()[len(buf.getvalue()) // 2:])
    return real(path, half)
C.atomic_write = T.atomic_write = P.atomic_write = hanging
from tinyalex.cli import main
sys.exit(main("lenet", sys.argv[1:]))
"""


def start_hanging(tmp_path, tiny, out, hang_at, seconds, *args):
    script = tmp_path / "hang.py"
    script.write_text(HANG)
    marker = tmp_path / f"marker{hang_at}"
    env = dict(child_env(), HANG_AT=str(hang_at), MARKER=str(marker),
               HANG_SECONDS=str(seconds))
    cmd = [sys.executable, str(script)] + train_cmd(out, tiny, *args)[2:]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the write was never reached"
        time.sleep(0.01)
    return proc


# writes per epoch, in order: checkpoint.npz, metrics.json, curves.png; epoch 2's are 4, 5, 6
@pytest.mark.parametrize("hang_at,file,epoch_kept", [(4, "checkpoint.npz", 1),
                                                     (5, "metrics.json", 2),
                                                     (6, "curves.png", 2)])
def test_sigkill_in_the_middle_of_each_write(tiny, tmp_path, hang_at, file, epoch_kept):
    """Killed while epoch 2's file is half written: the previous version of every file
    stays whole, the half-written temporary file is the only trace, and --resume
    removes it and ends with the uninterrupted run's weights."""
    out = tmp_path / "run"
    proc = start_hanging(tmp_path, tiny, out, hang_at, 60, "--epochs", "3")
    proc.kill()
    proc.communicate(timeout=60)
    leftovers = temp_files(out)
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{file}.")
    assert (out / leftovers[0]).stat().st_size > 0           # half a file really was there
    assert check_folder_after_a_kill(out, 1, 2) == epoch_kept   # epoch 1's files were whole
    if file != "checkpoint.npz":
        assert len(read_metrics(out)["epochs"]) == epoch_kept - (file == "metrics.json")

    run = run_to_completion(out, tiny, 3)
    assert "removed 1 temporary file(s)" in run.stdout and leftovers[0] in run.stdout
    assert sorted(os.listdir(out)) == FILES
    params, records = uninterrupted(tiny, 3)
    saved = checkpoint_params(out / "checkpoint.npz")
    assert_same_arrays(params, {k: v for k, v in saved.items() if k.startswith("param/")})
    assert without_timing(read_metrics(out)["epochs"]) == without_timing(records)


def test_ctrl_c_twice_never_cuts_a_checkpoint_write(tiny, tmp_path):
    """Two SIGINTs while epoch 2's checkpoint is being written: the write finishes
    (a second signal stops at once everywhere else), then the run stops with 130."""
    out = tmp_path / "run"
    proc = start_hanging(tmp_path, tiny, out, 4, 1.0, "--epochs", "5")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted by SIGINT" in stderr
    assert C.load_checkpoint(out / "checkpoint.npz").epoch == 2
    assert temp_files(out) == []


def test_sigterm_stops_after_the_batch_and_keeps_a_checkpoint(tiny, tmp_path):
    out = tmp_path / "run"
    code, stderr = signal_after_line(train_cmd(out, tiny, "--epochs", "1000"), "epoch 2/",
                                     signal.SIGTERM)
    assert code == 143, stderr                         # 128 + SIGTERM, as a shell reports
    assert "interrupted by SIGTERM" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    ck = C.load_checkpoint(out / "checkpoint.npz")
    metrics = read_metrics(out)
    assert ck.epoch >= 2 and metrics["status"] == "interrupted"
    assert len(metrics["epochs"]) == ck.epoch
    assert sorted(os.listdir(out)) == FILES


def test_a_second_run_into_the_same_folder_is_refused(tiny, tmp_path, capsys):
    """While a run writes its first checkpoint, a second run into its folder (with
    --overwrite, so that nothing else stops it) is refused by the lock, with the lock's
    own message, and leaves the first run's half-written file alone."""
    out = tmp_path / "run"
    proc = start_hanging(tmp_path, tiny, out, 1, 30, "--epochs", "2")
    try:
        writing = temp_files(out)
        assert len(writing) == 1 and writing[0].startswith(".checkpoint.npz.")
        assert cli.main("lenet", ["--data-dir", str(tiny), "--out", str(out), "--overwrite",
                                  "--backend", "numpy", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"error: {out}: another process is training into this folder; wait for it " \
               "to finish, or choose another --out" in err, err
        assert temp_files(out) == writing            # not taken for a stale file
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    # the lock died with its process: the folder is usable again
    assert cli.main("lenet", ["--data-dir", str(tiny), "--out", str(out), "--epochs", "1",
                              "--backend", "numpy", "--no-progress", "--batch-size", "32"]) == 0
    assert sorted(os.listdir(out)) == FILES


# ------------------------------------------------------------------ divergence

def test_lr_100_diverges_with_a_message_and_exit_3(tiny, tmp_path, capsys):
    """d2l's LeNet at lr 100: the loss stays finite (the cross-entropy is computed
    stably) but passes 100 * ln 10 within a few steps; training stops there."""
    out = tmp_path / "run"
    rc = cli.main("lenet", ["--data-dir", str(tiny), "--out", str(out), "--lr", "100",
                            "--epochs", "3", "--batch-size", "16", "--backend", "numpy",
                            "--no-progress"])
    err = capsys.readouterr().err
    assert rc == train.EXIT_DIVERGED == 3
    assert "training diverged in epoch 1, step " in err and "of 6:" in err
    assert "far above chance level" in err and "--lr 100 now, e.g. --lr 10" in err
    assert "no checkpoint was written" in err and "Traceback" not in err
    assert not (out / "checkpoint.npz").exists()
    metrics = read_metrics(out)
    assert metrics["status"] == "diverged" and metrics["diverged"]["epoch"] == 1


def test_nan_loss_in_epoch_2_keeps_epoch_1(tiny, tmp_path, monkeypatch, capsys):
    """A NaN loss injected at epoch 2, step 3: the run stops naming that step, epoch
    1's checkpoint stays and loads, and metrics.json says what happened."""
    out = tmp_path / "run"
    real, calls = train.epoch.cross_entropy, [0]

    def poisoned(logits, y):
        calls[0] += 1
        loss = real(logits, y)
        return loss * float("nan") if calls[0] == 6 + 3 else loss   # 6 steps per epoch
    monkeypatch.setattr(train.epoch, "cross_entropy", poisoned)
    rc = cli.main("lenet", ["--data-dir", str(tiny), "--out", str(out), "--epochs", "3",
                            "--backend", "numpy", "--no-progress", "--batch-size", "16"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "training diverged in epoch 2, step 3 of 6: the batch loss is nan" in err
    assert "the checkpoint of epoch 1 is kept" in err
    assert C.load_checkpoint(out / "checkpoint.npz").epoch == 1
    metrics = read_metrics(out)
    assert metrics["status"] == "diverged" and len(metrics["epochs"]) == 1
    assert metrics["diverged"] == {"epoch": 2, "step": 3, "loss": "nan"}


def test_weights_that_become_nan_on_the_last_step_are_never_saved(tiny, tmp_path,
                                                                  monkeypatch):
    """The loss of the last step is computed before its update: if that update makes
    the weights NaN, the epoch must not be saved (the checkpoint would not load)."""
    from tinyalex import optim
    real, calls = optim.SGD.step, [0]

    def step(self):
        real(self)
        calls[0] += 1
        if calls[0] == 12:                              # the last step of epoch 2
            self.params[0].array[...] = np.inf
    monkeypatch.setattr(optim.SGD, "step", step)
    out = tmp_path / "run"
    with pytest.raises(train.TrainingDiverged, match=r"epoch 2, step 6 of 6: after the last "
                                                     r"step the weights \['0.weight'\]"):
        train.fit({"model": "lenet", "epochs": 3, "batch_size": 16}, data.load_fashion_mnist(tiny),
                  out_dir=out, log=lambda s: None)
    assert C.load_checkpoint(out / "checkpoint.npz").epoch == 1


# ------------------------------------------------------------------ checkpoints are data

class Payload:
    """Unpickling this calls open(marker, "w"): a file appears if a pickle ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def good_checkpoint(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good")
    train.fit({"model": "lenet", "epochs": 1, "batch_size": 16, "momentum": 0.9},
              data.load_fashion_mnist(tiny), out_dir=out, log=lambda s: None)
    return out / "checkpoint.npz"


def entries(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def craft_pickles(good: Path, folder: Path, marker: Path) -> dict:
    """Files that would run Payload if anything unpickled them."""
    live = pickle.dumps(Payload(marker))
    crafted = {}
    # 1. an object array among the real entries (np.savez pickles it into its .npy)
    arrays = entries(good)
    arrays["recipe"] = np.array([Payload(marker)], dtype=object)
    crafted["object array entry"] = folder / "object.npz"
    np.savez(crafted["object array entry"], **arrays)
    # 2. the whole file a pickle
    crafted["whole file a pickle"] = folder / "pickle.npz"
    crafted["whole file a pickle"].write_bytes(live)
    # 3. a zip entry named .npy whose bytes are a raw pickle
    crafted["raw pickle as .npy entry"] = folder / "raw.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(crafted["raw pickle as .npy entry"],
                                                       "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, live if info.filename == "metrics.npy"
                         else src.read(info))
    # 4. an extra entry that is not .npy at all
    crafted["non-.npy entry"] = folder / "extra.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(crafted["non-.npy entry"], "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("payload.pkl", live)
    # 5. a single object-array .npy file under a checkpoint's name
    crafted["object .npy file"] = folder / "single.npz"
    with open(crafted["object .npy file"], "wb") as f:
        np.save(f, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return crafted


def test_pickles_are_refused_and_never_run(good_checkpoint, tmp_path, capsys):
    marker = tmp_path / "pwned"
    crafted = craft_pickles(good_checkpoint, tmp_path, marker)
    # the payload is live: unpickling it does create the marker (so this test can fail)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists()
    for what, path in crafted.items():
        with pytest.raises(ValueError, match=str(path.name)) as err:
            C.load_checkpoint(path)
        msg = str(err.value)
        assert any(w in msg for w in ("pickle", "Python objects", "not a NumPy array",
                                      "single array")), (what, msg)
        with pytest.raises(ValueError):
            C.load_model(path)
        assert not marker.exists(), f"{what}: the pickle ran"
    # through the scripts too: a clear error, exit 2, no traceback, nothing executed
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(crafted["object array entry"].read_bytes())
    assert cli.main("lenet", ["--out", str(run), "--resume", "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert "holds Python objects" in err and "nothing was executed" in err
    ev = subprocess.run([sys.executable, str(ROOT / "examples" / "evaluate.py"),
                         str(crafted["raw pickle as .npy entry"]), "--backend", "numpy"],
                        capture_output=True, text=True, timeout=120)
    assert ev.returncode == 2 and "Traceback" not in ev.stderr and "pickle" in ev.stderr
    assert not marker.exists()


CUTS, FLIPS = 40, 60


def test_every_truncation_and_byte_flip_is_a_value_error(good_checkpoint, tmp_path):
    """The checkpoint cut at 40 places and with a byte flipped at 60 (seeded): all 100
    are refused with a ValueError naming the file, never another exception. (A flip in
    a zip field that nothing reads, such as a timestamp, would load; it must then load
    every entry unchanged: test_a_flip_nothing_reads_loads_every_entry_unchanged.)"""
    raw = good_checkpoint.read_bytes()
    original = C.load_checkpoint(good_checkpoint)
    rng = np.random.default_rng(7)
    outcomes = Counter()
    bad = tmp_path / "bad.npz"
    cuts = [(int(c), None) for c in rng.integers(0, len(raw), CUTS)]
    flips = [(None, int(p)) for p in rng.integers(0, len(raw), FLIPS)]
    for cut, flip in cuts + flips:
        if cut is not None:
            bad.write_bytes(raw[:cut])
        else:
            b = bytearray(raw)
            b[flip] ^= 0xFF
            bad.write_bytes(bytes(b))
        try:
            ck = C.load_checkpoint(bad)
        except ValueError as exc:
            assert "bad.npz" in str(exc)
            outcomes["refused"] += 1
            continue
        assert flip is not None, f"a file cut at {cut} of {len(raw)} bytes loaded"
        assert_same_checkpoint(ck, original)      # else a damaged file loaded as good
        outcomes[f"byte {flip} flipped, loaded unchanged"] += 1
    print(f"\ntruncations and flips: {dict(outcomes)}")
    assert outcomes == {"refused": CUTS + FLIPS}, dict(outcomes)


def test_a_flip_nothing_reads_loads_every_entry_unchanged(good_checkpoint, tmp_path):
    """The other outcome the test above allows, shown to be checked entry by entry: a
    flip in the first zip entry's modification time (bytes 10-13 of a local header,
    which no reader checks) loads with every entry equal; and the comparison tells
    apart a checkpoint that differs from it in any one entry."""
    import dataclasses
    raw = bytearray(good_checkpoint.read_bytes())
    assert raw[:4] == b"PK\x03\x04"
    raw[10] ^= 0xFF                                  # the DOS time of the first entry
    flipped = tmp_path / "flipped.npz"
    flipped.write_bytes(bytes(raw))
    original = C.load_checkpoint(good_checkpoint)
    assert_same_checkpoint(C.load_checkpoint(flipped), original)

    def changed(ck, **fields):
        return dataclasses.replace(ck, **fields)
    name = next(iter(original.params))
    opt = original.optimizer_state
    assert opt is not None and opt["momentum_buffers"][0] is not None
    others = [
        changed(original, params=dict(original.params, **{name: original.params[name] + 1})),
        changed(original, params=dict(original.params,
                                      **{name: original.params[name].astype(np.float64)})),
        changed(original, optimizer_state=dict(opt, momentum_buffers=[
            opt["momentum_buffers"][0] * 2] + opt["momentum_buffers"][1:])),
        changed(original, optimizer_state=dict(opt, lr=opt["lr"] / 2)),
        changed(original, optimizer_state=None),
        changed(original, epoch=original.epoch + 1),
        changed(original, recipe=dict(original.recipe, seed=1)),
        changed(original, rng_state=original.rng_state.replace("1", "2", 1)),
        changed(original, data_order=dict(original.data_order, next_epoch=9)),
        changed(original, metrics=dict(original.metrics, status="complete")),
        changed(original, format_version=2),
    ]
    for other in others:
        with pytest.raises(AssertionError):
            assert_same_checkpoint(other, original)


def rewrite(good, dst, change):
    arrays = entries(good)
    change(arrays)
    np.savez(dst, **arrays)
    return dst


@pytest.mark.parametrize("change,expected", [
    (lambda a: a.update({"param/0.weight": np.zeros((6, 1, 3, 3), np.float32),
                         "momentum/0.weight": np.zeros((6, 1, 3, 3), np.float32)}),
     r"0\.weight: shape \(6, 1, 3, 3\) in the state dict, \(6, 1, 5, 5\) in the model"),
    (lambda a: a.update({"param/0.weight": np.zeros((6, 1, 5, 5), np.complex64)}),
     "has dtype complex64; checkpoints hold floats, ints and text only"),
    (lambda a: a.update({"param/0.weight": np.full((6, 1, 5, 5), "x")}),
     "parameter '0.weight' has dtype <U1, expected floating point"),
    (lambda a: a.update({"momentum/0.weight": np.zeros((6, 1, 5, 5), np.int64)}),
     "momentum buffer of '0.weight' must hold finite floats"),
    (lambda a: a.update({"momentum/0.bias": np.full(6, np.inf, np.float32)}),
     "momentum buffer of '0.bias' must hold finite floats, got dtype float32 with NaN"),
    (lambda a: a.update({"param/extra": np.zeros(3, np.float32)}), "unexpected key extra"),
    (lambda a: a.update(junk=np.zeros(3)), r"unexpected entries \['junk'\]"),
    (lambda a: a.update(format_version=np.array("7")), "format_version 7.*newer tinyalex"),
    (lambda a: a.update(format_version=np.array("true")), "format_version True"),
    (lambda a: a.update(metrics=np.array('{"epochs": 5}')), r"metrics\['epochs'\] must be"),
    (lambda a: a.update(recipe=np.array(json.dumps(dict(json.loads(str(a["recipe"])),
                                                        lr=-1)))),
     "its recipe is not valid .*lr must be a positive number"),
    (lambda a: a.update(optimizer=np.array('{"lr": 0.1, "momentum": 0, "weight_decay": 0, '
                                           '"params": 5, "momentum_buffers": []}')),
     "optimizer params must be a list of parameter names"),
    (lambda a: a.update(rng_state=np.array(json.dumps('{"state": 5}'))),
     "rng_state is not a generator state"),
])
def test_wrong_contents_are_refused_with_the_problem_named(good_checkpoint, tmp_path,
                                                           change, expected):
    bad = rewrite(good_checkpoint, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=expected) as err:
        C.load_model(bad)
    assert "bad.npz" in str(err.value)


def test_a_lying_npy_header_is_refused_before_any_allocation(good_checkpoint, tmp_path):
    """An entry whose header claims 10**12 floats: refused from the header, without
    allocating 4 TB (NumPy would try to, reading from a zip member)."""
    import io
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (999999999999,)})
    bad = tmp_path / "liar.npz"
    with zipfile.ZipFile(good_checkpoint) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "param/0.bias.npy":          # 6 real floats after it
                body = header.getvalue() + body[-24:]
            dst.writestr(info.filename, body)
    with pytest.raises(ValueError, match=r"entry 'param/0.bias': its header says shape "
                                         r"\(999999999999,\)"):
        C.load_checkpoint(bad)


def test_another_architecture_and_a_newer_version_through_the_scripts(good_checkpoint,
                                                                       tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(good_checkpoint.read_bytes())
    assert cli.main("alexnet", ["--out", str(run), "--resume", "--backend", "numpy"]) == 2
    assert "holds a LeNet checkpoint, this script trains an AlexNet" in capsys.readouterr().err
    rewrite(good_checkpoint, run / "checkpoint.npz",
            lambda a: a.update(format_version=np.array("2")))
    assert cli.main("lenet", ["--out", str(run), "--resume", "--backend", "numpy"]) == 2
    assert "written by a newer tinyalex" in capsys.readouterr().err


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)


ENTRY_FIELD = {"optimizer": "optimizer_state"}        # Checkpoint's name, where it differs
LENET_PARAMS = [f"{i}.{w}" for i in (0, 3, 7, 9, 11) for w in ("weight", "bias")]


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(C._JSON_KEYS), value=json_values)
# chosen values, as random JSON rarely loads for these entries: the first, the last three
# load (so the comparison runs), the second and third are refused (lr, buffers)
@example(key="optimizer", value={"lr": 0.9, "momentum": 0.9, "weight_decay": 0.0,
                                 "params": LENET_PARAMS, "momentum_buffers": LENET_PARAMS})
@example(key="optimizer", value={"lr": 0.5, "momentum": 0.9, "weight_decay": 0.0,
                                 "params": LENET_PARAMS, "momentum_buffers": LENET_PARAMS})
@example(key="optimizer", value={"lr": 0.9, "momentum": 0.0, "weight_decay": 0.0,
                                 "params": LENET_PARAMS, "momentum_buffers": []})
@example(key="metrics", value={"epochs": [{"epoch": 1}]})
@example(key="recipe", value={"model": "lenet", "batch_size": 16, "momentum": 0.9})
@example(key="epoch", value=0)
def test_any_json_in_any_entry_is_loaded_or_refused_cleanly(good_checkpoint, tiny, tmp_path,
                                                            key, value):
    """Whatever JSON replaces one metadata entry, loading the file either refuses it with
    a ValueError naming the file and the entry, or loads exactly that value with every
    other entry unchanged; and resuming from a file that loaded either trains on or is
    refused the same way. Never a KeyError, AttributeError or TypeError."""
    import dataclasses
    bad = rewrite(good_checkpoint, tmp_path / "fuzz.npz",
                  lambda a: a.update({key: np.array(json.dumps(value))}))

    def named(exc):
        msg = str(exc)
        assert "fuzz.npz" in msg and key in msg, (key, value, msg)
    try:
        ck = C.load_checkpoint(bad)
    except ValueError as exc:
        named(exc)
        return
    good = C.load_checkpoint(good_checkpoint)
    field = ENTRY_FIELD.get(key, key)
    got = getattr(ck, field)
    if key == "optimizer":            # loaded as its state: the buffers' arrays by name
        got = dict({k: v for k, v in got.items() if k != "momentum_buffers"}, type="SGD",
                   momentum_buffers=[n for n, b in zip(got["params"], got["momentum_buffers"])
                                     if b is not None])
        value = dict(value, type="SGD")
    elif key == "data_order":
        value = value or {}           # null: no data order recorded
    assert got == value, (key, got, value)
    assert_same_checkpoint(dataclasses.replace(ck, **{field: getattr(good, field)}), good)
    C.load_model(bad)
    try:
        train.fit(dict(ck.recipe, epochs=max(ck.epoch, 1)), data.load_fashion_mnist(tiny),
                  resume=ck, log=lambda s: None)
    except ValueError as exc:
        named(exc)


# ------------------------------------------------------------------ disk full, early Ctrl-C

def test_disk_full_while_saving_keeps_the_last_checkpoint(tiny, tmp_path, monkeypatch,
                                                          capsys):
    """ENOSPC in the middle of epoch 2's checkpoint: exit 2 with the reason, epoch 1's
    files untouched, no temporary file left, and the run resumes afterwards."""
    import errno
    out = tmp_path / "run"
    real, calls = np.savez, [0]

    def savez(f, **arrays):
        calls[0] += 1
        if calls[0] == 2:
            f.write(b"part of an archive")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **arrays)
    monkeypatch.setattr(np, "savez", savez)
    common = ["--data-dir", str(tiny), "--out", str(out), "--backend", "numpy",
              "--no-progress", "--batch-size", "16"]
    assert cli.main("lenet", common + ["--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "cannot write the files of epoch 2" in err and "No space left on device" in err
    assert "the checkpoint of epoch 1 is kept" in err
    assert C.load_checkpoint(out / "checkpoint.npz").epoch == 1
    assert sorted(os.listdir(out)) == FILES and len(read_metrics(out)["epochs"]) == 1
    assert cli.main("lenet", common + ["--epochs", "3", "--resume"]) == 0
    assert C.load_checkpoint(out / "checkpoint.npz").epoch == 3


def test_ctrl_c_during_start_up_is_a_clean_exit(tiny, tmp_path):
    """SIGINT as soon as the script has printed its backend (loading data, building
    the network or already training): status 130 and a sentence, never a traceback."""
    out = tmp_path / "run"
    code, stderr = signal_after_line(train_cmd(out, tiny, "--epochs", "50"), "backend:",
                                     signal.SIGINT)
    assert code == 130, stderr
    assert "Traceback" not in stderr and "interrupt" in stderr
