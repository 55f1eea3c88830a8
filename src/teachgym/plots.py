"""The curriculum at a glance: figures the loop refreshes in the parent MLflow run as rounds finish.

- ``accuracy_heatmap.png``: skills × rounds, the accuracy in each cell;
- ``teacher_mixture.png``: the share of each round's data per skill (mixture weights, or the
  requested rows of a synthesis action), as stacked areas;
- ``learning_curves.png``: per-skill accuracy over rounds, with the mean dashed.

matplotlib ``Figure`` objects are built directly (no pyplot state), so this is headless and safe to
call from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

#: Beyond this many rounds, the x axis labels every k-th round (and the curves drop their markers).
MAX_TICKS = 30


def _tick_positions(n: int) -> list[int]:
    """Indices of the rounds to label: all of them, or every k-th (the last one included) when there are many."""
    if n <= MAX_TICKS:
        return list(range(n))
    step = -(-n // 15)
    return sorted(set(range(0, n, step)) | {n - 1})


def _figure(width: float = 8.0, height: float = 4.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def accuracy_heatmap(skills: Sequence[str], rounds: Sequence[int], acc: Sequence[Mapping[str, float]]):
    """Skills × rounds heatmap of accuracy (``acc[i]`` is round ``rounds[i]``'s per-skill accuracy)."""
    import numpy as np

    grid = np.array([[a.get(s, np.nan) for a in acc] for s in skills], dtype=float)
    # Wider with more rounds, up to a readable page (a 500-round run once drew a 30,000-pixel image).
    fig, ax = _figure(min(16.0, max(5.0, 1.2 + 0.6 * len(rounds))), 1.4 + 0.45 * len(skills))
    im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    shown = _tick_positions(len(rounds))
    ax.set_xticks(shown, [str(rounds[j]) for j in shown])
    ax.set_yticks(range(len(skills)), list(skills))
    ax.set_xlabel("round")
    if len(rounds) * len(skills) <= 400:  # numbers stay legible
        for i in range(len(skills)):
            for j in range(len(rounds)):
                v = grid[i, j]
                if v == v:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if v > 0.6 else "white")
    fig.colorbar(im, ax=ax, label="accuracy")
    ax.set_title("accuracy per skill and round")
    fig.tight_layout()
    return fig


def teacher_mixture(skills: Sequence[str], rounds: Sequence[int], weights: Sequence[Mapping[str, float]]):
    """Stacked areas of each round's data shares per skill (rounds 1..R)."""
    fig, ax = _figure()
    if rounds:
        import numpy as np

        ys = np.array([[w.get(s, 0.0) for w in weights] for s in skills], dtype=float)
        # Steps: a round's mixture holds for the whole round.
        ax.stackplot(list(rounds), ys, labels=list(skills), step="mid", alpha=0.85)
        ax.set_xticks([rounds[j] for j in _tick_positions(len(rounds))])
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:
        ax.text(0.5, 0.5, "no round trained yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("round")
    ax.set_ylabel("share of the round's data")
    ax.set_ylim(0, 1)
    ax.set_title("teacher's mixture over rounds")
    fig.tight_layout()
    return fig


def learning_curves(skills: Sequence[str], rounds: Sequence[int], acc: Sequence[Mapping[str, float]],
                    mean: Sequence[float]):
    """Per-skill accuracy over rounds, the mean dashed."""
    fig, ax = _figure()
    marker = "o" if len(rounds) <= MAX_TICKS else None
    for s in skills:
        ax.plot(list(rounds), [a.get(s, float("nan")) for a in acc], marker=marker, ms=3, label=s)
    ax.plot(list(rounds), list(mean), "k--", lw=2, label="mean")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks([rounds[j] for j in _tick_positions(len(rounds))])
    ax.grid(alpha=0.3)
    ax.set_title("learning curves")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def write_round_plots(records: Sequence, skills: Sequence[str], out_dir: str | Path) -> list[Path]:
    """Write the three figures for the loop's records so far (``RoundRecord``s); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rounds = [r.round for r in records]
    acc = [r.accuracies for r in records]
    trained = [r for r in records if r.round > 0]
    weights = [{s: r.metrics.get(f"teacher/weight/{s}", 0.0) for s in skills} for r in trained]
    figures = {
        "accuracy_heatmap.png": accuracy_heatmap(skills, rounds, acc),
        "teacher_mixture.png": teacher_mixture(skills, [r.round for r in trained], weights),
        "learning_curves.png": learning_curves(skills, rounds, acc, [r.mean_accuracy for r in records]),
    }
    paths = []
    for name, fig in figures.items():
        fig.savefig(out / name)
        paths.append(out / name)
    return paths
