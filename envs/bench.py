"""Bench: procedural letter-string skills whose structure a challenge declares (``teachgym bench``).

Every skill maps a string of ``length`` letters to another, by one of these rules::

    copy      abc -> abc              reverse   abc -> cba           shift k   abc -> bcd (k=1)
    cipher    a fixed permutation of the alphabet, letter by letter (seeded by the skill's name)
    compose   two other skills' rules, one after the other (both are its prerequisites; composes nest)
    noise     a fixed pseudo-random answer per prompt (a hash): nothing to generalise from

Rows read ``<skill>:<input>=`` and the answer. A ``noise`` skill's answers depend on the whole prompt
through a hash, so the student can memorise training rows but no rule reaches the held-out eval
items: time spent on it is wasted, which is what the ``unlearnable`` challenge is made of. Every
skill's description is the same neutral sentence ("a fixed rule on N letters"): a teacher sees
no more than the name, the length and the declared prerequisites; the challenge's ``bench:``
section tells the oracle and the scorer which skills are noise.

The verifier computes every answer from the prompt (noise included), so it checks new rows too.

Example::

    env:
      name: bench
      alphabet: abcdefgh
      skills:
        rev: {rule: reverse, length: 3}
        c1: {rule: cipher, length: 3}
        both: {rule: compose, of: [c1, rev], length: 3}
        n1: {rule: noise, length: 3}
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from typing import Any

from teachgym.envs._generated import GeneratedEnv
from teachgym.types import Skill

RULES = ("copy", "reverse", "shift", "cipher", "compose", "noise")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class BenchEnv(GeneratedEnv):
    """Letter-string skills with declared rules, lengths and prerequisites (see the module docstring)."""

    name = "bench"

    def __init__(
        self,
        skills: Mapping[str, Mapping[str, Any]],
        alphabet: str = "abcdefgh",
        eval_per_skill: int = 50,
        pool_per_skill: int = 1000,
        eval_seed: int = 1234,
        pool_seed: int = 0,
    ) -> None:
        """Build the env.

        Args:
            skills: ``{name: {rule, length, shift (shift), of (compose: two skill names), prerequisites}}``;
                a compose skill's prerequisites default to the two skills it composes.
            alphabet: The letters inputs and answers use (2 or more, none of ``:``, ``=``, space).
            eval_per_skill: Held-out eval items per skill.
            pool_per_skill: Rows per skill in the reweighting pool (never an eval prompt).
            eval_seed: Seed of the eval set.
            pool_seed: Seed of the pool.
        """
        if len(set(alphabet)) < 2 or set(alphabet) & set(":= \n"):
            raise ValueError(f"env.alphabet needs 2+ distinct letters and none of ':', '=', space: {alphabet!r}")
        if not skills:
            raise ValueError("env.skills: declare at least one skill, e.g. {rev: {rule: reverse, length: 3}}")
        self.alphabet = "".join(dict.fromkeys(alphabet))
        self.specs: dict[str, dict[str, Any]] = {}
        for name, spec in skills.items():
            self.specs[name] = self._check(name, dict(spec), skills)
        _acyclic({n: sp["prerequisites"] + sp["of"] for n, sp in self.specs.items()})
        self.ALL_SKILLS = tuple(
            Skill(n, f"a fixed rule on {s['length']} letters", tuple(s["prerequisites"]), (1,))
            for n, s in self.specs.items()
        )
        # The rows depend on the alphabet and the declared skills only (a cipher's table on its name).
        self.cache_key = (self.alphabet, repr(sorted((n, sorted(dict(sp).items())) for n, sp in skills.items())))
        super().__init__(eval_per_skill, pool_per_skill, eval_seed, pool_seed, None)

    def _check(self, name: str, spec: dict[str, Any], skills: Mapping[str, Any]) -> dict[str, Any]:
        where = f"env.skills.{name}"
        if not _NAME.match(name):
            raise ValueError(f"{where}: a skill name uses letters, digits, '_', '.', '-' only")
        unknown = set(spec) - {"rule", "length", "shift", "of", "prerequisites"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; fields: rule, length, shift, of, "
                             "prerequisites")
        rule = spec.get("rule")
        if rule not in RULES:
            raise ValueError(f"{where}.rule: {rule!r} is not one of {list(RULES)}")
        length = spec.get("length", 3)
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"{where}.length: a positive integer, not {length!r}")
        of = list(spec.get("of") or [])
        if rule == "compose":
            if len(of) != 2 or any(o not in skills or o == name for o in of):
                raise ValueError(f"{where}.of: two other skills of env.skills, not {of!r}")
            if any(skills[o].get("rule") == "noise" for o in of):
                raise ValueError(f"{where}.of: a noise skill has no rule to compose")
            if any(skills[o].get("length", 3) != spec.get("length", 3) for o in of):
                raise ValueError(f"{where}.of: the composed skills need this skill's length")
        prereq = list(spec.get("prerequisites", of))
        missing = [p for p in prereq if p not in skills]
        if missing:
            raise ValueError(f"{where}.prerequisites: {missing} are not skills of env.skills")
        table = None
        if rule == "cipher":
            letters = list(self.alphabet)
            random.Random(f"cipher:{name}").shuffle(letters)
            table = str.maketrans(self.alphabet, "".join(letters))
        elif rule == "shift":
            k = int(spec.get("shift", 1))
            table = str.maketrans(self.alphabet, self.alphabet[k:] + self.alphabet[:k])
        return {"rule": rule, "length": length, "of": of, "prerequisites": prereq, "table": table}

    def _apply(self, name: str, text: str) -> str:
        spec = self.specs[name]
        rule = spec["rule"]
        if rule == "copy":
            return text
        if rule == "reverse":
            return text[::-1]
        if rule in ("cipher", "shift"):
            return text.translate(spec["table"])
        if rule == "compose":
            return self._apply(spec["of"][1], self._apply(spec["of"][0], text))
        digest = hashlib.sha256(f"{self.eval_seed}:{name}:{text}".encode()).digest()  # noise
        return "".join(self.alphabet[b % len(self.alphabet)] for b in digest[: len(text)])

    def _row(self, skill: str, level: int, rng: random.Random) -> dict[str, Any]:
        text = "".join(rng.choice(self.alphabet) for _ in range(self.specs[skill]["length"]))
        return {"prompt": f"{skill}:{text}=", "completion": self._apply(skill, text)}

    def solve(self, prompt: str) -> str | None:
        """The answer to ``<skill>:<input>=``, or None for a prompt of no skill of this env."""
        name, sep, rest = prompt.strip().partition(":")
        if not sep or name not in self.specs or not rest.endswith("="):
            return None
        text = rest[:-1]
        if len(text) != self.specs[name]["length"] or set(text) - set(self.alphabet):
            return None
        return self._apply(name, text)


def _acyclic(edges: Mapping[str, list[str]]) -> None:
    """Raise ValueError naming a cycle of prerequisites (or of composed rules), if there is one."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = path[path.index(node):] + [node]
            raise ValueError(f"env.skills: a cycle of prerequisites or composed rules: {' -> '.join(cycle)}")
        state[node] = 1
        for nxt in edges.get(node, ()):
            visit(nxt, [*path, node])
        state[node] = 2

    for name in edges:
        visit(name, [])
