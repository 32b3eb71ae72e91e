"""GPUs of an MPI job as one group, through NCCL: ``--dist nccl`` (CuPy backend).

One process per GPU, each on the GPU of its local rank, as ChainerMN's ``pure_nccl``
communicator: MPI starts the processes and carries the small host messages (the
NCCL id at start-up, the metrics of a step, pickled objects); NCCL sums and
broadcasts device memory directly (``ncclAllReduce``, ``ncclBcast``), GPU to GPU,
on the current CUDA stream.

NCCL collectives run asynchronously on the GPU, and one whose peer died or hangs
never completes: every collective here is followed by a wait with a deadline
(``timeout_s``); past it the NCCL communicator is aborted (``ncclCommAbort``) and
``CollectiveTimeout`` raised, which ``tinyalex.train.fit`` turns into MPI_Abort of
the whole job.
"""

from __future__ import annotations

import time

import numpy as np

from .. import backend as B
from .mpi import CollectiveTimeout, DistributedError, MpiGroup

NCCL_TIMEOUT_S = 600.0     # a collective waits this long for its peers (first steps compile)


def nccl_unavailable_reason() -> str | None:
    """Why CuPy's NCCL cannot be used in this process, or None when it can: the cupy
    backend, then its NCCL bindings (GPUs are the caller's to count)."""
    reason = B.cupy_unavailable_reason()
    if reason:
        return f"the cupy backend is not usable: {reason}"
    try:
        nccl = B.cupy_submodule("cuda.nccl")
    except Exception as exc:                          # ImportError, a missing libnccl
        return f"{type(exc).__name__}: {exc}"
    if not getattr(nccl, "available", True):
        return "CuPy was built without NCCL"
    return None


def nccl_hint(cupy) -> str:
    """The command that installs NCCL for the CUDA major version CuPy was built for
    (nvidia-nccl-cu12 or -cu13: CuPy for CUDA 13 cannot load NCCL for CUDA 12)."""
    major = B.cupy_cuda_major(cupy)
    return f"pip install nvidia-nccl-cu{major if major in B.CUDA_EXTRAS else 13}"


class NcclGroup(MpiGroup):
    name = "nccl"

    def __init__(self, MPI, timeout_s: float = NCCL_TIMEOUT_S):
        super().__init__(MPI, backend="cupy")        # MPI, and the GPU of the local rank
        self.timeout_s = float(timeout_s)
        self.cp = B.cupy_module()
        why = nccl_unavailable_reason()
        if why:
            raise DistributedError(f"--dist nccl needs NCCL for CuPy, which is not usable here "
                               f"({why}); install it ({nccl_hint(self.cp)}), or use "
                               "--dist mpi (gradients through host memory)")
        self.nccl = B.cupy_submodule("cuda.nccl")
        uid = self.nccl.get_unique_id() if self.rank == 0 else None
        uid = self.comm.bcast(uid, root=0)
        self.nccl_comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)

    def _dtype(self, array) -> int:
        types = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
                 np.dtype(np.float64): self.nccl.NCCL_FLOAT64}
        if array.dtype not in types or not array.flags.c_contiguous:
            raise ValueError(f"NCCL: expected one C-contiguous float32/float64 CuPy array, "
                             f"got {array.dtype} (contiguous: {array.flags.c_contiguous})")
        return types[array.dtype]

    def sum_in_place(self, array) -> None:
        if not B.is_cupy_array(array):
            super().sum_in_place(array)
            return
        stream = self.cp.cuda.get_current_stream()
        self.nccl_comm.allReduce(array.data.ptr, array.data.ptr, array.size,
                                 self._dtype(array), self.nccl.NCCL_SUM, stream.ptr)
        self._wait(stream, f"allreduce of {array.size} numbers")

    def broadcast_in_place(self, array) -> None:
        if not B.is_cupy_array(array):
            super().broadcast_in_place(array)
            return
        stream = self.cp.cuda.get_current_stream()
        self.nccl_comm.bcast(array.data.ptr, array.size, self._dtype(array), 0, stream.ptr)
        self._wait(stream, f"broadcast of {array.size} numbers")

    def _wait(self, stream, what: str) -> None:
        """Wait for the collective just queued on ``stream``, at most ``timeout_s``."""
        event = self.cp.cuda.Event(block=False, disable_timing=True)
        event.record(stream)
        deadline = time.monotonic() + self.timeout_s
        pause = 1e-5
        while not event.done:
            if time.monotonic() > deadline:
                self.nccl_comm.abort()
                raise CollectiveTimeout(
                    f"NCCL {what} did not complete within {self.timeout_s:g} s on GPU "
                    f"{self.gpu} of {self.host}: another process of the job has stopped "
                    "or hangs")
            time.sleep(pause)
            pause = min(2 * pause, 1e-3)
        check = getattr(self.nccl_comm, "check_async_error", None)
        if check is not None:
            check()
