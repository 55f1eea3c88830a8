"""Student checkpoints as MLflow models (``tracking.checkpoints: best | every``).

Each checkpoint is a pyfunc ``LoggedModel`` named ``student-round-NN``: the student's own saved
directory as an artifact, and the env and student configs to load it again. Its ``acc/mean`` and
``acc/min`` are linked to the model, so the experiment's Models tab ranks the rounds.
``mlflow.pyfunc.load_model(uri).predict(["047+038="])`` answers prompts with the checkpointed student.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc

from teachgym.config import ComponentConfig, build_component, component_keys
from teachgym.registry import resolve


class StudentModel(mlflow.pyfunc.PythonModel):
    """Loads a checkpointed student (any registered student class) and answers prompts with ``generate``."""

    def load_context(self, context: Any) -> None:
        cfg = context.model_config
        env = build_component("envs", "env", ComponentConfig(**cfg["env"]))
        student_cfg = dict(cfg["student"])
        params = component_keys(resolve("students", student_cfg["name"])) or set()
        path = context.artifacts["student"]
        # A student reloads from its saved directory through `model=` (HF) or `checkpoint=` (simulated).
        key = "model" if "model" in params else "checkpoint"
        student_cfg[key] = path
        self.student = build_component("students", "student", ComponentConfig(**student_cfg), env=env)
        self.max_new_tokens = int(cfg.get("max_new_tokens", 16))

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> list[str]:
        if hasattr(model_input, "columns"):  # a DataFrame: the "prompt" column, else the first
            column = "prompt" if "prompt" in model_input.columns else model_input.columns[0]
            prompts = [str(p) for p in model_input[column]]
        elif isinstance(model_input, str):
            prompts = [model_input]
        else:
            prompts = [str(p) for p in model_input]
        return self.student.generate(prompts, max_new_tokens=self.max_new_tokens)
