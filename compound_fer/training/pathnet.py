"""PathNet transfer: evolve paths through a module grid, freeze each task's best path, reuse it later.

After "Meta transfer learning for facial emotion recognition" (arXiv 1805.09946; only the abstract was
available), which applies PathNet (Fernando et al. 2017). **Follows PathNet:** ``L`` layers of ``M``
modules; a path picks ``N`` modules per layer whose outputs are summed; paths evolve by binary
tournament (two paths train ``T`` steps each, the fitter one's path is copied over the other's with
mutation, each index mutating with probability ``1/(L*N)`` by a shift in ``[-2, 2]``); after a task the
best path's modules are frozen, every other module is re-initialised, and the next task evolves new
paths that may run through the frozen modules (which get no gradient); a new head per task.

**Our design:**

- The modules are small MLP blocks (``Linear + ReLU``) on the backbone's feature vector (``.features(x)``),
  not convolutional layers; the backbone is trained with the paths during the first experience (the
  basic classes) and frozen with the first path (``train_trunk_first=False`` keeps it frozen throughout).
- Class-incremental use: one head per experience for that experience's *new* classes; a task's path and
  head are frozen after it. The model's output is indexed by global label: each finished task's head
  runs on its own frozen path, the task in training runs on its current path, unseen labels get -1e4.
  Old logits therefore never change; the new head learns to rank against them from the replay memory
  (``StrategyArgs.mem_size``, class-balanced, as the other methods get). A compound experience has one
  class, so a per-task softmax would be degenerate: the softmax runs over all seen classes.
- Fitness = a path's training accuracy over its ``T`` steps (PathNet uses training accuracy or reward).
  The tournament runs inside the normal Avalanche training loop: the template's epochs x minibatches
  budget is shared out among tournament turns, so PathNet gets the same number of steps as the others.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from avalanche.training.plugins import ReplayPlugin
from avalanche.training.storage_policy import ClassBalancedBuffer
from avalanche.training.templates import SupervisedTemplate
from pydantic import Field
from torch import nn

from compound_fer.errors import ConfigError
from compound_fer.training.entry import MethodOptions, StrategyArgs, register
from compound_fer.training.optim import optimizer_from_args
from compound_fer.training.template import template_kwargs

NEG = -1e4


class PathNet(nn.Module):
    """A backbone's features through an ``layers`` x ``modules`` grid of MLP modules, one head per task."""

    def __init__(self, *, backbone: nn.Module, in_features: int | None = None, layers: int = 3, modules: int = 10,
                 active: int = 3, hidden: int = 64) -> None:
        super().__init__()
        if not 1 <= active <= modules:
            raise ConfigError(f"PathNet needs 1 <= active ({active}) <= modules ({modules})")
        in_features = in_features or getattr(backbone, "feature_dim", None) or \
            getattr(getattr(backbone, "model", None), "feature_dim", None)  # e.g. features.CachedTrunkModel
        if not in_features:
            raise ConfigError("PathNet: pass in_features or use a backbone with .feature_dim")
        self.backbone = backbone
        self.L, self.M, self.N, self.hidden = layers, modules, active, hidden
        self.grid = nn.ModuleList(
            nn.ModuleList(nn.Sequential(nn.Linear(in_features if l == 0 else hidden, hidden), nn.ReLU())
                          for _ in range(modules))
            for l in range(layers)
        )
        self.heads = nn.ModuleList()
        self.head_classes: list[list[int]] = []
        self.task_paths: list[torch.Tensor] = []
        self.frozen: set[tuple[int, int]] = set()
        self.active_path: torch.Tensor | None = None

    # -------------------------------------------------------------- paths
    def random_path(self, g: torch.Generator) -> torch.Tensor:
        """A random (L, N) path: N distinct modules per layer."""
        return torch.stack([torch.randperm(self.M, generator=g)[: self.N] for _ in range(self.L)])

    def mutate(self, path: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Each index moves by a uniform shift in [-2, 2] (mod M) with probability 1/(L*N); stays distinct."""
        out = path.clone()
        p = 1.0 / (self.L * self.N)
        for l in range(self.L):
            for n in range(self.N):
                if torch.rand((), generator=g) < p:
                    for _ in range(10):
                        cand = int(out[l, n] + torch.randint(-2, 3, (), generator=g)) % self.M
                        if cand not in out[l].tolist():
                            out[l, n] = cand
                            break
        return out

    def through(self, feats: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
        """Features through a path: the outputs of each layer's active modules are summed."""
        h = feats
        for l, layer in enumerate(self.grid):
            h = sum(layer[int(m)](h) for m in path[l])
        return h

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        return b.features(x) if hasattr(b, "features") else b(x)

    # -------------------------------------------------------------- tasks
    def add_task(self, classes: Sequence[int]) -> None:
        """A new head for ``classes`` (global labels), trained on the active path."""
        dev = next(self.parameters()).device
        self.heads.append(nn.Linear(self.hidden, len(classes)).to(dev))
        self.head_classes.append([int(c) for c in classes])

    def finish_task(self, path: torch.Tensor, *, freeze_backbone: bool = True) -> None:
        """Freeze ``path``'s modules, the task head (and the backbone); re-initialise every other module."""
        self.task_paths.append(path.clone())
        self.frozen |= {(l, int(m)) for l in range(self.L) for m in path[l]}
        for p in self.heads[len(self.task_paths) - 1].parameters():
            p.requires_grad_(False)
        if freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        for l, layer in enumerate(self.grid):
            for m, module in enumerate(layer):
                if (l, m) in self.frozen:
                    for p in module.parameters():
                        p.requires_grad_(False)
                else:
                    module[0].reset_parameters()
        self.active_path = None

    @property
    def num_outputs(self) -> int:
        return max((max(c) for c in self.head_classes if c), default=0) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.trunk(x)
        out = feats.new_full((len(x), self.num_outputs), NEG)
        for t, (head, classes) in enumerate(zip(self.heads, self.head_classes)):
            path = self.task_paths[t] if t < len(self.task_paths) else self.active_path
            if path is None:
                continue
            out[:, classes] = head(self.through(feats, path))
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


class PathNetStrategy(SupervisedTemplate):
    """Avalanche strategy: each training experience runs a binary tournament over a population of paths.

    ``population`` paths; each contender trains ``tournament_steps`` minibatches; then the loser's path
    becomes a mutated copy of the winner's. At the end of the experience the fittest path is frozen.
    """

    def __init__(
        self,
        *,
        model: PathNet,
        args: StrategyArgs,
        population: int = 8,
        tournament_steps: int = 5,
        train_trunk_first: bool = True,
        basic_epochs: int | None = None,
        plugins: Sequence[Any] = (),
        evaluator: Any = None,
    ) -> None:
        if not isinstance(model, PathNet):
            raise ConfigError("PathNetStrategy needs a PathNet model (wrap your backbone: PathNet(backbone=...))")
        if population < 2 or tournament_steps < 1:
            raise ConfigError("PathNet needs population >= 2 and tournament_steps >= 1")
        self.args = args
        self.population_size, self.T = population, tournament_steps
        self.train_trunk_first = train_trunk_first
        self.basic_epochs = basic_epochs
        self.g = torch.Generator().manual_seed(args.seed)
        self.population: list[torch.Tensor] = []
        self.fitness: list[float] = []
        if not train_trunk_first:
            for p in model.backbone.parameters():
                p.requires_grad_(False)
        super().__init__(model=model, **template_kwargs(model=model, args=args, evaluator=evaluator, plugins=plugins,
                                                        params=model.trainable_parameters()))

    # -------------------------------------------------------------- experience set-up
    def model_adaptation(self, model: nn.Module | None = None) -> nn.Module:
        model = self.model if model is None else model
        if self.is_training:
            known = {c for cs in model.head_classes for c in cs}
            new = sorted(int(c) for c in self.experience.classes_in_this_experience if int(c) not in known)
            if new:
                model.add_task(new)
            self.population = [model.random_path(self.g) for _ in range(self.population_size)]
            self.fitness = [float("-inf")] * self.population_size
            self._pair = self._draw_pair()
            self._turn, self._steps, self._hits, self._seen = 0, 0, 0, 0
            model.active_path = self.population[self._pair[0]]
        return model.to(self.device)

    def make_optimizer(self, **kwargs: Any) -> None:
        # Avalanche calls this once *before* model_adaptation too; once every module is frozen, only the
        # new task's head (added by the adaptation) trains, so that first call may find nothing to optimise.
        params = self.model.trainable_parameters()
        if params:
            self.optimizer = optimizer_from_args(params, self.args)

    def _draw_pair(self) -> tuple[int, int]:
        i, j = torch.randperm(self.population_size, generator=self.g)[:2].tolist()
        return i, j

    # -------------------------------------------------------------- tournament inside the loop
    def _before_forward(self, **kwargs: Any) -> None:
        self.model.active_path = self.population[self._pair[self._turn]]
        super()._before_forward(**kwargs)

    def _after_training_iteration(self, **kwargs: Any) -> None:
        with torch.no_grad():
            self._hits += int((self.mb_output.argmax(1) == self.mb_y).sum())
            self._seen += len(self.mb_y)
        self._steps += 1
        if self._steps >= self.T:
            self.fitness[self._pair[self._turn]] = self._hits / max(1, self._seen)
            self._steps, self._hits, self._seen = 0, 0, 0
            if self._turn == 0:
                self._turn = 1
            else:
                a, b = self._pair
                win, lose = (a, b) if self.fitness[a] >= self.fitness[b] else (b, a)
                self.population[lose] = self.model.mutate(self.population[win], self.g)
                self.fitness[lose] = float("-inf")
                self._pair, self._turn = self._draw_pair(), 0
        super()._after_training_iteration(**kwargs)

    def best_path(self) -> torch.Tensor:
        """The fittest evaluated path of the current population."""
        best = max(range(self.population_size), key=lambda i: self.fitness[i])
        return self.population[best]

    def _before_training_exp(self, **kwargs: Any) -> None:
        # The runner shares one trained basic model and asks for 0 epochs on experience 0; PathNet's paths
        # and first head are its own and must still be trained, so it takes basic_epochs (or train_epochs).
        if not self.model.task_paths and self.train_epochs == 0:
            self.train_epochs = self.basic_epochs or self.args.train_epochs
        super()._before_training_exp(**kwargs)

    def _after_training_exp(self, **kwargs: Any) -> None:
        self.model.finish_task(self.best_path(), freeze_backbone=True)
        super()._after_training_exp(**kwargs)


class PathNetOptions(MethodOptions):
    """The module grid, the tournament and the first training."""

    pathnet_in_features: int | None = Field(None, ge=1, description="feature size entering the paths (default "
                                            "the backbone's)")
    pathnet_layers: int = Field(3, ge=1, description="layers (3)")
    pathnet_modules: int = Field(10, ge=1, description="modules per layer (10)")
    pathnet_active: int = Field(3, ge=1, description="active modules per layer in a path (3)")
    pathnet_hidden: int = Field(64, ge=1, description="module width (64)")
    population: int = Field(8, ge=2, description="paths per tournament population (8)")
    tournament_steps: int = Field(5, ge=1, description="tournament rounds (5)")
    train_trunk_first: bool = Field(True, description="train the backbone on experience 0 first (true)")
    pathnet_basic_epochs: int | None = Field(None, ge=1, description="epochs of that first training (default "
                                             "train_epochs)")


def pathnet_from_args(model: nn.Module, args: StrategyArgs) -> PathNet:
    """Wrap a backbone (``.features``, ``.feature_dim``) in a PathNet sized by the args' :class:`PathNetOptions`."""
    o = args.options_as(PathNetOptions)
    return PathNet(backbone=model, in_features=o.pathnet_in_features, layers=o.pathnet_layers,
                   modules=o.pathnet_modules, active=o.pathnet_active, hidden=o.pathnet_hidden)


@register("pathnet", summary="PathNet: evolved paths over MLP modules, best path frozen per task, replay memory",
          uses_memory=True, options=PathNetOptions)
def build_pathnet(*, model: Any, args: StrategyArgs, evaluator: Any = None, plugins: Sequence[Any] = ()) -> Any:
    """PathNet strategy on the given backbone (:class:`PathNetOptions`). A class-balanced replay memory of
    ``mem_size`` is added."""
    plugins = list(plugins)
    if args.mem_size > 0:
        plugins.append(ReplayPlugin(mem_size=args.mem_size,
                                    storage_policy=ClassBalancedBuffer(max_size=args.mem_size, adaptive_size=True)))
    o = args.options_as(PathNetOptions)
    return PathNetStrategy(model=pathnet_from_args(model, args), args=args, population=o.population,
                           tournament_steps=o.tournament_steps, train_trunk_first=o.train_trunk_first,
                           basic_epochs=o.pathnet_basic_epochs, plugins=plugins, evaluator=evaluator)
