"""``teachgym calibrate``: fit the simulated student to the per-skill learning curves of logged runs.

The simulated student (``students/simulated.py``) is a deterministic function of what it trained on:
given a run's rows per skill in each round (``data/examples/<skill>``), its competences after each
round are the accuracies it predicts. This module fits its parameters — per-skill difficulty, the
transfer share, the gate thresholds, the forgetting half-life, the ceiling and the starting
competences, and the onset of the shared format stage — to the per-skill accuracy curves
(``acc/<skill>``) of runs logged in an MLflow experiment, by least squares
(``scipy.optimize.least_squares``, a few starts, the best kept). Runs of several policies and seeds
see different mixtures, which is what separates transfer from practice.

Some runs can be held out (by seed): the fit never sees them, and the error on them says whether
the simulator predicts curves of mixtures it was not fitted on. The result is written as a config
that ``student.name=simulated`` loads: the fitted runs' own config with the student replaced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from teachgym.config import ComponentConfig, build_component
from teachgym.errors import TeachgymError
from teachgym.students.simulated import SimulatedStudent
from teachgym.tracking import runs as store
from teachgym.tracking.schema import ACC, ACC_MEAN, ACC_MIN, DATA_EXAMPLES, TAG_POLICY, TAG_SEED, TAG_STAGE, TAG_STUDENT


class CalibrationError(TeachgymError, ValueError):
    """No runs to fit, or runs that do not carry what the fit needs."""


@dataclass
class RunCurves:
    """One logged experiment: rows per skill in rounds 1..R and accuracy per skill after rounds 0..R."""

    run_id: str
    policy: str
    seed: str
    skills: list[str]
    counts: np.ndarray  # [R, K]
    accuracy: np.ndarray  # [R + 1, K]


def load_runs(tracking_uri: str | None, experiment: str, policies: Sequence[str] = (),
              student: str | None = None) -> list[RunCurves]:
    """The finished parent runs of ``experiment`` (warm-start stages left out) as :class:`RunCurves`.

    Raises:
        CalibrationError: No such experiment, or no finished run with per-skill curves.
    """
    client = store.client(tracking_uri)
    exp = store.find_experiments(client, [experiment], CalibrationError)[0]
    out = []
    for run in store.parent_runs(client, [exp.experiment_id]):
        tags = run.data.tags
        if tags.get(TAG_STAGE) or (policies and tags[TAG_POLICY] not in policies):
            continue
        if student and tags.get(TAG_STUDENT) != student:
            continue
        skills = sorted(k.removeprefix(ACC) for k in run.data.metrics if k.startswith(ACC)
                        and k not in (ACC_MEAN, ACC_MIN))
        if not skills:
            continue
        acc = {s: store.series(client, run.info.run_id, ACC + s) for s in skills}
        n = {s: store.series(client, run.info.run_id, DATA_EXAMPLES + s) for s in skills}
        rounds = max(acc[skills[0]])
        if rounds < 1 or any(sorted(acc[s]) != list(range(rounds + 1)) for s in skills):
            continue  # a run with gaps in its curves: nothing to align
        out.append(RunCurves(
            run.info.run_id, tags[TAG_POLICY], tags.get(TAG_SEED, "?"), skills,
            np.array([[n[s].get(r, 0.0) for s in skills] for r in range(1, rounds + 1)]),
            np.array([[acc[s][r] for s in skills] for r in range(rounds + 1)]),
        ))
    if not out:
        raise CalibrationError(f"no finished teachgym runs with per-skill curves in {experiment!r}")
    if len({tuple(r.skills) for r in out}) > 1:
        raise CalibrationError("the runs have different skills; calibrate one env at a time (one experiment)")
    return out


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-max(min(float(x), 40.0), -40.0)))


def run_config(tracking_uri: str | None, runs: Sequence[RunCurves]) -> dict[str, Any]:
    """The experiment config the first of ``runs`` that has one logged (``config.yaml``); {} if none does."""
    for run in runs:
        text = store.logged_text(tracking_uri, run.run_id, "config.yaml")
        if text is not None:
            return yaml.safe_load(text) or {}
    return {}


def _per_round(runs: Sequence[RunCurves]) -> float:
    """Rows trained on per round, averaged over rounds and runs: the scale of the example counts."""
    return float(np.mean([r.counts.sum(1).mean() for r in runs]))


def _exp(x: float) -> float:
    return math.exp(min(float(x), 40.0))  # a parameter the data cannot bound (a skill never learned) runs off


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


class Model:
    """The simulated student's parameters as an unconstrained vector, and its predicted curves."""

    def __init__(self, skills: Sequence[str], prerequisites: Mapping[str, Sequence[str]], forgetting: bool = True,
                 onset: bool = True, substeps: int = 4) -> None:
        self.skills = list(skills)
        self.prerequisites = {s: list(prerequisites.get(s, ())) for s in self.skills}
        self.forgetting = forgetting
        self.onset = onset
        self.substeps = substeps

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        """The simulated student's keyword arguments for vector ``x``."""
        k = len(self.skills)
        lo = _sigmoid(x[2 * k + 1]) * 0.9
        hi = lo + (1 - lo) * _sigmoid(x[2 * k + 2])
        params = {
            "difficulty": {s: _exp(v) for s, v in zip(self.skills, x[:k])},
            "initial": {s: float(_sigmoid(v)) for s, v in zip(self.skills, x[k : 2 * k])},
            "transfer": float(_sigmoid(x[2 * k])),
            "gate": [float(lo), float(hi)],
            "ceiling": float(_sigmoid(x[2 * k + 3])),
            "half_life": _exp(x[2 * k + 4]) if self.forgetting else 0.0,
            "onset": _exp(x[-1]) if self.onset else 0.0,
        }
        params["initial"] = {s: min(v, params["ceiling"]) for s, v in params["initial"].items()}
        return params

    def start(self, runs: Sequence[RunCurves], scale: float, transfer: float = 0.2, gate: tuple = (0.3, 0.7),
              half_life_rounds: float = 20.0) -> np.ndarray:
        """A starting vector: difficulty ``scale`` per skill, starting competences from round 0."""
        k = len(self.skills)
        a0 = np.mean([r.accuracy[0] for r in runs], axis=0)
        per_round = _per_round(runs)
        lo, hi = gate
        x = [math.log(scale)] * k + [_logit(max(a, 0.01)) for a in a0] + [
            _logit(transfer), _logit(lo / 0.9), _logit((hi - lo) / (1 - lo)), _logit(0.97)]
        if self.forgetting:
            x.append(math.log(half_life_rounds * per_round))
        if self.onset:
            x.append(math.log(per_round))
        return np.array(x)

    def bounds(self, runs: Sequence[RunCurves]) -> tuple[np.ndarray, np.ndarray]:
        """Box bounds on the vector: the example counts stay on the scale the runs can identify.

        A format onset far beyond a run's whole budget leaves the format stage barely started by the end,
        and then only ``onset x difficulty`` is identified: the fit can drift to difficulties of a
        fraction of an example gated by an onset of billions (a ramp, not a stage). So ``onset`` is
        kept within [a hundredth of a round, one run's budget], every difficulty within [1 example,
        100 budgets] and the half-life within [a tenth of a round, 1000 budgets]. The logits are free.
        """
        per_round = _per_round(runs)
        budget = float(np.mean([r.counts.sum() for r in runs]))
        names = self.names()
        lo, hi = np.full(len(names), -np.inf), np.full(len(names), np.inf)
        for i, name in enumerate(names):
            if name.startswith("difficulty["):
                lo[i], hi[i] = 0.0, math.log(100 * budget)
            elif name == "half_life":
                lo[i], hi[i] = math.log(per_round / 10), math.log(1000 * budget)
            elif name == "onset":
                lo[i], hi[i] = math.log(per_round / 100), math.log(budget)
        return lo, hi

    def names(self) -> list[str]:
        """What each entry of the vector is (the layout :meth:`decode` reads), for bounds and messages."""
        out = [f"difficulty[{s}]" for s in self.skills] + [f"initial[{s}]" for s in self.skills]
        out += ["transfer", "gate[0]", "gate[1]", "ceiling"]
        return out + ["half_life"] * self.forgetting + ["onset"] * self.onset

    @property
    def size(self) -> int:
        """Length of the parameter vector."""
        return len(self.names())

    def predict(self, params: Mapping[str, Any], run: RunCurves) -> np.ndarray:
        """Competence per skill after rounds 0..R of ``run``'s rows per skill."""
        student = SimulatedStudent(skills=self.skills, prerequisites=self.prerequisites, substeps=self.substeps,
                                   **params)
        out = [student.competence.copy()]
        for counts in run.counts:
            student.practice(counts)
            out.append(student.competence.copy())
        return np.array(out)

    def residuals(self, x: np.ndarray, runs: Sequence[RunCurves]) -> np.ndarray:
        params = self.decode(x)
        return np.concatenate([(self.predict(params, r) - r.accuracy).ravel() for r in runs])


