"""Projection heads, predictors and the prototype head of the SSL methods.

Defaults follow each paper: Barlow Twins (Zbontar et al., 2021, Sec. 3) and VICReg
(Bardes et al., 2022, Sec. 4.2) use 8192-8192-8192; SimCLR (Chen et al., 2020, Sec.
2.1) one hidden layer and 128 outputs; MIRA (Lee, 2022, Sec. 4) [2048, 2048, 256];
SwAV (Caron et al., 2020, App. A) 2048-128; HyDeS (hydes paper, Sec. VII-A: the output width,
128 to 4096, made no difference; the hidden widths are not stated) 2048-2048-256; SMI (smi paper, App.: "following Barlow Twins") 4096-4096-4096; BYOL (Grill et al., 2020, Sec. 3.3)
4096-256 for projector and predictor; SimSiam (Chen & He, 2021, Sec. 4) a 2048-wide
3-layer projector with BN on its output (without affine parameters, and its last linear without
bias: the authors' simsiam/builder.py) and a 512-wide bottleneck predictor. LeJEPA (Balestriero &
LeCun, 2025): Linear-BN-ReLU x 2 at 2048 (the authors' MINIMAL.md) and 64 outputs (Table 1d: 64
beats 1024; lightly's LeJEPAProjectionHead default).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "silu": nn.SiLU}

# kind -> (hidden widths, output width, batch norm on the output)
PROJECTORS: dict[str, tuple[tuple[int, ...], int, bool]] = {
    "barlow": ((8192, 8192), 8192, False),
    "vicreg": ((8192, 8192), 8192, False),
    "simclr": ((2048,), 128, False),
    "smi": ((4096, 4096), 4096, False),
    "mira": ((2048, 2048), 256, False),
    "swav": ((2048,), 128, False),
    "byol": ((4096,), 256, False),
    "simsiam": ((2048, 2048), 2048, True),
    "hydes": ((2048, 2048), 256, False),
    "lejepa": ((2048, 2048), 64, False),
}
PREDICTORS: dict[str, int] = {"byol": 4096, "simsiam": 512}  # hidden width; output = input width


class MLP(nn.Sequential):
    """Linear layers with (BatchNorm and) activation between them.

    Hidden linears drop their bias when followed by BatchNorm; with `last_batch_norm`
    the output passes through a BatchNorm1d too (SimSiam's projector: `last_affine=False`).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        batch_norm: bool = True,
        last_batch_norm: bool = False,
        activation: str = "relu",
        last_affine: bool = True,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown `activation` {activation!r}; choose one of {sorted(ACTIVATIONS)}.")
        widths = [int(in_dim), *map(int, hidden_dims), int(out_dim)]
        if min(widths) < 1:
            raise ValueError(f"MLP widths must be positive, got {widths}.")
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-2], widths[1:-1]):
            layers.append(nn.Linear(a, b, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(widths[-2], widths[-1], bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(widths[-1], affine=last_affine))
        super().__init__(*layers)
        self.in_dim, self.out_dim = widths[0], widths[-1]


def projector(
    kind: str,
    in_dim: int,
    hidden_dim: int | None = None,
    out_dim: int | None = None,
    num_layers: int | None = None,
    **options,
) -> MLP:
    """The projection head of method `kind` with its paper's widths, each overridable.

    `num_layers` counts Linear layers (hidden + output). Extra `options` go to `MLP`.
    """
    if kind not in PROJECTORS:
        raise ValueError(f"Unknown projector `kind` {kind!r}; choose one of {sorted(PROJECTORS)}.")
    hidden, out, last_bn = PROJECTORS[kind]
    layers = num_layers if num_layers is not None else len(hidden) + 1
    if layers < 1:
        raise ValueError(f"`num_layers` must be at least 1, got {num_layers}.")
    width = hidden_dim if hidden_dim is not None else hidden[0]
    options.setdefault("last_batch_norm", last_bn and options.get("batch_norm", True))  # batch_norm=False: none at all
    if last_bn:
        options.setdefault("last_affine", False)  # SimSiam's builder.py: BatchNorm1d(dim, affine=False)
    return MLP(in_dim, [width] * (layers - 1), out_dim if out_dim is not None else out, **options)


def predictor(in_dim: int, hidden_dim: int = PREDICTORS["byol"], out_dim: int | None = None) -> MLP:
    """BYOL / SimSiam predictor: Linear-BN-ReLU-Linear (SimSiam: in 2048, hidden 512)."""
    return MLP(in_dim, [hidden_dim], out_dim if out_dim is not None else in_dim)


class PrototypeHead(nn.Module):
    """L2-normalised input times unit-norm prototypes: cosine scores (N, K), no bias.

    Equivalent to SwAV/DINO/MIRA's weight-normalised linear layer with its norm
    (weight_g) frozen at 1: the raw `weight` (K, dim) is normalised row-wise on use.
    """

    def __init__(self, dim: int, num_prototypes: int) -> None:
        super().__init__()
        if dim < 1 or num_prototypes < 1:
            raise ValueError(f"`dim` and `num_prototypes` must be positive, got {dim} and {num_prototypes}.")
        self.weight = nn.Parameter(torch.empty(num_prototypes, dim))
        nn.init.normal_(self.weight, std=dim**-0.5)

    def prototypes(self) -> Tensor:
        """The unit-norm prototype rows (K, dim)."""
        return F.normalize(self.weight, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"PrototypeHead expects input of shape (N, {self.weight.shape[1]}), got {tuple(x.shape)}.")
        return F.linear(F.normalize(x, dim=1), self.prototypes())
