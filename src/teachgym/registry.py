"""One small registry: component names -> lazy ``"module:attr"`` strings.

A component name in a config is one of:

* a built-in name (``uniform``, ``hf``, ``arithmetic``), listed below;
* an import path ``package.module:Attribute``;
* the name of an entry point that an installed package declares in the group
  ``teachgym.policies``, ``teachgym.students`` or ``teachgym.envs``.

Nothing is imported until a name is resolved, so ``import teachgym`` stays light.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal

from teachgym.errors import TeachgymError

Kind = Literal["policies", "students", "envs"]
KINDS: tuple[Kind, ...] = ("envs", "students", "policies")


@dataclass(frozen=True)
class Entry:
    """A registered component: where it lives and a one-line description (shown by ``teachgym list``)."""

    target: str
    description: str


BUILTINS: dict[str, dict[str, Entry]] = {
    "envs": {
        "arithmetic": Entry(
            "teachgym.envs.arithmetic:ArithmeticEnv",
            "six integer-arithmetic skills with prerequisites; a pool to reweight and a generator",
        ),
        "lego": Entry(
            "teachgym.envs.lego:LegoEnv",
            "Skill-it's LEGO task: chains of negated assignments, one skill per hop (each needs the last)",
        ),
        "strings": Entry(
            "teachgym.envs.strings:StringsEnv",
            "character-level skills (copy, reverse, sort, dedupe, count) with input lengths as levels",
        ),
        "dataset": Entry(
            "teachgym.envs.dataset:DatasetEnv",
            "your own JSONL/CSV/Parquet/save_to_disk rows with a skills column; exact/numeric/regex/custom checker",
        ),
        "bench": Entry(
            "teachgym.envs.bench:BenchEnv",
            "letter-string rules (copy, reverse, shift, cipher, compose, noise) declared per skill: the bench's tasks",
        ),
        "reasoning-gym": Entry(
            "teachgym.envs.reasoning:ReasoningGymEnv",
            "reasoning-gym's procedural tasks, one skill per task:level of their curricula, scored by the package",
        ),
    },
    "students": {
        "hf": Entry(
            "teachgym.students.hf:HFStudent",
            "a Hugging Face causal LM trained with TRL's SFTTrainer (built-in tiny Llama, a path, or LoRA)",
        ),
        "grpo": Entry(
            "teachgym.students.grpo:GRPOStudent",
            "RL with verifiable rewards: TRL's GRPOTrainer on the env's verifier, with per-skill rollout statistics",
        ),
        "simulated": Entry(
            "teachgym.students.simulated:SimulatedStudent",
            "an analytic learner (transfer, prerequisites, saturation, forgetting, noisy eval): 10k+ rounds/s",
        ),
    },
    "policies": {
        "uniform": Entry("teachgym.policies.uniform:UniformPolicy", "equal weight on every skill (stratified)"),
        "missing-skill": Entry(
            "teachgym.policies.missing_skill:MissingSkillPolicy",
            "STAT-Sel: mixture weights from the missing-skill profile, with temperature and floor",
        ),
        "targeted-synthesis": Entry(
            "teachgym.policies.targeted_synthesis:TargetedSynthesisPolicy",
            "STAT-Syn: synthesise new rows for the skills the student misses most",
        ),
        "random": Entry("teachgym.policies.random:RandomPolicy", "a fresh Dirichlet mixture each round (baseline)"),
        "skill-it": Entry(
            "teachgym.policies.skill_it:SkillItPolicy",
            "Skill-It online: p ∝ p_prior ⊙ exp(η A Σ_last w L) over a skills graph",
        ),
        "exp3": Entry(
            "teachgym.policies.exp3:Exp3Policy",
            "Online Data Mixing: Exp3 over skills with importance-weighted loss rewards",
        ),
        "tscl": Entry(
            "teachgym.policies.tscl:TSCLPolicy",
            "Teacher-Student Curriculum Learning: online/window/sampling teachers on |Δ accuracy|",
        ),
        "learning-progress": Entry(
            "teachgym.policies.learning_progress:LearningProgressPolicy",
            "fast/slow EMA learning progress, sigmoid of z-score (Syllabus/OMNI form)",
        ),
        "aioli": Entry(
            "teachgym.policies.aioli:AioliPolicy",
            "Aioli: one-skill probes inside the round estimate the mixing law A, then p ∝ exp(η Σ_i A_ij)",
        ),
        "learnability": Entry(
            "teachgym.policies.learnability:LearnabilityPolicy",
            "RL students: weights ∝ p(1−p) of each skill's rollouts (learnability sampling), with a floor",
        ),
        "sec": Entry(
            "teachgym.policies.sec:SECPolicy",
            "Self-Evolving Curriculum: TD(0) value of mean |advantage| per skill, Boltzmann sampling (RL students)",
        ),
        "dump": Entry(
            "teachgym.policies.dump:DUMPPolicy",
            "DUMP: UCB on a window of mean |advantage| per skill, softmax with temperature 0.1 (RL students)",
        ),
        "llm-agent": Entry(
            "teachgym.policies.llm_agent:LLMAgentPolicy",
            "DataEnvGym's agent: a language model reads the profile (or failures) and answers a mixture or requests",
        ),
        "oracle": Entry(
            "teachgym.policies.oracle:OraclePolicy",
            "the bench's upper anchor: knows the noise skills; trains the unmastered frontier, prerequisites first",
        ),
        "learned": Entry(
            "teachgym.policies.learned:LearnedPolicy",
            "a teacher trained with RL (stable-baselines3) in teachgym.gym, loaded from policy.path [rl]",
        ),
    },
}


class RegistryError(TeachgymError, LookupError):
    """A component name could not be resolved."""


def _entry_points(kind: Kind) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=f"teachgym.{kind}")}


def _import(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise RegistryError(f"{target!r} is not an import path of the form 'package.module:Attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise RegistryError(f"cannot import module {module_name!r} for {target!r}: {e}") from e
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            near = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise RegistryError(f"module {module_name!r} has no attribute {attr!r}{hint}") from None
    return obj


def names(kind: Kind) -> list[str]:
    """Every name of this kind that resolves: built-ins, then installed entry points."""
    return list(BUILTINS[kind]) + sorted(n for n in _entry_points(kind) if n not in BUILTINS[kind])


def resolve(kind: Kind, name: str) -> Any:
    """Turn a component name into the class or factory it names.

    Args:
        kind: ``"policies"``, ``"students"`` or ``"envs"``.
        name: A built-in name, a ``module:attr`` path, or an entry-point name.

    Raises:
        RegistryError: The name is unknown (the message lists the nearest known names) or its
            import fails.
    """
    if kind not in BUILTINS:
        raise RegistryError(f"unknown component kind {kind!r}; kinds: {list(BUILTINS)}")
    if ":" in name:
        return _import(name)
    if name in BUILTINS[kind]:
        return _import(BUILTINS[kind][name].target)
    eps = _entry_points(kind)
    if name in eps:
        return eps[name].load()
    known = names(kind)
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    singular = kind.rstrip("s") if kind != "policies" else "policy"
    raise RegistryError(
        f"unknown {singular} {name!r}.{hint} Known: {', '.join(known)}. "
        f"Or give an import path 'package.module:Class', or install a package with a "
        f"'teachgym.{kind}' entry point."
    )


def describe(kind: Kind) -> list[tuple[str, str]]:
    """``(name, one-line description)`` for every registered component of ``kind``."""
    rows = [(n, e.description) for n, e in BUILTINS[kind].items()]
    for n, ep in sorted(_entry_points(kind).items()):
        if n in BUILTINS[kind]:
            continue
        try:
            doc = (ep.load().__doc__ or "").strip().splitlines()
            rows.append((n, (doc[0] if doc else "") + f"  [{ep.value}]"))
        except Exception as e:  # a broken plugin should not break `teachgym list`
            rows.append((n, f"(failed to load {ep.value}: {e})"))
    return rows
