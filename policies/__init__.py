"""Built-in teacher policies (installed as ``teachgym.policies``); one file per policy."""
