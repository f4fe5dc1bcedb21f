"""A folder one process works in at a time: a run folder (`vdatrain fit`), a sweep folder (`vdatrain sweep`).

    with FolderLock(run_dir, "run folder"):
        ...

The lock is an advisory `flock` on `<folder>/.lock`, held as long as the process lives (a killed process
releases it with its open files; nothing stale is left to clean up). The file records the holder (host,
process, command, time), so a second process is refused with one line naming it (exit 1).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path


class FolderLock:
    def __init__(self, folder, what: str):
        self.path, self.what, self._fd = Path(folder) / ".lock", what, None

    def __enter__(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise OSError(errno.EBUSY, f"{self.path.parent}: this {self.what} is in use by {holder}; wait for it to "
                                       f"finish, stop it, or use another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime(
            "%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv[:4])}).encode())
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"process {info['pid']} on {info['host']} since {info['since']} ({info['command']})"
        except (ValueError, KeyError, OSError):
            return "another process"

    def __exit__(self, *exc) -> bool:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        return False
