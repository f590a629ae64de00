"""A small, fast ConvNet for CPU runs and tests.

Four conv3x3-BN-ReLU blocks of widths w, 2w, 4w, 8w (w = `width`, 32 by default), a
2x2 max-pool after each of the first three, so a 32x32 image ends as a 4x4 map of 8w
channels. pooled = global average (dim 8w); tokens = the last map flattened row-major.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Encoder


def _block(in_ch: int, out_ch: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ConvNet(Encoder):
    """Four-block ConvNet encoder with pooled dim 8 * `width`."""

    def __init__(
        self, width: int = 32, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__(mean, std)
        if int(width) < 1:
            raise ValueError(f"`width` must be a positive integer, got {width}.")
        width = int(width)
        widths = [3, width, 2 * width, 4 * width, 8 * width]
        self.features = nn.Sequential(*[_block(widths[i], widths[i + 1], pool=i < 3) for i in range(4)])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.name, self.dim, self.token_dim, self.input_size = "convnet", 8 * width, 8 * width, None
        self.config = {"name": "convnet", "width": width, "mean": list(map(float, mean)), "std": list(map(float, std))}
        self.block_prefixes = {f"block{i}": (f"features.{i}.",) for i in range(4)}

    def run_stages(self, x: Tensor, start: int, stop: int) -> Tensor:
        if start == 0 and min(x.shape[-2:]) < 8:
            raise ValueError(f"convnet needs images of at least 8x8 pixels, got {tuple(x.shape[-2:])}.")
        return self.features[start:stop](x)
