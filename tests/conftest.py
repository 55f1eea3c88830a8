"""Shared fixtures: a temporary MLflow store for every test, tiny components built from configs."""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download anything
warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")

TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
}


@pytest.fixture(autouse=True)
def mlflow_store(tmp_path, monkeypatch):
    """Point MLflow into the test's temp dir (never the working directory's mlflow.db)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()


@pytest.fixture
def small_env():
    from teachgym.envs.arithmetic import ArithmeticEnv

    return ArithmeticEnv(eval_per_skill=8, pool_per_skill=40)


def tiny_config(tmp_path, **loop) -> dict:
    """A whole experiment config small enough for a unit test (seconds on a CPU)."""
    return {
        "env": {"name": "arithmetic", "eval_per_skill": 6, "pool_per_skill": 40},
        "student": {"name": "hf", "model": "tiny", "tiny": TINY, "batch_size": 8, "learning_rate": 3e-3},
        "policy": {"name": "missing-skill"},
        "loop": {"rounds": 2, "examples_per_round": 24, "seed": 0, "output_dir": str(tmp_path / "out"), **loop},
        "tracking": {"enabled": True},
    }


@pytest.fixture(scope="session")
def learned_teacher(tmp_path_factory) -> str:
    """A PPO teacher trained for a few steps against the simulated student (the policy 'learned' loads it)."""
    from stable_baselines3 import PPO

    from teachgym.gym import TeachEnv
    from teachgym.policies.learned import save_teacher

    env = TeachEnv(student="simulated", rounds=4, examples_per_round=2000,
                   env_kwargs={"eval_per_skill": 20, "pool_per_skill": 40})
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    return str(save_teacher(model, tmp_path_factory.mktemp("teacher") / "teacher.zip", env, timesteps=64))


def policy_kwargs(name: str, request) -> dict:
    """Constructor kwargs a built-in policy needs in the tests that build every policy by name."""
    if name == "llm-agent":  # answers that name no real skill: every round ends in the (checked) fallback
        return {"backend": "scripted", "script": ['{"mixture": {"no-such-skill": 1}, "rationale": "x"}', "no JSON"]}
    return {"path": request.getfixturevalue("learned_teacher")} if name == "learned" else {}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    """GET without any proxy from the environment (the servers are on 127.0.0.1)."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as r:
        return r.read()


class Served:
    """A server process started by a test: ``with Served(cmd, port) as proc: ...`` waits for /health, then stops it."""

    def __init__(self, cmd: list[str], port: int, timeout: float = 240.0, env: dict | None = None):
        self.cmd, self.port, self.timeout, self.env = cmd, port, timeout, env
        self.output = ""

    def __enter__(self):
        import subprocess
        import tempfile
        import time

        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, env=self.env)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.cmd} exited with {self.proc.returncode}:\n{self.log.read()[-3000:]}")
            try:
                http_get(f"http://127.0.0.1:{self.port}/health")  # raises until the server answers 200
                return self.proc
            except OSError:
                pass
            time.sleep(1.0)
        self.__exit__(None, None, None)
        raise RuntimeError(f"{self.cmd} did not answer /health within {self.timeout} s:\n{self.output[-3000:]}")

    def __exit__(self, *exc):
        import os
        import signal
        import subprocess

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.seek(0)
        self.output = self.log.read()
        self.log.close()
        return False


def transformers_serve(model_dir: str) -> tuple[Served, str]:
    """``transformers serve`` on a saved model, on a free 127.0.0.1 port: ``(server, base_url)`` for ``with``."""
    import os
    import sys

    pytest.importorskip("openai", reason="transformers serve needs transformers[serving] (in the dev extra)")
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "transformers")
    cmd = [exe, "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    return Served(cmd, port, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"}), f"http://127.0.0.1:{port}/v1"
