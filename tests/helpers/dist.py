"""Helpers of the distributed-training tests (test_distributed.py): finding mpiexec,
running a job of N processes with a deadline, and the scripts the processes run.

Every job is started as a subprocess, never with more processes than this machine
has cores, always with a timeout after which the launcher is asked to end its
processes (SIGTERM, which mpiexec forwards) and then killed, so that no test leaves
processes behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest

from helpers.reliability import ROOT, child_env

LENET = str(ROOT / "examples" / "train_lenet.py")


def find_mpiexec() -> str | None:
    """The mpiexec that pip's mpich wheel installed with this Python's scripts (beside
    the interpreter, or in the user scheme's scripts), else the first on PATH."""
    folders = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts")),
               Path(sysconfig.get_path("scripts", f"{os.name}_user"))]
    for folder in folders:
        if (folder / "mpiexec").is_file():
            return str(folder / "mpiexec")
    return shutil.which("mpiexec")


def require_mpi(processes: int = 2) -> str:
    """mpiexec and mpi4py, and enough cores for ``processes``. Missing, the test is
    skipped on a developer's machine and fails in CI (``CI`` set), whose set-up
    installs them (scripts/setup.sh: the ``mpi`` extra): a broken install step must
    not pass as skipped tests."""
    mpiexec = find_mpiexec()
    try:
        import mpi4py  # noqa: F401
        problem = None if mpiexec else "mpiexec is not on PATH nor beside this Python"
    except ImportError as exc:
        problem = f"mpi4py is not importable ({exc})"
    if problem is None and (os.cpu_count() or 1) < processes:
        problem = f"{processes} processes need {processes} cores, this machine has " \
                  f"{os.cpu_count()}"
    if problem:
        reason = f"distributed training cannot be tested here: {problem}"
        if os.environ.get("CI"):
            pytest.fail(reason + "; scripts/setup.sh installs mpi4py and mpich in CI",
                        pytrace=False)
        pytest.skip(reason)
    return mpiexec


def job_env(**extra) -> dict:
    """One CPU thread per process (the same arithmetic in every run compared, the
    in-process references included), unbuffered output."""
    env = dict(child_env(), TINYALEX_CPU_THREADS="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def stop(proc: subprocess.Popen) -> None:
    """End a job that outlived its test: SIGTERM to the launcher (forwarded to its
    processes), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mpi_job(mpiexec: str, n: int, argv: list[str], timeout: float = 90, cwd=None,
            **env) -> subprocess.CompletedProcess:
    """``mpiexec -n n python argv...``; the result with ``.seconds`` (wall time)."""
    return run([mpiexec, "-n", str(n), sys.executable, *argv], timeout, cwd, **env)


def run(cmd: list[str], timeout: float = 90, cwd=None, **env) -> subprocess.CompletedProcess:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=job_env(**env), cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not end within {timeout} s:\n{out}\n{err}")
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    done.seconds = time.monotonic() - started
    return done


def ok(result) -> str:
    assert result.returncode == 0, (f"{' '.join(result.args)} failed with status "
                                    f"{result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def lenet_args(data: Path, out: Path, *extra: str) -> list[str]:
    """The LeNet script on the tiny data (RECIPE_FLAGS), for ``mpi_job``."""
    return [LENET, "--backend", "numpy", "--data-dir", str(data), "--no-progress",
            "--out", str(out), *RECIPE_FLAGS, *extra]


# The recipe of every run compared: LeNet at 28x28 with momentum, weight decay and
# both augmentations on, so that the momentum buffers, the flat update and the
# augmented batches of the global batch are all part of what must agree. 150
# examples in batches of 64 are 3 steps an epoch, the last of 22 (11 per process).
RECIPE_FLAGS = ["--batch-size", "64", "--lr", "0.3", "--momentum", "0.5",
                "--weight-decay", "1e-4", "--crop-padding", "2", "--flip",
                "--train-limit", "150", "--test-limit", "100"]
RECIPE = dict(batch_size=64, lr=0.3, momentum=0.5, weight_decay=1e-4, crop_padding=2,
              flip=True, train_limit=150, test_limit=100)


# A job of N processes that trains two networks on the tiny data and leaves, per
# process, its final parameters and numbers in OUT/rank<r>.npz:
#   * LeNet through tinyalex.train.fit (the recipe above, one epoch: 3 steps);
#   * a small MLP with dropout through train_epoch with an MPI group, so that the
#     dropout masks of the global batch are part of what must agree.
# Run alone (no mpiexec, N = 1) it is the single-process run of the same two, and
# records whether anything imported mpi4py.
JOB = r"""
import json, socket, sys
from pathlib import Path
import numpy as np
import tinyalex
import tinyalex.cli                     # everything the training scripts import
from tinyalex import nn
from tinyalex.data import load_fashion_mnist
from tinyalex.dist import make_group
from tinyalex.optim import SGD
from tinyalex.train import D2L_RECIPES, evaluate_accuracy, fit, train_epoch
from tinyalex.train.replicas import share_start

data_dir, out, recipe = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
data = load_fashion_mnist(data_dir)
recipe = dict(D2L_RECIPES["lenet"], epochs=1, **recipe)
group = make_group("auto", "numpy")
net, records = fit(recipe, data, backend="numpy", log=lambda *a: None, dist=group)
lenet = np.concatenate([p.array.reshape(-1) for p in net.parameters()])

tinyalex.manual_seed(1)
mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5),
                    nn.Linear(64, 10))
