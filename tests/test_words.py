"""Words in the README and the docs that code can check: counts of built-ins, name formats, extras, commands, links."""

import re
from pathlib import Path

import pytest
import yaml

from teachgym.registry import BUILTINS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
NUMBERS = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                       "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                                       "seventeen", "eighteen", "nineteen", "twenty"])}


def _count_before(text: str, phrase: str) -> int:
    word = re.search(rf"(\w+) {phrase}", text).group(1).lower()
    return NUMBERS[word]


def test_the_counts_of_built_ins_are_the_registrys():
    assert _count_before(README, "are built in —") == len(BUILTINS["policies"])
    envs = (ROOT / "docs" / "envs.md").read_text()
    assert _count_before(envs, r"are built in \(") == len(BUILTINS["envs"])
    named = re.search(r"are built in \((.*?)\); the", envs, re.S).group(1)
    assert set(re.findall(r"`([a-z-]+)`", named)) == set(BUILTINS["envs"])


def test_the_reasoning_gym_skill_format_is_the_one_the_env_uses():
    pytest.importorskip("reasoning_gym")
    from teachgym.envs.reasoning import ReasoningGymEnv

    env = ReasoningGymEnv(["spell_backward"], levels=[1], eval_per_skill=2, pool_per_skill=2)
    assert [s.name for s in env.skills] == ["spell_backward:1"]
    assert "one skill per task:level" in BUILTINS["envs"]["reasoning-gym"].description
    assert "Each skill is `task:level`" in README


def test_the_readme_names_every_extra():
    section = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = re.findall(r"^([a-z-]+) = \[", section, re.M)  # (tomllib is Python 3.11+)
    assert "dev" in extras and "reasoning-gym" in extras
    line = next(line for line in README.splitlines() if line.startswith("pyproject.toml"))
    assert set(re.findall(r"\[([a-z-]+)\]", line)) == set(extras)


def _shell_lines(text: str):
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        yield from (line for line in block.splitlines() if line.strip())


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_shell_examples_use_the_projects_environment(page):
    """`make run` puts nothing on the PATH: a command pasted from the docs runs .venv's, never a bare one."""
    bare = [line for line in _shell_lines((ROOT / page).read_text())
            if re.match(r"\s*(pip|accelerate|teachgym|python|pytest|mkdocs|ruff)\s", line)]
    assert not bare, bare


def test_the_docs_home_links_every_page_of_the_site():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages = {v for item in nav for v in item.values() if isinstance(v, str) and v.endswith(".md")}
    index = (ROOT / "docs" / "index.md").read_text()
    linked = set(re.findall(r"\]\(([\w-]+\.md)", index))
    assert pages - {"index.md"} <= linked, sorted(pages - {"index.md"} - linked)
