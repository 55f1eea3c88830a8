"""The data engine: turns a teacher's action into exactly ``budget`` verified training rows.

* ``Mixture`` -> split the budget over skills by weight (largest remainder), then sample each
  skill's share from the env's pool (without replacement while it lasts), or from the generator
  when the env has no pool or no pool rows of that skill.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teachgym.types import EXAMPLE_COLUMNS, Examples, InvalidActionError, Mixture, Synthesize, validate_action

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
    order = sorted(shares, key=lambda k: (-(exact[k] - counts[k]), list(shares).index(k)))
    for k in order[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


class EngineError(RuntimeError):
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


class _Filter:
    """Drops rows that fail the verifier, equal an eval prompt, or repeat a prompt; counts why."""

    def __init__(self, env: Env, eval_prompts: set[str], report: DataReport) -> None:
        self.env, self.eval_prompts, self.report = env, eval_prompts, report
        self.seen: set[str] = set()
        self.dropped: Counter[str] = Counter()

    def reject(self, row: Mapping[str, Any], reason: str) -> None:
        """Count a dropped row and keep the first few as a sample."""
        self.dropped[reason] += 1
        if len(self.report.rejected_sample) < 20:
            self.report.rejected_sample.append({"reason": reason, **_normalise(row, "?")})

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


def _normalise(row: Mapping[str, Any], source: str) -> dict[str, Any]:
    skills = row["skills"]
    return {
        "prompt": str(row["prompt"]),
        "completion": str(row["completion"]),
        "skills": [skills] if isinstance(skills, str) else [str(s) for s in skills],
        "level": int(row["level"]) if row.get("level") is not None else 1,  # 0 is a level (your data's)
        "source": str(row.get("source") or source),
    }


def _generate(
    env: Env, skill: str, n: int, level: int | None, seed: int, filt: _Filter, report: DataReport
) -> list[dict]:
    if not getattr(env, "supports_generation", False):
        raise EngineError(f"env {env.name!r} has no generator to synthesise {skill!r} from")
    rows: list[dict] = []
    stale = 0
    for attempt in range(MAX_ATTEMPTS):
        before = len(rows)
        for row in env.generate(skill, n - len(rows), level=level, seed=seed * 1000 + attempt):
            if len(rows) < n and filt.keep(row):
                rows.append(_normalise(row, "generator"))
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


def _pool_rows(pool: Dataset, idx: list[int], n: int, rng: random.Random) -> list[dict]:
    """``n`` rows of ``idx``: without replacement while they last, then again from a fresh permutation."""
    picks: list[int] = []
    while len(picks) < n:
        perm = list(idx)
        rng.shuffle(perm)
        picks += perm[: n - len(picks)]
    # to_list() converts the Arrow rows in one go; iterating a Dataset decodes row by row (~50x slower).
    return [_normalise(r, "pool") for r in pool.select(picks).to_list()]


def _synthesize_llm(
    synthesizer: LLMSynthesizer,
    env: Env,
    skill: str,
    n: int,
    level: int | None,
    seed: int,
    filt: _Filter,
    report: DataReport,
    failures: Sequence[Failure],
) -> list[dict]:
    """Rows from the LLM engine; a shortfall is filled from the env's own sources (or is an error)."""
    from teachgym.synthesis import SynthesisLog

    got, log = synthesizer.synthesize(env, skill, n, level, seed, filt, failures)
    report.llm = report.llm or SynthesisLog()
    report.llm.add(log)
    rows = [_normalise(r, "llm") for r in got]
    short = n - len(rows)
    if not short:
        return rows
    if synthesizer.cfg.on_shortfall == "error":
        raise EngineError(
            f"the LLM engine kept {len(rows)} of {n} rows for {skill!r} after {synthesizer.cfg.max_attempts} "
            f"attempts (rejected: {dict(filt.dropped)}); synthesis.on_shortfall=error"
        )
    report.llm.shortfall += short
    if getattr(env, "supports_generation", False):
        return rows + _generate(env, skill, short, level, seed, filt, report)
    pool = env.pool()
    idx = [i for i, s in enumerate(pool["skills"]) if skill in s] if pool is not None else []
    if level is not None and idx:
        levels = pool["level"]  # the whole column at once; pool[i] would decode a row per index
        idx = [i for i in idx if levels[i] == level] or idx
    if not idx:
        raise EngineError(f"the LLM engine fell short for {skill!r} and env {env.name!r} has no rows of it to fill in")
    return rows + _pool_rows(pool, idx, short, random.Random(seed))


