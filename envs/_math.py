"""``checker: math``: mathematical answers compared by value with Hugging Face's ``math-verify``.

``\\frac{1}{2}``, ``0.5`` and ``1/2`` agree; ``\\boxed{42}`` is read out of a longer answer; sets, intervals
and equivalent expressions are compared by sympy. A malformed answer is simply wrong, never an exception.

math-verify bounds its parsing and comparison with ``signal.alarm``, which only works on a process's main
thread (elsewhere it raises). teachgym checks answers from the main thread (evaluation, the data engine),
but also from threads (a sweep run in a thread, a tracking writer, a user's own code) and Ray workers, so:

* on the main thread, math-verify runs in process, with its own timeouts;
* on any other thread, the check is sent to one worker process (started on first use, ``spawn``), which runs
  it on *its* main thread with the same timeouts; if the worker does not answer in time (a pathological
  expression), it is replaced and the answer counts as wrong.

``python benchmarks/math_checker.py`` measures checks per second both ways.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

INSTALL_HINT = "checker: math needs math-verify: pip install 'teachgym[math]' (or 'math-verify')"

#: math-verify's own limit for parsing one answer and for comparing two, in seconds.
TIMEOUT_S = 5


def _require() -> Any:
    try:
        import math_verify
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return math_verify


def check_here(output: str, gold: str, timeout: int | None = TIMEOUT_S) -> bool:
    """Whether ``output`` states ``gold``'s value (on the main thread: math-verify's alarm-based timeouts).

    Each side is read as written, and — when it has no ``$`` — also as inline math (``$...$``): datasets give
    bare LaTeX golds (``\\sqrt{2}``, ``\\{1, 2\\}``) that math-verify reads as LaTeX only between delimiters.
    """
    mv = _require()
    try:
        golds = _readings(mv, str(gold), timeout)
        if not golds:
            return False
        return any(bool(mv.verify(g, a, timeout_seconds=timeout))
                   for a in _readings(mv, str(output), timeout) for g in golds)
    except Exception:  # noqa: BLE001 - a malformed or pathological answer is wrong, never an error
        return False


def _readings(mv: Any, text: str, timeout: int | None) -> list[Any]:
    """The parses of ``text``: as written, then as inline math when it has no ``$`` (empty parses dropped)."""
    out = [mv.parse(text, parsing_timeout=timeout)]
    if "$" not in text and text.strip():
        out.append(mv.parse(f"${text.strip()}$", parsing_timeout=timeout))
    return [p for p in out if p]


class _Worker:
    """One process that runs :func:`check_here` on its main thread, for callers on other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            self._pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def check(self, output: str, gold: str) -> bool:
        with self._lock:  # one check at a time: the worker is a single process
            future = self._executor().submit(check_here, output, gold)
            try:
                return bool(future.result(timeout=3 * TIMEOUT_S + 10))
            except concurrent.futures.TimeoutError:
                self.reset()  # a stuck worker is replaced; the answer counts as wrong
                return False
            except concurrent.futures.process.BrokenProcessPool:
                self.reset()
                return False

    def reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for proc in list(getattr(pool, "_processes", {}).values()):  # a worker stuck in sympy ignores shutdown
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)


_WORKER = _Worker()


def math_equal(output: str, gold: str) -> bool:
    """``checker: math`` — from any thread (see the module docstring)."""
    if threading.current_thread() is threading.main_thread():
        return check_here(output, gold)
    _require()  # the install hint in the caller's thread, not a failure inside the worker
    return _WORKER.check(output, gold)
