"""TRL's private internals that the students use (``teachgym.students._trl_private``) are still where and what the
fence expects. A TRL release that moves one fails here, by name; when every check passes on a new release,
stamp it in ``CHECKED_WITH``."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("trl")

from teachgym.students import _trl_private  # noqa: E402


def test_the_batch_step_grpo_overrides_is_still_trls_private_method():
    from trl import GRPOTrainer

    method = getattr(GRPOTrainer, "_generate_and_score_completions", None)
    assert callable(method), "TRL moved GRPOTrainer._generate_and_score_completions (the grpo student's hook)"
    assert list(inspect.signature(method).parameters) == ["self", "inputs"], inspect.signature(method)


def test_the_hooked_trainer_routes_trls_batch_step_through_its_public_hook():
    from trl import GRPOTrainer

    hooked = _trl_private.grpo_trainer_class()
    assert issubclass(hooked, GRPOTrainer)
    calls = []

    class Probe(hooked):
        def on_generation_batch(self, inputs):
            calls.append(inputs)
            return {"seen": len(inputs)}

    trainer = Probe.__new__(Probe)  # no model needed to follow the call
    assert trainer._generate_and_score_completions([{"prompt": "a"}, {"prompt": "b"}]) == {"seen": 2}
    assert calls == [[{"prompt": "a"}, {"prompt": "b"}]]


def test_the_trainer_attributes_the_fence_reads_are_still_set_by_trl():
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer.__init__)
    assert "self._tokenizer" in source, "TRL no longer sets GRPOTrainer._tokenizer (pad_token_id reads it)"
    assert "self.vllm_generation" in source, "TRL no longer sets GRPOTrainer.vllm_generation (release_vllm)"


def test_add_fused_lm_head_takes_what_prepare_reference_passes_and_leaves_an_instance_forward():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    params = inspect.signature(add_fused_lm_head).parameters
    assert {"temperature", "cast_lm_head_to_fp32"} <= set(params), list(params)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16))
    add_fused_lm_head(model, temperature=1.0, cast_lm_head_to_fp32=False)
    assert "forward" in model.__dict__, "add_fused_lm_head no longer patches model.forward on the instance"
    _trl_private.drop_forward_patch(model)
    assert "forward" not in model.__dict__
    ids = torch.tensor([[1, 2, 3]])
    assert model(input_ids=ids).logits.shape == (1, 3, 16)  # the class's own forward again


def test_the_fence_is_stamped_with_the_versions_it_was_checked_against():
    assert set(_trl_private.CHECKED_WITH) == {"trl", "transformers"}
    assert all(v.count(".") == 2 for v in _trl_private.CHECKED_WITH.values())
