"""Batched class activation maps (Grad-CAM and friends) for our models, wrapping pytorch-grad-cam once.

The wrapper fixes what the library leaves to the caller: it restores every module's train/eval mode
(the library calls ``model.eval()`` and leaves it), removes every hook it adds, never touches the
parameters' ``requires_grad`` or ``.grad``, always passes explicit targets (one
``ClassifierOutputTarget`` per image), and lets gradients reach the target layer even when the trunk is
frozen (the target layer's output is cut from the trunk's graph and made to require grad, so the
backward pass stops at the target layer: frozen or not, the trunk costs no gradient work).

Methods: ``gradcam``, ``gradcam++``, ``hirescam``, ``eigencam``, ``layercam`` and ``guided`` (the
reference's guided Grad-CAM: positive gradients times positive activations, channel weights = their
spatial mean, weighted sum of activations, min-max normalised). Every CAM is resized to the input size
and min-max normalised to [0, 1] per image.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from compound_fer.models import FERModel
from compound_fer.training.predict import predict as argmax_predict

__all__ = [
    "METHODS",
    "GuidedGradCAM",
    "FastEigenCAM",
    "CAMExplainer",
    "compute_cams",
    "class_mean_cams",
    "find_target_layer",
    "resolve_target_layer",
    "hook_count",
    "preserved_model_state",
    "predict",
    "output_index_fn",
]


class GuidedGradCAM(BaseCAM):
    """The reference's guided Grad-CAM: weights = spatial mean of (grad > 0) * (act > 0) * grad.

    The CAM is the weighted sum of activations, min-max normalised (no ReLU before the normalisation,
    as in the reference: the map is shifted by its minimum so that the base class's clipping is a no-op).
    """

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], reshape_transform=None) -> None:
        super().__init__(model, target_layers, reshape_transform)

    def get_cam_weights(self, input_tensor, target_layers, targets, activations, grads) -> np.ndarray:
        guided = grads * (grads > 0) * (activations > 0)
        return guided.mean(axis=(2, 3))

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False):
        cam = super().get_cam_image(input_tensor, target_layer, targets, activations, grads, eigen_smooth)
        return cam - cam.reshape(len(cam), -1).min(axis=1)[:, None, None]


class FastEigenCAM(EigenCAM):
    """EigenCAM with a thin SVD: the library's full SVD builds a C x C matrix per image (1280 x 1280 for
    MobileNetV2: ~0.4 s an image on CPU). Same first principal component; its arbitrary sign is fixed so
    that the map correlates positively with the channel-summed activations (the library leaves it to
    LAPACK, which can return an all-zero map after clipping)."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False):
        a = torch.nan_to_num(torch.as_tensor(np.asarray(activations, dtype=np.float32)))
        n, c, h, w = a.shape
        x = a.reshape(n, c, h * w).transpose(1, 2)  # (N, HW, C)
        x = x - x.mean(dim=1, keepdim=True)
        # torch's SVD follows torch.set_num_threads; numpy's BLAS would take every core
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        proj = torch.einsum("npc,nc->np", x, vh[:, 0, :])
        ref = a.sum(dim=1).reshape(n, h * w)
        ref = ref - ref.mean(dim=1, keepdim=True)
        sign = torch.where((proj * ref).sum(dim=1) < 0, -1.0, 1.0)
        proj, sign = proj.numpy(), sign.numpy()
        return (proj * sign[:, None]).reshape(n, h, w)


#: Method name -> pytorch-grad-cam class.
METHODS: Mapping[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "eigencam": FastEigenCAM,
    "layercam": LayerCAM,
    "guided": GuidedGradCAM,
}


def _method_class(method: str | type[BaseCAM]) -> type[BaseCAM]:
    if isinstance(method, type) and issubclass(method, BaseCAM):
        return method  # any other pytorch-grad-cam method (ScoreCAM, XGradCAM, ...) or your own subclass
    key = method.lower().replace("_", "").replace("-", "")
    key = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++", "guidedgradcam": "guided"}.get(key, key)
    if key not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; expected one of: {', '.join(METHODS)}")
    return METHODS[key]


def hook_count(model: nn.Module) -> int:
    """Number of forward, forward-pre and backward hooks registered on any module of ``model``."""
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks)
        n += len(m._backward_hooks) + len(getattr(m, "_backward_pre_hooks", {}))
    return n


@contextlib.contextmanager
def preserved_model_state(model: nn.Module) -> Iterator[None]:
    """Restore every module's train/eval flag and every parameter's ``requires_grad`` and ``.grad`` on exit."""
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, req, grad in params:
            p.requires_grad_(req)
            p.grad = grad


