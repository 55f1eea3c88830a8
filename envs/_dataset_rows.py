"""The dataset env's rows, read from the file's columns: labels split and coded, difficulties read, rows kept
or dropped, all with whole-column Arrow operations (:func:`skill_rows`)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from teachgym.errors import TeachgymError
from teachgym.rows import arrow_table, as_label_lists

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class DatasetEnvError(TeachgymError, ValueError):
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


def read_columns(path: str | Path, format: str, split: str, prompt_column: str, completion_column: str,
                 skills_column: str, difficulty_column: str | None) -> pa.Table:
    """The file's columns the env reads, as an Arrow table.

    Raises:
        DatasetEnvError: A named column is missing (its option is named, with the near column), or no rows.
    """
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
    table = arrow_table(data.select_columns(list(needed.values())))
    if table.num_rows == 0:
        raise DatasetEnvError(f"env.path: {Path(path).name} has no rows")
    return table


def skill_rows(table: pa.Table, prompt_column: str, completion_column: str, skills_column: str,
               difficulty_column: str | None, skill_separator: str | None, skills: Sequence[str] | None
               ) -> tuple[pa.Table, np.ndarray, np.ndarray, list[str]]:
    """The env's rows from the file's columns, on whole Arrow columns (no Python object per row: a million rows
    load in seconds; the result is the row-by-row reading of the data this env always had).

    Returns:
        The rows (``prompt``, ``completion``, ``skills``, ``level``), and per (row, skill) label its skill code
        and row number, and the skills in order of first appearance.

    Raises:
        DatasetEnvError: Rows without skills, a difficulty that is not an integer, an empty prompt or
            completion, or wanted ``skills`` the data lacks.
    """
    labels = _label_lists(table.column(skills_column), skill_separator)
    parents = np.asarray(pc.list_parent_indices(labels), dtype=np.int64)
    values = pc.list_flatten(labels)
    empty = np.flatnonzero(np.bincount(parents, minlength=table.num_rows) == 0)
    if len(empty):
        rows_ = empty[:10].tolist()
        raise DatasetEnvError(
            f"env.skills_column: {len(empty)} row(s) have no skill in {skills_column!r} "
            f"(rows {rows_}{' ...' if len(empty) > 10 else ''}); every row needs at least one label"
        )
    wanted = list(dict.fromkeys(skills)) if skills is not None else None
    if wanted is not None:  # rows with none of the wanted skills are dropped, the others lose the rest
        keep_label = np.asarray(pc.is_in(values, value_set=pa.array(wanted, pa.string())), dtype=bool)
        values, parents = values.filter(pa.array(keep_label)), parents[keep_label]
    kept = np.zeros(table.num_rows, dtype=bool)
    kept[parents] = True
    level = np.ones(table.num_rows, dtype=np.int64)
    if difficulty_column:
        level, ok = _levels(table.column(difficulty_column))
        bad = np.flatnonzero(kept & ~ok)
        if len(bad):
            shown = table.column(difficulty_column).take(pa.array(bad[:3])).to_pylist()
            raise DatasetEnvError(
                f"env.difficulty_column: {difficulty_column!r} must hold integers (easiest first); "
                f"rows {bad[:10].tolist()} have {shown}"
            )
    prompt = _strings(table.column(prompt_column))
    completion = _strings(table.column(completion_column))
    missing = np.asarray(pc.or_kleene(pc.is_null(prompt), pc.is_null(completion)), dtype=bool)
    missing |= np.asarray(pc.fill_null(pc.equal(prompt, ""), False), dtype=bool)
    missing &= kept
    if missing.any():
        raise DatasetEnvError(f"row {int(np.flatnonzero(missing)[0])}: empty {prompt_column!r} or "
                              f"{completion_column!r}")
    # Renumber the kept rows 0..n-1 and give each skill a code, in order of first appearance.
    renumber = np.cumsum(kept) - 1
    parents = renumber[parents]
    encoded = pc.dictionary_encode(values)
    order = encoded.dictionary.to_pylist()
    codes = np.asarray(encoded.indices, dtype=np.int64)
    # A label repeated within a row counts once (its first occurrence).
    first = np.unique(parents * len(order) + codes, return_index=True)[1]
    if len(first) < len(codes):
        first.sort()
        parents, codes = parents[first], codes[first]
    if wanted is not None:
        absent = sorted(set(wanted) - set(order))
        if absent:
            raise DatasetEnvError(f"env.skills: {absent} not found in the data; skills there: {order}")
    every = bool(kept.all())  # the common case: no copy (columns read from disk stay memory-mapped)
    keep_rows = pa.array(kept)
    rows = pa.table({
        "prompt": prompt if every else prompt.filter(keep_rows),
        "completion": completion if every else completion.filter(keep_rows),
        "skills": _lists(parents, pa.array(order, pa.string()).take(pa.array(codes)), int(kept.sum())),
        "level": pa.array(level if every else level[kept], pa.int64()),
    })
    return rows, codes, parents, order


def labels_of(value: Any, separator: str | None) -> list[str]:
    """One row's skill labels, read row by row (the fallback for columns Arrow cannot split)."""
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split(separator) if separator else [value]
    else:
        parts = [str(v) for v in value if v is not None]
    return list(dict.fromkeys(p.strip() for p in parts if str(p).strip()))


