"""The protocol checkers run on every built-in plugin (policies are covered in test_policies.py)."""

import pytest

from teachgym.checks import CheckError, check_env, check_policy, check_student
from teachgym.config import ComponentConfig, build_component
from teachgym.protocols import Env, Student, TeacherPolicy
from teachgym.registry import BUILTINS, resolve

from conftest import TINY, policy_kwargs


@pytest.mark.parametrize("name", list(BUILTINS["envs"]))
def test_check_env_on_every_builtin_env(name, tmp_path):
    kwargs = {}
    if name == "dataset":  # your own data: a file written here, 480 rows of two skills
        import json

        rows = [{"prompt": f"{i}+{i}=", "completion": str(2 * i), "skills": ["double" if i % 2 else "even"]}
                for i in range(480)]
        (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        kwargs = {"path": str(tmp_path / "rows.jsonl"), "eval_per_skill": 100}
    if name == "reasoning-gym":  # two tasks at two levels of their curricula
        pytest.importorskip("reasoning_gym")
        kwargs = {"tasks": ["basic_arithmetic", "spell_backward"], "levels": [0, 1], "eval_per_skill": 100}
    if name == "bench":  # a rule, a composition of two and a noise skill
        kwargs = {"skills": {"c": {"rule": "cipher"}, "r": {"rule": "reverse"},
                             "cr": {"rule": "compose", "of": ["c", "r"]}, "n": {"rule": "noise"}},
                  "eval_per_skill": 100}
    env = build_component("envs", "env", ComponentConfig(name=name, **kwargs))
    assert isinstance(env, Env)
    check_env(env, min_eval_per_skill=100)


@pytest.mark.parametrize("name", list(BUILTINS["students"]))
def test_check_student_on_every_builtin_student(name, tmp_path):
    cls = resolve("students", name)
    if name == "simulated":  # answers from its competence on the env's items: rows come from the env
        from teachgym.envs.arithmetic import ArithmeticEnv

        env = ArithmeticEnv(eval_per_skill=10, pool_per_skill=20)
        student = cls(env=env, examples_to_learn=2.0, seed=0)
        rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in env.pool().select(range(0, 60, 7))]
        load = lambda p: cls(env=env, examples_to_learn=2.0, checkpoint=p)  # noqa: E731
        make = lambda: cls(env=env, examples_to_learn=2.0, seed=0)  # noqa: E731
    elif name == "grpo":  # rewards from the env's verifier; two prompts, two samples each per step
        from teachgym.envs.arithmetic import ArithmeticEnv

        env = ArithmeticEnv(eval_per_skill=10, pool_per_skill=20)
        opts = dict(env=env, tiny=TINY, num_generations=2, batch_size=4, max_completion_length=4, beta=0.1)
        student = cls(model="tiny", **opts)
        rows = [{"prompt": "12+34=", "completion": "46"}, {"prompt": "5-3=", "completion": "2"}]
        load = lambda p: cls(env=env, model=p, num_generations=2, batch_size=4)  # noqa: E731
        make = lambda: cls(model="tiny", **opts)  # noqa: E731
    else:
        student = cls(model="tiny", tiny=TINY, learning_rate=1e-2, batch_size=2, epochs=4)
        rows = [{"prompt": "12+34=", "completion": "46"}, {"prompt": "5-3=", "completion": "2"}]
        load = lambda p: cls(model=p)  # noqa: E731
        make = lambda: cls(model="tiny", tiny=TINY, learning_rate=1e-2, batch_size=2, epochs=4)  # noqa: E731
    assert isinstance(student, Student)
    assert callable(student.save_state) and callable(student.load_state)  # every built-in student can resume
    check_student(student, rows, str(tmp_path / "s"), load=load, make=make)


def test_check_student_catches_a_state_that_does_not_restore_exactly(tmp_path):
    from teachgym.students.hf import HFStudent

    class Forgetful(HFStudent):
        def load_state(self, path):  # restores the weights but not the rounds trained (the next round's seed)
            super().load_state(path)
            self.rounds_trained = 0

    rows = [{"prompt": "12+34=", "completion": "46"}, {"prompt": "5-3=", "completion": "2"},
            {"prompt": "7+8=", "completion": "15"}, {"prompt": "9-4=", "completion": "5"}]
    make = lambda: Forgetful(model="tiny", tiny=TINY, learning_rate=1e-2, batch_size=2, epochs=1)  # noqa: E731
    with pytest.raises(CheckError, match="trains differently"):
        check_student(make(), rows, str(tmp_path), load=lambda p: HFStudent(model=p), make=make)


def test_check_policy_accepts_a_stateless_policy_and_catches_hidden_state():
    from teachgym import Mixture

    class Stateless:
        def act(self, obs):
            return Mixture({s: 1.0 + obs.profile[s].accuracy for s in obs.skill_names})

    check_policy(Stateless)

    class HiddenState:  # keeps a counter but cannot save it: --resume would not reproduce it
        n = 0

        def act(self, obs):
            self.n += 1
            return Mixture({s: float(i == self.n % len(obs.skill_names)) + 0.1 for i, s in enumerate(obs.skill_names)})

    with pytest.raises(CheckError, match="stateless policy"):
        check_policy(HiddenState)

    class HalfStateful(Stateless):
        def state_dict(self):
            return {}

    with pytest.raises(CheckError, match="go together"):
        check_policy(HalfStateful)


@pytest.mark.parametrize("name", list(BUILTINS["policies"]))
def test_builtin_policies_satisfy_the_protocol(name, request):
    assert isinstance(resolve("policies", name)(**policy_kwargs(name, request)), TeacherPolicy)


def test_check_policy_catches_misbehaviour():
    import random

    from teachgym import Mixture

    class Unseeded:
        def act(self, obs):
            return Mixture({s: random.random() + 0.01 for s in obs.skill_names})

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    with pytest.raises(CheckError, match="different decisions"):
        check_policy(Unseeded)

    class Forgetful(Unseeded):
        """Deterministic, but its state does not survive a round trip."""

        def __init__(self):
            self.calls = 0

        def act(self, obs):
            self.calls += 1
            return Mixture({s: float(self.calls) if i == 0 else 1.0 for i, s in enumerate(obs.skill_names)})

    with pytest.raises(CheckError, match="restored from state_dict"):
        check_policy(Forgetful)

    class Garbage(Unseeded):
        def act(self, obs):
            return Mixture({"nope": 1.0})

    with pytest.raises(CheckError, match="invalid action"):
        check_policy(Garbage)

    class Unnormalised(Unseeded):
        def act(self, obs):
            return Mixture({s: 2.0 for s in obs.skill_names})

    check_policy(Unnormalised)  # fine for a user's policy: the engine normalises
    with pytest.raises(CheckError, match="not 1"):
        check_policy(Unnormalised, require_normalized=True)


def test_check_student_catches_a_student_that_does_not_learn(tmp_path):
    from teachgym.students.hf import HFStudent

    student = HFStudent(model="tiny", tiny=TINY, learning_rate=0.0, batch_size=2, epochs=1)
    with pytest.raises(CheckError, match="did not lower the loss"):
        check_student(student, [{"prompt": "1+1=", "completion": "2"}], str(tmp_path), load=lambda p: None)
