"""The one verifiers name teachgym uses that is not in ``verifiers.v1.__all__``, fenced here.

Checked against verifiers 0.4.0 (:data:`CHECKED_AGAINST`); ``tests/test_env_verifiers.py`` imports it from its
module and fails loudly when verifiers moves or renames it. Everything else :mod:`teachgym.envs.verifiers` uses is
``verifiers.v1``'s public API.
"""

from __future__ import annotations

from typing import Any

CHECKED_AGAINST = "0.4.0"


def state_class(task_type: type) -> type:
    """The ``State`` class a task's traces carry (a task may specialise it, e.g. to keep a parsed answer).

    verifiers' own rollout, debug and validate paths build each trace with ``state_cls(type(task))()``; a
    trace built here for scoring must carry the same class, or a reward that reads its own state fields fails.
    """
    from verifiers.v1.state import state_cls

    cls: Any = state_cls(task_type)
    return cls
