"""vLLM options (``eval.backend: vllm``, the GRPO student's ``use_vllm``): refused before round 0 where vLLM or a
GPU is missing, with the install hint. Where both exist, ``benchmarks/gpu.py`` runs them end to end."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from teachgym.config import ConfigError, load_config
from teachgym.loop import run_experiment

from conftest import tiny_config

TEACHGYM = str(Path(sys.executable).with_name("teachgym"))
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None and __import__("torch").cuda.is_available(),
    reason="vLLM and a GPU are here: the options run (benchmarks/gpu.py), they are not refused",
)


def _runs(uri: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.parametrize("option,where", [
    ({"eval": {"backend": "vllm"}}, "eval.backend=vllm"),
    ({"student": {"name": "grpo", "model": "tiny", "use_vllm": True, "batch_size": 8, "num_generations": 4}},
     "student.use_vllm"),
])
def test_a_vllm_option_without_vllm_fails_before_round_0_with_the_hint(tmp_path, mlflow_store, option, where):
    cfg = tiny_config(tmp_path)
    for key, value in option.items():
        cfg[key] = {**cfg.get(key, {}), **value} if key != "student" else value
    with pytest.raises(ConfigError, match=rf"{where} needs (vLLM: pip install 'teachgym\[vllm\]'|a CUDA GPU)"):
        run_experiment(load_config(cfg))
    assert not (tmp_path / "out").exists() and not _runs(mlflow_store)  # nothing ran, nothing was logged


def test_the_cli_says_it_in_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(tiny_config(tmp_path)))
    done = subprocess.run([TEACHGYM, "run", str(cfg), "eval.backend=vllm"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "eval.backend=vllm needs" in done.stderr


def test_a_wrong_backend_names_the_choices(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["eval"] = {"backend": "vlm"}
    with pytest.raises(ConfigError, match="eval.backend"):
        load_config(cfg)
