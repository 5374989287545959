"""The N-way K-shot episode stage: the basic model's embedding of every face, then each learner on the
same seeded episodes of compound classes drawn from the scored subjects (one row per learner and K)."""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from compound_fer import taxonomy
from compound_fer.config import ProtocolConfig
from compound_fer.errors import ConfigError
from compound_fer.evaluation.episodes import episode_accuracy, sample_episodes, summarise_episodes
from compound_fer.evaluation.rows import EpisodeRow
from compound_fer.inputs import Inputs
from compound_fer.runner.basic import basic_labels
from compound_fer.runner.dataset import Splits
from compound_fer.runner.plan import RunPlan
from compound_fer.training.bias_correction import head_linear
from compound_fer.training.episode_learners import BasicHead, learner
from compound_fer.training.predictive_sorting import pick_order, sort_by_score
from compound_fer.training.prototypes import prototypes

log = logging.getLogger(__name__)

__all__ = ["basic_head", "embed", "run_episodes"]


@torch.no_grad()
def embed(model: nn.Module, x: torch.Tensor, *, device: str = "cpu", batch_size: int = 256) -> torch.Tensor:
    """``model.features`` of ``x`` (images or view-0 maps as ``model`` takes them), in eval mode."""
    model.eval()
    return torch.cat([model.features(x[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(x), batch_size)])


def basic_head(cfg: ProtocolConfig, net: nn.Module, train_z: torch.Tensor, train_labels: np.ndarray, *,
               quota: int) -> BasicHead:
    """The basic head, the centre of the basic training embeddings and a PSMR memory of ``quota`` faces per
    basic class (PSMR's own ranking and pick: the highest true-class logits), with each compound's component
    rows."""
    order = list(basic_labels(cfg))
    layer = head_linear(net)
    w, b = layer.weight.detach().float().cpu(), layer.bias.detach().float().cpu()
    is_basic = np.isin(train_labels, order)
    z, y = train_z[torch.from_numpy(is_basic)], torch.as_tensor([order.index(int(v)) for v in train_labels[is_basic]])
    logits = z @ w.T + b
    keep = []
    for c in range(len(order)):
        rows = torch.nonzero(y == c).flatten()
        keep.append(rows[pick_order(sort_by_score(logits[rows, c]), "top")[:quota]])
    keep_t = torch.cat(keep)
    comps = {taxonomy.label_of(cat.name): tuple(order.index(c) for c in taxonomy.component_labels(cat.name))
             for cat in taxonomy.categories("compound")
             if all(c in order for c in taxonomy.component_labels(cat.name))}
    centre = z.mean(0)
    protos = prototypes(z, y, centre)  # the imprint learner's TEEN base set
    return BasicHead(weight=w, bias=b, centre=centre, memory_x=z[keep_t], memory_y=y[keep_t], components=comps,
                     prototypes=torch.stack([protos[c] for c in range(len(order))]))


def run_episodes(plan: RunPlan, *, basic_model: nn.Module, splits: Splits, inputs: Inputs, seed: int,
                 progress: bool = True) -> list[EpisodeRow]:
    """Every learner of ``fewshot.episodes`` on the same episodes per K; one row each (the memory of basic
    faces: the plan's, as the few-shot phase's)."""
    cfg = plan.config
    spec = cfg.fewshot.episodes
    inputs = inputs.for_trainable("head")  # a frozen embedding: the pooled one, if made
    net = inputs.wrap(copy.deepcopy(basic_model))
    test_z = embed(net, inputs.test_x, device=cfg.device)
    train_z = embed(net, inputs.one_view(inputs.train), device=cfg.device)
    train_y, test_y = np.asarray(splits.train.labels), np.asarray(splits.test.labels)
    head = basic_head(cfg, net, train_z, train_y, quota=plan.stream_memory(len(splits.train)).quota)
    compounds = sorted(head.components)
    imp = cfg.fewshot.imprint  # the imprint learner's settings (fewshot.imprint)
    imprint = {"alpha": imp.alpha, "kappa": imp.kappa, "finetune": imp.mode == "finetune"}
    rows = []
    for shots in spec.shots:
        try:
            episodes = sample_episodes(test_y, compounds, ways=spec.ways, shots=shots, queries=spec.queries,
                                       count=spec.count, seed=spec.seed + 1000 * seed)
        except ConfigError as err:  # a small scored split: the rest of the run stands, the row is left out
            log.warning("%s: these episodes are skipped (fewshot.episodes)", err)
            continue
        for name in spec.learners:
            fit, t0, accs = learner(name), time.perf_counter(), []
            for e in tqdm(episodes, desc=f"episodes {name} {shots}-shot", disable=not progress, leave=False):
                pred = fit(head, test_z[e.support], torch.as_tensor(e.support_y), test_z[e.query], e.classes,
                           steps=spec.steps, lr=spec.lr, tau=spec.tau, **imprint)
                accs.append(episode_accuracy(e.query_y, pred.numpy()))
            rows.append(EpisodeRow(seed=seed, learner=name, ways=spec.ways, shots=shots, queries=spec.queries,
                                   **summarise_episodes(accs, episodes), seconds=round(time.perf_counter() - t0, 2),
                                   settings={"steps": spec.steps, "lr": spec.lr, "tau": spec.tau,
                                             "episode_seed": spec.seed + 1000 * seed, "memory_per_class":
                                             int(len(head.memory_y) / max(1, len(head.bias))),
                                             **({"imprint": imprint} if name == "imprint" else {})}))
            log.info("episodes: %s %d-way %d-shot %.1f%% +- %.1f", name, spec.ways, shots,
                     100 * rows[-1].accuracy_mean, 100 * rows[-1].accuracy_ci95)
    return rows
