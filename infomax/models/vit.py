"""Vision Transformer (Dosovitskiy et al., 2021, Eq. 1-4) in the DeiT sizes.

vit-tiny: dim 192, depth 12, heads 3; vit-small: dim 384, depth 12, heads 6
(Touvron et al., 2021, Table 1). Pre-norm blocks, a CLS token and learned position
embeddings for an `image_size` / `patch_size` grid; other input sizes interpolate
the grid embeddings bicubically (as DINO does). pooled = CLS token after the final
LayerNorm; tokens = the patch tokens after it, row-major.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Encoder, EncoderOutput

SIZES = {"vit-tiny": (192, 12, 3), "vit-small": (384, 12, 6)}


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(Encoder):
    """A ViT encoder; `name` is "vit-tiny" or "vit-small" (or give dim/depth/heads)."""

    def __init__(
        self,
        name: str = "vit-small",
        patch_size: int = 16,
        image_size: int = 224,
        dim: int | None = None,
        depth: int | None = None,
        heads: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__(mean, std)
        if name not in SIZES:
            raise ValueError(f"Unknown ViT `name` {name!r}; choose one of {sorted(SIZES)}.")
        d0, l0, h0 = SIZES[name]
        dim = d0 if dim is None else dim
        depth = l0 if depth is None else depth
        heads = h0 if heads is None else heads
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(f"`image_size` ({image_size}) must be a multiple of `patch_size` ({patch_size}).")
        if dim % heads:
            raise ValueError(f"`dim` ({dim}) must be divisible by `heads` ({heads}).")
        self.patch_size, self.grid = patch_size, image_size // patch_size
        self.patch_embed = nn.Conv2d(3, dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.name, self.dim, self.token_dim, self.input_size = name, dim, dim, image_size
        self.config = {
            "name": name, "patch_size": patch_size, "image_size": image_size, "dim": dim, "depth": depth,
            "heads": heads, "mean": list(map(float, mean)), "std": list(map(float, std)),
        }
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def position_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        """(1, 1 + grid_h * grid_w, dim); grid part resized bicubically if it differs."""
        if (grid_h, grid_w) == (self.grid, self.grid):
            return self.pos_embed
        cls_pos, grid_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        grid_pos = grid_pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos.float(), size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        grid_pos = grid_pos.to(cls_pos.dtype).flatten(2).transpose(1, 2)
        return torch.cat([cls_pos, grid_pos], dim=1)

    def encode(self, x: Tensor) -> EncoderOutput:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"Image size {h}x{w} must be a multiple of `patch_size` ({self.patch_size}); resize or crop the images."
            )
        patches = self.patch_embed(x)
        gh, gw = patches.shape[-2:]
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches.flatten(2).transpose(1, 2)], dim=1)
        tokens = self.norm(self.blocks(tokens + self.position_embedding(gh, gw)))
        return EncoderOutput(tokens[:, 0], tokens[:, 1:])


def vit_tiny(**options) -> ViT:
    return ViT("vit-tiny", **options)


def vit_small(**options) -> ViT:
    return ViT("vit-small", **options)

