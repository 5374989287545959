"""Saved models: a plain state dict (.pt) plus a small JSON of metadata (classes, preprocessing, backbone,
and the sha256 of the weights file, checked at load so a damaged or swapped file is refused).

Loading always uses ``weights_only=True``: a file that carries pickled code is refused, never executed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from compound_fer import taxonomy
from compound_fer.errors import WeightsError, brief_load_error
from compound_fer.io import atomic_write, write_json
from compound_fer.models import build_model

log = logging.getLogger(__name__)

FORMAT = "compound_fer/state_dict-v1"
_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"  # torch.save's zip container; the legacy pickle format (protocol >= 2)


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(model: torch.nn.Module, path: str | Path, *, meta: dict[str, Any]) -> Path:
    """Write ``path`` (state dict) and ``path.with_suffix('.json')`` (metadata + the weights' sha256),
    both atomically."""
    path = Path(path)
    required = {"classes", "backbone", "image_size"}
    missing = required - set(meta)
    if missing:
        raise ValueError(f"save_model: metadata lacks {sorted(missing)}")
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    atomic_write(path, lambda f: f.write(buf.getbuffer()), binary=True)
    digest = hashlib.sha256(buf.getbuffer()).hexdigest()
    write_json(path.with_suffix(".json"), {**meta, "format": FORMAT, "sha256": digest})
    return path


def _check_kind(path: Path) -> None:
    """Refuse, with a message naming ``path``, a file that is not a torch file at all (text, JSON, image)."""
    if path.suffix.lower() == ".json":
        raise WeightsError(f"{path} is a model's metadata sidecar, not its weights: give the .pt file next to it "
                           f"({path.with_suffix('.pt')})")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(_ZIP) or head.startswith(_PICKLE)):
        kind = "empty" if not head else ("a text file" if _is_text(path) else "not a PyTorch file")
        raise WeightsError(f"{path} is {kind}, not model weights saved by torch.save (a .pt state dict)")


def _is_text(path: Path) -> bool:
    with open(path, "rb") as f:
        sample = f.read(4096)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in sample


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` with weights_only=True; pickled code or a broken file is a WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    _check_kind(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path} holds more than tensors (pickled code or objects), so it was NOT loaded: "
            "only plain state dicts are accepted. Re-save it with torch.save(model.state_dict(), path). "
            f"Detail: {str(err).splitlines()[0]}"
        ) from None
    except Exception as err:  # noqa: BLE001 - torch reports a damaged file as RuntimeError, EOFError, KeyError...
        raise WeightsError(f"{path} is not a readable torch file (truncated or corrupt?): "
                           f"{type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a state dict (a mapping of parameter names to tensors)")
    return state


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata sidecar of model file ``path`` (``path.with_suffix('.json')``), checked for classes/backbone."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise WeightsError(f"metadata {meta_path} not found next to {path}: it names the classes and backbone")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["classes"] = list(meta["classes"])
        str(meta["backbone"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise WeightsError(f"metadata {meta_path} is unreadable or lacks 'classes'/'backbone': {err}") from None
    return meta


def verify_weights(path: str | Path, meta: dict[str, Any]) -> None:
    """Refuse ``path`` when its sha256 differs from the one its sidecar recorded at save time."""
    path = Path(path)
    expected = meta.get("sha256")
    if expected is None:  # saved before checksums existed: loadable, but say that nothing was checked
        log.warning("%s has no sha256 in its metadata (saved by an older version): its integrity is not checked",
                    path.with_suffix(".json"))
        return
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsError(f"{path} does not match the sha256 recorded in {path.with_suffix('.json')} "
                           f"({actual[:12]}... != {str(expected)[:12]}...): the weights file was changed or "
                           "damaged after it was saved; it was NOT loaded")


def _class_order(meta: dict[str, Any], meta_path: Path) -> list[int]:

    try:
        return [taxonomy.label_of(str(n)) for n in meta["classes"]]
    except (KeyError, ValueError, LookupError) as err:
        raise WeightsError(f"metadata {meta_path} lists a class that is not a known category: {err}") from None


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a saved model from its metadata JSON, check the weights' sha256 and load them safely.

    The model's ``class_order`` (global label of each output column) is restored from the metadata.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        _check_kind(path)
    if not path.is_file():
        raise WeightsError(f"model file not found: {path}")
    meta = read_meta(path)
    classes, backbone = meta["classes"], meta["backbone"]
    order = _class_order(meta, path.with_suffix(".json"))
    verify_weights(path, meta)
    model = build_model(backbone, num_classes=len(classes), pretrained=False, head=meta.get("head", "linear"),
                        image_size=int(meta.get("image_size", 112)))
    if meta.get("geometry"):  # fused landmark geometry: its statistics are buffers, loaded with the weights
        from compound_fer.fusion import GeometryEncoder

        n = int(meta["geometry"]["features"])
        model.attach_geometry(GeometryEncoder(mean=torch.zeros(n), std=torch.ones(n),
                                              weight=float(meta["geometry"].get("weight", 1.0))))
    state = load_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"{path} does not fit a {backbone} with {len(classes)} classes: "
                           f"{brief_load_error(err)}") from None
    model.class_order = order
    model.eval()
    return model, meta


__all__ = ["FORMAT", "load_model", "load_state_dict", "read_meta", "save_model", "sha256_of", "verify_weights"]
