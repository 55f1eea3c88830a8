"""``teachgym bench``: teacher unit tests with a known upper anchor, and a leaderboard anyone's teacher can join.

A **challenge** is an experiment config in ``configs/bench/`` with a ``bench:`` section: one line on the
difficulty it holds for a teacher, the hidden structure (which skills are noise; the mastery level; a
replay share for students that forget), the score, and a **simulated twin** (the simulated student with
the same structure). Every teacher runs it as it runs anything; the structure goes to the ``oracle``
policy and to the scorer only.

A **case** is (challenge, policy, seed). Cases run through the sweep runner, one sweep per (challenge,
policy) whose folder is named by the case's provenance key: the resolved config with its ``bench:`` section,
the source of every module the case imports (:func:`teachgym.provenance.sources`), the package versions and
the hardware.
A changed key is a new sweep (the case reruns); a finished case of the same key is reused, never rerun.
Each row also records the commit and whether the tree was dirty. Rows go to
``<results>/<lm|simulated>.jsonl`` (the source maps of their code hashes in ``<kind>.sources.json``);
:mod:`teachgym.bench_report` makes the leaderboard from them, :mod:`teachgym.bench_command` the reports.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teachgym.bench_protocol import Protocol
from teachgym.bench_protocol import score as protocol_score
from teachgym.config import BenchConfig, ConfigError, ExperimentConfig, build_component, load_config
from teachgym.provenance import ROOT, case_roots, git_state, machine, sources, sources_hash
from teachgym.registry import BUILTINS, resolve
from teachgym.sweep import plan_sweep, run_sweep

#: Policies every leaderboard has: the normalised score is (policy - uniform) / (oracle - uniform).
ANCHORS = ("uniform", "oracle")
#: Built-ins that need what a bench cannot give them (a language-model server).
NOT_BENCHED = {"llm-agent": "needs a language-model endpoint"}
#: The facts of a row's provenance that name the machine it ran on (its key covers them).
HARDWARE = ("cpu", "cores", "gpu")
#: Where the bench finds each challenge's ``learned`` teacher (``benchmarks/train_bench_teachers.py`` trains them
#: on the simulated twins): ``<LEARNED>/<challenge>.zip``. The challenges and the committed leaderboard ship with the
#: package, so that ``teachgym bench`` runs from any folder (in a checkout, ``configs/bench`` and
#: ``benchmarks/results/bench`` link to them).
CHALLENGES = Path(__file__).with_name("challenges")
LEADERBOARD = Path(__file__).with_name("leaderboard")
LEARNED = LEADERBOARD / "learned"


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


def load_challenges(directory: str | Path = CHALLENGES, names: Sequence[str] | None = None) -> list[Challenge]:
    """The challenges in ``directory`` (every ``*.yaml``), or the ``names`` among them, in file-name order.

    Raises:
        ConfigError: No such folder, an unknown name (with near names), a file without a ``bench:`` section.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"no challenge folder {str(folder)!r} (leave --dir out for the built-in challenges)")
    found = {p.stem: p for p in sorted(folder.glob("*.yaml")) if p.name != "protocol.yaml"}  # not a challenge
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


def config_challenge(path: str | Path, name: str, description: str) -> Challenge:
    """Any experiment config run as a challenge named ``name`` (a ``bench:`` section with ``description`` and the
    simulated twin's defaults is added), so that the bench's keyed case runner serves a benchmark script's cases."""
    data = load_config(path).model_dump(mode="json")
    data["bench"] = {"description": description, "simulated": {"name": "simulated"}}
    return Challenge(name, Path(path), load_config(data))


def learned_path(challenge: Challenge) -> str:
    """``challenge``'s ``learned`` model's file name in the learned folder (:data:`LEARNED` by default): what the
    case's config names (the folder is where this install keeps it, and decides nothing)."""
    return f"learned/{challenge.name}.zip"


def variant(policy: str) -> tuple[str, bool, bool]:
    """A bench policy's parts: ``dump@step`` teaches per step (``loop.teach_every: step``), ``uniform+filter`` turns
    on the GRPO student's online filtering (``student.filter_groups``), ``dump@step+filter`` both.

    Returns:
        The policy's name (a built-in or ``module:Class``), whether it steps, whether the student filters.
    """
    policy = budget(policy)[0]
    base, filtering = (policy[: -len("+filter")], True) if policy.endswith("+filter") else (policy, False)
    base, stepping = (base[: -len("@step")], True) if base.endswith("@step") else (base, False)
    return base, stepping, filtering


