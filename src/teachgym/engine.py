"""The data engine: turns a teacher's action into exactly ``budget`` verified training rows.

* ``Mixture`` -> split the budget over skills by weight (largest remainder), then sample each
  skill's share from the env's pool (without replacement while it lasts), or from the generator
  when the env has no pool or no pool rows of that skill. The pool stays in Arrow: its rows are
  indexed by skill once per pool (:func:`pool_index`), sampled with numpy and taken with Arrow, so
  a round costs O(budget) whatever the pool's size.
* ``Synthesize`` -> scale the requests to the budget and call the env's generator, or the LLM data
  engine (:mod:`teachgym.synthesis`) when one is configured; every row is checked by the env's
  verifier (or, for LLM rows of an env that cannot check new prompts, by self-consistency).
* ``Examples`` -> the teacher's own rows, checked by the verifier; the valid ones are cycled to
  fill the budget.

Synthesised and teacher-written rows that fail the verifier, equal an eval prompt, or repeat a
prompt already in the round are dropped and counted by reason; the engine asks the generator for
more until the budget is met. When a request is larger than the skill's whole item space (a small
level of a small skill), the distinct rows are repeated to fill it and the repeats are counted in
``DataReport.repeated``.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from teachgym.errors import TeachgymError
from teachgym.protocols import fills_requests, learns_from_counts, supports_generation
from teachgym.rows import RowFilter, arrow_table, as_label_lists, column, example_schema, normalise, pool_index
from teachgym.seeds import attempt_seed
from teachgym.synthesis import SynthesisLog
from teachgym.types import Examples, InvalidActionError, Mixture, Synthesize, validate_action

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

    from teachgym.protocols import Env
    from teachgym.synthesis import LLMSynthesizer, SynthesisLog
    from teachgym.types import Action, Failure

#: Generator calls per request before the engine gives up on filling it.
MAX_ATTEMPTS = 20


def largest_remainder(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integers proportional to ``shares`` that sum to ``total`` (Hamilton's method, stable order)."""
    s = sum(shares.values())
    if s <= 0:
        raise ValueError("shares must have a positive sum")
    exact = {k: total * v / s for k, v in shares.items()}
    counts = {k: math.floor(x) for k, x in exact.items()}
    position = {k: i for i, k in enumerate(shares)}
    order = sorted(shares, key=lambda k: (-(exact[k] - counts[k]), position[k]))
    for k in order[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


@dataclass(frozen=True)
class SkillCounts:
    """A round's training set as rows per skill, without the rows (the loop's fast path).

    The engine hands this over instead of a ``Dataset`` when the student learns from counts alone
    (``learns_from_counts``) and the env fills every ``Mixture`` and ``Synthesize`` request exactly
    (``fills_requests``): then the rows' text could not change what the student learns.
    """

    counts: dict[str, int]

    def __len__(self) -> int:
        return sum(self.counts.values())


def counts_suffice(student: Any, env: Any, synthesizer: Any = None) -> bool:
    """Whether rounds can skip building text rows: the student and the env both offer the fast path.

    An LLM data engine makes rows that may be rejected or fall short, so it always gets the full path.
    """
    return learns_from_counts(student) and fills_requests(env) and synthesizer is None


class EngineError(TeachgymError, RuntimeError):
    """The engine could not build the round's data (e.g. the generator keeps failing the verifier)."""


@dataclass
class DataReport:
    """What went into a round's training set and what was thrown away."""

    requested: dict[str, int] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    repeated: dict[str, int] = field(default_factory=dict)
    rejected_sample: list[dict[str, Any]] = field(default_factory=list)
    #: The LLM engine's bookkeeping (requested/generated/kept/shortfall, per skill) when it served the round.
    llm: SynthesisLog | None = None

    @property
    def total(self) -> int:
        """Rows in the training set."""
        return sum(self.sources.values())


def _generate(
    env: Env, skill: str, n: int, level: int | None, seed: int, filt: RowFilter, report: DataReport
) -> list[dict]:
    if not supports_generation(env):
        raise EngineError(f"env {env.name!r} has no generator to synthesise {skill!r} from")
    rows: list[dict] = []
    stale = 0
    for attempt in range(MAX_ATTEMPTS):
        before = len(rows)
        for row in env.generate(skill, n - len(rows), level=level, seed=attempt_seed(seed, attempt)):
            if len(rows) < n and filt.keep(row):
                rows.append(normalise(row, "generator"))
        if len(rows) == n:
            return rows
        stale = stale + 1 if len(rows) == before else 0
        if stale >= 3:  # nothing new three times running: the skill's item space is used up
            break
    if not rows:
        raise EngineError(
            f"the generator gave no usable rows for {skill!r} (level {level}) after {attempt + 1} attempts; "
            f"dropped: {dict(filt.dropped)}"
        )
    # The request is larger than the skill's (level's) item space: repeat the distinct rows, and say
    # so, rather than fail the round or hand the budget to another skill.
    report.repeated[skill] = report.repeated.get(skill, 0) + n - len(rows)
    return [rows[i % len(rows)] for i in range(n)]


def _sample(idx: np.ndarray, n: int, gen: np.random.Generator) -> np.ndarray:
    """``n`` of ``idx``: without replacement while they last, then again from a fresh permutation."""
    full, rest = divmod(n, len(idx))
    parts = [gen.permutation(idx) for _ in range(full)]
    if rest:
        parts.append(idx[gen.choice(len(idx), rest, replace=False)])
    return np.concatenate(parts)


def _take(pool: Dataset, picks: np.ndarray) -> Any:
    """The pool's rows ``picks`` as a table with the example schema (what ``_normalise`` does, by column)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = arrow_table(pool).take(pa.array(picks))
    n = table.num_rows
    names = table.column_names
    level = table.column("level").combine_chunks().fill_null(1) if "level" in names else pa.repeat(1, n)
    source = pa.repeat("pool", n).cast(pa.string())
    if "source" in names:
        given = table.column("source").combine_chunks().cast(pa.string())
        source = pc.if_else(pc.fill_null(pc.greater(pc.utf8_length(given), 0), False), given, source)
    return pa.table({
        "prompt": table.column("prompt").combine_chunks().cast(pa.string()),
        "completion": table.column("completion").combine_chunks().cast(pa.string()),
        "skills": as_label_lists(table.column("skills").combine_chunks()).cast(pa.list_(pa.string())),
        "level": level.cast(pa.int64()),
        "source": source,
    }, schema=example_schema())


def _synthesize_llm(
    synthesizer: LLMSynthesizer,
    env: Env,
    skill: str,
    n: int,
    level: int | None,
    seed: int,
    filt: RowFilter,
    report: DataReport,
    failures: Sequence[Failure],
) -> list[dict]:
    """Rows from the LLM engine; a shortfall is filled from the env's own sources (or is an error)."""
    got, log = synthesizer.synthesize(env, skill, n, level, seed, filt, failures)
    report.llm = report.llm or SynthesisLog()
    report.llm.add(log)
    rows = [normalise(r, "llm") for r in got]
    short = n - len(rows)
    if not short:
        return rows
    if synthesizer.cfg.on_shortfall == "error":
        raise EngineError(
            f"the LLM engine kept {len(rows)} of {n} rows for {skill!r} after {synthesizer.cfg.max_attempts} "
            f"attempts (rejected: {dict(filt.dropped)}); synthesis.on_shortfall=error"
        )
    report.llm.shortfall += short
    if supports_generation(env):
        return rows + _generate(env, skill, short, level, seed, filt, report)
    pool = env.pool()
    index = pool_index(env, pool) if pool is not None else None
    idx = index.rows.get(skill) if index is not None else None
    if idx is None:
        raise EngineError(f"the LLM engine fell short for {skill!r} and env {env.name!r} has no rows of it to fill in")
    if level is not None:
        at_level = idx[index.levels[idx] == level]
        idx = at_level if len(at_level) else idx
    return rows + _take(pool, _sample(idx, short, np.random.default_rng(seed))).to_pylist()


def _split_requests(action: Synthesize, budget: int, report: DataReport) -> list[tuple[tuple[str, int | None], int]]:
    """The budget split over the action's (skill, level) requests by their ``n`` (largest remainder); the report
    records what each skill asked for."""
    shares: dict[tuple[str, int | None], float] = defaultdict(float)
    for r in action.requests:
        shares[(r.skill, r.level)] += r.n
    keys = list(shares)
    counts_by_key = largest_remainder({str(i): shares[k] for i, k in enumerate(keys)}, budget)
    for i, (skill, _) in enumerate(keys):
        report.requested[skill] = report.requested.get(skill, 0) + counts_by_key[str(i)]
    return [(key, counts_by_key[str(i)]) for i, key in enumerate(keys)]


def _shuffled(pool: Any, picks: list[np.ndarray], rows: list[dict], budget: int, gen: np.random.Generator, env: Env,
              filt: RowFilter, report: DataReport) -> Dataset:
    """The pool rows picked and the rows built, as one shuffled ``Dataset`` of ``budget`` rows; the report gets
    what was dropped, each source's count and each skill's."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets import Dataset
    from datasets.table import InMemoryTable

    parts = [_take(pool, np.concatenate(picks))] if picks else []
    if rows or not parts:
        parts.append(pa.Table.from_pylist(rows, schema=example_schema()))
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    assert table.num_rows == budget, (table.num_rows, budget)
    table = table.take(pa.array(gen.permutation(budget)))
    report.dropped = dict(filt.dropped)
    report.sources = _value_counts(table.column("source"))
    report.examples = {s.name: 0 for s in env.skills}
    report.examples.update(_value_counts(pc.list_flatten(table.column("skills"))))
    return Dataset(InMemoryTable(table))


def materialize(
    action: Action,
    env: Env,
    budget: int,
    seed: int,
    eval_prompts: set[str] | None = None,
    synthesizer: LLMSynthesizer | None = None,
    failures: Sequence[Failure] = (),
    counts_only: bool = False,
) -> tuple[Dataset | SkillCounts, DataReport]:
    """Build the round's training set from an action.

    Args:
        action: The teacher's decision (validated here first).
        env: Where data comes from and how it is verified.
        budget: Exact number of rows to return (``examples_per_round``).
        seed: Makes sampling reproducible; vary it per round.
        eval_prompts: Prompts that must never be trained on (default: the env's eval set).
        synthesizer: The LLM data engine; when given, it serves ``Synthesize`` instead of the env's generator.
        failures: The student's recent failures, shown to the LLM engine.
        counts_only: Return :class:`SkillCounts` for a ``Mixture`` or ``Synthesize`` (see :func:`counts_suffice`);
            the report says what the rows would have been.

    Returns:
        The rows as a shuffled ``datasets.Dataset`` with :data:`EXAMPLE_COLUMNS`, and a report.

    Raises:
        InvalidActionError: The action is malformed (before any data is built).
        EngineError: The data sources cannot fill the budget.
    """
    validate_action(action, env.skills)
    if eval_prompts is None:
        eval_prompts = set(column(env.eval_set(), "prompt"))
    rng = random.Random(seed)  # the generator's seeds
    gen = np.random.default_rng(seed)  # pool rows and the round's order
    report = DataReport()
    filt = RowFilter(env, eval_prompts, report.rejected_sample)
    rows: list[dict] = []
    picks: list[np.ndarray] = []  # pool row numbers, taken in one go at the end
    pool = None

    if isinstance(action, Mixture):
        weights = {s.name: float(action.weights.get(s.name, 0.0)) for s in env.skills}
        counts = largest_remainder(weights, budget)
        report.requested = {k: v for k, v in counts.items() if v}
        pool = env.pool()
        by_skill = pool_index(env, pool).rows if pool is not None else {}
        if counts_only:
            from_pool = sum(n for s, n in report.requested.items() if s in by_skill)
            return _counted(report, env, {"pool": from_pool, "generator": budget - from_pool})
        for skill, n in report.requested.items():
            idx = by_skill.get(skill)
            if idx is None:
                rows += _generate(env, skill, n, None, rng.randrange(2**31), filt, report)
            else:
                picks.append(_sample(idx, n, gen))
    elif isinstance(action, Synthesize):
        requests = _split_requests(action, budget, report)
        if counts_only and synthesizer is None:
            return _counted(report, env, {"generator": budget})
        for (skill, level), n in requests:
            if n and synthesizer is not None:
                rows += _synthesize_llm(synthesizer, env, skill, n, level, rng.randrange(2**31), filt, report, failures)
            elif n:
                rows += _generate(env, skill, n, level, rng.randrange(2**31), filt, report)
    elif isinstance(action, Examples):
        valid = [normalise(r, "teacher") for r in action.rows if filt.keep(r)]
        if not valid:
            raise InvalidActionError(
                f"none of the teacher's {len(action.rows)} rows passed the verifier and the eval-overlap "
                f"check (dropped: {dict(filt.dropped)}); nothing to train on"
            )
        report.requested = dict(Counter(s for r in valid for s in r["skills"]))
        rows = [valid[i % len(valid)] for i in range(budget)]

    return _shuffled(pool, picks, rows, budget, gen, env, filt, report), report


def _counted(report: DataReport, env: Env, sources: dict[str, int]) -> tuple[SkillCounts, DataReport]:
    """The fast path's answer: the requested rows per skill, and the report the rows would have had."""
    report.requested = {k: v for k, v in report.requested.items() if v}
    report.sources = {k: v for k, v in sources.items() if v}
    report.examples = {s.name: report.requested.get(s.name, 0) for s in env.skills}
    return SkillCounts(dict(report.requested)), report


def _value_counts(column: Any) -> dict[str, int]:
    """``{value: count}`` of an Arrow column, in order of first appearance."""
    import pyarrow.compute as pc

    counts = pc.value_counts(column)
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
