"""The private TRL (and transformers) internals teachgym's students rely on, in one place, each with the
version it was checked against.

Checked against TRL 1.16.0 (``trl.__version__``) and transformers 5.25.0. ``tests/test_trl_private.py`` checks
each one against the installed TRL, so a release that moves them fails there, by name, rather than in the
middle of a round:

* ``GRPOTrainer._generate_and_score_completions(inputs)``: one generation batch, generated and scored. The
  ``grpo`` student wraps it (:func:`grpo_trainer_class`) to record every group's rollouts, to draw a batch's
  prompts from a per-step teacher, and to filter groups (DAPO's dynamic sampling);
* ``GRPOTrainer._tokenizer``: the tokenizer behind the processing class (its pad token joins filtered groups);
* ``GRPOTrainer.vllm_generation`` (``.vllm_client``, ``.llm``): the round's vLLM engine or server connection,
  released when the round's trainer is done (:func:`release_vllm`);
* ``trl.trainer.utils.add_fused_lm_head(model, temperature=, cast_lm_head_to_fp32=)``: how TRL prepares the
  reference model it builds itself (:func:`prepare_reference`);
* the instance ``forward`` that ``add_fused_lm_head`` leaves on a model (``model.__dict__["forward"]``), which
  :func:`drop_forward_patch` removes after each round.
"""

from __future__ import annotations

from typing import Any

CHECKED_WITH = {"trl": "1.16.0", "transformers": "5.25.0"}


def grpo_trainer_class() -> type:
    """``trl.GRPOTrainer`` with one public hook over its private batch step.

    Subclasses override ``on_generation_batch(inputs) -> outputs``; ``score_batch(inputs)`` is TRL's own
    generation and scoring of a batch, and ``pad_token_id`` the tokenizer's padding id.
    """
    from trl import GRPOTrainer

    class HookedGRPOTrainer(GRPOTrainer):
        def score_batch(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            """TRL's generation and scoring of one generation batch."""
            return super()._generate_and_score_completions(inputs)

        def on_generation_batch(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            """What the trainer trains on for the generation batch ``inputs`` (TRL's own: :meth:`score_batch`)."""
            return self.score_batch(inputs)

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            return self.on_generation_batch(inputs)

        @property
        def pad_token_id(self) -> int:
            return self._tokenizer.pad_token_id

    return HookedGRPOTrainer


def release_vllm(trainer: Any) -> None:
    """Let go of the round's vLLM: close the weight-sync communicator with a ``trl vllm-serve`` server (the
    next round's trainer opens its own, and the server accepts one at a time), or free a colocated engine's
    GPU memory (each round's trainer would otherwise add an engine)."""
    vllm = getattr(trainer, "vllm_generation", None)
    if vllm is None:
        return
    client = getattr(vllm, "vllm_client", None)
    if client is not None:
        client.close_communicator()
    if getattr(vllm, "llm", None) is not None:
        import gc

        import torch

        vllm.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def prepare_reference(trainer: Any, reference: Any, beta: float, cast_lm_head_to_fp32: bool) -> None:
    """Give ``trainer`` a reference model of our own (TRL would reload the original weights by name), prepared
    as TRL prepares the one it builds: log-probs through a fused LM head."""
    from trl.trainer.utils import add_fused_lm_head

    trainer.beta = beta
    trainer.ref_model = reference
    add_fused_lm_head(trainer.ref_model, temperature=trainer.temperature, cast_lm_head_to_fp32=cast_lm_head_to_fp32)


def drop_forward_patch(model: Any) -> None:
    """Remove the instance ``forward`` a TRL trainer left on ``model`` (or on its peft base model).

    SFTTrainer and GRPOTrainer patch ``model.forward`` with a fused LM head whose closure holds the
    *previous* forward bound to this very model object. Left in place, the patches stack up round after
    round, and a deep copy of the student would keep calling the original model's weights. The class's
    own forward is what generation and loss need, so the instance patch goes.
    """
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    target.__dict__.pop("forward", None)
