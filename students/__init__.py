"""Built-in students (installed as ``teachgym.students``)."""
