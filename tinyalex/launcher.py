"""What an MPI launcher told this process, read from the environment alone.

    launch = launch_from_env()       # Launch(launcher='MPICH/Hydra', size=2, rank=0, ...)

``mpiexec`` (or ``mpirun``, or Slurm's ``srun`` with PMI) starts every process of a
job with variables that say how many processes there are, which one this is, and
how many share its machine. Reading them costs nothing and needs no MPI library, so
that a process started alone never imports mpi4py (``tinyalex/dist/``), and the CPU
kernels can share a machine's cores among its processes at import
(``kernels/cpu_threads.py``), before any MPI exists.

The variables, by launcher (world size, rank, processes on this machine, local rank):

    MPICH, Intel MPI (Hydra),   PMI_SIZE, PMI_RANK, MPI_LOCALNRANKS, MPI_LOCALRANKID
    srun --mpi=pmi2
    Open MPI                    OMPI_COMM_WORLD_SIZE, _RANK, _LOCAL_SIZE, _LOCAL_RANK
    MVAPICH2                    MV2_COMM_WORLD_SIZE, _RANK, _LOCAL_SIZE, _LOCAL_RANK

A launcher that gives the world size but not the local one counts as one process
per machine here; MPI itself later tells the truth (``tinyalex.dist`` warns when the
threads chosen at import oversubscribe the machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# (launcher, world size, rank, local size, local rank): the first whose size is set wins
VARIABLES = (
    ("Open MPI", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("MVAPICH2", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK",
     "MV2_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_RANK"),
    ("MPICH/Hydra (PMI)", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS", "MPI_LOCALRANKID"),
)


@dataclass(frozen=True)
class Launch:
    """How this process was started: ``launcher`` None and size 1 when alone."""
    launcher: str | None
    size: int
    rank: int
    local_size: int
    local_rank: int
    variable: str | None = None          # the variable that gave the size, for messages

    @property
    def alone(self) -> bool:
        return self.size == 1

    def describe(self) -> str:
        """``MPICH/Hydra (PMI) started 2 processes (PMI_SIZE=2)``, for messages."""
        if self.launcher is None:
            return "no MPI launcher started this process"
        return (f"{self.launcher} started {self.size} process"
                f"{'es' if self.size != 1 else ''} ({self.variable}={self.size})")


def _count(environ, name: str, minimum: int) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < minimum:
        raise ValueError(f"the environment variable {name}={value!r} (set by an MPI "
                         f"launcher) is not a whole number >= {minimum}")
    return int(value)


def launch_from_env(environ=None) -> Launch:
    """The launch this process belongs to, from ``environ`` (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    for launcher, size_var, rank_var, local_size_var, local_rank_var in VARIABLES:
        size = _count(environ, size_var, 1)
        if size is None:
            continue
        rank = _count(environ, rank_var, 0) or 0
        local_size = _count(environ, local_size_var, 1) or 1
        local_rank = _count(environ, local_rank_var, 0) or 0
        return Launch(launcher, size, rank, local_size, local_rank, size_var)
    return Launch(None, 1, 0, 1, 0)


def local_processes(environ=None) -> int:
    """How many processes of this job share this machine (1 when alone, or unknown)."""
    return launch_from_env(environ).local_size
