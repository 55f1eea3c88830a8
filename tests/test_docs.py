"""The README and the documentation site show only commands, options and config keys that exist.

Every ``teachgym ...`` line in a shell block is parsed by the CLI's own parser (a subcommand or option
that does not exist fails), and every ``key=value`` override it shows, and every key of a YAML block
that looks like a config, is checked against the config models and the named component's constructor.
The site itself is built with ``mkdocs build --strict`` (a broken link or reference fails) in the slow tests.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from teachgym.cli import build_parser
from teachgym.config import ExperimentConfig, component_keys, load_config
from teachgym.registry import resolve

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMPONENTS = {"env": "envs", "student": "students", "policy": "policies"}
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _blocks(lang: set[str]) -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for kind, body in BLOCK.findall(page.read_text()):
            if kind in lang:
                out.append((page.name, body))
    return out


#: How a docs line starts the CLI: ``teachgym``, ``python -m teachgym``, ``accelerate launch ... -m teachgym``.
LAUNCH = r"^(?:\.venv/bin/|\$ )?(?:teachgym|\S*python3? -m teachgym|\S*accelerate launch .*-m teachgym) "


def _commands() -> list[tuple[str, list[str]]]:
    """Each ``teachgym ...`` command line of the shell blocks, as argv (comments and continuations joined)."""
    out = []
    for page, body in _blocks({"bash", "sh", ""}):
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            m = re.match(LAUNCH + r"(.*)$", line)
            if m and not re.search(r"[<\[]|\.\.\.", m.group(1)):
                out.append((page, shlex.split(m.group(1))))
    return out


COMMANDS = _commands()


def test_the_docs_show_commands():
    shown = {argv[0] for _, argv in COMMANDS}
    assert {"run", "sweep", "compare", "ui", "runs", "calibrate", "skill-graph", "list"} <= shown


def _component_keys(section: str, name: str) -> set[str] | None:
    """The keyword arguments a component accepts (None: it takes **kwargs, anything goes)."""
    return component_keys(resolve(COMPONENTS[section], name))


def _check_override(key: str, base: ExperimentConfig) -> None:
    section, _, rest = key.partition(".")
    if section in COMPONENTS and rest and rest != "name":
        name = getattr(base, section).name
        accepted = _component_keys(section, name)
        if accepted is not None:
            assert rest.split(".")[0] in accepted, f"{section} {name!r} has no argument {rest!r}"


@pytest.mark.parametrize("page,argv", COMMANDS, ids=[f"{p}: {' '.join(a)[:60]}" for p, a in COMMANDS])
def test_every_command_the_docs_show_parses(page, argv):
    args, extra = build_parser().parse_known_args(argv)
    assert all("=" in e and not e.startswith("-") for e in extra), f"unknown options {extra}"
    overrides = [*getattr(args, "overrides", []), *extra]
    config = getattr(args, "config", None)
    if not config or not (ROOT / config).exists() or args.command not in ("run", "sweep"):
        return
    first = [o.split(",")[0] if not re.search(r"=\s*-?\d+:\d+", o) else re.sub(r"=(-?\d+):.*", r"=\1", o)
             for o in overrides]
    base = load_config(ROOT / config, first)  # unknown sections and loop/tracking keys fail here
    for o in first:
        _check_override(o.partition("=")[0], base)


def _config_blocks() -> list[tuple[str, dict]]:
    sections = set(ExperimentConfig.model_fields)
    out = []
    for page, body in _blocks({"yaml"}):
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and data and set(data) <= sections:
            out.append((page, data))
    return out


CONFIG_BLOCKS = _config_blocks()


@pytest.mark.parametrize("page,data", CONFIG_BLOCKS, ids=[f"{p}: {','.join(d)}" for p, d in CONFIG_BLOCKS])
def test_every_config_key_the_docs_show_exists(page, data):
    for section, value in data.items():
        if not isinstance(value, dict):
            continue
        if section in COMPONENTS:
            accepted = _component_keys(section, value["name"]) if "name" in value else None
            unknown = set(value) - {"name"} - (accepted if accepted is not None else set(value))
            assert not unknown, f"{page}: {section} {value.get('name')!r} has no argument(s) {sorted(unknown)}"
        else:
            model = ExperimentConfig.model_fields[section].annotation
            model = next((a for a in getattr(model, "__args__", (model,)) if hasattr(a, "model_fields")), model)
            unknown = set(value) - set(model.model_fields)
            assert not unknown, f"{page}: {section} has no key(s) {sorted(unknown)}"


def test_a_wrong_key_is_caught():
    """The checks above can fail: a made-up option and a made-up component argument are refused."""
    args, extra = build_parser().parse_known_args(["compare", "--no-such-option"])
    assert extra == ["--no-such-option"]
    base = load_config(ROOT / "configs/arithmetic.yaml")
    with pytest.raises(AssertionError, match="no argument"):
        _check_override("policy.no_such_knob", base)


@pytest.mark.slow
def test_the_docs_site_builds_strict(tmp_path):
    """``mkdocs build --strict``: a broken link, a missing page or an API reference that does not resolve fails."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1",
                                                                          "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run_experiment" in (tmp_path / "site" / "api" / "loop" / "index.html").read_text()
