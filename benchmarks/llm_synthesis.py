"""How fast is the LLM data engine, and where does the time go?

Serves the same ``Synthesize`` request (strings env, 48 rows of ``reverse``) through each backend on a
random-weight tiny Llama saved to a directory (the model the tests use; its rows are junk, so every
candidate is generated, parsed, checked and rejected — the engine's full path, with a shortfall
filled from the env's generator):

- local, batch 1 / 16: ``backend: local`` (transformers ``generate`` with left padding)
- openai -> transformers serve: ``backend: openai`` against ``transformers serve`` on 127.0.0.1
  (one HTTP request per candidate; that server has no ``n`` and no request batching)

Prints a markdown table and writes it to benchmarks/results/llm_synthesis.md. A real teacher LLM is
orders of magnitude slower per token; the figures here are the engine's overhead and the transport's.

    python benchmarks/llm_synthesis.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = 48


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model_dir: str, port: int) -> subprocess.Popen:
    exe = os.path.join(os.path.dirname(sys.executable), "transformers")
    proc = subprocess.Popen([exe, "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(240):
        try:
            opener.open(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("transformers serve did not start")


def main() -> None:
    from teachgym.config import SynthesisConfig
    from teachgym.engine import materialize
    from teachgym.envs.strings import StringsEnv
    from teachgym.students.hf import HFStudent
    from teachgym.synthesis import LLMSynthesizer
    from teachgym.types import Request, Synthesize

    tmp = tempfile.mkdtemp()
    model_dir = os.path.join(tmp, "tiny")
    HFStudent(seed=0, tiny={"max_position_embeddings": 2048}).save(model_dir)
    env = StringsEnv(eval_per_skill=20, pool_per_skill=200)
    action = Synthesize([Request("reverse", ROWS, level=1)])
    common = {"max_new_tokens": 32, "max_attempts": 1, "oversample": 1.0}

    def measure(label: str, cfg: SynthesisConfig) -> dict:
        synth = LLMSynthesizer(cfg)
        materialize(Synthesize([Request("copy", 4)]), env, 4, seed=99, synthesizer=synth)  # warm-up
        start = time.perf_counter()
        data, report = materialize(action, env, ROWS, seed=0, synthesizer=synth)
        seconds = time.perf_counter() - start
        llm = report.llm
        return {"backend": label, "candidates": llm.generated, "calls": llm.backend_calls,
                "kept": llm.kept, "rejected": sum(llm.rejected.values()), "seconds": seconds,
                "cand_per_s": llm.generated / seconds, "trained_rows_from_llm": data["source"].count("llm")}

    rows = [
        measure("local, batch 1", SynthesisConfig(backend="local", model=model_dir, batch_size=1, **common)),
        measure("local, batch 16", SynthesisConfig(backend="local", model=model_dir, batch_size=16, **common)),
    ]
    port = _free_port()
    proc = _serve(model_dir, port)
    try:
        rows.append(measure("openai -> transformers serve", SynthesisConfig(
            backend="openai", model=model_dir, url=f"http://127.0.0.1:{port}/v1", **common)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    import torch

    lines = [
        f"# LLM data engine throughput ({ROWS} rows of `reverse` requested, random-weight tiny Llama, "
        f"max_new_tokens 32, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()})",
        "",
        "| backend | candidates | backend calls | kept | rejected | seconds | candidates/s | LLM rows trained on |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['candidates']} | {r['calls']} | {r['kept']} | {r['rejected']} | "
                     f"{r['seconds']:.2f} | {r['cand_per_s']:.1f} | {r['trained_rows_from_llm']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "benchmarks" / "results" / "llm_synthesis.md"
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
