"""The LLM data engine: serve ``Synthesize`` requests with a language model instead of an env generator.

Configured by the experiment's ``synthesis:`` section (:class:`teachgym.config.SynthesisConfig`):

* ``backend: local`` — a transformers causal LM loaded from ``model`` (a local directory), sampling
  in batches (``num_return_sequences``, left padding);
* ``backend: openai`` — any OpenAI-compatible endpoint (vLLM, ``transformers serve``, a hosted API)
  at ``url``, model ``model``, key read from the environment variable ``api_key_env``; the legacy
  ``/completions`` API (base models) or ``/chat/completions`` (chat models).

For each request ``(skill, n, level)`` the model gets a prompt with the skill's name, description
and level, a few pool (or generator) examples of the skill, and the student's recent failures on it,
and writes ``Q: ...`` / ``A: ...``. Every candidate is then checked, in this order, and each
rejection is counted by reason:

``unparseable``   no ``Q:``/``A:`` pair could be read from the text;
``eval_overlap``  the question is an eval prompt;
``duplicate``     the question was already synthesised in this experiment or this round;
``failed_verifier`` the env's verifier rejects the answer (envs that can check new prompts);
``no_consensus``  for envs that cannot (your own data): the question is answered ``samples`` more
                  times; the row is kept, with the majority answer, only when at least
                  ``min_agree`` of the answers (the proposed one included) agree — STAT-Syn's filter.

Only kept rows reach training. When the model cannot fill a request after ``max_attempts`` passes
(a random-weight model never can), ``on_shortfall: fill`` takes the rest from the env's own sources
(the generator, else the pool) and says so in ``data/llm/shortfall``; ``error`` stops the round.
"""

from __future__ import annotations

import os
import random
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teachgym.errors import TeachgymError
from teachgym.protocols import supports_generation, verifies_new_prompts
from teachgym.rows import pool_index
from teachgym.seeds import request_seed

if TYPE_CHECKING:  # pragma: no cover
    from teachgym.config import SynthesisConfig
    from teachgym.protocols import Env
    from teachgym.types import Failure


class SynthesisError(TeachgymError, RuntimeError):
    """The LLM backend cannot be reached or loaded, or the engine was told to fail on a shortfall."""


# -- backends -----------------------------------------------------------------------------------


