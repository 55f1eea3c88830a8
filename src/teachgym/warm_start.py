"""A supervised warm start shared by every policy and seed (``warm_start:`` in a config).

An RL student learns nothing from prompts it never gets right, so an RL experiment starts from a
student that SFT has taught a little. For comparisons that starting point must be the same for every
policy and seed: the warm start is an ordinary teachgym experiment of its own (its env is the
experiment's, its student, teacher, rounds and seed are ``warm_start``'s), logged as its own MLflow run
(``warm-start-<key>``, tag ``teachgym.stage=warm-start``) in the same MLflow experiment, run once and
kept in ``<warm_start.dir>/<key>/``. ``<key>`` is a hash of what decides its weights, so a changed warm
start is a new one. Every experiment that names the same warm start loads the same weights; a file lock
makes concurrent trials of a sweep wait for the one that trains it.

The loop calls :func:`warm_start` once, before it builds the student; the experiment's student gets
the warm start's saved weights as its ``model``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teachgym.config import ComponentConfig, ExperimentConfig, LoopConfig
from teachgym.distributed import team
from teachgym.tracking.schema import TAG_STAGE, TAG_WARM_START, TAG_WARM_START_MODEL, TAG_WARM_START_RUN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmStart:
    """A finished warm start: where its student is, its MLflow run, and how good it is."""

    key: str
    model: str
    run_id: str | None
    mean_accuracy: float

    @property
    def tags(self) -> dict[str, str]:
        """Tags for the experiment that starts from it."""
        return {TAG_WARM_START: self.key, TAG_WARM_START_MODEL: self.model,
                **({TAG_WARM_START_RUN: self.run_id} if self.run_id else {})}


def stage_config(config: ExperimentConfig) -> tuple[str, ExperimentConfig]:
    """The warm start's own experiment config and its key (a hash of what decides its weights)."""
    ws = config.warm_start
    assert ws is not None
    decides = {"env": config.env.model_dump(), "student": ws.student.model_dump(), "policy": ws.policy.model_dump(),
               "rounds": ws.rounds, "examples_per_round": ws.examples_per_round, "seed": ws.seed}
    key = hashlib.sha256(json.dumps(decides, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(ws.dir or Path(config.loop.output_dir) / "warm-start").resolve() / key
    tracking = config.tracking.model_copy(update={
        "run_name": f"warm-start-{key}", "checkpoints": "none",
        "tags": {**config.tracking.tags, TAG_STAGE: "warm-start"},
    })
    stage = ExperimentConfig(
        env=config.env,
        student=ws.student,
        policy=ws.policy,
        loop=LoopConfig(rounds=ws.rounds, examples_per_round=ws.examples_per_round, seed=ws.seed,
                        output_dir=str(folder / "run"), eval_batch_size=config.loop.eval_batch_size,
                        max_new_tokens=config.loop.max_new_tokens, save_student=True),
        tracking=tracking,
    )
    return key, stage


def _write_json(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2, default=str))
    tmp.replace(path)


def warm_start(
    config: ExperimentConfig, run: Callable[[ExperimentConfig], Any]
) -> tuple[ComponentConfig, WarmStart | None]:
    """The student config to build (with ``model`` set to the warm-started weights) and the warm start.

    Without ``warm_start`` in the config: ``config.student`` as it is, and None. Otherwise the warm
    start is trained the first time (an experiment of its own) and reused afterwards.

    Args:
        config: The experiment's config.
        run: What trains the warm start's own experiment (the loop's ``run_experiment``, handed in by the
            loop so that this module does not import the loop that imports it).
    """
    if config.warm_start is None:
        return config.student, None
    from filelock import FileLock

    key, stage = stage_config(config)
    folder = Path(stage.loop.output_dir).parent
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "warm_start.json"
    crew = team()  # with accelerate, every process trains it, process 0 holds the lock and writes the files
    with FileLock(str(folder) + ".lock") if crew.main else contextlib.nullcontext():
        if crew.on_main(lambda: not done.exists()):
            crew.on_main(shutil.rmtree, folder / "run", ignore_errors=True)  # what an interrupted warm start left
            log.info("warm start %s: training it once (%d rounds), kept in %s", key, stage.loop.rounds, folder)
            if crew.main:
                print(f"teachgym: warm start {key} ({stage.student.name}, {stage.policy.name}, {stage.loop.rounds} "
                      f"rounds x {stage.loop.examples_per_round}): trained once, kept in {folder}", flush=True)
            result = run(stage)
            info = {"key": key, "model": str(Path(result.output_dir, "student").resolve()), "run_id": result.run_id,
                    "mean_accuracy": result.rounds[-1].mean_accuracy, "config": stage.model_dump()}
            crew.on_main(_write_json, done, info)
    info = json.loads(done.read_text())
    ws = WarmStart(key, info["model"], info.get("run_id"), float(info["mean_accuracy"]))
    student = ComponentConfig(**{**config.student.model_dump(), "model": ws.model})
    return student, ws
