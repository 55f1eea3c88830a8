"""``teachgym.integrations.verl``: the teacher as verl's curriculum sampler, against the real verl classes.

verl 0.7 needs ``numpy < 2``, so it lives in its own virtual environment: ``make test-verl`` builds it and runs
this file (CI does, with ``TEACHGYM_REQUIRE_VERL=1``, which turns the skip below into a failure). Batches are
built by hand, as verl's trainer builds them after a step; no GPU, no Ray cluster.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("TEACHGYM_REQUIRE_VERL"):
    import verl  # noqa: F401  (CI's verl environment: a missing verl is a failure, not a skip)
else:
    pytest.importorskip("verl", reason="verl lives in its own environment: make test-verl")

SKILLS = ["coin", "always", "never"]


def _dataset(tmp_path, extra_info: bool = False):
    """A real verl ``RLHFDataset`` read from a parquet file, 20 rows per skill."""
    import datasets
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from teachgym.students.hf import byte_tokenizer

    rows = [{"prompt": [{"role": "user", "content": f"{s} {i}"}], "data_source": s,
             "extra_info": {"skill": s.upper(), "index": i}} for i in range(20) for s in SKILLS]
    path = str(tmp_path / "train.parquet")
    datasets.Dataset.from_list(rows).to_parquet(path)
    config = OmegaConf.create({"prompt_key": "prompt", "filter_overlong_prompts": False,
                               "cache_dir": str(tmp_path / "cache")})
    return RLHFDataset(data_files=[path], tokenizer=byte_tokenizer(), config=config)


def _data_config(**sampler):
    from omegaconf import OmegaConf

    return OmegaConf.create({"sampler": {"class_path": "pkg://teachgym.integrations.verl",
                                         "class_name": "TeacherSampler", **sampler},
                             "dataloader_num_workers": 0, "shuffle": True, "seed": 0})


def _batch(skills_per_prompt, scores, n=4):
    """A step's ``DataProto`` as verl's trainer has it after scoring: ``n`` responses per prompt."""
    import torch
    from verl import DataProto

    skills = np.array([s for s in skills_per_prompt for _ in range(n)], dtype=object)
    uids = np.array([f"p{i}" for i in range(len(skills_per_prompt)) for _ in range(n)], dtype=object)
    token_scores = torch.zeros(len(skills), 5)
    token_scores[:, -1] = torch.tensor(scores, dtype=torch.float32)  # the score sits on the last token
    return DataProto.from_dict(tensors={"token_level_scores": token_scores},
                               non_tensors={"data_source": skills, "uid": uids})


def test_verl_builds_it_from_its_config_and_its_data_loader_draws_from_it(tmp_path):
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.experimental.dataset.sampler import AbstractCurriculumSampler
    from verl.trainer.main_ppo import create_rl_sampler
    from verl.utils.dataset.rl_dataset import collate_fn

    from teachgym.integrations.verl import TeacherSampler

    data = _dataset(tmp_path)
    sampler = create_rl_sampler(_data_config(), data)  # verl's own factory, as main_ppo calls it
    assert isinstance(sampler, TeacherSampler) and isinstance(sampler, AbstractCurriculumSampler)
    assert sampler.teacher.skill_names == SKILLS and len(sampler) == 60
    loader = StatefulDataLoader(data, batch_size=6, num_workers=0, drop_last=True, collate_fn=collate_fn,
                                sampler=sampler)
    first = next(iter(loader))
    assert len(first["data_source"]) == 6 and set(first["data_source"]) <= set(SKILLS)


def test_update_reads_a_steps_batch_and_steers_the_next_draws(tmp_path):
    from verl.trainer.main_ppo import create_rl_sampler

    sampler = create_rl_sampler(_data_config(teacher="learnability"), _dataset(tmp_path))
    # coin: half of each prompt's responses score 1 (learnable); always: all 1; never: all 0
    sampler.update(_batch(["coin", "always", "never"], [1, 0, 1, 0] + [1] * 4 + [0] * 4))
    w = sampler.teacher.weights
    assert w["coin"] > 0.5 and w["always"] == pytest.approx(w["never"])
    skill_of = {int(i): s for s, rows in sampler.rows.items() for i in rows}
    drawn = [skill_of[i] for i in sampler]  # one epoch: as many draws as rows
    assert len(drawn) == 60 and drawn.count("coin") > drawn.count("always") + drawn.count("never")
    profile = sampler.teacher.history[-1].profile
    assert profile["coin"].accuracy == 0.5 and profile["always"].accuracy == 1.0 and profile["never"].n == 4


def test_a_dotted_skill_key_and_the_state_through_a_checkpoint(tmp_path):
    from verl.trainer.main_ppo import create_rl_sampler

    data = _dataset(tmp_path)
    sampler = create_rl_sampler(_data_config(skill_key="extra_info.skill", teacher="missing-skill"), data)
    assert sampler.teacher.skill_names == [s.upper() for s in SKILLS]
    batch = _batch(SKILLS, [1, 0, 1, 0] + [1] * 4 + [0] * 4)
    batch.non_tensor_batch["extra_info"] = np.array([{"skill": s.upper()} for s in batch.non_tensor_batch[
        "data_source"]], dtype=object)
    sampler.update(batch)
    saved = sampler.state_dict()
    again = create_rl_sampler(_data_config(skill_key="extra_info.skill", teacher="missing-skill"), data)
    again.load_state_dict(saved)
    assert again.teacher.weights == sampler.teacher.weights and again.teacher.history == sampler.teacher.history
    a, b = iter(sampler), iter(again)
    assert [next(a) for _ in range(20)] == [next(b) for _ in range(20)]  # the same draws after a restart


def test_bad_config_is_named(tmp_path):
    from verl.trainer.main_ppo import create_rl_sampler

    from teachgym.config import ConfigError
    from teachgym.registry import RegistryError

    data = _dataset(tmp_path)
    with pytest.raises(ConfigError, match=r"skill_key='topic'.*no such field"):
        create_rl_sampler(_data_config(skill_key="topic"), data)
    with pytest.raises(ConfigError, match=r"unknown keys \['teachr'\]"):
        create_rl_sampler(_data_config(teachr="uniform"), data)
    with pytest.raises(RegistryError, match="learnability"):
        create_rl_sampler(_data_config(teacher="learnabilty"), data)
