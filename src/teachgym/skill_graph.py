"""Estimate a skills graph the way Skill-it does (Chen et al., 2023, Sec. 2.3).

Starting from the same student, train a copy briefly on each skill ``i`` alone and record, for every
eval skill ``j``::

    A[i][j] = (L_j before - L_j after) / L_j before

(rows: trained skill, columns: eval skill — the convention ``skill-it``'s ``graph`` file uses).
A large ``A[i][j]`` says training on ``i`` helps ``j``. An untrained student lowers every loss on
any data just by learning the output format, so by default the base student first gets one
uniform round (``warmup`` rows) and the graph measures transfer on top of that.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from teachgym.config import ExperimentConfig, build_component
from teachgym.engine import materialize
from teachgym.evaluation import loss_profile
from teachgym.rows import column
from teachgym.seeds import skill_seed
from teachgym.tracking.schema import experiment_name
from teachgym.tracking.skill_graph_run import log_skill_graph
from teachgym.tracking.store import resolve_tracking_uri
from teachgym.types import Mixture


def estimate_skill_graph(
    config: ExperimentConfig,
    examples_per_skill: int,
    warmup: int,
    on_skill: Callable[[str, dict[str, float], float], None] | None = None,
) -> dict[str, Any]:
    """Train a copy of the configured student on each skill alone and measure the loss changes.

    Args:
        config: The experiment config (its env and student are used; the policy is not).
        examples_per_skill: Rows each single-skill copy trains on.
        warmup: Rows of a uniform mixture the base student trains on first (0: none).
        on_skill: Progress callback ``(skill, row of A, seconds)``.

    Returns:
        ``{"env", "skills", "matrix", "loss_before", "examples_per_skill", "warmup"}``, JSON-ready.
    """
    seed = config.loop.seed
    env = build_component("envs", "env", config.env, seed=seed)
    base = build_component("students", "student", config.student, seed=seed, env=env)
    names = [s.name for s in env.skills]
    eval_prompts = set(column(env.eval_set(), "prompt"))
    if warmup:
        data, _ = materialize(Mixture({s: 1.0 for s in names}), env, warmup, seed, eval_prompts)
        base.train(data)
    before = loss_profile(base, env, config.loop.eval_batch_size)
    matrix = []
    for k, skill in enumerate(names):
        start = time.perf_counter()
        student = copy.deepcopy(base)
        data, _ = materialize(Mixture({skill: 1.0}), env, examples_per_skill, skill_seed(seed, k), eval_prompts)
        student.train(data)
        after = loss_profile(student, env, config.loop.eval_batch_size)
        row = {j: (before[j] - after[j]) / before[j] for j in names}
        matrix.append([row[j] for j in names])
        if on_skill:
            on_skill(skill, row, time.perf_counter() - start)
    return {
        "env": env.name,
        "skills": names,
        "matrix": matrix,
        "loss_before": before,
        "examples_per_skill": examples_per_skill,
        "warmup": warmup,
    }


def plot_heatmap(graph: dict[str, Any], path: str | Path) -> None:
    """Write the matrix as an annotated heatmap (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    names, m = graph["skills"], graph["matrix"]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.0 * len(names) + 1.5))
    bound = max(abs(x) for row in m for x in row) or 1.0
    im = ax.imshow(m, cmap="RdBu", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("eval skill j")
    ax.set_ylabel("trained skill i")
    ax.set_title("A[i][j] = relative loss drop on j from training on i")
    for i, row in enumerate(m):
        for j, x in enumerate(row):
            ax.text(j, i, f"{x:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_and_log(graph: dict[str, Any], config: ExperimentConfig, out: str | Path) -> tuple[Path, Path, str | None]:
    """Write ``<out>`` (JSON) and a heatmap beside it; log both to MLflow when tracking is on."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(graph, indent=2))
    png = out.with_suffix(".png")
    plot_heatmap(graph, png)
    run_id = None
    if config.tracking.enabled:
        # The same experiment the loop logs to: named after the env object (an import path's env has its own name).
        name = experiment_name(config, graph.get("env", config.env.name))
        run_id = log_skill_graph(resolve_tracking_uri(config.tracking.tracking_uri), name,
                                 {"examples_per_skill": graph["examples_per_skill"], "warmup": graph["warmup"],
                                  "env.name": config.env.name, "student.name": config.student.name}, [out, png])
    return out, png, run_id
