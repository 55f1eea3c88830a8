"""MLflow tracking, in layers: what is written (``schema``), where (``store``), how (``writer``,
``artifacts``), the read side (``runs``), the private MLflow APIs (``mlflow_private``), and the tracker
of an experiment without MLflow (``null``).

Import from the module that owns a name (``teachgym.tracking.store.resolve_tracking_uri``); this package
module imports nothing, so that importing one layer never drags in another. (Round states pickled before 0.2
name ``teachgym.tracking.RoundLog``: :mod:`teachgym.legacy_state` finds it as :class:`teachgym.rounds.Round`.)
"""
