"""A Hugging Face causal LM student, trained with TRL's ``SFTTrainer``.

``model`` is either ``"tiny"`` — a small Llama-architecture model built from a config, with a
byte-level tokenizer built locally (no download; it covers any UTF-8 text) — or a local directory /
hub name loaded with ``from_pretrained``, or a saved student: a ``teachgym run`` output folder or an
MLflow student checkpoint (see :func:`resolve_model`). ``lora`` wraps the model with peft.

Each ``train()`` call builds a fresh ``SFTTrainer`` on the current weights, so training continues
round after round; the optimizer state is reset each round (the data distribution changes anyway).
Rows are ``prompt``/``completion`` pairs, for which TRL computes the loss on the completion only
and appends the EOS token. Generation is batched greedy decoding with left padding.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teachgym.options import options_from
from teachgym.students._hf_parts import _stop_check, load_tensors, save_tensors, token_batches
from teachgym.students._trl_private import drop_forward_patch
from teachgym.tracking.store import download, run_is_active
from teachgym.types import TrainReport

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

#: The built-in tiny configuration (Llama architecture); override any key with ``tiny: {...}``.
TINY_DEFAULTS: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128,
    "tie_word_embeddings": True,
}


def byte_tokenizer() -> Any:
    """A byte-level fast tokenizer built in memory: 256 byte tokens plus ``<pad>``, ``<s>``, ``</s>``.

    Every UTF-8 string round-trips, so any env's text (or a user's own data) is covered.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def resolve_model(model: str) -> str:
    """Where to load a saved student from: the directory itself, or the model inside what teachgym wrote.

    Accepts a model directory or hub name (returned as is), the output folder of a ``teachgym run``
    (its ``student/``), a round state folder, or an MLflow student checkpoint (``models:/<id>``,
    ``runs:/<run>/<path>``, or a downloaded ``MLmodel`` folder: the student saved inside it).
    """
    if model.startswith(("models:/", "runs:/")):
        model = download(model)
    if not os.path.isdir(model):
        return model  # a hub name (or a path that does not exist: from_pretrained says so)
    for inner in ("student", os.path.join("artifacts", "student")):
        candidate = os.path.join(model, inner)
        if not os.path.exists(os.path.join(model, "config.json")) and os.path.isdir(candidate):
            return resolve_model(candidate)
    return model


def _device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ModelOptions:
    """Which model a Hugging Face student is, and where it runs (shared by ``hf`` and ``grpo``)."""

    model: str = field(default="tiny", metadata=_help(
        '``"tiny"`` for the built-in configuration, else a local directory or hub name, a ``teachgym run`` '
        "output folder or an MLflow student checkpoint (``models:/<id>``)"))
    tiny: dict[str, Any] | None = field(default=None, metadata=_help(
        "Overrides of :data:`TINY_DEFAULTS` (only with ``model='tiny'``)"))
    lora: dict[str, Any] | None = field(default=None, metadata=_help(
        "peft ``LoraConfig`` kwargs (e.g. ``{r: 8, target_modules: [q_proj, v_proj]}``); needs "
        "``pip install 'teachgym[lora]'``"))
    precision: str = field(default="auto", metadata=_help(
        "``auto`` (bf16 on a GPU that supports it, else fp32), ``fp32``, ``bf16`` or ``fp16``"))
    device: str = field(default="auto", metadata=_help("``auto``, ``cpu`` or ``cuda``"))
    eval_batch_tokens: int = field(default=32768, metadata=_help(
        "Most tokens in one evaluation batch (rows × the longest row, new tokens included): fewer rows per batch "
        "for long prompts, so memory stays bounded whatever the prompt lengths"))

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if self.tiny and self.model != "tiny":
            raise ValueError("student.tiny only applies with student.model=tiny")


