"""The cost of a teachgym teacher inside a TRL GRPO run: the lazy sampler and the teacher's callback, per step.

Three ``trl.GRPOTrainer`` runs of the same tiny student (random weights, byte tokenizer, no download) on four
skills: TRL's own ``RepeatSampler``, ``teach(trainer, "uniform")`` and ``teach(trainer, "learnability")``
(:mod:`teachgym.integrations.trl`), alternated ``--repeats`` times. Per model shape it prints and writes:

- the median optimizer-step time of each (TRL's ``step_time`` log, the first steps left out as warm-up), and the
  ratio of uniform's to TRL's: noisy on a shared machine, so read it with the next column;
- the time spent in teachgym's code per step (the sampler's draws and the callback: statistics, the teacher's
  update, the logs), measured around those calls, as a share of the step: the figure the target (<= 1% of a
  step) is about.

    python benchmarks/trl_sampler.py             # writes benchmarks/results/trl_sampler.{json,md}

Rows are keyed by the shapes, the settings, the source of the modules measured and their imports, the packages
and the CPU; a row whose key matches is reused, not rerun (``--force`` reruns).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from teachgym.benchmarking import keyed_rows, script_provenance  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHAPES = {"tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2},
          "small": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4}}
SETTINGS = {"steps": 24, "warmup": 4, "batch": 16, "num_generations": 4, "max_completion_length": 8}
ROOTS = ["teachgym.integrations.trl"]
SKILLS = ["add", "max", "first", "mod"]


def _key(shape: dict[str, Any], repeats: int) -> dict[str, Any]:
    """A row's key (:func:`teachgym.benchmarking.script_provenance`): the shape and settings, the sources of the
    modules measured and their imports, the packages and the CPU."""
    return script_provenance({"shape": shape, "settings": SETTINGS, "repeats": repeats}, roots=ROOTS)


def _trainer(shape: dict[str, Any], out: str) -> Any:
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from teachgym.students.hf import byte_tokenizer

    def correct(completions, answer, **kwargs):
        return [float(c.strip().startswith(a)) for c, a in zip(completions, answer, strict=True)]

    torch.manual_seed(0)
    tok = byte_tokenizer()
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), num_attention_heads=4, pad_token_id=0, **shape))
    rows = Dataset.from_list([{"prompt": f"{s} {i % 10} {i // 10 % 10} =", "answer": str(i % 10), "skill": s}
                              for i in range(400) for s in SKILLS])
    args = GRPOConfig(output_dir=out, max_steps=SETTINGS["steps"], per_device_train_batch_size=SETTINGS["batch"],
                      num_generations=SETTINGS["num_generations"],
                      max_completion_length=SETTINGS["max_completion_length"], logging_steps=1, report_to="none",
                      use_cpu=True, disable_tqdm=True, save_strategy="no", seed=0)
    return GRPOTrainer(model=model, processing_class=tok, reward_funcs=[correct], train_dataset=rows, args=args)


def _timed(obj: Any, name: str, spent: list[float]) -> None:
    """Add the wall time of every call of ``obj.<name>`` to ``spent[0]``."""
    inner = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    setattr(obj, name, wrapper)


def run_once(shape: dict[str, Any], taught: str | None) -> dict[str, float]:
    """One run (``taught``: the teacher's policy, None for TRL's sampler): the median step time after warm-up, and
    teachgym's seconds per step."""
    from teachgym.integrations.trl import teach

    with tempfile.TemporaryDirectory() as out:
        trainer = _trainer(shape, out)
        spent = [0.0]
        if taught:
            callback = teach(trainer, taught, skill_column="skill")
            _timed(callback, "on_step_end", spent)
            _timed(callback, "on_log", spent)
            _timed(callback.sampler, "_draw", spent)
            _timed(trainer.reward_funcs[0], "record", spent)
        params = trainer.model.num_parameters()
        trainer.train()
        times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h][SETTINGS["warmup"]:]
    return {"step_s": statistics.median(times), "ours_s": spent[0] / SETTINGS["steps"], "params": params}


