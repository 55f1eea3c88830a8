"""The private TRL (transformers) names the integrations use on a trainer the user built, in one place, each with
the version it was checked against; ``tests/test_integrations_trl.py`` checks them against the installed TRL.

A second fence beside :mod:`teachgym.students._trl_private` on purpose: that module is in the import closure of
every bench case (the students import it), so a name added there would make every committed LM row stale.

* ``Trainer._get_train_sampler(dataset=None)``: the sampler of the training data loader; the override TRL's
  maintainers point to for changing weights during training (TRL #2801). ``trl.GRPOTrainer`` overrides it with
  its ``RepeatSampler``, whose layout :class:`teachgym.integrations.trl.TeacherSampler` keeps.
"""

from __future__ import annotations

from typing import Any

CHECKED_WITH = {"trl": "1.16.0", "transformers": "5.25.0"}


def set_train_sampler(trainer: Any, sampler: Any) -> None:
    """Make ``trainer`` draw its training rows from ``sampler`` (``_get_train_sampler``, on this trainer only)."""
    trainer._get_train_sampler = lambda *args, **kwargs: sampler