@dataclass
class HFOptions(ModelOptions):
    """The ``hf`` student's options (its config section, besides ``name``)."""

    learning_rate: float = field(default=1e-3, metadata=_help("SFT learning rate (per round; the schedule restarts)"))
    batch_size: int = field(default=32, metadata=_help("Per-device train batch size"))
    epochs: float = field(default=1.0, metadata=_help("Passes over each round's data"))
    lr_scheduler: str = field(default="constant", metadata=_help(
        "transformers scheduler name (``constant``, ``cosine``, ``linear``, ``warmup_stable_decay``, ...)"))
    warmup_steps: int = field(default=0, metadata=_help("Warm-up steps at the start of each round"))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay"))
    max_length: int = field(default=128, metadata=_help("Longest training sequence in tokens; longer rows are cut"))
    sft_args: dict[str, Any] | None = field(default=None, metadata=_help(
        "Extra ``trl.SFTConfig`` fields, passed through as they are"))


class HFStudent:
    """A causal LM (built-in tiny Llama, a local path or a hub name) trained with TRL's SFTTrainer.

    Built from :class:`HFOptions` (``HFStudent(HFOptions(...))``) or from their fields as keywords
    (``HFStudent(model="tiny", batch_size=8)``), which is how a config's ``student:`` section builds it.
    """

    Options = HFOptions

    def __init__(self, options: HFOptions | None = None, *, seed: int = 0, **kwargs: Any) -> None:
        """Build or load the model; ``seed`` seeds the tiny model's initial weights and the trainer's shuffling."""
        opts = options if options is not None else options_from(HFOptions, kwargs, "student hf")
        self.options = opts
        self._load(opts, seed)
        self.train_args = {
            "learning_rate": opts.learning_rate,
            "per_device_train_batch_size": opts.batch_size,
            "num_train_epochs": opts.epochs,
            "lr_scheduler_type": opts.lr_scheduler,
            "warmup_steps": opts.warmup_steps,
            "weight_decay": opts.weight_decay,
            "max_length": opts.max_length,
            **(opts.sft_args or {}),
        }

    def _load(self, opts: ModelOptions, seed: int) -> None:
        """The model and tokenizer ``opts`` name, on their device and in their precision."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

        self.device = _device(opts.device)
        self.seed = seed
        precision = opts.precision
        if precision == "auto":
            precision = "bf16" if self.device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        self.precision = precision
        self.rounds_trained = 0
        self.model_name = model = opts.model
        if model == "tiny":
            unknown = set(opts.tiny or {}) - set(LlamaConfig().to_dict())
            if unknown:
                raise ValueError(f"student.tiny has keys that LlamaConfig does not know: {sorted(unknown)}")
            self.tokenizer = byte_tokenizer()
            torch.manual_seed(seed)
            config = LlamaConfig(
                vocab_size=len(self.tokenizer),
                pad_token_id=self.tokenizer.pad_token_id,
                bos_token_id=self.tokenizer.bos_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                **{**TINY_DEFAULTS, **(opts.tiny or {})},
            )
            self.model = LlamaForCausalLM(config)
        else:
            model = resolve_model(model)
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model)
        if self.tokenizer.pad_token is None:  # many hub models ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if opts.lora:
            try:
                from peft import LoraConfig, get_peft_model
            except ImportError as e:
                raise ImportError("LoRA needs peft: pip install 'teachgym[lora]'") from e
            self.model = get_peft_model(self.model, LoraConfig(task_type="CAUSAL_LM", **opts.lora))
        self.model.to(self.device)

    # -- training -------------------------------------------------------------------------------
    def train(self, dataset: Dataset) -> TrainReport:
        """One round of SFT on ``dataset`` (``prompt``/``completion``), continuing from the current weights.

        Logs to MLflow through transformers' ``MLflowCallback`` when an MLflow run is active (the
        loop opens the round's child run first), so the trainer's curves land in that round's run.
        """
        from transformers.trainer_callback import PrinterCallback
        from trl import SFTConfig, SFTTrainer

        data = dataset.select_columns(["prompt", "completion"])
        with tempfile.TemporaryDirectory(prefix="teachgym-sft-") as out:
            steps = len(data) // self.train_args["per_device_train_batch_size"]
            args = SFTConfig(**self._trainer_args(out, steps), dataset_num_proc=None, **self.train_args)
            trainer = SFTTrainer(model=self.model, args=args, train_dataset=data, processing_class=self.tokenizer)
            trainer.remove_callback(PrinterCallback)  # the loop prints its own line per round
            trainer.add_callback(_stop_check())
            start = time.perf_counter()
            result = trainer.train()
            runtime = time.perf_counter() - start
        self.model = trainer.model
        drop_forward_patch(self.model)
        self.rounds_trained += 1
        return TrainReport(
            steps=int(result.global_step),
            train_loss=float(result.training_loss),
            runtime_s=runtime,
            metrics={k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))},
        )

    def _trainer_args(self, output_dir: str, steps: int) -> dict[str, Any]:
        """The TRL config fields every round's trainer shares (SFT here, GRPO in ``students/grpo.py``).

        Logs to MLflow only when a run is active: the loop opens the round's child run first.
        """
        report_to = "mlflow" if run_is_active() else "none"
        return {
            "output_dir": output_dir,
            "bf16": self.precision == "bf16",
            "fp16": self.precision == "fp16",
            "use_cpu": self.device == "cpu",
            "report_to": report_to,
            "save_strategy": "no",
            "logging_steps": max(1, min(50, steps // 4)),
            "disable_tqdm": True,
            "seed": self.seed + self.rounds_trained,
            "dataloader_num_workers": 0,
        }

    # -- what fits ------------------------------------------------------------------------------
    def token_lengths(self, texts: Sequence[str], special_tokens: bool = True) -> list[int]:
        """Each text's length in this student's tokens; ``special_tokens``: as a prompt (e.g. with a BOS, as training
        adds them), else as a completion."""
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=special_tokens)["input_ids"]]

    def limits(self) -> dict[str, tuple[int, str]]:
        """What fits (:class:`teachgym.protocols.MeasuresTokens`): the model's positions and the training length."""
        context = getattr(self.model.config, "max_position_embeddings", None)
        where = "student.tiny.max_position_embeddings" if self.options.model == "tiny" else \
            f"{self.options.model}'s max_position_embeddings"
        out = {}
        if "max_length" in self.train_args:  # SFT
            out["train"] = (int(self.train_args["max_length"]), "student.max_length")
        if "max_completion_length" in self.train_args:  # GRPO's rollouts
            out["completion"] = (int(self.train_args["max_completion_length"]), "student.max_completion_length")
        if context:
            out["context"] = (int(context), where)
        return out

    # -- inference ------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 16, batch_size: int = 256) -> list[str]:
        """Greedy answers, batched with left padding; the prompt and special tokens are stripped."""
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"  # generation continues from the right edge of every row
        self.model.eval()
        out: list[str] = []
        spans = token_batches(self.token_lengths(prompts), batch_size, self.options.eval_batch_tokens, max_new_tokens)
        for i, end in spans:
            # Special tokens as TRL adds them when it tokenizes a prompt for training (e.g. a BOS).
            enc = tok(list(prompts[i:end]), return_tensors="pt", padding=True)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.no_grad():
                ids = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
            out += tok.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        tok.padding_side = "right"
        return out

    def loss(self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 256) -> list[float]:
        """Teacher-forced NLL per completion token (EOS included, as in training), one value per row."""
        import torch

        tok = self.tokenizer
        self.model.eval()
        losses: list[float] = []
        lengths = [p + c for p, c in zip(self.token_lengths(prompts), self.token_lengths(completions, False))]
        for i, end in token_batches(lengths, batch_size, self.options.eval_batch_tokens, 1):
            p_ids = tok(list(prompts[i:end]))["input_ids"]
            c_ids = tok(list(completions[i:end]), add_special_tokens=False)["input_ids"]
            seqs = [p + c + [tok.eos_token_id] for p, c in zip(p_ids, c_ids)]
            width = max(map(len, seqs))
            ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
            attn = torch.zeros_like(ids)
            labels = torch.full_like(ids, -100)
            for j, (p, s) in enumerate(zip(p_ids, seqs)):
                ids[j, : len(s)] = torch.tensor(s)
                attn[j, : len(s)] = 1
                labels[j, len(p) : len(s)] = ids[j, len(p) : len(s)]
            ids, attn, labels = ids.to(self.device), attn.to(self.device), labels.to(self.device)
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=attn).logits.float()
            # Position t predicts token t+1.
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
            )
            counts = (labels[:, 1:] != -100).sum(dim=1).clamp(min=1)
            losses += (nll.sum(dim=1) / counts).tolist()
        return [x if math.isfinite(x) else float("inf") for x in losses]

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Save model and tokenizer so that ``HFStudent(model=path)`` loads them back.

        With LoRA the adapters are merged into a copy of the base weights first, so the directory is
        a plain transformers model.
        """
        os.makedirs(path, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        from transformers.utils import logging as hf_logging

        was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # one tiny shard: a progress bar is noise
        try:
            model.save_pretrained(path)
        finally:
            if was_enabled:
                hf_logging.enable_progress_bar()
        self.tokenizer.save_pretrained(path)

    def save_state(self, path: str) -> None:
        """The exact state for resuming an experiment, and the rounds trained (which seed the next round's trainer).

        A full fine-tune writes every weight (4 bytes a parameter in fp32, 2 in bf16: 2 GB a round for a
        0.5B model in fp32). With LoRA only the trainable tensors are written (the adapters, and any
        ``modules_to_save``) with a fingerprint of the frozen base: the base is rebuilt from the config
        (the same ``model``), and :meth:`load_state` refuses a base whose fingerprint differs. The
        optimizer needs nothing: each round starts a fresh one. Unlike :meth:`save`, nothing is merged
        or converted, so :meth:`load_state` gives back the same tensors bit for bit.
        """
        import json

        os.makedirs(path, exist_ok=True)
        names = self._state_names()
        save_tensors(self.model, os.path.join(path, "model.safetensors"), names)
        self.tokenizer.save_pretrained(path)
        info: dict[str, Any] = {"rounds_trained": self.rounds_trained}
        if names is not None:
            info["base"] = self._base_fingerprint()
        with open(os.path.join(path, "student_state.json"), "w") as f:
            json.dump(info, f)

    def load_state(self, path: str) -> None:
        """Restore what :meth:`save_state` wrote into this (identically configured) student."""
        import json

        with open(os.path.join(path, "student_state.json")) as f:
            info = json.load(f)
        if "base" in info and info["base"] != self._base_fingerprint():
            raise ValueError(
                f"the saved student in {path} holds LoRA adapters for another base model than this student's "
                f"{self.model_name!r} (its frozen weights differ); resume with the base it was trained on"
            )
        missing, unexpected = load_tensors(self.model, os.path.join(path, "model.safetensors"), str(self.device))
        if "base" in info:  # adapters only: the frozen base is not in the file
            missing = [k for k in missing if k in (self._state_names() or ())]
        if missing or unexpected:
            raise ValueError(
                f"the saved student in {path} does not fit this model (missing {list(missing)[:5]}, unexpected "
                f"{list(unexpected)[:5]}); was the student config changed?"
            )
        self.rounds_trained = int(info["rounds_trained"])

    def _state_names(self) -> set[str] | None:
        """With LoRA, the state-dict names of the trainable tensors (what the round state keeps); else None."""
        if not hasattr(self.model, "peft_config"):
            return None
        trainable = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return {k for k in self.model.state_dict() if k in trainable}

    def _base_fingerprint(self) -> str:
        """sha256 over the frozen tensors' names, shapes, dtypes and an evenly strided sample of their values.

        Cheap for a 7B base (at most 4,096 values a tensor), and it changes when the base does.
        """
        import hashlib

        import torch

        h = hashlib.sha256()
        with torch.no_grad():
            for name, p in sorted(self.model.named_parameters()):
                if p.requires_grad:
                    continue
                flat = p.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // 4096)].to("cpu", torch.float32)
                h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode() + sample.numpy().tobytes())
        return h.hexdigest()

    def num_parameters(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)
