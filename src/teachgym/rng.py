"""The global random number generators a round draws from, captured at its end and put back on resume.

A round's state holds what :func:`capture_rngs` returns (:mod:`teachgym.statefile` stores it as data),
so the rounds after a resume draw exactly what they would have drawn without the interruption.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping
from typing import Any


def capture_rngs() -> dict[str, Any]:
    """The global RNGs a round may draw from: Python's ``random``, numpy's and torch's (CPU and CUDA)."""
    import numpy as np

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    if "torch" in sys.modules:
        import torch

        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rngs(state: Mapping[str, Any]) -> None:
    """Put back what :func:`capture_rngs` took."""
    import numpy as np

    if "python" in state:
        random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "torch" in state:
        import torch

        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