@dataclass
class Calibration:
    """A fitted simulated student and how well it fits."""

    params: dict[str, Any]
    skills: list[str]
    train_rmse: dict[str, float]
    heldout_rmse: dict[str, float] | None
    train_runs: list[str]
    heldout_runs: list[str]
    cost: float
    at_bound: list[str] = field(default_factory=list)

    def student_config(self) -> dict[str, Any]:
        """``student:`` for a config (``name: simulated`` and the fitted parameters, rounded)."""
        p = self.params

        def r(v: float) -> float:
            return float(f"{v:.4g}")

        return {"name": "simulated", "difficulty": {s: r(v) for s, v in p["difficulty"].items()},
                "initial": {s: r(v) for s, v in p["initial"].items()}, "transfer": r(p["transfer"]),
                "gate": [r(v) for v in p["gate"]], "ceiling": r(p["ceiling"]), "half_life": r(p["half_life"]),
                "onset": r(p["onset"])}


def rmse_per_skill(model: Model, params: Mapping[str, Any], runs: Sequence[RunCurves]) -> dict[str, float]:
    """Root-mean-square error of predicted vs logged accuracy, per skill, over every round of ``runs``."""
    err = np.concatenate([model.predict(params, r) - r.accuracy for r in runs])
    return {s: float(np.sqrt(np.mean(err[:, i] ** 2))) for i, s in enumerate(model.skills)}


