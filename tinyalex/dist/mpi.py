"""The processes of an MPI job as one group, through mpi4py: ``--dist mpi``.

    group = MpiGroup(MPI)              # MPI from mpi4py, started by mpiexec
    group.sum_in_place(flat.grad)      # one MPI_Allreduce of the whole flat gradient buffer
    totals = group.sum_host([loss_sum, correct, ...])   # float64, host memory

What each call is, in MPI's words: ``sum_in_place`` MPI_Allreduce(MPI_IN_PLACE, SUM)
of one contiguous buffer (NumPy's memory directly; a CuPy array is staged through
host memory, which needs no CUDA-aware MPI: ``--dist nccl`` is the GPU's fast path);
``broadcast_in_place`` MPI_Bcast from rank 0; ``broadcast_object`` mpi4py's pickled
bcast, for small things (a recipe, an RNG state) between processes of one job;
``abort`` MPI_Abort, which ends every process of the job.

Every sum and broadcast of arrays waits at most ``timeout_s`` (``TINYALEX_DIST_TIMEOUT``
seconds, default 600): it is started non-blocking (MPI_Iallreduce, MPI_Ibcast) and
polled, and past the deadline it raises ``CollectiveTimeout`` naming the collective,
the process and its machine, which ends the job (MPI_Abort through the excepthook
below) where a peer died or the network between the machines went down, instead of
waiting in the collective forever (MPI itself never gives up on a silent peer).

A fault on one process must end the whole job, or the others wait for it in their
next collective forever: a group of more than one process makes an exception that
nobody catches call MPI_Abort (``sys.excepthook``, as ``python -m mpi4py`` does), and
``tinyalex.train.fit`` aborts on any error that is not reached by every process at
the same step. The local size (processes on this machine) comes from
MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), and picks the GPU of a process.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from .. import backend as B
from ..exits import FAILURES, exit_status
from .shards import rows

_hooked = False            # the excepthook is installed once per process
# MPI_Abort ends every process at once, and mpiexec may drop what the failing process
# wrote last (its message) if it has not forwarded it yet: this long to forward it
ABORT_GRACE_S = 1.0


class DistributedError(RuntimeError):
    """Distributed training was asked for but cannot run as asked (what to install,
    which flag contradicts what)."""


class CollectiveTimeout(RuntimeError):
    """A collective did not complete in time: a peer died or hangs, or the network
    between the machines is down."""


TIMEOUT_VARIABLE = "TINYALEX_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0   # a collective waits this long for its peers


def collective_timeout_s(environ=None) -> float:
    """Seconds a collective waits for its peers: ``TINYALEX_DIST_TIMEOUT``, else 600."""
    environ = os.environ if environ is None else environ
    value = environ.get(TIMEOUT_VARIABLE, "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{TIMEOUT_VARIABLE}={value!r}: expected the seconds a collective "
                         f"waits for its peers, a number > 0 (default {DEFAULT_TIMEOUT_S:g})")
    return seconds


class MpiGroup:
    name = "mpi"

    def __init__(self, MPI, backend: str = "numpy", timeout_s: float | None = None):
        comm = MPI.COMM_WORLD
        self.MPI, self.comm, self.backend = MPI, comm, backend
        self.timeout_s = collective_timeout_s() if timeout_s is None else float(timeout_s)
        self.size, self.rank = comm.Get_size(), comm.Get_rank()
        if self.size > 1:
            abort_on_uncaught(self)
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_size, self.local_rank = local.Get_size(), local.Get_rank()
        local.Free()
        self.host = MPI.Get_processor_name()
        everyone = comm.allgather((self.host, backend, self.name))
        self.machines = len({host for host, _, _ in everyone})
        if len({(b, n) for _, b, n in everyone}) > 1:
            ranks = ", ".join(f"rank {r} ({h}): --backend {b} --dist {n}"
                              for r, (h, b, n) in enumerate(everyone))
            raise DistributedError(f"the processes of this job chose different backends or "
                                   f"groups ({ranks}); pass --backend and --dist explicitly")
        self.gpu = self._use_local_gpu(share=self.name != "nccl") \
            if backend == "cupy" else None

    def _use_local_gpu(self, share: bool) -> int:
        """Make the GPU of this process's local rank the current device."""
        cp = B.cupy_module()
        count = cp.cuda.runtime.getDeviceCount()
        if self.local_size > count and not share:
            raise ValueError(
                f"{self.local_size} processes on {self.host} share {count} GPU"
                f"{'s' if count != 1 else ''}; NCCL needs one GPU per process: start at most "
                f"{count} per machine (e.g. mpiexec -ppn {count}), or use --dist mpi")
        device = self.local_rank % count
        cp.cuda.Device(device).use()
        return device

    def rows(self, n: int) -> slice:
        return rows(n, self.rank, self.size)

    def sum_in_place(self, array) -> None:
        """``array`` becomes the sum of every process's ``array`` (same shape and dtype
        everywhere, C-contiguous)."""
        if B.is_cupy_array(array):         # through host memory: no CUDA-aware MPI needed
            host = B.to_numpy(array)
            self._sum(host, "allreduce")
            array[...] = B.get_array_module(array).asarray(host)
            return
        _check_buffer(array, "sum_in_place")
        self._sum(array, "allreduce")

    def sum_host(self, values) -> np.ndarray:
        """The sums over every process of a few host numbers (float64)."""
        buffer = np.array(values, dtype=np.float64)
        self._sum(buffer, "allreduce of the metrics")
        return buffer

    def broadcast_in_place(self, array) -> None:
        """Every process's ``array`` becomes rank 0's."""
        if B.is_cupy_array(array):
            host = B.to_numpy(array)
            self._wait(self.comm.Ibcast(host, root=0), f"broadcast of {host.size} numbers")
            array[...] = B.get_array_module(array).asarray(host)
            return
        _check_buffer(array, "broadcast_in_place")
        self._wait(self.comm.Ibcast(array, root=0), f"broadcast of {array.size} numbers")

    def _sum(self, array, what: str) -> None:
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        self._wait(request, f"{what} of {array.size} numbers")

    def _wait(self, request, what: str) -> None:
        """Wait for a non-blocking collective, at most ``timeout_s``: polled (each
        MPI_Test also moves MPI's progress on), briefly spinning, then sleeping up to
        a millisecond between polls."""
        if request.Test():
            return
        deadline = time.monotonic() + self.timeout_s
        spin_until = time.monotonic() + 2e-3
        pause = 1e-5
        while not request.Test():
            now = time.monotonic()
            if now > deadline:
                raise CollectiveTimeout(
                    f"MPI {what} did not complete within {self.timeout_s:g} s on process "
                    f"{self.rank} of {self.size} ({self.host}): another process of the job "
                    f"has stopped or hangs, or the network between the machines is down "
                    f"({TIMEOUT_VARIABLE} sets this limit)")
            if now > spin_until:
                time.sleep(pause)
                pause = min(2 * pause, 1e-3)

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every process (pickled by mpi4py: small objects only)."""
        return self.comm.bcast(obj, root=0)

    def describe(self) -> str:
        machines = f"{self.machines} machine{'s' if self.machines != 1 else ''}"
        return f"{self.size} process{'es' if self.size != 1 else ''} on {machines} " \
               f"({self.name})"

    def abort(self, status: int, message: str) -> None:
        """Print ``message`` for this process and end every process of the job."""
        abort_job(self.MPI, status, message)

    def abort_on(self, exc: BaseException) -> None:
        abort_job_on(self.MPI, exc)


def abort_job(MPI, status: int, message: str) -> None:
    """Print ``message`` as this process's and end every process of the job."""
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    text = (f"error on process {rank} of {size} ({MPI.Get_processor_name()}): {message}\n"
            f"process {rank} ends the whole job (MPI_Abort, exit status {status})\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(2, text.encode(errors="replace"))
    time.sleep(ABORT_GRACE_S)        # the launcher forwards the message before it kills
    comm.Abort(status)
    os._exit(status)       # MPI_Abort may return before the launcher ends this process


def abort_job_on(MPI, exc: BaseException) -> None:
    """End the job for ``exc``, with the exit status the scripts give it
    (``tinyalex/exits.py``; 1 for anything else)."""
    known = isinstance(exc, FAILURES + (KeyboardInterrupt,))
    status = exit_status(exc) if known else 1
    text = str(exc) or type(exc).__name__
    abort_job(MPI, status, text if known else f"{type(exc).__name__}: {text}")


def _check_buffer(array, where) -> None:
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        raise ValueError(f"{where}: expected one C-contiguous NumPy or CuPy array (the flat "
                         f"buffer), got {type(array).__name__}"
                         + ("" if not isinstance(array, np.ndarray) else " (not contiguous)"))


def abort_on_uncaught(group: MpiGroup) -> None:
    """From now on an exception nobody catches prints its traceback, then ends every
    process of the job (MPI_Abort) instead of leaving the others waiting."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        group.abort(1, f"uncaught {kind.__name__} (traceback above)")

    sys.excepthook = hook
