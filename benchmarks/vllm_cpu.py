"""vLLM on its CPU build against the student's own ``generate``: engine start, weight reload, evaluation time.

Runs in the vLLM environment (``make test-vllm`` builds ``.venv-vllm``); CPU figures, and labelled so:

    .venv-vllm/bin/python benchmarks/vllm_cpu.py          # writes benchmarks/results/vllm_cpu.{json,md}

For two students, the tiny one with a head size vLLM's CPU attention takes (64) and a ~100M-parameter
Qwen2-shaped model with random weights (both with teachgym's byte tokenizer, nothing downloaded), it measures:

- **a fresh engine per evaluation** (what ``eval.backend: vllm`` does today, :mod:`teachgym.vllm_eval`): the wall
  time of one ``python -m teachgym.vllm_eval`` job of 200 prompts (process start, engine start, answers, exit);
- **a resident engine** (:class:`teachgym.vllm_engine.ResidentEngine`): its start, then per round the time to
  save the student and reload the weights into the running engine;
- **answering** ``--items`` arithmetic prompts (8 new tokens, greedy) with ``HFStudent.generate`` (batches of 256)
  and with the resident engine, and whether the answers agree.

Rows are keyed by the student's shape, the settings, the source of the modules measured and their imports, the
packages (vllm-cpu included) and the CPU; a row whose key matches is reused (``--force`` reruns).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from teachgym.benchmarking import keyed_rows, script_provenance  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHAPES = {
    "tiny (head_dim 64)": {"arch": "llama", "train_rows": 3000, "hidden_size": 128, "intermediate_size": 256,
                           "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
                           "tie_word_embeddings": True},
    "Qwen2-shaped ~100M": {"arch": "qwen2", "train_rows": 0, "hidden_size": 768, "intermediate_size": 2048,
                           "num_hidden_layers": 16, "num_attention_heads": 12, "num_key_value_heads": 2},
}
ENGINE = {"dtype": "float32", "max_model_len": 256, "enforce_eager": True, "gpu_memory_utilization": 0.1}
SETTINGS = {"max_new_tokens": 8, "generate_batch": 256, "fresh_prompts": 200, "engine": ENGINE}
ROOTS = ["teachgym.vllm_engine", "teachgym.vllm_eval", "teachgym.students.hf"]


def _key(shape: dict[str, Any], items: list[int]) -> dict[str, Any]:
    return script_provenance({"shape": shape, "items": items, "settings": SETTINGS}, packages=["vllm-cpu"],
                             roots=ROOTS)


def _student(shape: dict[str, Any], folder: str) -> Any:
    """The student: teachgym's HFStudent on a folder of random weights in the shape (a Llama or a Qwen2), after an
    SFT round of ``train_rows`` arithmetic rows (the tiny one: so that its answers are not near-ties of flat
    logits)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from teachgym.students.hf import HFStudent, byte_tokenizer

    tok = byte_tokenizer()
    fields = {k: v for k, v in shape.items() if k not in ("arch", "train_rows")}
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if shape["arch"] == "qwen2" else (LlamaConfig,
                                                                                             LlamaForCausalLM)
    torch.manual_seed(0)
    model = model_cls(config_cls(vocab_size=len(tok), max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **fields))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    student = HFStudent(model=folder, batch_size=32, learning_rate=3e-3, seed=0)
    if shape["train_rows"]:
        from teachgym.envs.arithmetic import ArithmeticEnv

        pool = ArithmeticEnv(eval_per_skill=10, pool_per_skill=shape["train_rows"] // 3).pool()
        student.train(pool.shuffle(seed=0).select(range(shape["train_rows"])))
    return student


def _prompts(n: int) -> list[str]:
    from teachgym.envs.arithmetic import ArithmeticEnv

    pool = ArithmeticEnv(eval_per_skill=10, pool_per_skill=max(1, n // 6 + 1)).pool()["prompt"]
    return [pool[i % len(pool)] for i in range(n)]


def _fresh_engine_s(student: Any, tmp: str) -> float:
    """Wall seconds of one evaluation in a fresh engine (``python -m teachgym.vllm_eval``), 200 prompts."""
    model, job = f"{tmp}/fresh", f"{tmp}/job.json"
    student.save(model)
    Path(job).write_text(json.dumps({"model": model, "prompts": _prompts(SETTINGS["fresh_prompts"]),
                                     "max_new_tokens": SETTINGS["max_new_tokens"], "engine_args": ENGINE,
                                     "out": f"{tmp}/answers.json"}))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "teachgym.vllm_eval", job], check=True, capture_output=True)
    return time.perf_counter() - start


def measure(shape: dict[str, Any], items: list[int]) -> dict[str, Any]:
    from teachgym.vllm_engine import ResidentEngine

    n_tokens = SETTINGS["max_new_tokens"]
    with tempfile.TemporaryDirectory() as tmp:
        student = _student(shape, f"{tmp}/init")
        row: dict[str, Any] = {"params": student.model.num_parameters(), "cores": os.cpu_count(),
                               "fresh_s": _fresh_engine_s(student, tmp)}
        with ResidentEngine(ENGINE) as engine:
            student.save(f"{tmp}/r0")
            engine.answers(f"{tmp}/r0", _prompts(8), n_tokens)
            row["start_s"] = engine.timings["start_s"]
            reloads = []
            for r in (1, 2, 3):  # three more "rounds": save, reload (the weights are the same; the work is not)
                t = time.perf_counter()
                student.save(f"{tmp}/r{r}")
                save_s = time.perf_counter() - t
                engine.answers(f"{tmp}/r{r}", _prompts(8), n_tokens)
                reloads.append((save_s, engine.timings["reload_s"]))
            row["save_s"] = min(s for s, _ in reloads)
            row["reload_s"] = min(r for _, r in reloads)
            row["items"] = []
            for n in items:
                prompts = _prompts(n)
                t = time.perf_counter()
                ours = student.generate(prompts, max_new_tokens=n_tokens, batch_size=SETTINGS["generate_batch"])
                generate_s = time.perf_counter() - t
                theirs = engine.answers(f"{tmp}/r3", prompts, n_tokens)
                row["items"].append({"n": n, "generate_s": generate_s, "vllm_s": engine.timings["generate_s"],
                                     "agree": sum(a.rstrip("\ufffd") == b.rstrip("\ufffd")
                                                  for a, b in zip(ours, theirs)) / n})
    return row


def report(rows: list[dict[str, Any]]) -> str:
    p = rows[0]["provenance"]
    pk = p["packages"]
    lines = ["# vLLM's CPU build against the student's generate (CPU figures)", "",
             f"Generated by `.venv-vllm/bin/python benchmarks/vllm_cpu.py` from `vllm_cpu.json` (commit "
             f"{p['commit']}; vllm-cpu {pk['vllm-cpu']}, torch {pk['torch']}, transformers {pk['transformers']}, "
             f"cpu {pk['cpu']}, {rows[0]['cores']} cores). Greedy answers of {SETTINGS['max_new_tokens']} "
             f"new tokens to arithmetic prompts; `generate` in batches of {SETTINGS['generate_batch']}; vLLM with "
             f"`{json.dumps(ENGINE)}`. These are CPU numbers: on a GPU every figure differs, and "
             "`benchmarks/gpu.py` is where they are measured.", "",
             "| student | parameters | fresh engine per evaluation, 200 items (s) | resident: start (s) | "
             "resident: save + reload per round (s) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['shape_name']} | {r['params'] / 1e6:.1f}M | {r['fresh_s']:.1f} | {r['start_s']:.1f} | "
                     f"{r['save_s']:.2f} + {r['reload_s']:.2f} |")
    lines += ["", "| student | items | `generate` (s) | vLLM, resident engine (s) | generate / vLLM | same answers |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        for it in r["items"]:
            lines.append(f"| {r['shape_name']} | {it['n']:,} | {it['generate_s']:.1f} | {it['vllm_s']:.1f} | "
                         f"{it['generate_s'] / it['vllm_s']:.2f} | {100 * it['agree']:.1f}% |")
    lines += ["", "A round's evaluation with a fresh engine costs the first table's third column; with the resident "
              "engine it costs the save and the reload (the fourth and fifth) plus the answering. \"Same answers\" "
              "compares the two greedy answers item by item, without a trailing U+FFFD (an unfinished UTF-8 "
              "character: `decode` writes it, vLLM holds it back); a float32 near-tie could flip a token, and the "
              "column says how often one did. The tiny student has had a round of SFT (3,000 rows); the ~100M "
              "model has its random weights."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", default="200,2000,20000", help="eval sizes, comma-separated")
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES), help="which students (default: both)")
    ap.add_argument("--force", action="store_true", help="rerun rows whose key matches")
    ap.add_argument("--out", default=str(RESULTS), help="the folder of vllm_cpu.{json,md}")
    a = ap.parse_args()
    items = [int(x) for x in a.items.split(",")]
    out = Path(a.out)
    rows = keyed_rows(out / "vllm_cpu.json", {name: _key(SHAPES[name], items) for name in a.shapes},
                      lambda name: measure(SHAPES[name], items), a.force)
    text = report(rows)
    (out / "vllm_cpu.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
