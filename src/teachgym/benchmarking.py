"""What the scripts in ``benchmarks/`` share: the commit and machine a row was measured on, the keys that make a
cached row current, and the model shapes they measure. The scripts import this module, never each other.

``teachgym bench`` keys its cases with :func:`teachgym.bench.provenance`; :func:`keys_for` keys a
benchmark's cases the same way, so one rule decides whether a cached row is reused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from teachgym.bench import provenance
from teachgym.compare import RunCurve
from teachgym.config import load_config
from teachgym.provenance import ROOT, case_roots, git_state, machine, sources, sources_hash
from teachgym.provenance import git_commit as provenance_git_commit

#: The sources that decide a reasoning-gym benchmark's numbers (``benchmarks/reasoning_gym_*.py``): in its key.
#: The modules a reasoning-gym benchmark case starts from, for a key whose config names no components.
REASONING_GYM_ROOTS = ("teachgym.runner", "teachgym.envs.reasoning", "teachgym.students.hf",
                       "teachgym.policies.uniform")
#: Qwen2.5-0.5B's architecture (its config.json), with tied embeddings as it ships.
QWEN2_05B = {"vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
             "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
             "tie_word_embeddings": True}


def git_commit() -> str:
    """The repository's short commit (``unknown`` outside a git checkout)."""
    return provenance_git_commit(ROOT)


def environment() -> dict[str, str]:
    """This machine's package versions and CPU. The same case (config, policy, seed) need not give the same
    curve on two of them: floating-point kernels and library defaults differ, and training amplifies it."""
    found = machine(gpu=False)
    return {**found["packages"], "cpu": found["cpu"]}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    return machine(gpu=False)["cpu"]


def keys_for(config: str | Path, overrides: list[str], sections: dict[str, dict], simulated: bool) -> dict[str, dict]:
    """Each policy's provenance for a benchmark's cases of ``config`` with ``overrides``, seed aside.

    Where a case is logged and run decides nothing, so it is left out; a policy section's ``path`` (a model
    file) is keyed by the file's bytes, not by where this machine keeps it.
    """
    resolved = load_config(config, overrides).model_dump(mode="json")
    resolved.pop("tracking")
    resolved.pop("sweep", None)
    resolved["loop"].pop("output_dir")
    resolved["loop"].pop("seed")
    out = {}
    for p, section in sections.items():
        section = dict(section)
        path = section.pop("path", None)
        files = [Path(path)] if path and Path(path).exists() else []
        out[p] = provenance({**resolved, "policy": section}, simulated, files)
        out[p].pop("sources")  # a row keeps the code hash, not the map
    return out


def keyed_name(keys: dict[str, dict], policies: list[str]) -> str:
    """A sweep folder remembers its finished trials: a suffix from its cases' keys makes a changed key rerun."""
    return hashlib.sha1(" ".join(keys[p]["key"] for p in policies).encode()).hexdigest()[:8]


def current(rows: list[dict], keys: dict[str, dict]) -> list[dict]:
    """The rows of the current keys; a file of rows written before keys existed, as it is."""
    if not any("provenance" in r for r in rows):
        return rows
    return [r for r in rows if r.get("provenance", {}).get("key") == keys.get(r["policy"], {}).get("key")]


def curves(rows: list[dict]) -> list:
    """Cached rows as the learning curves `teachgym compare` reads from MLflow."""
    return [RunCurve(f"teaching-efficiency-{r['student']}", r.get("run_id") or "", f"{r['policy']}-s{r['seed']}",
                     r["policy"], str(r["seed"]), "FINISHED", r["examples"], r["acc_mean"], r["acc_min"])
            for r in rows]


def rollouts_spent(row: dict[str, Any]) -> list[float]:
    """The rollouts a GRPO run had spent by the end of each round (round 0: none), from its stored totals: every
    completion generated (``rl/completions``), dropped groups and screening included."""
    return list(itertools.accumulate(float(t.get("rl/completions", 0.0)) for t in row.get("totals") or []))


def script_provenance(config: dict[str, Any], packages: Sequence[str] = (), roots: Sequence[str] = (),
                      cpu: str | None = None) -> dict[str, Any]:
    """A benchmark script's case key: the resolved config, the source of every module the case imports (from the
    config's components and ``roots``: :func:`teachgym.provenance.sources`), the package versions (with
    ``packages``) and the CPU (``cpu``: the key on that CPU instead of this one's); the commit and whether the tree
    was dirty are recorded beside it, not keyed."""
    extra = {name: importlib.metadata.version(name) for name in packages}
    code = sources_hash(sources([*case_roots(config), *roots]))
    keyed = {"config": config, "code": code,
             "packages": {**environment(), **extra, **({"cpu": cpu} if cpu is not None else {})}}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]
    commit, dirty = git_state(ROOT)
    return {**keyed, "key": key, "commit": commit, "dirty": dirty}


def keyed_rows(file: Path, cases: Mapping[str, dict[str, Any]], measure: Callable[[str], dict[str, Any]],
               force: bool = False) -> list[dict[str, Any]]:
    """A keyed benchmark script's rows, one per case (``{name: its provenance}``, :func:`script_provenance`): the
    row of that key stored in ``file`` (a JSON list), else ``{"shape_name": name, **measure(name), "provenance":
    ...}`` measured now (always, with ``force``). The rows, in the cases' order, are written back to ``file``."""
    stored = {r["provenance"]["key"]: r for r in json.loads(file.read_text())} if file.exists() else {}
    rows = []
    for name, prov in cases.items():
        row = None if force else stored.get(prov["key"])
        if row is None:
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            row = {"shape_name": name, **measure(name), "provenance": prov}
        rows.append(row)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def script_staleness(provenances: Sequence[dict[str, Any]], packages: Sequence[str], roots: Sequence[str],
                     rerun: str) -> str:
    """What a benchmark script's report says when its stored rows are not the current code's: each row's key is
    compared with the key its own stored config gives now on the CPU that made it (:func:`script_provenance`: a
    row is current for its machine; the report names the CPU); '' when all match."""
    now = [script_provenance(p["config"], packages, roots, p["packages"].get("cpu"))["key"] for p in provenances]
    stale = sum(p["key"] != k for p, k in zip(provenances, now))
    if not stale:
        return ""
    return (f"**Stale: {stale} of {len(provenances)} rows are not the current code's numbers.** Their keys differ "
            f"from what the same config gives now (the source of a module the case imports, or the packages, "
            f"changed since); rerun `{rerun}` to make them current.")
