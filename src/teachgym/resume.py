"""Resumable experiments: the state of every finished round on disk, written atomically.

Layout of one experiment's output directory (``<loop.output_dir>/<run>-<timestamp>/``)::

    run.json              who the experiment is: MLflow run id, experiment, run name, stored config,
                          host/pid of the process running it, status (RUNNING / FINISHED / KILLED / FAILED)
    state/LATEST          the name of the newest whole round state, e.g. ``round-03``
    state/rounds.pkl      every finished round's record and history entry, appended one pickle per round
    state/round-03/       loop.pkl (last evaluation, budget, policy state, RNGs, the LLM engine's memory,
                          what MLflow still has to be told) + student/ (``save_state``)

A round's record is appended to ``rounds.pkl`` first; its state is then written into a temporary
directory, renamed into place and only then named in ``LATEST`` (itself replaced atomically), so a
kill at any moment leaves the previous round whole (records past ``LATEST``, or a torn last one, are
ignored when loading). The journal keeps a round's cost constant: the state no longer grows with
the number of rounds before it.
Older rounds are deleted unless ``tracking.checkpoints`` keeps them (``best``: the best round too;
``every``: all).

``teachgym run CONFIG --resume [RUN_ID]`` finds the experiment (:func:`find_run`), refuses a config
that differs from the stored one in anything that can change results (:func:`resumed_config`), and
the loop continues after the last round in ``LATEST``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teachgym.config import ConfigError, ExperimentConfig, flatten
from teachgym.protocols import Resumable, Stateful
from teachgym.tracking.schema import TAG_OUTPUT_DIR

STATE = "state"
JOURNAL = "rounds.pkl"
RUN_FILE = "run.json"
#: Config keys that may differ on ``--resume``: they change what is logged or where, never a result.
RESUMABLE_CHANGES = (
    "tracking.plots",
    "tracking.log_predictions",
    "tracking.checkpoints",
    "tracking.tracking_uri",
    "loop.output_dir",
    "loop.save_student",
)
# Whole sections that never change results: extra run tags, and the sweep grid (trials run without it).
RESUMABLE_SECTIONS = ("tracking.tags", "sweep")


class ResumeError(ConfigError):
    """An experiment cannot be resumed as asked (none found, still running, config changed, ...)."""


@dataclass
class RoundState:
    """Everything the rounds after ``round`` need, as the loop had it when the round ended."""

    round: int
    used: int
    records: list
    history: list
    result: Any  # the EvalResult measured after `round`: the next observation is built from it
    policy_state: Any = None  # None: the policy is stateless (no state_dict/load_state_dict)
    llm_seen: list[str] | None = None  # prompts the LLM data engine has already produced
    tracker_best: tuple | None = None  # (acc/mean, round, model id) of the best MLflow checkpoint
    rng: dict[str, Any] = field(default_factory=dict)
    journaled: int | None = None  # set on disk: records/history are the journal's first `journaled` rounds
    pending_log: Any = None  # tracking.RoundLogs not yet confirmed by MLflow: re-logged on resume if it missed them


def capture_rngs() -> dict[str, Any]:
    """The global RNGs a round may draw from: Python's ``random``, numpy's and torch's (CPU and CUDA)."""
    import sys

    import numpy as np

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    if "torch" in sys.modules:
        import torch

        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rngs(state: Mapping[str, Any]) -> None:
    """Put back what :func:`capture_rngs` took."""
    import numpy as np

    if "python" in state:
        random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "torch" in state:
        import torch

        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def can_save_state(student: Any) -> bool:
    """Whether a student can write and restore its exact state (``save_state``/``load_state``)."""
    return isinstance(student, Resumable)


def is_stateless(policy: Any) -> bool:
    """A policy without ``state_dict``/``load_state_dict`` is resumed from its constructor state."""
    return not isinstance(policy, Stateful)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