def budget(policy: str) -> tuple[str, float]:
    """``uniform+x2.3`` runs ``uniform`` on 2.3 times the round's budget (``loop.examples_per_round``, rounded to a
    whole number of GRPO generation batches): the compute-matched baseline of a ``+filter`` variant, which spends
    that many more rollouts than the budget.

    Returns:
        The policy without the suffix, and the factor (1.0 when there is none).
    """
    found = re.fullmatch(r"(.+)\+x(\d+(?:\.\d+)?)", policy)
    return (found.group(1), float(found.group(2))) if found else (policy, 1.0)


def batchwise(challenge: Challenge) -> bool:
    """Whether the challenge's student draws batch by batch (GRPO): where ``@step`` and ``+filter`` variants run."""
    return callable(getattr(resolve("students", challenge.config.student.name), "train_batches", None))


def policy_section(challenge: Challenge, policy: str) -> dict[str, Any]:
    """The config's ``policy:`` for ``policy``; the oracle gets the challenge's hidden structure.

    ``learned`` gets the model trained on this challenge's twin (:func:`learned_path`).
    """
    if policy == "oracle":
        b = challenge.bench
        return {"name": "oracle", "noise": list(b.noise), "mastery": b.mastery, "replay": b.replay}
    if policy == "learned":  # by position: it is shown neutral names in a shuffled order, like every teacher
        return {"name": "learned", "path": learned_path(challenge), "match": "positions"}
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
    if (factor := budget(policy)[1]) != 1.0:  # whole generation batches: a GRPO round is made of them
        s = data["student"]
        unit = s["batch_size"] // s["num_generations"] if s.get("num_generations") else 1
        data["loop"]["examples_per_round"] = max(unit, round(data["loop"]["examples_per_round"] * factor / unit) * unit)
    if simulated:  # the twin: the simulated student, which needs no warm start
        data["student"] = challenge.bench.simulated.model_dump(mode="json")
        data["warm_start"] = None
    data["tracking"]["enabled"] = tracking
    data["tracking"]["experiment"] = f"teachgym-bench/{challenge.name}" + ("-simulated" if simulated else "")
    data["loop"]["save_student"] = False
    data["loop"]["skill_names"] = "neutral"  # no teacher reads the hidden structure from a skill's name
    return data


