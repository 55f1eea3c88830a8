"""Several processes of one experiment (``accelerate launch``): who decides, and how the others hear of it.

``accelerate launch --num_processes N -m teachgym run CONFIG`` starts N copies of teachgym (on CPUs:
add ``--multi_gpu``, which is accelerate's name for its torchrun launcher). Every process runs the loop
and trains the student, which TRL's trainer wraps in DDP, so every process holds the same weights.
Everything else happens once, in process 0, and reaches the others by broadcast:

* the teacher's decisions (its probes, its action, its ``explain()``) and the round's data, built by
  the engine (and the LLM data engine) in process 0 only;
* MLflow (one parent run, one run per round), the round state on disk, and the console.

Evaluation is split: each process answers a contiguous share of the eval items, and the answers are
gathered in eval order, so every process computes the same profile.

In one process (no ``WORLD_SIZE`` in the environment, or 1) every function here is the identity: the
loop reads the same either way. The process group is accelerate's ``PartialState`` (gloo on CPUs,
NCCL on GPUs), which TRL's trainers then reuse.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Team", "team"]


@dataclass(frozen=True)
class Team:
    """This process's place among the experiment's processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Process 0: the one that runs the teacher, MLflow, the round state and the console."""
        return self.rank == 0

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in process 0; every process returns its result (or raises its exception).

        The exception travels too, so that a teacher that raises stops every process the same way
        instead of leaving the others waiting for a decision that never comes.
        """
        if self.size == 1:
            return fn(*args, **kwargs)
        outcome: tuple[bool, Any] = (True, None)
        if self.main:
            try:
                outcome = (True, fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - re-raised below, in every process
                outcome = (False, _portable(e))
        ok, value = self.share(outcome)
        if not ok:
            raise value
        return value

    def share(self, obj: T) -> T:
        """Process 0's ``obj``, in every process."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def split(self, n: int) -> slice:
        """This process's contiguous share of ``n`` items (shares differ in size by at most one)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def map_split(self, fn: Callable[..., list[T]], *columns: Sequence[Any]) -> list[T]:
        """``fn(*columns)``, each process on its share of the rows; the results gathered in row order."""
        if self.size == 1:
            return list(fn(*columns))
        import torch.distributed as dist

        part = self.split(len(columns[0]))
        mine = list(fn(*(list(c[part]) for c in columns))) if part.stop > part.start else []
        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, mine)
        return [x for p in parts for x in p]

    def gather(self, obj: T) -> list[T]:
        """Every process's ``obj``, in rank order, in every process."""
        if self.size == 1:
            return [obj]
        import torch.distributed as dist

        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, obj)
        return parts


_TEAM: Team | None = None


def team() -> Team:
    """This process's :class:`Team`; the first call in a launched process joins the process group."""
    global _TEAM
    if _TEAM is None:
        size = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if size == 1:
            _TEAM = Team()
        else:
            try:
                from accelerate import PartialState
            except ImportError as e:  # pragma: no cover - accelerate is a dependency of transformers' Trainer
                raise ImportError("several processes need accelerate: pip install accelerate") from e
            import torch

            # Joins the group torchrun set up: gloo on CPUs (accelerate needs cpu=True to see a CPU group), else NCCL.
            state = PartialState(cpu=not torch.cuda.is_available())
            _TEAM = Team(state.process_index, state.num_processes)
    return _TEAM


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling (it is sent to the other processes), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any unpicklable exception
        return RuntimeError(f"{type(e).__name__} in process 0: {e}")