def find_target_layer(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The last module, in forward order, whose output is a 4-D map with more than one spatial cell.

    One forward pass on ``example`` (a single image is enough) records every module's output; the
    model's modes and hooks are left as they were.
    """
    finished: list[nn.Module] = []

    def record(module, _inp, out):
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1:
            finished.append(module)

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with preserved_model_state(model), torch.no_grad():
            model.eval()
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    if not finished:
        raise ValueError(
            f"{type(model).__name__} has no layer with a 4-D spatial output; pass target_layer= explicitly"
        )
    return finished[-1]


def resolve_target_layer(model: nn.Module, target_layer: nn.Module | str | None, example: torch.Tensor) -> nn.Module:
    """``target_layer`` as a module: given, a dotted name in the model, ``model.target_layer``, or found."""
    if isinstance(target_layer, nn.Module):
        return target_layer
    if isinstance(target_layer, str):
        try:
            return model.get_submodule(target_layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            raise ValueError(f"no layer {target_layer!r} in the model; some layers: {names[-8:]}") from None
    own = getattr(model, "target_layer", None)
    if isinstance(own, nn.Module):
        return own
    return find_target_layer(model, example)


class CAMExplainer:
    """Context manager computing batched CAMs of one model; on exit the model is exactly as before.

    CAMs are computed in eval mode (dropout off, BatchNorm on running statistics), whatever the mode
    the model came in with; that mode is restored on exit.

    ```python
    with CAMExplainer(model=model, method="gradcam") as cam:
        maps = cam(images, targets=labels)      # (N, H, W) float32 in [0, 1]
    ```
    ``method``: a name in ``METHODS`` or any ``BaseCAM`` subclass (e.g. ``pytorch_grad_cam.XGradCAM``).
    ``target_layer``: a module, a dotted name, or None (``model.target_layer``, else the last 4-D layer).
    ``class_order``: the global label of each model output column (a grown head's order); by default
    ``model.class_order`` when the model has it, else output column = global label.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        method: str | type[BaseCAM] = "gradcam",
        target_layer: nn.Module | str | None = None,
        class_order: Sequence[int] | None = None,
    ) -> None:
        self.model = model
        self.method = method
        self.cam_class = _method_class(method)
        self.target_layer = target_layer
        self.output_index = output_index_fn(model, class_order)
        self.layer: nn.Module | None = None  # the target layer, known after the first call
        self._stack: contextlib.ExitStack | None = None
        self._cam: BaseCAM | None = None
        self._grad_handle = None
        self._device = next(model.parameters()).device

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "CAMExplainer":
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(preserved_model_state(self.model))
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook and restore the model's modes, requires_grad flags and gradients."""
        if self._cam is not None:
            self._cam.activations_and_grads.release()
            self._cam = None
        if self._grad_handle is not None:
            self._grad_handle.remove()
            self._grad_handle = None
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def _ensure_cam(self, example: torch.Tensor) -> BaseCAM:
        if self._stack is None:
            raise RuntimeError("use CAMExplainer as a context manager: `with CAMExplainer(...) as cam:`")
        if self._cam is None:
            layer = resolve_target_layer(self.model, self.target_layer, example)
            self.layer = layer
            for p in self.model.parameters():  # the backward pass must not touch parameters at all
                p.requires_grad_(False)
            # Registered before the library's hooks, so they see the leaf that requires grad.
            self._grad_handle = layer.register_forward_hook(_cut_and_require_grad)
            self._cam = self.cam_class(model=self.model, target_layers=[layer])
        return self._cam

    # -- computation -----------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
        """CAMs of ``images`` (N, C, H, W float, as the model expects) for explicit per-image targets."""
        if len(targets) != len(images):
            raise ValueError(f"need one target per image: {len(targets)} targets for {len(images)} images")
        images = images.to(self._device)
        cam = self._ensure_cam(images)
        cam_targets = [ClassifierOutputTarget(self.output_index(int(t))) for t in targets]
        with torch.enable_grad():
            out = cam(input_tensor=images, targets=cam_targets)
        cam.activations_and_grads.clear()
        cam.outputs = None
        return np.asarray(out, dtype=np.float32)


def _cut_and_require_grad(module, inputs, output):
    # A leaf that requires grad: the backward pass stops here, and works even under a frozen trunk.
    # The clone keeps in-place ops after the layer (ReLU(inplace=True)) legal.
    if isinstance(output, torch.Tensor):
        return output.detach().requires_grad_(True).clone()
    return None


def _batches(n: int, batch_size: int, *, desc: str, progress: bool | None) -> Iterator[slice]:
    starts = range(0, n, batch_size)
    if progress is None:
        progress = n > 8 * batch_size
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    for s in starts:
        yield slice(s, min(n, s + batch_size))


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    targets: Sequence[int],
    *,
    method: str | type[BaseCAM] = "gradcam",
    target_layer: nn.Module | str | None = None,
    batch_size: int = 32,
    class_order: Sequence[int] | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """CAMs (N, H, W) float32 in [0, 1] of ``images`` for one explicit target per image, in batches.

    ``images`` are float (N, C, H, W) as the model expects; uint8 images are scaled to [0, 1].
    """
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    targets = [int(t) for t in targets]
    if len(targets) != len(images):
        raise ValueError(f"need one target per image: {len(targets)} targets for {len(images)} images")
    out = np.empty((len(images), *images.shape[-2:]), dtype=np.float32)
    with CAMExplainer(model=model, method=method, target_layer=target_layer, class_order=class_order) as cam:
        for sl in _batches(
            len(images), batch_size, desc=f"{getattr(method, '__name__', method)} CAMs", progress=progress
        ):
            out[sl] = cam(images[sl], targets[sl])
    return out


def class_mean_cams(
    model: nn.Module,
    faceset_or_tensors,
    labels: Sequence[int] | None = None,
    *,
    method: str = "gradcam",
    batch_size: int = 32,
    target_layer: nn.Module | str | None = None,
    class_order: Sequence[int] | None = None,
    target: str = "true",
    classes: Sequence[int] | None = None,
) -> dict[int, np.ndarray]:
    """Mean CAM per class: ``{label: (H, W) array}``, each image explained for its own label.

    ``faceset_or_tensors``: a ``FaceSet`` (its labels are used when ``labels`` is None) or an image tensor
    with ``labels``. All our images are aligned face crops of one size (landmark or detector crops padded
    to a square, or synthetic faces drawn on one template), so the pixel-wise mean over a class's crops
    is the alignment: no further registration is done. ``target="true"`` explains each image's label;
    ``target="predicted"`` explains the model's prediction (still averaged per true label).
    ``classes`` restricts the result to those labels.
    """
    images, labels = _images_and_labels(faceset_or_tensors, labels)
    keep = np.ones(len(labels), dtype=bool) if classes is None else np.isin(labels, list(classes))
    images, labels = images[torch.as_tensor(keep)], labels[keep]
    if target == "true":
        targets = labels
    elif target == "predicted":
        targets = predict(model, images, batch_size=batch_size, class_order=class_order)
    else:
        raise ValueError(f"target must be 'true' or 'predicted', got {target!r}")
    cams = compute_cams(model, images, targets, method=method, target_layer=target_layer,
                        batch_size=batch_size, class_order=class_order)
    return {int(c): cams[labels == c].mean(axis=0) for c in np.unique(labels)}


def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 64,
            class_order: Sequence[int] | None = None) -> np.ndarray:
    """Predicted global labels (through ``class_order``); the model's modes are restored."""
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    with preserved_model_state(model):  # every module's own flag back, not one mode for all
        pred = argmax_predict(model, images, batch_size=batch_size, device=next(model.parameters()).device).numpy()
    order = _class_order(model, class_order)
    return pred if order is None else np.asarray(order, dtype=np.int64)[pred]