class RunDir:
    """One experiment's output directory: ``run.json`` and the round states (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.state_dir = self.path / STATE
        self._journaled = 0  # records already in rounds.pkl, written by this process or loaded from it

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
        _write_atomic(self.path / RUN_FILE, json.dumps(dict(info), indent=1, default=str).encode())

    def update_info(self, **changes: Any) -> None:
        """Change some fields of ``run.json``."""
        self.write_info({**self.info, **changes})

    @property
    def run_id(self) -> str | None:
        """The MLflow parent run id (None when tracking was off)."""
        return self.info.get("run_id")

    # -- round states -----------------------------------------------------------------------------
    def latest(self) -> int | None:
        """The newest whole round, or None if none was saved."""
        pointer = self.state_dir / "LATEST"
        if not pointer.exists():
            return None
        return int(pointer.read_text().strip().removeprefix("round-"))

    def saved_rounds(self) -> list[int]:
        """Rounds whose state is on disk (whole ones only)."""
        return sorted(int(p.name[6:]) for p in self.state_dir.glob("round-[0-9]*") if p.is_dir())

    def save(self, state: RoundState, student: Any, keep: str = "none") -> float:
        """Write ``state`` and the student's, atomically; drop older rounds ``keep`` does not ask for.

        Returns:
            Bytes written for this round.
        """
        from teachgym.interrupts import critical

        name = f"round-{state.round:02d}"
        with critical():  # a stop signal waits until the round is whole on disk
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._journal(state)
            tmp = self.state_dir / f".{name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            if can_save_state(student):
                student.save_state(str(tmp / "student"))
            light = dataclasses.replace(state, records=[], history=[], journaled=len(state.records))
            _write_atomic(tmp / "loop.pkl", pickle.dumps(light, protocol=pickle.HIGHEST_PROTOCOL))
            (tmp / "meta.json").write_text(json.dumps({"round": state.round, "used": state.used, "time": time.time()}))
            final = self.state_dir / name
            if final.exists():  # a round written before a crash but never named in LATEST
                shutil.rmtree(final)
            os.replace(tmp, final)
            _write_atomic(self.state_dir / "LATEST", name.encode())
            size = sum(f.stat().st_size for f in final.rglob("*") if f.is_file())
            self._prune(state, keep)
        return size

    def _journal(self, state: RoundState) -> None:
        """Append the records (and history entries) this file does not have yet, one pickle per round."""
        new = list(zip(state.records[self._journaled:], state.history[self._journaled:], strict=True))
        if not new:
            return
        with open(self.state_dir / JOURNAL, "ab") as f:
            for record, entry in new:
                f.write(pickle.dumps((record.round, record, entry), protocol=pickle.HIGHEST_PROTOCOL))
            f.flush()
            os.fsync(f.fileno())
        self._journaled = len(state.records)

    def _read_journal(self, upto: int) -> tuple[list, list]:
        """Records and history entries of rounds ``0..upto`` (a later copy of a round wins; a torn tail is ignored)."""
        rounds: dict[int, tuple[Any, Any]] = {}
        path = self.state_dir / JOURNAL
        if path.exists():
            with open(path, "rb") as f:
                while True:
                    try:
                        r, record, entry = pickle.load(f)  # noqa: S301 - our own file, written by save()
                    except Exception:  # noqa: BLE001 - the end, or a record torn by a kill while it was appended
                        break
                    rounds[r] = (record, entry)
        missing = [r for r in range(upto + 1) if r not in rounds]
        if missing:
            raise ResumeError(f"{path}: the records of rounds {missing[:5]} are missing; the run cannot be resumed")
        return [rounds[r][0] for r in range(upto + 1)], [rounds[r][1] for r in range(upto + 1)]

    def _prune(self, state: RoundState, keep: str) -> None:
        if keep == "every":
            return
        wanted = {state.round}
        if keep == "best" and state.records:
            wanted.add(max(state.records, key=lambda r: (r.mean_accuracy, -r.round)).round)
        for r in self.saved_rounds():
            if r not in wanted:
                shutil.rmtree(self.state_dir / f"round-{r:02d}", ignore_errors=True)
        for junk in self.state_dir.glob(".round-*.tmp-*"):  # left by a process killed while saving
            shutil.rmtree(junk, ignore_errors=True)

    def load(self, student: Any, policy: Any, synthesizer: Any = None) -> RoundState | None:
        """Restore the latest round into ``student``, ``policy``, ``synthesizer`` and the global RNGs.

        Returns:
            The round's state, or None when the experiment never finished round 0 (start afresh).
        """
        r = self.latest()
        if r is None:
            return None
        where = self.state_dir / f"round-{r:02d}"
        with open(where / "loop.pkl", "rb") as f:
            state: RoundState = pickle.load(f)  # noqa: S301 - our own file, written by save()
        if getattr(state, "journaled", None):  # records and history are in the journal
            state.records, state.history = self._read_journal(state.journaled - 1)
            self._journaled = len(state.records)
        if not can_save_state(student):
            raise ResumeError(
                f"student {type(student).__name__} cannot restore its state (it has no save_state/load_state), so "
                "this experiment cannot be resumed; add those two methods to resume experiments with it"
            )
        student.load_state(str(where / "student"))
        if state.policy_state is not None:
            if is_stateless(policy):
                raise ResumeError(f"the saved policy state needs {type(policy).__name__}.load_state_dict()")
            policy.load_state_dict(state.policy_state)
        if synthesizer is not None and state.llm_seen is not None:
            synthesizer.seen = set(state.llm_seen)
        restore_rngs(state.rng)
        return state


def experiment_name(config: ExperimentConfig, env_name: str) -> str:
    """The MLflow experiment an experiment logs to (``tracking.experiment`` or ``teachgym/<env>``)."""
    return config.tracking.experiment or f"teachgym/{env_name}"


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
        rd = _from_mlflow(config, run_id)
        if rd is not None:
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


def _from_mlflow(config: ExperimentConfig, run_id: str) -> RunDir | None:
    import mlflow

    from teachgym.tracking.store import resolve_tracking_uri

    try:
        run = mlflow.MlflowClient(resolve_tracking_uri(config.tracking.tracking_uri)).get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None
    path = run.data.tags.get(TAG_OUTPUT_DIR)
    return RunDir(path) if path and (Path(path) / RUN_FILE).exists() else None


def _resumable(key: str) -> bool:
    return key in RESUMABLE_CHANGES or any(key == s or key.startswith(s + ".") for s in RESUMABLE_SECTIONS)


def result_changes(stored: Mapping[str, Any], given: Mapping[str, Any]) -> tuple[list[str], str]:
    """The flattened keys where two config dumps differ in a way that can change results, and their
    ``  key: stored ..., given ...`` lines (empty when none)."""
    old, new = flatten(stored), flatten(given)
    keys = sorted(k for k in set(old) | set(new)
                  if old.get(k, "<unset>") != new.get(k, "<unset>") and not _resumable(k))
    lines = "\n".join(f"  {k}: stored {old.get(k, '<unset>')!r}, given {new.get(k, '<unset>')!r}" for k in keys)
    return keys, lines


def resumed_config(stored: Mapping[str, Any], given: ExperimentConfig) -> ExperimentConfig:
    """The stored config, with the given values of the keys that may change (:data:`RESUMABLE_CHANGES`).

    Raises:
        ResumeError: The given config differs in a key that could change results; every such key is listed.
    """
    refused, lines = result_changes(stored, given.model_dump())
    if refused:
        raise ResumeError(
            "--resume: this config differs from the one the experiment was started with, in keys that change "
            f"results:\n{lines}\nresume with the original config (only {', '.join(RESUMABLE_CHANGES)} may change), "
            "or start a new experiment without --resume"
        )
    merged = json.loads(json.dumps(dict(stored)))
    given_dump = given.model_dump()
    # The sections whole (tag names hold dots), then each key that may change, as given.
    merged.setdefault("tracking", {})["tags"] = given_dump["tracking"]["tags"]
    merged["sweep"] = given_dump["sweep"]
    new = flatten(given_dump)
    for key in RESUMABLE_CHANGES:
        node = merged
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = new.get(key)
    return ExperimentConfig.model_validate(merged)
