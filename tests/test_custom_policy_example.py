"""examples/custom_policy: the import-path route and the installed entry-point route, end to end."""

import subprocess
import sys
from pathlib import Path

import pytest

from teachgym.checks import check_policy
from teachgym.config import load_config
from teachgym.loop import run_experiment

from conftest import tiny_config

EXAMPLE = Path(__file__).parent.parent / "examples" / "custom_policy"


def test_example_policies_pass_the_checker(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from teachgym_example_teachers import GreedyGain, WeakestTwo

    check_policy(lambda: WeakestTwo())
    check_policy(lambda: GreedyGain(epsilon=0.5, seed=3))
    from teachgym import Skill
    from teachgym.checks import make_observation

    action = WeakestTwo().act(make_observation([Skill("a"), Skill("b"), Skill("c")], [0.9, 0.1, 0.5]))
    assert sorted(action.weights) == ["b", "c"]  # what it exists for: the two weakest skills


def test_import_path_route(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    cfg = tiny_config(tmp_path, rounds=1, save_student=False)
    cfg["policy"] = {"name": "teachgym_example_teachers:WeakestTwo"}
    result = run_experiment(load_config(cfg))
    assert len(result.final.action["weights"]) == 2


def test_entry_point_route(tmp_path, monkeypatch):
    import shutil

    source = tmp_path / "src"  # build from a copy: pip leaves build/ and *.egg-info/ in the source tree
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True,
    )
    assert list(target.glob("teachgym_example_teachers-*.dist-info/entry_points.txt"))
    monkeypatch.syspath_prepend(str(target))  # what an installed package looks like to importlib.metadata
    cfg = tiny_config(tmp_path, rounds=2, save_student=False)
    cfg["policy"] = {"name": "greedy-gain", "epsilon": 0.0}
    cfg["tracking"] = {"enabled": False}
    result = run_experiment(load_config(cfg))
    assert result.rounds[1].action["type"] == "mixture"
    from teachgym.registry import describe

    assert any(name == "greedy-gain" and "ε-greedy" in desc for name, desc in describe("policies"))
    sys.modules.pop("teachgym_example_teachers", None)


@pytest.fixture(autouse=True)
def _forget_module():
    yield
    sys.modules.pop("teachgym_example_teachers", None)
