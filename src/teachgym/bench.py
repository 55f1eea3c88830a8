"""``teachgym bench``: teacher unit tests with a known upper anchor, and a leaderboard anyone's teacher can join.

A **challenge** is an experiment config in ``configs/bench/`` with a ``bench:`` section: one line on the
difficulty it holds for a teacher, the hidden structure (which skills are noise; the mastery level; a
replay share for students that forget), the score, and a **simulated twin** (the simulated student with
the same structure). Every teacher runs it as it runs anything; the structure goes to the ``oracle``
policy and to the scorer only.

A **case** is (challenge, policy, seed). Cases run through the sweep runner, one sweep per (challenge,
policy) whose folder is named by the case's provenance key: the resolved config, the policy's source,
a hash of the code that decides the numbers (:data:`teachgym.provenance.DECIDING`), the package versions
and the hardware.
A changed key is a new sweep (the case reruns); a finished case of the same key is reused, never rerun.
Each row also records the commit and whether the tree was dirty. Rows go to
``<results>/<lm|simulated>.jsonl``; :mod:`teachgym.bench_report` makes the leaderboard from them.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teachgym import bench_report
from teachgym.config import BenchConfig, ConfigError, ExperimentConfig, build_component, load_config
from teachgym.provenance import ROOT, code_hash, component_source, git_state, machine
from teachgym.registry import BUILTINS, resolve
from teachgym.sweep import plan_sweep, run_sweep

#: Policies every leaderboard has: the normalised score is (policy - uniform) / (oracle - uniform).
ANCHORS = ("uniform", "oracle")
#: Built-ins that need what a bench cannot give them (a language-model server).
NOT_BENCHED = {"llm-agent": "needs a language-model endpoint"}
#: Where the bench finds each challenge's ``learned`` teacher (``benchmarks/train_bench_teachers.py`` trains them
#: on the simulated twins): ``<LEARNED_DIR>/<challenge>.zip``, relative to the repository root.
REFERENCE = "benchmarks/results/bench"  # the committed leaderboard, in a checkout
LEARNED_DIR = "benchmarks/results/bench/learned"


@dataclass(frozen=True)
class Challenge:
    """One challenge: its name (the file's stem), config and declaration."""

    name: str
    path: Path
    config: ExperimentConfig

    @property
    def bench(self) -> BenchConfig:
        assert self.config.bench is not None
        return self.config.bench

    @property
    def learnable(self) -> list[str]:
        """The skills the score averages over (every skill but the declared noise)."""
        env = build_component("envs", "env", self.config.env, seed=0)
        return [s.name for s in env.skills if s.name not in set(self.bench.noise)]


def load_challenges(directory: str | Path = "configs/bench", names: Sequence[str] | None = None) -> list[Challenge]:
    """The challenges in ``directory`` (every ``*.yaml``), or the ``names`` among them, in file-name order.

    Raises:
        ConfigError: No such folder, an unknown name (with near names), a file without a ``bench:`` section.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"no challenge folder {str(folder)!r} (run from the repository root, or pass --dir)")
    found = {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    wanted = list(names or found)
    for name in wanted:
        if name not in found:
            near = difflib.get_close_matches(name, list(found), n=3)
            raise ConfigError(f"no challenge {name!r} in {folder}" + (f"; did you mean {near}?" if near else "")
                              + f"; challenges: {sorted(found)}")
    out = []
    for name in wanted:
        config = load_config(found[name])
        if config.bench is None:
            raise ConfigError(f"{found[name]}: a challenge needs a bench: section (description, noise, simulated)")
        out.append(Challenge(name, found[name], config))
    return out


def learned_path(challenge: Challenge) -> str:
    """Where the bench finds ``challenge``'s ``learned`` model, relative to the repository root."""
    return f"{LEARNED_DIR}/{challenge.name}.zip"


def variant(policy: str) -> tuple[str, bool, bool]:
    """A bench policy's parts: ``dump@step`` teaches per step (``loop.teach_every: step``), ``uniform+filter`` turns
    on the GRPO student's online filtering (``student.filter_groups``), ``dump@step+filter`` both.

    Returns:
        The policy's name (a built-in or ``module:Class``), whether it steps, whether the student filters.
    """
    base, filtering = (policy[: -len("+filter")], True) if policy.endswith("+filter") else (policy, False)
    base, stepping = (base[: -len("@step")], True) if base.endswith("@step") else (base, False)
    return base, stepping, filtering


def batchwise(challenge: Challenge) -> bool:
    """Whether the challenge's student draws batch by batch (GRPO): where ``@step`` and ``+filter`` variants run."""
    return callable(getattr(resolve("students", challenge.config.student.name), "train_batches", None))


def policy_section(challenge: Challenge, policy: str) -> dict[str, Any]:
    """The config's ``policy:`` for ``policy``; the oracle gets the challenge's hidden structure.

    ``learned`` gets the model trained on this challenge's twin (a path under :data:`LEARNED_DIR`).
    """
    if policy == "oracle":
        b = challenge.bench
        return {"name": "oracle", "noise": list(b.noise), "mastery": b.mastery, "replay": b.replay}
    if policy == "learned":
        return {"name": "learned", "path": learned_path(challenge)}
    return {"name": policy}


def case_config(challenge: Challenge, policy: str, simulated: bool, tracking: bool = True) -> dict[str, Any]:
    """The resolved config of a challenge's cases for one policy (the seed is the sweep's axis)."""
    data = challenge.config.model_dump(mode="json")
    data.pop("bench")
    data.pop("sweep", None)
    name, stepping, filtering = variant(policy)
    data["policy"] = policy_section(challenge, name)
    if stepping:
        data["loop"]["teach_every"] = "step"
    if filtering:
        data["student"]["filter_groups"] = True
    if simulated:  # the twin: the simulated student, which needs no warm start
        data["student"] = challenge.bench.simulated.model_dump(mode="json")
        data["warm_start"] = None
    data["tracking"]["enabled"] = tracking
    data["tracking"]["experiment"] = f"teachgym-bench/{challenge.name}" + ("-simulated" if simulated else "")
    data["loop"]["save_student"] = False
    return data


def policy_source(policy: str) -> str:
    """A hash of the policy's source file (a built-in or ``module:Class``), so an edited teacher reruns."""
    return component_source("policies", variant(policy)[0])


def provenance(config: dict[str, Any], policy: str, root: Path, simulated: bool,
               files: Sequence[Path] = ()) -> dict[str, Any]:
    """The case's key and, beside it, the commit and dirty flag.

    The key covers the resolved config, the policy's and the env's sources, the
    :data:`teachgym.provenance.DECIDING` code, the packages and the hardware, and the bytes of ``files`` (model
    files the config names, e.g. a learned teacher's).
    """
    hardware = found = machine(gpu=not simulated)
    if simulated:  # numpy arithmetic on any machine: the packages decide, not the CPU
        hardware = {"packages": {"numpy": hardware["packages"]["numpy"]}}
    keyed = {"config": config, "policy": policy_source(policy), "code": code_hash(root),
             "env": component_source("envs", config["env"]["name"]),
             "files": [hashlib.sha256(Path(f).read_bytes()).hexdigest()[:16] for f in files], **hardware}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]
    commit, dirty = git_state(root)
    return {"key": key, "code": keyed["code"], "policy_source": keyed["policy"], "commit": commit, "dirty": dirty,
            **found}


