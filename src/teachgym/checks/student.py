"""The student checker."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from teachgym.checks.common import _methods, _require
from teachgym.protocols import learns_from_rewards
from teachgym.types import (
    TrainReport,
)


def check_student(
    student: Any,
    train_rows: Sequence[dict],
    tmp_dir: str,
    load: Callable[[str], Any],
    make: Callable[[], Any] | None = None,
) -> None:
    """Check a student: batched generation matches one-by-one, losses are finite, training lowers
    the loss on the training rows (an RL student, ``learns_from_rewards``, reports its prompts and rollouts
    instead), and a saved student loads back with the same outputs. A student
    with ``save_state``/``load_state`` (what ``--resume`` needs) must also restore *exactly*: a fresh
    student loaded from the state answers, scores and trains on bit for bit like the original.

    Args:
        student: The student instance.
        train_rows: A few ``prompt``/``completion`` dicts to train on.
        tmp_dir: A scratch directory for :meth:`Student.save`.
        load: Loads a saved student from a directory (e.g. ``lambda p: HFStudent(model=p)``).
        make: Builds a fresh student configured like ``student`` (for the exact-resume check).

    Raises:
        CheckError: On the first problem found.
    """
    from datasets import Dataset

    _methods(student, ["train", "generate", "loss", "save"], "student")
    prompts = [r["prompt"] for r in train_rows]
    completions = [r["completion"] for r in train_rows]
    # Prompts of different lengths in one batch exercise padding.
    batched = student.generate(prompts, max_new_tokens=6)
    _require(isinstance(batched, list) and len(batched) == len(prompts), "generate() must return one str per prompt")
    _require(all(isinstance(x, str) for x in batched), "generate() must return strings")
    single = [student.generate([p], max_new_tokens=6)[0] for p in prompts]
    _require(batched == single, f"batched generation differs from one-by-one (padding?): {batched} vs {single}")
    before = student.loss(prompts, completions)
    _require(len(before) == len(prompts), "loss() must return one value per row")
    _require(all(math.isfinite(x) and x >= 0 for x in before), f"loss() returned {before}")
    report = student.train(Dataset.from_list([{"prompt": p, "completion": c} for p, c in zip(prompts, completions)]))
    _require(isinstance(report, TrainReport), f"train() must return a TrainReport, got {type(report).__name__}")
    after = student.loss(prompts, completions)
    if learns_from_rewards(student):
        # An RL student samples its own answers and learns from their rewards, not from the completions;
        # it must say what it trained on: every prompt once, and its rollout statistics.
        _require(report.metrics.get("rl/prompts") == len(prompts),
                 f"an RL student's train() must report rl/prompts = {len(prompts)}, got {report.metrics}")
        _require(isinstance(report.rollouts, dict), "an RL student's train() must report its rollouts")
    else:
        _require(sum(after) < sum(before), f"training did not lower the loss on its own data: {before} -> {after}")
    student.save(tmp_dir)
    loaded = load(tmp_dir)
    _require(loaded.generate(prompts, max_new_tokens=6) == student.generate(prompts, max_new_tokens=6),
             "a saved and reloaded student answers differently")
    reloaded_loss = loaded.loss(prompts, completions)
    _require(all(abs(a - b) < 1e-4 for a, b in zip(after, reloaded_loss)), "a reloaded student has other losses")

    has_state = [callable(getattr(student, m, None)) for m in ("save_state", "load_state")]
    _require(has_state[0] == has_state[1], "save_state() and load_state() go together: both, or neither")
    if all(has_state) and make is not None:
        import os

        state_dir = os.path.join(tmp_dir, "resume-state")
        student.save_state(state_dir)
        fresh = make()
        fresh.load_state(state_dir)
        _require(fresh.loss(prompts, completions) == student.loss(prompts, completions),
                 "a student restored by load_state() has other losses (it must be exact for --resume)")
        data = Dataset.from_list([{"prompt": p, "completion": c} for p, c in zip(prompts, completions)])
        student.train(data)
        fresh.train(data)
        _require(fresh.loss(prompts, completions) == student.loss(prompts, completions),
                 "a student restored by load_state() trains differently from the original (seed or step state lost?)")
