"""Packaging: the plugin folders install only under teachgym.*, and `import teachgym` stays light."""

import subprocess
import sys


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_plugin_folders_install_only_under_teachgym(tmp_path):
    # Run from a neutral directory so the repo's own folders are not on sys.path.
    for top in ("policies", "students", "envs"):
        r = _run(f"import {top}", tmp_path)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (top, r.stderr)
        r = _run(f"import teachgym.{top}", tmp_path)
        assert r.returncode == 0, r.stderr


def test_import_teachgym_is_light(tmp_path):
    r = _run(
        "import sys, teachgym\n"
        "heavy = [m for m in ('torch', 'trl', 'mlflow', 'transformers', 'datasets', 'teachgym.policies',"
        " 'teachgym.students', 'teachgym.envs') if m in sys.modules]\n"
        "print(heavy)",
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_public_names_for_policy_authors():
    from teachgym import Examples, Mixture, Observation, Request, Synthesize  # noqa: F401

    assert Synthesize([Request("a", 2)]).requests == (Request("a", 2, None),)


def test_py_typed_ships():
    import importlib.resources

    assert importlib.resources.files("teachgym").joinpath("py.typed").is_file()


def test_the_wheel_ships_the_bench_challenges_leaderboard_and_learned_teachers(tmp_path):
    """`teachgym bench` runs from any folder after `pip install`: its challenges, the committed leaderboard (whose
    current rows it reuses) and the learned teachers are package data."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path), "-q"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("teachgym-*.whl"))).namelist())
    challenges = {f"teachgym/challenges/{p.name}" for p in (root / "configs" / "bench").glob("*.yaml")}
    assert len(challenges) >= 6 and challenges <= names
    assert {"teachgym/leaderboard/lm.jsonl", "teachgym/leaderboard/simulated.jsonl"} <= names
    assert {f"teachgym/leaderboard/learned/{p.name}" for p in (root / "benchmarks/results/bench/learned").glob("*.zip")
            } <= names
