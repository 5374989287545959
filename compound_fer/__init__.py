"""compound_fer: continual few-shot learning of compound facial expressions.

Light on import: heavy libraries (torch, avalanche, grad-cam) load in the modules that need them.
"""

import os as _os

__version__ = "0.1.0"

# Idle OpenMP workers sleep instead of spinning, so a busy neighbour process does not slow our steps 10-30x
# (docs/reliability.md). Read when torch loads OpenMP, hence here; an explicit OMP_WAIT_POLICY wins, and
# COMPOUND_FER_OMP_WAIT_POLICY=default leaves OpenMP's own default.
if _os.environ.get("COMPOUND_FER_OMP_WAIT_POLICY", "").lower() != "default":
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def __getattr__(name: str):
    """``compound_fer.predict`` and ``compound_fer.Prediction`` (:mod:`compound_fer.prediction`), loaded on
    first use so that ``import compound_fer`` stays light."""
    if name in ("predict", "Prediction"):
        from importlib import import_module

        return getattr(import_module("compound_fer.prediction"), name)
    raise AttributeError(f"module 'compound_fer' has no attribute {name!r}")
