"""Load weights from a local file (timm/torchvision ImageNet or our own) and save them.

Only tensors are read: ``.pth``/``.pt`` through ``torch.load(weights_only=True)`` (never
arbitrary pickled objects) and ``.safetensors``. A classifier of another shape (1000
ImageNet classes vs 5) is replaced by the model's fresh head; any other difference is an
error that lists the keys.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from apexmer.errors import WeightsError

_NESTED_KEYS = ("state_dict", "model_state_dict", "model")
_SHOWN = 10  # keys listed per category in an error message


@dataclass
class LoadReport:
    """What ``load_pretrained`` did: tensors loaded, head replaced, keys skipped."""

    path: str
    loaded: int
    replaced_head: list[str] = field(default_factory=list)  # classifier kept fresh
    missing: list[str] = field(default_factory=list)  # only when strict=False
    unexpected: list[str] = field(default_factory=list)  # only when strict=False
    mismatched: list[str] = field(default_factory=list)  # only when strict=False


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` from a local weights file (no model needed)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"{path}: no such weights file. Fix: give the path of a local "
            ".pth, .pt or .safetensors file (nothing is downloaded)."
        )
    obj = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    return _strip_prefix(_unnest(obj, path))


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise WeightsError(
            f"{path}: not a readable safetensors file ({exc}). Fix: re-export "
            "it with safetensors.torch.save_file."
        ) from exc


def _read_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses arbitrary Python objects (code could run on unpickling).
        reason = _unpickler_reason(str(exc))
        if "Unsupported global" in reason:
            raise WeightsError(
                f"{path}: holds Python objects besides tensors, which are not loaded for "
                f"safety ({reason}). Fix: save only the state dict, "
                "torch.save(model.state_dict(), path), or convert it to .safetensors."
            ) from exc
        raise WeightsError(
            f"{path}: not a PyTorch weights file ({reason}). Fix: give a "
            ".pth, .pt or .safetensors file with a state dict."
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsError(
            f"{path}: not a PyTorch weights file ({exc}). Fix: give a .pth, "
            ".pt or .safetensors file with a state dict."
        ) from exc


def _unpickler_reason(message: str) -> str:
    # torch's message is a page of advice (including weights_only=False, which we refuse);
    # keep the line that says what was found.
    text = " ".join(message.split())
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].split(" Please ")[0].split(" Check the ")[0]
    return text.strip().rstrip(".")[:200]


def _unnest(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _NESTED_KEYS:  # training checkpoints keep the weights under one key
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(
            f"{path}: holds {type(obj).__name__}, not a state dict. Fix: save "
            "model.state_dict() (or a dict with it under 'state_dict')."
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(
            f"{path}: entries that are not tensors: {_listing(bad)}. Fix: keep "
            f"the weights under one of {list(_NESTED_KEYS)} or save them alone."
        )
    return obj


def _strip_prefix(sd: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    # DistributedDataParallel / DataParallel save the wrapped model's names.
    return {k.removeprefix(prefix): v for k, v in sd.items()}


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return f"{len(keys)} [{shown}{more}]"


def _model_name(model: nn.Module) -> str | None:
    info = getattr(model, "model_info", None)
    return getattr(info, "name", None)


# Functions naming the registered architectures a state dict fits, for the error hint. The
# registry knows the architectures (and imports this module): it adds its own on import,
# so this module never imports it.
IDENTIFIERS: list[Callable[[dict[str, torch.Tensor]], list[str]]] = []


def _likely_cause(model: nn.Module, sd: dict[str, torch.Tensor]) -> str:
    file_arch = [name for identify in IDENTIFIERS for name in identify(sd)]
    model_arch = _model_name(model) or type(model).__name__
    if file_arch and model_arch not in file_arch:
        return (
            f"weights of a different architecture? this looks like {' / '.join(file_arch)} "
            f"but the model is {model_arch}. Fix: create the model named like the file, "
            "or use weights for this model."
        )
    return (
        "the file may be from another library's variant (other key names) or a modified "
        "network. Fix: use weights saved from this network, or load with strict=False."
    )


def load_pretrained(
    model: nn.Module, path: str | Path, strict: bool = True, classifier: str = "fc"
) -> LoadReport:
    """Load a local weights file into ``model`` in place.

    The classifier (``fc.weight``, ``fc.bias``) is skipped when its shape differs, so the
    model keeps its fresh head. With ``strict=True`` any other missing or unexpected key, or
    a shape mismatch, raises ``WeightsError`` listing the keys; with ``strict=False`` those
    are skipped and listed in the report. A missing ``num_batches_tracked`` (old torchvision
    files) is not an error.
    """
    sd = read_state_dict(path)
    own = model.state_dict()
    head = f"{classifier}."

    replaced = [k for k in sd if k.startswith(head) and k in own and sd[k].shape != own[k].shape]
    # Swapping in a fresh head: the whole classifier goes, never half of it.
    if replaced:
        replaced = [k for k in sd if k.startswith(head)]
    missing = [
        k
        for k in own
        if k not in sd and not k.endswith("num_batches_tracked") and k not in replaced
    ]
    unexpected = [k for k in sd if k not in own and k not in replaced]
    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sd
        if k in own and k not in replaced and sd[k].shape != own[k].shape
    ]

    if strict and (missing or unexpected or mismatched):
        parts = [
            f"{name} keys: {_listing(keys)}"
            for name, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape-mismatched", mismatched),
            )
            if keys
        ]
        raise WeightsError(
            f"{path}: does not fit the network; " + "; ".join(parts) + ". Likely "
            f"cause: {_likely_cause(model, sd)}"
        )

    skip = set(replaced) | {m.split(" ")[0] for m in mismatched}
    to_load = {k: v for k, v in sd.items() if k in own and k not in skip}
    model.load_state_dict(to_load, strict=False)
    return LoadReport(
        path=str(path),
        loaded=len(to_load),
        replaced_head=replaced,
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
    )


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Write ``model.state_dict()`` to a ``.safetensors`` file, with its metadata if known."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(
            f"{path}: save_weights writes safetensors. Fix: name the file *.safetensors."
        )
    info = getattr(model, "model_info", None)
    metadata = {"format": "pt"}
    if info is not None:
        metadata["apexmer_model"] = info.name
        metadata["input_size"] = json.dumps(list(info.input_size))
        metadata["mean"] = json.dumps(list(info.mean))
        metadata["std"] = json.dumps(list(info.std))
    if hasattr(model, "num_classes"):
        metadata["num_classes"] = str(model.num_classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)
    return path
