"""Real-model figures on a CUDA GPU: teachgym's overhead over bare TRL, vLLM against ``generate``, memory.

One prepared script for a machine with a CUDA GPU (and ``pip install 'teachgym[lora,vllm]'``). It builds a
model of Qwen2-0.5B's shape with random weights (no download; the timings do not depend on the values)
and measures:

* **sft** -- one SFT round of the ``hf`` student (``HFStudent.train``) against bare TRL (an ``SFTTrainer``
  built by hand with the same arguments) on the same rows: seconds and the ratio;
* **eval** -- per-skill evaluation answers for 2,000 prompts with ``generate`` (the student's batched
  greedy decoding) against ``eval.backend: vllm`` (:class:`teachgym.vllm_eval.VLLMAnswers`, a fresh
  engine in a subprocess, start-up included): seconds and the ratio; and the resident engine
  (:class:`teachgym.vllm_engine.ResidentEngine`): its start, a round's save + reload, and its answers — the
  design ``benchmarks/results/vllm_cpu.md`` favours on a CPU, to be confirmed here;
* **grpo** -- one GRPO round of the ``grpo`` student with and without ``use_vllm`` (colocate);
* **memory** -- the peak GPU memory of each part (``torch.cuda.max_memory_allocated``);
* **state** -- the round state's MB, full fine-tune and LoRA (r 16, every linear layer).

    python benchmarks/gpu.py                 # on a CUDA machine: writes benchmarks/results/gpu.{json,md}
    python benchmarks/gpu.py --smoke         # any machine: tiny dimensions on the CPU, writes nothing under
                                             # results/ (it checks that the script runs); where vLLM is installed
                                             # (.venv-vllm: its CPU build) the resident engine runs too

Each row carries the machine (GPU name and count, CPU, cores), the package versions and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from teachgym.benchmarking import QWEN2_05B, environment, git_commit  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# head_dim 64: the smallest vLLM's CPU attention takes (16 is refused).
SMOKE = {**QWEN2_05B, "vocab_size": 259, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512}
#: vllm.LLM arguments: a CUDA GPU shared with training, or (--smoke) the CPU build.
ENGINE_GPU = {"gpu_memory_utilization": 0.3}
ENGINE_CPU = {"dtype": "float32", "max_model_len": 256, "enforce_eager": True, "gpu_memory_utilization": 0.05}


def machine() -> dict[str, Any]:
    """What ran it, read from the machine: GPUs, CPU, cores, packages, commit."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {**environment(), "gpus": gpus or "none", "cores": os.cpu_count(), "commit": git_commit(),
            "command": " ".join(["python", "benchmarks/gpu.py", *sys.argv[1:]])}


def build_model(folder: str, shape: dict[str, Any]) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from teachgym.students.hf import byte_tokenizer

    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(**shape)).to(torch.bfloat16).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)


