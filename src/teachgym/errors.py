"""The root of every error teachgym raises, so a caller can catch them all in one clause::

    try:
        teachgym.run_experiment(config)
    except TeachgymError as e:   # a bad config, an unknown plugin, a teacher's garbage, a lost store, ...
        print(e)

Each error keeps the built-in class it always had as a second base (``ConfigError`` is still a
``ValueError``, ``RegistryError`` a ``LookupError``), so older ``except`` clauses keep working.
:class:`teachgym.interrupts.Interrupted` (SIGTERM/SIGINT) is a stop, not an error: it stays a
``KeyboardInterrupt`` so that no ``except Exception`` swallows it.
"""

from __future__ import annotations

__all__ = ["TeachgymError"]


class TeachgymError(Exception):
    """Base class of teachgym's errors (every one of them is also a subclass of a built-in exception)."""
