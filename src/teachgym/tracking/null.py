"""The tracker of an experiment with ``tracking.enabled=false``: every call does nothing.

It satisfies :class:`teachgym.protocols.Tracker`, so the loop never asks whether it is tracking.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any


class NullTracker:
    """Logs nothing; the experiment's outputs are its round states and its return value."""

    parent_id: str | None = None
    uri: str | None = None
    best: tuple | None = None

    def start(self, run_id: str | None = None) -> str | None:
        return None

    def round(self, index: int) -> AbstractContextManager[None]:
        return nullcontext()

    def probe(self, index: int, k: int) -> AbstractContextManager[None]:
        return nullcontext()

    def log(self, entry: Any) -> None:
        pass

    def unconfirmed(self, entry: Any = None) -> list[Any]:
        return []  # nothing waits for a store

    def check(self) -> None:
        pass

    def restore_best(self, records: list, saved: tuple | None) -> None:
        pass

    def relog(self, entries: Any) -> int:
        return 0

    def rerun_after(self, index: int) -> list[str]:
        return []

    def log_plots(self, records: list) -> None:
        pass

    def log_checkpoint(self, student: Any, index: int, metrics: Any) -> str | None:
        return None

    def flush(self) -> None:
        pass

    def reachable(self) -> bool:
        return True

    def finish(self, status: str = "FINISHED") -> None:
        pass
