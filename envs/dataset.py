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
from typing import TYPE_CHECKING, Any

from teachgym.types import Skill

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

CHECKERS = ("exact", "numeric", "regex")
_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class DatasetEnvError(ValueError):
    """The data or the env's options cannot make an env (the message says what and where)."""


def load_rows(path: str | Path, format: str = "auto", split: str = "train") -> Dataset:
    """Load a local file or ``save_to_disk`` directory as a ``datasets.Dataset`` (never downloads)."""
    import datasets

    p = Path(path)
    if not p.exists():
        raise DatasetEnvError(f"env.path: {str(p)!r} does not exist")
    if format == "auto":
        if p.is_dir():
            format = "disk"
        elif p.suffix.lower() in _FORMATS:
            format = _FORMATS[p.suffix.lower()]
        else:
            raise DatasetEnvError(
                f"env.path: cannot tell the format of {p.name!r} from its suffix; set env.format to one of "
                f"json, csv, parquet, disk"
            )
    if format == "disk":
        data = datasets.load_from_disk(str(p))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise DatasetEnvError(f"env.split: {str(p)!r} has splits {list(data)}, not {split!r}")
            data = data[split]
        return data
    loaders = {"json": datasets.Dataset.from_json, "csv": datasets.Dataset.from_csv,
               "parquet": datasets.Dataset.from_parquet}
    if format not in loaders:
        raise DatasetEnvError(f"env.format must be auto, json, csv, parquet or disk, not {format!r}")
    return loaders[format](str(p), keep_in_memory=True)


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
        from teachgym.registry import RegistryError, _import

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
        f"env.checker: unknown checker {checker!r}{hint} Use exact, numeric, regex or 'package.module:function'"
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
            checker: ``exact``, ``numeric``, ``regex`` or ``package.module:function(output, gold) -> bool``.
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
        self.eval_per_skill, self.seed = eval_per_skill, seed
        self._check = make_checker(checker, pattern, tolerance, case_sensitive)
        data = load_rows(path, format, split)
        needed = {"prompt_column": prompt_column, "completion_column": completion_column,
                  "skills_column": skills_column}
        if difficulty_column:
            needed["difficulty_column"] = difficulty_column
        for option, column in needed.items():
            if column not in data.column_names:
                near = difflib.get_close_matches(column, data.column_names, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise DatasetEnvError(
                    f"env.{option}: column {column!r} is not in {Path(path).name}{hint} "
                    f"(columns: {', '.join(data.column_names)})"
                )
        columns = [prompt_column, completion_column, skills_column] + ([difficulty_column] if difficulty_column else [])
        raw = data.select_columns(columns).to_list()
        if not raw:
            raise DatasetEnvError(f"env.path: {Path(path).name} has no rows")
        wanted = set(skills) if skills is not None else None
        rows, empty, bad_level = [], [], []
        for i, r in enumerate(raw):
            labels = self._labels(r[skills_column], skill_separator)
            if not labels:
                empty.append(i)
                continue
            if wanted is not None:
                labels = [s for s in labels if s in wanted]
                if not labels:
                    continue
            level = 1
            if difficulty_column:
                level = self._level(r[difficulty_column])
                if level is None:
                    bad_level.append((i, r[difficulty_column]))
                    continue
            if r[prompt_column] is None or r[completion_column] is None or str(r[prompt_column]) == "":
                raise DatasetEnvError(f"row {i}: empty {prompt_column!r} or {completion_column!r}")
            rows.append({"prompt": str(r[prompt_column]), "completion": str(r[completion_column]),
                         "skills": labels, "level": level})
        if empty:
            raise DatasetEnvError(
                f"env.skills_column: {len(empty)} row(s) have no skill in {skills_column!r} "
                f"(rows {empty[:10]}{' ...' if len(empty) > 10 else ''}); every row needs at least one label"
            )
        if bad_level:
            raise DatasetEnvError(
                f"env.difficulty_column: {difficulty_column!r} must hold integers (easiest first); "
                f"rows {[i for i, _ in bad_level[:10]]} have {[v for _, v in bad_level[:3]]}"
            )
        order = list(dict.fromkeys(s for r in rows for s in r["skills"]))
        if wanted is not None:
            absent = sorted(wanted - set(order))
            if absent:
                raise DatasetEnvError(f"env.skills: {absent} not found in the data; skills there: {order}")
        self._split(rows, order, min_pool_per_skill)
        descriptions = dict(descriptions or {})
        prerequisites = {k: tuple(v) for k, v in (prerequisites or {}).items()}
        unknown = sorted((set(descriptions) | set(prerequisites) | {p for v in prerequisites.values() for p in v})
                         - set(order))
        if unknown:
            raise DatasetEnvError(f"env.descriptions/prerequisites name skills not in the data: {unknown}")
        levels = {s: sorted({r["level"] for r in rows if s in r["skills"]}) for s in order}
        self.skills: tuple[Skill, ...] = tuple(
            Skill(s, descriptions.get(s, f"skill {s!r} of {Path(path).name}"), prerequisites.get(s, ()),
                  tuple(levels[s]))
            for s in order
        )
        self._gold: dict[str, set[str]] = {}
        for r in rows:
            self._gold.setdefault(r["prompt"], set()).add(r["completion"])
        self._eval: Dataset | None = None
        self._pool: Dataset | None = None

    @staticmethod
    def _labels(value: Any, separator: str | None) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            parts = value.split(separator) if separator else [value]
        else:
            parts = [str(v) for v in value if v is not None]
        return list(dict.fromkeys(p.strip() for p in parts if str(p).strip()))

    @staticmethod
    def _level(value: Any) -> int | None:
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return None

    def _split(self, rows: list[dict], order: list[str], min_pool: int) -> None:
        """Hold out ``eval_per_skill`` rows per skill (seeded); the rest, minus eval prompts, is the pool."""
        counts = {s: 0 for s in order}
        for r in rows:
            for s in r["skills"]:
                counts[s] += 1
        need = self.eval_per_skill + min_pool
        thin = {s: n for s, n in counts.items() if n < need}
        if thin:
            raise DatasetEnvError(
                f"skills with too few rows to evaluate: {thin}; each needs env.eval_per_skill="
                f"{self.eval_per_skill} eval rows + env.min_pool_per_skill={min_pool} pool rows. Lower "
                f"eval_per_skill, add rows, or leave those skills out with env.skills"
            )
        rng = random.Random(self.seed)
        held: set[int] = set()
        for s in order:
            have = sum(1 for i in held if s in rows[i]["skills"])
            candidates = [i for i, r in enumerate(rows) if s in r["skills"] and i not in held]
            rng.shuffle(candidates)
            held.update(candidates[: max(0, self.eval_per_skill - have)])
        eval_prompts = {rows[i]["prompt"] for i in held}
        # A prompt that is also held out (a duplicate row) must never be trained on.
        self._eval_rows = [{**rows[i], "source": "eval"} for i in sorted(held)]
        self._pool_rows = [{**r, "source": "pool"} for i, r in enumerate(rows)
                           if i not in held and r["prompt"] not in eval_prompts]
        short = {s: n for s in order
                 if (n := sum(1 for r in self._pool_rows if s in r["skills"])) < min_pool}
        if short:
            raise DatasetEnvError(
                f"after holding out the eval rows (and their duplicate prompts), these skills have fewer than "
                f"env.min_pool_per_skill={min_pool} pool rows: {short}"
            )

    def eval_set(self) -> Dataset:
        """The held-out eval rows (``prompt``, ``completion``, ``skills``, ``level``, ``source``)."""
        from datasets import Dataset

        if self._eval is None:
            self._eval = Dataset.from_list(self._eval_rows)
        return self._eval

    def pool(self) -> Dataset:
        """Every row not held out (and not sharing a prompt with an eval row)."""
        from datasets import Dataset

        if self._pool is None:
            self._pool = Dataset.from_list(self._pool_rows)
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
        golds = self._gold.get(prompt)
        return bool(golds) and any(self._check(output, g) for g in golds)
