"""Experiment config: YAML validated into typed models, with ``key.sub=value`` overrides.

Every field carries help text; unknown or ill-typed keys are errors that name the full path
(``loop.rounds``, ``policy.temperature``) and suggest the nearest valid key. Component sections
(``env``, ``student``, ``policy``) are ``{name: ..., <kwargs>}``; their kwargs are checked against
the component's constructor signature when it is built (:func:`build_component`).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from teachgym.errors import TeachgymError
from teachgym.options import options_fields
from teachgym.registry import Kind, RegistryError, resolve


class ConfigError(TeachgymError, ValueError):
    """The config is invalid; the message names every bad key by its full path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ComponentConfig(BaseModel):
    """A pluggable component: ``name`` plus keyword arguments for its constructor."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Built-in name, 'package.module:Class' path, or entry-point name.")

    @property
    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments (every key but ``name``)."""
        return dict(self.model_extra or {})


class LoopConfig(_Strict):
    """How long the experiment runs and how much data each round gets."""

    rounds: int = Field(5, ge=1, description="Training rounds after the round-0 evaluation.")
    examples_per_round: int = Field(
        1000, ge=1, description="Training rows per round; equal for every policy so results compare."
    )
    seed: int = Field(0, description="Seeds the policy, the data engine and the student.")
    num_failures: int = Field(20, ge=0, description="Failed eval items shown to the teacher each round.")
    eval_batch_size: int = Field(256, ge=1, description="Prompts per batch when generating eval answers.")
    max_new_tokens: int = Field(16, ge=1, description="Longest answer generated at evaluation.")
    output_dir: str = Field("outputs", description="Where checkpoints and round files go (one folder per run).")
    save_student: bool = Field(True, description="Save the final student to <output_dir>/<run>/student.")
    state: Literal["open-ended", "skill-list", "skill-tree"] = Field(
        "skill-list",
        description="What the teacher sees (DataEnvGym): open-ended = only failures; skill-list = the per-skill "
        "profile; skill-tree = the profile plus per-level sub-skills that requests can target.",
    )
    skill_names: Literal["given", "neutral"] = Field(
        "given",
        description="neutral: the teacher sees the skills under names drawn per seed, in a shuffled order, without "
        "descriptions (teachgym.neutral), so that no structure is read from a name; the logs keep the real names. "
        "The bench runs every teacher so.",
    )
    teach_every: Literal["round", "step"] = Field(
        "round",
        description="round: the teacher acts once a round; step: it also picks the mixture of each generation "
        "batch inside the round from the rollouts so far (a policy with step(); a batch-wise student: grpo).",
    )


class EvalConfig(_Strict):
    """How the per-skill evaluation generates its answers."""

    backend: Literal["generate", "vllm"] = Field(
        "generate",
        description="generate: the student's own batched generate(); vllm: each round's weights answered by a "
        "fresh vLLM engine in a subprocess (pip install 'teachgym[vllm]'; Linux with a CUDA GPU).",
    )
    vllm: dict[str, Any] = Field(
        default_factory=lambda: {"gpu_memory_utilization": 0.3},
        description="vllm: keyword arguments of vllm.LLM (e.g. gpu_memory_utilization, max_model_len, dtype); "
        "the training process keeps its share of the GPU, so the default leaves it 70%.",
    )


