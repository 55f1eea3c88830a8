"""The env checker."""

from __future__ import annotations

from typing import Any

from teachgym.checks.common import _check_rows, _methods, _require
from teachgym.protocols import supports_generation
from teachgym.types import (
    Skill,
)


def check_env(env: Any, min_eval_per_skill: int = 1, sample: int = 200) -> None:
    """Check an env: skill graph, eval set, verifier, pool/generator disjointness and determinism.

    Args:
        env: The env instance.
        min_eval_per_skill: Fewest eval items each skill must have.
        sample: Rows of each data source to check with the verifier.

    Raises:
        CheckError: On the first problem found.
    """
    _methods(env, ["eval_set", "pool", "generate", "verify"], "env")
    _require(isinstance(getattr(env, "name", None), str), "env.name must be a string")
    skills = list(env.skills)
    _require(len(skills) > 0 and all(isinstance(s, Skill) for s in skills), "env.skills must be non-empty Skills")
    names = [s.name for s in skills]
    _require(len(set(names)) == len(names), f"duplicate skill names in {names}")
    for s in skills:
        unknown = set(s.prerequisites) - set(names)
        _require(not unknown, f"skill {s.name!r} has unknown prerequisites {sorted(unknown)}")
        _require(len(s.levels) > 0, f"skill {s.name!r} has no levels")
    # The prerequisite graph must be acyclic, or no skill in a cycle could ever be learned first.
    state: dict[str, int] = {}
    graph = {s.name: s.prerequisites for s in skills}

    def visit(n: str, path: tuple[str, ...]) -> None:
        _require(state.get(n) != 1, f"prerequisite cycle: {' -> '.join((*path, n))}")
        if state.get(n) == 2:
            return
        state[n] = 1
        for p in graph[n]:
            visit(p, (*path, n))
        state[n] = 2

    for n in names:
        visit(n, ())

    ev = env.eval_set()
    _check_rows(ev, set(names), "eval set")
    counts = {n: 0 for n in names}
    for rs in ev["skills"][:]:
        for s in rs:
            counts[s] += 1
    thin = {s: c for s, c in counts.items() if c < min_eval_per_skill}
    _require(not thin, f"skills with fewer than {min_eval_per_skill} eval items: {thin}")
    eval_prompts = set(ev["prompt"][:])
    for row in ev.select(range(min(sample, len(ev)))):
        _require(env.verify(row["prompt"], row["completion"]), f"verify() rejects the gold answer of {row!r}")
        _require(not env.verify(row["prompt"], row["completion"] + "9x"), f"verify() accepts junk for {row!r}")

    pool = env.pool()
    has_gen = supports_generation(env)
    _require(pool is not None or has_gen, "env has neither a pool nor a generator: nothing to train on")
    if pool is not None:
        _check_rows(pool, set(names), "pool")
        overlap = eval_prompts & set(pool["prompt"][:])
        _require(not overlap, f"pool contains {len(overlap)} eval prompts, e.g. {sorted(overlap)[:3]}")
        for row in pool.select(range(min(sample, len(pool)))):
            _require(env.verify(row["prompt"], row["completion"]), f"pool row fails its own verifier: {row!r}")
    if has_gen:
        for s in skills:
            for level in (None, *s.levels):
                rows = env.generate(s.name, 8, level=level, seed=3)
                _require(len(rows) > 0, f"generate({s.name!r}, level={level}) returned no rows")
                _check_rows(rows, set(names), f"generate({s.name!r})")
                for r in rows:
                    _require(s.name in r["skills"], f"generate({s.name!r}) returned a row of {r['skills']}")
                    _require(r["prompt"] not in eval_prompts, f"generate({s.name!r}) returned eval prompt {r!r}")
                    _require(env.verify(r["prompt"], r["completion"]), f"generated row fails the verifier: {r!r}")
                    if level is not None:
                        _require(r["level"] == level, f"generate(level={level}) returned level {r['level']}")
            again = env.generate(s.name, 8, seed=3)
            _require(again == env.generate(s.name, 8, seed=3), f"generate({s.name!r}) is not deterministic by seed")


# -- policy -------------------------------------------------------------------------------------


