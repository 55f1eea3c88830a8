"""LEGO: the synthetic chain-of-assignments task that Skill-it uses (Zhang et al. 2022, "Unveiling
Transformers with LEGO"; Chen et al. 2023, "Skill-it!").

A row is a chain of ``length`` assignments with negation, then a question about one variable::

    prompt     = "j=+1,q=-j,c=+q,x=-c,k=+x;c="      completion = "-1"

``j`` is set to ``+1`` or ``-1``; each next variable is ``+`` or ``-`` the one before. Skill
``hop<k>`` asks for the variable ``k - 1`` assignments after the root (``hop1`` is the root itself),
so resolving it needs ``hop<k-1>`` first: the skills form a chain of prerequisites, which is what
makes LEGO a good test of a curriculum (Skill-it's Figure 3). Level 1 lists the clauses in chain
order; level 2 shuffles them, so the student has to find each variable's parent.

Variable names are 26 letters, so every skill has millions of distinct prompts: a large held-out
eval set and an unbounded generator fit easily. The verifier resolves the chain in the prompt, so it
checks any row, including ones an LLM or a teacher wrote.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence
from typing import Any

from teachgym.envs._generated import GeneratedEnv
from teachgym.types import Skill

_CLAUSE = re.compile(r"^([a-z])=([+-])([a-z]|1)$")
MAX_LENGTH = 12


def _skills(length: int, levels: tuple[int, ...]) -> tuple[Skill, ...]:
    out = []
    for k in range(1, length + 1):
        what = "the root variable's value" if k == 1 else f"a variable {k - 1} assignment(s) down the chain"
        out.append(Skill(f"hop{k}", f"LEGO: resolve {what}", (f"hop{k - 1}",) if k > 1 else (), levels))
    return tuple(out)


def solve(prompt: str) -> str | None:
    """The value (``"+1"`` or ``"-1"``) of the queried variable, or ``None`` if ``prompt`` is not LEGO."""
    body, sep, query = prompt.strip().partition(";")
    if not sep or not query.endswith("=") or len(query) != 2:
        return None
    parents: dict[str, tuple[str, str]] = {}
    for clause in body.split(","):
        m = _CLAUSE.match(clause.strip())
        if not m or m.group(1) in parents:
            return None
        parents[m.group(1)] = (m.group(2), m.group(3))
    var, sign = query[0], 1
    for _ in range(len(parents) + 1):  # more steps than clauses means a cycle
        if var not in parents:
            return None
        op, parent = parents[var]
        sign *= -1 if op == "-" else 1
        if parent == "1":
            return "+1" if sign > 0 else "-1"
        var = parent
    return None


class LegoEnv(GeneratedEnv):
    """Skill-it's LEGO task: one skill per hop along a chain of negated assignments."""

    name = "lego"

    def __init__(
        self,
        length: int = 5,
        eval_per_skill: int = 100,
        pool_per_skill: int = 1000,
        eval_seed: int = 1234,
        pool_seed: int = 0,
        skills: Sequence[str] | None = None,
        levels: Sequence[int] = (1, 2),
    ) -> None:
        """Build the env.

        Args:
            length: Assignments per chain, and so the number of skills ``hop1..hop<length>`` (2-12).
            eval_per_skill: Held-out eval items per skill (fixed by ``eval_seed``).
            pool_per_skill: Pre-generated rows per skill in the reweighting pool.
            eval_seed: Seed of the eval set; keep it fixed to compare runs.
            pool_seed: Seed of the pool.
            skills: A subset of skill names to use (default: every hop).
            levels: The levels that the eval set and the pool draw from, alternately: ``1`` lists the
                clauses in chain order, ``2`` shuffles them (Skill-it always shuffles). ``[1]`` keeps the
                hop structure but spares the student the search for each variable's parent.
        """
        if not 2 <= length <= MAX_LENGTH:
            raise ValueError(f"length must be between 2 and {MAX_LENGTH}, not {length}")
        levels = tuple(levels)
        if not levels or set(levels) - {1, 2} or len(set(levels)) != len(levels):
            raise ValueError(f"levels must be a non-empty list of distinct levels from 1 and 2, not {list(levels)}")
        self.length = length
        self.ALL_SKILLS = _skills(length, levels)
        super().__init__(eval_per_skill, pool_per_skill, eval_seed, pool_seed, skills)

    def _row(self, skill: str, level: int, rng: random.Random) -> dict[str, Any]:
        names = rng.sample(string.ascii_lowercase, self.length)
        clauses = [f"{names[0]}={rng.choice('+-')}1"]
        clauses += [f"{names[i]}={rng.choice('+-')}{names[i - 1]}" for i in range(1, self.length)]
        if level == 2:
            rng.shuffle(clauses)
        prompt = ",".join(clauses) + f";{names[int(skill[3:]) - 1]}="
        return {"prompt": prompt, "completion": solve(prompt)}

    def solve(self, prompt: str) -> str | None:
        """See :func:`solve`."""
        return solve(prompt)

    def _same(self, answer: str, output: str) -> bool:
        text = output.strip()
        return text == answer or (answer == "+1" and text == "1")
