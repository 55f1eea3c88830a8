"""Plugins for the fault tests, loaded by import path (``student.name=fault_plugins:PausingSimulated``).

A pausing student behaves exactly like its parent, except that when ``$TEACHGYM_TEST_PAUSE_AT`` is
``N`` its ``N``-th ``train()`` call first appends its pid to ``$TEACHGYM_TEST_PAUSE_FILE`` and then waits until
``$TEACHGYM_TEST_PAUSE_FILE.go`` exists (or 120 s): the test knows the process is in the middle of
that round and can kill it there. The variables are not part of the config, so a resumed or a
reference run (without them) is the same experiment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from teachgym.students.hf import HFStudent
from teachgym.students.simulated import SimulatedStudent
from teachgym.types import Mixture, Observation


class _Pause:
    _trains = 0

    def train(self, dataset: Any) -> Any:
        self._trains += 1
        if os.environ.get("TEACHGYM_TEST_PAUSE_AT") == str(self._trains):
            marker = Path(os.environ["TEACHGYM_TEST_PAUSE_FILE"])
            with marker.open("a") as f:  # one line per paused process (a sweep's trials share the file)
                f.write(f"{os.getpid()}\n")
            deadline = time.monotonic() + 120
            while not marker.with_suffix(".go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return super().train(dataset)


class PausingSimulated(_Pause, SimulatedStudent):
    """The simulated student, pausable in the middle of a round."""


class PausingHF(_Pause, HFStudent):
    """The HF student, pausable in the middle of a round."""


class ActOnly:
    """A policy with nothing but ``act``: stateless (no state_dict/load_state_dict)."""

    def act(self, obs: Observation) -> Mixture:
        acc = obs.accuracies()
        return Mixture({s: 1.0 - 0.5 * a for s, a in acc.items()})


class FailsAtRound:
    """Raises in ``act`` at round ``$TEACHGYM_TEST_FAIL_ROUND`` (a user's bug), else uniform."""

    def act(self, obs: Observation) -> Mixture:
        if os.environ.get("TEACHGYM_TEST_FAIL_ROUND") == str(obs.round):
            raise ZeroDivisionError("my teacher divided by zero")
        return Mixture({s: 1.0 for s in obs.skill_names})


class NoTrainStudent:
    """A student that forgot ``train``."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def generate(self, prompts: list[str], max_new_tokens: int = 16, batch_size: int = 256) -> list[str]:
        return [""] * len(prompts)

    def loss(self, prompts: list[str], completions: list[str], batch_size: int = 256) -> list[float]:
        return [1.0] * len(prompts)

    def save(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)


class FailsOnSeed:
    """Uniform, but raises in ``act`` when the experiment's seed is ``$TEACHGYM_TEST_FAIL_SEED`` (one bad trial)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def act(self, obs: Observation) -> Mixture:
        if os.environ.get("TEACHGYM_TEST_FAIL_SEED") == str(self.seed):
            raise ValueError(f"my teacher cannot handle seed {self.seed}")
        return Mixture({s: 1.0 for s in obs.skill_names})


class KillsWhileSaving(SimulatedStudent):
    """The simulated student, SIGKILLed in the middle of writing its ``$TEACHGYM_TEST_KILL_SAVE_AT``-th round state
    (after its own files, before the round's ``meta.json``, the rename and ``LATEST``)."""

    _saves = 0

    def save_state(self, path: str) -> None:
        super().save_state(path)
        self._saves += 1
        if os.environ.get("TEACHGYM_TEST_KILL_SAVE_AT") == str(self._saves):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


class RecordingHF(_Pause, HFStudent):
    """The pausable HF student that also writes, per process, what each round trained on and the weights after.

    With ``$TEACHGYM_TEST_RECORD_DIR`` set, every ``train()`` appends one line to ``rank<RANK>.jsonl`` there:
    the sha256 of the round's rows and of the weights after training, so a test can compare processes.
    """

    def train(self, dataset: Any) -> Any:
        import hashlib
        import json

        report = super().train(dataset)
        folder = os.environ.get("TEACHGYM_TEST_RECORD_DIR")
        if folder:
            rows = hashlib.sha256(json.dumps(dataset.select_columns(["prompt", "completion"]).to_dict()).encode())
            weights = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                weights.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
            line = {"rows": rows.hexdigest(), "n": len(dataset), "weights": weights.hexdigest()}
            with open(Path(folder) / f"rank{os.environ.get('RANK', '0')}.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
        return report
