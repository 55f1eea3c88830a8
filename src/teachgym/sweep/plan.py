"""Planning a sweep: the grid of trials (each an ordinary experiment with overrides), checked before anything runs.

Also the small types every part of a sweep shares: :class:`Trial`, :class:`SweepPlan`, :class:`TrialResult`.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teachgym.compare import RunCurve
from teachgym.config import ConfigError, ExperimentConfig, SweepConfig, build_component, check_names, load_config
from teachgym.tracking.schema import TAG_SETTING, TAG_TRIAL
from teachgym.tracking.store import resolve_tracking_uri

log = logging.getLogger(__name__)

SWEEP_FILE, TRIALS_FILE = "sweep.json", "trials.jsonl"
POLICY_KEYS, SEED_KEY = ("policy.name", "policy"), "loop.seed"
_RANGE = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?$")


class SweepError(ConfigError):
    """A sweep that cannot start: a bad grid, a changed base config, a store other nodes cannot reach."""


# ----------------------------------------------------------------------------------------------- the grid


def axis_values(key: str, raw: Any) -> list[str]:
    """The values of one swept key as override strings: a list, ``"a,b,c"``, or ``"start:stop[:step]"``.

    Raises:
        SweepError: An empty axis or an empty range.
    """
    if isinstance(raw, list):
        values = [v if isinstance(v, str) else json.dumps(v) for v in raw]
    elif isinstance(raw, str) and (m := _RANGE.match(raw)):
        start, stop, step = int(m[1]), int(m[2]), int(m[3] or 1)
        if step == 0 or not range(start, stop, step):
            raise SweepError(f"sweep key {key}: the range {raw!r} is empty (start:stop[:step], stop excluded)")
        values = [str(v) for v in range(start, stop, step)]
    elif isinstance(raw, str) and not raw.lstrip().startswith(("[", "{")):
        values = [v.strip() for v in raw.split(",")]
    else:
        values = [raw if isinstance(raw, str) else json.dumps(raw)]
    if not values or any(v == "" for v in values):
        raise SweepError(f"sweep key {key}: empty value in {raw!r}")
    return values


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Command-line overrides split into fixed ones and swept axes (a value with a comma, or an integer range)."""
    fixed, axes = [], {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SweepError(f"override {item!r} is not of the form key.sub=value")
        values = axis_values(key.strip(), raw)
        if len(values) > 1 or _RANGE.match(raw):
            axes[key.strip()] = values
        else:
            fixed.append(item)
    return fixed, axes


@dataclass(frozen=True)
class Trial:
    """One cell of the grid: an ordinary experiment with these overrides on top of the base config."""

    key: str  # the grid's overrides, space-separated: the trial's identity across reruns
    overrides: tuple[str, ...]
    name: str  # e.g. "skill-it-s3" or "skill-it-s3-learning_rate=0.001": its MLflow run name and folder
    policy: str
    seed: int
    setting: str  # the swept overrides other than the policy and the seed ("" when there are none)

    @property
    def folder(self) -> str:
        digest = hashlib.sha1(self.key.encode()).hexdigest()[:6]
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.name)[:80] + "-" + digest


@dataclass
class SweepPlan:
    """Everything a sweep will run, checked before anything starts (see :func:`plan_sweep`)."""

    name: str
    directory: Path
    base: ExperimentConfig
    options: SweepConfig
    grid: dict[str, list[str]]
    fixed: list[str]
    trials: list[Trial]
    configs: dict[str, ExperimentConfig]  # trial key -> its validated config (tracking URI set at run time)
    experiments: dict[str, str]  # trial key -> MLflow experiment
    source: str
    uri: str = ""  # the tracking URI, resolved once when the sweep is planned

    def describe(self) -> str:
        axes = " × ".join(f"{k} ({len(v)})" for k, v in self.grid.items()) or "no swept keys"
        return f"sweep {self.name}: {len(self.trials)} trials = {axes}; folder {self.directory}"


