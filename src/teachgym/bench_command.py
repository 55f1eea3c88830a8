"""``teachgym bench`` as a command: run the missing cases, write the reports, and say which rows are stale.

A report made of stored rows (``--cached``, the committed leaderboard, the README's table) compares each row's
key with the key its case has now (:func:`teachgym.bench.case`): a row whose key differs is stale, and the report
says so with the modules whose source changed since (from the ``<kind>.sources.json`` index the rows' code
hashes point into), never presenting it as current. An LM row is current for the machine that made it: another
machine's rows are reported as that machine's, never mixed with this one's.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from teachgym import bench_report
from teachgym.bench import (
    HARDWARE,
    LEADERBOARD,
    LEARNED,
    Challenge,
    case,
    default_policies,
    hardware_of,
    keep,
    load_challenges,
    machine_name,
    machines,
    missing_learned,
    parse_seeds,
    run_bench,
    steps,
    this_machine,
    variant,
)
from teachgym.bench_protocol import PROTOCOL, Protocol, calibrate, load_protocol, write_protocol
from teachgym.config import ConfigError
from teachgym.provenance import changed_modules
from teachgym.registry import resolve

SHOWN_MODULES = 12  # a stale notice names this many changed modules, then "+N more"


def staleness(rows: Sequence[Mapping[str, Any]], challenges: Sequence[Challenge], simulated: bool,
              index: Mapping[str, Mapping[str, str]], learned: Path = LEARNED) -> dict[str, Any]:
    """Which finished rows' keys are not their cases' current keys (on the machine that made each row), and the
    modules that changed since.

    Returns:
        ``{"stale": n, "total": n, "modules": [...], "unknown": n}``: ``unknown`` counts stale rows whose code hash
        is not in ``index`` (rows from before the index), whose changed modules cannot be named.
    """
    by_name = {c.name: c for c in challenges}
    now: dict[tuple[Any, ...], tuple[str, dict[str, str]] | None] = {}
    stale, unknown, modules = 0, 0, set()
    finished = [r for r in rows if r.get("status") == "finished" and "provenance" in r]
    for r in finished:
        pair = (r["challenge"], r["policy"], hardware_of(r))  # current for the machine that made it, or stale
        if pair not in now:
            found = (case(by_name[pair[0]], pair[1], simulated, Path("."), learned, hardware=pair[2])
                     if pair[0] in by_name else None)
            now[pair] = None if found is None else (found[1]["key"], found[1]["sources"])
        current = now[pair]
        if current is not None and r["provenance"]["key"] == current[0]:
            continue
        stale += 1
        old = index.get(r["provenance"].get("code", ""))
        if old is None or current is None:
            unknown += 1
        else:
            modules.update(changed_modules(old, current[1]))
    return {"stale": stale, "total": len(finished), "modules": sorted(modules), "unknown": unknown}


def stale_notice(found: Mapping[str, Any]) -> str:
    """What a report says about its stale rows (:func:`staleness`): '' when every row is current."""
    if not found["stale"]:
        return ""
    mods = [f"`{m}`" for m in found["modules"]]
    named = ", ".join(mods[:SHOWN_MODULES]) + (f" and {len(mods) - SHOWN_MODULES} more" if len(mods) > SHOWN_MODULES
                                               else "")
    parts = [f"the source of {named} changed since"] if mods else []
    if found["unknown"]:
        parts.append(f"{found['unknown']} row(s) predate the source index, so what changed for them cannot be named")
    why = "; ".join(parts) or "their config, packages or hardware differ from the current ones"
    return (f"**Stale: {found['stale']} of {found['total']} rows are not the current code's numbers.** Their keys "
            f"are not their cases' current keys: {why}. Re-run their cases to make them current.")


def report_staleness(rows: Sequence[Mapping[str, Any]], challenges: Sequence[Challenge], simulated: bool,
                     results: Path, learned: Path = LEARNED) -> str:
    """:func:`stale_notice` for rows stored in ``results`` (whose ``<kind>.sources.json`` names their sources)."""
    kind = "simulated" if simulated else "lm"
    file = results / f"{kind}.sources.json"
    index = json.loads(file.read_text()) if file.exists() else {}
    return stale_notice(staleness(rows, challenges, simulated, index, learned))


def bench_command(policies: Sequence[str], challenge_names: Sequence[str] | None, seeds: str | None,
                  simulated: bool, fmt: str, directory: str, results: str, work: str, sequential: bool, mlflow: bool,
                  command: str, cached: bool = False, reference: str | None = None, learned: str | None = None,
                  protocol: str | None = None, calibrate: bool = False) -> int:
    """``teachgym bench``: run the missing cases, write the report files, print the leaderboard (or JSON rows).

    ``seeds``: the teachers' seeds (default: the protocol's scoring seeds); the anchors also run on the protocol's
    calibration seeds. ``cached``: run nothing, and report the cases of the current keys already in the results
    file (a leaderboard whose rows came from several commands: the anchors everywhere, the teachers where they
    ran). ``reference``: the committed leaderboard's folder (default: :data:`~teachgym.bench.LEADERBOARD`, shipped
    with the package), whose rows of the current keys are reused; only ``results`` is written, and nothing when no
    case has a row. ``learned``: the folder of the ``learned`` teachers' models (default
    :data:`~teachgym.bench.LEARNED`). ``protocol``: the protocol file (default
    :data:`~teachgym.bench_protocol.PROTOCOL`); ``calibrate``: run the anchors on its calibration seeds only and
    write the protocol they decide to ``protocol`` (default ``<results>/protocol.yaml``).
    """
    challenges = load_challenges(directory, challenge_names)
    chosen = [] if calibrate else (list(policies) or default_policies())
    for p in chosen:
        name, stepping, _ = variant(p)
        resolve("policies", name)  # an unknown teacher fails now, with near names
        if stepping and not steps(name):
            raise ConfigError(f"{p}: {name!r} has no step() method, so it cannot teach per step; drop '@step'")
    registered = load_protocol(protocol or PROTOCOL)
    out = Path(results)
    ref = Path(reference) if reference else LEADERBOARD
    models = Path(learned) if learned else LEARNED
    ray = importlib.util.find_spec("ray") is not None
    say = (lambda *a, **k: None) if fmt == "json" else print

    def progress(row: dict[str, Any]) -> None:
        what = f"{row['score']:.3f}" if row["status"] == "finished" else f"{row['status']}: {row.get('error', '')}"
        say(f"  {row['challenge']:<14} {row['policy']:<22} seed {row['seed']}  {what}", flush=True)

    if "learned" in chosen and (untrained := missing_learned(challenges, models)):
        say(f"learned: skipped on {', '.join(untrained)} (no model in {models}; train one: "
            f"python benchmarks/train_bench_teachers.py {' '.join(untrained)})", flush=True)
    teach_seeds = [] if calibrate else (parse_seeds(seeds) if seeds else list(registered.scoring_seeds))
    rows = run_bench(challenges, chosen, teach_seeds, simulated, out, Path(work), models,
                     sequential=sequential or simulated or not ray, tracking=mlflow, on_case=progress, run=not cached,
                     reference=ref, protocol=registered)
    kind = "simulated" if simulated else "lm"
    notice = ""
    if cached and not simulated:  # another machine's rows, where it made more of these cases than this one did
        rows, notice = _most_rows(rows, machines(out, kind, ref), lambda hw: run_bench(
            challenges, chosen, teach_seeds, simulated, out, Path(work), models, run=False, reference=ref,
            protocol=registered, hardware=hw))
    if not any(r["status"] == "finished" for r in rows):  # an empty report would say nothing, and replace one
        print(f"no finished case of the current keys in {out}" + ("" if ref.resolve() == out.resolve() else
              f" or {ref}") + (" (--cached runs nothing: run without it)" if cached else "") + "; no report written",
              file=sys.stderr)
        return 1
    if calibrate:
        return _calibrate(rows, challenges, registered, kind, Path(protocol) if protocol else out / "protocol.yaml",
                          command)
    text = _write_reports(rows, challenges, out, kind, command, ref, registered, notice)
    if fmt == "json":
        print(json.dumps(bench_report.normalised(rows, registered, kind), indent=1))
    else:
        print("\n" + text + f"\nwritten: {out / (kind + '.md')}, {kind}.json, {kind}_profile.png")
    return 0 if all(r["status"] == "finished" for r in rows) else 1


def _most_rows(rows: list[dict[str, Any]], found: Sequence[tuple[Any, ...]],
               rows_on: Callable[[tuple[Any, ...]], list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], str]:
    """Of this machine's ``rows`` and the rows of the current keys on each machine in ``found``
    (:func:`~teachgym.bench.machines`; ``rows_on`` gives them), those with the most finished cases, and what the
    report says when they are another machine's: a leaderboard never mixes machines."""
    here = this_machine()
    best, where = rows, here
    for hw in found:
        theirs = [] if hw == here else rows_on(hw)
        if sum(r["status"] == "finished" for r in theirs) > sum(r["status"] == "finished" for r in best):
            best, where = theirs, hw
    if where == here:
        return rows, ""
    return best, (f"**Made on another machine: {machine_name(where)}** (this one: {machine_name(here)}). They "
                  "are the current code's numbers on that machine; floating "
                  "point differs across CPUs and core counts, so a run here (without `--cached`) makes its own rows.")


