"""``teachgym.integrations.trl``: a teachgym teacher choosing the mixture of a user's own ``GRPOTrainer``."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from teachgym.config import ConfigError
from teachgym.integrations.trl import TeacherSampler, consecutive_groups, teach
from teachgym.teacher import group_stats

EXAMPLE = Path(__file__).parent.parent / "examples" / "trl_teacher" / "train.py"
SKILLS = ["coin", "always", "never"]


def test_the_private_sampler_hook_is_still_where_the_fence_says():
    import transformers
    import trl

    from teachgym.integrations._trl_private import CHECKED_WITH

    assert "_get_train_sampler" in vars(trl.GRPOTrainer)  # TRL's RepeatSampler comes from this override
    assert "self._get_train_sampler" in inspect.getsource(transformers.Trainer.get_train_dataloader)
    assert set(CHECKED_WITH) == {"trl", "transformers"}


def test_the_sampler_keeps_trls_layout_and_length():
    from trl.trainer.utils import RepeatSampler

    skills = [SKILLS[i % 3] for i in range(30)]
    ours = TeacherSampler(skills, dict.fromkeys(SKILLS, 1.0), batch_size=4, mini_repeat_count=3, repeat_count=2)
    trls = RepeatSampler(list(range(30)), mini_repeat_count=3, batch_size=4, repeat_count=2)
    drawn, theirs = list(ours), list(trls)
    assert len(drawn) == len(ours) == len(theirs) == len(trls)

    def layout(seq):  # where an index repeats the one before, and where a generation batch repeats
        return [a == b for a, b in zip(seq, seq[1:])], [seq[i:i + 12] == seq[i + 12:i + 24] for i in range(0, 72, 24)]

    assert layout(drawn) == layout(theirs)


def test_the_sampler_draws_lazily_from_the_weights_of_the_moment():
    skills = [SKILLS[i % 3] for i in range(60)]
    sampler = TeacherSampler(skills, dict.fromkeys(SKILLS, 1.0), batch_size=4)
    it = iter(sampler)
    first = [next(it) for _ in range(4)]
    sampler.weights = {"coin": 1.0, "always": 0.0, "never": 0.0}
    after = [next(it) for _ in range(20)]
    assert {skills[i] for i in after} == {"coin"} and len(first) == 4
    assert sampler.drawn["coin"] >= 20


def test_group_statistics_by_hand():
    # two groups of 4: coin passes 2 of 4, always passes 4 of 4
    stats = group_stats(consecutive_groups(["coin"] * 4 + ["always"] * 4, [1, 0, 1, 0, 1, 1, 1, 1],
                                           [1, 0, 1, 0, 1, 1, 1, 1], 4))
    assert stats["coin"]["pass_rate"] == 0.5 and stats["coin"]["learnability"] == 0.25
    assert stats["always"]["learnability"] == 0.0 and stats["always"]["zero_variance_share"] == 1.0
    assert stats["coin"]["mean_abs_advantage"] == pytest.approx(1.0, abs=1e-3)  # +-1 after normalising
    with pytest.raises(ValueError, match="groups of 4"):
        consecutive_groups(["coin"] * 3, [1, 0, 1], [1, 0, 1], 4)


def _trainer(tmp_path, report_to="none", reward=None):
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from teachgym.students.hf import byte_tokenizer

    def skill_reward(completions, skill, **kwargs):
        """coin: half of each group passes (GRPO learns from it); always: every one; never: none."""
        return [{"coin": float(i % 2), "always": 1.0, "never": 0.0}[s] for i, s in enumerate(skill)]

    tok = byte_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, pad_token_id=tok.pad_token_id))
    rows = Dataset.from_list([{"prompt": f"{s} {i} =", "skill": s} for i in range(40) for s in SKILLS])
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=8,
                      num_generations=4, max_completion_length=2, logging_steps=1, report_to=report_to, use_cpu=True,
                      disable_tqdm=True, save_strategy="no", seed=0)
    return GRPOTrainer(model=model, processing_class=tok, reward_funcs=[reward or skill_reward], train_dataset=rows,
                       args=args)


def test_learnability_steers_a_real_grpo_run_and_its_weights_reach_mlflow(tmp_path, mlflow_store):
    import mlflow

    trainer = _trainer(tmp_path, report_to="mlflow")
    callback = teach(trainer, "learnability", skill_column="skill")
    with mlflow.start_run() as run:
        trainer.train()
    assert callback.updates == 6  # one update per optimizer step
    w = callback.teacher.weights
    assert w["coin"] > w["always"] and w["coin"] > w["never"]  # the only skill with reward variance
    assert callback.sampler.drawn["coin"] > callback.sampler.drawn["never"]  # and later batches drew it
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "teacher/weight/coin")
    assert len(history) >= 5 and history[-1].value == pytest.approx(w["coin"])
    assert trainer.reward_funcs[0].__name__ == "skill_reward"  # TRL's logged reward name is unchanged


def test_a_checkpoint_carries_the_teacher_and_a_resumed_run_goes_on_from_it(tmp_path):
    from teachgym.integrations.trl import STATE_FILE

    trainer = _trainer(tmp_path)
    trainer.args.save_strategy, trainer.args.save_steps = "steps", 3
    first = teach(trainer, "learnability")
    trainer.train()
    saved = json.loads((tmp_path / "out" / "checkpoint-3" / STATE_FILE).read_text())
    assert saved["updates"] == 3 and len(saved["teacher"]["history"]) == 3

    again = _trainer(tmp_path)
    again.args.save_strategy, again.args.save_steps = "steps", 3
    resumed = teach(again, "learnability")
    begun, restore = [], resumed.on_train_begin

    def on_train_begin(*args, **kwargs):
        restore(*args, **kwargs)
        begun.append(len(resumed.teacher.history))

    resumed.on_train_begin = on_train_begin
    again.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-3"))
    assert begun == [3] and resumed.updates == 6  # three updates restored, three more after the resume
    assert len(resumed.teacher.history) == len(first.teacher.history) == 6


def test_an_async_reward_function_is_watched_and_still_awaited():
    import asyncio

    from trl.trainer.utils import is_async_callable

    from teachgym.integrations.trl import _watch

    async def correct(completions, skill, **kwargs):
        return [1.0 for _ in completions]

    watched = _watch(correct, "skill", 0.5)
    assert is_async_callable(watched) and watched.__name__ == "correct"
    assert asyncio.run(watched(completions=["a", "b"], skill=["x", "y"])) == [1.0, 1.0]
    assert watched.calls == [(["x", "y"], [1.0, 1.0], [1.0, 1.0])]


def test_bad_input_is_named_before_training(tmp_path):
    trainer = _trainer(tmp_path)
    with pytest.raises(ConfigError, match="no column 'topic'"):
        teach(trainer, "learnability", skill_column="topic")
    with pytest.raises(ConfigError, match=r"reward='nope'.*\['skill_reward'\]"):
        teach(trainer, "learnability", reward="nope")
    with pytest.raises(ConfigError, match="drives a trl.GRPOTrainer or SFTTrainer"):
        teach(object(), "learnability")
    with pytest.raises(Exception, match="learnability"):
        teach(trainer, "learnabilty")


def test_an_sft_trainer_is_taught_from_a_per_skill_evaluation(tmp_path):
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from teachgym.integrations.trl import evaluator
    from teachgym.students.hf import byte_tokenizer

    tok = byte_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, pad_token_id=tok.pad_token_id))
    rows = [{"prompt": f"{s} {i} =", "completion": f" {i}", "skill": s} for i in range(30) for s in SKILLS]
    trainer = SFTTrainer(model=model, processing_class=tok, train_dataset=Dataset.from_list(rows),
                         args=SFTConfig(output_dir=str(tmp_path / "o"), max_steps=4, per_device_train_batch_size=4,
                                        report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True))
    with pytest.raises(ConfigError, match="SFTTrainer has no rewards to read: pass evaluate="):
        teach(trainer, "missing-skill")
    seen = []

    def verify(row, answer):  # "always" is always right, "never" never: whatever the tiny model says
        seen.append(answer)
        return {"coin": len(seen) % 2 == 0, "always": True, "never": False}[row["skill"]]

    callback = teach(trainer, "missing-skill", evaluate=evaluator(rows[:12], verify, tok, max_new_tokens=3),
                     every=2)
    trainer.train()
    assert callback.updates == 2 and len(seen) == 24  # every 2 of 4 steps, 12 greedy answers each
    w = callback.teacher.weights
    assert w["never"] > w["coin"] > w["always"]  # missing-skill: the more a skill is missed, the more rows
    assert callback.teacher.history[-1].profile["always"].n == 4


def test_the_example_script_runs_and_logs_the_teachers_weights(tmp_path, mlflow_store):
    import os

    import mlflow

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # a run of another test: not ours
    done = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "3", "--report-to", "mlflow"], cwd=tmp_path,
                          capture_output=True, text=True, env={**env, "MLFLOW_TRACKING_URI": mlflow_store})
    assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow.MlflowClient(mlflow_store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and {f"teacher/weight/{s}" for s in ("add", "max", "first", "mod")} <= set(
        runs[0].data.metrics)
    assert len(EXAMPLE.read_text().splitlines()) <= 40  # the issue: a script of at most 40 lines


@pytest.mark.slow
def test_two_processes_draw_the_same_batches_and_hold_the_same_weights(tmp_path):
    """``accelerate launch`` with 2 processes (gloo, 127.0.0.1): process 0 decides, both draw alike."""
    import os

    from conftest import free_port

    script = Path(__file__).parent / "trl_two_processes.py"
    accelerate = Path(sys.executable).with_name("accelerate")
    done = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
                           "--main_process_port", str(free_port()), str(script), str(tmp_path)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["processes"] == 2 and ranks[0]["updates"] == 4
    assert ranks[0]["weights"] == ranks[1]["weights"] and ranks[0]["drawn"] == ranks[1]["drawn"]
    assert ranks[0]["weights"][-1]["coin"] > ranks[0]["weights"][-1]["never"]  # rewards gathered from both
