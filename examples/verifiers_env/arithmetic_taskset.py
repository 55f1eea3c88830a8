"""A verifiers taskset of integer arithmetic, as a taskset package would define it (verifiers 0.4.0).

Each task is ``a+b=``, ``a-b=`` or ``a*b=`` with a ``skill`` (add, sub, mul), a ``digits`` level and the
reference ``answer``; two rewards score a reply: ``correct`` (the integer is the answer, weight 1) and
``bare`` (the reply is one integer and nothing else, weight 0.2). teachgym's tests run it through
``teachgym run`` (``env.name=verifiers``, ``env.taskset=arithmetic_taskset``) with this folder on PYTHONPATH.
"""

from __future__ import annotations

import random
import re

import verifiers.v1 as vf

__all__ = ["ArithmeticTaskset"]

_OPS = {"add": ("+", lambda a, b: a + b), "sub": ("-", lambda a, b: a - b), "mul": ("*", lambda a, b: a * b)}


class ArithmeticData(vf.TaskData):
    answer: str
    skill: str
    digits: int


class ArithmeticTask(vf.Task[ArithmeticData]):
    @vf.reward(weight=1.0)
    async def correct(self, task: ArithmeticData, trace: vf.Trace) -> float:
        found = re.findall(r"-?\d+", trace.last_reply)
        return float(bool(found) and found[0] == task.answer)

    @vf.reward(weight=0.2)
    async def bare(self, trace: vf.Trace) -> float:
        return float(re.fullmatch(r"-?\d+", trace.last_reply) is not None)


class ArithmeticConfig(vf.TasksetConfig):
    n: int = 900
    """Tasks to make (spread over the skills and levels)."""
    skills: list[str] = ["add", "sub", "mul"]
    """Which operations."""
    seed: int = 0


class ArithmeticTaskset(vf.Taskset[ArithmeticTask, ArithmeticConfig]):
    def load(self):
        rng = random.Random(self.config.seed)
        for i in range(self.config.n):
            skill = self.config.skills[i % len(self.config.skills)]
            digits = 1 + (i // len(self.config.skills)) % 2
            a, b = (rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10**digits) for _ in range(2))
            sign, fn = _OPS[skill]
            yield ArithmeticTask(ArithmeticData(prompt=f"{a}{sign}{b}=", answer=str(fn(a, b)), skill=skill,
                                                digits=digits))