def _write_reports(rows: Sequence[dict[str, Any]], challenges: Sequence[Challenge], out: Path, kind: str,
                   command: str, ref: Path, protocol: Protocol, notice: str = "") -> str:
    """``<kind>.json`` (the cases, the leaderboard), ``<kind>.md`` and ``<kind>_profile.png``; the markdown. The rows
    reused from the reference are copied into ``<kind>.jsonl`` (with their source maps), so that the folder holds
    every row its report names."""
    out.mkdir(parents=True, exist_ok=True)
    keep(out, kind, rows, ref)
    cases = [[r["provenance"]["key"], r["seed"]] for r in rows if r["status"] == "finished"]
    failed = [{k: r.get(k) for k in ("challenge", "policy", "seed", "status", "error")}
              for r in rows if r["status"] != "finished"]
    (out / f"{kind}.json").write_text(json.dumps({"command": command, "cases": cases, "failed": failed,
                                                  "leaderboard": bench_report.leaderboard(rows, protocol, kind),
                                                  "without_headroom": bench_report.without_headroom(rows, protocol,
                                                                                                    kind)},
                                                 indent=1, default=str) + "\n")
    text = report(rows, challenges, out, kind == "simulated", command, ref, notice, protocol)
    (out / f"{kind}.md").write_text(text)
    bench_report.plot_profile(rows, str(out / f"{kind}_profile.png"), protocol, kind)
    return text


