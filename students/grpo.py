"""An RL student: TRL's ``GRPOTrainer`` with verifiable rewards from the env.

Each round the engine builds the round's rows from the teacher's action as usual; this student keeps
only their prompts (and skill labels), samples ``num_generations`` completions per prompt, scores
every completion with the env's verifier (1 or 0, plus any extra reward functions, weighted) and takes
GRPO steps on the group-relative advantages. Training continues from the current weights each round;
the optimizer state restarts each round, as for the ``hf`` student.

The model is any saved student (see :func:`teachgym.students.hf.resolve_model`): the folder a
``teachgym run`` wrote, a local or hub model, or an MLflow student checkpoint, or the built-in
``tiny`` model; ``configs/arithmetic_grpo.yaml`` starts from a shared SFT warm start
(:mod:`teachgym.warm_start`).

Per skill, the round's rollouts give :class:`~teachgym.types.RolloutStats` (pass rate, learnability,
mean |advantage|, zero-variance groups, completion length), taken from what the trainer itself
computed, in ``TrainReport.rollouts``: the loop logs them as ``rl/<stat>/<skill>`` and shows them to
the next round's teacher as ``Observation.rollouts``.

**Batch layout.** GRPO needs every prompt's ``num_generations`` completions in one generation batch
(the advantages are normalised per group). TRL's sampler repeats each prompt ``num_generations``
times in a row and drops a last generation batch that is not full, so every row mix works — a group
holds one prompt, and its skills are that row's — as long as the round's prompts fill whole
generation batches. So ``examples_per_round`` must be a multiple of ``batch_size / num_generations``
(checked when the student is built: otherwise prompts would be dropped silently and budgets would
differ); a call with any other number of rows (a probing policy's probe) takes smaller steps that
divide it. The layout would break with TRL's ``auto_find_batch_size`` (TRL refuses it), with
``generation_batch_size``/``steps_per_generation`` set in ``grpo_args`` to a size the round does not
fill. With several processes (``accelerate``), ``batch_size`` is per process, a generation batch
holds every process's, and the rollout statistics of all processes are added up at the end of a round.

**The reference model.** With ``beta > 0`` TRL would rebuild the reference model from the model
config's ``_name_or_path`` — the *original* weights, or nothing for the built-in tiny model. Here the
reference is the student as this stage started (the weights it was loaded with), kept in memory and
saved with the round state so that ``--resume`` keeps it.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teachgym.distributed import team
from teachgym.options import options_from
from teachgym.students._rollouts import Group, Rollouts, batch_stats, join, repeat, split_groups, take
from teachgym.students._trl_private import drop_forward_patch, grpo_trainer_class, prepare_reference, release_vllm
from teachgym.students.hf import HFStudent, ModelOptions, _help, _stop_check, load_tensors, save_tensors
from teachgym.types import TrainReport
from teachgym.vllm_eval import require_vllm

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

log = logging.getLogger(__name__)


def _import_reward(path: str) -> Any:
    """A reward function from ``package.module:function``."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"student.rewards: {path!r} is not an import path 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"student.rewards: cannot import {path!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"student.rewards: {path!r} is not callable")
    return fn


