"""``configs/qwen_lora.yaml`` (a hub model with LoRA, bf16, gradient checkpointing, vLLM evaluation) on a CPU.

The hub model cannot be downloaded here, so the test builds the same architecture (Qwen2) with random
weights and tiny dimensions, saves it as a local model folder, and runs the shipped config on it with
only ``student.model`` (that folder) and the sizes changed; the vLLM evaluation becomes ``generate``
(vLLM needs a GPU: tests/test_vllm.py checks that it is refused here with the hint).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from teachgym.config import load_config
from teachgym.loop import run_experiment

CONFIG = Path(__file__).parent.parent / "configs" / "qwen_lora.yaml"


@pytest.fixture
def tiny_qwen(tmp_path) -> str:
    """A Qwen2 model folder with random weights, tiny dimensions and the byte-level tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from teachgym.students.hf import byte_tokenizer

    tok = byte_tokenizer()
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id)
    folder = tmp_path / "qwen2-tiny"
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_the_config_names_a_hub_model_with_lora_bf16_checkpointing_and_vllm():
    cfg = load_config(CONFIG)
    student = cfg.student.kwargs
    assert student["model"].startswith("Qwen/") and student["lora"]["target_modules"] == "all-linear"
    assert student["precision"] == "bf16" and student["sft_args"]["gradient_checkpointing"] is True
    assert cfg.eval.backend == "vllm"


def test_the_config_runs_on_the_same_architecture_with_random_weights(tiny_qwen, tmp_path):
    pytest.importorskip("peft")
    pytest.importorskip("reasoning_gym")
    cfg = load_config(CONFIG, [f"student.model={tiny_qwen}", "env.eval_per_skill=4", "env.pool_per_skill=40",
                               "loop.rounds=2", "loop.examples_per_round=64", "loop.max_new_tokens=8",
                               "student.batch_size=8", "student.max_length=128", "eval.backend=generate",
                               f"loop.output_dir={tmp_path / 'out'}"])
    result = run_experiment(cfg)
    assert [r.round for r in result.rounds] == [0, 1, 2]
    assert all(r.train_loss is None or r.train_loss == r.train_loss for r in result.rounds)  # no NaN loss in bf16
    state = next((Path(result.output_dir) / "state").glob("round-02"))
    adapters = (state / "student" / "model.safetensors").stat().st_size
    merged = sum(f.stat().st_size for f in (Path(result.output_dir) / "student").glob("*.safetensors"))
    assert adapters < merged  # the round state holds the adapters; the saved student is the merged model