def measure(shape: dict[str, Any], repeats: int) -> dict[str, Any]:
    """TRL's sampler, the ``uniform`` teacher and ``learnability``, alternated ``repeats`` times. The step-time
    ratio is uniform's over TRL's: the same mixture in expectation, so only the machinery differs (learnability
    changes the data, and with it the completions' lengths and the step time)."""
    runs: dict[str | None, list[dict[str, float]]] = {None: [], "uniform": [], "learnability": []}
    for _ in range(repeats):
        for taught, found in runs.items():
            found.append(run_once(shape, taught))

    def median(taught: str | None, key: str) -> float:
        return statistics.median(r[key] for r in runs[taught])

    trl_step, uniform_step = median(None, "step_s"), median("uniform", "step_s")
    return {"params": runs[None][0]["params"], "trl_step_ms": 1000 * trl_step, "teacher_step_ms": 1000 * uniform_step,
            "ratio": uniform_step / trl_step, "teachgym_ms": 1000 * median("uniform", "ours_s"),
            "teachgym_share": median("uniform", "ours_s") / uniform_step,
            "learnability_step_ms": 1000 * median("learnability", "step_s"),
            "learnability_ms": 1000 * median("learnability", "ours_s"),
            "learnability_share": median("learnability", "ours_s") / median("learnability", "step_s")}


def report(rows: list[dict[str, Any]]) -> str:
    p = rows[0]["provenance"]
    pk = p["packages"]
    lines = ["# A teachgym teacher inside a TRL GRPO run: cost per optimizer step", "",
             f"Generated by `python benchmarks/trl_sampler.py` from `trl_sampler.json` (commit {p['commit']}; "
             f"torch {pk['torch']}, transformers {pk['transformers']}, trl {pk['trl']}, cpu {pk['cpu']}; "
             f"{p['config']['repeats']} alternated runs of {SETTINGS['steps']} steps each, the first "
             f"{SETTINGS['warmup']} left out; {SETTINGS['batch']} completions per step, "
             f"{SETTINGS['num_generations']} per prompt, "
             f"{SETTINGS['max_completion_length']} tokens at most). CPU figures: a GPU step is shorter, "
             "teachgym's part is not (it runs on the CPU).", "",
             "| student | step, TRL's sampler (ms) | step, `uniform` teacher (ms) | ratio | teachgym's code per "
             "step, uniform (ms) | share | step, `learnability` (ms) | teachgym's code, learnability (ms) | share |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['shape_name']} ({r['params'] / 1e6:.1f}M parameters) | {r['trl_step_ms']:.1f} | "
                     f"{r['teacher_step_ms']:.1f} | "
                     f"{r['ratio']:.3f} | {r['teachgym_ms']:.2f} | {100 * r['teachgym_share']:.2f}% | "
                     f"{r['learnability_step_ms']:.1f} | {r['learnability_ms']:.2f} | "
                     f"{100 * r['learnability_share']:.2f}% |")
    lines += ["", "The ratio compares the median steps of TRL's sampler and of the `uniform` teacher (the same "
              "mixture in expectation: only the machinery differs) on a shared machine, whose noise is a few "
              "percent. The shares are measured inside the teacher's runs: the sampler's draws, the watched "
              "reward's bookkeeping and the callback (statistics, `Teacher.update`, logs). `learnability` changes "
              "the data (hence the completions and the step time); its step is shown, not compared."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--force", action="store_true", help="rerun rows whose key matches")
    ap.add_argument("--out", default=str(RESULTS), help="the folder of trl_sampler.{json,md}")
    a = ap.parse_args()
    out = Path(a.out)
    rows = keyed_rows(out / "trl_sampler.json", {name: _key(shape, a.repeats) for name, shape in SHAPES.items()},
                      lambda name: measure(SHAPES[name], a.repeats), a.force)
    text = report(rows)
    (out / "trl_sampler.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
