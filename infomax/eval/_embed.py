"""Input checks and row sampling shared by the geometry metrics (`infomax.eval.geometry`).

Embeddings arrive as torch tensors or numpy arrays and leave as float64 tensors; bad
shapes, NaN rows and mismatched labels raise a ValueError that names the fix.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def as_embeddings(name: str, z, min_rows: int = 2) -> torch.Tensor:
    if isinstance(z, np.ndarray):
        z = torch.from_numpy(z)
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor or numpy array of shape (N, D), got {type(z).__name__}.")
    if z.ndim != 2:
        raise ValueError(f"`{name}` must have shape (N, D), got {tuple(z.shape)}; flatten or pool features first.")
    if z.dtype == torch.bool or z.is_complex():
        raise ValueError(f"`{name}` must hold real numbers, got {z.dtype}.")
    if z.shape[0] < min_rows:
        raise ValueError(f"`{name}` needs at least {min_rows} rows (samples) to measure geometry, got {z.shape[0]}.")
    if z.shape[1] < 1:
        raise ValueError(f"`{name}` needs at least one feature column, got shape {tuple(z.shape)}.")
    bad = int((~torch.isfinite(z).all(dim=1)).sum()) if z.is_floating_point() else 0
    if bad:
        raise ValueError(f"`{name}` has {bad} of {z.shape[0]} rows with NaN or inf; the encoder diverged or its "
                         f"input held NaNs. Fix that, or drop the rows: z[torch.isfinite(z).all(dim=1)].")
    return z.double()


def as_labels(labels, n: int) -> torch.Tensor:
    """One integer class index per row; strings or other hashables are mapped to indices."""
    if not isinstance(labels, torch.Tensor):
        arr = np.asarray(labels)
        if arr.dtype.kind in "fc":
            raise ValueError(f"`labels` must be class indices or names, got {arr.dtype} values; pass integers.")
        if arr.dtype.kind not in "iu":
            arr = np.unique(arr.reshape(-1), return_inverse=True)[1].reshape(arr.shape)
        labels = torch.from_numpy(np.ascontiguousarray(arr))
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"`labels` must be 1-D class indices, got shape {tuple(labels.shape)} and dtype {labels.dtype}.")
    if labels.shape[0] != n:
        raise ValueError(f"`labels` has {labels.shape[0]} entries but `z` has {n} rows; pass one label per row.")
    return labels.long()


def as_pair(z: torch.Tensor, z_pair) -> torch.Tensor:
    x = as_embeddings("z_pair", z_pair, min_rows=1)
    if x.shape != z.shape:
        raise ValueError(f"`z_pair` {tuple(x.shape)} must have the shape of `z` {tuple(z.shape)}: row i of each is a view of one input.")
    return x.to(z.device)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1)


def sample_rows(n: int, max_samples: int | None, seed: int) -> torch.Tensor | None:
    if max_samples is None or n <= max_samples:
        return None
    if max_samples < 2:
        raise ValueError(f"`max_samples` must be at least 2, got {max_samples}.")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:max_samples].sort().values


def take_rows(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    return x if index is None else x[index.to(x.device)]


def input_eps(z) -> float:
    """Machine epsilon for rank tolerances: float64's for float64 and integer input, else
    float32's (float16 / bfloat16 embeddings are judged as if cast to float32)."""
    dtype = z.dtype if isinstance(z, torch.Tensor) else torch.from_numpy(np.asarray(z[:0])).dtype
    return torch.finfo(torch.float64 if dtype == torch.float64 or not dtype.is_floating_point else torch.float32).eps
