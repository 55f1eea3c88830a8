"""Resumable experiments: the state of every finished round on disk, written atomically, checked when read.

Layout of one experiment's output directory (``<loop.output_dir>/<run>-<timestamp>/``)::

    run.json              who the experiment is: MLflow run id, experiment, run name, stored config,
                          host/pid of the process running it, status (RUNNING / FINISHED / KILLED / FAILED)
    state/LATEST          the name of the newest whole round state, e.g. ``round-03``
    state/rounds.jsonl    every finished round's record and history entry, one checksummed JSON line per round
    state/round-03/       state.json (last evaluation, budget, policy state, the LLM engine's memory, what
                          MLflow still has to be told), rng.npz, data-N.parquet (training sets not logged yet),
                          student/ (``save_state``), and meta.json: every file's size and sha256, written last

Nothing here is a pickle: every file ``--resume`` reads is data (:mod:`teachgym.statefile` says why and how).

A round's record is appended to the journal first; its state is then written into a temporary
directory, its ``meta.json`` last, renamed into place and only then named in ``LATEST`` (itself replaced
atomically), so a kill at any moment leaves the previous round whole (records past ``LATEST``, or a torn
last line, are ignored when loading). The journal keeps a round's cost constant: the state does not grow
with the number of rounds before it. The newest two rounds are kept (``tracking.checkpoints``: ``best``
keeps the best round too; ``every`` keeps all).

``teachgym run CONFIG --resume [RUN_ID]`` finds the experiment (:func:`find_run`), refuses a config
that differs from the stored one in anything that can change results (:func:`resumed_config`), and
the loop continues after the newest round whose every file matches its ``meta.json``
(:meth:`RunDir.load`): a damaged newest round is named, skipped, and its rounds run again. A state
written by an older teachgym (pickle) is read only with ``--trust-old-state``, once, and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from teachgym import statefile
from teachgym.config import ExperimentConfig
from teachgym.config_diff import RESUMABLE_CHANGES, RESUMABLE_SECTIONS, ResumeError, result_changes, resumed_config
from teachgym.interrupts import critical
from teachgym.legacy_state import LegacyStateError, read_legacy_round, remove_legacy_files
from teachgym.liveness import process_alive, process_start_time, this_process
from teachgym.protocols import Resumable, Stateful
from teachgym.rng import capture_rngs, restore_rngs
from teachgym.rounds import RoundState
from teachgym.statefile import LATEST, STATE, STATE_FILE
from teachgym.statefile import read_state as _read_state
from teachgym.statefile import write_state as _write_state
from teachgym.tracking.runs import output_dir_of
from teachgym.tracking.schema import experiment_name

JOURNAL = "rounds.jsonl"
LEGACY_FILE = "loop.pkl"  # a round written by teachgym before the data-only format
RUN_FILE = "run.json"

log = logging.getLogger(__name__)


class StateSaveError(ResumeError):
    """A round's state could not be written (a full disk, a read-only folder); the previous round is whole."""


def can_save_state(student: Any) -> bool:
    """Whether a student can write and restore its exact state (``save_state``/``load_state``)."""
    return isinstance(student, Resumable)


def is_stateless(policy: Any) -> bool:
    """A policy without ``state_dict``/``load_state_dict`` is resumed from its constructor state."""
    return not isinstance(policy, Stateful)


