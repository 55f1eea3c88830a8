"""Before round 0: do the env's questions and answers fit the student?

A question longer than the student's positions, a gold answer longer than ``loop.max_new_tokens`` or a
training row longer than the student's training length cannot be learned or scored: the run would spend
hours on a skill that stays at 0 (or exhaust memory on prompts the model cannot hold). The loop calls
:func:`check_fit` once, on the eval set (whose rows are drawn as the training rows are), and stops with an
error that names each skill, the lengths and the setting to change.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from teachgym.config import ConfigError
from teachgym.evaluation import eval_columns
from teachgym.protocols import MeasuresTokens


class FitError(ConfigError):
    """The env's questions or answers do not fit the student (the message names the skills and settings)."""


def lengths_by_skill(env: Any, student: MeasuresTokens) -> dict[str, tuple[int, int]]:
    """Per skill: the longest eval question and the longest gold answer, in the student's tokens."""
    prompts, golds, skills, _ = eval_columns(env)
    p_len, g_len = student.token_lengths(prompts), student.token_lengths(golds, special_tokens=False)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p, g, sk in zip(p_len, g_len, skills):
        for s in sk:
            out[s][0], out[s][1] = max(out[s][0], p), max(out[s][1], g)
    return {s: (p, g) for s, (p, g) in out.items()}


def problems(lengths: dict[str, tuple[int, int]], limits: dict[str, tuple[int, str]], max_new_tokens: int
             ) -> list[str]:
    """What does not fit, one sentence per skill and limit (empty: everything fits)."""
    out = []
    context, train, rollout = limits.get("context"), limits.get("train"), limits.get("completion")
    for skill, (p, g) in lengths.items():
        if g > max_new_tokens:
            out.append(f"{skill}: gold answers run to {g} tokens, but loop.max_new_tokens={max_new_tokens} cuts "
                       f"every answer before that, so they can never score: set loop.max_new_tokens={g}")
        if rollout and g > rollout[0]:
            out.append(f"{skill}: gold answers run to {g} tokens, but {rollout[1]}={rollout[0]} cuts every "
                       f"rollout before that, so none is ever rewarded: set {rollout[1]}={g}")
        longest = max(max_new_tokens, rollout[0] if rollout else 0)
        if context and p + longest > context[0]:
            out.append(f"{skill}: eval questions run to {p} tokens; with {longest} new tokens "
                       f"that is {p + longest} positions, more than the student's {context[0]} "
                       f"({context[1]}): raise it, or choose shorter questions (the env's levels or config)")
        if train and p + g + 1 > train[0]:  # + 1: the end-of-sequence token training appends
            out.append(f"{skill}: a question and its answer run to {p + g + 1} tokens, longer than {train[1]}="
                       f"{train[0]}, so training cuts the answer off: set {train[1]}={p + g + 1} or more")
    return out


def check_fit(env: Any, student: Any, max_new_tokens: int) -> None:
    """Stop before round 0 when the env's questions or answers do not fit ``student`` (a student that cannot
    measure tokens, e.g. the simulated one, is not checked).

    Raises:
        FitError: Every skill and limit that does not fit, with the setting to change.
    """
    if not isinstance(student, MeasuresTokens):
        return
    found = problems(lengths_by_skill(env, student), dict(student.limits()), max_new_tokens)
    if found:
        raise FitError(f"{len(found)} thing(s) do not fit the student:\n  " + "\n  ".join(found))