flat = nn.FlatParameters(mlp.parameters())
opt = SGD(mlp.parameters(), lr=0.1, momentum=0.5, flat=flat)
if group.size > 1:
    share_start(group, opt, 0, [])
X, y = data[0][:129], data[1][:129]       # batches of 64, 64 and 1: process 1 has none
mlp_recipe = dict(recipe, batch_size=64, epochs=2, crop_padding=0, flip=False, resize=28)
stats = [train_epoch(mlp, opt, X, y, mlp_recipe, "numpy", e, group=group) for e in range(2)]
acc = evaluate_accuracy(mlp, data[2][:100], data[3][:100], 64, "numpy", group=group)
np.savez(out / f"rank{group.rank}.npz", lenet=lenet, mlp=flat.data.copy(),
         lenet_records=json.dumps(records), mlp_stats=json.dumps(stats), mlp_acc=acc,
         processes=group.size, rng=tinyalex.random.get_rng_state(),
         mpi4py="mpi4py" in sys.modules, host=socket.gethostname(),
         machines=getattr(group, "machines", 1))
"""


# What 2 processes compute, written out in one process: each step's two shards
# (the first ceil(n/2) rows, then the rest), each back-propagating its share
# (rows/n) of the global mean loss from the same weights and the same random state
# (the same dropout seeds, at each shard's offset into the batch), their flat
# gradients summed as the allreduce of 2 processes sums them (g0 + g1, float32),
# then one SGD step. Written from the semantics, not from tinyalex/train/epoch.py.
REFERENCE = r"""
import json, sys
from pathlib import Path
import numpy as np
import tinyalex
from tinyalex import nn
from tinyalex import random as R
from tinyalex.data import augment, batches, load_fashion_mnist, to_input
from tinyalex.models import init_weights_xavier
from tinyalex.ops.loss import cross_entropy
from tinyalex.optim import SGD
from tinyalex.recipes import build_model
from tinyalex.tensor import Tensor

data_dir, out, recipe = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
data = load_fashion_mnist(data_dir)

def two_shards(net, opt, X, y, seed, epoch, bs, crop, flip):
    flat = opt.flat
    for i, (Xb, yb) in enumerate(batches(X, y, bs, shuffle=True, seed=seed, epoch=epoch)):
        Xb = augment(Xb, seed, epoch, i, crop, flip)
        n, half = len(yb), (len(yb) + 1) // 2
        state, grads = R.get_rng_state(), []
        for part in (slice(0, half), slice(half, n)):
            if part.start == part.stop:             # no rows: zeros to add, and the stream
                grads.append(np.zeros_like(flat.grad))   # stays rank 0's (it sends it)
                continue
            R.set_rng_state(state)                  # every process draws the same seeds
            opt.zero_grad()
            for m in net.modules():                 # dropout: the shard's rows of
                if isinstance(m, nn.Dropout):           # the batch's masks
                    m.first_row = part.start
            loss = cross_entropy(net(Tensor(to_input(Xb[part], "numpy", 28))),
                                 Tensor(yb[part]))
            loss.backward(np.asarray(len(yb[part]) / n, dtype=np.float32))
            flat.zero_missing_gradients()
            grads.append(flat.grad.copy())
        flat.grad[...] = grads[0] + grads[1]
        opt.step()

tinyalex.manual_seed(0)
net = build_model("lenet")
net.apply(init_weights_xavier)
flat = nn.FlatParameters(net.parameters())
opt = SGD(net.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
          weight_decay=recipe["weight_decay"], flat=flat)
n = recipe["train_limit"]
two_shards(net, opt, data[0][:n], data[1][:n], 0, 0, recipe["batch_size"],
           recipe["crop_padding"], recipe["flip"])
lenet = flat.data.copy()

tinyalex.manual_seed(1)
mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5),
                    nn.Linear(64, 10))
flat = nn.FlatParameters(mlp.parameters())
opt = SGD(mlp.parameters(), lr=0.1, momentum=0.5, flat=flat)
for epoch in range(2):
    two_shards(mlp, opt, data[0][:129], data[1][:129], recipe.get("seed", 0), epoch, 64, 0,
               False)