class TrackingConfig(_Strict):
    """MLflow logging."""

    enabled: bool = Field(True, description="Log to MLflow at all.")
    tracking_uri: str | None = Field(
        None,
        description="MLflow store; default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working dir.",
    )
    experiment: str | None = Field(None, description="MLflow experiment; default teachgym/<env name>.")
    run_name: str | None = Field(None, description="Parent run name; default <policy>-s<seed>.")
    log_predictions: bool = Field(True, description="Log each round's eval predictions as a table.")
    checkpoints: Literal["none", "best", "every"] = Field(
        "none", description="Student checkpoints as MLflow models (student-round-NN, ranked by acc/mean in the "
        "Models tab): none, the best round so far, or every round."
    )
    plots: bool = Field(
        True, description="Refresh plots/ (accuracy heatmap, teacher mixture, learning curves) in the parent run "
        "as rounds finish (in the background, at most every 10 s) and after the last round."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra tags on the parent run (a sweep adds teachgym.sweep and "
        "teachgym.setting); they never change results, so --resume accepts new ones."
    )


class SynthesisConfig(_Strict):
    """The LLM data engine: serves ``Synthesize`` requests with a language model (see teachgym.synthesis)."""

    backend: Literal["local", "openai"] = Field(
        description="local: a transformers causal LM from a directory; openai: an OpenAI-compatible endpoint."
    )
    model: str = Field(description="local: the model directory; openai: the model name the server expects.")
    url: str | None = Field(None, description="openai: the endpoint's base URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="openai: environment variable holding the API key (unset: no key sent)."
    )
    api: Literal["completions", "chat"] = Field(
        "completions", description="openai: /completions (base models) or /chat/completions (chat models)."
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="openai: extra JSON fields sent with every request (server-specific)."
    )
    temperature: float = Field(0.8, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(64, ge=1, description="Longest continuation per call.")
    examples_in_prompt: int = Field(3, ge=0, description="Examples of the skill shown in each prompt.")
    failures_in_prompt: int = Field(3, ge=0, description="The student's recent failures on the skill shown.")
    oversample: float = Field(1.5, ge=1, description="Candidates asked for per missing row in each attempt.")
    max_attempts: int = Field(3, ge=1, description="Generation passes per request before the shortfall rule.")
    check: Literal["auto", "verifier", "self-consistency"] = Field(
        "auto", description="auto: the env's verifier if it can check new prompts, else self-consistency."
    )
    samples: int = Field(4, ge=1, description="Self-consistency: extra answers sampled per question.")
    min_agree: int = Field(2, ge=2, description="Self-consistency: answers that must agree to keep a row.")
    on_shortfall: Literal["fill", "error"] = Field(
        "fill", description="When the LLM cannot fill a request: fill from the env's generator/pool, or fail."
    )
    device: str = Field("auto", description="local: auto, cpu or cuda.")
    batch_size: int = Field(16, ge=1, description="local: prompts per generate() call.")
    timeout_s: float = Field(120.0, gt=0, description="openai: seconds to wait for one response.")


class SweepConfig(_Strict):
    """A grid of experiments for ``teachgym sweep`` (``teachgym run`` ignores this section)."""

    name: str | None = Field(
        None, description="Sweep name: its folder <loop.output_dir>/sweep-<name> and MLflow run sweep-<name>; "
        "default: the config file's name."
    )
    grid: dict[str, list[Any] | str | int | float] = Field(
        default_factory=dict,
        description="Swept keys and their values: a list, 'a,b,c', or an integer range 'start:stop[:step]' "
        "(stop excluded), e.g. {policy.name: [uniform, skill-it], loop.seed: '0:5'}.",
    )
    baseline: str | None = Field(
        "uniform", description="Policy the final table compares every other policy with, seed by seed."
    )
    max_concurrent: int | None = Field(
        None, ge=1, description="Trials running at once (default: as many as the cluster's CPUs/GPUs fit)."
    )
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs Ray reserves for each trial (torch threads).")
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs Ray reserves for each trial (fractions share one).")
    address: str | None = Field(
        None, description="An existing Ray cluster ('auto' or HOST:PORT); default: a local Ray on this machine."
    )


class WarmStartConfig(_Strict):
    """A supervised warm start, the same for every policy and seed (see teachgym.warm_start).

    It is an ordinary experiment of its own (its own MLflow run, tagged ``teachgym.stage=warm-start``),
    run once and kept; the experiment's student then loads its weights (``student.model``).
    """

    student: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="hf"),
        description="The student trained in the warm start (e.g. {name: hf, model: tiny, learning_rate: 2e-3}); "
        "its model must be one the experiment's student can load.",
    )
    policy: ComponentConfig = Field(
        default_factory=lambda: ComponentConfig(name="uniform"), description="The warm start's teacher."
    )
    rounds: int = Field(3, ge=1, description="Rounds of the warm start.")
    examples_per_round: int = Field(8000, ge=1, description="Training rows per warm-start round.")
    seed: int = Field(0, description="The warm start's seed: fixed, so every policy and seed starts from it.")
    dir: str | None = Field(
        None, description="Where warm starts are kept, one folder per distinct warm start; default "
        "<loop.output_dir>/warm-start (a sweep shares one for all its trials)."
    )


