"""`infomax export`: an encoder as a file other tools load without infomax.

    torchscript  torch.jit.load(path)(images) -> features
    onnx         onnxruntime.InferenceSession(path).run(None, {"images": images}) -> [features]
                 (needs the onnx and onnxscript packages: pip install 'infomax[onnx]')

Both take float images (N, 3, H, W) in [0, 1] at the export's resolution, any N, and return the
pooled features (N, D) the encoder gives evaluate and embed: its normalisation is inside the graph.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..runs.atomic import replacing
from .registry import build_encoder

FORMATS = ("torchscript", "onnx")
NEEDS = {"onnx": ("onnx", "onnxscript")}


class PooledFeatures(nn.Module):
    """The encoder's pooled output alone: one tensor in, one out, as the exported graph's signature."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images).pooled


def export(encoder: str, out: Path, fmt: str, resolution: int | None = None) -> dict:
    """Write `encoder` (any name build_encoder takes) to `out` in `fmt`; what was written, as a dict."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    missing = [name for name in NEEDS.get(fmt, ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"--format {fmt} needs the {' and '.join(missing)} package(s): pip install 'infomax[{fmt}]'.")
    net = build_encoder(encoder).eval()
    resolution = resolution or net.input_size or 224
    model = PooledFeatures(net).eval()
    example = torch.rand(2, 3, resolution, resolution)
    out = Path(out)
    with replacing(out) as tmp, torch.no_grad():
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(model, example), str(tmp))
        else:
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(model, (example,), input_names=["images"], output_names=["features"],
                                        dynamic_shapes={"images": {0: batch}}, dynamo=True, verbose=False)
            program.save(str(tmp))
    return {"encoder": encoder, "format": fmt, "file": str(out), "resolution": resolution, "dim": net.dim}
