"""The encoder contract every backbone follows, and a weight fingerprint.

An encoder takes float images (N, 3, H, W) in [0, 1], applies its OWN input
normalisation (buffers `input_mean`, `input_std`, shape (1, 3, 1, 1)) and returns an
`EncoderOutput`: a pooled vector per image and, where the network has them, its patch
or spatial tokens in row-major order over the grid. Grey images (N, 1, H, W) are
repeated to three channels. Subclasses implement `encode(x)` on normalised input and
set `dim`, `token_dim`, `input_size`, `name` and `config`
(`build_encoder(**config)` rebuilds the same architecture).

A convolutional encoder can also be cut between its blocks (`block_prefixes`: name -> the
state_dict prefixes of that block's weights, in order; `run_stages(x, start, stop)` runs blocks
[start, stop);
`pool(feature_map)`), which partial fine-tuning needs (models/partial.py).
"""
from __future__ import annotations

import hashlib
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class EncoderOutput(NamedTuple):
    """`pooled` (N, D); `tokens` (N, T, C) row-major over the grid, or None."""

    pooled: Tensor
    tokens: Tensor | None


def _triple(name: str, values: Sequence[float]) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != 3:
        raise ValueError(f"`{name}` needs one value per RGB channel (3 values), got {len(values)}.")
    return values


class Encoder(nn.Module):
    """Base class: input checks, grey-to-RGB, normalisation, then `encode`."""

    dim: int
    token_dim: int | None
    input_size: int | None
    name: str
    config: dict[str, Any]

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        mean, std = _triple("mean", mean), _triple("std", std)
        if min(std) <= 0:
            raise ValueError(f"`std` must be positive per channel, got {std}.")
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1))

    def normalise(self, images: Tensor) -> Tensor:
        """Check shape and dtype, repeat grey to RGB, and apply (x - mean) / std."""
        if not isinstance(images, Tensor):
            raise ValueError(f"`images` must be a torch.Tensor of shape (N, 3, H, W), got {type(images).__name__}.")
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"`images` must have shape (N, 3, H, W) (or (N, 1, H, W) for grey), got {tuple(images.shape)}; "
                "add a batch dimension with images.unsqueeze(0) or move channels first with images.permute(0, 3, 1, 2)."
            )
        if not images.is_floating_point():
            raise ValueError(
                f"`images` must be floating point with values in [0, 1], got {images.dtype}; use images.float() / 255."
            )
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        dtype = self.input_mean.dtype
        return (images.to(dtype) - self.input_mean) / self.input_std

    block_prefixes: dict[str, tuple[str, ...]] = {}

    def encode(self, x: Tensor) -> EncoderOutput:
        if not self.block_prefixes:  # pragma: no cover - abstract
            raise NotImplementedError
        return self.pool(self.run_stages(x, 0, len(self.block_prefixes)))

    def run_stages(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Blocks [start, stop) of the network on a feature map (block 0 takes the normalised images)."""
        raise ValueError(f"{self.name} cannot be cut between stages; partial fine-tuning supports "
                         "efficientnet-lite0, resnet18/50 and convnet.")

    def pool(self, fmap: Tensor) -> EncoderOutput:
        return EncoderOutput(fmap.mean(dim=(2, 3)), flatten_tokens(fmap))

    def forward(self, images: Tensor) -> EncoderOutput:
        return self.encode(self.normalise(images))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dim={self.dim}, token_dim={self.token_dim}, input_size={self.input_size}"


def flatten_tokens(feature_map: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, H*W, C), row-major over the grid."""
    return feature_map.flatten(2).transpose(1, 2)


def fingerprint(module: nn.Module) -> str:
    """SHA-256 hex digest of a module's state_dict: sorted names, dtypes, shapes and bytes.

    Equal weights give equal digests on any device; any change of a weight, buffer,
    dtype or name changes it. Used to key cached features.
    """
    digest = hashlib.sha256()
    state = module.state_dict()
    for key in sorted(state):
        tensor = state[key].detach()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        data = tensor.to("cpu").contiguous().reshape(-1).view(torch.uint8)
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()
