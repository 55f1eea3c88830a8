"""reasoning-gym: procedurally generated, verifiable reasoning tasks with difficulty levels.

`reasoning-gym <https://github.com/open-thought/reasoning-gym>`_ has about 100 tasks (arithmetic, algebra,
algorithms, logic, games, graphs), each a seeded generator, a scorer (``score_answer``) and, for most, a
curriculum: attributes (number of terms, digits, word length, ...) with a list of values per difficulty
level. In the config::

    env:
      name: reasoning-gym
      tasks: [basic_arithmetic, spell_backward]   # the package's task names (reasoning_gym.factory.DATASETS)
      levels: [0, 1]                              # curriculum levels, for every task; or {task: [levels]}
      config: {basic_arithmetic: {whitespace: single}}  # fixed fields of a task's config (optional)

**Skills.** Each skill is ``task:level`` (``basic_arithmetic:0``; MLflow refuses ``@`` in a metric name),
with ``task:k`` a prerequisite of ``task:k+1``, so the skill-list state shows a teacher every level of
every task. With
``levels_as: sub-skills`` each task is one skill whose levels are its curriculum levels: the
skill-tree state then groups the levels under their task, and ``Synthesize`` requests name a task and
a level.

**Levels.** Level ``k`` sets every curriculum attribute to its ``k``-th value (an attribute with fewer
levels stays at its last), with the package's ``upper_bound`` range mode: a range attribute at level
``k`` is its ``k``-th value alone (or the interval from the ``k``-th to the next value, for attributes
the package marks ``ensure_interval``), so levels do not overlap the way the package's default
``inclusive`` mode makes them. A task without a curriculum has one level, 0, with its default config.

**Rows and seeds.** reasoning-gym makes item ``i`` of a dataset from ``Random(seed + i)``. Each task and
level has two datasets: the eval items come from seeds ``seed + i`` with ``i < 2**16``; the pool and the
generator from a second dataset whose seeds start at ``seed + 2**16`` (``2**20`` items). So no training
row comes from an eval item's random stream, and on top of that no row whose question equals an eval
question is ever returned (a small item space repeats questions across seeds).

**Verifying.** An output's answer is the text inside its last ``<answer>...</answer>`` (reasoning-gym's
own format for LLM outputs), or the whole output when it has none, stripped of whitespace. It is right
when the task's ``score_answer`` gives it at least ``threshold`` (default 1.0, full marks); with
``checker: math`` (for every task, or ``{task: math}``) an answer that ``math-verify`` finds equal to the
gold answer is right as well. A malformed answer scores 0; it never raises. Scoring needs the item's
metadata, which only its generator has, so the env keeps every question it generated (eval, pool,
generator) with its item and cannot check a question it did not write (``verifies_new_prompts`` is
false: the LLM data engine checks such rows by self-consistency).

**Offline.** The package ships its data files (word lists, puzzles); the env generates every eval item
when it is built, so a task that needs something that is not there fails before round 0, naming the
task and level; so does a task whose scorer rejects its own reference answers, or whose generator makes
a different question from the same seed (the eval set would change from run to run).

``pip install 'teachgym[reasoning-gym]'``.
"""

from __future__ import annotations

import dataclasses
import difflib
import random
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from teachgym.envs._content import ContentOverlapWarning, owners, taken_elsewhere
from teachgym.envs._math import _require, math_equal
from teachgym.envs._reasoning_parts import ReasoningGymError, _curriculum_fields, _level_count, _Source
from teachgym.types import Skill

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

INSTALL_HINT = "env.name=reasoning-gym needs the reasoning-gym package: pip install 'teachgym[reasoning-gym]'"

#: Items of the eval dataset (seeds ``seed + i``, ``i < EVAL_SPAN``); the training dataset's seeds follow them.
EVAL_SPAN = 2**16
#: Items of the training dataset (some tasks size lists by it, and numpy seeds must stay below 2**32).
TRAIN_SPAN = 2**20
#: Tasks that build all ``size`` items when constructed (acre: ~5 ms each) get smaller datasets: (eval, train).
#: word_ladder refuses a size above 20,000.
_SPANS = {"acre": (2**10, 2**14), "word_ladder": (2**10, 2**14)}
LEVELS_AS = ("skills", "sub-skills")
CHECKERS = ("score", "math")
_ANSWER = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)


