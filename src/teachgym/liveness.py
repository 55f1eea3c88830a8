"""Whether the process that started an experiment is still alive, from its host, pid and start time.

``run.json`` and the parent run's tags record :func:`this_process`; ``--resume`` refuses to continue an
experiment whose process still runs, and ``teachgym runs --stale`` closes the runs of processes that are
gone. Both ask :func:`process_alive`, which tells a recycled pid by its later start time.
"""

from __future__ import annotations

import os
import socket
from typing import Any


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if there is no such process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def this_process() -> dict[str, Any]:
    """Host, pid and start time of this process (recorded so a later process can tell it is gone)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start_time(os.getpid())}


def process_alive(host: str | None, pid: int | None, pid_start: float | None) -> bool | None:
    """True/False when the process can be checked from here (same host), None when it cannot."""
    if host != socket.gethostname() or pid is None:
        return None
    started = process_start_time(int(pid))
    if started is None:
        return False
    # A recycled pid belongs to a process started later than the one recorded.
    return pid_start is None or abs(started - float(pid_start)) < 1.0
