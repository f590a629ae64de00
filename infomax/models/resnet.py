"""ResNet-18 and ResNet-50 (He et al., 2016, "Deep Residual Learning", Table 1).

Bottleneck blocks put the stride on the 3x3 convolution ("ResNet v1.5"). With
`cifar_stem=True` the 7x7/2 convolution and the max-pool are replaced by one 3x3/1
convolution, the usual change for 32x32 images (SimCLR, Appendix B.9), so the last
feature map is 4x4 at 32x32 instead of 1x1. solo-learn's CIFAR ResNets (solo/methods/base.py)
and the MIRA authors' (src/builder.py, cifar=True) pad that convolution by 2, not 1: `stem_padding=2`
(34x34 after the stem, a 5x5 last map at 32 px). `zero_init_residual` zeroes each block's last BN
weight (Goyal et al., 2017, Sec. 5.1; torchvision's option, which the SimSiam and MIRA authors' code
turn on).

pooled = global average of the last
feature map; tokens = that map flattened row-major.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Encoder


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, width, 3, stride, 1, bias=False), *_bn_relu(width),
            nn.Conv2d(width, out_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(out_ch),
        )
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        return (self.body(x) + self.shortcut(x)).relu_()


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, width, 1, bias=False), *_bn_relu(width),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), *_bn_relu(width),
            nn.Conv2d(width, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch),
        )
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        return (self.body(x) + self.shortcut(x)).relu_()


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


_LAYOUTS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}


class ResNet(Encoder):
    """A ResNet encoder; `name` is "resnet18" or "resnet50"."""

    def __init__(
        self,
        name: str = "resnet50",
        cifar_stem: bool = False,
        zero_init_residual: bool = False,
        stem_padding: int = 1,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__(mean, std)
        if name not in _LAYOUTS:
            raise ValueError(f"Unknown ResNet `name` {name!r}; choose one of {sorted(_LAYOUTS)}.")
        block, depths = _LAYOUTS[name]
        if stem_padding not in (1, 2):
            raise ValueError(f"`stem_padding` must be 1 (SimCLR App. B.9) or 2 (solo-learn, the MIRA authors), got {stem_padding!r}.")
        if cifar_stem:
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, stem_padding, bias=False), *_bn_relu(64))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False), *_bn_relu(64), nn.MaxPool2d(3, 2, 1)
            )
        stages, in_ch = [], 64
        for i, depth in enumerate(depths):
            width = 64 * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(block(in_ch, width, 2 if (i > 0 and j == 0) else 1))
                in_ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.name, self.dim, self.token_dim = name, in_ch, in_ch
        self.input_size = 32 if cifar_stem else 224
        self.config = {
            "name": name, "cifar_stem": bool(cifar_stem), "zero_init_residual": bool(zero_init_residual),
            "stem_padding": int(stem_padding), "mean": list(map(float, mean)), "std": list(map(float, std)),
        }
        self._init_weights(zero_init_residual)
        self.block_prefixes = {"stem": ("stem.",), **{f"layer{i + 1}": (f"stages.{i}.",) for i in range(len(depths))}}

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # Goyal et al., 2017, Sec. 5.1: each block starts as identity
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.body[-1].weight)

    def feature_map(self, x: Tensor) -> Tensor:
        """Last stage output (N, dim, h, w) for normalised input."""
        return self.run_stages(x, 0, len(self.block_prefixes))

    def run_stages(self, x: Tensor, start: int, stop: int) -> Tensor:
        if start == 0 and stop > 0:
            x = self.stem(x)
        return self.stages[max(start, 1) - 1 : stop - 1](x) if stop > 1 else x


def resnet18(**options) -> ResNet:
    return ResNet("resnet18", **options)


def resnet50(**options) -> ResNet:
    return ResNet("resnet50", **options)