def rows(n: int) -> Any:
    """Arithmetic rows from the built-in env (prompt, completion, skills)."""
    from teachgym.envs.arithmetic import ArithmeticEnv

    env = ArithmeticEnv(eval_per_skill=10, pool_per_skill=max(10, n // 6 + 1))
    return env.pool().shuffle(seed=0).select(range(n)), env


class _Peak:
    """Seconds and peak GPU memory of a block."""

    def __enter__(self) -> _Peak:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        self.peak_gb = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def sft(model: str, n: int, device: str) -> dict[str, Any]:
    """One SFT round: the hf student, then bare TRL with the same arguments, from the same weights."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from teachgym.students.hf import HFStudent

    data, _ = rows(n)
    student = HFStudent(model=model, batch_size=16, learning_rate=1e-4, device=device)
    with _Peak() as ours:
        report = student.train(data)
    bare_model = AutoModelForCausalLM.from_pretrained(model).to(student.device)
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(**student._trainer_args(out, report.steps), **student.train_args)
        trainer = SFTTrainer(model=bare_model, args=args, train_dataset=data.select_columns(["prompt", "completion"]),
                             processing_class=student.tokenizer)
        with _Peak() as bare:
            trainer.train()
    return {"rows": n, "steps": report.steps, "teachgym_s": ours.seconds, "trl_s": bare.seconds,
            "ratio": ours.seconds / bare.seconds, "peak_gb": ours.peak_gb, "trl_peak_gb": bare.peak_gb}


def evaluation(model: str, n: int, device: str, use_vllm: bool, resident: bool) -> dict[str, Any]:
    """Answers to ``n`` eval prompts: the student's generate, then (GPU) a fresh vLLM engine, then (where vLLM is
    installed) the resident engine: its start, a round's save + reload, and its answers."""
    from teachgym.students.hf import HFStudent

    data, _ = rows(n)
    prompts = list(data["prompt"])
    student = HFStudent(model=model, device=device)
    with _Peak() as gen:
        student.generate(prompts, max_new_tokens=32, batch_size=256)
    out = {"prompts": n, "generate_s": gen.seconds, "generate_peak_gb": gen.peak_gb}
    if use_vllm:
        from teachgym.vllm_eval import VLLMAnswers

        with _Peak() as vl:
            VLLMAnswers(student, ENGINE_GPU).generate(prompts, max_new_tokens=32)
        out.update({"vllm_s": vl.seconds, "ratio": gen.seconds / vl.seconds})
    if resident:
        from teachgym.vllm_engine import ResidentEngine

        with tempfile.TemporaryDirectory() as tmp, ResidentEngine(ENGINE_GPU if use_vllm else ENGINE_CPU) as engine:
            student.save(f"{tmp}/r0")
            engine.answers(f"{tmp}/r0", prompts[:8], 32)
            start_s = engine.timings["start_s"]
            start = time.perf_counter()
            student.save(f"{tmp}/r1")
            save_s = time.perf_counter() - start
            engine.answers(f"{tmp}/r1", prompts, 32)
            t = engine.timings
        out.update({"resident_start_s": start_s, "resident_save_s": save_s,
                    "resident_reload_s": t["reload_s"], "resident_s": t["generate_s"]})
    return out


def grpo(model: str, n: int, device: str, use_vllm: bool) -> dict[str, Any]:
    """One GRPO round of ``n`` prompts (8 completions each), with or without vLLM (colocate)."""
    from teachgym.students.grpo import GRPOStudent

    data, env = rows(n)
    student = GRPOStudent(env=env, model=model, num_generations=8, batch_size=64, max_completion_length=16,
                          use_vllm=use_vllm, device=device,
                          grpo_args={"vllm_gpu_memory_utilization": 0.3} if use_vllm else None)
    with _Peak() as t:
        report = student.train(data)
    return {"prompts": n, "use_vllm": use_vllm, "seconds": t.seconds, "peak_gb": t.peak_gb, "steps": report.steps}


def state_mb(model: str, device: str) -> dict[str, float]:
    from teachgym.students.hf import HFStudent

    out = {}
    for label, lora in (("full", None), ("lora_r16", {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"})):
        student = HFStudent(model=model, lora=lora, device=device)
        with tempfile.TemporaryDirectory() as tmp:
            student.save_state(tmp)
            out[label] = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 1e6
    return out


def markdown(result: dict[str, Any]) -> str:
    m, s, e, g = result["machine"], result["sft"], result["eval"], result["grpo"]
    gpus = ", ".join(m["gpus"]) if isinstance(m["gpus"], list) else m["gpus"]
    lines = [
        "# A 0.5B-shaped student on a GPU",
        "",
        f"Generated by `{m['command']}` from `gpu.json` (Qwen2-0.5B's shape, random weights, bf16 weights).",
        "",
        "| part | teachgym | reference | ratio | peak GPU GB |",
        "|---|---:|---:|---:|---:|",
        f"| SFT round, {s['rows']} rows ({s['steps']} steps) | {s['teachgym_s']:.1f} s | bare TRL {s['trl_s']:.1f} s | "
        f"{s['ratio']:.2f} | {s['peak_gb']:.1f} |",
        f"| eval, {e['prompts']} prompts | vLLM {e.get('vllm_s', float('nan')):.1f} s | generate "
        f"{e['generate_s']:.1f} s | {e.get('ratio', float('nan')):.2f}x | {e['generate_peak_gb']:.1f} |",
    ]
    if "resident_s" in e:
        lines.append(f"| eval, {e['prompts']} prompts, resident vLLM engine (start {e['resident_start_s']:.1f} s once; "
                     f"per round save {e['resident_save_s']:.2f} s + reload {e['resident_reload_s']:.2f} s) | "
                     f"{e['resident_s']:.1f} s | generate {e['generate_s']:.1f} s | "
                     f"{e['generate_s'] / e['resident_s']:.2f}x | |")
    for row in g:
        lines.append(f"| GRPO round, {row['prompts']} prompts x 8, {'vLLM' if row['use_vllm'] else 'generate'} | "
                     f"{row['seconds']:.1f} s | | | {row['peak_gb']:.1f} |")
    st = result["state"]
    lines += ["", f"Round state per round: full fine-tune {st['full']:.0f} MB, LoRA r=16 {st['lora_r16']:.1f} MB.", "",
              f"Machine: {gpus}; {m['cpu']}, {m['cores']} cores; torch {m['torch']}, transformers {m['transformers']}, "
              f"trl {m['trl']}; commit {m['commit']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny dimensions on the CPU, no vLLM, nothing written")
    args = parser.parse_args()
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA GPU (torch sees none); --smoke checks the script on a CPU",
              file=sys.stderr)
        return 2
    use_vllm = not args.smoke
    import importlib.util

    resident = importlib.util.find_spec("vllm") is not None  # on a GPU, or (--smoke) vLLM's CPU build
    if use_vllm:
        from teachgym.vllm_eval import require_vllm

        require_vllm("benchmarks/gpu.py")
    device = "cpu" if args.smoke else "cuda"
    sizes = {"sft": 64, "eval": 40, "grpo": 8} if args.smoke else {"sft": 4000, "eval": 2000, "grpo": 256}
    with tempfile.TemporaryDirectory(prefix="teachgym-gpu-") as work:
        model = os.path.join(work, "qwen2-0.5b-shape")
        build_model(model, SMOKE if args.smoke else QWEN2_05B)
        result = {"machine": machine(), "smoke": args.smoke,
                  "sft": sft(model, sizes["sft"], device),
                  "eval": evaluation(model, sizes["eval"], device, use_vllm, resident),
                  "grpo": [grpo(model, sizes["grpo"], device, False)]
                  + ([grpo(model, sizes["grpo"], device, True)] if use_vllm else []),
                  "state": state_mb(model, device)}
    text = markdown(result)
    print(text)
    if not args.smoke:
        (RESULTS / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "gpu.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