def _trainer_class() -> type:
    """``GRPOTrainer`` that records each generation batch's rollouts and, given a :class:`~teachgym.steps.BatchSource`,
    draws each batch's prompts from it (a teacher per step) and filters groups (online difficulty filtering)."""
    class RecordingGRPOTrainer(grpo_trainer_class()):
        rollouts: Rollouts
        reward_record: list[tuple[list[float], list[float]]]
        source: Any = None  # a teachgym.steps.BatchSource, or None: train on the dataset's prompts as they come
        keep: Any = None  # group -> bool: the filter (needs a source to refill), or None
        oversample: float = 1.0
        max_draws: int = 1

        def _scored(self, inputs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Group]]:
            out = self.score_batch(inputs)
            verdicts, rewards = self.reward_record.pop()  # the reward functions ran inside the call above
            self.reward_record.clear()
            lengths = out["completion_mask"].sum(dim=1).tolist()
            groups = split_groups(inputs, verdicts, rewards, out["advantages"].float().tolist(), lengths,
                                   self.rollouts.g)
            self.rollouts.add(groups)
            return out, groups

        def on_generation_batch(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            if self.source is None:
                return self._scored(inputs)[0]
            g = self.rollouts.g
            need = len(inputs) // g
            if self.source.stepping:  # the teacher picks this batch's mixture from the rollouts so far
                inputs = repeat(self.source.batch(need), g)
            if self.keep is None:
                out, groups = self._scored(inputs)
                self.source.observe(batch_stats(groups, g), need, need * g, [x.row for x in groups])
                return out
            return self._filtered(inputs, need)

        def _filtered(self, inputs: list[dict[str, Any]], need: int) -> dict[str, Any]:
            """Generate, drop the groups the filter rejects, refill from the source's mixture, until ``need``
            groups are kept or ``max_draws`` generations ran (then rejected groups fill the batch)."""
            g = self.rollouts.g
            extra = math.ceil(need * self.oversample) - need
            if extra > 0:
                inputs = inputs + repeat(self.source.refill(extra), g)
            kept: list[tuple[dict[str, Any], int, Group]] = []
            spare: list[tuple[dict[str, Any], int, Group]] = []
            generated: list[Group] = []
            for draw in range(1, self.max_draws + 1):
                out, groups = self._scored(inputs)
                generated += groups
                for i, group in enumerate(groups):
                    (kept if self.keep(group) and len(kept) < need else spare).append((out, i, group))
                if len(kept) >= need or draw == self.max_draws:
                    break
                inputs = repeat(self.source.refill(math.ceil((need - len(kept)) * self.oversample)), g)
            dropped = sum(not self.keep(x) for x in generated)
            filled = need - len(kept)
            chosen = kept + spare[:filled]
            self.source.observe(batch_stats(generated, g), len(generated), len(generated) * g,
                                [x[2].row for x in chosen], dropped, filled)
            return join([take(out, i, g) for out, i, _ in chosen], self.pad_token_id)

    return RecordingGRPOTrainer


@dataclass
class GRPOOptions(ModelOptions):
    """The ``grpo`` student's options (its config section, besides ``name``); checked when built."""

    num_generations: int = field(default=8, metadata=_help("Completions sampled per prompt (a GRPO group); >= 2"))
    max_completion_length: int = field(default=16, metadata=_help("Longest completion in tokens"))
    temperature: float = field(default=1.0, metadata=_help("Sampling temperature of the rollouts"))
    beta: float = field(default=0.0, metadata=_help(
        "KL coefficient against the reference model (the student as this stage started); 0: none"))
    loss_type: str = field(default="dapo", metadata=_help(
        "TRL's loss (``dapo``, ``grpo``, ``dr_grpo``, ``bnpo``, ...)"))
    scale_rewards: str = field(default="group", metadata=_help(
        "Advantage scaling: ``group`` (divide by the group's std), ``batch`` or ``none``"))
    learning_rate: float = field(default=1e-4, metadata=_help("Constant learning rate of each round's optimizer"))
    batch_size: int = field(default=64, metadata=_help("Completions per optimizer step; a multiple of num_generations"))
    rewards: dict[str, float] | None = field(default=None, metadata=_help(
        "Extra reward functions, ``{'package.module:function': weight}``, called as TRL calls reward functions "
        "(``prompts``, ``completions``, and the rows' columns such as ``skills``)"))
    verifier_weight: float = field(default=1.0, metadata=_help("Weight of the env's verifier reward (1 right, else 0)"))
    filter_groups: bool = field(default=False, metadata=_help(
        "Online difficulty filtering (DAPO's dynamic sampling; arXiv 2504.03380): drop each group whose rewards are "
        "all equal, or whose pass rate is outside ``filter_band``, before it takes a gradient step, and refill from "
        "the round's (or the per-step teacher's) mixture"))
    filter_band: tuple[float, float] | list[float] = field(default=(0.0, 1.0), metadata=_help(
        "``[low, high]``: the pass rates a kept group may have (inclusive); ``[0, 1]`` drops only groups without "
        "reward variance"))
    filter_oversample: float = field(default=1.0, metadata=_help(
        "Prompts generated per prompt still needed, at each draw (>= 1; 1.5: half again)"))
    filter_max_draws: int = field(default=4, metadata=_help(
        "Generations per batch at most; a batch still short then trains on rejected groups"))
    use_vllm: bool = field(default=False, metadata=_help(
        "Generate with vLLM (``pip install vllm``; a GPU); passed to TRL with ``vllm_mode``"))
    vllm_mode: str = field(default="colocate", metadata=_help(
        "``colocate`` (vLLM in this process) or ``server`` (``trl vllm-serve``)"))
    grpo_args: dict[str, Any] | None = field(default=None, metadata=_help(
        "Extra ``trl.GRPOConfig`` fields, passed through as they are"))

    def __post_init__(self) -> None:
        super().__post_init__()
        g, batch = self.num_generations, self.batch_size
        if g < 2:
            raise ValueError(f"num_generations must be at least 2 (GRPO compares completions), not {g}")
        if batch < g or batch % g:
            raise ValueError(f"batch_size ({batch}) must be a multiple of num_generations ({g})")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"vllm_mode must be colocate or server, not {self.vllm_mode!r}")
        band = tuple(float(x) for x in self.filter_band)
        if len(band) != 2 or not 0 <= band[0] <= band[1] <= 1:
            raise ValueError(
                f"filter_band must be [low, high] with 0 <= low <= high <= 1, not {list(self.filter_band)}")
        if not self.filter_oversample >= 1 or self.filter_max_draws < 1:
            raise ValueError(f"filter_oversample must be >= 1 (got {self.filter_oversample}) and "
                             f"filter_max_draws >= 1 "
                             f"(got {self.filter_max_draws})")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ValueError(f"scale_rewards must be group, batch or none, not {self.scale_rewards!r}")


