"""compound_fer: continual few-shot learning of compound facial expressions.

Light on import: heavy libraries (torch, avalanche, grad-cam) load in the modules that need them.
"""

__version__ = "0.1.0"