class BenchConfig(_Strict):
    """A ``teachgym bench`` challenge: what it tests, its hidden structure, its score and its simulated twin.

    The structure (``noise``, ``mastery``, ``replay``) goes to the ``oracle`` policy and the scorer only;
    every other teacher sees what it always sees.
    """

    description: str = Field(description="One line: the difficulty this challenge holds for a teacher.")
    noise: list[str] = Field(default_factory=list, description="Skills with nothing to learn (hidden from teachers).")
    mastery: float = Field(0.9, gt=0, le=1, description="Accuracy at which the oracle counts a skill as learned.")
    replay: float = Field(0.0, ge=0, lt=1, description="Share the oracle keeps on mastered skills (forgetting).")
    score: Literal["last-3", "final", "auc"] = Field(
        "last-3", description="The learnable skills' mean accuracy, as the protocol scores it: last-3 = its mean over "
        "the last three rounds (robust to a student that oscillates); final = after the last round; auc = its mean "
        "over every round after round 0 (how fast). The protocol file registers it at calibration."
    )
    simulated: ComponentConfig = Field(
        description="The simulated twin's student (name: simulated, with the same structure: difficulty, "
        "prerequisites, half_life), run by --simulated in place of the LM student."
    )


class ExperimentConfig(_Strict):
    """A whole curriculum experiment."""

    env: ComponentConfig = Field(description="The teacher environment (skills, eval set, data sources).")
    student: ComponentConfig = Field(description="The model being taught.")
    policy: ComponentConfig = Field(description="The teacher policy.")
    loop: LoopConfig = Field(default_factory=LoopConfig, description="Rounds, budget, seed.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow logging.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="How evaluation generates (generate, vllm).")
    synthesis: SynthesisConfig | None = Field(
        None, description="LLM data engine for Synthesize requests (default: the env's own generator)."
    )
    warm_start: WarmStartConfig | None = Field(
        None, description="A supervised warm start shared by every policy and seed; the student starts from it."
    )
    bench: BenchConfig | None = Field(
        None, description="A teachgym bench challenge's declaration (configs/bench/); teachgym run ignores it."
    )
    sweep: SweepConfig | None = Field(
        None, description="The grid `teachgym sweep` runs; `teachgym run` ignores it (one experiment, base values)."
    )


def _path(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of ``loc`` (for 'did you mean')."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        # An optional section (``SynthesisConfig | None``) names its model inside the union.
        candidates = [ann, *typing.get_args(ann)]
        models = [a for a in candidates if inspect.isclass(a) and issubclass(a, BaseModel)]
        if not models:
            return None
        model = models[0]
    return model


def _format(err: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        loc = [prefix, *e["loc"]] if prefix else list(e["loc"])
        where = _path(loc)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            owner = _model_at(model, e["loc"])
            near = difflib.get_close_matches(str(e["loc"][-1]), list(owner.model_fields), n=1) if owner else []
            msg = "unknown key" + (f"; did you mean '{_path([*loc[:-1], near[0]])}'?" if near else "")
            if owner:
                msg += f" (valid keys: {', '.join(owner.model_fields)})"
        elif "input" in e and e["type"] != "missing":
            msg += f" (got {e['input']!r})"
        lines.append(f"  {where}: {msg}")
    return "invalid config:\n" + "\n".join(lines)


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["loop.rounds=3", "policy.name=uniform"]`` into a nested dict; values are YAML scalars."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {p!r}")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            # Changing a component's name drops the old component's kwargs: they belong to it.
            if "name" in v and v["name"] != out[k].get("name") and k in ("env", "student", "policy"):
                out[k] = dict(v)
            else:
                out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML file (or a dict), apply ``key=value`` overrides, and validate.

    Raises:
        ConfigError: For a missing file, bad YAML, or any invalid key (all listed at once).
    """
    if isinstance(source, Mapping):
        raw: Any = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping with sections env, student, policy, loop, tracking")
    raw = _merge(raw, parse_overrides(overrides))
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e, ExperimentConfig)) from None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"loop": {"rounds": 3}}`` -> ``{"loop.rounds": 3}`` (for MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _signature_model(target: Any, skip: set[str]) -> tuple[type[BaseModel], bool]:
    """A pydantic model of ``target``'s keyword arguments, to validate config kwargs by type.

    A class with an options dataclass (``Options``: its constructor takes the options' fields as keywords) is
    validated against those fields: an unknown key is named, with the near ones.
    """
    options = options_fields(target)
    skip = skip | ({"options"} if options else set())
    fn = target.__init__ if inspect.isclass(target) else target
    sig = inspect.signature(target)  # for a class: its constructor's parameters, without self
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolved forward refs: fall back to no type checking for those
        hints = {}
    fields: dict[str, Any] = dict(options)  # the options first: they are what a user sets
    var_kw = False
    for p in sig.parameters.values():
        if p.name == "self" or p.name in skip or p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = not options
            continue
        ann = hints.get(p.name, Any)
        fields[p.name] = (ann, ... if p.default is p.empty else p.default)
    model = create_model(
        f"{getattr(target, '__name__', 'component')}Args",
        __config__=ConfigDict(extra="allow" if var_kw else "forbid", arbitrary_types_allowed=True),
        **fields,
    )
    return model, var_kw


def component_keys(target: Any) -> set[str] | None:
    """The keywords ``build_component`` accepts for ``target`` (an options dataclass's fields included), or None
    when it takes any (``**kwargs`` without an options dataclass)."""
    model, var_kw = _signature_model(target, skip=set())
    return None if var_kw else set(model.model_fields)


def build_component(kind: Kind, section: str, config: ComponentConfig, **injected: Any) -> Any:
    """Resolve ``config.name`` and call it with the config's kwargs (type-checked) plus ``injected``.

    Injected arguments (``seed``, ``env``) are passed only where the constructor accepts them.

    Raises:
        ConfigError: Unknown or ill-typed kwargs, named as ``<section>.<key>``.
        RegistryError: Unknown component name (with near names).
    """
    target = resolve(kind, config.name)
    kwargs = config.kwargs
    try:
        model, var_kw = _signature_model(target, skip=set())
    except (TypeError, ValueError):  # builtins without a signature: pass through
        return target(**kwargs)
    accepted = set(model.model_fields)
    for key in list(injected):
        if key in kwargs or not (key in accepted or var_kw):
            injected.pop(key)
    try:
        validated = model.model_validate({**injected, **kwargs})
    except ValidationError as e:
        msg = _format(e, model, prefix=section)
        msg = msg.replace("invalid config:", f"invalid config for {section} {config.name!r}:")
        raise ConfigError(msg) from None
    args = {k: getattr(validated, k) for k in {**injected, **kwargs} if k in accepted}
    args.update({k: v for k, v in (validated.model_extra or {}).items()})
    try:
        return target(**args)
    except ConfigError:
        raise
    except ValueError as e:  # constructors reject bad arguments with ValueError: a config mistake, not a bug
        raise ConfigError(f"{section} {config.name!r}: {e}") from e


def check_names(config: ExperimentConfig) -> None:
    """Resolve every component name in ``config`` (importing a plugin's module, building nothing), so that a
    misspelt name fails at once, before a run prints or creates anything.

    Raises:
        RegistryError: The first unknown name, with the field that holds it and the near names.
    """
    sections = [("envs", "env", config.env), ("students", "student", config.student),
                ("policies", "policy", config.policy)]
    if config.warm_start is not None:
        sections += [("students", "warm_start.student", config.warm_start.student),
                     ("policies", "warm_start.policy", config.warm_start.policy)]
    for kind, section, component in sections:
        try:
            resolve(kind, component.name)
        except RegistryError as e:
            raise RegistryError(f"{section}.name: {e}") from None
