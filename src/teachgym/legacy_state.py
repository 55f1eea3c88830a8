"""Round states written by teachgym before the data-only format (``loop.pkl`` + ``rounds.pkl``).

Those were pickles, and unpickling runs whatever code the file names, so this module is reached only when
the user passes ``--resume --trust-old-state`` (:meth:`teachgym.resume.RunDir.load`); the state read here
is rewritten at once in the new format (:mod:`teachgym.statefile`) and the pickles are removed, so it is
read this way once. Nothing else in teachgym unpickles anything.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from teachgym.errors import TeachgymError

LEGACY_JOURNAL = "rounds.pkl"
#: Names an older teachgym pickled that have moved since: (module, name) -> where they live now.
MOVED = {
    ("teachgym.tracking", "RoundLog"): ("teachgym.rounds", "Round"),
    ("teachgym.resume", "RoundState"): ("teachgym.rounds", "RoundState"),
}


class _Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that finds the classes an older teachgym pickled where they live now."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(*MOVED.get((module, name), (module, name)))


def _load(f: Any) -> Any:
    return _Unpickler(f).load()  # noqa: S301 - the user vouched for this folder (--trust-old-state)


class LegacyStateError(TeachgymError, ValueError):
    """A legacy state that cannot be read (damaged, or its journal lacks rounds)."""


def read_legacy_round(where: Path, state_dir: Path) -> Any:
    """The ``RoundState`` of a legacy round folder, with its records and history from the legacy journal.

    Raises:
        LegacyStateError: The pickle does not load, or the journal lacks a round's record.
    """
    try:
        with open(where / "loop.pkl", "rb") as f:
            state = _load(f)
    except Exception as e:  # noqa: BLE001 - a damaged legacy pickle: nothing to resume from it
        raise LegacyStateError(f"{where / 'loop.pkl'}: could not be read ({type(e).__name__}: {e})") from None
    rounds: dict[int, tuple[Any, Any]] = {}
    journal = state_dir / LEGACY_JOURNAL
    if journal.exists():
        with open(journal, "rb") as f:
            while True:
                try:
                    r, record, entry = _load(f)
                except Exception:  # noqa: BLE001 - the end, or a record torn by a kill while it was appended
                    break
                rounds[r] = (record, entry)
    if getattr(state, "journaled", None):
        upto = state.journaled - 1
        missing = [r for r in range(upto + 1) if r not in rounds]
        if missing:
            raise LegacyStateError(f"{journal}: the records of rounds {missing[:5]} are missing")
        state.records = [rounds[r][0] for r in range(upto + 1)]
        state.history = [rounds[r][1] for r in range(upto + 1)]
    return state


def remove_legacy_files(where: Path, state_dir: Path) -> None:
    """After the rewrite: the pickles are not read again."""
    (where / "loop.pkl").unlink(missing_ok=True)
    (state_dir / LEGACY_JOURNAL).unlink(missing_ok=True)
