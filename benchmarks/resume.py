"""What resuming costs and how exact it is, on the embedded default (`configs/arithmetic.yaml`).

1. **Exactness**: the same experiment three ways, each a real `teachgym run` in a subprocess:
   uninterrupted; SIGKILLed in the middle of round 3 (a few seconds after round 2's line, i.e. while
   round 3 trains), then `--resume`d. Per-round `acc/mean` of both, read back from MLflow, and the
   largest difference over every `acc/<skill>` and `loss/<skill>` of every round.
2. **State cost**: the seconds and bytes of each round's resumable state (`RunDir.save`: student
   weights + tokenizer, policy state, RNGs, history, the round's pending MLflow log), measured in
   an in-process run of the same config, against the round's own time.
3. **Unreachable tracking server**: wall time of `teachgym run` (interpreter start included) until
   it reports a closed port on 127.0.0.1, and an address that never answers (connect timeout).

    python benchmarks/resume.py                      # default config (tiny LM), 4 rounds, policy tscl
    python benchmarks/resume.py --student simulated  # the simulated student, 8 rounds
    python benchmarks/resume.py --rounds 8 --policy exp3

Prints markdown and writes it to benchmarks/results/resume_<student>.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "configs" / "arithmetic.yaml")


def _cli(args: list[str], cwd: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "teachgym.cli", "run", CONFIG, *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _curves(uri: str, name: str) -> dict[str, dict[int, list[float]]]:
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("teachgym/arithmetic").experiment_id
    (run,) = client.search_runs([exp], f"tags.mlflow.runName = '{name}'")
    out: dict[str, dict[int, list[float]]] = {}
    for key in run.data.metrics:
        for m in client.get_metric_history(run.info.run_id, key):
            out.setdefault(key, {}).setdefault(m.step, []).append(m.value)
    return out


def exactness(args: argparse.Namespace, tmp: str, overrides: list[str]) -> tuple[list[str], float]:
    uri = f"sqlite:///{tmp}/mlflow.db"
    common = [*overrides, f"tracking.tracking_uri={uri}", f"loop.output_dir={tmp}/out", "tracking.plots=false"]
    ref = _cli([*common, "tracking.run_name=reference"], tmp)
    out = ref.communicate()[0]
    assert ref.returncode == 0, out
    proc = _cli(common, tmp)
    start = time.monotonic()
    lines = []
    for line in proc.stdout:  # wait for round 2's line, then kill while round 3 is under way
        lines.append(line)
        if line.startswith("round  2/"):
            break
    round_time = (time.monotonic() - start) / 3
    time.sleep(args.kill_after * round_time)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _cli([*common, "--resume"], tmp)
    out = resumed.communicate()[0]
    assert resumed.returncode == 0 and "resuming" in out, out
    args.resumed_after = int(out.split("after round ")[1].split()[0])  # where the kill really landed
    a, b = _curves(uri, "reference"), _curves(uri, f"{args.policy}-s0")
    worst = 0.0
    for key, steps in a.items():
        if key.startswith(("acc/", "loss/")):
            for step, values in steps.items():
                assert len(b[key][step]) == 1, (key, step, b[key][step])
                worst = max(worst, abs(values[0] - b[key][step][0]))
    rows = ["| round | acc/mean uninterrupted | acc/mean killed + resumed | identical |", "|---|---|---|---|"]
    for step in sorted(a["acc/mean"]):
        x, y = a["acc/mean"][step][0], b["acc/mean"][step][0]
        rows.append(f"| {step} | {x:.4f} | {y:.4f} | {'yes' if x == y else 'NO'} |")
    return rows, worst


def state_cost(args: argparse.Namespace, tmp: str, overrides: list[str]) -> list[str]:
    from teachgym.config import load_config
    from teachgym.loop import run_experiment
    from teachgym.resume import RunDir

    timings: list[tuple[int, float, float]] = []
    real = RunDir.save

    def timed(self, state, student, keep="none"):
        t0 = time.perf_counter()
        size = real(self, state, student, keep)
        timings.append((state.round, time.perf_counter() - t0, size / 2**20))
        return size

    RunDir.save = timed
    try:
        cfg = load_config(CONFIG, [*overrides, f"loop.output_dir={tmp}/cost", f"tracking.tracking_uri=sqlite:///"
                                   f"{tmp}/cost.db", "tracking.run_name=cost"])
        result = run_experiment(cfg)
    finally:
        RunDir.save = real
    rows = ["| round | round time (s) | state save (s) | state size (MB) | save / round time |",
            "|---|---|---|---|---|"]
    for (r, secs, mb), rec in zip(timings, result.rounds):
        rows.append(f"| {r} | {rec.seconds:.2f} | {secs:.3f} | {mb:.2f} | {secs / rec.seconds:.1%} |")
    mean_s = sum(t[1] for t in timings[1:]) / max(1, len(timings) - 1)
    mean_mb = sum(t[2] for t in timings[1:]) / max(1, len(timings) - 1)
    rows.append(f"| mean (rounds 1+) | {sum(r.seconds for r in result.rounds[1:]) / (len(result.rounds) - 1):.2f} | "
                f"{mean_s:.3f} | {mean_mb:.2f} | |")
    return rows


def unreachable(tmp: str) -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A socket that listens but never accepts: the TCP connection opens and no HTTP answer ever comes.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    rows = ["| tracking server | exit code | seconds to the error (whole command) |", "|---|---|---|"]
    cases = [(f"http://127.0.0.1:{port}", "closed port"),
             (f"http://127.0.0.1:{silent.getsockname()[1]}", "connects, never answers")]
    for uri, what in cases:
        start = time.perf_counter()
        proc = _cli([f"tracking.tracking_uri={uri}", "student.name=simulated"], tmp)
        out = proc.communicate()[0]
        assert "does not answer" in out and "Traceback" not in out, out
        rows.append(f"| {what} (`{uri}`) | {proc.returncode} | {time.perf_counter() - start:.2f} |")
    silent.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", choices=["lm", "simulated"], default="lm")
    parser.add_argument("--policy", default="tscl")
    parser.add_argument("--rounds", type=int, default=None, help="default: 4 for the LM, 8 for simulated")
    parser.add_argument("--kill-after", type=float, default=0.4, help="fraction of a round to wait after round 2")
    args = parser.parse_args()
    rounds = args.rounds or (4 if args.student == "lm" else 8)
    overrides = [f"policy.name={args.policy}", f"loop.rounds={rounds}"]
    if args.student == "simulated":
        overrides.append("student.name=simulated")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        t0 = time.perf_counter()
        exact_rows, worst = exactness(args, tmp, overrides)
        cost_rows = state_cost(args, tmp, overrides)
        reach_rows = unreachable(tmp)
        total = time.perf_counter() - t0
    text = "\n".join([
        f"# Resume on `configs/arithmetic.yaml` ({args.student} student, policy `{args.policy}`, {rounds} rounds)",
        "",
        f"Generated by `python benchmarks/resume.py --student {args.student}` in {total:.0f} s on "
        f"{os.cpu_count()} CPU cores.",
        "",
        f"## Killed with SIGKILL in the middle of round {args.resumed_after + 1}, then `--resume`d (after round "
        f"{args.resumed_after})",
        "",
        *exact_rows,
        "",
        f"Largest difference over every `acc/<skill>` and `loss/<skill>` of every round: **{worst:.3g}**; every "
        "parent metric of the resumed run has exactly one point per step.",
        "",
        "## What each round's resumable state costs",
        "",
        *cost_rows,
        "",
        "## Time to the unreachable-server error",
        "",
        *reach_rows,
        "",
    ])
    print(text)
    out = ROOT / "benchmarks" / "results" / f"resume_{args.student}.md"
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
