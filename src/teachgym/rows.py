"""Rows in Arrow: the pool's index by skill, column access, the example schema and the row filter.

The layer under the data engine (:mod:`teachgym.engine`), the LLM data engine (:mod:`teachgym.synthesis`)
and the bring-your-own-data env (``envs/dataset.py``): each reads and checks rows the same way, and none
of them needs another to do it.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

    from teachgym.protocols import Env


def normalise(row: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A row with exactly :data:`~teachgym.types.EXAMPLE_COLUMNS`, typed (``source`` filled in when missing)."""
    skills = row["skills"]
    return {
        "prompt": str(row["prompt"]),
        "completion": str(row["completion"]),
        "skills": [skills] if isinstance(skills, str) else [str(s) for s in skills],
        "level": int(row["level"]) if row.get("level") is not None else 1,  # 0 is a level (your data's)
        "source": str(row.get("source") or source),
    }


class RowFilter:
    """Drops rows that fail the verifier, equal an eval prompt, or repeat a prompt; counts why."""

    def __init__(self, env: Env, eval_prompts: set[str], rejected_sample: list[dict[str, Any]]) -> None:
        self.env, self.eval_prompts, self.rejected_sample = env, eval_prompts, rejected_sample
        self.seen: set[str] = set()
        self.dropped: Counter[str] = Counter()

    def reject(self, row: Mapping[str, Any], reason: str) -> None:
        """Count a dropped row and keep the first few as a sample."""
        self.dropped[reason] += 1
        if len(self.rejected_sample) < 20:
            self.rejected_sample.append({"reason": reason, **normalise(row, "?")})

    def admissible(self, row: Mapping[str, Any], dedupe: bool = True) -> bool:
        """The cheap checks: not an eval prompt, not already in the round (rejections are counted)."""
        if row["prompt"] in self.eval_prompts:
            self.reject(row, "eval_overlap")
            return False
        if dedupe and row["prompt"] in self.seen:
            self.reject(row, "duplicate")
            return False
        return True

    def keep(self, row: Mapping[str, Any], dedupe: bool = True, verify: bool = True) -> bool:
        """Every check (``verify=False`` when the row was checked another way, e.g. self-consistency)."""
        reason = None
        if row["prompt"] in self.eval_prompts:
            reason = "eval_overlap"
        elif verify and not self.env.verify(row["prompt"], row["completion"]):
            reason = "failed_verifier"
        elif dedupe and row["prompt"] in self.seen:
            reason = "duplicate"
        if reason:
            self.reject(row, reason)
            return False
        self.seen.add(row["prompt"])
        return True


@dataclass
class PoolIndex:
    """An env's pool by skill: the row numbers of each skill (ascending) and every row's level."""

    rows: dict[str, np.ndarray]
    levels: np.ndarray
    fingerprint: str | None = None


_INDEXES: weakref.WeakKeyDictionary[Any, PoolIndex] = weakref.WeakKeyDictionary()


def pool_index(env: Env, pool: Dataset) -> PoolIndex:
    """The pool's rows by skill, computed from its ``skills`` column once and kept while the pool is the same."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fingerprint = getattr(pool, "_fingerprint", None)
    try:
        cached = _INDEXES.get(env)
    except TypeError:  # an env that cannot be weakly referenced: index every round
        cached = None
    if cached is not None and fingerprint is not None and cached.fingerprint == fingerprint:
        return cached
    table = arrow_table(pool)
    names = [s.name for s in env.skills]
    labels = as_label_lists(table.column("skills").combine_chunks())
    parents = np.asarray(pc.list_parent_indices(labels), dtype=np.int64)
    codes = pc.index_in(pc.list_flatten(labels), value_set=pa.array(names, pa.string()))
    known = np.asarray(codes.is_valid(), dtype=bool)
    codes = np.asarray(codes.fill_null(0), dtype=np.int64)[known]
    rows = {s: r for s, r in zip(names, rows_by_code(codes, parents[known], len(names))) if len(r)}
    if "level" in table.column_names:
        levels = np.asarray(table.column("level").combine_chunks().fill_null(1), dtype=np.int64)
    else:
        levels = np.ones(table.num_rows, dtype=np.int64)
    index = PoolIndex(rows, levels, fingerprint)
    try:
        _INDEXES[env] = index
    except TypeError:
        pass
    return index


def rows_by_code(codes: np.ndarray, rows: np.ndarray, k: int) -> list[np.ndarray]:
    """For each code ``0..k-1``, the ``rows`` paired with it, in their order (one stable sort, no Python loop)."""
    ends = np.cumsum(np.bincount(codes, minlength=k)).tolist()
    grouped = rows[np.argsort(codes, kind="stable")]
    return [grouped[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def arrow_table(data: Dataset) -> Any:
    """A dataset's rows as one ``pyarrow.Table`` (a selection is taken once)."""
    if data._indices is not None:
        data = data.flatten_indices(keep_in_memory=True)
    return data.data.table


def column(data: Dataset, name: str) -> list:
    """One column as a Python list, converted by Arrow in one go (iterating ``data[name]`` decodes row by row)."""
    return arrow_table(data).column(name).to_pylist()


def as_label_lists(column: Any) -> Any:
    """A ``skills`` column as lists of labels (a plain string column is one label per row)."""
    import pyarrow as pa

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        valid = np.asarray(column.is_valid(), dtype=bool)
        offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), column.filter(pa.array(valid)).cast(pa.string()))
    return column


def example_schema() -> Any:
    """The Arrow schema of a round's training rows (:data:`EXAMPLE_COLUMNS`)."""
    import pyarrow as pa

    return pa.schema([("prompt", pa.string()), ("completion", pa.string()), ("skills", pa.list_(pa.string())),
                      ("level", pa.int64()), ("source", pa.string())])
