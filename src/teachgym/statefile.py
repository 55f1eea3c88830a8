"""The round state's file format: data only, never code.

A round's state used to be a pickle, and ``pickle.load`` runs whatever the file names: anyone who could
write to an output folder on shared storage could make every later ``--resume`` run their code. Here
every file ``--resume`` reads is data:

* ``state.json`` — the loop's carry-over (records, history, the last evaluation, policy state, the LLM
  engine's memory, the rounds MLflow has not confirmed), written by :func:`encode`: JSON, with a small
  tagged form for what JSON lacks (tuples, non-string keys, numpy scalars and arrays) and for teachgym's
  own record types, which are rebuilt only from the whitelist :data:`TYPES` — a name outside it is an error,
  not an import;
* ``rng.npz`` — numpy's and torch's generator states as arrays (``numpy.load(allow_pickle=False)``);
  Python's ``random`` state is plain integers in ``state.json``;
* ``data-N.parquet`` — training sets still to be logged to MLflow, as Arrow tables;
* ``meta.json`` — every file of the round with its size and sha256, written last (:func:`manifest`),
  and checked before anything is read (:func:`verify`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from teachgym.engine import DataReport, SkillCounts
from teachgym.errors import TeachgymError
from teachgym.evaluation import EvalResult
from teachgym.rounds import Round, RoundRecord, RoundState
from teachgym.rows import arrow_table
from teachgym.synthesis import SynthesisLog
from teachgym.types import (
    Examples,
    Failure,
    HistoryEntry,
    Mixture,
    Probe,
    ProbeResult,
    Request,
    RolloutStats,
    Skill,
    SkillStats,
    Synthesize,
    TrainReport,
)

#: The only classes a state file can name; anything else is refused when read.
TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    DataReport, EvalResult, Examples, Failure, HistoryEntry, Mixture, Probe, ProbeResult, Request, RolloutStats,
    Round, RoundRecord, Skill, SkillCounts, SkillStats, Synthesize, SynthesisLog, TrainReport,
)}

META = "meta.json"
STATE_FILE, RNG_FILE = "state.json", "rng.npz"
STATE = "state"  # the folder of an experiment's round states, beside its run.json
LATEST = "LATEST"  # names the newest whole round state, e.g. ``round-03``


class StateFormatError(TeachgymError, ValueError):
    """A state file that does not decode (damaged, or naming something that is not state)."""


_PLAIN = (str, float, int, bool, type(None))  # exact types that JSON keeps as they are (not subclasses)


def encode(obj: Any, tables: dict[str, Any]) -> Any:
    """``obj`` as JSON-ready data; ``datasets.Dataset`` s are put in ``tables`` (name -> dataset) and referenced."""
    if type(obj) in _PLAIN:
        return obj
    if isinstance(obj, np.generic):  # before the subclass test below: np.float64 is a float, kept as np.float64
        return {"__scalar__": obj.dtype.str, "value": obj.item()}
    if isinstance(obj, bool | int | float | str):  # a subclass (an IntEnum, ...): its plain value
        return obj
    if isinstance(obj, np.ndarray):
        return {"__array__": obj.dtype.str, "shape": list(obj.shape), "value": obj.ravel().tolist()}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(x, tables) for x in obj]}
    # Containers keep their plain leaves without a call each: predictions, profiles and metrics are most of a state.
    if isinstance(obj, list):
        return [v if type(v) in _PLAIN else encode(v, tables) for v in obj]
    if isinstance(obj, set | frozenset):
        return {"__set__": [encode(x, tables) for x in sorted(obj, key=repr)]}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: v if type(v) in _PLAIN else encode(v, tables) for k, v in obj.items()}
        return {"__items__": [[encode(k, tables), encode(v, tables)] for k, v in obj.items()]}
    if type(obj).__name__ == "Dataset" and hasattr(obj, "to_parquet"):
        name = f"data-{len(tables)}.parquet"
        tables[name] = obj
        return {"__dataset__": name}
    if dataclasses.is_dataclass(obj) and TYPES.get(type(obj).__name__) is type(obj):
        return {"__type__": type(obj).__name__,
                **{f.name: encode(getattr(obj, f.name), tables) for f in dataclasses.fields(obj)}}
    raise TypeError(f"a round state cannot hold a {type(obj).__module__}.{type(obj).__qualname__}")


def decode(data: Any, folder: Path) -> Any:
    """Undo :func:`encode`; datasets are read from ``folder``."""
    if isinstance(data, list):
        return [decode(x, folder) for x in data]
    if not isinstance(data, dict):
        return data
    if "__type__" in data:
        cls = TYPES.get(data["__type__"])
        if cls is None:
            raise StateFormatError(f"names {data['__type__']!r}, which is not a teachgym state type")
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: decode(v, folder) for k, v in data.items() if k in fields})
    if "__tuple__" in data:
        return tuple(decode(x, folder) for x in data["__tuple__"])
    if "__set__" in data:
        return {decode(x, folder) for x in data["__set__"]}
    if "__items__" in data:
        return {decode(k, folder): decode(v, folder) for k, v in data["__items__"]}
    if "__scalar__" in data:
        return np.dtype(data["__scalar__"]).type(data["value"])
    if "__array__" in data:
        return np.asarray(data["value"], dtype=np.dtype(data["__array__"])).reshape(data["shape"])
    if "__dataset__" in data:
        return read_table(folder / data["__dataset__"])
    return {k: decode(v, folder) for k, v in data.items()}


def write_tables(tables: Mapping[str, Any], folder: Path) -> None:
    """Each dataset of :func:`encode` as a Parquet file in ``folder``."""
    import pyarrow.parquet as pq

    for name, data in tables.items():
        pq.write_table(arrow_table(data), folder / name)


def read_table(path: Path) -> Any:
    """A Parquet file as a ``datasets.Dataset`` (kept in Arrow)."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets.table import InMemoryTable

    return Dataset(InMemoryTable(pq.read_table(path)))


