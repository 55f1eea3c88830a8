"""teachgym: a gym for teacher policies that decide what a student language model trains on.

``import teachgym`` is light: it imports no torch, TRL, MLflow or plugin. The names a policy author
needs are here; the rest lives in submodules (``teachgym.loop``, ``teachgym.registry``, ...).
"""

from teachgym.errors import TeachgymError
from teachgym.types import (
    Action,
    Examples,
    Failure,
    HistoryEntry,
    InvalidActionError,
    Mixture,
    Observation,
    Probe,
    ProbeResult,
    Request,
    RolloutStats,
    Skill,
    SkillStats,
    StepObservation,
    Synthesize,
    TrainReport,
)

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Examples",
    "Failure",
    "HistoryEntry",
    "InvalidActionError",
    "Mixture",
    "Observation",
    "Probe",
    "ProbeResult",
    "Request",
    "RolloutStats",
    "Skill",
    "SkillStats",
    "StepObservation",
    "Synthesize",
    "TeachgymError",
    "TrainReport",
    "__version__",
]