class LocalLM:
    """A transformers causal LM from a local directory, sampled in batches."""

    def __init__(self, path: str, device: str = "auto", batch_size: int = 16) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not os.path.isdir(path):
            raise SynthesisError(
                f"synthesis.model: {path!r} is not a local directory (the local backend loads a saved model "
                f"with from_pretrained and never downloads; use backend: openai for a served model)"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.model = AutoModelForCausalLM.from_pretrained(path).to(self.device).eval()
        self.batch_size = batch_size

    def complete(
        self, prompts: Sequence[str], n: int, max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> list[list[str]]:
        """``n`` sampled continuations of each prompt (greedy, and one, when ``temperature`` is 0)."""
        import torch

        torch.manual_seed(seed)
        sample = temperature > 0
        out: list[list[str]] = []
        for i in range(0, len(prompts), self.batch_size):
            batch = list(prompts[i : i + self.batch_size])
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            kwargs: dict[str, Any] = {"do_sample": False}
            if sample:
                kwargs = {"do_sample": True, "temperature": temperature, "top_p": top_p, "num_return_sequences": n}
            with torch.no_grad():
                ids = self.model.generate(
                    **enc, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **kwargs
                )
            texts = self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            k = n if sample else 1
            out += [texts[j * k : (j + 1) * k] * (1 if sample else n) for j in range(len(batch))]
        return out


class OpenAICompatible:
    """Any OpenAI-compatible endpoint (``/completions`` or ``/chat/completions``) through the ``openai`` client,
    one sample per call; the client's own retries (2) and timeout (``timeout_s``)."""

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        api: str = "completions",
        timeout_s: float = 120.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise SynthesisError("backend 'openai' needs the openai package: pip install 'teachgym[openai]'") from None
        self.url = url.rstrip("/")
        self.model, self.api, self.timeout_s = model, api, timeout_s
        self.extra_body = dict(extra_body or {})
        self.api_key_env = api_key_env
        self.key = os.environ.get(api_key_env) if api_key_env else None
        host = urllib.parse.urlparse(self.url).hostname or ""
        # A local server must not go through the machine's HTTP proxy; a hosted API may need it.
        local = host in ("127.0.0.1", "localhost", "::1")
        self.client = openai.OpenAI(
            base_url=self.url, api_key=self.key or "unused", timeout=timeout_s, max_retries=2,
            http_client=openai.DefaultHttpxClient(trust_env=False) if local else None,
        )

    def _create(self, prompt: str, body: dict[str, Any]) -> str:
        import openai

        path = "/chat/completions" if self.api == "chat" else "/completions"
        try:
            if self.api == "chat":
                reply = self.client.chat.completions.create(
                    messages=[{"role": "user", "content": prompt}], **body, extra_body=self.extra_body)
                return str(reply.choices[0].message.content or "")
            reply = self.client.completions.create(prompt=prompt, **body, extra_body=self.extra_body)
            return str(reply.choices[0].text or "")
        except openai.APIStatusError as e:
            hint = ""
            if e.status_code in (401, 403):
                hint = f" (is ${self.api_key_env} set to a valid key?)" if self.api_key_env else " (set api_key_env)"
            detail = (e.response.text if e.response is not None else str(e))[:300]
            raise SynthesisError(f"{self.url}{path} answered HTTP {e.status_code}{hint}: {detail}") from None
        except openai.APIConnectionError as e:  # APITimeoutError included
            raise SynthesisError(f"cannot reach the synthesis endpoint {self.url}{path}: {e}") from None

    def complete(
        self, prompts: Sequence[str], n: int, max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> list[list[str]]:
        """``n`` continuations of each prompt, one request each (not every server honours ``n``)."""
        out = []
        for i, prompt in enumerate(prompts):
            texts = []
            for j in range(n):
                body = {"model": self.model, "max_tokens": max_new_tokens, "temperature": temperature,
                        "top_p": top_p, "seed": request_seed(seed, i, j)}
                texts.append(self._create(prompt, body))
            out.append(texts)
        return out


def make_backend(cfg: SynthesisConfig) -> LocalLM | OpenAICompatible:
    """The backend a ``synthesis:`` section describes."""
    if cfg.backend == "local":
        return LocalLM(cfg.model, cfg.device, cfg.batch_size)
    if not cfg.url:
        raise SynthesisError("synthesis.url: backend 'openai' needs the endpoint's base URL, e.g. http://127.0.0.1:8000/v1")
    return OpenAICompatible(cfg.url, cfg.model, cfg.api_key_env, cfg.api, cfg.timeout_s, cfg.extra_body)


# -- prompts and parsing ------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def build_prompt(
    skill: Any,
    level: int | None,
    examples: Sequence[dict[str, Any]],
    failures: Sequence[Failure],
) -> str:
    """The generation prompt: the skill, its level, a few examples and the student's recent failures.

    It ends with ``Q:`` so that a base model continues with a new question, then ``A:`` and the answer.
    """
    lines = [
        "You write new training examples for a student model, one skill at a time.",
        f"Skill: {skill.name}" + (f" — {skill.description}" if skill.description else ""),
        f"Level: {level if level is not None else 'any'} (levels, easiest first: {list(skill.levels)})",
        "",
        "Examples of this skill:",
    ]
    for ex in examples:
        lines += [f"Q: {_one_line(ex['prompt'])}", f"A: {_one_line(ex['completion'])}", ""]
    if failures:
        lines.append("The student recently got these wrong:")
        for f in failures:
            lines += [f"Q: {_one_line(f.prompt)}", f"A: {_one_line(f.gold)}",
                      f"(the student answered: {_one_line(f.output) or '<nothing>'})", ""]
    lines += ["Write one new example of this skill, different from all of the above, in the same format.", "Q:"]
    return "\n".join(lines)


def answer_prompt(examples: Sequence[dict[str, Any]], question: str) -> str:
    """A few-shot prompt that asks for the answer to ``question`` (self-consistency samples)."""
    shots = "".join(f"Q: {_one_line(e['prompt'])}\nA: {_one_line(e['completion'])}\n\n" for e in examples)
    return f"{shots}Q: {question}\nA:"


def parse_example(text: str) -> tuple[str, str] | None:
    """``(question, answer)`` from a continuation of :func:`build_prompt`, or ``None`` if there is none.

    The continuation starts right after ``Q:``; a chat model's reply may repeat the ``Q:``.
    """
    body = text.lstrip()
    if body.startswith("Q:"):
        body = body[2:]
    q, sep, rest = body.partition("\nA:")
    question = q.strip()
    answer = rest.strip().split("\n", 1)[0].strip() if sep else ""
    if not question or not answer or "\n" in question or "Q:" in question:
        return None
    return question, answer


def parse_answer(text: str) -> str:
    """The first line of an answer continuation."""
    return text.strip().split("\n", 1)[0].strip()


# -- the engine ---------------------------------------------------------------------------------


@dataclass
class SynthesisLog:
    """One round's LLM bookkeeping (added to the engine's :class:`~teachgym.engine.DataReport`)."""

    requested: int = 0
    generated: int = 0
    kept: int = 0
    shortfall: int = 0
    backend_calls: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    by_skill: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, other: SynthesisLog) -> None:
        """Fold another request's counts into this round's."""
        for key in ("requested", "generated", "kept", "shortfall", "backend_calls"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        for reason, n in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        for skill, counts in other.by_skill.items():
            mine = self.by_skill.setdefault(skill, {})
            for key, n in counts.items():  # not Counter addition: it drops the zero counts ("kept": 0)
                mine[key] = mine.get(key, 0) + n


class LLMSynthesizer:
    """Serves ``Synthesize`` requests with an LLM; every row is checked before it can be trained on."""

    def __init__(self, cfg: SynthesisConfig, backend: Any | None = None) -> None:
        self.cfg = cfg
        self.backend = backend if backend is not None else make_backend(cfg)
        self.seen: set[str] = set()  # questions synthesised earlier in the experiment
        self._examples: dict[str, list[dict[str, Any]]] = {}

    def _skill_examples(self, env: Env, skill: str) -> list[dict[str, Any]]:
        """Rows of ``skill`` to show the model: from the pool, else the generator (cached)."""
        if skill not in self._examples:
            pool = env.pool()
            rows: list[dict[str, Any]] = []
            if pool is not None:
                idx = pool_index(env, pool).rows.get(skill)
                rows = pool.select(idx[:200].tolist()).to_list() if idx is not None else []
            if not rows and supports_generation(env):
                rows = env.generate(skill, 50, seed=0)
            self._examples[skill] = rows
        return self._examples[skill]

    def synthesize(
        self,
        env: Env,
        skill: str,
        n: int,
        level: int | None,
        seed: int,
        filt: Any,
        failures: Sequence[Failure] = (),
    ) -> tuple[list[dict[str, Any]], SynthesisLog]:
        """Up to ``n`` checked rows of ``skill`` (fewer when the model cannot produce enough).

        Args:
            env: The env (skills, examples, verifier).
            skill: Skill to write rows for.
            n: Rows wanted.
            level: The requested level (``None``: any).
            seed: Seeds example choice and sampling.
            filt: The engine's row filter (eval overlap, duplicates, verifier; counts rejections).
            failures: The student's recent failures; those of ``skill`` go into the prompt.
        """
        cfg = self.cfg
        rng = random.Random(seed)
        log = SynthesisLog(requested=n)
        dropped_before = Counter(filt.dropped)
        spec = next(s for s in env.skills if s.name == skill)
        pool_rows = self._skill_examples(env, skill)
        if level is not None:
            pool_rows = [r for r in pool_rows if r.get("level") == level] or pool_rows
        mine = [f for f in failures if skill in f.skills][: cfg.failures_in_prompt]
        check_by_verifier = cfg.check == "verifier" or (
            cfg.check == "auto" and verifies_new_prompts(env)
        )
        kept: list[dict[str, Any]] = []
        for _ in range(cfg.max_attempts):
            want = n - len(kept)
            if want <= 0:
                break
            k = max(1, round(want * cfg.oversample))
            prompts = [
                build_prompt(spec, level, rng.sample(pool_rows, min(cfg.examples_in_prompt, len(pool_rows))), mine)
                for _ in range(k)
            ]
            texts = [t[0] for t in self.backend.complete(
                prompts, 1, cfg.max_new_tokens, cfg.temperature, cfg.top_p, rng.randrange(2**31))]
            log.backend_calls += len(prompts)
            log.generated += len(texts)
            candidates = []
            for text in texts:
                parsed = parse_example(text)
                row = {"prompt": parsed[0] if parsed else text.strip()[:200], "completion": parsed[1] if parsed else "",
                       "skills": [skill], "level": level if level is not None else spec.levels[0], "source": "llm"}
                if parsed is None:
                    filt.reject(row, "unparseable")
                elif row["prompt"] in self.seen:  # synthesised in an earlier round
                    filt.reject(row, "duplicate")
                elif filt.admissible(row):
                    candidates.append(row)
            if check_by_verifier:
                for row in candidates:
                    if len(kept) < n and filt.keep(row):
                        kept.append(row)
            elif candidates:
                kept += self._consensus(candidates, pool_rows, rng, filt, log, n - len(kept))
        for row in kept:
            self.seen.add(row["prompt"])
        log.kept = len(kept)
        log.rejected = dict(filt.dropped - dropped_before)
        log.by_skill[skill] = {"requested": n, "generated": log.generated, "kept": log.kept}
        return kept, log

    def _consensus(self, candidates, pool_rows, rng, filt, log, room) -> list[dict[str, Any]]:
        """STAT-Syn's self-consistency: keep a question when ``min_agree`` answers agree (majority wins)."""
        cfg = self.cfg
        prompts = [answer_prompt(rng.sample(pool_rows, min(cfg.examples_in_prompt, len(pool_rows))), r["prompt"])
                   for r in candidates]
        answers = self.backend.complete(prompts, cfg.samples, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                                        rng.randrange(2**31))
        log.backend_calls += len(prompts) * cfg.samples
        kept = []
        for row, sampled in zip(candidates, answers):
            votes = Counter(a for a in [row["completion"], *map(parse_answer, sampled)] if a)
            best, count = votes.most_common(1)[0] if votes else ("", 0)
            if count < cfg.min_agree:
                filt.reject(row, "no_consensus")
                continue
            row = {**row, "completion": best}
            if len(kept) < room and filt.keep(row, verify=False):
                kept.append(row)
        return kept
