"""One trainer per run, and no trainer outliving the stage that started it.

`RunLock` is an advisory lock file per run (`flock`), holding the pid of its holder. The kernel
releases it when the holder dies, however it dies, so a dead holder's lock is simply taken over;
a live holder's run is skipped and reported. `die_with_parent` makes a process receive SIGKILL
when its parent dies (Linux), so killing `dvc` or a stage also ends the stage's workers.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import sys
from pathlib import Path


class RunLock:
    """`with RunLock(path) as holder:` holder is None when this process holds the lock, else the live
    holder's pid (then nothing is locked)."""

    def __init__(self, path: Path, wait: bool = False):
        self.path, self.wait = Path(path), wait  # wait: block until the holder releases it
        self.fd: int | None = None

    def acquire(self) -> int | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip()
                os.close(fd)
                return int(holder) if holder.isdigit() else -1
            try:  # the file may have been released and unlinked between open and flock: lock the one at path
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return None
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: nobody can take the old file meanwhile
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> int | None:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent process dies (no-op where prctl is missing)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