def _class_order(model: nn.Module, class_order: Sequence[int] | None) -> list[int] | None:
    order = class_order if class_order is not None else getattr(model, "class_order", None)
    if order is None and _is_fer_model(model):  # a grown head's columns are not global labels: never guess
        raise ValueError("this FERModel has no class_order (the global label of each output column), so the "
                         "class it would explain is unknown: load it with compound_fer.model_io.load_model "
                         "(which restores class_order from the .json) or pass class_order=")
    return None if order is None else [int(x) for x in order]


def _is_fer_model(model: nn.Module) -> bool:

    return isinstance(model, FERModel)


def output_index_fn(model: nn.Module, class_order: Sequence[int] | None = None) -> Callable[[int], int]:
    """Global label -> model output column (``class_order`` or ``model.class_order``; else identity)."""
    order = _class_order(model, class_order)
    if order is None:
        return int
    column = {lab: j for j, lab in enumerate(order)}

    def index(label: int) -> int:
        try:
            return column[int(label)]
        except KeyError:
            raise ValueError(f"label {label} is not among the model's classes {order}") from None

    return index


def _images_and_labels(data, labels) -> tuple[torch.Tensor, np.ndarray]:
    if hasattr(data, "images") and hasattr(data, "labels"):  # a FaceSet
        images = data.float_images()
        labels = data.labels if labels is None else labels
    else:
        images = data
        if labels is None:
            raise ValueError("class_mean_cams needs labels= when given an image tensor")
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    return images, labels
