"""A long synthetic class-incremental stream (100+ procedural classes of feature vectors) to check that a
replay method's memory stays within its budget and its time per step stays flat as classes accumulate.

The classes are Gaussian blobs in a small feature space, not faces: what is measured is the continual
machinery (strategy, plugins, replay buffer, growing head), not the backbone. Used by
``tests/test_stress.py`` (a small stream) and ``benchmarks/reliability.py`` (the figures in
docs/reliability.md); run alone, ``python benchmarks/stress.py --method kdpsmr --classes 60`` prints one
stream's steps as JSON lines. Arguments are parsed before torch is imported, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - torch is imported where a stream runs, not for --help
    import torch
    from torch import nn

#: methods whose replay memory is measured (the paper's and plain class-balanced replay)
METHODS = ("kdpsmr", "replay")


@dataclass(frozen=True, kw_only=True)
class StreamSpec:
    """The synthetic stream: ``n_classes`` blobs, ``first`` of them in experience 0, then one per step."""

    n_classes: int = 120
    first: int = 10
    dim: int = 16
    train_per_class: int = 30
    test_per_class: int = 5
    memory: int = 200
    epochs: int = 1
    batch_size: int = 32
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class StepStats:
    """One trained step: classes seen, wall and CPU seconds (CPU time is the steadier figure on a shared
    machine), replay memory size (items), images trained on, and process memory (MiB)."""

    step: int
    classes_seen: int
    seconds: float
    cpu_seconds: float
    images: int
    memory_items: int
    rss_mib: float
    peak_rss_mib: float


def _blobs(spec: StreamSpec) -> tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    import torch

    g = torch.Generator().manual_seed(spec.seed)
    centers = torch.randn(spec.n_classes, spec.dim, generator=g) * 2.0

    def draw(n: int):
        y = torch.arange(spec.n_classes).repeat_interleave(n)
        return torch.utils.data.TensorDataset(centers[y] + torch.randn(len(y), spec.dim, generator=g), y)

    return draw(spec.train_per_class), draw(spec.test_per_class)


def _model(spec: StreamSpec) -> nn.Module:
    import torch
    from torch import nn

    from compound_fer.models import FERModel, GrowingHead

    torch.manual_seed(spec.seed)
    tail = nn.Sequential(nn.Linear(spec.dim, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
    return FERModel(trunk=nn.Identity(), tail=tail, head=GrowingHead(in_features=32, num_classes=spec.first,
                                                                     dropout=0.0),
                    feature_dim=32, target_layer=tail[0], freeze_bn=False)


def replay_items(strategy: Any) -> int:
    """Items held in the strategy's replay memory (PSMR buffer or Avalanche storage policy); 0 if none."""
    psmr = getattr(strategy, "psmr", None)
    if psmr is not None and psmr.buffer is not None:
        return len(psmr.buffer.buffer)
    for p in getattr(strategy, "plugins", []):
        policy = getattr(p, "storage_policy", None)
        if policy is not None:
            return len(policy.buffer)
    return 0


def step_images(strategy: Any, exp: Any) -> int:
    """Images the last step trained on: PSMR's memory + new images, else the experience plus the replay memory."""
    psmr = getattr(strategy, "psmr", None)
    if psmr is not None and psmr.step_sizes:
        return int(sum(psmr.step_sizes[-1].values()))
    return len(exp.dataset) + replay_items(strategy)


def _rss_mib() -> float:
    """Current resident set size of this process (Linux /proc), MiB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except (OSError, IndexError, ValueError):  # pragma: no cover - not Linux
        return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_stream(method: str, spec: StreamSpec) -> list[StepStats]:
    """Train ``method`` over the whole stream; one :class:`StepStats` per experience after the first.

    The memory budget is fixed (``spec.memory`` items in all): PSMR runs in ``limit`` mode (the quota per
    class shrinks as classes arrive), replay with Avalanche's class-balanced buffer.
    """
    from avalanche.benchmarks import nc_benchmark
    from avalanche.training.plugins import EvaluationPlugin

    from compound_fer.training.registry import entry_of, make_strategy

    train, test = _blobs(spec)
    n_exp = 1 + spec.n_classes - spec.first
    bench = nc_benchmark(train, test, n_experiences=n_exp, task_labels=False, shuffle=False, seed=spec.seed,
                         fixed_class_order=list(range(spec.n_classes)), per_exp_classes={0: spec.first})
    strategy = make_strategy(method, model=_model(spec), evaluator=EvaluationPlugin(loggers=[]), lr=1e-2,
                             train_epochs=spec.epochs, train_mb_size=spec.batch_size, eval_mb_size=256,
                             mem_size=spec.memory, num_classes_total=spec.n_classes, seed=spec.seed,
                             options={k: v for k, v in {"memory_mode": "limit", "max_size": spec.memory}.items()
                                      if k in entry_of(method).options_type.model_fields})
    out: list[StepStats] = []
    for step, exp in enumerate(bench.train_stream):
        t0, c0 = time.perf_counter(), time.process_time()
        strategy.train(exp)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if step == 0:
            continue  # experience 0 trains the first classes: not a continual step
        out.append(StepStats(step=step, classes_seen=spec.first + step, seconds=round(seconds, 4),
                             cpu_seconds=round(cpu, 4), images=step_images(strategy, exp),
                             memory_items=replay_items(strategy), rss_mib=round(_rss_mib(), 1),
                             peak_rss_mib=round(_peak_rss_mib(), 1)))
    return out


def as_rows(stats: list[StepStats]) -> list[dict]:
    """The steps as plain dicts (JSON rows)."""
    return [asdict(s) for s in stats]


def main(argv: list[str] | None = None) -> int:
    """Run one stream and print a JSON line per continual step."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="kdpsmr", choices=METHODS, help="replay method to stream (default kdpsmr)")
    p.add_argument("--classes", type=int, default=StreamSpec.n_classes, help="classes in the stream (default 120)")
    p.add_argument("--memory", type=int, default=StreamSpec.memory, help="replay memory, items (default 200)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for row in as_rows(run_stream(args.method, StreamSpec(n_classes=args.classes, memory=args.memory,
                                                          seed=args.seed))):
        print(json.dumps(row))
    return 0


__all__ = ["METHODS", "StepStats", "StreamSpec", "as_rows", "main", "replay_items", "run_stream", "step_images"]


if __name__ == "__main__":
    raise SystemExit(main())
