"""Numbers for comparing curricula: learning-curve area, examples to reach a target, intervals over seeds.

A learning curve here is a pair of sequences: the cumulative training examples after each round
(0 for the untrained student) and the mean accuracy measured then. Nothing in this module knows
about MLflow or the loop, so the benchmark scripts, `teachgym compare` and the tests share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def auc(examples: Sequence[float], accuracy: Sequence[float], budget: float | None = None) -> float:
    """Area under the learning curve, normalised to the budget: the mean accuracy over training.

    Trapezoids between measured rounds, divided by ``budget`` (default: the last ``examples``), so
    a student at 1.0 from the first example scores 1.0, and curves with equal budgets compare
    directly.

    Raises:
        ValueError: When the sequences differ in length, are empty, or the budget is not positive.
    """
    if len(examples) != len(accuracy) or not examples:
        raise ValueError(f"examples ({len(examples)}) and accuracy ({len(accuracy)}) must be non-empty and equal")
    budget = float(examples[-1] if budget is None else budget)
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    area = sum(
        (examples[i + 1] - examples[i]) * (accuracy[i + 1] + accuracy[i]) / 2 for i in range(len(examples) - 1)
    )
    return area / budget


def examples_to_reach(examples: Sequence[float], accuracy: Sequence[float], target: float) -> float | None:
    """Examples trained on when the curve first measured at least ``target``; None if it never did.

    Only measured points count (no interpolation between rounds): the answer is what a user who
    stops at the first round that reaches the target would have spent.
    """
    for n, acc in zip(examples, accuracy, strict=True):
        if acc >= target - 1e-12:  # accuracies are ratios of counts; guard float noise in equal values
            return float(n)
    return None


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval over seeds.

    Returns ``(mean, nan)`` for a single value: one seed says nothing about the spread.
    """
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)


def paired_difference(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of the seed-by-seed differences ``x[i] - y[i]`` and its Student-t interval ``(mean, low, high)``.

    The interval is scipy's one-sample t-test interval on the differences (a paired t-interval):
    what is shared by both runs of a seed (its eval set, initial weights, data) cancels out, so a
    small but consistent gain is resolved with few seeds. ``(mean, nan, nan)`` for one pair.
    """
    import numpy as np
    from scipy import stats

    if len(x) != len(y) or not len(x):
        raise ValueError(f"paired samples must be non-empty and equal in length, got {len(x)} and {len(y)}")
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, math.nan, math.nan
    if np.ptp(d) <= 1e-12:  # the same difference on every seed (up to float noise): the interval is the point
        return mean, mean, mean
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence)
    return mean, float(ci.low), float(ci.high)


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y): the chance that a run of X scores above a run of Y, ties counting half (rliable's definition).

    Agarwal et al. (2021) compute it per task as the Mann-Whitney U statistic of X against Y divided
    by ``len(x) * len(y)`` (every pair of runs compared); scipy computes that U.
    """
    from scipy import stats

    if not len(x) or not len(y):
        raise ValueError("probability_of_improvement needs runs on both sides")
    return float(stats.mannwhitneyu(x, y).statistic) / (len(x) * len(y))


def probability_of_improvement_ci(x: Sequence[float], y: Sequence[float], confidence: float = 0.95,
                                  resamples: int = 2000) -> tuple[float, float]:
    """A percentile bootstrap interval for :func:`probability_of_improvement` (runs resampled on each side).

    ``(nan, nan)`` with fewer than two runs on a side.
    """
    import warnings

    import numpy as np
    from scipy import stats

    if len(x) < 2 or len(y) < 2:
        return math.nan, math.nan

    def poi(a, b, axis=-1):
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
        wins = (a[..., :, None] > b[..., None, :]) + 0.5 * (a[..., :, None] == b[..., None, :])
        return wins.mean(axis=(-2, -1))

    with warnings.catch_warnings():  # few seeds: many resamples are alike, which scipy warns about
        warnings.simplefilter("ignore")
        res = stats.bootstrap((np.asarray(x, float), np.asarray(y, float)), poi, paired=False, vectorized=True,
                              n_resamples=resamples, confidence_level=confidence, method="percentile",
                              rng=np.random.default_rng(0))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def format_ci(mean: float, half: float, digits: int = 3) -> str:
    """``0.512 ± 0.041`` (or just the mean when the interval is undefined)."""
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def format_interval(mean: float, low: float, high: float, digits: int = 3, signed: bool = True) -> str:
    """``+0.041 [+0.012, +0.070]`` (or just the mean when the interval is undefined)."""
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f.format(mean) if math.isnan(low) else f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def plot_learning_curves(
    curves: dict[str, list[tuple[Sequence[float], Sequence[float]]]],
    path: str,
    title: str,
    dashed: Sequence[str] = ("uniform",),
) -> None:
    """Overlay learning curves by label: the mean over seeds and a 95% Student-t band (matplotlib, headless).

    Args:
        curves: ``{label: [(examples, accuracy), ...]}``, one pair per seed. Seeds of a label are
            averaged at the examples of its first curve; curves of another length are left out.
        path: Image file to write (the suffix picks the format).
        title: Figure title.
        dashed: Labels drawn dashed (the baseline).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy import stats

    fig, ax = plt.subplots(figsize=(9, 5.5))
    cmap = plt.get_cmap("tab10")
    for i, (label, runs) in enumerate(curves.items()):
        x = np.asarray(runs[0][0], dtype=float)
        ys = np.asarray([y for xs, y in runs if len(xs) == len(x)], dtype=float)
        mean = ys.mean(0)
        color = cmap(i % 10)
        ax.plot(x, mean, "--" if label in dashed else "-", color=color, lw=2 if label in dashed else 1.4,
                label=f"{label} ({len(ys)} seed{'s' if len(ys) > 1 else ''})")
        if len(ys) > 1:
            half = stats.t.ppf(0.975, len(ys) - 1) * ys.std(0, ddof=1) / math.sqrt(len(ys))
            ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.12)
    ax.set_xlabel("training examples")
    ax.set_ylabel("mean accuracy over skills")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