def plan_sweep(config: str | Path | Mapping[str, Any], overrides: Sequence[str] = (),
               grid: Mapping[str, Any] | None = None, **options: Any) -> SweepPlan:
    """Expand a config and overrides into trials and validate every trial's config.

    Args:
        config: A YAML file or a dict; its optional ``sweep:`` section gives the grid and options.
        overrides: ``key=value`` (fixed for every trial) or ``key=a,b,c`` / ``key=0:5`` (swept).
        grid: More swept keys, as in the ``sweep:`` section (``{"policy": [{"name": ...}, ...]}``);
            they replace the config's axes of the same key, and the command line's replace them.
        **options: :class:`~teachgym.config.SweepConfig` fields given on the command line (None: unset).

    Raises:
        SweepError, ConfigError, RegistryError: A bad grid, an invalid trial config (the trial is
            named), or an unknown component (with near names), before anything runs.
    """
    fixed, cli_axes = split_overrides(overrides)
    base = load_config(config, fixed)
    sweep = base.sweep or SweepConfig()
    opts = sweep.model_copy(update={k: v for k, v in options.items() if v is not None})
    try:
        opts = SweepConfig.model_validate(opts.model_dump())
    except Exception as e:  # a bad --max-concurrent and the like
        raise SweepError(f"sweep options: {e}") from None
    grid = {k: axis_values(k, v) for k, v in {**sweep.grid, **(grid or {})}.items()}
    for item in fixed:  # a fixed override pins a key the YAML grid sweeps
        grid.pop(item.partition("=")[0].strip(), None)
    grid.update(cli_axes)
    if "policy" in grid and "policy.name" in grid:
        raise SweepError("sweep both 'policy' and 'policy.name'? give the policies once, as names or as sections")
    base = base.model_copy(update={"sweep": None})
    name = opts.name or (Path(config).stem if not isinstance(config, Mapping) else "sweep")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise SweepError(f"sweep name {name!r}: use letters, digits, '.', '_' and '-' only")
    directory = Path(base.loop.output_dir).resolve() / f"sweep-{name}"
    trials, configs, experiments, env_names = [], {}, {}, {}
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        grid_overrides = tuple(f"{k}={v}" for k, v in zip(keys, combo, strict=True))
        key = " ".join(grid_overrides)
        try:
            cfg = load_config(config, [*fixed, *grid_overrides]).model_copy(update={"sweep": None})
        except ConfigError as e:
            raise SweepError(f"trial {key}: {e}") from None
        setting = " ".join(o for o in grid_overrides if o.partition("=")[0] not in (*POLICY_KEYS, SEED_KEY))
        policy = cfg.policy.name.rsplit(":", 1)[-1]
        short = ",".join(f"{o.partition('=')[0].rsplit('.', 1)[-1]}={o.partition('=')[2]}" for o in setting.split())
        name_ = f"{policy}-s{cfg.loop.seed}" + (f"-{short}" if short else "")
        trial = Trial(key, grid_overrides, name_, cfg.policy.name, cfg.loop.seed, setting)
        check_names(cfg)  # an unknown name fails here, with its field and the near names
        cfg = _trial_config(cfg, trial, directory)
        trials.append(trial)
        configs[key] = cfg
        env_key = json.dumps(cfg.env.model_dump(), sort_keys=True, default=str)
        if cfg.tracking.experiment is None and env_key not in env_names:
            env_names[env_key] = _env_name(cfg)
        experiments[key] = cfg.tracking.experiment or f"teachgym/{env_names[env_key]}"
    if len({t.key for t in trials}) != len(trials):
        raise SweepError("the grid repeats a trial (the same value twice on one key?)")
    same = [k for k, n in collections.Counter((t.policy, t.seed, t.setting) for t in trials).items() if n > 1]
    if same:
        policy, seed, setting = same[0]
        raise SweepError(
            f"two trials would compare as the same run (policy {policy!r}, seed {seed}, setting {setting!r}): sweep a "
            "policy's arguments as keys of their own (policy.temperature=0.5,1.0), not as two policy sections"
        )
    uri = store_uri(base)
    if opts.address and base.tracking.enabled and not uri.startswith(("http://", "https://")):
        raise SweepError(
            f"a sweep on a Ray cluster (address {opts.address!r}) needs a tracking server every node can reach, not "
            f"{uri}: start one on the cluster's private network (`mlflow server --host <private address> --port 5000 "
            "--backend-store-uri sqlite:///mlflow.db`; MLflow's server has no authentication unless started with "
            "`--app-name basic-auth`, so never expose it beyond that network: docs/campaigns.md) and pass "
            "tracking.tracking_uri=http://<that address>:5000 (or tracking.enabled=false)"
        )
    return SweepPlan(name, directory, base, opts, grid, fixed, trials, configs, experiments,
                     str(config) if not isinstance(config, Mapping) else "<dict>", uri)


def _trial_config(cfg: ExperimentConfig, trial: Trial, directory: Path) -> ExperimentConfig:
    data = cfg.model_dump()
    if data.get("warm_start") and not data["warm_start"].get("dir"):  # one warm start for all the trials
        data["warm_start"]["dir"] = str(directory / "warm-start")
    data["loop"]["output_dir"] = str(directory / "trials" / trial.folder)
    data["tracking"]["run_name"] = trial.name
    data["tracking"]["tags"] = {**data["tracking"]["tags"], TAG_TRIAL: trial.key, TAG_SETTING: trial.setting}
    return ExperimentConfig.model_validate(data)


def _env_name(cfg: ExperimentConfig) -> str:
    """The env's own name (the experiment is named after it), built once per distinct env config."""
    return build_component("envs", "env", cfg.env, seed=cfg.loop.seed).name


def store_uri(config: ExperimentConfig) -> str:
    return resolve_tracking_uri(config.tracking.tracking_uri)


@dataclass
class TrialResult:
    """How a trial ended, as the sweep saw it."""

    trial: Trial
    status: str  # finished, failed or interrupted
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        return self.row.get("error")

    def curve(self, experiment: str) -> Any:
        return RunCurve(experiment=experiment, run_id=self.row.get("run_id") or "", run_name=self.trial.name,
                        policy=self.trial.policy, seed=str(self.trial.seed), status="FINISHED",
                        examples=list(self.row["examples"]), acc_mean=list(self.row["acc_mean"]),
                        acc_min=list(self.row["acc_min"]), setting=self.trial.setting)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
