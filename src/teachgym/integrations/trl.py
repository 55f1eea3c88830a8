"""A teachgym teacher inside a user's own TRL script: it chooses the skill mixture of a ``GRPOTrainer`` (or
``SFTTrainer``) run.

    trainer = GRPOTrainer(model=..., reward_funcs=[correct], train_dataset=rows, args=GRPOConfig(...))
    teach(trainer, "learnability", skill_column="skill")  # before train(); any policy name, or a Teacher
    trainer.train()

What :func:`teach` changes, and nothing else:

- **The sampler.** TRL's ``RepeatSampler`` draws a whole permutation per epoch, so weights changed mid-epoch
  would do nothing (TRL #2801 was declined with "override the trainer's train sampler and change weights from
  a callback"). :class:`TeacherSampler` keeps TRL's layout (each prompt ``num_generations`` times in a row, a
  generation batch repeated ``num_iterations * steps_per_generation`` times; SFT: one row at a time) but draws
  each generation batch lazily, when the data loader reaches it: a skill from the teacher's current weights,
  then a row of that skill. Every process draws the same sequence (one seed, the same weights at the same
  step), so GRPO groups stay aligned across processes, as with TRL's sampler.
- **GRPO: one reward function is watched** (``reward``: its index or name; default the first): each completion
  passes when its reward exceeds ``threshold``. Per skill and generation batch: the pass rate, the
  learnability (the mean over groups of ``p (1 - p)``), the mean absolute group-normalised advantage and the
  share of zero-variance groups, gathered from every process; the rewards themselves are unchanged.
  **SFT: an evaluation** (``evaluate``, e.g. :func:`evaluator`: greedy answers to held-out rows, checked by
  the user's ``verify``) gives per-skill accuracies instead.
- **A callback** (:class:`TeacherCallback`): every ``every`` optimizer steps, process 0 folds the statistics
  since the last update into the teacher (:meth:`teachgym.teacher.Teacher.update`: one update is one round)
  and broadcasts the new weights; the weights and statistics go into the trainer's own logs
  (``teacher/weight/<skill>``, ``teacher/pass_rate/<skill>``, ...), hence to MLflow with ``report_to="mlflow"``.
  Each checkpoint gets the teacher's state (:data:`STATE_FILE`); ``train(resume_from_checkpoint=...)`` goes on
  from it.

TRL names used: the trainer's ``reward_funcs``, ``num_generations``, ``num_iterations``, ``accelerator``,
``train_dataset``, ``callback_handler`` and ``args`` (public attributes), and its train sampler (private:
replaced through :func:`teachgym.integrations._trl_private.set_train_sampler`, checked against TRL 1.16.0).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from teachgym.config import ConfigError
from teachgym.integrations._trl_private import set_train_sampler
from teachgym.teacher import Teacher, group_stats, teacher

STATE_FILE = "teachgym_teacher.json"  # in each checkpoint folder: what --resume needs of the teacher

__all__ = ["STATE_FILE", "TeacherCallback", "TeacherSampler", "consecutive_groups", "evaluator", "teach"]


class TeacherSampler:
    """TRL's ``RepeatSampler`` layout, each generation batch drawn lazily from the teacher's current weights.

    Args:
        skills: Each row's skill, in dataset order.
        weights: The initial mixture (``{skill: weight}``); :attr:`weights` may be replaced at any time.
        batch_size: Distinct prompts per generation batch (``generation_batch_size // num_generations``).
        mini_repeat_count: Times each prompt appears in a row (``num_generations``).
        repeat_count: Times each generation batch is repeated (``num_iterations * steps_per_generation``).
        seed: Seeds the draws (the same on every process).
    """

    def __init__(self, skills: Sequence[str], weights: Mapping[str, float], batch_size: int,
                 mini_repeat_count: int = 1, repeat_count: int = 1, seed: int = 0) -> None:
        found: dict[str, list[int]] = {}
        for i, s in enumerate(skills):
            found.setdefault(s, []).append(i)
        self.rows = {s: np.asarray(ix) for s, ix in found.items()}
        self.num_samples = len(skills)
        self.batch_size, self.mini_repeat_count, self.repeat_count = batch_size, mini_repeat_count, repeat_count
        self.weights = dict(weights)
        self.seed = seed
        self.epoch = 0
        self.drawn: dict[str, int] = {s: 0 for s in self.rows}  # prompts drawn per skill (for the logs)

    def __len__(self) -> int:
        return (self.num_samples // self.batch_size) * self.batch_size * self.mini_repeat_count * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        gen = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for _ in range(self.num_samples // self.batch_size):
            chunk = self._draw(gen)  # here, not before the epoch: the weights of this moment decide
            for _ in range(self.repeat_count):
                for index in chunk:
                    yield from (index,) * self.mini_repeat_count

    def _draw(self, gen: np.random.Generator) -> list[int]:
        names = [s for s in self.rows if self.weights.get(s, 0.0) > 0]
        if not names:
            raise ConfigError(f"the teacher gave weight 0 to every skill of the dataset ({sorted(self.rows)})")
        p = np.asarray([self.weights[s] for s in names], dtype=float)
        counts = gen.multinomial(self.batch_size, p / p.sum())
        out: list[int] = []
        for name, c in zip(names, counts, strict=True):  # distinct prompts in a batch, as TRL's permutation gives
            rows = self.rows[name]
            out += gen.choice(rows, size=int(c), replace=int(c) > len(rows)).tolist()
            self.drawn[name] += int(c)
        return [out[i] for i in gen.permutation(len(out))]


def consecutive_groups(skills: Sequence[str], passed: Sequence[float], rewards: Sequence[float],
                       group: int) -> list[tuple[str, Sequence[float], Sequence[float]]]:
    """Completions laid out as TRL lays out a generation batch, ``group`` of one prompt in a row, as groups."""
    if len(skills) % group or not len(skills) == len(passed) == len(rewards):
        raise ValueError(f"{len(skills)} completions do not split into groups of {group}")
    return [(skills[i], passed[i:i + group], rewards[i:i + group]) for i in range(0, len(skills), group)]


class _Watched:
    """The watched reward function: returns its rewards unchanged, and keeps (skill, passed, reward) per call."""

    def __init__(self, func: Callable[..., Any], skill_column: str, threshold: float) -> None:
        self.func, self.skill_column, self.threshold = func, skill_column, threshold
        self.calls: list[tuple[list[str], list[float], list[float]]] = []
        functools.update_wrapper(self, func)

    def record(self, kwargs: Mapping[str, Any], rewards: Sequence[Any]) -> None:
        if self.skill_column not in kwargs:
            raise ConfigError(f"the training rows have no column {self.skill_column!r} (teach(skill_column=...))")
        values = [float("nan") if r is None else float(r) for r in rewards]
        self.calls.append(([str(s) for s in kwargs[self.skill_column]],
                           [float(v > self.threshold) for v in values], values))


def _watch(func: Callable[..., Any], skill_column: str, threshold: float) -> Any:
    """``func`` wrapped by a :class:`_Watched` of the same kind (TRL awaits async reward functions, as
    ``trl.trainer.utils.is_async_callable`` tells them)."""
    from trl.trainer.utils import is_async_callable

    if is_async_callable(func):
        class Async(_Watched):
            async def __call__(self, *args: Any, **kwargs: Any) -> Any:
                out = await self.func(*args, **kwargs)
                self.record(kwargs, out)
                return out

        return Async(func, skill_column, threshold)

    class Sync(_Watched):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            out = self.func(*args, **kwargs)
            self.record(kwargs, out)
            return out

    return Sync(func, skill_column, threshold)


def teach(trainer: Any, policy: str | Teacher | Any, *, skill_column: str = "skill", reward: int | str = 0,
          threshold: float = 0.5, every: int = 1, evaluate: Callable[[Any], Mapping[str, Any]] | None = None,
          seed: int | None = None, **options: Any) -> TeacherCallback:
    """Let a teachgym teacher choose the skill mixture of ``trainer`` (a ``trl.GRPOTrainer`` or ``SFTTrainer``,
    before ``train()``).

    Args:
        trainer: The user's trainer.
        policy: A policy name (built with ``options`` and ``seed``, default ``args.seed``), a policy object, or a
            :class:`~teachgym.teacher.Teacher`.
        skill_column: The training dataset's column that names each row's skill.
        reward: GRPO: the reward function whose rewards decide a completion's pass (index, or function name).
        threshold: GRPO: a completion passes when that reward exceeds it.
        every: Optimizer steps between two teacher updates.
        evaluate: SFT (required there; GRPO: instead of the rewards): ``evaluate(model)`` gives per-skill
            statistics (:meth:`~teachgym.teacher.Teacher.update`'s form); :func:`evaluator` makes one.

    Returns:
        The callback it added (its ``teacher`` and ``sampler`` are the live objects).
    """
    from trl import GRPOTrainer, SFTTrainer

    grpo = isinstance(trainer, GRPOTrainer)
    if not grpo and not isinstance(trainer, SFTTrainer):
        raise ConfigError(f"teach() drives a trl.GRPOTrainer or SFTTrainer, not {type(trainer).__name__}")
    if not grpo and evaluate is None:
        raise ConfigError("an SFTTrainer has no rewards to read: pass evaluate=, a function of the model that gives "
                          "per-skill statistics (teachgym.integrations.trl.evaluator makes one)")
    data = trainer.train_dataset
    if skill_column not in (data.column_names or []):
        raise ConfigError(f"the training dataset has no column {skill_column!r}; its columns: {data.column_names}")
    skills = [str(s) for s in data[skill_column]]
    names = list(dict.fromkeys(skills))
    if isinstance(policy, Teacher):
        found = policy
    else:
        found = teacher(policy, names, seed=trainer.args.seed if seed is None else seed, **options)
    if set(found.skill_names) != set(names):
        raise ConfigError(f"the teacher's skills {found.skill_names} are not the dataset's {names}")
    args, watched, group = trainer.args, None, 1
    if grpo and evaluate is None:
        watched = _watch_reward(trainer, reward, skill_column, threshold)
    if grpo:
        group = trainer.num_generations
        sampler = TeacherSampler(skills, found.weights, args.generation_batch_size // group, group,
                                 trainer.num_iterations * args.steps_per_generation, args.seed)
    else:  # SFT: one row at a time, as TRL's RandomSampler draws them
        sampler = TeacherSampler(skills, found.weights, 1, seed=args.seed)
    set_train_sampler(trainer, sampler)
    callback = TeacherCallback(found, sampler, watched, trainer.accelerator, group, every, evaluate)
    trainer.callback_handler.callbacks.insert(0, callback)  # first: its logs reach MLflow's callback
    return callback


def _watch_reward(trainer: Any, reward: int | str, skill_column: str, threshold: float) -> _Watched:
    """Replace the chosen reward function by a watched one (its rewards unchanged) and return it."""
    funcs = list(trainer.reward_funcs)
    labels = [getattr(f, "__name__", type(f).__name__) for f in funcs]
    index = labels.index(reward) if isinstance(reward, str) and reward in labels else reward
    if not isinstance(index, int) or not 0 <= index < len(funcs):
        raise ConfigError(f"reward={reward!r}: the trainer's reward functions are {labels} (give an index or a name)")
    if not callable(funcs[index]) or hasattr(funcs[index], "config"):
        raise ConfigError(f"reward={reward!r} is a reward model; teach() watches a reward function")
    watched = _watch(funcs[index], skill_column, threshold)
    trainer.reward_funcs[index] = watched
    return watched


def evaluator(rows: Sequence[Mapping[str, Any]], verify: Callable[[Mapping[str, Any], str], bool], tokenizer: Any,
              *, skill_column: str = "skill", max_new_tokens: int = 16,
              batch_size: int = 64) -> Callable[[Any], dict[str, dict[str, float]]]:
    """A per-skill evaluation for ``teach(evaluate=...)``: greedy answers to each row's ``prompt``, generated in
    batches (left-padded), each checked by ``verify(row, answer)``; per skill its ``accuracy`` and ``n``."""
    if not rows or any(skill_column not in r or "prompt" not in r for r in rows):
        raise ConfigError(f"evaluator() needs rows, each with 'prompt' and {skill_column!r}")

    def run(model: Any) -> dict[str, dict[str, float]]:
        import torch

        training, side = model.training, tokenizer.padding_side
        model.eval()
        tokenizer.padding_side = "left"
        right: dict[str, list[float]] = {}
        try:
            for start in range(0, len(rows), batch_size):
                chunk = list(rows[start:start + batch_size])
                enc = tokenizer([r["prompt"] for r in chunk], return_tensors="pt", padding=True).to(model.device)
                with torch.no_grad():
                    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                         pad_token_id=tokenizer.pad_token_id)
                answers = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                for row, answer in zip(chunk, answers, strict=True):
                    right.setdefault(str(row[skill_column]), []).append(float(bool(verify(row, answer))))
        finally:
            tokenizer.padding_side = side
            model.train(training)
        return {s: {"accuracy": sum(v) / len(v), "n": len(v)} for s, v in right.items()}

    return run


def _callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class TeacherCallback(_callback_base()):  # type: ignore[misc]
    """Every ``every`` optimizer steps: the statistics since the last update, into the teacher; its weights, into
    the sampler (process 0 decides, every process gets the same weights) and into the trainer's logs."""

    def __init__(self, teacher: Teacher, sampler: TeacherSampler, watched: _Watched | None, accelerator: Any,
                 group: int, every: int = 1, evaluate: Callable[[Any], Mapping[str, Any]] | None = None) -> None:
        self.teacher, self.sampler, self.watched, self.evaluate = teacher, sampler, watched, evaluate
        self.accelerator, self.group, self.every = accelerator, group, every
        self.updates = 0
        self.last: dict[str, dict[str, float]] = {}

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % self.every or (self.watched is not None and not self.watched.calls):
            return
        from accelerate.utils import broadcast_object_list

        stats = self._evaluated(kwargs["model"]) if self.evaluate is not None else self._rolled_out()
        weights = [None]
        if self.accelerator.is_main_process:
            self.last = {s: dict(v) for s, v in stats.items()}
            weights = [self.teacher.update(self.last)]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(weights, from_process=0)
        self.sampler.weights = dict(weights[0])
        self.updates += 1

    def _evaluated(self, model: Any) -> Mapping[str, Any]:
        """``evaluate(model)`` on process 0 (the others wait for its weights)."""
        return self.evaluate(model) if self.accelerator.is_main_process else {}  # type: ignore[misc]

    def _rolled_out(self) -> dict[str, dict[str, float]]:
        """The watched reward's groups since the last update, from every process, as per-skill statistics."""
        from accelerate.utils import gather_object

        mine, self.watched.calls = self.watched.calls, []  # type: ignore[union-attr]
        everyone = gather_object([mine]) if self.accelerator.num_processes > 1 else [mine]
        skills, passed, rewards = [], [], []
        for call in zip(*everyone, strict=True):  # call j of every process, in rank order: whole groups
            for part in call:
                skills += part[0]
                passed += part[1]
                rewards += part[2]
        return group_stats(consecutive_groups(skills, passed, rewards, self.group))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """The teacher's state (and the sampler's weights and epoch) into the checkpoint folder the trainer wrote."""
        if not self.accelerator.is_main_process:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, STATE_FILE), "w") as f:
            json.dump({"teacher": self.teacher.state_dict(), "weights": self.sampler.weights,
                       "epoch": self.sampler.epoch, "drawn": self.sampler.drawn, "updates": self.updates,
                       "last": self.last}, f)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Resumed from a checkpoint (``train(resume_from_checkpoint=...)``): the teacher goes on from its state
        there. The data loader then skips the batches already trained, drawing them under the restored weights."""
        file = os.path.join(args.output_dir, f"checkpoint-{state.global_step}", STATE_FILE)
        if not state.global_step or not os.path.exists(file):
            return
        with open(file) as f:
            saved = json.load(f)
        self.teacher.load_state_dict(saved["teacher"])
        self.sampler.weights, self.sampler.epoch = dict(saved["weights"]), int(saved["epoch"])
        self.sampler.drawn, self.updates, self.last = dict(saved["drawn"]), int(saved["updates"]), saved["last"]

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if logs is None or not self.updates:
            return
        logs.update({f"teacher/weight/{s}": w for s, w in self.sampler.weights.items()})
        for skill, stats in self.last.items():
            logs.update({f"teacher/{k}/{skill}": float(stats[k]) for k in ("accuracy", "pass_rate", "learnability")
                         if k in stats})
        logs["teacher/updates"] = float(self.updates)