def provenance(config: dict[str, Any], simulated: bool, files: Sequence[Path] = (),
               bench: dict[str, Any] | None = None, hardware: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The case's key and, beside it, the commit and dirty flag, and the source map its code hash is made of.

    The key covers the resolved config (where it is logged aside: that decides no number) and the challenge's
    ``bench:`` section, the source of every teachgym and plugin module the case imports
    (:func:`teachgym.provenance.sources` from the runner and the config's components, not a hand-kept list), the
    packages and the hardware, and the bytes of ``files`` (model files the config names, e.g. a learned
    teacher's). ``sources`` (module -> hash) is returned to be kept once per code hash, not in every row.
    ``hardware`` (a row's ``cpu``, ``cores`` and ``gpu``): the key the case has on that machine, with this one's
    code and packages (what makes another machine's row current for it; see :func:`hardware_of`).
    """
    found = machine(gpu=not simulated)
    if hardware is not None:
        found.update({k: hardware[k] for k in HARDWARE})
    # The twins run numpy arithmetic, the same on any machine: the packages decide, not the CPU.
    deciding = {"packages": {"numpy": found["packages"]["numpy"]}} if simulated else found
    code = sources(case_roots(config))
    keyed = {"config": {k: v for k, v in config.items() if k != "tracking"}, "bench": bench,
             "code": sources_hash(code), **deciding,
             "files": [hashlib.sha256(Path(f).read_bytes()).hexdigest()[:16] for f in files]}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]
    commit, dirty = git_state(ROOT)
    return {"key": key, "code": keyed["code"], "commit": commit, "dirty": dirty, **found, "sources": code}


def hardware_of(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The machine a row was made on, as :data:`HARDWARE` (floating point differs across CPUs and core counts, so an
    LM row is current only for the machine that made it)."""
    return tuple(row["provenance"].get(k) for k in HARDWARE)


def this_machine() -> tuple[Any, ...]:
    """This machine, as :func:`hardware_of` gives a row's."""
    found = machine()
    return tuple(found[k] for k in HARDWARE)


def machine_name(hardware: Sequence[Any]) -> str:
    """A :func:`hardware_of` as the reports write it: ``AMD EPYC, 2 cores, GPU none``."""
    cpu, cores, gpu = hardware
    return f"{cpu}, {cores} cores, GPU {gpu}"


def case(ch: Challenge, policy: str, simulated: bool, work: Path, learned: Path = LEARNED, tracking: bool = True,
         hardware: Sequence[Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """One (challenge, policy) as it would run now (on ``hardware``, a :func:`hardware_of`; default this machine):
    the config to run and its provenance (with ``sources``); None where it cannot run (``learned`` without a model;
    a per-step or filtering variant off GRPO)."""
    if variant(policy)[1:] != (False, False) and (simulated or not batchwise(ch)):
        return None  # per-step teaching and filtering need a batch-wise (GRPO) student
    config = case_config(ch, policy, simulated, tracking)
    files: list[Path] = []
    runnable = {**config, "loop": {**config["loop"], "output_dir": str(work)}}  # not in the key
    if variant(policy)[0] == "learned":
        model = learned / Path(config["policy"]["path"]).name
        if not model.exists():
            return None
        files = [model]  # its bytes decide its numbers (the observation code is in the sources)
        runnable["policy"] = {**config["policy"], "path": str(model)}  # any working directory
    return runnable, provenance(config, simulated, files, ch.bench.model_dump(mode="json"),
                                None if hardware is None else dict(zip(HARDWARE, hardware, strict=True)))


def score(challenge: Challenge, curve: Sequence[float], protocol: Protocol | None = None) -> float:
    """The challenge's score from a run's curve (the learnable skills' mean accuracy, round by round), as the
    protocol registered it (else as the challenge declares it). Computed when a report is made, from the stored
    curve, so that a changed score needs no rerun."""
    how = challenge.bench.score if protocol is None else protocol.score_of(challenge.name, challenge.bench.score)
    return protocol_score(curve, how)


def run_bench(
    challenges: Sequence[Challenge],
    policies: Sequence[str],
    seeds: Sequence[int],
    simulated: bool,
    results: Path,
    work: Path,
    learned: Path = LEARNED,
    sequential: bool = False,
    tracking: bool = True,
    on_case: Callable[[dict[str, Any]], None] | None = None,
    run: bool = True,
    anchors: Sequence[str] = ANCHORS,
    reference: Path | None = None,
    protocol: Protocol | None = None,
    hardware: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Run every (challenge, policy, seed) whose key has no finished row yet; return every row of these cases.

    The ``anchors`` (default :data:`ANCHORS`, which a leaderboard needs) are always run. Rows are written to
    ``results/<lm|simulated>.jsonl`` as each sweep ends; rows of other keys stay in the file (another machine's,
    another commit's).
    ``run=False`` runs nothing: it returns the rows of the current keys that are already there.
    ``reference``: another results folder (the committed leaderboard) whose rows of the current keys are reused,
    never written. ``protocol``: the anchors also run on its calibration seeds, and scores are as it registered.
    ``learned`` runs on the challenges that have a model in ``learned`` (default :data:`LEARNED`) and is
    skipped on the others (:func:`missing_learned` names them). ``hardware`` (a :func:`hardware_of`, with
    ``run=False`` only): the rows of the keys the cases have on that machine instead of this one.
    """
    if hardware is not None and run:
        raise ValueError("rows of another machine's keys can be reported, not run here")
    file = results / ("simulated.jsonl" if simulated else "lm.jsonl")
    stored = _read(file)
    if reference is not None and reference.resolve() != results.resolve():
        known = {(r["provenance"]["key"], r["seed"]) for r in stored}
        stored += [r for r in _read(reference / file.name) if (r["provenance"]["key"], r["seed"]) not in known]
    wanted = list(dict.fromkeys([*anchors, *policies]))
    rows: list[dict[str, Any]] = []
    index = _indexes(results, file.stem, reference)
    for ch in challenges:
        learnable = ch.learnable
        for policy in wanted:
            found = case(ch, policy, simulated, work, learned, tracking, hardware)
            if found is None:
                continue
            runnable, prov = found
            index[prov["code"]] = prov.pop("sources")
            have = {r["seed"]: r for r in stored if r["provenance"]["key"] == prov["key"]}
            mine = sorted({*seeds, *protocol.calibration_seeds}) if protocol and policy in anchors else list(seeds)
            missing = [s for s in mine if s not in have]
            if missing and run:
                plan = plan_sweep(runnable, grid={"loop.seed": [str(s) for s in missing]},
                                  name=sweep_name(ch, policy, prov["key"]))
                result = run_sweep(plan, sequential=sequential, plot=False)
                for r in result.results:
                    row = _row(ch, policy, r.trial.seed, r.status, r.row, learnable, prov, simulated, protocol)
                    if row["status"] == "finished":
                        stored = [x for x in stored
                                  if (x["provenance"]["key"], x["seed"]) != (prov["key"], row["seed"])] + [row]
                        have[row["seed"]] = row
                    else:  # reported, never stored: the next run tries it again
                        rows.append(row)
                        if on_case:
                            on_case(row)
                _write(file, stored)
                _write_index(results / f"{file.stem}.sources.json", index, stored)
                if result.interrupted is not None:
                    raise result.interrupted
            for s in mine:
                if s in have:
                    rows.append({**have[s], "score": score(ch, have[s]["curve"], protocol)})
                    if on_case:
                        on_case(rows[-1])
    return rows


def sweep_name(challenge: Challenge, policy: str, key: str) -> str:
    """The sweep folder of one (challenge, policy) at one key: a sweep name allows letters, digits, '.', '_', '-'."""
    return f"bench-{challenge.name}-{re.sub(r'[^A-Za-z0-9._-]', '.', policy)}-{key}"


def _row(ch: Challenge, policy: str, seed: int, status: str, trial: dict[str, Any], learnable: Sequence[str],
         prov: dict[str, Any], simulated: bool, protocol: Protocol | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"challenge": ch.name, "policy": policy, "seed": int(seed), "status": status,
                           "student": "simulated" if simulated else "lm", "provenance": prov}
    if status == "finished":
        curve = [sum(a[s] for s in learnable) / len(learnable) for a in trial["acc"]]
        row.update(score=score(ch, curve, protocol), acc_mean=trial["acc_mean"], examples=trial["examples"],
                   wall_s=trial.get("wall_s"), run_id=trial.get("run_id"), curve=curve, totals=trial.get("totals"))
    else:
        row["error"] = trial.get("error", status)
    return row


def keep(results: Path, kind: str, rows: Sequence[dict[str, Any]], reference: Path | None) -> None:
    """Add the finished ``rows`` that ``results/<kind>.jsonl`` lacks (reused from ``reference``) to it, and their
    source maps to its index."""
    file = results / f"{kind}.jsonl"
    stored = _read(file)
    have = {(r["provenance"]["key"], r["seed"]) for r in stored}
    new = [r for r in rows if r.get("status") == "finished" and (r["provenance"]["key"], r["seed"]) not in have]
    if not new:
        return
    index = _indexes(results, kind, reference)
    _write(file, [*stored, *new])
    _write_index(results / f"{kind}.sources.json", index, [*stored, *new])


def _indexes(results: Path, kind: str, reference: Path | None) -> dict[str, dict[str, str]]:
    """The source maps of ``results`` and, under them, of ``reference`` (whose rows a run may reuse)."""
    found = _read_index(reference / f"{kind}.sources.json") if reference is not None else {}
    return {**found, **_read_index(results / f"{kind}.sources.json")}


def _read_index(file: Path) -> dict[str, dict[str, str]]:
    return json.loads(file.read_text()) if file.exists() else {}


def _write_index(file: Path, index: dict[str, dict[str, str]], rows: Sequence[dict[str, Any]]) -> None:
    """The source map of every code hash the rows were computed with (module -> hash): what a stale row's report
    names as changed."""
    used = {r["provenance"].get("code") for r in rows}
    file.write_text(json.dumps({c: m for c, m in sorted(index.items()) if c in used}, indent=0, sort_keys=True) + "\n")


def machines(results: Path, kind: str, reference: Path | None = None) -> list[tuple[Any, ...]]:
    """The machines (:func:`hardware_of`) that the finished rows of ``results`` and ``reference`` were made on, the
    one with the most rows first."""
    files = [results / f"{kind}.jsonl"] + ([reference / f"{kind}.jsonl"] if reference is not None else [])
    counts = Counter(hardware_of(r) for f in files for r in _read(f) if r.get("status") == "finished")
    return [hw for hw, _ in counts.most_common()]


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


def missing_learned(challenges: Sequence[Challenge], learned: Path = LEARNED) -> list[str]:
    """The challenges without a ``learned`` model in ``learned`` (the bench skips it there)."""
    return [ch.name for ch in challenges if not (learned / Path(learned_path(ch)).name).exists()]


def default_policies() -> list[str]:
    """Every built-in teacher the bench can run (not the anchors, nor those in :data:`NOT_BENCHED`), and the
    per-step variant (``<name>@step``) of each that can teach per step (run on batch-wise challenges only)."""
    names = [p for p in BUILTINS["policies"] if p not in ANCHORS and p not in NOT_BENCHED]
    return names + [f"{p}@step" for p in names if steps(p)]


def steps(policy: str) -> bool:
    """Whether a policy (a built-in or ``module:Class``) has a ``step`` method (can teach per step)."""
    return callable(getattr(resolve("policies", policy), "step", None))
