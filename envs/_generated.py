"""Plumbing shared by the synthetic envs (``arithmetic``, ``lego``, ``strings``): eval set, pool, generator.

A synthetic env defines its skills, ``_row(skill, level, rng) -> {"prompt", "completion"}`` and
``solve(prompt) -> str | None``; this base draws a seeded held-out eval set (always from every skill,
so a subset of skills keeps the same eval items), a pool that never contains an eval prompt, and a
generator that never returns one. The verifier solves the prompt itself, so it can check rows nobody
has seen before (an LLM's, a teacher's).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from teachgym.types import Skill

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset


#: Eval rows and pools of envs that say what decides them (:attr:`GeneratedEnv.cache_key`), newest last:
#: a bench or a sweep builds the same env for every case, and drawing a 100-skill pool is most of a
#: simulated case's time. Both are immutable (rows in a tuple, a ``datasets.Dataset``).
_BUILT: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_BUILT_MAX = 8


def _built(key: tuple | None) -> dict[str, Any]:
    """The shared store of an env's drawn rows (a fresh, unshared one when ``key`` is None)."""
    if key is None:
        return {}
    if key in _BUILT:
        _BUILT.move_to_end(key)
    else:
        _BUILT[key] = {}
        while len(_BUILT) > _BUILT_MAX:
            _BUILT.popitem(last=False)
    return _BUILT[key]


class GeneratedEnv:
    """Base of an env whose rows come from a seeded generator and whose verifier solves prompts."""

    name = "generated"
    supports_generation = True
    #: The verifier computes the answer from the prompt, so it can check rows it has never seen.
    verifies_new_prompts = True
    ALL_SKILLS: tuple[Skill, ...] = ()
    #: Everything that decides the drawn rows besides the sizes and seeds (set by a subclass whose rows
    #: depend only on its constructor's arguments): envs with equal keys share their eval set and pool.
    cache_key: tuple | None = None

    def __init__(
        self,
        eval_per_skill: int,
        pool_per_skill: int,
        eval_seed: int,
        pool_seed: int,
        skills: Sequence[str] | None,
    ) -> None:
        if eval_per_skill < 1 or pool_per_skill < 0:
            raise ValueError("eval_per_skill must be >= 1 and pool_per_skill >= 0")
        names = [s.name for s in self.ALL_SKILLS]
        if skills is not None:
            unknown = sorted(set(skills) - set(names))
            if unknown:
                raise ValueError(f"unknown {self.name} skills {unknown}; available: {names}")
        chosen = [s for s in self.ALL_SKILLS if skills is None or s.name in skills]
        kept = {s.name for s in chosen}
        # A subset keeps only the prerequisites that are still present.
        self.skills: tuple[Skill, ...] = tuple(
            Skill(s.name, s.description, tuple(p for p in s.prerequisites if p in kept), s.levels) for s in chosen
        )
        self.eval_per_skill = eval_per_skill
        self.pool_per_skill = pool_per_skill
        self.eval_seed = eval_seed
        self.pool_seed = pool_seed
        self._levels = {s.name: s.levels for s in self.ALL_SKILLS}
        key = None if self.cache_key is None else \
            (type(self).__qualname__, self.cache_key, eval_per_skill, pool_per_skill, eval_seed, pool_seed)
        self._shared = _built(key)
        if "eval" not in self._shared:
            self._shared["eval"] = tuple(self._draw_eval())
        self._eval_rows = list(self._shared["eval"])
        self._eval_prompts = frozenset(r["prompt"] for r in self._eval_rows)
        self._pool: Dataset | None = None
        self._eval: Dataset | None = None

    # -- to define in a subclass ----------------------------------------------------------------
    def _row(self, skill: str, level: int, rng: random.Random) -> dict[str, Any]:
        raise NotImplementedError

    def solve(self, prompt: str) -> str | None:
        """The answer to ``prompt``, or ``None`` when it is not a prompt of this env."""
        raise NotImplementedError

    def _same(self, answer: str, output: str) -> bool:
        return output.strip() == answer

    # -- data sources -------------------------------------------------------------------------
    def _draw(self, skill: str, n: int, level: int | None, rng: random.Random, exclude: frozenset[str]) -> list[dict]:
        levels = list(self._levels[skill] if level is None else (level,))
        rows: list[dict] = []
        seen: set[str] = set()
        misses = 0
        while len(rows) < n and levels:
            lvl = levels[len(rows) % len(levels)]
            row = {**self._row(skill, lvl, rng), "skills": [skill], "level": lvl}
            if row["prompt"] in exclude or row["prompt"] in seen:
                misses += 1
                if misses > 500:  # this level's item space is exhausted: spread over the others
                    levels.remove(lvl)
                    misses = 0
                continue
            misses = 0
            seen.add(row["prompt"])
            rows.append(row)
        return rows

    def _draw_eval(self) -> list[dict]:
        rng = random.Random(self.eval_seed)
        kept = {s.name for s in self.skills}
        rows: list[dict] = []
        for s in self.ALL_SKILLS:
            drawn = self._draw(s.name, self.eval_per_skill, None, rng, frozenset(r["prompt"] for r in rows))
            if s.name in kept:
                rows += [{**r, "source": "eval"} for r in drawn]
        return rows

    def _skill(self, name: str) -> Skill:
        for s in self.skills:
            if s.name == name:
                return s
        raise KeyError(f"unknown skill {name!r}; skills: {[s.name for s in self.skills]}")

    def eval_set(self) -> Dataset:
        """The fixed held-out eval set (``prompt``, ``completion``, ``skills``, ``level``, ``source``)."""
        from datasets import Dataset

        if self._eval is None:
            self._eval = self._shared.get("eval_set") or Dataset.from_list(self._eval_rows)
            self._shared["eval_set"] = self._eval
        return self._eval

    def pool(self) -> Dataset | None:
        """The fixed pool to reweight: ``pool_per_skill`` rows per skill, none of them an eval prompt."""
        from datasets import Dataset

        if self.pool_per_skill == 0:
            return None
        if self._pool is None and "pool" in self._shared:
            self._pool = self._shared["pool"]
        if self._pool is None:
            rng = random.Random(self.pool_seed)
            rows = []
            for s in self.skills:
                drawn = self._draw(s.name, self.pool_per_skill, None, rng, self._eval_prompts)
                rows += [{**r, "source": "pool"} for r in drawn]
            self._pool = self._shared["pool"] = Dataset.from_list(rows)
        return self._pool

    def generate(self, skill: str, n: int, level: int | None = None, seed: int = 0) -> list[dict]:
        """Synthesise ``n`` distinct fresh rows of ``skill`` (never an eval prompt).

        Args:
            skill: Skill name.
            n: Rows wanted.
            level: A level of the skill, or ``None`` to spread rows over all levels.
            seed: Makes the draw reproducible.
        """
        s = self._skill(skill)
        if level is not None and level not in s.levels:
            raise ValueError(f"skill {skill!r} has levels {list(s.levels)}, not {level!r}")
        rng = random.Random(f"{seed}:{skill}:{level}")
        return [{**r, "source": "generator"} for r in self._draw(skill, n, level, rng, self._eval_prompts)]

    def verify(self, prompt: str, output: str) -> bool:
        """True when ``output`` is the answer to ``prompt`` (computed from the prompt itself)."""
        answer = self.solve(prompt)
        return answer is not None and self._same(answer, output)
