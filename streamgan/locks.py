"""An exclusive lock on a file, held for as long as a process writes a folder (a batch's output
folder, a training run's folder): a second writer stops at once, told who holds it."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None


@contextlib.contextmanager
def hold(fd: int, busy: Callable[[str], Exception],
         unsupported: Callable[[OSError], None] | None = None):
    """Hold an exclusive flock on the open file ``fd`` until the block ends, the file then
    reading "pid N on HOST"; ``fd`` is closed at the end, and the lock goes with it (also when the
    process is killed). Another holder: raise ``busy(its "pid N on HOST")``. A file system without
    locks: ``unsupported(the error)`` and go on, or raise it when that is None."""
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "pid unknown"
                raise busy(holder) from None
            except OSError as e:
                if unsupported is None:
                    raise
                unsupported(e)
            else:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
