"""The house's shared pieces, by behaviour: one error base class, a plugin's options dataclass checked with its
field named, a core-only tracker completed with no-op defaults, and every derived seed in one module."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from teachgym.config import ComponentConfig, ConfigError, build_component, load_config
from teachgym.errors import TeachgymError
from teachgym.protocols import CheckpointingTracker, CompleteTracker, ResumableTracker, Tracker
from teachgym.tracking.null import NullTracker, complete

from conftest import TINY


def test_one_clause_catches_a_config_mistake_an_unknown_plugin_and_a_teachers_garbage():
    from teachgym.types import Mixture, Skill, validate_action

    caught = []
    for mistake in (
        lambda: load_config({"env": {"name": "arithmetic"}, "student": {"name": "simulated"},
                             "policy": {"name": "uniform"}, "loop": {"round": 3}}),
        lambda: build_component("policies", "policy", ComponentConfig(name="skil-it")),
        lambda: validate_action(Mixture({"nope": 1.0}), [Skill("a")]),
    ):
        try:
            mistake()
        except TeachgymError as e:
            caught.append(type(e).__name__)
    assert caught == ["ConfigError", "RegistryError", "InvalidActionError"]
    assert issubclass(ConfigError, ValueError)  # the built-in base it always had stays


def test_a_students_options_dataclass_names_an_unknown_or_bad_field():
    with pytest.raises(ConfigError, match=r"student\.batch_sise: unknown key; did you mean 'student\.batch_size'"):
        build_component("students", "student", ComponentConfig(name="hf", tiny=TINY, batch_sise=8))
    with pytest.raises(ConfigError, match="precision must be auto, fp32, bf16 or fp16"):
        build_component("students", "student", ComponentConfig(name="hf", tiny=TINY, precision="fp8"))
    from teachgym.students.hf import HFOptions, HFStudent

    with pytest.raises(ValueError, match="no option 'batch_sise'; did you mean 'batch_size'"):
        HFStudent(tiny=TINY, batch_sise=8)
    student = HFStudent(HFOptions(tiny=TINY, batch_size=8, learning_rate=1e-2), seed=0)
    keywords = HFStudent(tiny=TINY, batch_size=8, learning_rate=1e-2, seed=0)
    assert student.options == keywords.options and student.train_args == keywords.train_args
    assert student.train_args["per_device_train_batch_size"] == 8


def test_the_grpo_options_are_checked_when_built():
    from teachgym.students.grpo import GRPOOptions

    with pytest.raises(ValueError, match="batch_size \\(6\\) must be a multiple of num_generations \\(4\\)"):
        GRPOOptions(num_generations=4, batch_size=6)
    with pytest.raises(ValueError, match="filter_band"):
        GRPOOptions(filter_band=[0.9, 0.1])
    assert GRPOOptions().num_generations == 8 and GRPOOptions.__dataclass_fields__["beta"].metadata["help"]


class _FourMethods:
    """A user's tracker with only the core protocol: it records what the loop tells it."""

    parent_id = "run-1"
    uri = "memory://"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def start(self, run_id=None):
        self.seen.append("start")
        return self.parent_id

    def round(self, index):
        self.seen.append(f"round {index}")
        return nullcontext()

    def probe(self, index, k):
        return nullcontext()

    def log(self, entry):
        self.seen.append(f"log {entry}")

    def finish(self, status="FINISHED"):
        self.seen.append(status)


def test_a_core_only_tracker_gets_the_optional_parts_as_no_ops():
    mine = _FourMethods()
    assert isinstance(mine, Tracker) and not isinstance(mine, ResumableTracker)
    tracker = complete(mine)
    assert isinstance(tracker, ResumableTracker) and isinstance(tracker, CheckpointingTracker)
    tracker.start()
    with tracker.round(1):
        tracker.log("r1")
    assert tracker.unconfirmed("r1") == [] and tracker.relog(["r1"]) == 0 and tracker.reachable()
    assert tracker.log_checkpoint(None, 1, {}) is None and tracker.best is None
    tracker.flush()
    tracker.finish("KILLED")
    assert mine.seen == ["start", "round 1", "log r1", "KILLED"]
    assert tracker.parent_id == "run-1" and tracker.uri == "memory://"
    null = NullTracker()
    assert complete(null) is null and isinstance(null, CompleteTracker)


def test_every_derived_seed_comes_from_the_seeds_module():
    """The formulas that used to be spelled where they were used (a change here changes every result)."""
    from teachgym import seeds

    assert [seeds.round_seed(3, r) for r in (0, 1)] == [300_009, 300_010]
    assert seeds.probe_seed(seeds.round_seed(0, 2), 0) == 2 * 101 + 1
    assert seeds.request_seed(2**40, 0, 0) < 2**31
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spelled = [str(p.relative_to(root)) for d in ("src/teachgym", "policies", "students", "envs")
               for p in (root / d).rglob("*.py") if p.name != "seeds.py"
               and re.search(r"seed \* (100_003|101|1000|1_009|7|7919|1_000_003)\b", p.read_text())]
    assert spelled == []
