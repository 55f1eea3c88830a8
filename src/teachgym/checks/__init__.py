"""Behaviour checkers for the extension points, in the spirit of gymnasium's ``utils/env_checker.py``.

Each checker exercises a component the way the loop will and raises :class:`CheckError` with a precise
message when it misbehaves: :func:`check_env`, :func:`check_policy`, :func:`check_student`, and
:func:`check_plugin`, the quick structural check the loop runs on every component it builds. The test
suite runs them on every built-in; run them on your own plugin before a long experiment. The
contracts themselves are in :mod:`teachgym.protocols`.

One module per kind of plugin (:mod:`~teachgym.checks.env`, :mod:`~teachgym.checks.policy`,
:mod:`~teachgym.checks.student`) over the shared helpers of :mod:`~teachgym.checks.common`; import the checkers
from here.
"""

from __future__ import annotations

from teachgym.checks.common import REQUIRED, CheckError, check_plugin
from teachgym.checks.env import check_env
from teachgym.checks.policy import check_policy, make_observation
from teachgym.checks.student import check_student

__all__ = ["REQUIRED", "CheckError", "check_env", "check_plugin", "check_policy", "check_student", "make_observation"]