class GRPOStudent(HFStudent):
    """A causal LM trained by GRPO on the env's verifier (TRL ``GRPOTrainer``), one trainer per round."""

    #: It learns from the rewards of its own samples, not from the rows' completions (see check_student).
    learns_from_rewards = True

    Options = GRPOOptions

    def __init__(self, env: Any = None, options: GRPOOptions | None = None, *, seed: int = 0,
                 examples_per_round: int | None = None, **kwargs: Any) -> None:
        """Load the student and set up GRPO.

        Args:
            env: The env (injected by the loop): its ``verify`` is the reward.
            options: The student's options; or give their fields as keywords (a config's ``student:`` section).
            seed: Seeds the tiny model's weights and each round's trainer.
            examples_per_round: The loop's round size (injected), checked against the batch layout.
        """
        opts = options if options is not None else options_from(GRPOOptions, kwargs, "student grpo")
        if env is None or not callable(getattr(env, "verify", None)):
            raise ValueError("the grpo student needs the env's verifier (env.verify) for its reward")
        # With several processes (accelerate) one generation batch holds every process's batch.
        prompts_per_batch = opts.batch_size * team().size // opts.num_generations
        if examples_per_round is not None and examples_per_round % prompts_per_batch:
            raise ValueError(
                f"loop.examples_per_round ({examples_per_round}) must be a multiple of batch_size x processes / "
                f"num_generations = {prompts_per_batch} prompts, or GRPO drops the prompts of the last, partial batch "
                f"and the round's budget is not what every policy gets; e.g. loop.examples_per_round="
                f"{max(prompts_per_batch, examples_per_round // prompts_per_batch * prompts_per_batch)}"
            )
        if opts.use_vllm:  # refused before round 0 without vLLM and a GPU, with the install hint
            require_vllm("student.use_vllm")
        self._load(opts, seed)
        self.options = opts
        self.env = env
        self.num_generations = opts.num_generations
        self.extra_rewards = [(_import_reward(path), float(w), path) for path, w in (opts.rewards or {}).items()]
        self.verifier_weight = float(opts.verifier_weight)
        self.beta = float(opts.beta)
        #: Filtering needs refills, so the loop trains this student through train_batches (teachgym.steps).
        self.filters_groups = bool(opts.filter_groups)
        self.filter_band = tuple(float(x) for x in opts.filter_band)
        self.filter_oversample, self.filter_max_draws = float(opts.filter_oversample), int(opts.filter_max_draws)
        self.train_args = {
            "num_generations": opts.num_generations,
            "max_completion_length": opts.max_completion_length,
            "temperature": opts.temperature,
            "loss_type": opts.loss_type,
            "scale_rewards": opts.scale_rewards,
            "learning_rate": opts.learning_rate,
            "per_device_train_batch_size": opts.batch_size,
            "use_vllm": opts.use_vllm,
            **({"vllm_mode": opts.vllm_mode} if opts.use_vllm else {}),
            **(opts.grpo_args or {}),
        }
        self.reference = None
        if self.beta > 0:  # the reference: this stage's starting weights (see the module docstring)
            self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)

    # -- rewards --------------------------------------------------------------------------------
    def _reward_functions(self, record: list[tuple[list[float], list[float]]]) -> tuple[list[Any], list[float]]:
        """The verifier and the extra reward functions; together they record (verdicts, total rewards)."""
        verify = self.env.verify
        extras = self.extra_rewards
        pending: dict[str, Any] = {}

        def verifier(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
            verdicts = [1.0 if verify(p, c) else 0.0 for p, c in zip(prompts, completions)]
            pending["verdicts"] = verdicts
            pending["total"] = [self.verifier_weight * v for v in verdicts]
            pending["left"] = len(extras)
            if not extras:
                record.append((verdicts, pending["total"]))
            return verdicts

        def wrap(fn: Any, weight: float, path: str) -> Any:
            def extra(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
                values = fn(prompts=prompts, completions=completions, **kwargs)
                if len(values) != len(prompts):
                    raise ValueError(f"reward function {path!r} returned {len(values)} rewards for {len(prompts)}")
                pending["total"] = [t + weight * (0.0 if x is None else float(x))
                                    for t, x in zip(pending["total"], values)]
                pending["left"] -= 1
                if pending["left"] == 0:
                    record.append((pending["verdicts"], pending["total"]))
                return values

            extra.__name__ = path.rpartition(":")[2]
            return extra

        funcs = [verifier] + [wrap(fn, w, path) for fn, w, path in extras]
        return funcs, [self.verifier_weight] + [w for _, w, _ in extras]

    # -- training -------------------------------------------------------------------------------
    def train(self, dataset: Dataset) -> TrainReport:
        """One round of GRPO on the prompts of ``dataset``, continuing from the current weights."""
        return self._train(dataset, None)

    def train_batches(self, dataset: Dataset, source: Any) -> TrainReport:
        """One round of GRPO of ``len(dataset)`` prompts, each generation batch drawn from ``source`` (a
        :class:`teachgym.steps.BatchSource`) when a teacher steps, and filtered when ``filter_groups`` is on."""
        return self._train(dataset, source)

    def _keep(self, group: Group) -> bool:
        """The filter: a group with reward variance and a pass rate inside the band."""
        low, high = self.filter_band
        return not group.zero_variance and low <= group.pass_rate <= high

    def _train(self, dataset: Dataset, source: Any) -> TrainReport:
        from transformers.trainer_callback import PrinterCallback
        from trl import GRPOConfig

        data = dataset.select_columns(["prompt"] + (["skills"] if "skills" in dataset.column_names else []))
        record: list[tuple[list[float], list[float]]] = []
        funcs, weights = self._reward_functions(record)
        batch = self.train_args["per_device_train_batch_size"]
        processes = team().size
        per_batch = batch * processes // self.num_generations
        if len(data) % per_batch and processes > 1:
            raise ValueError(f"grpo: {len(data)} prompts do not fill whole generation batches of {per_batch} prompts "
                             f"({processes} processes); with several processes every call must")
        if len(data) % per_batch:
            # TRL would drop the prompts of a last, partial batch. A round of the loop never has one (checked at
            # construction); a policy's probe or a direct call may: take smaller steps that divide the rows.
            per_batch = math.gcd(len(data), per_batch)
            log.info("grpo: %d prompts are not a multiple of %d; this call takes steps of %d prompts",
                     len(data), batch // self.num_generations, per_batch)
            batch = per_batch * self.num_generations
        steps = len(data) * self.num_generations // batch
        with tempfile.TemporaryDirectory(prefix="teachgym-grpo-") as out:
            args = GRPOConfig(
                **self._trainer_args(out, steps),
                num_train_epochs=1,
                lr_scheduler_type="constant",
                reward_weights=weights,
                # beta 0 here: the reference model is set below, so TRL never reloads one by name
                **{**self.train_args, "per_device_train_batch_size": batch, "beta": 0.0},
            )
            trainer = _trainer_class()(model=self.model, args=args, train_dataset=data, reward_funcs=funcs,
                                       processing_class=self.tokenizer)
            trainer.rollouts = Rollouts(self.num_generations)
            trainer.reward_record = record
            if source is not None:
                trainer.source = source
                source.steps_total = len(data) * self.num_generations // args.generation_batch_size
                if self.filters_groups:
                    trainer.keep, trainer.oversample = self._keep, self.filter_oversample
                    trainer.max_draws = self.filter_max_draws
            if self.reference is not None:
                prepare_reference(trainer, self.reference.to(self.model.device), self.beta, args.cast_lm_head_to_fp32)
            trainer.remove_callback(PrinterCallback)
            trainer.add_callback(_stop_check())
            start = time.perf_counter()
            try:
                result = trainer.train()
            finally:
                release_vllm(trainer)  # the next round builds a new trainer, which connects again
            runtime = time.perf_counter() - start
        self.model = trainer.model
        drop_forward_patch(self.model)  # the trainer's fused-LM-head patch, which would stack round after round
        if self.reference is not None:
            drop_forward_patch(self.reference)
        self.rounds_trained += 1
        rollouts = trainer.rollouts
        rollouts.merge(team().gather(rollouts.part()))  # each process saw only the groups it generated
        metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
        metrics.update({"rl/prompts": float(rollouts.prompts), "rl/completions": float(rollouts.completions),
                        "rl/zero_variance_share": rollouts.zero_variance / max(1, rollouts.prompts)})
        if source is not None:  # prompts generated (above) and trained on differ when groups were filtered
            metrics["rl/trained_prompts"] = float(len(source.trained))
        loss = float(result.training_loss)
        return TrainReport(
            steps=int(result.global_step),
            train_loss=loss if math.isfinite(loss) else float("nan"),
            runtime_s=runtime,
            metrics=metrics,
            rollouts=rollouts.stats(),
        )

    # -- persistence ----------------------------------------------------------------------------
    def save_state(self, path: str) -> None:
        """As the ``hf`` student, plus the reference model when ``beta > 0``."""
        super().save_state(path)
        if self.reference is not None:
            # with LoRA, the reference's adapters (its base is the student's)
            save_tensors(self.reference, os.path.join(path, "reference.safetensors"), self._state_names())

    def load_state(self, path: str) -> None:
        """Restore what :meth:`save_state` wrote."""
        super().load_state(path)
        if self.reference is not None:
            load_tensors(self.reference, os.path.join(path, "reference.safetensors"), str(self.device))