def fit(runs: Sequence[RunCurves], prerequisites: Mapping[str, Sequence[str]], heldout: Sequence[RunCurves] = (),
        forgetting: bool = True, onset: bool = True, starts: Sequence[float] | None = None) -> Calibration:
    """Least-squares fit of the simulated student to ``runs``; ``heldout`` runs are only scored.

    Args:
        runs: The runs to fit on (several policies and seeds: different mixtures).
        prerequisites: The env's prerequisite graph (the simulator's gates and transfer follow it).
        heldout: Runs left out of the fit, to validate it.
        forgetting: Fit a forgetting half-life (else none).
        onset: Fit the shared format stage's ``onset`` (else none): the slow start of an LM's curves.
        starts: Starting difficulties (examples per skill) to try; the best fit is kept.
    """
    from scipy.optimize import least_squares

    if not runs:
        raise CalibrationError("no runs to fit on")
    model = Model(runs[0].skills, prerequisites, forgetting, onset)
    per_skill = _per_round(runs) / len(model.skills)
    best = None
    lo, hi = model.bounds(runs)
    for scale in starts or (per_skill * 0.5, per_skill * 2, per_skill * 8):
        x0 = np.clip(model.start(runs, scale), np.nextafter(lo, hi), np.nextafter(hi, lo))
        result = least_squares(model.residuals, x0, args=(runs,), bounds=(lo, hi), method="trf",
                               x_scale="jac", max_nfev=400)
        if best is None or result.cost < best.cost:
            best = result
    params = model.decode(best.x)
    return Calibration(
        params=params, skills=model.skills, train_rmse=rmse_per_skill(model, params, runs),
        heldout_rmse=rmse_per_skill(model, params, heldout) if heldout else None,
        train_runs=[r.run_id for r in runs], heldout_runs=[r.run_id for r in heldout], cost=float(best.cost),
        at_bound=_at_bound(model, best.x, lo, hi),
    )


def _at_bound(model: Model, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float = 0.01) -> list[str]:
    """Parameters within ``tol`` (in log space: 1%) of a bound: ones the runs did not pin down, e.g. a
    half-life at its maximum because no run starved a skill long enough to show forgetting."""
    out = []
    for name, v, a, b in zip(model.names(), x, lo, hi):
        if np.isfinite(a) and v - a < tol:
            out.append(f"{name} (lower)")
        elif np.isfinite(b) and b - v < tol:
            out.append(f"{name} (upper)")
    return out