def materialize(
    action: Action,
    env: Env,
    budget: int,
    seed: int,
    eval_prompts: set[str] | None = None,
    synthesizer: LLMSynthesizer | None = None,
    failures: Sequence[Failure] = (),
) -> tuple[Dataset, DataReport]:
    """Build the round's training set from an action.

    Args:
        action: The teacher's decision (validated here first).
        env: Where data comes from and how it is verified.
        budget: Exact number of rows to return (``examples_per_round``).
        seed: Makes sampling reproducible; vary it per round.
        eval_prompts: Prompts that must never be trained on (default: the env's eval set).
        synthesizer: The LLM data engine; when given, it serves ``Synthesize`` instead of the env's generator.
        failures: The student's recent failures, shown to the LLM engine.

    Returns:
        The rows as a shuffled ``datasets.Dataset`` with :data:`EXAMPLE_COLUMNS`, and a report.

    Raises:
        InvalidActionError: The action is malformed (before any data is built).
        EngineError: The data sources cannot fill the budget.
    """
    from datasets import Dataset

    validate_action(action, env.skills)
    if eval_prompts is None:
        eval_prompts = set(env.eval_set()["prompt"])
    rng = random.Random(seed)
    report = DataReport()
    filt = _Filter(env, eval_prompts, report)
    rows: list[dict] = []

    if isinstance(action, Mixture):
        weights = {s.name: float(action.weights.get(s.name, 0.0)) for s in env.skills}
        counts = largest_remainder(weights, budget)
        report.requested = {k: v for k, v in counts.items() if v}
        pool = env.pool()
        by_skill: dict[str, list[int]] = defaultdict(list)
        if pool is not None:
            for i, skills in enumerate(pool["skills"]):
                for s in skills:
                    by_skill[s].append(i)
        for skill, n in counts.items():
            if n == 0:
                continue
            idx = by_skill.get(skill)
            if not idx:
                rows += _generate(env, skill, n, None, rng.randrange(2**31), filt, report)
                continue
            rows += _pool_rows(pool, idx, n, rng)
    elif isinstance(action, Synthesize):
        shares: dict[tuple[str, int | None], float] = defaultdict(float)
        for r in action.requests:
            shares[(r.skill, r.level)] += r.n
        keys = list(shares)
        counts_by_key = largest_remainder({str(i): shares[k] for i, k in enumerate(keys)}, budget)
        for i, (skill, level) in enumerate(keys):
            n = counts_by_key[str(i)]
            report.requested[skill] = report.requested.get(skill, 0) + n
            if n and synthesizer is not None:
                rows += _synthesize_llm(synthesizer, env, skill, n, level, rng.randrange(2**31), filt, report, failures)
            elif n:
                rows += _generate(env, skill, n, level, rng.randrange(2**31), filt, report)
    elif isinstance(action, Examples):
        valid = [_normalise(r, "teacher") for r in action.rows if filt.keep(r)]
        if not valid:
            raise InvalidActionError(
                f"none of the teacher's {len(action.rows)} rows passed the verifier and the eval-overlap "
                f"check (dropped: {dict(filt.dropped)}); nothing to train on"
            )
        report.requested = dict(Counter(s for r in valid for s in r["skills"]))
        rows = [valid[i % len(valid)] for i in range(budget)]

    assert len(rows) == budget, (len(rows), budget)
    rng.shuffle(rows)
    report.dropped = dict(filt.dropped)
    report.sources = dict(Counter(r["source"] for r in rows))
    report.examples = {s.name: 0 for s in env.skills}
    for r in rows:
        for s in r["skills"]:
            report.examples[s] = report.examples.get(s, 0) + 1
    return Dataset.from_list(rows).select_columns(list(EXAMPLE_COLUMNS)), report
