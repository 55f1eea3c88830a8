"""Which config changes ``--resume`` accepts: those that change what is logged or where, never a result.

``teachgym run CONFIG --resume`` runs the config the experiment was started with; :func:`resumed_config`
refuses a given config that differs from it in a key that can change results (every such key listed), and
takes the given values of the keys in :data:`RESUMABLE_CHANGES`. A sweep uses :func:`result_changes` to
tell which trials a changed grid can still continue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from teachgym.config import ConfigError, ExperimentConfig, flatten

#: Config keys that may differ on ``--resume``: they change what is logged or where, never a result.
RESUMABLE_CHANGES = (
    "tracking.plots",
    "tracking.log_predictions",
    "tracking.checkpoints",
    "tracking.tracking_uri",
    "loop.output_dir",
    "loop.save_student",
)
# Whole sections that never change results: extra run tags, and the sweep grid (trials run without it).
RESUMABLE_SECTIONS = ("tracking.tags", "sweep")


class ResumeError(ConfigError):
    """An experiment cannot be resumed as asked (none found, still running, config changed, damaged, ...)."""


def _resumable(key: str) -> bool:
    return key in RESUMABLE_CHANGES or any(key == s or key.startswith(s + ".") for s in RESUMABLE_SECTIONS)


def result_changes(stored: Mapping[str, Any], given: Mapping[str, Any]) -> tuple[list[str], str]:
    """The flattened keys where two config dumps differ in a way that can change results, and their
    ``  key: stored ..., given ...`` lines (empty when none)."""
    old, new = flatten(stored), flatten(given)
    keys = sorted(k for k in set(old) | set(new)
                  if old.get(k, "<unset>") != new.get(k, "<unset>") and not _resumable(k))
    lines = "\n".join(f"  {k}: stored {old.get(k, '<unset>')!r}, given {new.get(k, '<unset>')!r}" for k in keys)
    return keys, lines


def resumed_config(stored: Mapping[str, Any], given: ExperimentConfig) -> ExperimentConfig:
    """The stored config, with the given values of the keys that may change (:data:`RESUMABLE_CHANGES`).

    Raises:
        ResumeError: The given config differs in a key that could change results; every such key is listed.
    """
    refused, lines = result_changes(stored, given.model_dump())
    if refused:
        raise ResumeError(
            "--resume: this config differs from the one the experiment was started with, in keys that change "
            f"results:\n{lines}\nresume with the original config (only {', '.join(RESUMABLE_CHANGES)} may change), "
            "or start a new experiment without --resume"
        )
    merged = json.loads(json.dumps(dict(stored)))
    given_dump = given.model_dump()
    # The sections whole (tag names hold dots), then each key that may change, as given.
    merged.setdefault("tracking", {})["tags"] = given_dump["tracking"]["tags"]
    merged["sweep"] = given_dump["sweep"]
    new = flatten(given_dump)
    for key in RESUMABLE_CHANGES:
        node = merged
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = new.get(key)
    return ExperimentConfig.model_validate(merged)
