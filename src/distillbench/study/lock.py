"""One writer per study (or sweep) directory at a time.

``run``, ``sweep`` and ``report`` each hold an exclusive lock on the directory they write for as long
as they write it: a standard file lock (``filelock``: ``flock`` on POSIX, ``msvcrt`` on Windows) on
``.distillbench.lock``, which the operating system releases when the holder exits or is killed, so a
crash never leaves a study locked. A second writer stops at once with a one-paragraph error naming
the holder (its pid, command and start time, from ``.distillbench.lock.json``), so two studies never
interleave their runs in one directory, and ``report`` never reads a study while a run rewrites it.

Once the lock is held, the temporary files that killed writes left in the directory are removed:
nobody else is writing there.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from distillbench.atomic import remove_temporaries, write_json
from distillbench.errors import UserError, os_error

LOCK_FILE = ".distillbench.lock"
HOLDER_FILE = ".distillbench.lock.json"
OUR_SUBDIRECTORIES = ("runs", "figures", "points")  # everything else under --out may be the user's


def _holder(directory: Path) -> str:
    """Who holds ``directory``'s lock, in words, from the file its holder wrote."""
    try:
        holder = json.loads((directory / HOLDER_FILE).read_text(encoding="utf-8"))
        command = " ".join(holder["command"])
        return f"pid {holder['pid']} on {holder['host']}, `{command}`, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said which yet"


@contextmanager
def directory_lock(directory: Path, what: str = "study") -> Iterator[None]:
    """Hold the exclusive lock of ``directory`` (created if need be) inside the block; stop with a
    one-paragraph error if another process holds it."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(directory / LOCK_FILE), timeout=0, thread_local=False)
        lock.acquire()
    except Timeout:
        raise UserError(
            f"The {what} in {directory} is being written by another distillbench ({_holder(directory)}). Wait "
            "for it to finish (its report is written at the end), or stop it; two runs writing one directory "
            "would mix their results. To run both at once, give this one another --out."
        ) from None
    except OSError as exc:
        raise os_error(exc, directory, f"create or lock the {what} directory") from None
    try:
        write_json(
            directory / HOLDER_FILE,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": ["distillbench", *sys.argv[1:]],
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
        remove_temporaries(directory, recursive=False)
        for name in OUR_SUBDIRECTORIES:
            remove_temporaries(directory / name)
        yield
    finally:
        try:
            (directory / HOLDER_FILE).unlink(missing_ok=True)
        except OSError:
            pass
        lock.release()
