"""Run by ``accelerate launch`` from ``tests/test_integrations_trl.py``: a GRPO run taught by ``learnability`` in
several processes; each process writes what it drew and the weights it held after each update."""

import json
import sys

from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from teachgym.integrations.trl import teach
from teachgym.students.hf import byte_tokenizer

SKILLS = ["coin", "always", "never"]


def skill_reward(completions, skill, **kwargs):
    return [{"coin": float(i % 2), "always": 1.0, "never": 0.0}[s] for i, s in enumerate(skill)]


class Record(TrainerCallback):
    def __init__(self, callback):
        self.callback, self.weights = callback, []

    def on_step_end(self, args, state, control, **kwargs):
        self.weights.append(dict(self.callback.sampler.weights))


if __name__ == "__main__":
    out = sys.argv[1]
    tok = byte_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, pad_token_id=tok.pad_token_id))
    rows = Dataset.from_list([{"prompt": f"{s} {i} =", "skill": s} for i in range(40) for s in SKILLS])
    args = GRPOConfig(output_dir=out, max_steps=4, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=2, report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no",
                      seed=0)
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=[skill_reward], train_dataset=rows, args=args)
    callback = teach(trainer, "learnability", skill_column="skill")
    record = Record(callback)
    trainer.add_callback(record)  # after teach's callback: it sees the weights of each update
    trainer.train()
    rank = trainer.accelerator.process_index
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"weights": record.weights, "drawn": callback.sampler.drawn, "updates": callback.updates,
                   "processes": trainer.accelerator.num_processes}, f)
