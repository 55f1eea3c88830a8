"""MLflow tracking, in layers: what is written (``schema``), where (``store``), how (``writer``,
``artifacts``), and the read side (``runs``). :class:`NullTracker` stands in when MLflow is off.

Import from the module that owns a name (``teachgym.tracking.store.resolve_tracking_uri``); this package
module imports none of them, so that importing one layer never drags in another.
"""
