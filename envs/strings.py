"""Strings: character-level skills at increasing lengths.

Rows name the operation, then the input::

    copy:hbad=    -> hbad          reverse:hbad= -> dabh        sort:hbad=  -> abdh
    dedupe:abba=  -> ab            count b:abba= -> 2

``reverse``, ``sort`` and ``dedupe`` build on ``copy`` (the student must first reproduce characters
at all); ``count`` stands alone. A skill's levels are input lengths: level ``i`` draws strings of
length ``lengths[i - 1]`` (default 3, 5, 7), so the skill-tree state can target longer inputs once
short ones are learned. The alphabet is small by default (``abcdefgh``) so that a tiny student sees
every character often; with 8 letters even level 1 has 512 strings per skill. The verifier computes
the answer from the prompt, so it checks rows written by an LLM or a teacher too.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from teachgym.envs._generated import GeneratedEnv
from teachgym.types import Skill

_OPS: dict[str, Callable[[str], str]] = {
    "copy": lambda s: s,
    "reverse": lambda s: s[::-1],
    "sort": lambda s: "".join(sorted(s)),
    "dedupe": lambda s: "".join(dict.fromkeys(s)),
}
_PROMPT = re.compile(r"^(copy|reverse|sort|dedupe|count (.)):([^=:]+)=$")

SKILL_INFO = (
    ("copy", "repeat the input string", ()),
    ("reverse", "write the input string backwards", ("copy",)),
    ("sort", "write the input's characters in alphabetical order", ("copy",)),
    ("dedupe", "drop repeated characters, keeping each one's first occurrence", ("copy",)),
    ("count", "count how often a character occurs in the input", ()),
)


def solve(prompt: str) -> str | None:
    """The answer to a strings prompt such as ``"reverse:abc="``, or ``None`` if it is not one."""
    m = _PROMPT.match(prompt.strip())
    if not m:
        return None
    op, char, text = m.group(1), m.group(2), m.group(3)
    if char is not None:
        return str(text.count(char))
    return _OPS[op](text)


class StringsEnv(GeneratedEnv):
    """Character-level string skills (copy, reverse, sort, dedupe, count); levels are input lengths."""

    name = "strings"

    def __init__(
        self,
        lengths: Sequence[int] = (3, 5, 7),
        alphabet: str = "abcdefgh",
        eval_per_skill: int = 100,
        pool_per_skill: int = 1000,
        eval_seed: int = 1234,
        pool_seed: int = 0,
        skills: Sequence[str] | None = None,
    ) -> None:
        """Build the env.

        Args:
            lengths: Input length of each level, shortest first (level ``i`` is ``lengths[i - 1]``).
            alphabet: Characters the inputs are drawn from (at least 2; no ``:``, ``=`` or spaces).
            eval_per_skill: Held-out eval items per skill (fixed by ``eval_seed``).
            pool_per_skill: Pre-generated rows per skill in the reweighting pool.
            eval_seed: Seed of the eval set; keep it fixed to compare runs.
            pool_seed: Seed of the pool.
            skills: A subset of skill names to use (default: all five).
        """
        lengths = tuple(int(n) for n in lengths)
        if not lengths or any(n < 1 for n in lengths) or list(lengths) != sorted(set(lengths)):
            raise ValueError(f"lengths must be increasing positive integers, not {list(lengths)}")
        if len(set(alphabet)) < 2 or set(alphabet) & set(":= \n"):
            raise ValueError(f"alphabet needs 2+ distinct characters and none of ':', '=', space: {alphabet!r}")
        self.lengths, self.alphabet = lengths, "".join(dict.fromkeys(alphabet))
        levels = tuple(range(1, len(lengths) + 1))
        self.ALL_SKILLS = tuple(
            Skill(n, f"{d} (levels are input lengths {list(lengths)})", p, levels) for n, d, p in SKILL_INFO
        )
        super().__init__(eval_per_skill, pool_per_skill, eval_seed, pool_seed, skills)

    def _row(self, skill: str, level: int, rng: random.Random) -> dict[str, Any]:
        text = "".join(rng.choice(self.alphabet) for _ in range(self.lengths[level - 1]))
        prompt = f"count {rng.choice(self.alphabet)}:{text}=" if skill == "count" else f"{skill}:{text}="
        return {"prompt": prompt, "completion": solve(prompt)}

    def solve(self, prompt: str) -> str | None:
        """See :func:`solve`."""
        return solve(prompt)