def _calibrate(rows: Sequence[dict[str, Any]], challenges: Sequence[Challenge], protocol: Protocol, kind: str,
               path: Path, command: str) -> int:
    """Decide the ``kind`` section of the protocol from the anchors' calibration rows and write the file."""
    found = calibrate(rows, protocol, kind)
    score = {**protocol.score, **{c.name: protocol.score_of(c.name, c.bench.score) for c in challenges}}
    made = sorted({hardware_of(r) for r in rows if r["seed"] in protocol.calibration_seeds}, key=str)
    made_on = ("any machine — the twins' numpy arithmetic is the same on every one" if kind == "simulated" else
               "; ".join(machine_name(hw) for hw in made))
    new = dataclasses.replace(protocol, score=score, calibrated={**protocol.calibrated, kind: found},
                              machines={**protocol.machines, kind: made_on})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_protocol(new, path, command)
    for ch, v in found.items():
        print(f"  {ch:<14} uniform {v['uniform']:.3f}  oracle {v['oracle']:.3f}  headroom {v['headroom']:+.3f} "
              f"[{v['low']:+.3f}, {v['high']:+.3f}]  {'in the aggregate' if v['in_aggregate'] else 'left out'}")
    print(f"protocol written: {path} ({kind}: calibration seeds {list(protocol.calibration_seeds)})")
    return 0


def report(rows: Sequence[dict[str, Any]], challenges: Sequence[Challenge], results: Path, simulated: bool,
           command: str, reference: Path | None = None, notice: str = "", protocol: Protocol | None = None) -> str:
    """The markdown report of these rows (with the rank agreement when the other leaderboard's rows exist, in
    ``results`` or else in ``reference``), under ``notice`` (:func:`report_staleness`, for stored rows)."""
    kind, other = ("simulated", "lm") if simulated else ("lm", "simulated")
    other_rows = reported_rows(results, other)
    if other_rows is None and reference is not None:
        other_rows = reported_rows(reference, other)
    text = bench_report.markdown(rows, {c.name: c.bench.description for c in challenges}, _footer(rows, command),
                                 other_rows, "LM" if simulated else "simulated", notice, protocol, kind)
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
    return (f"Command: `{command}`. Machine: {machine_name([p[k] for k in HARDWARE])}; torch {pk['torch']}, "
            f"transformers {pk['transformers']}, trl {pk['trl']}, numpy {pk['numpy']}. Rows from commit(s) "
            f"{', '.join(commits)}; code hash {p['code']}.")


def protocol_of(rows: Sequence[Mapping[str, Any]]) -> Protocol | None:
    """The protocol stored rows are reported under: the registered one, or None for rows made before it (they have
    no calibration seeds, and are reported as they were)."""
    registered = load_protocol()
    return registered if any(r.get("seed") in registered.calibration_seeds for r in rows) else None


def stored_report(results: Path, kind: str, challenges_dir: Path, learned: Path = LEARNED) -> str | None:
    """The report of the rows ``<results>/<kind>.json`` names (as ``teachgym bench`` last made it), with a notice of
    the stale ones; None without such a report."""
    rows = reported_rows(results, kind)
    if not rows:
        return None
    command = json.loads((results / f"{kind}.json").read_text())["command"]
    challenges = load_challenges(challenges_dir, sorted({r["challenge"] for r in rows}))
    simulated = kind == "simulated"
    protocol = protocol_of(rows)
    return report(rows, challenges, results, simulated, command,
                  notice=report_staleness(rows, challenges, simulated, results, learned), protocol=protocol)
