"""SIGTERM and SIGINT as exceptions, so an experiment stops at a safe point and its runs end ``KILLED``.

Python turns SIGINT into ``KeyboardInterrupt`` but leaves SIGTERM (what a cluster scheduler,
``docker stop`` or Ray sends) to kill the process on the spot, with the MLflow runs left ``RUNNING``.
:func:`stop_on_signals` raises :class:`Interrupted` for both instead; :func:`critical` defers the
signal while the round's state is written, so what is on disk is always one whole round.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The signals an experiment stops on (SIGHUP: the terminal went away).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_state = threading.local()


class Interrupted(KeyboardInterrupt):
    """The process got a stop signal; ``exit_code`` is the shell's ``128 + signum`` (143, 130, ...)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signame = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signame}")

    @property
    def exit_code(self) -> int:
        """What the process should exit with, as if the signal had killed it."""
        return 128 + self.signum


def _handler(signum: int, frame: Any) -> None:
    _state.pending = signum  # kept until the stop reaches the loop (see check())
    if getattr(_state, "deferring", 0):
        return  # raised when the critical section ends
    raise Interrupted(signum)


def check() -> None:
    """Raise :class:`Interrupted` if a stop signal came and its exception has not reached the loop yet.

    The handler raises at once, but Python drops an exception raised while the main thread runs a
    ``__del__`` or a weakref callback ("Exception ignored in ..."); the loop calls this at its safe
    points (and the HF student after every optimizer step) so that such a stop is not lost.
    """
    pending = getattr(_state, "pending", None)
    if pending is not None and not getattr(_state, "deferring", 0):
        raise Interrupted(pending)


def clear() -> None:
    """Forget a stop signal (the loop calls this once the stop has been handled)."""
    _state.pending = None


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGTERM/SIGINT/SIGHUP raise :class:`Interrupted` (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in STOP_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, _handler)
        except (ValueError, OSError):  # pragma: no cover - platform without that signal
            continue
    clear()
    try:
        yield
    finally:
        clear()
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def critical() -> Iterator[None]:
    """Defer a stop signal until the block ends (a state being written is finished first)."""
    _state.deferring = getattr(_state, "deferring", 0) + 1
    try:
        yield
    finally:
        _state.deferring -= 1
        check()
