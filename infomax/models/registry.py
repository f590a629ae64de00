"""Build encoders by name; save and load our own `.safetensors` encoder checkpoints.

`build_encoder(name, **options)` accepts a registered name (`ENCODERS`), `hf:<model id>`
for a Hugging Face vision model, or a path ending in `.safetensors` written by
`save_encoder`. A checkpoint's tensors are the encoder's state_dict; its metadata key
`infomax_encoder` holds `json.dumps(encoder.config)`, enough to rebuild the
architecture before loading the weights strictly.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from ..runs.atomic import save_tensors
from .base import Encoder
from .convnet import ConvNet
from .efficientnet_lite import EfficientNetLite0
from .resnet import resnet18, resnet50
from .vit import vit_small, vit_tiny

METADATA_KEY = "infomax_encoder"

ENCODERS: dict[str, Callable[..., Encoder]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vit-tiny": vit_tiny,
    "vit-small": vit_small,
    "convnet": ConvNet,
    "efficientnet-lite0": EfficientNetLite0,
}


def build_encoder(name: str, **options) -> Encoder:
    """An encoder by registry name, `hf:<model id>`, `.safetensors` checkpoint path, or a run directory holding one."""
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"Encoder `name` must be a string, got {type(name).__name__}.")
    name = os.fspath(name)
    if os.path.isdir(name):  # a run directory: its exported encoder
        if not os.path.isfile(os.path.join(name, "encoder.safetensors")):
            raise ValueError(f"{name} is a folder without encoder.safetensors; name a finished pretrain or continue run, "
                             "an encoder .safetensors file, or an encoder name such as efficientnet-lite0.")
        name = os.path.join(name, "encoder.safetensors")
    if name.endswith(".safetensors"):
        if options:
            raise ValueError(
                f"A checkpoint path takes no options (got {sorted(options)}); its config is stored inside."
            )
        return load_encoder(name)
    if name.startswith("hf:"):
        from .hf import build_hf

        return build_hf(name[3:], **options)
    if name not in ENCODERS:
        raise ValueError(
            f"Unknown encoder {name!r}; known names: {', '.join(sorted(ENCODERS))}, "
            "or 'hf:<model id>', or a path to a '.safetensors' checkpoint."
        )
    try:
        return ENCODERS[name](**options)
    except TypeError as err:  # an unknown keyword: say which encoder and what it got
        raise ValueError(f"Bad options for encoder {name!r}: {err}") from err


def save_encoder(encoder: Encoder, path: str | os.PathLike) -> Path:
    """Write `encoder`'s weights and config to `path` atomically (temp file + os.replace)."""
    if not isinstance(encoder, Encoder):
        raise ValueError(f"`encoder` must be an infomax Encoder, got {type(encoder).__name__}.")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"Encoder checkpoints must end in '.safetensors', got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in encoder.state_dict().items()}
    metadata = {METADATA_KEY: json.dumps(encoder.config)}
    save_tensors(path, tensors, metadata)
    return path


def read_encoder_config(path: str | os.PathLike) -> dict:
    """The config stored in a checkpoint written by `save_encoder`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No encoder checkpoint at {str(path)!r}.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as error:  # safetensors' own error types: a truncated or foreign file
        raise ValueError(f"{str(path)!r} is not a readable safetensors file ({error}); it is damaged or not an encoder: "
                         "write it again with save_encoder (or `infomax pretrain`).") from None
    if METADATA_KEY not in metadata:
        raise ValueError(
            f"{str(path)!r} has no {METADATA_KEY!r} metadata, so it is not an infomax encoder checkpoint; "
            "write one with infomax.models.save_encoder."
        )
    try:
        config = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r}: its {METADATA_KEY!r} metadata is not JSON ({error}); the file is damaged.") from None
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"{str(path)!r}: its {METADATA_KEY!r} metadata names no architecture; the file is damaged.")
    return config


def load_encoder(path: str | os.PathLike, device: str = "cpu") -> Encoder:
    """Rebuild the architecture from the stored config and load the weights strictly."""
    from safetensors.torch import load_file

    config = read_encoder_config(path)
    name = str(config["name"])
    if name not in ENCODERS and not (name.startswith("hf:") and isinstance(config.get("hf_config"), dict)):
        raise ValueError(f"{str(path)!r}: its {METADATA_KEY!r} metadata names {name!r}, not an architecture written by "
                         "save_encoder; infomax loads only what you name, so the file is refused. Write it again with "
                         "save_encoder (or `infomax pretrain`).")
    if "pretrained" in config:
        config["pretrained"] = False  # the weights come from the checkpoint
    encoder = build_encoder(**config)
    try:
        tensors = load_file(str(path), device=device)
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise ValueError(f"{str(path)!r} is not a readable safetensors file ({error}); write it again with save_encoder.") from None
    check_tensors(encoder, tensors, str(path))
    encoder.load_state_dict(tensors, strict=True)
    return encoder.to(device)


def check_tensors(module, tensors: dict, where: str) -> None:
    """Refuse tensors that do not fit `module`, naming each missing, unexpected or mis-shaped one."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(f"{k} {tuple(tensors[k].shape)} != {expected[k]}" for k in set(expected) & set(tensors)
                    if tuple(tensors[k].shape) != expected[k])
    problems = [f"{label}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if items]
    if problems:
        raise ValueError(f"{where} does not fit {type(module).__name__} ({'; '.join(problems)}); "
                         "it was written for another architecture or is damaged: pass the matching encoder file.")
