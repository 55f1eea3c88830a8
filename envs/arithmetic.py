"""Arithmetic: six integer-arithmetic skills with prerequisites, a pool and a generator.

Rows look like ``prompt="047+038="``, ``completion="0085"`` (the default ``format="padded"``: operands
zero-padded to three digits, answers to four) or ``prompt="47+38="``, ``completion="85"``
(``format="plain"``). Fixed widths keep every digit at the same position relative to the digits it
depends on, which a tiny transformer learns in hundreds of steps instead of thousands (measured in
the README); the verifier compares numbers, so ``"85"`` and ``"0085"`` are both right.

Every skill has difficulty levels, a seeded generator, and an item space of several hundred to
hundreds of thousands of prompts, so a held-out eval set of 100+ items per skill can be set aside
with plenty left to train on. (Single-digit addition or multiplication facts have only 100 items,
too few to hold out an eval set and still train, which is why the easiest skills here are
two-digit ones.)
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from teachgym.types import Skill

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

Sampler = Callable[[random.Random, int], tuple[int, str, int]]
_PROMPT = re.compile(r"^\s*(\d+)\s*([+\-*])\s*(\d+)\s*=\s*$")


def _units_carry(a: int, b: int) -> bool:
    return a % 10 + b % 10 >= 10


def _no_carry(a: int, b: int) -> bool:
    while a or b:
        if a % 10 + b % 10 >= 10:
            return False
        a, b = a // 10, b // 10
    return True


def _no_borrow(a: int, b: int) -> bool:
    while b:
        if a % 10 < b % 10:
            return False
        a, b = a // 10, b // 10
    return True


def _rejection(rng: random.Random, draw: Callable[[], tuple[int, int]], ok: Callable[[int, int], bool]):
    while True:
        a, b = draw()
        if ok(a, b):
            return a, b


def _add_nocarry(rng: random.Random, level: int) -> tuple[int, str, int]:
    hi_b = 9 if level == 1 else 99
    lo_b = 1 if level == 1 else 10
    a, b = _rejection(rng, lambda: (rng.randint(10, 99), rng.randint(lo_b, hi_b)), _no_carry)
    return a, "+", b


def _add_carry(rng: random.Random, level: int) -> tuple[int, str, int]:
    hi_b = 9 if level == 1 else 99
    lo_b = 1 if level == 1 else 10
    a, b = _rejection(rng, lambda: (rng.randint(10, 99), rng.randint(lo_b, hi_b)), _units_carry)
    return a, "+", b


def _add_3d(rng: random.Random, level: int) -> tuple[int, str, int]:
    b = rng.randint(10, 99) if level == 1 else rng.randint(100, 999)
    return rng.randint(100, 999), "+", b


def _sub_noborrow(rng: random.Random, level: int) -> tuple[int, str, int]:
    lo_b, hi_b = (1, 9) if level == 1 else (10, 99)
    a, b = _rejection(
        rng, lambda: (rng.randint(10, 99), rng.randint(lo_b, hi_b)), lambda a, b: a >= b and _no_borrow(a, b)
    )
    return a, "-", b


def _sub_borrow(rng: random.Random, level: int) -> tuple[int, str, int]:
    lo_b, hi_b = (1, 9) if level == 1 else (10, 99)
    a, b = _rejection(
        rng, lambda: (rng.randint(10, 99), rng.randint(lo_b, hi_b)), lambda a, b: a > b and not _no_borrow(a, b)
    )
    return a, "-", b


def _mul_2x1(rng: random.Random, level: int) -> tuple[int, str, int]:
    hi = {1: 3, 2: 5}.get(level, 9)
    return rng.randint(10, 99), "*", rng.randint(2, hi)


SKILLS: tuple[Skill, ...] = (
    Skill("add_nocarry", "two-digit plus one- or two-digit addition without carrying", (), (1, 2)),
    Skill("add_carry", "two-digit addition with a carry out of the units", ("add_nocarry",), (1, 2)),
    Skill("add_3d", "three-digit plus two- or three-digit addition", ("add_carry",), (1, 2)),
    Skill("sub_noborrow", "two-digit subtraction without borrowing", ("add_nocarry",), (1, 2)),
    Skill("sub_borrow", "two-digit subtraction with borrowing", ("sub_noborrow",), (1, 2)),
    Skill("mul_2x1", "two-digit times one-digit multiplication", ("add_carry",), (1, 2, 3)),
)
_LEVELS = {s.name: s.levels for s in SKILLS}
_SAMPLERS: dict[str, Sampler] = {
    "add_nocarry": _add_nocarry,
    "add_carry": _add_carry,
    "add_3d": _add_3d,
    "sub_noborrow": _sub_noborrow,
    "sub_borrow": _sub_borrow,
    "mul_2x1": _mul_2x1,
}


def solve(prompt: str) -> int | None:
    """The exact answer to an arithmetic prompt such as ``"47+38="``, or ``None`` if it is not one."""
    m = _PROMPT.match(prompt)
    if not m:
        return None
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return a + b if op == "+" else a - b if op == "-" else a * b


class ArithmeticEnv:
    """Integer arithmetic in six skills with prerequisites (pool + generator)."""

    name = "arithmetic"
    supports_generation = True
    #: The verifier computes the answer from the prompt, so it can check rows it has never seen.
    verifies_new_prompts = True

    def __init__(
        self,
        eval_per_skill: int = 100,
        pool_per_skill: int = 1000,
        eval_seed: int = 1234,
        pool_seed: int = 0,
        skills: Sequence[str] | None = None,
        format: str = "padded",
    ) -> None:
        """Build the env.

        Args:
            eval_per_skill: Held-out eval items per skill (fixed by ``eval_seed``).
            pool_per_skill: Pre-generated rows per skill in the reweighting pool.
            eval_seed: Seed of the eval set; keep it fixed to compare runs.
            pool_seed: Seed of the pool.
            skills: A subset of skill names to use (default: all six).
            format: ``"padded"`` (fixed-width, zero-padded) or ``"plain"`` numbers.
        """
        if format not in ("padded", "plain"):
            raise ValueError(f"format must be 'padded' or 'plain', not {format!r}")
        self.format = format
        if eval_per_skill < 1 or pool_per_skill < 0:
            raise ValueError("eval_per_skill must be >= 1 and pool_per_skill >= 0")
        names = [s.name for s in SKILLS]
        if skills is not None:
            unknown = sorted(set(skills) - set(names))
            if unknown:
                raise ValueError(f"unknown arithmetic skills {unknown}; available: {names}")
        chosen = [s for s in SKILLS if skills is None or s.name in skills]
        kept = {s.name for s in chosen}
        # A subset keeps only the prerequisites that are still present.
        self.skills: tuple[Skill, ...] = tuple(
            Skill(s.name, s.description, tuple(p for p in s.prerequisites if p in kept), s.levels) for s in chosen
        )
        self.eval_per_skill = eval_per_skill
        self.pool_per_skill = pool_per_skill
        self.eval_seed = eval_seed
        self.pool_seed = pool_seed
        self._eval_rows = self._draw_eval()
        self._eval_prompts = frozenset(r["prompt"] for r in self._eval_rows)
        self._pool: Dataset | None = None
        self._eval: Dataset | None = None

    # -- data sources -------------------------------------------------------------------------
    def _row(self, skill: str, level: int, rng: random.Random) -> dict:
        a, op, b = _SAMPLERS[skill](rng, level)
        answer = solve(f"{a}{op}{b}=")
        if self.format == "padded":
            return {"prompt": f"{a:03d}{op}{b:03d}=", "completion": f"{answer:04d}", "skills": [skill], "level": level}
        return {"prompt": f"{a}{op}{b}=", "completion": str(answer), "skills": [skill], "level": level}

    def _draw(self, skill: str, n: int, level: int | None, rng: random.Random, exclude: frozenset[str]) -> list[dict]:
        levels = list(_LEVELS[skill] if level is None else (level,))
        rows: list[dict] = []
        seen: set[str] = set()
        misses = 0
        while len(rows) < n and levels:
            lvl = levels[len(rows) % len(levels)]
            row = self._row(skill, lvl, rng)
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
        rows = []
        for s in SKILLS:  # always draw all six so a subset keeps the same eval items
            drawn = self._draw(s.name, self.eval_per_skill, None, rng, frozenset())
            if s.name in {k.name for k in self.skills}:
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
            self._eval = Dataset.from_list(self._eval_rows)
        return self._eval

    def pool(self) -> Dataset | None:
        """The fixed pool to reweight: ``pool_per_skill`` rows per skill, none of them an eval prompt."""
        from datasets import Dataset

        if self.pool_per_skill == 0:
            return None
        if self._pool is None:
            rng = random.Random(self.pool_seed)
            rows = []
            for s in self.skills:
                rows += [
                    {**r, "source": "pool"}
                    for r in self._draw(s.name, self.pool_per_skill, None, rng, self._eval_prompts)
                ]
            self._pool = Dataset.from_list(rows)
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
        """True when ``output`` is a number equal to the answer to ``prompt`` (leading zeros allowed)."""
        answer = solve(prompt)
        text = output.strip()
        return answer is not None and text.isdigit() and int(text) == answer
