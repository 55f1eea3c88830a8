"""teachgym's teachers inside trainers that researchers already use (``teachgym.integrations.trl``)."""
