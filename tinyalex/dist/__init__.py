"""Data-parallel training: the processes of an MPI job train one network together.

    mpiexec -n 4 python examples/train_alexnet.py                 # 4 processes, --dist auto
    group = make_group("auto", "numpy")      # Solo alone; MpiGroup under mpiexec (-n > 1)

N processes are one process with the same global batch (``tinyalex/train/epoch.py``
does the steps, ``tinyalex/train/run.py`` the start and the files):

* every process computes the same epoch order and takes its contiguous block of each
  global batch (``shards.rows``), so all take the same number of steps;
* each back-propagates its share of the global mean loss (its mean loss times
  rows / global rows), and one sum over processes of the flat gradient buffer
  (``nn.FlatParameters``) makes every process's gradient the global batch's;
* dropout masks and augmentation are those of the global batch
  (``dropout(..., first_row=)``, ``tinyalex/train/shares.py``), loss, accuracy and the stop request are summed,
  so every process sees the same numbers and stops at the same step;
* rank 0 broadcasts the initial (or resumed) weights, momentum and random state,
  and alone prints and writes files.

The groups, one interface (``rows``, ``sum_in_place``, ``sum_host``,
``broadcast_in_place``, ``broadcast_object``):

=========  ========================================================================
``none``   ``solo.Solo``: one process, every collective the identity
``mpi``    ``mpi.MpiGroup``: mpi4py (NumPy buffers directly, CuPy through the host)
``nccl``   ``nccl.NcclGroup``: NCCL between GPUs for device buffers, MPI for the rest
=========  ========================================================================

``--dist auto`` (the default) is ``none`` for a process started alone, else ``nccl``
on CuPy and ``mpi`` on NumPy. Whether MPI started this process is read from the
launcher's environment variables (``tinyalex/launcher.py``): mpi4py is imported only
when a group of MPI is asked for.
"""

from __future__ import annotations

from ..launcher import Launch, launch_from_env
from .mpi import CollectiveTimeout, DistributedError, MpiGroup, abort_job_on
from .nccl import NCCL_TIMEOUT_S, NcclGroup
from .shards import rows
from .solo import SOLO, Solo

CHOICES = ("auto", "none", "mpi", "nccl")
INSTALL = ("pip install mpi4py mpich (mpi4py and the mpich wheel, with its mpiexec: "
           "tinyalex's mpi extra, pip install -e '.[mpi]' in its folder)")


def choose(dist: str, backend: str, launch: Launch) -> str:
    """The group to build: "none", "mpi" or "nccl", for ``--dist`` on ``backend``."""
    if dist not in CHOICES:
        raise ValueError(f"--dist {dist!r}: expected one of {', '.join(CHOICES)}")
    if dist == "auto":
        return "none" if launch.alone else ("nccl" if backend == "cupy" else "mpi")
    if dist == "none" and not launch.alone:
        raise ValueError(f"--dist none, but {launch.describe()}: each would train alone "
                         "and write the same files; drop --dist none to train together "
                         "(--dist auto), or start one process without mpiexec")
    if dist == "nccl" and backend != "cupy":
        raise ValueError(f"--dist nccl sums GPU memory with NCCL and needs --backend cupy, "
                         f"but the backend is {backend}; use --dist mpi (or auto) on numpy")
    return dist


def import_mpi(dist: str, launch: Launch):
    """mpi4py's MPI module (initialising MPI), or a DistributedError saying what to
    install."""
    try:
        from mpi4py import MPI      # noqa: PLC0415 - only when a group of MPI is asked for
    except ImportError as exc:
        why = (f"--dist {dist}" if dist != "auto" else
               f"--dist auto trains on all of them ({launch.describe()})")
        raise DistributedError(f"{why}, which needs mpi4py and an MPI library, but mpi4py "
                               f"cannot be imported ({exc}); install them with {INSTALL}"
                               + (", or start one process without mpiexec"
                                  if dist == "auto" else "")) from None
    size = MPI.COMM_WORLD.Get_size()
    if not launch.alone and size != launch.size:
        raise DistributedError(
            f"{launch.describe()}, but mpi4py's MPI sees {size}: mpi4py is built for "
            f"another MPI ({MPI.Get_library_version().splitlines()[0].strip()}) than the "
            "launcher's; start the processes with that MPI's mpiexec (the one beside the "
            "Python that has mpi4py, for the mpich wheel)")
    return MPI


def make_group(dist: str = "auto", backend: str = "numpy", environ=None,
               timeout_s: float = NCCL_TIMEOUT_S):
    """The group of this process for ``--dist`` on ``backend``: ``SOLO`` alone, else an
    ``MpiGroup`` or ``NcclGroup`` (which makes the GPU of its local rank current)."""
    launch = launch_from_env(environ)
    name = choose(dist, backend, launch)
    if name == "none":
        return SOLO
    MPI = import_mpi(dist, launch)
    try:
        return NcclGroup(MPI, timeout_s) if name == "nccl" else MpiGroup(MPI, backend)
    except Exception as exc:
        if MPI.COMM_WORLD.Get_size() > 1:
            abort_job_on(MPI, exc)         # the others may be waiting in a collective
        raise


__all__ = ["CHOICES", "CollectiveTimeout", "DistributedError", "MpiGroup", "NCCL_TIMEOUT_S",
           "NcclGroup", "SOLO", "Solo", "choose", "import_mpi", "make_group", "rows"]
