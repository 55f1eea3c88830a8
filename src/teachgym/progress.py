"""Progress of the long work inside a round (training steps, evaluation items), for the person watching.

Silent unless a front end turns it on (``teachgym run`` does when its output is a terminal, or with
``--progress``): a library call, a sweep's trial or a test prints nothing. On a terminal one line is redrawn in
place (and erased when the work ends, so the round line follows cleanly); in a log, a line every few seconds.
The line is tqdm's meter: done/total, elapsed, ETA and rate.

The loop names the round (:func:`scope`); the code doing the work opens a :func:`task` and ticks it.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

_LOG_EVERY = 5.0  # seconds between lines in a log: a person tailing it sees work move well within 10 s
_TTY_EVERY = 0.2


class _Sink:
    def __init__(self, stream: TextIO | None, every: float | None) -> None:
        self._stream = stream
        self.every = every

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout  # looked up when written: the CLI may have redirected stdout

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())


_sink: _Sink | None = None
_scope: list[str] = []


def enable(stream: TextIO | None = None, every: float | None = None) -> None:
    """Show progress on ``stream`` (default: stdout, looked up at each write).

    Args:
        stream: Where the lines go.
        every: Seconds between lines (default: 0.2 redrawn in place on a terminal, 5 as new lines elsewhere).
    """
    global _sink
    _sink = _Sink(stream, every)


def disable() -> None:
    """Stop showing progress (the default)."""
    global _sink
    _sink = None


def enabled() -> bool:
    return _sink is not None


@contextmanager
def scope(label: str) -> Iterator[None]:
    """Prefix every progress line inside the block with ``label`` (e.g. ``round 2/3``)."""
    _scope.append(label)
    try:
        yield
    finally:
        _scope.pop()


class Ticker:
    """One piece of work: ``update(n)`` as it advances; renders at most every ``every`` seconds."""

    def __init__(self, label: str, total: int | None, unit: str, sink: _Sink | None) -> None:
        self.label = " · ".join([*_scope, label])
        self.total, self.unit, self.sink, self.n = total, unit, sink, 0
        self.start = self.last = time.monotonic()
        self.drawn = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.sink is None:
            return
        now = time.monotonic()
        every = self.sink.every if self.sink.every is not None else (_TTY_EVERY if self.sink.tty else _LOG_EVERY)
        if not self.drawn or now - self.last >= every:  # the first tick at once: the work has begun
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        from tqdm import tqdm  # a dependency of transformers and datasets; its meter has rate and ETA

        assert self.sink is not None
        stream, tty = self.sink.stream, self.sink.tty
        width = shutil.get_terminal_size((100, 20)).columns if tty else None
        fmt = None if tty else "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]"
        line = tqdm.format_meter(self.n, self.total, now - self.start, ncols=width, prefix=self.label,
                                 unit=self.unit, bar_format=fmt)
        stream.write(("\r\033[K" + line[: (width or 100) - 1]) if tty else line + "\n")
        stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.sink is not None and self.drawn and self.sink.tty:
            self.sink.stream.write("\r\033[K")  # erase the meter: the caller's next line takes its place
            self.sink.stream.flush()


def start(label: str, total: int | None, unit: str = "it") -> Ticker:
    """A piece of work of ``total`` ``unit``\\ s (None: unknown), ticked by its owner, who closes it (or use
    :func:`task`)."""
    return Ticker(label, total, unit, _sink)


@contextmanager
def task(label: str, total: int | None, unit: str = "it") -> Iterator[Ticker]:
    """:func:`start` as a block: tick the yielded :class:`Ticker` as the work goes; it is closed at the end."""
    ticker = start(label, total, unit)
    try:
        yield ticker
    finally:
        ticker.close()


def in_batches(fn: Callable[..., Sequence[Any]], label: str, unit: str, size: int, *columns: Sequence[Any]
               ) -> list[Any]:
    """``fn`` over ``columns`` cut into batches of ``size`` rows, concatenated, with a ticker per row done.

    The batches are the ones a student cuts itself (``range(0, n, size)``), so the answers are the same.
    """
    n, size, out = len(columns[0]) if columns else 0, max(1, size), []
    with task(label, n, unit) as tick:
        for i in range(0, n, size):
            part = fn(*(c[i : i + size] for c in columns))
            out += list(part)
            tick.update(len(part))
    return out
