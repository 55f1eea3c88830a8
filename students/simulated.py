"""An analytic student: skill acquisition as a few lines of numpy, for developing teachers in milliseconds.

The state is a competence ``c[k]`` in [0, 1] per skill: the probability of answering an eval item of
skill ``k`` correctly. Training on ``n[k]`` examples of each skill (a round is split into
``substeps`` so that a prerequisite learned early in a round can unlock its dependants later in it):

1. *Transfer* — practice reaches related skills: ``p = T @ n`` with ``T[k][k] = 1`` and
   ``T[k][j] = transfer`` when ``j`` is a prerequisite of ``k`` or ``k`` of ``j``.
2. *Forgetting* — training on anything else interferes: ``c[k] *= 2 ** (-max(0, N - p[k]) / half_life)``
   where ``N`` is all the examples trained on.
3. *Prerequisites* — a skill cannot be learned before its prerequisites:
   ``g[k] = prod_j clip((c[j] - gate_lo) / (gate_hi - gate_lo), 0, 1)`` over prerequisites ``j``.
   With ``onset > 0`` a shared *format* competence ``f`` (0 at first) is learned from every example,
   ``f += (1 - f) * (1 - exp(-N / onset))``, and gates every skill the same way: the slow start of a
   language model, which first learns the answer format that all skills share. ``plateau[k] > 0`` is
   the same stage for one skill, learned from that skill's own practice ``p[k]``: a hard rule whose
   accuracy stays flat for a while and then rises (what a small LM shows on a cipher).
4. *Saturating learning* — ``c[k] += (ceiling - c[k]) * (1 - exp(-g[k] * p[k] / difficulty[k]))``:
   ``difficulty[k]`` examples with the prerequisites mastered close 63% of the remaining gap.
   By default ``difficulty[k] = examples_to_learn * (1 + depth_scale * depth[k])``, ``depth`` being
   the length of the longest prerequisite chain below ``k``.

Measurement is noisy like a real eval: each eval item gets a fresh uniform draw ``u`` per state, and
the student answers it correctly when ``u < c[k]``, so a profile on 100 items per skill has the
binomial noise a real one has. The same draws serve :meth:`generate` (the loop's path through
``evaluate``) and :meth:`measure` (the fast path used by ``teachgym.gym``), so both report the same
accuracies. Everything is deterministic under ``seed``. Levels of synthesised rows are ignored:
the model counts examples per skill.

It has no per-step teaching: it learns from rows per skill a round at a time and rolls nothing out, so
``loop.teach_every: step`` is refused for it before round 0 (:func:`teachgym.steps.check_step_setup`).
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from teachgym.evaluation import eval_columns
from teachgym.options import options_from
from teachgym.students._simulated_params import SimulatedOptions, depths, known, per_skill
from teachgym.types import TrainReport

_EPS = 1e-3  # smallest probability the loss uses, so an untrained student's loss is finite
CHECKPOINT = "simulated_student.json"


class SimulatedStudent:
    """A student whose skill competences follow the analytic model in the module docstring.

    Built from :class:`~teachgym.students._simulated_params.SimulatedOptions` (each field's help says what it
    sets) or from their fields as keywords, as a config's ``student:`` section builds it.

    Args:
        env: The env whose skills, prerequisites and eval set the student uses (injected by the loop).
        options: The student's options; or give their fields as keywords.
        seed: Seeds the measurement draws.
    """

    Options = SimulatedOptions

    def __init__(self, env: Any = None, options: SimulatedOptions | None = None, *, seed: int = 0, **kwargs: Any
                 ) -> None:
        o = options if options is not None else options_from(SimulatedOptions, kwargs, "student simulated")
        self.options = o
        skills, prerequisites, difficulty = o.skills, o.prerequisites, o.difficulty
        if env is None and not skills:
            raise ValueError("SimulatedStudent needs an env or a list of skills")
        if env is not None:
            names = [s.name for s in env.skills]
            prereq = {s.name: list(s.prerequisites) for s in env.skills}
        else:
            names, prereq = list(skills or ()), {s: [] for s in skills or ()}
        if prerequisites is not None:
            known(prerequisites, names, "prerequisites")
            prereq.update({k: list(v) for k, v in prerequisites.items()})
        for k, deps in prereq.items():
            known({d: 0 for d in deps}, names, f"prerequisites of {k!r}")
        self.skills = names
        self.prerequisites = prereq
        self.seed = seed
        self.gate = (float(o.gate[0]), float(o.gate[1]))
        self.ceiling = float(o.ceiling)
        self.half_life = float(o.half_life)
        self.onset = float(o.onset)
        self.format = 0.0 if self.onset > 0 else 1.0
        self.substeps = int(o.substeps)
        k = len(names)
        idx = {s: i for i, s in enumerate(names)}
        self._idx = idx

        depth = depths(prereq, names)
        diff = np.array([o.examples_to_learn * (1 + o.depth_scale * depth[s]) for s in names], dtype=float)
        if difficulty:
            known(difficulty, names, "difficulty")
            for s, v in difficulty.items():
                diff[idx[s]] = float(v)
        if (diff <= 0).any():
            raise ValueError("every difficulty must be positive")
        self.difficulty = diff
        self._difficulty_list = diff.tolist()

        self._set_transfer(o.transfer, prereq, names, idx)

        self._initial = np.clip(per_skill(o.initial, names, "initial"), 0.0, self.ceiling)
        self.competence = self._initial.copy()

        plat = per_skill(o.plateau, names, "plateau")
        if (plat < 0).any():
            raise ValueError("every plateau must be >= 0")
        self._plateau = plat.tolist()
        self.stage = np.where(plat > 0, 0.0, 1.0)  # a skill's private stage; 1 (open) without a plateau

        self._set_eval_items(env, idx, o.eval_per_skill)
        self._rng = np.random.default_rng(seed)
        self._draws: np.ndarray | None = None  # per-item uniforms for the current state
        self.examples_seen = 0
        self.version = 0
        if o.checkpoint:
            self._restore(Path(o.checkpoint) / CHECKPOINT)

    def _set_transfer(self, transfer: float | Mapping[str, Mapping[str, float]], prereq: Mapping[str, list[str]],
                      names: list[str], idx: Mapping[str, int]) -> None:
        """The transfer matrix (``[s, o]``: how much practice of ``o`` teaches ``s``) and the lists the fast path
        reads: a number links each skill with its prerequisites both ways; a mapping gives the entries."""
        k = len(names)
        is_prereq = np.zeros((k, k), dtype=bool)  # [k, j]: j is a prerequisite of k
        for s, deps in prereq.items():
            for d in deps:
                is_prereq[idx[s], idx[d]] = True
        t = np.eye(k)
        if isinstance(transfer, Mapping):
            known(transfer, names, "transfer")
            for s, row in transfer.items():
                known(row, names, f"transfer[{s!r}]")
                for o, v in row.items():
                    t[idx[s], idx[o]] = float(v)
        else:
            t[is_prereq] = float(transfer)
            t[is_prereq.T] = float(transfer)
        self.transfer = t
        self._transfer_rows = [[(j, float(v)) for j, v in enumerate(row) if v] for row in t]
        self._prereq_lists = [[int(j) for j in np.flatnonzero(row)] for row in is_prereq]

    def _set_eval_items(self, env: Any, idx: Mapping[str, int], eval_per_skill: int) -> None:
        """The eval items as a row of the item->skills incidence matrix each, and their gold answers (the env's
        eval set; without an env, ``eval_per_skill`` items per skill)."""
        k = len(idx)
        # Eval items: a row of the item->skills incidence matrix per item, and the gold answers.
        self._index: dict[str, tuple[int, str]] = {}
        self._env = env
        self._golds: list[str] = []
        if env is not None:
            prompts, self._golds, skills, _ = eval_columns(env)  # skills: a list per item
            self._index = {p: (i, c) for i, (p, c) in enumerate(zip(prompts, self._golds, strict=True))}
            member = np.zeros((len(prompts), k))
            for i, sk in enumerate(skills):
                for s in sk:
                    member[i, idx[s]] = 1.0
        else:
            member = np.repeat(np.eye(k), eval_per_skill, axis=0)
        self._longest_gold = max(map(len, self._golds), default=0)
        self._pool_rows: dict[str, tuple[str, list[str]]] | None = None  # built when a pool prompt is first asked
        self._member = member
        self._per_skill = np.maximum(member.sum(0), 1.0)
        # Fast path for the common case of one skill per eval item: indexing instead of matrix products.
        single = (member.sum(1) == 1).all()
        self._item_skill = member.argmax(1) if single else None

    def reset(self, seed: int | None = None) -> None:
        """Back to the initial competences, with fresh measurement draws from ``seed`` (default: the constructor's)."""
        self.seed = self.seed if seed is None else int(seed)
        self.competence = self._initial.copy()
        self.format = 0.0 if self.onset > 0 else 1.0
        self.stage = np.where(np.asarray(self._plateau) > 0, 0.0, 1.0)
        self._rng = np.random.default_rng(self.seed)
        self._draws = None
        self.examples_seen = 0
        self.version = 0

    # -- the model ------------------------------------------------------------------------------

    def practice(self, counts: Sequence[float] | Mapping[str, float]) -> None:
        """Train on ``counts`` examples per skill (a vector in skill order, or a mapping)."""
        if isinstance(counts, Mapping):
            n = [0.0] * len(self.skills)
            for s, v in counts.items():
                n[self._idx[s]] += float(v)
        else:
            n = [float(v) for v in counts]
        # Plain Python floats: with a handful of skills this is several times faster than numpy calls.
        steps, lo, ceiling = self.substeps, self.gate[0], self.ceiling
        span = self.gate[1] - lo
        step = [v / steps for v in n]
        total = sum(step)
        p = [sum(t * step[j] for j, t in row) for row in self._transfer_rows]
        keep = [2.0 ** (-max(0.0, total - pk) / self.half_life) if self.half_life > 0 else 1.0 for pk in p]
        rate = [pk / d for pk, d in zip(p, self._difficulty_list)]
        c = self.competence.tolist()
        fmt = self.format
        stage = self.stage.tolist()
        for _ in range(steps):
            c = [ci * ki for ci, ki in zip(c, keep)]
            ready = [min(1.0, max(0.0, (ci - lo) / span)) for ci in c]
            if self.onset > 0:  # the shared format stage: learned from every example, gates every skill
                fmt += (1.0 - fmt) * -math.expm1(-total / self.onset)
            fmt_ready = min(1.0, max(0.0, (fmt - lo) / span)) if self.onset > 0 else 1.0
            new = []
            for k, ck in enumerate(c):
                g = fmt_ready
                if self._plateau[k] > 0:  # this skill's own stage, from its own practice
                    stage[k] += (1.0 - stage[k]) * -math.expm1(-p[k] / self._plateau[k])
                    g *= min(1.0, max(0.0, (stage[k] - lo) / span))
                for j in self._prereq_lists[k]:
                    g *= ready[j]
                new.append(ck + (ceiling - ck) * -math.expm1(-g * rate[k]))
            c = new
        self.competence = np.array(c)
        self.format = fmt
        self.stage = np.array(stage)
        self.examples_seen += int(sum(n))
        self.version += 1
        self._draws = None

    def _item_draws(self) -> np.ndarray:
        if self._draws is None:
            self._draws = self._rng.random(len(self._member))
        return self._draws

    def _item_competence(self) -> np.ndarray:
        if self._item_skill is not None:
            return self.competence[self._item_skill]
        # An item needing several skills is answered when all of them are (independently) there.
        return np.exp(self._member @ np.log(np.maximum(self.competence, 1e-12)))

    def measure(self) -> np.ndarray:
        """Per-skill accuracy on the eval items (skill order): the same numbers ``evaluate`` would give."""
        correct = self._item_draws() < self._item_competence()
        if self._item_skill is not None:
            return np.bincount(self._item_skill, weights=correct, minlength=len(self.skills)) / self._per_skill
        return (correct @ self._member) / self._per_skill

    def expected_loss(self) -> np.ndarray:
        """Per-skill loss ``-log(P(correct))``, what :meth:`loss` gives on gold answers."""
        return -np.log(_EPS + (1 - _EPS) * self.competence)

    # -- the Student protocol -------------------------------------------------------------------

    #: The loop's fast path: this student learns from rows per skill alone (``train`` takes the engine's
    #: ``SkillCounts``) and answers its env's eval set without text (:meth:`answer_eval`).
    learns_from_counts = True

    def train(self, dataset: Any) -> TrainReport:
        """Practise the rows of a dataset; rows count for their ``skills`` (or the skill of a known prompt).

        ``dataset`` may also be the engine's ``SkillCounts`` (rows per skill, no text): the same update.
        """
        start = time.perf_counter()
        counts = np.zeros(len(self.skills))
        row_skills: Any = ()
        if hasattr(dataset, "counts"):  # SkillCounts: the fast path
            for s, n in dataset.counts.items():
                if s in self._idx:
                    counts[self._idx[s]] += n
        elif "skills" in dataset.column_names:
            row_skills = ([sk] if isinstance(sk, str) else sk for sk in dataset["skills"][:])
        else:
            row_skills = (self._skills_of(p) for p in dataset["prompt"][:])
        for sk in row_skills:
            sk = [s for s in sk if s in self._idx]
            for s in sk:
                counts[self._idx[s]] += 1.0 / len(sk)
        loss_before = float(self.expected_loss() @ counts / max(counts.sum(), 1.0))
        self.practice(counts)
        self.examples_seen += len(dataset) - int(counts.sum())  # rows of unknown skills still cost
        return TrainReport(steps=len(dataset), train_loss=loss_before, runtime_s=time.perf_counter() - start,
                           metrics={"simulated/mean_competence": float(self.competence.mean())})

    def answer_eval(self, env: Any, max_new_tokens: int = 16) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """What ``generate``, the verifier and ``loss`` give on ``env``'s eval set, without the text round trip.

        Returns:
            ``(outputs, correct, losses)`` in eval-set order, or ``None`` when ``env`` is not the one this
            student was built with (then the loop asks ``generate`` and ``loss``).
        """
        if env is not self._env or self._longest_gold > max_new_tokens:  # truncated golds: let the verifier judge
            return None
        p = self._item_competence()
        correct = self._item_draws() < p
        golds = self._golds
        outputs = [g[:max_new_tokens] if ok else "" for g, ok in zip(golds, correct.tolist())]
        return outputs, correct, -np.log(_EPS + (1 - _EPS) * p)

    @property
    def _pool(self) -> dict[str, tuple[str, list[str]]]:
        """``{prompt: (gold, skills)}`` of the env's pool (only a student asked about pool prompts needs it)."""
        if self._pool_rows is None:
            pool = self._env.pool() if self._env is not None else None
            self._pool_rows = {} if pool is None else {
                p: (c, [sk] if isinstance(sk, str) else list(sk))
                for p, c, sk in zip(pool["prompt"][:], pool["completion"][:], pool["skills"][:], strict=True)}
        return self._pool_rows

    def _skills_of(self, prompt: str) -> list[str]:
        if prompt in self._index:
            i = self._index[prompt][0]
            return [self.skills[j] for j in np.flatnonzero(self._member[i])]
        if prompt in self._pool:
            return self._pool[prompt][1]
        return []

    def _answers(self, prompts: Sequence[str]) -> list[tuple[float, float, str | None]]:
        """(probability correct, this state's uniform draw, gold answer) per prompt."""
        competence, draws = self._item_competence(), self._item_draws()  # once per call, not per prompt
        out = []
        for prompt in prompts:
            if prompt in self._index:
                i, gold = self._index[prompt]
                out.append((float(competence[i]), float(draws[i]), gold))
            elif prompt in self._pool:
                gold, sk = self._pool[prompt]
                p = math.prod(float(self.competence[self._idx[s]]) for s in sk)
                u = zlib.crc32(f"{self.seed}:{self.version}:{prompt}".encode()) / 2**32
                out.append((p, u, gold))
            else:
                out.append((0.0, 1.0, None))
        return out

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 16, batch_size: int = 256) -> list[str]:
        """The gold answer when this state's draw for the item is below its competence, else ``""``."""
        return [gold[:max_new_tokens] if gold is not None and u < p else "" for p, u, gold in self._answers(prompts)]

    def loss(self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 256) -> list[float]:
        """``-log P(completion)``: the competence for a gold answer, a small floor for anything else."""
        out = []
        for (p, _, gold), completion in zip(self._answers(prompts), completions, strict=True):
            p = p if gold is not None and completion == gold else 0.0
            out.append(-math.log(_EPS + (1 - _EPS) * p))
        return out

    def save(self, path: str) -> None:
        """Write the state (and the pending measurement draws) to ``<path>/simulated_student.json``."""
        Path(path).mkdir(parents=True, exist_ok=True)
        state = {
            "skills": self.skills,
            "competence": self.competence.tolist(),
            "examples_seen": self.examples_seen,
            "version": self.version,
            "rng": self._rng.bit_generator.state,
            "draws": None if self._draws is None else self._draws.tolist(),
            "format": self.format,
            "stage": self.stage.tolist(),
        }
        (Path(path) / CHECKPOINT).write_text(json.dumps(state))

    def save_state(self, path: str) -> None:
        """The exact state for resuming an experiment (the same file as :meth:`save`)."""
        self.save(path)

    def load_state(self, path: str) -> None:
        """Restore what :meth:`save_state` wrote."""
        self._restore(Path(path) / CHECKPOINT)

    def _restore(self, file: Path) -> None:
        if not file.exists():
            raise FileNotFoundError(f"no simulated student checkpoint at {file}")
        state = json.loads(file.read_text())
        if state["skills"] != self.skills:
            raise ValueError(f"checkpoint {file} is for skills {state['skills']}, this student has {self.skills}")
        self.competence = np.asarray(state["competence"], dtype=float)
        self.format = float(state.get("format", self.format))
        if "stage" in state:  # states written before plateaus existed have every stage open
            self.stage = np.asarray(state["stage"], dtype=float)
        self.examples_seen = int(state["examples_seen"])
        self.version = int(state["version"])
        self._rng.bit_generator.state = state["rng"]
        self._draws = None if state["draws"] is None else np.asarray(state["draws"])
