"""LLM agent: a language model reads the student's profile (or only its failures) and decides the data.

DataEnvGym's data-generation agent as a teacher policy. Each round the model gets a prompt built from
what the state level shows (:mod:`teachgym.state`):

* ``skill-list`` / ``skill-tree``: the profile as a small table — accuracy, loss and change per skill
  (and per sub-skill, i.e. level, in the tree) — and the budget;
* ``open-ended``: only the sample of failures (prompt, gold, the student's output, skills);
* always: its last few decisions, their one-sentence rationale, and how mean accuracy moved after
  them (when the profile is visible).

It answers with JSON — ``{"mixture": {skill: weight}, "rationale": ...}`` or ``{"requests": [{"skill",
"n", "level"}], "rationale": ...}``. Where the backend supports it, the answer is constrained to that
JSON schema (OpenAI-compatible chat endpoints: ``response_format``; vLLM honours it too); elsewhere it is
parsed defensively (the first JSON object in the text that holds a decision). Every answer goes through
:func:`teachgym.types.validate_action`; an unparseable or invalid one is sent back with the error, up
to ``retries`` times; then the round falls back to the ``fallback`` policy (default ``uniform``) and
says so. Nothing unvalidated is ever returned, so nothing unvalidated is trained on.

Backends are the LLM data engine's (:mod:`teachgym.synthesis`): ``local`` (a transformers model
directory, never downloaded) and ``openai`` (any OpenAI-compatible endpoint), configured with the same
keys as the ``synthesis:`` section, plus ``scripted``: answers replayed from a JSON list (``script``),
in order — for tests, and for reading exactly what the parser and validator do with a given answer.

``explain()`` hands the loop the round's prompt, raw answers, rationale and whether it fell back (into
the round's ``decision.json``) and ``teacher/llm/retries`` and ``teacher/llm/fallback`` (parent metrics).
``state_dict()`` holds the decision history and the call counter, so a resumed experiment prompts the
model exactly as the uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
import math
import string
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from teachgym.config import ComponentConfig, SynthesisConfig, build_component
from teachgym.errors import TeachgymError
from teachgym.seeds import agent_seed
from teachgym.synthesis import SynthesisError, make_backend
from teachgym.types import (
    Action,
    InvalidActionError,
    Mixture,
    Observation,
    Request,
    Synthesize,
    action_to_dict,
    validate_action,
)

log = logging.getLogger(__name__)

#: The JSON schema an answer must follow (sent to backends that constrain decoding).
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "mixture": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}},
        "requests": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"skill": {"type": "string"}, "n": {"type": "integer", "minimum": 1},
                               "level": {"type": ["integer", "null"]}},
                "required": ["skill", "n"],
            },
        },
        "rationale": {"type": "string"},
    },
    "required": ["rationale"],
}


class AnswerError(TeachgymError, ValueError):
    """An answer the policy cannot use; ``reason`` is a short tag for counting."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_answer(text: str, skills: Sequence[Any]) -> tuple[Action, str]:
    """The action and rationale in a model's answer, validated against ``skills``.

    Accepts a bare JSON object or one embedded in prose or a code fence; takes the first object
    that holds ``mixture`` or ``requests``.

    Raises:
        AnswerError: ``no_json`` (no JSON object), ``no_decision`` (no mixture/requests),
            ``malformed`` (wrong types), ``invalid`` (rejected by ``validate_action``).
    """
    decoder = json.JSONDecoder()
    found: list[dict] = []
    for i, ch in enumerate(text):
        if ch != "{":
            continue
        try:
            obj, _ = decoder.raw_decode(text, i)
        except ValueError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
            if "mixture" in obj or "requests" in obj:
                break
    if not found:
        raise AnswerError("no_json", "the answer holds no JSON object")
    decision = next((o for o in found if "mixture" in o or "requests" in o), None)
    if decision is None:
        raise AnswerError("no_decision", 'the JSON object has neither "mixture" nor "requests"')
    rationale = str(decision.get("rationale", "")).strip()
    try:
        if "mixture" in decision:
            weights = decision["mixture"]
            if not isinstance(weights, dict):
                raise TypeError('"mixture" must be an object {skill: weight}')
            action: Action = Mixture({str(k): _number(v) for k, v in weights.items()})
        else:
            reqs = decision["requests"]
            if not isinstance(reqs, list):
                raise TypeError('"requests" must be a list of {"skill", "n", "level"}')
            action = Synthesize([
                Request(str(r["skill"]), int(r["n"]), None if r.get("level") is None else int(r["level"]))
                for r in reqs
            ])
    except (TypeError, ValueError, KeyError) as e:
        raise AnswerError("malformed", f"malformed decision: {e}") from None
    try:
        validate_action(action, skills)
    except InvalidActionError as e:
        raise AnswerError("invalid", str(e)) from None
    if isinstance(action, Mixture):  # valid, so the sum is finite and positive
        total = sum(action.weights.values())
        action = Mixture({k: v / total for k, v in action.weights.items()})
    return action, rationale


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"weight {v!r} is not a number")
    return float(v)


