"""env.name=verifiers: a ``verifiers`` taskset as a teachgym env, scored by the taskset's own rewards.

`verifiers <https://github.com/PrimeIntellect-ai/verifiers>`_ 0.4.0 (``import verifiers.v1 as vf``) splits an
environment into a *taskset* (the data: ``load()`` yields typed ``Task`` s) and a harness (how an agent
solves them). teachgym reads the data half of any single-turn taskset::

    env:
      name: verifiers
      taskset: my_arithmetic          # an installed taskset package (its id, as vf.load_taskset takes it)
      taskset_args: {n: 600}          # fields of the taskset's own config class
      skill_field: skill              # the TaskData field that names each task's skill (or a list of skills)
      level_field: digits             # optional: an integer difficulty, the skill's levels
      answer_field: answer            # the reference answer: the completion an SFT student learns

**Rows.** Each task is a row: its prompt (``TaskData.prompt_text``, after its system prompt when it has one),
its reference answer, its skill(s) and level. As with ``env.name=dataset``, ``eval_per_skill`` rows per skill
are held out with ``seed`` and every other row whose prompt is not an eval prompt is the pool a teacher
reweights; the env has no generator (``Synthesize`` needs the LLM data engine).

**Verifying.** An output is scored the way verifiers scores a rollout: a trace of the task's prompt and the
output as the agent's reply, then the task's ``@vf.reward`` methods (and any rewards or judges its config
plugs in) through ``Task.score``; the output is right when the weighted reward reaches ``threshold``. Rewards
are async in verifiers, so :meth:`VerifiersEnv.rewards` scores a whole batch concurrently (at most
``max_concurrency`` at a time) on one event loop the env keeps in a thread of its own (it works from any
thread, inside a running loop too); ``verify`` is that for one item. A reward that raises on some output scores
that output 0 (counted in ``scoring_errors``, with one warning); one that raises on a reference answer, or a
reference answer below ``threshold`` (a wrong ``answer_field``, say), is an error before round 0.

**Offline.** The tasks are loaded once, when the env is built; nothing is downloaded by teachgym (a taskset
that downloads its data does so in its own ``load()``). A taskset whose ``load()`` never ends needs ``limit``.

``pip install 'teachgym[verifiers]'`` (verifiers 0.4.0; its API is still moving, so teachgym pins it).
"""

from __future__ import annotations

import asyncio
import difflib
import pkgutil
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from teachgym.envs._dataset_rows import DatasetEnvError
from teachgym.envs._verifiers_private import state_class
from teachgym.envs.dataset import DatasetEnv

INSTALL_HINT = "env.name=verifiers needs the verifiers package: pip install 'teachgym[verifiers]'"


#: The rows' columns, as the dataset env's split reads them.
_ROWS = pa.schema([("prompt", pa.string()), ("completion", pa.string()), ("skills", pa.list_(pa.string())),
                   ("level", pa.int64())])


class VerifiersEnvError(DatasetEnvError):
    """The taskset or the env's options cannot make an env (the message names the option)."""


def _vf() -> Any:
    try:
        import verifiers.v1 as vf
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return vf


def _known_ids() -> list[str]:
    """Taskset ids a typo may have meant: verifiers' bundled tasksets and the importable top-level modules."""
    from verifiers.v1 import tasksets

    return sorted({m.name for m in pkgutil.iter_modules(tasksets.__path__)} |
                  {m.name for m in pkgutil.iter_modules()})


