"""The registered methods' names and one-line summaries, as text: ``run --list-methods`` and a mistyped
method answer from this table without importing torch (the registry itself needs it). A test
(tests/test_rough_edges.py) keeps it equal to :func:`compound_fer.training.registry.available`."""

from __future__ import annotations

from typing import Iterable

from compound_fer.errors import ConfigError

#: method name -> its registry summary (the same text as ``Entry.summary``), sorted by name
METHODS: dict[str, str] = {
    "ewc": "Elastic Weight Consolidation (Kirkpatrick et al. 2017)",
    "gdumb": "GDumb (Prabhu et al. 2020): retrain from scratch on a class-balanced buffer",
    "herding": "replay with herding exemplars (iCaRL selection) on model features",
    "icarl": "iCaRL (Rebuffi et al. 2017): herding exemplars, BCE distillation, NCM",
    "joint": "upper bound: cumulative training on all data seen so far at every step",
    "kd": "Ablation: KD from the frozen basic model, no replay",
    "kdpsmr": "The paper: KD from the frozen basic model + Predictive Sorting Memory Replay",
    "kdpsmr+purified": "KD + PSMR (the paper's method) with PurifiedLearning added",
    "lwf": "Learning without Forgetting (Li & Hoiem 2016), Avalanche LwF",
    "naive": "fine-tuning on each experience alone (lower bound)",
    "ncm": "nearest class mean on the basic model's frozen embedding (no training; one mean per class, no images "
           "kept)",
    "omni": "fine-tuning + distilled replay (optionally pool mining): omni-supervised distilled data",
    "pathnet": "PathNet: evolved paths over MLP modules, best path frozen per task, replay memory",
    "psmr": "Ablation: Predictive Sorting Memory Replay, no KD",
    "purified": "fine-tuning + PurifiedLearning (identity probe, purification of expression features)",
    "replay": "experience replay, random class-balanced buffer of mem_size images",
}


def listing() -> str:
    """``run --list-methods``'s text: one line per method, its name and summary."""
    return "\n".join(f"{name:18s} {summary}" for name, summary in METHODS.items())


def check_method_names(names: Iterable[str], *, where: str) -> None:
    """ConfigError naming ``where`` and the registered methods for a name not in :data:`METHODS`, with the
    registry's own wording (the plan checks again with the real registry once torch is loaded)."""
    for name in names:
        if str(name).lower() not in METHODS:
            raise ConfigError(f"{where}: unknown method {name!r}; available: {', '.join(METHODS)}")
