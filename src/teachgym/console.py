"""The terminal: quiet libraries, and the live view of a sweep (the CLI and the benchmark scripts show it)."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Mapping
from typing import Any


def quiet_libraries() -> None:
    """Quiet transformers, datasets and MLflow: the caller's own lines are the progress display."""
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # "View run at ..." per run ended
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")


class Display:
    """The live view of a sweep on a terminal: a line per trial that starts or ends, and a status line.

    On a terminal the status line (done / running / failed, each running trial's round, ETA) is
    redrawn in place; elsewhere (a log file) it is printed at most every ``every`` seconds.
    """

    def __init__(self, stream: Any = None, every: float = 30.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every, self.last = every, 0.0
        self.total = self.done = self.failed = 0
        self.running: dict[str, list] = {}  # key -> [name, round, rounds]
        self.rounds: dict[str, int] = {}
        self.units_done, self.units_total, self.start = 0, 0, time.monotonic()
        self.names: dict[str, str] = {}

    def __call__(self, kind: str, **info: Any) -> None:
        getattr(self, f"on_{kind}")(**info)

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def on_status(self, message: str) -> None:
        self._line(message)

    def on_plan(self, total: int, done: int, todo: list[str], rounds: dict[str, int]) -> None:
        self.total, self.done, self.rounds = total, done, rounds
        self.units_total = sum(n + 1 for n in rounds.values())
        skipped = f"; {done} finished earlier (skipped)" if done else ""
        self._line(f"{total} trials: {len(todo)} to run{skipped}")

    def on_start(self, trial: str, key: str) -> None:
        self.running[key] = [trial, -1, self.rounds.get(key, 0)]
        self.names[key] = trial
        self._status(force=True)

    def on_round(self, key: str, round: int, rounds: int, acc: float) -> None:
        if key in self.running:
            before = self.running[key][1]
            self.running[key][1:] = [round, rounds]
            self.units_done += max(0, round - before)
        self._status()

    def on_end(self, trial: str, key: str, status: str, row: Mapping[str, Any]) -> None:
        name, r, n = self.running.pop(key, [trial, -1, self.rounds.get(key, 0)])
        self.units_done += max(0, n - r)
        if status == "finished":
            self.done += 1
            acc = row.get("acc_mean") or [math.nan]
            what = f"finished: acc/mean {acc[0]:.3f} -> {acc[-1]:.3f} ({row.get('wall_s', 0):.0f} s)"
        elif status == "failed":
            self.failed += 1
            what = f"FAILED: {row.get('error')}"
        else:
            what = f"interrupted ({row.get('error')})"
        self._line(f"{self._counts()} {trial} {what}")
        self._status(force=True)

    def _counts(self) -> str:
        return (f"[{self.done}/{self.total} done · {len(self.running)} running · {self.failed} failed"
                f"{self._eta()}]")

    def _eta(self) -> str:
        elapsed = time.monotonic() - self.start
        if self.units_done <= 0 or elapsed < 1:
            return ""
        left = max(0.0, self.units_total - self.units_done) * elapsed / self.units_done
        return f" · ETA {_duration(left)}"

    def _status(self, force: bool = False) -> None:
        """Redraw the status line (terminal), or print it every ``every`` seconds (log file)."""
        now = time.monotonic()
        if not self.running or (not force and now - self.last < (0.2 if self.tty else self.every)):
            return
        if not self.tty and force:
            return  # a start or end line was just printed; a log gets only the periodic status
        self.last = now
        cells = " ".join(f"{name} r{max(r, 0)}/{n}" for name, r, n in list(self.running.values())[:6])
        more = f" +{len(self.running) - 6}" if len(self.running) > 6 else ""
        text = f"{self._counts()} running: {cells}{more}"
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns
            self.stream.write("\r\033[K" + text[: width - 1])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
