"""Parts of the ``hf`` student that the ``grpo`` student shares: the trainer callback (stop signals, progress)
and writing and reading a model's tensors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from teachgym import progress
from teachgym.interrupts import check


def _stop_check() -> Any:
    """A trainer callback: a stop signal that Python could not raise mid-step stops at the next step; and the
    steps as progress (:mod:`teachgym.progress`, silent unless the front end shows it)."""
    from transformers import TrainerCallback

    class StopCheck(TrainerCallback):
        ticker: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.ticker = progress.start("training", state.max_steps or None, "steps")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.ticker is not None:
                self.ticker.update(1)
            check()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.ticker is not None:
                self.ticker.close()
                self.ticker = None

    return StopCheck()


def save_tensors(model: Any, file: str, names: set[str] | None = None) -> None:
    """``model``'s tensors (only ``names``, if given) in a safetensors file; tied weights (an LM head that is
    the embedding) are written once, as transformers writes them (a 0.5B Qwen2: 136M parameters fewer)."""
    from safetensors.torch import save_file, save_model

    if names is None:
        save_model(model, file, force_contiguous=True)
    else:
        save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items() if k in names},
                  file)


def load_tensors(model: Any, file: str, device: str) -> tuple[list[str], list[str]]:
    """Load what :func:`save_tensors` wrote into ``model``; the missing and unexpected names (tied ones excluded)."""
    from safetensors.torch import load_model

    missing, unexpected = load_model(model, file, strict=False, device=device)
    return list(missing), list(unexpected)


def token_batches(lengths: Sequence[int], rows: int, tokens: int, extra: int = 0) -> Iterator[tuple[int, int]]:
    """Contiguous ``(start, end)`` batches of at most ``rows`` rows whose padded size (rows × (the longest +
    ``extra``)) stays within ``tokens``; a row longer than that alone is a batch of its own.

    With short rows these are the ``range(0, n, rows)`` batches, so answers do not change where memory was no
    problem.
    """
    start, longest = 0, 0
    for i, n in enumerate(lengths):
        wider = max(longest, n)
        if i > start and (i - start >= rows or (i - start + 1) * (wider + extra) > tokens):
            yield start, i
            start, wider = i, n
        longest = wider
    if start < len(lengths):
        yield start, len(lengths)