class ScriptedLM:
    """Replays fixed answers, in order and cyclically: the ``k``-th call of the policy gets ``script[k]``."""

    def __init__(self, script: Sequence[str], offset: int) -> None:
        if not script:
            raise ValueError("policy.script: the scripted backend needs at least one answer")
        self.script, self.offset = list(script), offset

    def complete(self, prompts: Sequence[str], n: int, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[list[str]]:
        return [[self.script[(seed - self.offset) % len(self.script)]] * n for _ in prompts]


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _scripted(script: list[str] | str | None, offset: int) -> ScriptedLM:
    """The scripted backend: ``script`` as a list, or read from a JSON file holding one."""
    if isinstance(script, str):
        try:
            script = json.loads(Path(script).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"policy.script: cannot read a JSON list of answers from {script!r}: {e}") from e
    return ScriptedLM(script or [], offset=offset)


def _served(backend: str, model: str | None, url: str | None, api_key_env: str | None, api: str,
            extra_body: dict[str, Any] | None, temperature: float, top_p: float, max_new_tokens: int, device: str,
            timeout_s: float, constrained: bool) -> Any:
    """A ``local`` or ``openai`` backend, built by the LLM data engine (:func:`teachgym.synthesis.make_backend`)."""
    if model is None:
        raise ValueError(f"policy.model: backend {backend!r} needs a model (a directory, or a served name)")
    body = dict(extra_body or {})
    if constrained and backend == "openai" and api == "chat":
        body.setdefault("response_format", {"type": "json_schema", "json_schema": {
            "name": "teacher_decision", "schema": ANSWER_SCHEMA}})
    cfg = SynthesisConfig(backend=backend, model=model, url=url, api_key_env=api_key_env, api=api,
                          extra_body=body, temperature=temperature, top_p=top_p,
                          max_new_tokens=max_new_tokens, device=device, batch_size=1, timeout_s=timeout_s)
    try:
        return make_backend(cfg)
    except SynthesisError as e:
        raise ValueError(str(e).replace("synthesis.", "policy.")) from e


class LLMAgentPolicy:
    """A language model as the teacher (see the module docstring)."""

    #: It reads whatever the state shows: the profile, or only the failures.
    state_levels = ("open-ended", "skill-list", "skill-tree")

    def __init__(
        self,
        backend: Literal["local", "openai", "scripted"] = "local",
        model: str | None = None,
        url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        api: Literal["completions", "chat"] = "chat",
        extra_body: dict[str, Any] | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        device: str = "auto",
        timeout_s: float = 120.0,
        constrained: bool = True,
        retries: int = 2,
        fallback: str = "uniform",
        prompt: str | None = None,
        history: int = 3,
        failures: int = 8,
        script: list[str] | str | None = None,
        seed: int = 0,
    ) -> None:
        """Build the backend and load the prompt template.

        Args:
            backend: ``local`` (a model directory), ``openai`` (an endpoint) or ``scripted`` (``script``).
            model: ``local``: the model directory; ``openai``: the model name the server expects.
            url: ``openai``: the base URL, e.g. ``http://127.0.0.1:8000/v1``.
            api_key_env: ``openai``: the environment variable holding the key (unset: none sent).
            api: ``openai``: ``chat`` or ``completions``; ``local``: ``chat`` applies the tokenizer's chat
                template when it has one.
            extra_body: ``openai``: extra JSON fields for every request (server-specific).
            temperature: Sampling temperature (0: greedy, the default: the same prompt, the same answer).
            top_p: Nucleus sampling mass.
            max_new_tokens: Longest answer.
            device: ``local``: auto, cpu or cuda.
            timeout_s: ``openai``: seconds to wait for one answer.
            constrained: Ask the backend for JSON-schema-constrained output where it supports it.
            retries: Times an unusable answer is sent back with the error before the fallback.
            fallback: The policy (a registered name or import path) that decides a round the model could not.
            prompt: A prompt template file (``string.Template``, ``$name`` fields; see the default,
                ``llm_agent_prompt.txt``); default: the built-in one.
            history: Earlier decisions shown in the prompt.
            failures: Failures shown in the prompt (all the state has, at most this many).
            script: ``scripted``: the answers to replay, a list or a JSON file holding one.
            seed: Seeds sampling and the fallback policy.
        """
        if retries < 0 or history < 0 or failures < 0:
            raise ValueError("retries, history and failures must be >= 0")
        self.seed, self.retries, self.n_history, self.n_failures = seed, retries, history, failures
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.backend_name, self.api = backend, api
        self.backend: Any = (_scripted(script, self._seed_base) if backend == "scripted" else
                             _served(backend, model, url, api_key_env, api, extra_body, temperature, top_p,
                                     max_new_tokens, device, timeout_s, constrained))
        try:
            template = Path(prompt).read_text() if prompt else (
                resources.files("teachgym.policies").joinpath("llm_agent_prompt.txt").read_text())
        except OSError as e:
            raise ValueError(f"policy.prompt: cannot read the prompt template {prompt!r}: {e}") from e
        self.template = string.Template(template)
        self.fallback = build_component("policies", "policy.fallback", ComponentConfig(name=fallback), seed=seed)
        self.fallback_name = fallback
        self.calls = 0  # backend calls so far: the next call's seed (and the scripted backend's position)
        self.decisions: list[dict[str, Any]] = []  # round, action, rationale, fallback
        self._last: dict[str, Any] = {}

    @property
    def _seed_base(self) -> int:
        return agent_seed(self.seed)

    # -- the prompt -------------------------------------------------------------------------------
    def build_prompt(self, obs: Observation) -> str:
        """The round's prompt: what the state shows, the budget and the last decisions."""
        skills = []
        for s in obs.skills:
            pre = f"; needs {', '.join(s.prerequisites)}" if s.prerequisites and obs.skill_graph is not None else ""
            skills.append(f"- {s.name}: {s.description or '-'}{pre}; levels {list(s.levels)}")
        if obs.state == "open-ended":
            lines = ["What you can see: only some of the student's recent mistakes (no per-skill scores)."]
            for f in obs.failures[: self.n_failures]:
                lines.append(f"- [{', '.join(f.skills)}] {f.prompt!r} -> expected {f.gold!r}, "
                             f"student wrote {f.output!r}")
            if not obs.failures:
                lines.append("- (no mistakes in the sample)")
            state = "\n".join(lines)
        else:
            lines = ["The student's accuracy after the last round (eval items of each skill):",
                     "| skill | accuracy | loss | change |", "|---|---|---|---|"]
            for s in obs.skills:
                st = obs.profile[s.name]
                lines.append(f"| {s.name} | {_fmt(st.accuracy)} | {_fmt(st.loss)} | {_fmt(st.change)} |")
            if obs.state == "skill-tree" and obs.subskills:
                lines += ["", "Per level (sub-skill):", "| skill | level | accuracy | change |", "|---|---|---|---|"]
                for s in obs.skills:
                    for level, st in sorted((obs.subskills.get(s.name) or {}).items()):
                        lines.append(f"| {s.name} | {level} | {_fmt(st.accuracy)} | {_fmt(st.change)} |")
            state = "\n".join(lines)
        means = {h.round: sum(p.accuracy for p in h.profile.values()) / len(h.profile)
                 for h in obs.history if h.profile}
        history = []
        for d in self.decisions[-self.n_history:] if self.n_history else []:
            moved = ""
            if d["round"] - 1 in means and d["round"] in means:
                moved = f"; mean accuracy {means[d['round'] - 1]:.2f} -> {means[d['round']]:.2f}"
            how = " (fallback: the model's answers were unusable)" if d["fallback"] else ""
            history.append(f"- round {d['round']}: {_describe(d['action'])}{how}; rationale: "
                           f"{d['rationale'] or '-'}{moved}")
        return self.template.safe_substitute(
            skills="\n".join(skills), round=obs.round, rounds_total=obs.rounds_total,
            examples_per_round=obs.examples_per_round, budget_used=obs.budget_used, budget_left=obs.budget_left,
            state=state, history="\n".join(history) or "- (none yet: this is the first round)",
            levels_note=" In requests, \"level\" picks a sub-skill (a level listed above)."
            if obs.state == "skill-tree" else "",
        )

    def _render(self, messages: list[dict[str, str]]) -> str:
        """Messages as the backend's single prompt (a chat template for a local chat model)."""
        tok = getattr(self.backend, "tokenizer", None)
        if self.api == "chat" and tok is not None and getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages)

    # -- acting -----------------------------------------------------------------------------------
    def act(self, observation: Observation) -> Action:
        """Ask the model; retry with the error; fall back when every answer is unusable."""
        prompt = self.build_prompt(observation)
        messages = [{"role": "user", "content": prompt}]
        answers: list[dict[str, Any]] = []
        action, rationale = None, ""
        for _ in range(self.retries + 1):
            seed = self._seed_base + self.calls
            self.calls += 1
            text = self._complete(self._render(messages), seed)
            try:
                action, rationale = parse_answer(text, observation.skills)
                answers.append({"text": text, "ok": True})
                break
            except AnswerError as e:
                answers.append({"text": text, "ok": False, "reason": e.reason, "error": str(e)})
                messages += [{"role": "assistant", "content": text},
                             {"role": "user", "content": f"That answer cannot be used: {e}. Answer again with only "
                              "the JSON object, using only the listed skill names."}]
        fell_back = action is None
        if fell_back:
            action = self.fallback.act(observation)
            rationale = f"fallback to {self.fallback_name}: no usable answer in {len(answers)} attempt(s)"
        self.decisions.append({"round": observation.round, "action": action_to_dict(action),
                               "rationale": rationale, "fallback": fell_back})
        self._last = {"prompt": prompt, "answers": answers, "rationale": rationale, "fallback": fell_back,
                      "retries": len(answers) - 1}
        return action

    def _complete(self, prompt: str, seed: int) -> str:
        """One answer; a server that refuses the JSON-schema constraint is asked again without it."""
        try:
            return self.backend.complete([prompt], 1, self.max_new_tokens, self.temperature, self.top_p, seed)[0][0]
        except SynthesisError as e:
            body = getattr(self.backend, "extra_body", {})
            if "response_format" not in body or "answered HTTP 4" not in str(e):
                raise
            log.warning("the endpoint refused response_format (%s); parsing unconstrained answers instead", e)
            body.pop("response_format")
            return self.backend.complete([prompt], 1, self.max_new_tokens, self.temperature, self.top_p, seed)[0][0]

    def explain(self) -> dict[str, Any]:
        """The last decision, for the round's ``decision.json`` and the parent run's metrics."""
        if not self._last:
            return {}
        return {"details": {"llm_agent": self._last},
                "metrics": {"teacher/llm/retries": float(self._last["retries"]),
                            "teacher/llm/fallback": float(self._last["fallback"])}}

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The decision history and the call counter (the next sampling seed), plus the fallback's state."""
        fb = self.fallback.state_dict() if callable(getattr(self.fallback, "state_dict", None)) else None
        return {"calls": self.calls, "decisions": json.loads(json.dumps(self.decisions)), "fallback": fb}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.calls = int(state["calls"])
        self.decisions = [dict(d) for d in state["decisions"]]
        if state.get("fallback") is not None:
            self.fallback.load_state_dict(state["fallback"])


def _describe(action: Mapping[str, Any] | None) -> str:
    if not action:
        return "-"
    if action["type"] == "mixture":
        top = sorted(action["weights"].items(), key=lambda kv: -kv[1])
        return "mixture " + ", ".join(f"{k} {v:.2f}" for k, v in top)
    if action["type"] == "synthesize":
        return "requests " + ", ".join(
            f"{r['skill']} x{r['n']}" + (f" (level {r['level']})" if r.get("level") is not None else "")
            for r in action["requests"])
    return f"examples ({action.get('n_rows')} rows)"
