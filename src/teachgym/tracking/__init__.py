"""MLflow tracking, in layers: what is written (``schema``), where (``store``), how (``writer``,
``artifacts``), the read side (``runs``), the private MLflow APIs (``mlflow_private``), and the tracker
of an experiment without MLflow (``null``).

Import from the module that owns a name (``teachgym.tracking.store.resolve_tracking_uri``); this package
module imports none of them, so that importing one layer never drags in another.
"""

from teachgym.rounds import Round as RoundLog  # noqa: F401 - round states saved before 0.2 pickled this name
