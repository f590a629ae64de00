"""Partial fine-tuning: an encoder cut before one of its blocks into a frozen trunk and a trainable tail.

`split(encoder, "block11")` gives
  Trunk  images -> the activation entering block11, flattened (an Encoder, so the feature cache
         stores it like any pooled output; its state_dict and so its fingerprint hold only the
         trunk's weights, so training the tail never invalidates cached activations);
  Tail   that activation -> the encoder's pooled output through blocks block11 ... (what a method
         trains; `Tail.encoder` is the whole encoder, exported at the end with the trained tail).
The trunk runs in eval mode (batch-norm running statistics), as when its activations are cached.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Encoder, EncoderOutput


def block_index(encoder: Encoder, block: str) -> int:
    names = list(encoder.block_prefixes)
    if not names:
        encoder.run_stages(None, 0, 0)  # raises: this encoder cannot be cut
    if block not in names:
        raise ValueError(f"{encoder.name} has no block {block!r}; its blocks, in order: {', '.join(names)}.")
    if names.index(block) == 0:
        raise ValueError(f"--train-from {block} freezes nothing (it is the first block); drop --train-from to train "
                         f"the whole network, or name a later block ({', '.join(names[1:4])}, ...).")
    return names.index(block)


def trunk_keys(encoder: Encoder, start: int) -> list[str]:
    prefixes = tuple(p for name in list(encoder.block_prefixes)[:start] for p in encoder.block_prefixes[name])
    return [k for k in encoder.state_dict() if k.startswith(prefixes) or k in ("input_mean", "input_std")]


class Trunk(Encoder):
    """The frozen blocks before `block`: images -> flattened activation (N, C*H*W); no tokens."""

    def __init__(self, encoder: Encoder, block: str):
        super().__init__()
        self.start = block_index(encoder, block)
        object.__setattr__(self, "whole", encoder)  # not a submodule: the state_dict below is the trunk's alone
        self.name, self.token_dim, self.input_size = f"{encoder.name}<{block}", None, encoder.input_size
        self.config = {**encoder.config, "trunk_until": block}
        self.dim = 0  # known once an image size is: the flattened activation

    def state_dict(self, *args, **kwargs):
        full = self.whole.state_dict()
        return {k: full[k] for k in trunk_keys(self.whole, self.start)}

    def train(self, mode: bool = True):
        self.whole.eval()
        return super().train(mode)

    def to(self, *args, **kwargs):
        self.whole.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def feature_map(self, images: Tensor) -> Tensor:
        was = self.whole.training
        self.whole.eval()
        try:
            return self.whole.run_stages(self.whole.normalise(images), 0, self.start)
        finally:
            self.whole.train(was)

    def forward(self, images: Tensor) -> EncoderOutput:
        return EncoderOutput(self.feature_map(images).flatten(1), None)


class Tail(nn.Module):
    """Blocks from `block` to the end of `encoder` on flattened trunk activations of shape `shape`.

    Only the tail's parameters train (the trunk's are frozen here); `encoder` is the whole network."""

    def __init__(self, encoder: Encoder, block: str, shape: tuple[int, int, int]):
        super().__init__()
        self.start, self.shape, self.encoder = block_index(encoder, block), tuple(shape), encoder
        self.dim, self.name, self.block = encoder.dim, encoder.name, block
        frozen = set(trunk_keys(encoder, self.start))
        for name, parameter in encoder.named_parameters():
            parameter.requires_grad_(name not in frozen)

    def forward(self, activations: Tensor) -> EncoderOutput:
        if activations.ndim != 2 or activations.shape[1] != math.prod(self.shape):
            raise ValueError(f"the tail from {self.block} takes flattened activations of {math.prod(self.shape)} values "
                             f"({self.shape}), got {tuple(activations.shape)}.")
        fmap = activations.view(-1, *self.shape)
        return self.encoder.pool(self.encoder.run_stages(fmap, self.start, len(self.encoder.block_prefixes)))


def split(encoder: Encoder, block: str, image_size: int) -> tuple[Trunk, Tail]:
    """The trunk and tail of `encoder` cut before `block`, for images of side `image_size`."""
    trunk = Trunk(encoder, block)
    with torch.no_grad():
        fmap = trunk.feature_map(torch.zeros(2, 3, image_size, image_size, device=encoder.input_mean.device))
    trunk.dim = fmap[0].numel()
    return trunk, Tail(encoder, block, tuple(fmap.shape[1:]))