def score(challenge: Challenge, accs: Sequence[dict[str, float]], learnable: Sequence[str]) -> float:
    """The challenge's score from a run's per-round accuracies: the learnable skills' mean, final or over rounds."""
    means = [sum(a[s] for s in learnable) / len(learnable) for a in accs]
    return means[-1] if challenge.bench.score == "final" else sum(means[1:]) / max(1, len(means) - 1)


def run_bench(
    challenges: Sequence[Challenge],
    policies: Sequence[str],
    seeds: Sequence[int],
    simulated: bool,
    results: Path,
    work: Path,
    root: Path,
    sequential: bool = False,
    tracking: bool = True,
    on_case: Callable[[dict[str, Any]], None] | None = None,
    run: bool = True,
    anchors: Sequence[str] = ANCHORS,
    reference: Path | None = None,
) -> list[dict[str, Any]]:
    """Run every (challenge, policy, seed) whose key has no finished row yet; return every row of these cases.

    The ``anchors`` (default :data:`ANCHORS`, which a leaderboard needs) are always run. Rows are written to
    ``results/<lm|simulated>.jsonl`` as each sweep ends; rows of other keys stay in the file (another machine's,
    another commit's).
    ``run=False`` runs nothing: it returns the rows of the current keys that are already there.
    ``reference``: another results folder (the committed leaderboard) whose rows of the current keys are reused,
    never written.
    ``learned`` runs on the challenges that have a model under ``root`` / :data:`LEARNED_DIR` and is
    skipped on the others (:func:`missing_learned` names them).
    """
    file = results / ("simulated.jsonl" if simulated else "lm.jsonl")
    stored = _read(file)
    if reference is not None and reference.resolve() != results.resolve():
        known = {(r["provenance"]["key"], r["seed"]) for r in stored}
        stored += [r for r in _read(reference / file.name) if (r["provenance"]["key"], r["seed"]) not in known]
    wanted = list(dict.fromkeys([*anchors, *policies]))
    rows: list[dict[str, Any]] = []
    for ch in challenges:
        learnable = ch.learnable
        for policy in wanted:
            if variant(policy)[1:] != (False, False) and (simulated or not batchwise(ch)):
                continue  # per-step teaching and filtering need a batch-wise (GRPO) student
            config = case_config(ch, policy, simulated, tracking)
            files: list[Path] = []
            runnable = {**config, "loop": {**config["loop"], "output_dir": str(work)}}  # not in the key
            if variant(policy)[0] == "learned":
                model = root / config["policy"]["path"]
                if not model.exists():
                    continue
                # The model's bytes and the observation/action code it was trained with decide its numbers.
                files = [model, Path(__file__).with_name("gym.py")]
                runnable["policy"] = {**config["policy"], "path": str(model)}  # any working directory
            prov = provenance(config, policy, root, simulated, files)
            have = {r["seed"]: r for r in stored if r["provenance"]["key"] == prov["key"]}
            missing = [s for s in seeds if s not in have]
            if missing and run:
                plan = plan_sweep(runnable, grid={"loop.seed": [str(s) for s in missing]},
                                  name=sweep_name(ch, policy, prov["key"]))
                result = run_sweep(plan, sequential=sequential, plot=False)
                for r in result.results:
                    row = _row(ch, policy, r.trial.seed, r.status, r.row, learnable, prov, simulated)
                    if row["status"] == "finished":
                        stored = [x for x in stored
                                  if (x["provenance"]["key"], x["seed"]) != (prov["key"], row["seed"])] + [row]
                        have[row["seed"]] = row
                    else:  # reported, never stored: the next run tries it again
                        rows.append(row)
                        if on_case:
                            on_case(row)
                _write(file, stored)
                if result.interrupted is not None:
                    raise result.interrupted
            for s in seeds:
                if s in have:
                    rows.append(have[s])
                    if on_case:
                        on_case(have[s])
    return rows


