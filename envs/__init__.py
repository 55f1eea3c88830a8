"""Built-in teacher environments (installed as ``teachgym.envs``)."""