np.savez(out / "reference.npz", lenet=lenet, mlp=flat.data.copy())
"""


def mpmd(mpiexec: str, per_rank: list[list[str]]) -> list[str]:
    """``mpiexec -n 1 python A... : -n 1 python B...``: one process per argument list,
    so that rank 1 can be given another --out than rank 0 (and shown to write and read
    nothing)."""
    cmd = [mpiexec]
    for i, argv in enumerate(per_rank):
        cmd += ([":"] if i else []) + ["-n", "1", sys.executable, *argv]
    return cmd


# The LeNet script with a hook in SGD.step, for the fault tests. Every process prints
# its rank and pid at start and "rank R: K steps" at exit. At update FAULT_STEP
# (counted over the run, from 1): FAULT=raise makes process 1 raise a ValueError;
# FAULT=hold makes every process print "rank R step K: holding" and wait until the
# file RELEASE exists, so that a test can signal or kill while the step is in progress.
FAULTY = r"""
import atexit, os, sys, time
from tinyalex import optim
from tinyalex.launcher import launch_from_env
rank = launch_from_env().rank
fault, at = os.environ["FAULT"], int(os.environ["FAULT_STEP"])
real, calls = optim.SGD.step, [0]
def say(text):                   # one write per line: mpiexec interleaves the processes
    os.write(1, (text + "\n").encode())
say(f"rank {rank} pid {os.getpid()}")
def step(self):
    calls[0] += 1
    if calls[0] == at and fault == "raise" and rank == 1:
        say(f"rank 1 raises at {time.time()}")
        raise ValueError("bad batch on process 1 (injected)")
    if calls[0] == at and fault == "hold":
        say(f"rank {rank} step {at}: holding")
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    real(self)
optim.SGD.step = step
atexit.register(lambda: say(f"rank {rank}: {calls[0]} steps"))
from tinyalex.cli import main
sys.exit(main("lenet", sys.argv[1:]))
"""


def start_job(cmd: list[str], **env) -> subprocess.Popen:
    """Start ``cmd``; threads read its stdout and stderr as they come into
    ``proc.out_lines`` and ``proc.err_lines``, so that a test waits for a line with a
    deadline (``wait_for``) and never blocks on a pipe."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=job_env(**env))
    proc.out_lines, proc.err_lines = [], []
    proc.readers = [threading.Thread(target=lambda f=f, into=into: into.extend(f), daemon=True)
                    for f, into in ((proc.stdout, proc.out_lines),
                                    (proc.stderr, proc.err_lines))]
    for reader in proc.readers:
        reader.start()
    return proc


def wait_for(proc: subprocess.Popen, lines: list, text: str, count: int = 1,
             timeout: float = 90) -> None:
    """Wait until ``count`` of ``lines`` (``proc.out_lines`` or ``proc.err_lines``)
    contain ``text``; fail (ending the job) at the deadline or if the job ends first."""
    deadline = time.monotonic() + timeout
    while sum(text in line for line in list(lines)) < count:
        if time.monotonic() > deadline or proc.poll() is not None:
            stop(proc)
            pytest.fail(f"never {count} line(s) with {text!r} from {' '.join(proc.args)}:\n"
                        + "".join(proc.out_lines) + "".join(proc.err_lines))
        time.sleep(0.02)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """``proc``'s whole stdout and stderr, once it has ended."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail(f"{' '.join(proc.args)} did not end within {timeout} s")
    for reader in proc.readers:
        reader.join(10)
    return "".join(proc.out_lines), "".join(proc.err_lines)


def pids(lines: list[str]) -> dict:
    """{rank: pid} from the FAULTY script's first lines."""
    found = {}
    for line in lines:
        words = line.split()
        if len(words) == 4 and words[0] == "rank" and words[2] == "pid":
            found[int(words[1])] = int(words[3])
    return found


# --------------------------------------------------------------------------------------
# Several machines on this one: network namespaces joined by a veth pair
# --------------------------------------------------------------------------------------

# hydra's ssh launcher runs "<launcher-exec> -x HOST COMMAND...": this stand-in for ssh
# enters HOST's namespace (and a hostname of its own) instead of logging in there
NETNS_LAUNCHER = r"""#!/bin/sh
[ "$1" = "-x" ] && shift
host=$1; shift
case $host in
{cases}
  *) echo "netns launcher: no namespace for host $host" >&2; exit 255 ;;
esac
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec sh -c "$1"' "$name" "$*"
"""


