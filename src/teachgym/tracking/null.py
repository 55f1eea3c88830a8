"""The tracker of an experiment with ``tracking.enabled=false``: every call does nothing.

It satisfies :class:`teachgym.protocols.CompleteTracker`, so the loop never asks whether it is tracking; and
:func:`complete` lends its no-op methods to a tracker that implements only the core
:class:`~teachgym.protocols.Tracker`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from teachgym.protocols import CheckpointingTracker, ResumableTracker


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


class _Completed(NullTracker):
    """A core-only tracker with :class:`NullTracker`'s no-ops for the optional methods it lacks."""

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker

    def __getattribute__(self, name: str) -> Any:
        if name != "_tracker" and not name.startswith("__"):
            inner = object.__getattribute__(self, "_tracker")
            if hasattr(inner, name):
                return getattr(inner, name)
        return object.__getattribute__(self, name)


def complete(tracker: Any) -> Any:
    """``tracker`` itself if it has every optional method, else it with the no-op defaults of those it lacks."""
    if isinstance(tracker, ResumableTracker) and isinstance(tracker, CheckpointingTracker):
        return tracker
    return _Completed(tracker)