def render(cal: Calibration, runs: Sequence[RunCurves], heldout: Sequence[RunCurves]) -> str:
    """The fit as a table: fitted difficulty and RMSE per skill, on the fitted and the held-out runs."""
    p = cal.params
    lines = [
        f"fitted on {len(runs)} runs ({', '.join(sorted({f'{r.policy}-s{r.seed}' for r in runs}))})"
        + (f"; held out {len(heldout)} ({', '.join(sorted({f'{r.policy}-s{r.seed}' for r in heldout}))})"
           if heldout else ""),
        f"transfer {p['transfer']:.3f}, gate [{p['gate'][0]:.3f}, {p['gate'][1]:.3f}], ceiling {p['ceiling']:.3f}, "
        f"half_life {p['half_life']:,.0f} examples, onset {p['onset']:,.0f} examples",
        *([f"at a bound of the fit (not pinned down by these runs): {', '.join(cal.at_bound)}"]
          if cal.at_bound else []),
        "",
        "| skill | difficulty (examples) | initial | RMSE fitted runs | RMSE held-out runs |",
        "|---|---|---|---|---|",
    ]
    for s in cal.skills:
        held = f"{cal.heldout_rmse[s]:.3f}" if cal.heldout_rmse else "–"
        lines.append(f"| {s} | {p['difficulty'][s]:,.0f} | {p['initial'][s]:.3f} | {cal.train_rmse[s]:.3f} | {held} |")
    mean_train = float(np.mean(list(cal.train_rmse.values())))
    mean_held = float(np.mean(list(cal.heldout_rmse.values()))) if cal.heldout_rmse else None
    lines.append(f"| mean | | | {mean_train:.3f} | {'–' if mean_held is None else f'{mean_held:.3f}'} |")
    return "\n".join(lines) + "\n"


@dataclass
class Calibrated:
    """What :func:`calibrate` found: the fit, its report, and the config file that runs the fitted student."""

    calibration: Calibration
    report: str  # the table `teachgym calibrate` prints
    config_text: str  # a YAML config with the fitted simulated student (and a header saying where it came from)


def calibrate(tracking_uri: str | None, experiment: str, policies: Sequence[str] = (), student: str | None = None,
              holdout_seeds: Sequence[str] = (), forgetting: bool = True, onset: bool = True,
              progress: Any = None) -> Calibrated:
    """Fit the simulated student to the runs of ``experiment`` (what ``teachgym calibrate`` does).

    Args:
        tracking_uri: The store (None: ``$MLFLOW_TRACKING_URI`` or the default).
        experiment: The MLflow experiment whose finished parent runs are fitted.
        policies: Only runs of these policies (default: all).
        student: Only runs of this student (tag ``teachgym.student``).
        holdout_seeds: Runs of these seeds are not fitted; the error on them is reported.
        forgetting: Fit a forgetting half-life.
        onset: Fit the shared format stage's onset.
        progress: Called with a line of progress text.

    Raises:
        CalibrationError: No runs, or every run held out.
        ConfigError, RegistryError: The runs' logged env cannot be built.
    """
    runs = load_runs(tracking_uri, experiment, policies, student)
    heldout = [r for r in runs if r.seed in set(holdout_seeds)]
    fitted = [r for r in runs if r not in heldout]
    if not fitted:
        raise CalibrationError(f"every run is held out (seeds {sorted({r.seed for r in runs})}); keep some to fit on")
    base = run_config(tracking_uri, fitted)
    prerequisites: dict = {}
    if base.get("env"):
        env = build_component("envs", "env", ComponentConfig(**base["env"]))
        prerequisites = {s.name: list(s.prerequisites) for s in env.skills}
    if progress:
        progress(f"fitting the simulated student to {len(fitted)} runs of {experiment!r} ...")
    cal = fit(fitted, prerequisites, heldout, forgetting=forgetting, onset=onset)
    config = {k: v for k, v in base.items() if k not in ("sweep", "warm_start", "synthesis")}
    config["student"] = cal.student_config()
    if config.get("loop"):  # not the fitted run's (or sweep trial's) own folder
        config["loop"] = {**config["loop"], "output_dir": "outputs"}
    if config.get("tracking"):
        # Not the fitted runs' store (a sweep's was a server that has stopped) nor their experiment: runs of
        # the simulator go where the user's own runs go, apart from the LM's runs they were fitted to.
        config["tracking"] = {**config["tracking"], "run_name": None, "tags": {}, "tracking_uri": None,
                              "experiment": None}
    header = (f"# The simulated student fitted by `teachgym calibrate {experiment}` to {len(fitted)} runs "
              f"(mean RMSE {sum(cal.train_rmse.values()) / len(cal.train_rmse):.3f}"
              + (f", held-out {sum(cal.heldout_rmse.values()) / len(cal.heldout_rmse):.3f}" if cal.heldout_rmse else "")
              + f").\n# Runs: {', '.join(cal.train_runs)}\n")
    return Calibrated(cal, render(cal, fitted, heldout), header + yaml.safe_dump(config, sort_keys=False))