def _package() -> Any:
    try:
        import reasoning_gym.factory as factory
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return factory


def task_names() -> list[str]:
    """Every task reasoning-gym registers, sorted."""
    return sorted(_package().DATASETS)


def extract_answer(output: str) -> str:
    """The answer in an output: inside its last ``<answer>...</answer>``, else the whole output; stripped."""
    found = _ANSWER.findall(output)
    return (found[-1] if found else output).strip()


class ReasoningGymEnv:
    """reasoning-gym tasks as skills ``task:level`` (see the module docstring)."""

    name = "reasoning-gym"
    supports_generation = True
    #: Scoring needs the item's metadata, which only the env's own generator has.
    verifies_new_prompts = False

    def __init__(
        self,
        tasks: Sequence[str],
        levels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        levels_as: str = "skills",
        threshold: float = 1.0,
        checker: str | Mapping[str, str] = "score",
        eval_per_skill: int = 50,
        pool_per_skill: int = 500,
        seed: int = 0,
    ) -> None:
        """Build the env and generate its eval set (every task and level is exercised here).

        Args:
            tasks: reasoning-gym task names (``reasoning_gym.factory.DATASETS``).
            levels: Curriculum levels (0 is the easiest) for every task, or ``{task: [levels]}``; a task
                left out gets all of its curriculum's levels. Default: every level of every task.
            config: ``{task: {field: value}}``: fixed fields of a task's config (its dataclass fields)
                that the curriculum does not set.
            levels_as: ``skills`` — one skill per ``task:level``; ``sub-skills`` — one skill per task,
                whose levels are the skill-tree's sub-skills.
            threshold: Least ``score_answer`` that counts as right, in (0, 1].
            checker: ``score`` (the task's ``score_answer``) or ``math`` (also right when math-verify
                finds the answer equal to the gold); one for every task or ``{task: checker}``.
            eval_per_skill: Held-out eval items per skill (per task and level).
            pool_per_skill: Rows per skill in the pool a teacher reweights (0: generator only).
            seed: Base seed of every item (``Random(seed + i)``, as the package does), in [0, 2**31).
        """
        factory = _package()
        tasks = list(dict.fromkeys(tasks))
        if not tasks:
            raise ReasoningGymError("env.tasks is empty: name at least one reasoning-gym task")
        known = sorted(factory.DATASETS)
        for t in tasks:
            if t not in factory.DATASETS:
                near = difflib.get_close_matches(t, known, n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
                raise ReasoningGymError(f"env.tasks: unknown reasoning-gym task {t!r}{hint} ({len(known)} "
                                        f"tasks: sorted(reasoning_gym.factory.DATASETS))")
        if levels_as not in LEVELS_AS:
            raise ReasoningGymError(f"env.levels_as must be one of {list(LEVELS_AS)}, not {levels_as!r}")
        if not 0 < threshold <= 1:
            raise ReasoningGymError(f"env.threshold must be in (0, 1], not {threshold}")
        if not 0 <= seed < 2**31:
            raise ReasoningGymError(f"env.seed must be in [0, 2**31), not {seed}")
        if eval_per_skill < 1 or pool_per_skill < 0:
            raise ReasoningGymError("env.eval_per_skill must be >= 1 and env.pool_per_skill >= 0")
        config = dict(config or {})
        for key, given in (("config", config), ("levels", levels if isinstance(levels, Mapping) else {})):
            extra = sorted(set(given) - set(tasks))
            if extra:
                raise ReasoningGymError(f"env.{key} names tasks that are not in env.tasks: {extra}")
        self.tasks = tuple(tasks)
        self.levels_as = levels_as
        self.threshold = float(threshold)
        self.eval_per_skill, self.pool_per_skill, self.seed = int(eval_per_skill), int(pool_per_skill), int(seed)
        self._checkers = self._resolve_checkers(checker)
        self._sources: dict[tuple[str, int], _Source] = {}
        for t in tasks:
            for lv in self._levels_of(factory, t, levels):
                self._sources[(t, lv)] = self._source(factory, t, lv, dict(config.get(t) or {}))
        self.skills: tuple[Skill, ...] = self._make_skills()
        # question -> (task, the dataset that made it, its item), for score_answer: every row the env returns.
        self._items: dict[str, tuple[str, Any, dict[str, Any]]] = {}
        self.eval_dropped: dict[str, dict[str, int]] = {}  # skill -> {skill whose training has it: eval items}
        self._eval_rows = self._draw_eval()
        self._eval_prompts = frozenset(r["prompt"] for r in self._eval_rows)
        self._eval_content = owners(self._eval_rows)  # no training row of another skill may have it
        self._eval: Dataset | None = None
        self._pool: Dataset | None = None

    # -- construction ---------------------------------------------------------------------------
    def _resolve_checkers(self, checker: str | Mapping[str, str]) -> dict[str, str]:
        per_task = dict(checker) if isinstance(checker, Mapping) else {t: checker for t in self.tasks}
        extra = sorted(set(per_task) - set(self.tasks))
        if extra:
            raise ReasoningGymError(f"env.checker names tasks that are not in env.tasks: {extra}")
        for t, c in per_task.items():
            if c not in CHECKERS:
                raise ReasoningGymError(f"env.checker for {t!r} must be one of {list(CHECKERS)}, not {c!r}")
        if "math" in per_task.values():
            try:
                _require()
            except ImportError as e:
                raise ReasoningGymError(f"env.checker: {e}") from None
        return {t: per_task.get(t, "score") for t in self.tasks}

    @staticmethod
    def _levels_of(factory: Any, task: str, levels: Any) -> list[int]:
        n = _level_count(factory, task)
        wanted = levels.get(task) if isinstance(levels, Mapping) else levels
        if wanted is None:
            return list(range(n))
        out = sorted(set(int(x) for x in wanted))
        bad = [x for x in out if not 0 <= x < n]
        if bad or not out:
            valid = "0 only (it has no curriculum)" if n == 1 and task not in factory.CURRICULA else f"0-{n - 1}"
            raise ReasoningGymError(f"env.levels: task {task!r} has levels {valid}, not {bad or '[]'}")
        return out

    def _source(self, factory: Any, task: str, level: int, fixed: dict[str, Any]) -> _Source:
        dataset_cls, config_cls = factory.DATASETS[task]
        fields = {f.name for f in dataclasses.fields(config_cls)} - {"seed", "size"}
        unknown = sorted(set(fixed) - fields)
        if unknown:
            near = {u: difflib.get_close_matches(u, sorted(fields), n=1) for u in unknown}
            hints = ", ".join(f"{u!r}" + (f" (did you mean {near[u][0]!r}?)" if near[u] else "") for u in unknown)
            raise ReasoningGymError(f"env.config.{task}: unknown fields {hints}; fields: {sorted(fields)}")
        n_eval, n_train = _SPANS.get(task, (EVAL_SPAN, TRAIN_SPAN))
        splits = {"eval": {**fixed, "seed": self.seed, "size": n_eval},
                  "train": {**fixed, "seed": self.seed + n_eval, "size": n_train}}
        datasets: dict[str, Any] = {}
        try:
            if task in factory.CURRICULA:
                from reasoning_gym.coaching.base_curriculum import DefaultCurriculumContext, RangeAttributeMode

                curriculum = factory.create_curriculum(task)
                set_by_level = _curriculum_fields(curriculum)
                clash = sorted(set(fixed) & set_by_level)
                if clash:
                    raise ReasoningGymError(f"env.config.{task}: {clash} are set by the curriculum level; "
                                            f"leave them out (or choose another level)")
                curriculum.set_global_level(level)
                context = DefaultCurriculumContext(mode=RangeAttributeMode.UPPER_BOUND)
                cfgs = {k: curriculum.generate_configuration(defaults=v, context=context) for k, v in splits.items()}
                summary = ", ".join(f"{f}={getattr(cfgs['eval'], f)}" for f in sorted(set_by_level))
            else:
                cfgs = {k: config_cls(**v) for k, v in splits.items()}
                summary = "default config"
            for k, cfg in cfgs.items():
                if hasattr(cfg, "validate"):
                    cfg.validate()
                datasets[k] = dataset_cls(config=cfg)
        except ReasoningGymError:
            raise
        except Exception as e:  # noqa: BLE001 - the package rejects the config: say which task and level
            raise ReasoningGymError(
                f"reasoning-gym task {task!r} level {level}: cannot build its dataset: {type(e).__name__}: {e}"
            ) from e
        return _Source(task, level, datasets["eval"], datasets["train"], summary)

    def _make_skills(self) -> tuple[Skill, ...]:
        skills = []
        for t in self.tasks:
            lvls = [lv for (task, lv) in self._sources if task == t]
            if self.levels_as == "sub-skills":
                desc = f"reasoning-gym {t}; levels: " + "; ".join(
                    f"{lv}: {self._sources[(t, lv)].summary}" for lv in lvls)
                skills.append(Skill(t, desc, (), tuple(lvls)))
                continue
            for i, lv in enumerate(lvls):
                prereq = (f"{t}:{lvls[i - 1]}",) if i else ()
                skills.append(Skill(f"{t}:{lv}", f"reasoning-gym {t} at level {lv} "
                                    f"({self._sources[(t, lv)].summary})", prereq, (lv,)))
        return tuple(skills)

    def _task_level(self, skill: str, level: int | None) -> tuple[str, list[int]]:
        """The task and the levels to draw from for ``generate(skill, level)``."""
        names = [s.name for s in self.skills]
        if skill not in names:
            near = difflib.get_close_matches(skill, names, n=3)
            hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
            raise KeyError(f"unknown skill {skill!r}{hint} (skills: {names})")
        levels = next(s.levels for s in self.skills if s.name == skill)
        if level is not None and level not in levels:
            raise ValueError(f"skill {skill!r} has levels {list(levels)}, not {level!r}")
        task = skill if self.levels_as == "sub-skills" else skill.rsplit(":", 1)[0]
        return task, list(levels if level is None else (level,))

    def _skill_name(self, task: str, level: int) -> str:
        return task if self.levels_as == "sub-skills" else f"{task}:{level}"

    # -- drawing rows ---------------------------------------------------------------------------
    def _row(self, src: _Source, split: str, index: int) -> dict[str, Any]:
        item = src.item(split, index)
        prompt, answer = str(item["question"]), str(item["answer"])
        self._items.setdefault(prompt, (src.task, src.eval if split == "eval" else src.train, item))
        return {"prompt": prompt, "completion": answer, "skills": [self._skill_name(src.task, src.level)],
                "level": src.level}

    def _draw(self, task: str, levels: list[int], n: int, split: str, indices: Iterator[int],
              exclude: frozenset[str], taken: Mapping[tuple, set[str]] | None = None,
              dropped: Counter | None = None) -> list[dict]:
        """Up to ``n`` rows with distinct questions, none in ``exclude`` and none whose content another skill
        has in ``taken`` (counted in ``dropped`` by that skill), spread over ``levels`` in turn."""
        rows: list[dict] = []
        seen: set[str] = set()
        skipped: set[str] = set()
        levels, misses = list(levels), 0
        while len(rows) < n and levels:
            lv = levels[len(rows) % len(levels)]
            try:
                row = self._row(self._sources[(task, lv)], split, next(indices))
            except StopIteration:  # this split's items are used up
                levels.remove(lv)
                continue
            others = taken_elsewhere(row, taken) if taken else ()
            if dropped is not None and others and row["prompt"] not in skipped:  # distinct questions
                skipped.add(row["prompt"])
                dropped[", ".join(sorted(others))] += 1
            if row["prompt"] in exclude or row["prompt"] in seen or others:
                misses += 1
                if misses > 200 + 2 * n:  # this level's questions are used up: spread over the others
                    levels.remove(lv)
                    misses = 0
                continue
            misses = 0
            seen.add(row["prompt"])
            rows.append(row)
        return rows

    def _training_content(self) -> dict[tuple, set[str]]:
        """The content of the rows each skill's pool is drawn from (its first training items), by skill."""
        n = self.pool_per_skill
        return owners(self._row(src, "train", i) for src in self._sources.values()
                      for i in range(min(n, len(src.train))))

    def _draw_eval(self) -> list[dict]:
        """Each skill's eval items, skipping those whose content another skill's pool trains on (counted in
        :attr:`eval_dropped` and said in a warning: they would measure that skill, not this one)."""
        rows: list[dict] = []
        taken = self._training_content()
        for (task, lv), src in self._sources.items():
            dropped: Counter = Counter()
            drawn = self._draw(task, [lv], self.eval_per_skill, "eval", iter(range(len(src.eval))),
                               frozenset(r["prompt"] for r in rows), taken, dropped)
            name = self._skill_name(task, lv)
            if dropped:
                self.eval_dropped[name] = dict(dropped)
                warnings.warn(f"reasoning-gym: {sum(dropped.values())} eval questions of {name} skipped (and "
                              f"replaced): their numbers and answer are in the training rows of "
                              f"{', '.join(sorted(dropped))}", ContentOverlapWarning, stacklevel=2)
            if len(drawn) < self.eval_per_skill:
                overlap = "" if not dropped else (
                    f"; {sum(dropped.values())} more have the content of training rows of "
                    f"{', '.join(sorted(dropped))} (the skills test the same thing: drop one)")
                raise ReasoningGymError(
                    f"reasoning-gym task {task!r} level {lv} has only {len(drawn)} distinct questions, fewer "
                    f"than env.eval_per_skill={self.eval_per_skill} (and training needs others){overlap}: lower "
                    f"eval_per_skill or drop the level")
            self._check_golds(task, lv, drawn)
            if len({str(src.item("eval", 0)["question"]) for _ in range(2)}) > 1:
                raise ReasoningGymError(
                    f"reasoning-gym task {task!r} level {lv} makes a different question from the same seed on "
                    f"each call, so its eval set would differ from run to run: it cannot be used")
            rows += [{**r, "source": "eval"} for r in drawn]
        return rows

    def _check_golds(self, task: str, level: int, rows: list[dict]) -> None:
        """Refuse a task whose own scorer does not give its reference answers full marks (nothing to learn from)."""
        wrong = [r for r in rows if not self.verify(r["prompt"], r["completion"])]
        if wrong:
            raise ReasoningGymError(
                f"reasoning-gym task {task!r} level {level}: its own score_answer rejects {len(wrong)} of "
                f"{len(rows)} reference answers (e.g. {wrong[0]['completion'][:60]!r}); it has no usable gold "
                f"answers (tasks with several valid answers check them by simulation), so it cannot be trained on")

    # -- the Env protocol -----------------------------------------------------------------------
    def eval_set(self) -> Dataset:
        """The fixed held-out eval set (``prompt``, ``completion``, ``skills``, ``level``, ``source``)."""
        from datasets import Dataset

        if self._eval is None:
            self._eval = Dataset.from_list(self._eval_rows)
        return self._eval

    def pool(self) -> Dataset | None:
        """``pool_per_skill`` rows per skill from training seeds, none of them an eval question."""
        from datasets import Dataset

        if self.pool_per_skill == 0:
            return None
        if self._pool is None:
            rows: list[dict] = []
            for s in self.skills:
                task, levels = self._task_level(s.name, None)
                indices = iter(range(len(self._sources[(task, levels[0])].train)))
                drawn = self._draw(task, levels, self.pool_per_skill, "train", indices, self._eval_prompts,
                                   self._eval_content)
                if not drawn:
                    raise ReasoningGymError(f"skill {s.name!r}: every question it can make is an eval question")
                rows += [{**r, "source": "pool"} for r in drawn]
            self._pool = Dataset.from_list(rows)
        return self._pool

    def generate(self, skill: str, n: int, level: int | None = None, seed: int = 0) -> list[dict]:
        """``n`` distinct fresh rows of ``skill`` from training seeds (never an eval question).

        Args:
            skill: A skill name (``task:level``, or the task with ``levels_as: sub-skills``).
            n: Rows wanted (fewer when the level has fewer distinct questions).
            level: One of the skill's levels, or ``None`` to spread rows over all of them.
            seed: Makes the draw reproducible.
        """
        task, levels = self._task_level(skill, level)
        rng = random.Random(f"{seed}:{skill}:{level}")
        span = _SPANS.get(task, (EVAL_SPAN, TRAIN_SPAN))[1]
        rows = self._draw(task, levels, n, "train", iter(lambda: rng.randrange(span), -1), self._eval_prompts,
                          self._eval_content)
        return [{**r, "source": "generator"} for r in rows]

    def verify(self, prompt: str, output: str) -> bool:
        """Whether ``output``'s answer scores at least ``threshold`` on the item behind ``prompt``.

        ``False`` for a question this env did not generate (there is no item to score against).
        """
        found = self._items.get(prompt)
        if found is None:
            return False
        task, dataset, item = found
        answer = extract_answer(str(output))
        try:
            if float(dataset.score_answer(answer, item)) >= self.threshold:
                return True
        except Exception:  # noqa: BLE001 - a malformed answer is wrong, never an error
            return False
        if self._checkers[task] == "math":
            return math_equal(answer, str(item["answer"]))
        return False