def load_tasks(taskset: str, taskset_args: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
    """The tasks of a verifiers taskset, by id (``vf.load_taskset``), with its config built from ``taskset_args``.

    Raises:
        VerifiersEnvError: An unknown id (with the near ones), a module that exports no taskset, config fields
            the taskset's config class refuses, a taskset that never ends without ``limit``, or a ``load()``
            that raises.
    """
    vf = _vf()
    from pydantic import ValidationError

    try:
        config_type = vf.taskset_config_type(taskset)
    except ModuleNotFoundError:
        near = difflib.get_close_matches(taskset.replace("-", "_"), _known_ids(), n=3, cutoff=0.7)
        hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
        raise VerifiersEnvError(f"env.taskset: no verifiers taskset {taskset!r} is installed{hint} (an id is "
                                f"the name of an importable package that exports its Taskset in __all__)") from None
    except (AttributeError, TypeError, ValueError) as e:
        raise VerifiersEnvError(f"env.taskset: {taskset!r} is not a verifiers taskset: {e}") from None
    try:
        config = config_type.model_validate({**dict(taskset_args or {}), "id": taskset})
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise VerifiersEnvError(f"env.taskset_args.{where}: {first['msg']} ({config_type.__name__} of "
                                f"{taskset!r}; fields: {', '.join(config_type.model_fields)})") from None
    loaded = vf.load_taskset(config)
    if limit is not None:
        if limit < 1:
            raise VerifiersEnvError(f"env.limit must be >= 1, not {limit}")
        loaded = loaded.take(limit)
    elif not loaded.bounded:
        raise VerifiersEnvError(f"env.limit: taskset {taskset!r} never ends (INFINITE); say how many tasks to "
                                f"take, e.g. env.limit=2000")
    try:
        tasks = list(loaded)
    except Exception as e:  # the taskset's own code: say whose, without a traceback of ours
        raise VerifiersEnvError(f"env.taskset: {taskset!r} failed to load its tasks: {type(e).__name__}: {e}") from e
    if not tasks:
        raise VerifiersEnvError(f"env.taskset: {taskset!r} loaded no tasks")
    return tasks


def _field(task: Any, name: str, option: str) -> Any:
    """A TaskData field (declared or extra) of one task; a missing one names the option and the fields there."""
    data = task.data
    fields = list(type(data).model_fields) + list(data.model_extra or {})
    if name not in fields:
        near = difflib.get_close_matches(name, fields, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise VerifiersEnvError(f"env.{option}: the tasks ({type(data).__name__}) have no field {name!r}{hint} "
                                f"(fields: {', '.join(fields)})")
    return getattr(data, name)


def _prompt(task: Any) -> str:
    data = task.data
    return f"{data.system_prompt}\n\n{data.prompt_text}" if data.system_prompt else data.prompt_text


class _Loop:
    """One asyncio event loop in a daemon thread, started on first use: ``run`` waits for a coroutine from any
    thread (also from inside another running loop, where ``asyncio.run`` would refuse)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coro: Any) -> Any:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="teachgym-verifiers", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


class VerifiersEnv(DatasetEnv):
    """A verifiers taskset's tasks as rows, scored by the tasks' rewards (see the module docstring)."""

    supports_generation = False
    #: Scoring needs the task (its data and reward methods): the env cannot check a prompt it did not load.
    verifies_new_prompts = False

    def __init__(
        self,
        taskset: str,
        taskset_args: Mapping[str, Any] | None = None,
        skill_field: str = "skill",
        level_field: str | None = None,
        answer_field: str = "answer",
        threshold: float = 1.0,
        limit: int | None = None,
        max_concurrency: int = 64,
        eval_per_skill: int = 50,
        min_pool_per_skill: int = 1,
        seed: int = 1234,
        skills: Sequence[str] | None = None,
        descriptions: Mapping[str, str] | None = None,
        prerequisites: Mapping[str, Sequence[str]] | None = None,
        name: str | None = None,
    ) -> None:
        """Load the tasks, split them, and score one reference answer per skill.

        Args:
            taskset: The taskset's id: an installed package exporting a ``vf.Taskset`` in ``__all__`` (or one of
                verifiers' bundled tasksets).
            taskset_args: Fields of the taskset's config class (``vf.taskset_config_type(taskset)``).
            skill_field: The TaskData field with each task's skill: one label or a list of labels.
            level_field: An optional TaskData field of integer difficulties (easiest first): the skills' levels.
            answer_field: The TaskData field with the reference answer (the gold completion).
            threshold: Least weighted reward (``trace.reward``) that counts as right.
            limit: Take only the first ``limit`` tasks (required for a taskset that never ends).
            max_concurrency: Most scorings in flight at once.
            eval_per_skill: Tasks held out per skill for evaluation.
            min_pool_per_skill: Tasks each skill must keep in the pool after the eval split.
            seed: Seeds the eval split.
            skills: Use only these skills.
            descriptions: ``{skill: one-line description}`` shown to teachers and the LLM engine.
            prerequisites: ``{skill: [prerequisite, ...]}`` (the skill graph, if you know it).
            name: The env's name in MLflow (default ``verifiers:<taskset>``).

        Raises:
            VerifiersEnvError: Anything the taskset or the options get wrong, named (see :func:`load_tasks`).
        """
        if max_concurrency < 1:
            raise VerifiersEnvError(f"env.max_concurrency must be >= 1, not {max_concurrency}")
        tasks = load_tasks(taskset, taskset_args, limit)
        self.taskset, self.threshold, self.max_concurrency = taskset, float(threshold), int(max_concurrency)
        self.name = name or f"verifiers:{taskset}"
        self.path = taskset
        self.scoring_errors = 0
        self._runner = _Loop()
        self._tasks: dict[str, list[Any]] = {}
        for task in tasks:
            self._tasks.setdefault(_prompt(task), []).append(task)
        table = self._table(tasks, skill_field, level_field, answer_field)
        self._load(table, ("prompt", "completion", "skills", "level" if level_field else None), None, skills,
                   eval_per_skill, min_pool_per_skill, seed, descriptions, prerequisites, f"verifiers:{taskset}")
        self._check_references(answer_field)

    @staticmethod
    def _table(tasks: list[Any], skill_field: str, level_field: str | None, answer_field: str) -> pa.Table:
        """The rows (``prompt``, ``completion``, ``skills``, ``level``), one per task, with every field checked."""
        rows = []
        for task in tasks:
            skill = _field(task, skill_field, "skill_field")
            labels = [skill] if isinstance(skill, str) else list(skill) if isinstance(skill, (list, tuple)) else []
            if not labels or not all(isinstance(s, str) and s for s in labels):
                raise VerifiersEnvError(f"env.skill_field: task {task.data.idx} has {skill_field}={skill!r}; it "
                                        f"must be a skill name or a list of them")
            answer = _field(task, answer_field, "answer_field")
            level = _field(task, level_field, "level_field") if level_field else 1
            if isinstance(level, bool) or not isinstance(level, int):
                raise VerifiersEnvError(f"env.level_field: task {task.data.idx} has {level_field}={level!r}; "
                                        f"levels must be integers (easiest first)")
            if not task.data.prompt_text or answer is None or str(answer) == "":
                raise VerifiersEnvError(f"task {task.data.idx}: empty prompt or {answer_field!r}")
            rows.append({"prompt": _prompt(task), "completion": str(answer), "skills": labels, "level": level})
        return pa.Table.from_pylist(rows, schema=_ROWS)

    def _check_references(self, answer_field: str) -> None:
        """Score the first eval task of each skill with its reference answer, before round 0: a reward that
        raises, or a reference below ``threshold``, would otherwise show only as a student that never learns."""
        rows = self.eval_set()
        first: dict[str, tuple[str, str]] = {}
        for p, c, sk in zip(rows["prompt"], rows["completion"], rows["skills"]):
            first.setdefault(sk[0], (p, c))
        prompts, golds = zip(*first.values())
        scores = self._runner.run(self._score_all(prompts, golds, strict=True))
        for (skill, (prompt, gold)), score in zip(first.items(), scores):
            if score < self.threshold:
                raise VerifiersEnvError(
                    f"env.answer_field: the reference answer {gold!r} ({answer_field!r}) of a {skill!r} task "
                    f"({prompt[:60]!r}) has reward {score:g} < env.threshold={self.threshold:g}: the verifier "
                    f"would mark the rows the student learns from wrong (check answer_field and threshold)")

    # -- scoring ----------------------------------------------------------------------------------
    def _trace(self, task: Any, output: str) -> Any:
        vf = _vf()
        trace = vf.Trace(task=vf.TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
                         state=state_class(type(task))(),
                         agent=vf.AgentInfo(config=vf.AgentConfig(), name="teachgym", trainable=False))
        # The conversation a single-turn rollout leaves: [system], user prompt, the reply (sampled: the agent's).
        system = [vf.SystemMessage(content=task.data.system_prompt)] if task.data.system_prompt else []
        messages = [*system, vf.UserMessage(content=task.data.prompt_text), vf.AssistantMessage(content=output)]
        trace.nodes = [vf.MessageNode(parent=i - 1 if i else None, message=m, sampled=i == len(messages) - 1)
                       for i, m in enumerate(messages)]
        return trace

    async def _score_all(self, prompts: Sequence[str], outputs: Sequence[str], strict: bool = False) -> list[float]:
        """The weighted reward of each output (the best over the tasks sharing its prompt; 0 for a prompt the env
        did not load), all scored concurrently; ``strict`` re-raises a reward's error instead of scoring 0."""
        vf = _vf()
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(task: Any, output: str) -> float:
            trace = self._trace(task, output)
            async with limit:
                try:
                    await asyncio.wait_for(task.score(trace), task.data.timeout.scoring)
                except (vf.TaskError, asyncio.TimeoutError) as e:
                    if strict:
                        raise VerifiersEnvError(f"env.taskset: scoring a reference answer of {self.taskset!r}: "
                                                f"{type(e).__name__}: {e}") from None
                    self._scoring_error(e)
                    return 0.0
            return float(trace.reward)

        # One flat gather (an asyncio task per scoring, none per prompt), then each prompt's best, in order.
        loaded = [self._tasks.get(p, ()) for p in prompts]
        scores = iter(await asyncio.gather(*(one(t, o) for ts, o in zip(loaded, outputs) for t in ts)))
        return [max((next(scores) for _ in ts), default=0.0) for ts in loaded]

    def _scoring_error(self, error: BaseException) -> None:
        self.scoring_errors += 1
        if self.scoring_errors == 1:
            warnings.warn(f"{self.name}: a reward raised while scoring an output, which scores 0 (counted in "
                          f"env.scoring_errors; only this first one is shown): {type(error).__name__}: {error}",
                          stacklevel=2)

    def rewards(self, prompts: Sequence[str], outputs: Sequence[str]) -> list[float]:
        """The weighted reward of every output, the batch scored concurrently (usable as a TRL reward function's
        body: one call per batch)."""
        if len(prompts) != len(outputs):
            raise ValueError(f"{len(prompts)} prompts but {len(outputs)} outputs")
        return self._runner.run(self._score_all(list(prompts), list(outputs)))

    def verify_batch(self, prompts: Sequence[str], outputs: Sequence[str]) -> list[bool]:
        """Whether each output's reward reaches ``threshold``, the batch scored concurrently."""
        return [r >= self.threshold for r in self.rewards(prompts, outputs)]

    def verify(self, prompt: str, output: str) -> bool:
        """Whether ``output``'s reward reaches ``threshold`` (``False`` for a prompt the env did not load)."""
        return self.verify_batch([prompt], [output])[0]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_runner"] = None  # a thread and its loop do not pickle; the copy starts its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._runner = _Loop()
