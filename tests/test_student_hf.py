"""The HF student on a tiny Llama built from a config (never downloaded)."""

import math

import pytest

from teachgym.checks import check_student
from teachgym.students.hf import HFStudent, byte_tokenizer

from conftest import TINY

ROWS = [
    {"prompt": "12+34=", "completion": "46"},
    {"prompt": "9+1=", "completion": "10"},
    {"prompt": "123+456=", "completion": "579"},
    {"prompt": "é+ü=", "completion": "✓"},
]


def _student(**kw):
    return HFStudent(model="tiny", tiny=TINY, learning_rate=1e-2, batch_size=4, epochs=8, seed=0, **kw)


def test_byte_tokenizer_round_trips_any_text():
    tok = byte_tokenizer()
    for text in ["47+38=85", "héllo wörld ✓ 日本", "tabs\tand\nnewlines"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok) == 259 and tok.eos_token == "</s>" and tok.pad_token_id == 0


def test_protocol_checker_and_model_path_route(tmp_path):
    student = _student()
    assert student.device == "cpu" and student.precision == "fp32"  # bf16 stays off on a CPU
    check_student(student, ROWS, str(tmp_path / "saved"), load=lambda p: HFStudent(model=p))
    assert (tmp_path / "saved" / "config.json").is_file() and (tmp_path / "saved" / "tokenizer.json").is_file()


def test_training_continues_from_current_weights():
    student = _student()
    from datasets import Dataset

    data = Dataset.from_list(ROWS)
    first = student.train(data)
    second = student.train(data)
    assert first.steps == second.steps == 8
    assert second.train_loss < first.train_loss  # round 2 starts where round 1 ended


def test_loss_masks_the_prompt():
    student = _student()
    a = student.loss(["12+34="], ["46"])[0]
    b = student.loss(["99+99+12+34="], ["46"])[0]
    assert math.isfinite(a) and a != b  # the prompt conditions the completion...
    # ...but only completion tokens (+ EOS) are scored: the mean is over 3 tokens either way.
    assert 0 < a < 20 and 0 < b < 20


def test_lora_student_trains_and_saves_a_plain_model(tmp_path):
    pytest.importorskip("peft")
    student = _student(lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    total = sum(p.numel() for p in student.model.parameters())
    assert student.num_parameters() < total  # only the adapters train
    check_student(student, ROWS[:2], str(tmp_path / "lora"), load=lambda p: HFStudent(model=p))


def test_lora_round_state_is_the_adapters_and_restores_exactly(tmp_path):
    pytest.importorskip("peft")
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    tiny = {**TINY, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2}
    make = lambda: HFStudent(model="tiny", tiny=tiny, lora=lora, learning_rate=1e-2, batch_size=4, epochs=8)  # noqa: E731
    student = make()
    # save -> a fresh student of the same config -> load: the same losses, and the same next round of training
    check_student(student, ROWS, str(tmp_path / "lora"), load=lambda p: HFStudent(model=p), make=make)
    student.save_state(str(tmp_path / "state"))
    full = HFStudent(model="tiny", tiny=tiny, batch_size=4)
    full.save_state(str(tmp_path / "full"))
    lean, whole = ((tmp_path / d / "model.safetensors").stat().st_size for d in ("state", "full"))
    assert lean < 0.2 * whole  # the adapters, not the base

    other = HFStudent(model="tiny", tiny=tiny, lora=lora, seed=1)  # another base (its weights seeded differently)
    with pytest.raises(ValueError, match="another base model"):
        other.load_state(str(tmp_path / "state"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="LlamaConfig does not know"):
        HFStudent(model="tiny", tiny={"hiden_size": 8})
    with pytest.raises(ValueError, match="precision"):
        HFStudent(model="tiny", tiny=TINY, precision="fp8")


def test_a_deep_copy_trains_independently_of_the_original():
    """SFTTrainer patches model.forward with a closure over the original model; a copy must not use it."""
    import copy

    from datasets import Dataset

    student = _student()
    data = Dataset.from_list(ROWS)
    student.train(data)
    before = student.loss([r["prompt"] for r in ROWS], [r["completion"] for r in ROWS])
    twin = copy.deepcopy(student)
    twin.train(data)
    prompts, completions = [r["prompt"] for r in ROWS], [r["completion"] for r in ROWS]
    assert student.loss(prompts, completions) == before  # the original is untouched
    assert twin.loss(prompts, completions) != before  # and the copy really learned
    assert "forward" not in student.model.__dict__