def rng_arrays(rng: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split :func:`teachgym.rng.capture_rngs`' states into JSON (Python's, numpy's scalars) and arrays."""
    plain: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    if "python" in rng:
        version, internal, gauss = rng["python"]
        plain["python"] = [version, list(internal), gauss]
    if "numpy" in rng:
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        plain["numpy"] = [kind, int(pos), int(has_gauss), float(cached)]
        arrays["numpy_keys"] = np.asarray(keys, dtype=np.uint32)
    if "torch" in rng:
        arrays["torch"] = rng["torch"].numpy()
    for i, state in enumerate(rng.get("cuda", [])):
        arrays[f"cuda_{i}"] = state.numpy()
    return plain, arrays


def rng_states(plain: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Undo :func:`rng_arrays`: the states :func:`teachgym.resume.restore_rngs` takes."""
    rng: dict[str, Any] = {}
    if "python" in plain:
        version, internal, gauss = plain["python"]
        rng["python"] = (version, tuple(int(x) for x in internal), gauss)
    if "numpy" in plain:
        kind, pos, has_gauss, cached = plain["numpy"]
        rng["numpy"] = (kind, np.asarray(arrays["numpy_keys"], dtype=np.uint32), pos, has_gauss, cached)
    if "torch" in arrays:
        import torch

        rng["torch"] = torch.from_numpy(np.array(arrays["torch"], dtype=np.uint8))
        cuda = sorted((k for k in arrays if k.startswith("cuda_")), key=lambda k: int(k[5:]))
        if cuda:
            rng["cuda"] = [torch.from_numpy(np.array(arrays[k], dtype=np.uint8)) for k in cuda]
    return rng


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(folder: Path, **info: Any) -> None:
    """Write ``meta.json``: every file under ``folder`` with its size and sha256 (written last, fsynced)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != META):
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": sha256(path)}
    with open(folder / META, "w") as f:
        json.dump({**info, "format": 2, "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def verify(folder: Path) -> list[str]:
    """What is wrong with a round folder, file by file (empty when every file is whole)."""
    meta_path = folder / META
    if not meta_path.exists():
        return [f"{META} is missing (the round was not written whole)"]
    try:
        meta = json.loads(meta_path.read_text())
        files = meta["files"]
    except (ValueError, KeyError, TypeError):
        return [f"{META} is damaged (it does not parse)"]
    problems = []
    for name, want in files.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != want["size"]:
            problems.append(f"{name} is {path.stat().st_size} bytes, {want['size']} were written (truncated?)")
        elif sha256(path) != want["sha256"]:
            problems.append(f"{name} differs from its sha256 (damaged)")
    return problems


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_state(state: RoundState, folder: Path) -> None:
    """The round's carry-over as data: ``state.json`` (+ Parquet tables) and ``rng.npz``."""
    tables: dict[str, Any] = {}
    plain, arrays = rng_arrays(state.rng)
    body = {
        "format": 2, "round": state.round, "used": state.used, "journaled": len(state.records),
        # The next round reads the last evaluation's profile, failures and sub-skills; its predictions table is
        # logged from pending_log, so it is not stored twice.
        "result": encode(_without_predictions(state.result), tables),
        "policy_state": encode(state.policy_state, tables),
        "llm_seen": state.llm_seen, "tracker_best": encode(state.tracker_best, tables),
        "pending_log": encode(state.pending_log, tables), "rng": plain,
    }
    write_tables(tables, folder)
    with open(folder / RNG_FILE, "wb") as f:
        np.savez(f, **arrays)
    write_atomic(folder / STATE_FILE, json.dumps(body).encode())


def _without_predictions(result: Any) -> Any:
    return dataclasses.replace(result, predictions=[]) if dataclasses.is_dataclass(result) else result


def read_state(folder: Path) -> RoundState:
    """Undo :func:`write_state` (records and history come from the journal)."""
    body = json.loads((folder / STATE_FILE).read_text())
    with np.load(folder / RNG_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return RoundState(
        round=int(body["round"]), used=int(body["used"]), records=[], history=[],
        result=decode(body["result"], folder),
        policy_state=decode(body["policy_state"], folder), llm_seen=body["llm_seen"],
        tracker_best=decode(body["tracker_best"], folder),
        rng=rng_states(body["rng"], arrays), journaled=int(body["journaled"]),
        pending_log=decode(body["pending_log"], folder),
    )


def latest_round(run_folder: Path) -> int | None:
    """The round an experiment folder's ``state/LATEST`` names (the newest one written whole), or None."""
    try:
        return int((Path(run_folder) / STATE / LATEST).read_text().strip().removeprefix("round-"))
    except (OSError, ValueError):
        return None
