"""Files that survive a kill: written whole or not at all, one writer per folder.

    atomic_write("runs/lenet/metrics.json", lambda f: f.write(text.encode()))

``atomic_write`` writes to a temporary file beside the target, flushes it to disk,
renames it over the target (``os.replace``, atomic on POSIX) and flushes the folder,
so that the rename itself survives a power cut. Killed at any moment (SIGKILL
included), it leaves the previous file whole; the only trace is the temporary
``.NAME.*.tmp``, which ``remove_stale_temps`` deletes on the next run, under
``exclusive_folder`` (a lock that keeps a second process out of the folder and dies
with its holder). tests/reliability/test_faults.py kills real training runs in the middle of
each write to check all of this.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_prefix(path) -> str:
    """The name prefix of ``atomic_write``'s temporary files for ``path``."""
    return f".{Path(path).name}."


def remove_stale_temps(folder, names) -> list:
    """Delete temporary files that ``atomic_write`` left beside ``names`` in ``folder``
    when its process was killed mid-write (SIGKILL, power loss); returns their names.
    Call it only while holding ``exclusive_folder(folder)``: another process's
    temporary file is not stale."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(os.listdir(folder)):
        if entry.endswith(".tmp") and any(entry.startswith(temp_prefix(n)) for n in names):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / entry)
                removed.append(entry)
    return removed


@contextlib.contextmanager
def exclusive_folder(folder):
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs, so
    that two training processes never write into one output folder. The lock is the
    folder's own (``flock`` on it), so it leaves no file behind, and the system drops
    it when the process dies, however it dies."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:                 # not a POSIX system: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{folder}: another process is training into this folder; "
                             "wait for it to finish, or choose another --out") from None
        except OSError:                 # a file system without locks (some NFS): go on
            pass
        yield
    finally:
        os.close(fd)


class WriteFailed(OSError):
    """A file could not be written: ``errno`` is the system's reason, and the text is
    the sentence alone (naming the path and what is wrong), without "[Errno N]"."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk and
    rename it to ``path``; on any failure the temporary file is removed and ``path``
    is left as it was. A failure of the file system is an OSError naming ``path`` (not
    the temporary file) and saying what is wrong with it."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise WriteFailed(errno.EISDIR, f"cannot write {path}: it is a folder; give the "
                          "path of a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteFailed(errno.ENOTDIR, f"cannot write {path}: {folder} is a file, not "
                          "a folder") from None
    except OSError as exc:
        raise WriteFailed(exc.errno, f"cannot create the folder {folder} for {path}: "
                          f"{exc.strerror or exc}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=folder)
    except OSError as exc:
        raise WriteFailed(exc.errno, f"cannot write {path}: {exc.strerror or exc} (in "
                          f"{folder})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):         # mkstemp makes 0600; give the usual mode
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:
            raise WriteFailed(exc.errno, f"cannot write {path}: {exc.strerror or exc}") \
                from None
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
