"""A plain TRL GRPO script whose skill mixture a teachgym teacher chooses: `python train.py [--model M]`."""
import argparse
import random

from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM
from trl import GRPOConfig, GRPOTrainer

from teachgym.integrations.trl import teach
from teachgym.students.hf import byte_tokenizer

OPS = {"add": lambda a, b: a + b, "max": max, "first": lambda a, b: a, "mod": lambda a, b: (a * b) % 7}


def rows(n: int, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    pick = [(s, rng.randint(0, 9), rng.randint(0, 9)) for s in rng.choices(list(OPS), k=n)]
    return Dataset.from_list([{"prompt": f"{s} {a} {b} =", "answer": str(OPS[s](a, b)), "skill": s}
                              for s, a, b in pick])


def correct(completions, answer, **kwargs):  # the verifier: TRL passes the dataset's columns as keywords
    return [float(c.strip().startswith(a)) for c, a in zip(completions, answer)]


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model"), p.add_argument("--teacher", default="learnability")
    p.add_argument("--steps", type=int, default=8), p.add_argument("--report-to", default="none")
    a = p.parse_args()
    tok = None if a.model else byte_tokenizer()  # no --model: a small random Llama, built here (no download)
    model = a.model or LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                                    num_hidden_layers=2, num_attention_heads=4, pad_token_id=0))
    args = GRPOConfig(output_dir="grpo-out", max_steps=a.steps, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=4, logging_steps=1, report_to=a.report_to, use_cpu=True, disable_tqdm=True)
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=[correct], train_dataset=rows(800), args=args)
    teach(trainer, a.teacher, skill_column="skill")  # the one teachgym line
    trainer.train()
