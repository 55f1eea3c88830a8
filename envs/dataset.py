"""Bring your own data: a local JSONL/JSON, CSV or Parquet file, or a ``save_to_disk`` directory.

Each row needs a prompt, a gold completion and its skills (one label, a list of labels, or a string
split by ``skill_separator`` for CSV); a difficulty column is optional and becomes the skill's levels
(integers, easiest first). For example, ``data.jsonl``::

    {"prompt": "Capital of France?", "completion": "Paris", "skills": ["geography"], "difficulty": 1}

and in the config::

    env: {name: dataset, path: data.jsonl, difficulty_column: difficulty, checker: exact}

For every skill, ``eval_per_skill`` rows are held out as the eval set, drawn with ``seed`` (a row
with several skills counts for each); every other row whose prompt is not an eval prompt is the pool
a teacher reweights. The env has no generator, so ``Synthesize`` needs the LLM data engine
(``synthesis:`` in the config).

Answers are checked against the gold completion of the same prompt by ``checker``:

* ``exact`` — equal after stripping whitespace (``case_sensitive: false`` to ignore case);
* ``numeric`` — both parse as numbers and agree within ``tolerance`` (relative, and absolute near 0);
* ``regex`` — ``pattern`` extracts the answer (its first group, else the whole match) from the output
  and from the gold (when the gold does not match, the gold as it is), and those agree exactly;
* ``math`` — mathematical answers compared by value with ``math-verify`` (``\\frac{1}{2}`` = ``0.5``,
  ``\\boxed{42}`` read out of a longer answer, sets, intervals, equivalent expressions); works from any
  thread (see ``envs/_math.py``); ``pip install 'teachgym[math]'``;
* ``package.module:function`` — your own ``function(output, gold) -> bool``.

The verifier knows the gold of the file's prompts only: it cannot check a prompt nobody wrote an
answer for (``verifies_new_prompts`` is false), which is why the LLM engine checks rows for this env
by self-consistency.
"""

from __future__ import annotations

import difflib
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from teachgym.envs._dataset_rows import DatasetEnvError, golds_of, levels_per_code, read_columns, skill_rows
from teachgym.envs._math import _require, math_equal
from teachgym.registry import RegistryError, _import
from teachgym.rows import rows_by_code
from teachgym.types import Skill

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

