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

from teachgym.envs._generated import GeneratedEnv
from teachgym.types import Skill

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


class ArithmeticEnv(GeneratedEnv):
    """Integer arithmetic in six skills with prerequisites (pool + generator)."""

    name = "arithmetic"
    ALL_SKILLS = SKILLS
    #: Every skill's item space is large enough that any ``Mixture`` or ``Synthesize`` gets exactly the
    #: rows per skill it asks for, so a student that learns from counts may skip the rows (the loop's fast path).
    fills_requests = True

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
        super().__init__(eval_per_skill, pool_per_skill, eval_seed, pool_seed, skills)

    def _row(self, skill: str, level: int, rng: random.Random) -> dict:
        a, op, b = _SAMPLERS[skill](rng, level)
        answer = solve(f"{a}{op}{b}=")
        if self.format == "padded":
            return {"prompt": f"{a:03d}{op}{b:03d}=", "completion": f"{answer:04d}"}
        return {"prompt": f"{a}{op}{b}=", "completion": str(answer)}

    def verify(self, prompt: str, output: str) -> bool:
        """True when ``output`` is a number equal to the answer to ``prompt`` (leading zeros allowed)."""
        answer = solve(prompt)
        text = output.strip()
        return answer is not None and text.isdigit() and int(text) == answer
