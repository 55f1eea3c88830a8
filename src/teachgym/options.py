"""A plugin's options as one dataclass: a student (or any component) that declares ``Options`` is built from it, or
from its fields as keywords, and its config section is validated against those fields.

:func:`teachgym.config.build_component` reads :func:`options_fields` to check a config section by type and name;
the plugin calls :func:`options_from` when it is given keywords; :func:`teachgym.config.component_keys` says what
a component accepts (the docs' tests and the MLflow model loader ask).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["options_fields", "options_from"]


def options_from(cls: type, kwargs: Mapping[str, Any], owner: str) -> Any:
    """``cls(**kwargs)`` for a plugin's options dataclass, with an unknown keyword named and its near names given.

    Raises:
        ValueError: An unknown keyword (``build_component`` makes it a :class:`ConfigError`), or a value the
            dataclass's own checks refuse.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    for key in kwargs:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"{owner} has no option {key!r}{hint} (options: {', '.join(names)})")
    return cls(**kwargs)


def options_fields(target: Any) -> dict[str, Any]:
    """The fields of a plugin's options dataclass (``target.Options``), as pydantic field definitions."""
    options = getattr(target, "Options", None)
    if not (inspect.isclass(target) and dataclasses.is_dataclass(options)):
        return {}
    hints = typing.get_type_hints(options)
    out = {}
    for f in dataclasses.fields(options):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else ...)
        out[f.name] = (hints.get(f.name, Any), default)
    return out