CHECKERS = ("exact", "numeric", "regex", "math")
def _number(text: str) -> float | None:
    try:
        x = float(text.strip().replace(",", ""))
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def make_checker(
    checker: str, pattern: str | None = None, tolerance: float = 1e-6, case_sensitive: bool = True
) -> Callable[[str, str], bool]:
    """``check(output, gold) -> bool`` for a checker name (see the module docstring)."""
    if checker == "exact":
        if case_sensitive:
            return lambda output, gold: output.strip() == gold.strip()
        return lambda output, gold: output.strip().casefold() == gold.strip().casefold()
    if checker == "math":
        try:
            _require()
        except ImportError as e:
            raise DatasetEnvError(f"env.checker: {e}") from None
        return math_equal
    if checker == "numeric":
        def numeric(output: str, gold: str) -> bool:
            a, b = _number(output), _number(gold)
            return a is not None and b is not None and math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
        return numeric
    if checker == "regex":
        if not pattern:
            raise DatasetEnvError("env.pattern: checker 'regex' needs a pattern, e.g. 'answer: (\\S+)'")
        try:
            rx = re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
        except re.error as e:
            raise DatasetEnvError(f"env.pattern: {pattern!r} is not a valid regular expression: {e}") from None

        def extract(text: str) -> str | None:
            m = rx.search(text)
            return None if m is None else (m.group(1) if rx.groups else m.group(0)).strip()

        def regex(output: str, gold: str) -> bool:
            got = extract(output)
            return got is not None and got == (extract(gold) or gold.strip())
        return regex
    if ":" in checker:
        try:
            fn = _import(checker)
        except RegistryError as e:
            raise DatasetEnvError(f"env.checker: {e}") from None
        if not callable(fn):
            raise DatasetEnvError(f"env.checker: {checker!r} is not callable")
        return lambda output, gold: bool(fn(output, gold))
    near = difflib.get_close_matches(checker, CHECKERS, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise DatasetEnvError(
        f"env.checker: unknown checker {checker!r}{hint} Use exact, numeric, regex, math or 'package.module:function'"
    )


class DatasetEnv:
    """Your own rows (JSONL/CSV/Parquet/``save_to_disk``): a seeded per-skill eval split and a pool."""

    supports_generation = False
    verifies_new_prompts = False

    def __init__(
        self,
        path: str,
        format: str = "auto",
        split: str = "train",
        prompt_column: str = "prompt",
        completion_column: str = "completion",
        skills_column: str = "skills",
        difficulty_column: str | None = None,
        skill_separator: str | None = None,
        checker: str = "exact",
        pattern: str | None = None,
        tolerance: float = 1e-6,
        case_sensitive: bool = True,
        eval_per_skill: int = 50,
        min_pool_per_skill: int = 1,
        seed: int = 1234,
        skills: Sequence[str] | None = None,
        descriptions: Mapping[str, str] | None = None,
        prerequisites: Mapping[str, Sequence[str]] | None = None,
        name: str | None = None,
    ) -> None:
        """Load and split the data.

        Args:
            path: A ``.jsonl``/``.json``/``.csv``/``.parquet`` file or a ``save_to_disk`` directory.
            format: ``auto`` (from the suffix; a directory is ``disk``), ``json``, ``csv``, ``parquet``, ``disk``.
            split: Which split of a saved ``DatasetDict`` to use.
            prompt_column: Column with the prompt.
            completion_column: Column with the gold completion.
            skills_column: Column with the row's skill: one label or a list of labels.
            difficulty_column: Optional column of integer difficulties; they become the skills' levels.
            skill_separator: Split string skill labels on this (e.g. ``"|"`` for CSV rows with several).
            checker: ``exact``, ``numeric``, ``regex``, ``math`` or ``package.module:function(output, gold) -> bool``.
            pattern: The answer-extracting regular expression for ``checker: regex``.
            tolerance: Relative/absolute tolerance of ``checker: numeric``.
            case_sensitive: ``false`` ignores case in ``exact`` and ``regex``.
            eval_per_skill: Rows held out per skill for evaluation.
            min_pool_per_skill: Rows each skill must keep in the pool after the eval split.
            seed: Seeds the eval split (keep it fixed to compare runs).
            skills: Use only these skills (rows with none of them are dropped; others lose the rest).
            descriptions: ``{skill: one-line description}`` shown to teachers and the LLM engine.
            prerequisites: ``{skill: [prerequisite, ...]}`` (the skill graph, if you know it).
            name: The env's name in MLflow (default: the file's stem).

        Raises:
            DatasetEnvError: Missing columns, rows without skills, skills too small to evaluate, or bad
                options; the message names the column, rows or skills.
        """
        if eval_per_skill < 1 or min_pool_per_skill < 0:
            raise DatasetEnvError("env.eval_per_skill must be >= 1 and env.min_pool_per_skill >= 0")
        self.path = str(path)
        self.name = name or Path(path).stem or "dataset"
        self._check = make_checker(checker, pattern, tolerance, case_sensitive)
        table = read_columns(path, format, split, prompt_column, completion_column, skills_column, difficulty_column)
        self._load(table, (prompt_column, completion_column, skills_column, difficulty_column), skill_separator,
                   skills, eval_per_skill, min_pool_per_skill, seed, descriptions, prerequisites, Path(path).name)

    def _load(self, table: pa.Table, columns: tuple[str, str, str, str | None], skill_separator: str | None,
              skills: Sequence[str] | None, eval_per_skill: int, min_pool_per_skill: int, seed: int,
              descriptions: Mapping[str, str] | None, prerequisites: Mapping[str, Sequence[str]] | None,
              source: str) -> None:
        """The rows, their eval split and pool, and the skills, from a table of the ``columns`` (prompt,
        completion, skills, difficulty or None); ``source`` names the data in the skills' descriptions."""
        if eval_per_skill < 1 or min_pool_per_skill < 0:
            raise DatasetEnvError("env.eval_per_skill must be >= 1 and env.min_pool_per_skill >= 0")
        self.eval_per_skill, self.seed = eval_per_skill, seed
        # Everything below works on whole Arrow columns: no Python object per row (issue 14: a million
        # rows load in seconds). The result is the row-by-row reading of the data this env always had.
        self._rows, codes, parents, order = skill_rows(table, *columns, skill_separator, skills)
        self._codes, self._parents = codes, parents
        self._split(order, min_pool_per_skill)
        levels = levels_per_code(codes, self._rows.column("level").to_numpy()[parents], len(order))
        self.skills: tuple[Skill, ...] = _skills(order, levels, descriptions, prerequisites, source)
        self._gold: dict[str, set[str]] | None = None  # every prompt's golds, built when first needed
        self._eval_gold = golds_of(self._rows.filter(pc.is_in(self._rows.column("prompt"),
                                                            value_set=self._eval_table.column("prompt"))))
        self._eval: Dataset | None = None
        self._pool: Dataset | None = None

    def _split(self, order: list[str], min_pool: int) -> None:
        """Hold out ``eval_per_skill`` rows per skill (seeded); the rest, minus eval prompts, is the pool.

        For each skill in order, the rows that need it and are not held yet are shuffled with one
        ``random.Random(seed)`` and the first ones (as many as the skill still lacks) are held out. The
        shuffle is Python's, on the row numbers, so a file gets the same split it always got.
        """
        codes, parents, n = self._codes, self._parents, self._rows.num_rows
        counts = np.bincount(codes, minlength=len(order))
        need = self.eval_per_skill + min_pool
        thin = {s: int(c) for s, c in zip(order, counts) if c < need}
        if thin:
            raise DatasetEnvError(
                f"skills with too few rows to evaluate: {thin}; each needs env.eval_per_skill="
                f"{self.eval_per_skill} eval rows + env.min_pool_per_skill={min_pool} pool rows. Lower "
                f"eval_per_skill, add rows, or leave those skills out with env.skills"
            )
        rng = random.Random(self.seed)
        held = np.zeros(n, dtype=bool)
        for rows in rows_by_code(codes, parents, len(order)):  # each skill's rows, in row order
            already = held[rows]
            candidates = rows[~already].tolist()
            rng.shuffle(candidates)  # even when nothing is taken: the draws of the next skills depend on it
            take = self.eval_per_skill - int(already.sum())
            if take > 0:
                held[candidates[:take]] = True
        prompt = self._rows.column("prompt")
        self._eval_table = self._rows.filter(pa.array(held)).append_column(
            "source", pa.array(["eval"] * int(held.sum()), pa.string()))
        # A prompt that is also held out (a duplicate row) must never be trained on.
        in_pool = ~held & ~np.asarray(pc.is_in(prompt, value_set=self._eval_table.column("prompt")), dtype=bool)
        self._pool_table = self._rows.filter(pa.array(in_pool)).append_column(
            "source", pa.repeat("pool", int(in_pool.sum())).cast(pa.string()))
        pool_counts = np.bincount(codes[in_pool[parents]], minlength=len(order))
        short = {s: int(c) for s, c in zip(order, pool_counts) if c < min_pool}
        if short:
            raise DatasetEnvError(
                f"after holding out the eval rows (and their duplicate prompts), these skills have fewer than "
                f"env.min_pool_per_skill={min_pool} pool rows: {short}"
            )

    def eval_set(self) -> Dataset:
        """The held-out eval rows (``prompt``, ``completion``, ``skills``, ``level``, ``source``)."""
        from datasets import Dataset
        from datasets.table import InMemoryTable

        if self._eval is None:
            self._eval = Dataset(InMemoryTable(self._eval_table))
        return self._eval

    def pool(self) -> Dataset:
        """Every row not held out (and not sharing a prompt with an eval row)."""
        from datasets import Dataset
        from datasets.table import InMemoryTable

        if self._pool is None:
            self._pool = Dataset(InMemoryTable(self._pool_table))
        return self._pool

    def generate(self, skill: str, n: int, level: int | None = None, seed: int = 0) -> list[dict]:
        """This env has no generator: configure ``synthesis:`` to synthesise rows with an LLM."""
        raise NotImplementedError(
            f"env {self.name!r} (your data) has no generator; Synthesize needs the LLM data engine: add a "
            f"'synthesis:' section to the config"
        )

    def verify(self, prompt: str, output: str) -> bool:
        """True when ``output`` matches a gold completion of ``prompt`` under the checker; ``False`` for
        a prompt the data does not contain (there is no gold to check against)."""
        golds = self._eval_gold.get(prompt)
        if golds is None:
            if self._gold is None:
                self._gold = golds_of(self._rows)
            golds = self._gold.get(prompt)
        return bool(golds) and any(self._check(output, g) for g in golds)


def _skills(order: list[str], levels: list[tuple[int, ...]], descriptions: Mapping[str, str] | None,
            prerequisites: Mapping[str, Sequence[str]] | None, file: str) -> tuple[Skill, ...]:
    """The env's skills, in order of first appearance, with the descriptions and prerequisites the config gives.

    Raises:
        DatasetEnvError: A description or prerequisite names a skill the data does not have.
    """
    descriptions = dict(descriptions or {})
    prerequisites = {k: tuple(v) for k, v in (prerequisites or {}).items()}
    unknown = sorted((set(descriptions) | set(prerequisites) | {p for v in prerequisites.values() for p in v})
                     - set(order))
    if unknown:
        raise DatasetEnvError(f"env.descriptions/prerequisites name skills not in the data: {unknown}")
    return tuple(Skill(s, descriptions.get(s, f"skill {s!r} of {file}"), prerequisites.get(s, ()), levels[k])
                 for k, s in enumerate(order))