def sweep_name(challenge: Challenge, policy: str, key: str) -> str:
    """The sweep folder of one (challenge, policy) at one key: a sweep name allows letters, digits, '.', '_', '-'."""
    return f"bench-{challenge.name}-{re.sub(r'[^A-Za-z0-9._-]', '.', policy)}-{key}"


def _row(ch: Challenge, policy: str, seed: int, status: str, trial: dict[str, Any], learnable: Sequence[str],
         prov: dict[str, Any], simulated: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"challenge": ch.name, "policy": policy, "seed": int(seed), "status": status,
                           "student": "simulated" if simulated else "lm", "provenance": prov}
    if status == "finished":
        row.update(score=score(ch, trial["acc"], learnable), acc_mean=trial["acc_mean"],
                   examples=trial["examples"], wall_s=trial.get("wall_s"), run_id=trial.get("run_id"),
                   curve=[sum(a[s] for s in learnable) / len(learnable) for a in trial["acc"]],
                   totals=trial.get("totals"))
    else:
        row["error"] = trial.get("error", status)
    return row


def _read(file: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in file.read_text().splitlines()] if file.exists() else []


def _write(file: Path, rows: list[dict[str, Any]]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    tmp.replace(file)


def parse_seeds(text: str) -> list[int]:
    """``0-4`` or ``0,2,5`` (or one seed) as a list of seeds.

    Raises:
        ConfigError: Anything else.
    """
    try:
        if "-" in text.strip().lstrip("-"):
            lo, hi = text.split("-", 1)
            seeds = list(range(int(lo), int(hi) + 1))
        else:
            seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise ConfigError(f"--seeds {text!r}: give a range 0-4 or a list 0,1,2")
    return seeds


def missing_learned(challenges: Sequence[Challenge], root: Path) -> list[str]:
    """The challenges without a ``learned`` model under ``root`` / :data:`LEARNED_DIR` (the bench skips it there)."""
    return [ch.name for ch in challenges if not (root / learned_path(ch)).exists()]


def default_policies() -> list[str]:
    """Every built-in teacher the bench can run (not the anchors, nor those in :data:`NOT_BENCHED`), and the
    per-step variant (``<name>@step``) of each that can teach per step (run on batch-wise challenges only)."""
    names = [p for p in BUILTINS["policies"] if p not in ANCHORS and p not in NOT_BENCHED]
    return names + [f"{p}@step" for p in names if steps(p)]


def steps(policy: str) -> bool:
    """Whether a policy (a built-in or ``module:Class``) has a ``step`` method (can teach per step)."""
    return callable(getattr(resolve("policies", policy), "step", None))


def bench_command(policies: Sequence[str], challenge_names: Sequence[str] | None, seeds: str, simulated: bool,
                  fmt: str, directory: str, results: str, work: str, sequential: bool, mlflow: bool,
                  command: str, cached: bool = False, reference: str | None = None) -> int:
    """``teachgym bench``: run the missing cases, write the report files, print the leaderboard (or JSON rows).

    ``cached``: run nothing, and report the cases of the current keys already in the results file (a
    leaderboard whose rows came from several commands: the anchors everywhere, the teachers where they ran).
    ``reference``: the committed leaderboard's folder (default: :data:`REFERENCE` in this checkout), whose rows
    of the current keys are reused; only ``results`` is written, and nothing when no case has a row.
    """
    challenges = load_challenges(directory, challenge_names)
    chosen = list(policies) or default_policies()
    for p in chosen:
        name, stepping, _ = variant(p)
        resolve("policies", name)  # an unknown teacher fails now, with near names
        if stepping and not steps(name):
            raise ConfigError(f"{p}: {name!r} has no step() method, so it cannot teach per step; drop '@step'")
    out = Path(results)
    root = Path(__file__).resolve().parents[2]
    ref = Path(reference) if reference else root / REFERENCE
    ray = importlib.util.find_spec("ray") is not None
    say = (lambda *a, **k: None) if fmt == "json" else print

    def progress(row: dict[str, Any]) -> None:
        what = f"{row['score']:.3f}" if row["status"] == "finished" else f"{row['status']}: {row.get('error', '')}"
        say(f"  {row['challenge']:<14} {row['policy']:<22} seed {row['seed']}  {what}", flush=True)

    if "learned" in chosen and (untrained := missing_learned(challenges, root)):
        say(f"learned: skipped on {', '.join(untrained)} (no model in {LEARNED_DIR}; train one: "
            f"python benchmarks/train_bench_teachers.py {' '.join(untrained)})", flush=True)
    rows = run_bench(challenges, chosen, parse_seeds(seeds), simulated, out, Path(work), root,
                     sequential=sequential or simulated or not ray, tracking=mlflow, on_case=progress, run=not cached,
                     reference=ref)
    kind = "simulated" if simulated else "lm"
    if not any(r["status"] == "finished" for r in rows):  # an empty report would say nothing, and replace one
        print(f"no finished case of the current keys in {out}" + ("" if ref.resolve() == out.resolve() else
              f" or {ref}") + (" (--cached runs nothing: run without it)" if cached else "") + "; no report written",
              file=sys.stderr)
        return 1
    cases = [[r["provenance"]["key"], r["seed"]] for r in rows if r["status"] == "finished"]
    failed = [{k: r.get(k) for k in ("challenge", "policy", "seed", "status", "error")}
              for r in rows if r["status"] != "finished"]
    (out / f"{kind}.json").write_text(json.dumps({"command": command, "cases": cases, "failed": failed,
                                                  "leaderboard": bench_report.leaderboard(rows),
                                                  "without_headroom": bench_report.without_headroom(rows)},
                                                 indent=1, default=str) + "\n")
    text = report(rows, challenges, out, simulated, command, ref)
    (out / f"{kind}.md").write_text(text)
    bench_report.plot_profile(rows, str(out / f"{kind}_profile.png"))
    if fmt == "json":
        print(json.dumps(bench_report.normalised(rows), indent=1))
    else:
        print("\n" + text + f"\nwritten: {out / (kind + '.md')}, {kind}.json, {kind}_profile.png")
    return 0 if all(r["status"] == "finished" for r in rows) else 1


def report(rows: Sequence[dict[str, Any]], challenges: Sequence[Challenge], results: Path, simulated: bool,
           command: str, reference: Path | None = None) -> str:
    """The markdown report of these rows (with the rank agreement when the other leaderboard's rows exist, in
    ``results`` or else in ``reference``)."""
    kind, other = ("simulated", "lm") if simulated else ("lm", "simulated")
    other_rows = reported_rows(results, other)
    if other_rows is None and reference is not None:
        other_rows = reported_rows(reference, other)
    text = bench_report.markdown(rows, {c.name: c.bench.description for c in challenges}, _footer(rows, command),
                                 other_rows, "LM" if simulated else "simulated", code_hash(ROOT))
    return f"## teachgym bench: {kind} students\n\n" + text


def reported_rows(results: Path, kind: str) -> list[dict[str, Any]] | None:
    """The rows the last ``<kind>`` report was made of (its ``.json`` names their cases), or None without one."""
    index, file = results / f"{kind}.json", results / f"{kind}.jsonl"
    if not index.exists() or not file.exists():
        return None
    data = json.loads(index.read_text())
    cases = {tuple(c) for c in data["cases"]}
    finished = [r for r in map(json.loads, file.read_text().splitlines())
                if (r["provenance"]["key"], r["seed"]) in cases]
    return finished + list(data.get("failed", []))


def _footer(rows: Sequence[dict[str, Any]], command: str) -> str:
    """Facts read from the rows and the machine, not typed: the command, hardware, packages, commits."""
    provs = [r["provenance"] for r in rows if r.get("status") == "finished"]
    if not provs:
        return f"Command: `{command}`; no case ran."
    p = provs[-1]
    commits = sorted({f"{x['commit']}{' (dirty)' if x['dirty'] else ''}" for x in provs})
    pk = p["packages"]
    return (f"Command: `{command}`. Machine: {p['cpu']}, {p['cores']} cores, GPU {p['gpu']}; torch {pk['torch']}, "
            f"transformers {pk['transformers']}, trl {pk['trl']}, numpy {pk['numpy']}. Rows from commit(s) "
            f"{', '.join(commits)}; code hash {p['code']}.")
