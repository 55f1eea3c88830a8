"""A GRPO round's rollouts as data: one generation batch split into groups (one prompt, its completions),
per-skill sums over the round, and the joining of groups from several generations into one batch (online
difficulty filtering keeps some groups of each). Nothing here calls TRL: it reads what the trainer returned.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, NamedTuple

from teachgym.types import RolloutStats


class Group(NamedTuple):
    """One prompt's group of completions in a generation batch."""

    row: Mapping[str, Any]  # the prompt's row (``prompt``, ``skills``), as the trainer got it
    verdicts: list[float]
    advantages: list[float]
    lengths: list[int]
    zero_variance: bool  # every reward equal: no learning signal

    @property
    def pass_rate(self) -> float:
        return sum(self.verdicts) / len(self.verdicts)


def split_groups(inputs: list[Mapping[str, Any]], verdicts: list[float], rewards: list[float],
                  advantages: list[float], lengths: list[int], g: int) -> list[Group]:
    """One generation batch as groups: ``inputs`` holds each prompt ``g`` times in a row (TRL's RepeatSampler)."""
    if len(inputs) % g or not (len(inputs) == len(verdicts) == len(rewards) == len(advantages) == len(lengths)):
        raise RuntimeError(f"GRPO batch of {len(inputs)} rows does not split into groups of {g}")
    groups = []
    for start in range(0, len(inputs), g):
        rows = inputs[start : start + g]
        if any(r["prompt"] != rows[0]["prompt"] for r in rows):
            raise RuntimeError("a GRPO group mixes prompts: TRL's batch layout changed")
        r = rewards[start : start + g]
        groups.append(Group(rows[0], verdicts[start : start + g], advantages[start : start + g],
                             lengths[start : start + g], max(r) - min(r) <= 1e-6 * max(1.0, abs(max(r)))))
    return groups


class Rollouts:
    """Collects, per skill, what the trainer generated and computed for each generation batch."""

    def __init__(self, num_generations: int) -> None:
        self.g = num_generations
        self.sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.prompts = 0
        self.completions = 0
        self.zero_variance = 0  # groups whose rewards were all equal

    def add(self, groups: list[Group]) -> None:
        """One generation batch's groups (every group generated, whether or not it trains)."""
        for group in groups:
            p = group.pass_rate
            self.prompts += 1
            self.completions += self.g
            self.zero_variance += group.zero_variance
            for skill in group.row.get("skills") or ():
                s = self.sums[skill]
                s["groups"] += 1
                s["passed"] += sum(group.verdicts)
                s["learnability"] += p * (1 - p)
                s["abs_adv"] += sum(abs(a) for a in group.advantages)
                s["zero_var"] += group.zero_variance
                s["length"] += sum(group.lengths)

    def merge(self, parts: list[tuple[dict[str, dict[str, float]], int, int, int]]) -> None:
        """Every process's sums, prompts, completions and zero-variance groups (from :meth:`part`), added up here."""
        self.sums = defaultdict(lambda: defaultdict(float))
        self.prompts = self.completions = self.zero_variance = 0
        for sums, prompts, completions, zero_variance in parts:
            for skill, stats in sums.items():
                for key, value in stats.items():
                    self.sums[skill][key] += value
            self.prompts += prompts
            self.completions += completions
            self.zero_variance += zero_variance

    def part(self) -> tuple[dict[str, dict[str, float]], int, int, int]:
        """What this process collected, as plain data (sent to the other processes)."""
        return {k: dict(v) for k, v in self.sums.items()}, self.prompts, self.completions, self.zero_variance

    def stats(self) -> dict[str, RolloutStats]:
        out = {}
        for skill, s in self.sums.items():
            groups = int(s["groups"])
            n = groups * self.g
            out[skill] = RolloutStats(
                pass_rate=s["passed"] / n,
                learnability=s["learnability"] / groups,
                mean_abs_advantage=s["abs_adv"] / n,
                zero_variance_share=s["zero_var"] / groups,
                completion_length=s["length"] / n,
                groups=groups,
                completions=n,
            )
        return out


def batch_stats(groups: list[Group], g: int) -> dict[str, RolloutStats]:
    """Per-skill statistics of one generation batch's groups."""
    batch = Rollouts(g)
    batch.add(groups)
    return batch.stats()


def repeat(rows: list[Mapping[str, Any]], g: int) -> list[dict[str, Any]]:
    """Each prompt's row ``g`` times in a row (as TRL's sampler lays out a generation batch), prompt and skills only."""
    return [{"prompt": r["prompt"], "skills": list(r.get("skills") or ())} for r in rows for _ in range(g)]


def take(out: Mapping[str, Any], group: int, g: int) -> dict[str, Any]:
    """One group's rows of a scored generation batch."""
    taken = {}
    for key, value in out.items():
        if key == "num_items_in_batch":
            continue
        if not hasattr(value, "shape") or not value.dim():
            raise RuntimeError(f"online filtering cannot split the generation batch's {key!r} (multimodal input?)")
        taken[key] = value[group * g : (group + 1) * g]
    return taken


def join(parts: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Groups from several scored generation batches as one batch: prompts left-padded, completions right-padded
    to the widest, and ``num_items_in_batch`` (the loss's token count) counted again."""
    import torch
    import torch.nn.functional as F

    out: dict[str, Any] = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if values[0].dim() >= 2:
            width = max(v.shape[1] for v in values)
            pad = pad_id if key.endswith("_ids") else 0
            values = [F.pad(v, (width - v.shape[1], 0) if key.startswith("prompt") else (0, width - v.shape[1]),
                            value=pad) for v in values]
        out[key] = torch.cat(values)
    mask = out["completion_mask"] * out["tool_mask"] if "tool_mask" in out else out["completion_mask"]
    out["num_items_in_batch"] = mask.sum()
    return out