def level_of(value: Any) -> int | None:
    """One row's integer difficulty, read row by row (None: not an integer)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


# -- whole-column helpers (Arrow in, Arrow or numpy out) -----------------------------------------


def _strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column as strings, each value as ``str(value)`` would write it (nulls stay null)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_integer(column.type):
        return column.cast(pa.string())  # no copy for strings: memory-mapped chunks stay mapped
    # Floats, dates, nested values: Python's own spelling (Arrow writes 2.0 as "2", str() as "2.0").
    return pa.chunked_array([pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())])


def _label_lists(column: pa.ChunkedArray, separator: str | None) -> pa.ListArray:
    """Each row's skill labels as a list: split on ``separator`` when given, stripped, empty ones dropped."""
    column = column.combine_chunks()
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        lists = pc.split_pattern(column.cast(pa.string()), separator) if separator else as_label_lists(column)
    elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and (
            pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
            or pa.types.is_integer(kind.value_type)):
        lists = column
    else:  # anything else (mixed JSON values, floats, ...): the row-by-row reading, once
        return pa.array([labels_of(v, separator) for v in column.to_pylist()], pa.list_(pa.string()))
    parents = np.asarray(pc.list_parent_indices(lists), dtype=np.int64)
    values = pc.utf8_trim_whitespace(pc.list_flatten(lists).cast(pa.string()))
    keep = np.asarray(pc.fill_null(pc.greater(pc.utf8_length(values), 0), False), dtype=bool)
    return _lists(parents[keep], values.filter(pa.array(keep)), len(column))


def _lists(parents: np.ndarray, values: pa.Array, rows: int) -> pa.ListArray:
    """A list column of ``rows`` rows from flat ``values`` and their (non-decreasing) row numbers."""
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(parents, minlength=rows), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


_INT = re.compile(r"^\s*-?\d+\s*$")


def _levels(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Integer difficulties and which rows have one (ints, whole floats, digit strings; not bools or nulls)."""
    column = column.combine_chunks()
    kind = column.type
    valid = np.asarray(column.is_valid(), dtype=bool)
    if pa.types.is_integer(kind):
        return np.asarray(column.fill_null(0), dtype=np.int64), valid
    if pa.types.is_floating(kind):
        x = np.asarray(column.fill_null(0.5), dtype=np.float64)
        ok = valid & np.isfinite(x) & (x == np.floor(x))
        return np.where(ok, x, 0).astype(np.int64), ok
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        ok = np.asarray(pc.fill_null(pc.match_substring_regex(column, _INT.pattern), False), dtype=bool)
        text = pc.if_else(pa.array(ok), column, "0")
        return np.asarray(pc.cast(pc.utf8_trim_whitespace(text), pa.int64()), dtype=np.int64), ok
    values = [level_of(v) for v in column.to_pylist()]  # bools, mixed values: row by row
    ok = np.array([v is not None for v in values], dtype=bool)
    return np.array([v if v is not None else 0 for v in values], dtype=np.int64), ok


def levels_per_code(codes: np.ndarray, levels: np.ndarray, k: int) -> list[tuple[int, ...]]:
    """The sorted distinct levels of each skill code."""
    low, span = (int(levels.min()), int(levels.max()) - int(levels.min()) + 1) if len(levels) else (0, 1)
    pairs = np.unique(codes * span + (levels - low))
    out: list[list[int]] = [[] for _ in range(k)]
    for code, lv in zip((pairs // span).tolist(), (pairs % span + low).tolist()):
        out[code].append(lv)
    return [tuple(v) for v in out]


def golds_of(rows: pa.Table) -> dict[str, set[str]]:
    """``{prompt: {gold completions}}`` of some rows."""
    golds: dict[str, set[str]] = {}
    for p, c in zip(rows.column("prompt").to_pylist(), rows.column("completion").to_pylist()):
        golds.setdefault(p, set()).add(c)
    return golds