class NetnsHosts:
    """``count`` machines on this one, each a network namespace (``tinyalex-<pid>-<i>``)
    with an interface ``tnet`` at 10.200.0.<i+1>/24, the two joined by a veth pair, and
    a hostname of its own for its processes (a UTS namespace). ``mpiexec(n, argv)`` is
    the command that starts ``n`` processes across them from machine 0: MPICH's hydra
    with a hostfile of the addresses, its ssh launcher pointed at ``ip netns exec``
    (``NETNS_LAUNCHER``), its control traffic on ``tnet`` (``-iface``), and MPI's on
    TCP over ``tnet`` too (UCX_TLS=tcp: UCX would otherwise find the other process on
    the same kernel and use shared memory). Only these private addresses, inside
    namespaces created here, carry traffic. A context manager: the namespaces (and the
    veth pair with them) are deleted on the way out, whatever happened, and any left by
    a test process that died are deleted on the way in."""

    SUBNET = "10.200.0"

    def __init__(self, folder: Path, count: int = 2):
        if count != 2:
            raise ValueError("NetnsHosts joins two namespaces (one veth pair)")
        self.folder, self.count = Path(folder), count
        pid = os.getpid()
        self.names = [f"tinyalex-{pid}-{i}" for i in range(count)]
        self.hostnames = [f"host{i}" for i in range(count)]
        self.addresses = [f"{self.SUBNET}.{i + 1}" for i in range(count)]
        self.veth = [f"tx{pid}v{i}" for i in range(count)]     # <= 15 characters
        self.hostfile = self.folder / "hostfile"
        self.launcher = self.folder / "netns_launcher.sh"

    @staticmethod
    def cannot_make() -> str | None:
        """Why namespaces cannot be made here (None when they can)."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        for tool in ("ip", "unshare"):
            if shutil.which(tool) is None:
                return f"{tool} is not on PATH"
        return None

    def _ip(self, *args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")

    def __enter__(self) -> "NetnsHosts":
        self._remove_stale()
        try:
            for name in self.names:
                self._ip("netns", "add", name)
            self._ip("link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
            for name, veth, address in zip(self.names, self.veth, self.addresses):
                self._ip("link", "set", veth, "netns", name)
                self._ip("-n", name, "link", "set", veth, "name", "tnet")
                self._ip("-n", name, "addr", "add", f"{address}/24", "dev", "tnet")
                self._ip("-n", name, "link", "set", "tnet", "up")
                self._ip("-n", name, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        self.hostfile.write_text("".join(f"{a}:1\n" for a in self.addresses))
        cases = "\n".join(f"  {a}) ns={n} name={h} ;;" for a, n, h in
                          zip(self.addresses, self.names, self.hostnames))
        self.launcher.write_text(NETNS_LAUNCHER.format(cases=cases))
        self.launcher.chmod(0o755)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)

    @staticmethod
    def _remove_stale() -> None:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                timeout=20).stdout.split()
        for name in listed:
            parts = name.split("-")
            if len(parts) == 3 and parts[0] == "tinyalex" and parts[1].isdigit() \
                    and not Path(f"/proc/{parts[1]}").exists():
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)

    def on_host(self, i: int, cmd: list[str]) -> list[str]:
        """``cmd`` run on machine ``i`` (its namespace and hostname)."""
        return ["ip", "netns", "exec", self.names[i], "unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', self.hostnames[i], *cmd]

    def mpiexec(self, mpiexec: str, n: int, argv: list[str]) -> list[str]:
        return self.on_host(0, [mpiexec, "-launcher", "ssh", "-launcher-exec",
                                str(self.launcher), "-iface", "tnet", "-f",
                                str(self.hostfile), "-n", str(n), sys.executable, *argv])

    # what MPI needs to talk TCP over tnet (UCX, the mpich wheel's netmod; OFI's too)
    ENV = dict(UCX_TLS="tcp", UCX_NET_DEVICES="tnet", FI_PROVIDER="tcp",
               FI_TCP_IFACE="tnet", MPIR_CVAR_NOLOCAL="1")

    def received_bytes(self, i: int) -> int:
        """Bytes machine ``i``'s interface has received so far."""
        stats = Path("/sys/class/net/tnet/statistics/rx_bytes")
        done = subprocess.run(["ip", "netns", "exec", self.names[i], "cat", str(stats)],
                              capture_output=True, text=True, timeout=20)
        return int(done.stdout)

    def link_down(self, i: int) -> None:
        self._ip("-n", self.names[i], "link", "set", "tnet", "down")


def require_netns(folder: Path) -> NetnsHosts:
    """Two machines as network namespaces; where they cannot be made, the test is
    skipped saying why on a developer's machine and fails in CI (which runs as root)."""
    why = NetnsHosts.cannot_make()
    if why is None:
        try:
            (folder / "probe").mkdir(parents=True, exist_ok=True)
            with NetnsHosts(folder / "probe"):
                pass
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            why = f"network namespaces cannot be made here ({exc})"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the several-machine tests must run in CI: {why}", pytrace=False)
        pytest.skip(f"several machines cannot be made here: {why}")
    return NetnsHosts(folder)