class RunDir:
    """One experiment's output directory: ``run.json`` and the round states (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.state_dir = self.path / STATE
        self._journaled = 0  # records already in the journal, written by this process or loaded from it
        self.skipped: list[str] = []  # damaged rounds the last load() passed over, with what was wrong

    @classmethod
    def create(cls, path: Path) -> RunDir:
        """A new, empty output directory at ``path`` (``path-2``, ``-3``, ... if a run started there this second)."""
        candidate, n = Path(path), 1
        while True:
            try:
                candidate.mkdir(parents=True)
                return cls(candidate)
            except FileExistsError:
                n += 1
                candidate = Path(f"{path}-{n}")

    # -- run.json ---------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """The contents of ``run.json``."""
        return json.loads((self.path / RUN_FILE).read_text())

    def write_info(self, info: Mapping[str, Any]) -> None:
        """Replace ``run.json`` atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        statefile.write_atomic(self.path / RUN_FILE, json.dumps(dict(info), indent=1, default=str).encode())

    def update_info(self, **changes: Any) -> None:
        """Change some fields of ``run.json``."""
        self.write_info({**self.info, **changes})

    @property
    def run_id(self) -> str | None:
        """The MLflow parent run id (None when tracking was off)."""
        return self.info.get("run_id")

    # -- round states -----------------------------------------------------------------------------
    def latest(self) -> int | None:
        """The round ``LATEST`` names (the newest one written whole), or None if none was saved."""
        return statefile.latest_round(self.path)

    def saved_rounds(self) -> list[int]:
        """Rounds whose state folder is on disk (whole or not: :meth:`load` checks)."""
        return sorted(int(p.name[6:]) for p in self.state_dir.glob("round-[0-9]*") if p.is_dir())

    def save(self, state: RoundState, student: Any, keep: str = "none") -> float:
        """Write ``state`` and the student's, atomically; drop older rounds ``keep`` does not ask for.

        Returns:
            Bytes written for this round.

        Raises:
            StateSaveError: The state could not be written (a full disk, ...); the previous round stays whole.
        """
        name = f"round-{state.round:02d}"
        tmp = self.state_dir / f".{name}.tmp-{os.getpid()}"
        with critical():  # a stop signal waits until the round is whole on disk
            try:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                self._journal(state)
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                if can_save_state(student):
                    student.save_state(str(tmp / "student"))
                _write_state(state, tmp)
                statefile.manifest(tmp, round=state.round, used=state.used, time=time.time())
                final = self.state_dir / name
                if final.exists():  # a round written before a crash but never named in LATEST, or re-run
                    shutil.rmtree(final)
                os.replace(tmp, final)
                statefile.write_atomic(self.state_dir / LATEST, name.encode())
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                previous = self.latest()
                raise StateSaveError(
                    f"could not write round {state.round}'s state in {str(self.state_dir)!r}: {e.strerror or e}. "
                    + (f"Round {previous} is whole: free the space (or fix the folder) and continue with --resume"
                       if previous is not None else "No round was saved yet: fix it and start again")
                ) from e
            size = sum(f.stat().st_size for f in final.rglob("*") if f.is_file())
            self._prune(state, keep)
        return size

    def _journal(self, state: RoundState) -> None:
        """Append the records (and history entries) the journal does not have yet: one checksummed line per round."""
        new = list(zip(state.records[self._journaled:], state.history[self._journaled:], strict=True))
        if not new:
            return
        with open(self.state_dir / JOURNAL, "a") as f:
            for record, entry in new:
                body = json.dumps({"round": record.round, "record": statefile.encode(record, {}),
                                   "history": statefile.encode(entry, {})}, allow_nan=True)
                f.write(hashlib.sha256(body.encode()).hexdigest()[:16] + " " + body + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._journaled = len(state.records)

    def _read_journal(self, upto: int) -> tuple[list, list]:
        """Records and history entries of rounds ``0..upto`` (a later copy of a round wins; a torn or damaged
        line is skipped: its checksum does not match)."""
        rounds: dict[int, tuple[Any, Any]] = {}
        path = self.state_dir / JOURNAL
        damaged = 0
        if path.exists():
            for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
                check, _, body = line.partition(" ")
                if hashlib.sha256(body.encode()).hexdigest()[:16] != check:
                    damaged += 1
                    continue
                try:
                    data = json.loads(body)
                    rounds[int(data["round"])] = (statefile.decode(data["record"], self.state_dir),
                                                  statefile.decode(data["history"], self.state_dir))
                except (ValueError, KeyError, TypeError, statefile.StateFormatError):
                    damaged += 1
        missing = [r for r in range(upto + 1) if r not in rounds]
        if missing:
            why = f" ({damaged} damaged or torn line(s) skipped)" if damaged else ""
            raise ResumeError(f"{JOURNAL}: the records of rounds {missing[:5]} are missing{why}")
        return [rounds[r][0] for r in range(upto + 1)], [rounds[r][1] for r in range(upto + 1)]

    def _prune(self, state: RoundState, keep: str) -> None:
        """Keep this round and the one before it (a fallback if this one is damaged later), and what ``keep``
        asks for (``best``: the best round too; ``every``: all)."""
        if keep == "every":
            return
        earlier = [r for r in self.saved_rounds() if r < state.round]
        wanted = {state.round, *earlier[-1:]}
        if keep == "best" and state.records:
            wanted.add(max(state.records, key=lambda r: (r.mean_accuracy, -r.round)).round)
        for r in self.saved_rounds():
            if r not in wanted:
                shutil.rmtree(self.state_dir / f"round-{r:02d}", ignore_errors=True)
        for junk in self.state_dir.glob(".round-*.tmp-*"):  # left by a process killed while saving
            shutil.rmtree(junk, ignore_errors=True)

    def load(self, student: Any, policy: Any, synthesizer: Any = None, trust_old_state: bool = False
             ) -> RoundState | None:
        """Restore the newest intact round into ``student``, ``policy``, ``synthesizer`` and the global RNGs.

        Every file of a round is checked against its size and sha256 first; a damaged round is skipped (named
        in :attr:`skipped`) and the one before it is used, so the rounds after it run again.

        Returns:
            The round's state, or None when the experiment never finished round 0 (start afresh).

        Raises:
            ResumeError: No round is intact (every problem is listed), or the state was written by an older
                teachgym (pickle) and ``trust_old_state`` is not set.
        """
        if not can_save_state(student):
            raise ResumeError(
                f"student {type(student).__name__} cannot restore its state (it has no save_state/load_state), so "
                "this experiment cannot be resumed; add those two methods to resume experiments with it"
            )
        latest, saved = self.latest(), self.saved_rounds()
        if latest is None and not saved:
            return None
        candidates = {r for r in saved if latest is None or r <= latest}
        if latest is not None:
            candidates.add(latest)  # named in LATEST even if its folder is gone: reported, then the one before
        self.skipped = []
        for r in sorted(candidates, reverse=True):
            where = self.state_dir / f"round-{r:02d}"
            legacy = (where / LEGACY_FILE).exists() and not (where / STATE_FILE).exists()
            if legacy:
                state, problems = self._legacy(where, trust_old_state), []
            else:
                state, problems = self._read_round(where, r == latest)
            if problems:
                self.skipped.append(f"round-{r:02d}: " + "; ".join(problems))
                continue
            self._journaled = len(state.records)
            student.load_state(str(where / "student"))
            if state.policy_state is not None:
                if is_stateless(policy):
                    raise ResumeError(f"the saved policy state needs {type(policy).__name__}.load_state_dict()")
                policy.load_state_dict(state.policy_state)
            if synthesizer is not None and state.llm_seen is not None:
                synthesizer.seen = set(state.llm_seen)
            if legacy:  # rewritten at once in the data-only format; the pickles are not read again
                self.save(state, student, keep="every")
                remove_legacy_files(where, self.state_dir)
                log.warning("%s: read the older teachgym's pickled state once (--trust-old-state) and rewrote it "
                            "in the data-only format", where)
            restore_rngs(state.rng)
            if self.skipped:
                log.warning("damaged round state(s) skipped: %s; resuming after round %d and running the rounds "
                            "after it again", " | ".join(self.skipped), state.round)
            return state
        raise ResumeError(
            f"no intact round state in {str(self.state_dir)!r}:\n  " + "\n  ".join(self.skipped)
            + f"\nnothing can be resumed from it; start the experiment again without --resume (the damaged folder "
            f"{str(self.path)!r} can be deleted)"
        )

    def _read_round(self, where: Path, named_latest: bool) -> tuple[RoundState | None, list[str]]:
        """A round's state with its records, if every file is whole; else None and what is wrong, file by file."""
        if not where.is_dir():
            return None, [f"the folder is missing{' (LATEST names it)' if named_latest else ''}"]
        problems = statefile.verify(where)
        if problems:
            return None, problems
        try:
            state = _read_state(where)
            if state.journaled:  # records and history of rounds 0..journaled-1 are in the journal
                state.records, state.history = self._read_journal(state.journaled - 1)
        except (ResumeError, statefile.StateFormatError, OSError, ValueError, KeyError) as e:
            return None, [str(e)]
        return state, []

    def _legacy(self, where: Path, trust: bool) -> RoundState:
        """A round written by teachgym before the data-only format: read once (pickle), then rewritten."""
        if not trust:
            raise ResumeError(
                f"{str(where)!r} was written by an older teachgym as a pickle, and reading a pickle can run any "
                "code its author put in it (anyone who could write to this folder). If you trust this folder, "
                "pass --trust-old-state: it is read once and rewritten in the new, data-only format"
            )

        try:
            state = read_legacy_round(where, self.state_dir)
        except LegacyStateError as e:
            raise ResumeError(str(e)) from None
        self._journaled = 0  # the next save writes every record into the new journal
        return state


def find_run(config: ExperimentConfig, env_name: str, run_name: str, run_id: str | None = None) -> RunDir:
    """The experiment ``--resume`` continues: ``run_id``'s, or the newest unfinished one with this name.

    Looks in ``loop.output_dir`` first; a ``run_id`` kept elsewhere is found through the MLflow run's
    ``teachgym.output_dir`` tag.

    Raises:
        ResumeError: Nothing to resume, or the experiment is still running in a live process.
    """
    base = Path(config.loop.output_dir)
    experiment = experiment_name(config, env_name)
    found: list[tuple[dict[str, Any], RunDir]] = []  # each run.json read once
    for file in base.glob(f"*/{RUN_FILE}"):
        rd = RunDir(file.parent)
        try:
            info = rd.info
        except (OSError, ValueError):
            continue
        if run_id is not None:
            if run_id in (info.get("run_id"), rd.path.name):
                found.append((info, rd))
        elif info.get("run_name") == run_name and info.get("experiment") == experiment:
            found.append((info, rd))
    if not found and run_id is not None and config.tracking.enabled:
        path = output_dir_of(config.tracking.tracking_uri, run_id)
        if path is not None and (Path(path) / RUN_FILE).exists():
            rd = RunDir(path)
            found.append((rd.info, rd))
    if not found:
        what = f"run {run_id!r}" if run_id else f"an experiment named {run_name!r} in {experiment!r}"
        raise ResumeError(f"nothing to resume: found no {what} under {str(base)!r} (loop.output_dir)")
    found.sort(key=lambda pair: pair[0].get("started", 0), reverse=True)
    unfinished = [pair for pair in found if pair[0].get("status") != "FINISHED"]
    if not unfinished:
        info, rd = found[0]
        raise ResumeError(
            f"nothing to resume: {info.get('run_name')} ({info.get('run_id') or rd.path.name}) in {str(rd.path)!r} "
            "finished all its rounds; start a new one without --resume"
        )
    info, rd = unfinished[0]
    if info.get("status") == "RUNNING" and process_alive(info.get("host"), info.get("pid"), info.get("pid_start")):
        raise ResumeError(
            f"{info.get('run_name')} ({info.get('run_id') or rd.path.name}) is still running in process "
            f"{info.get('pid')} on {info.get('host')}; stop it first (kill -TERM {info.get('pid')}) or wait for it"
        )
    return rd


__all__ = ["RESUMABLE_CHANGES", "RESUMABLE_SECTIONS", "ResumeError", "RoundState", "RunDir", "StateSaveError",
           "can_save_state", "capture_rngs", "find_run", "is_stateless", "process_alive", "process_start_time",
           "restore_rngs", "result_changes", "resumed_config", "this_process"]
