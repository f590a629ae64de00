"""`infomax predict --run DIR images...`: the fine-tuned classifier on new image files.

Needs only the run directory's `head.safetensors` (which records the backbone config, its
weights fingerprint, the resolution, token grid and class names) and the backbone's weights;
the training data is not read.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.augment import center_resize, to_float_images
from ..data.features import pool_tokens
from ..data.formats import IMAGE_SUFFIXES, decode_image
from ..models import build_encoder, fingerprint
from .. import config as C
from .finetune import FLAGS, build_method, configure
from ..runs.rundir import load_tensors


def image_files(paths: list[str]) -> list[Path]:
    files = []
    for given in map(Path, paths):
        if given.is_dir():
            files += sorted(p for p in given.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif given.is_file():
            files.append(given)
        else:
            raise FileNotFoundError(f"{given}: no such image file or folder.")
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(paths)}.")
    return files


def load_classifier(run: Path):
    path = Path(run) / "head.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {run} is not a finished `infomax finetune` run.")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        record = json.loads(f.metadata()["infomax_finetune"])
    spec = record["features"]
    config = run_config(record["config"])
    method = build_method(config, spec["token_dim"], spec["dim"], len(record["classes"]))
    method.load_state_dict(load_tensors(path))
    backbone = config.model.backbone
    encoder = build_encoder(backbone, **config.model.options)
    if fingerprint(encoder) != spec["weights"]:
        raise ValueError(f"the backbone {backbone} now has other weights than the run was trained on; "
                         "restore the checkpoint or package version used then, or fine-tune again.")
    return method.eval(), encoder.eval(), spec, record["classes"]


def run_config(recorded: dict) -> C.TrainConfig:
    """The config a head was trained with: its config tree, or the flat settings of runs written before the
    tree (their config.json), read through finetune's flag words; settings those runs had and the method
    does not (TwinTURBO's weights on a FixMatch run) are dropped."""
    if isinstance(recorded.get("method"), dict):
        return C.build_config(recorded)
    from ..methods import settings_of

    fields = set(settings_of(recorded.get("method", "twinturbo")).__dataclass_fields__)
    words = {w: v for w, v in recorded.items()
             if w in FLAGS and (w == "method" or not FLAGS[w].startswith("method.") or FLAGS[w].split(".")[1] in fields)}
    return configure(**words)


@torch.no_grad()
def predict(run: Path, paths: list[str]):
    """One row per image, yielded as soon as it is classified; an unreadable image yields a row with
    its "error" instead of a class, and the rest go on."""
    from ..data.formats import DataFormatError

    method, encoder, spec, classes = load_classifier(run)
    for path in image_files(paths):
        try:
            image = decode_image(path.read_bytes(), str(path))
        except (DataFormatError, OSError, ValueError) as error:
            yield {"image": str(path), "error": str(error)}
            continue
        if spec["channels"] == 1:  # a grey dataset: show the model a grey image, as in training
            image = np.round(image @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
        x = center_resize(to_float_images(torch.from_numpy(image)[None], channels=None), spec["resolution"])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.get("precision") == "bf16-mixed"):
            pooled, tokens = encoder(x)
        pooled, tokens = pooled.float(), None if tokens is None else tokens.float()
        tokens = pool_tokens(tokens, spec["token_grid"]) if spec["token_dim"] is not None else None
        probabilities = method.predict(tokens, pooled)[0]
        best = int(probabilities.argmax())
        yield {"image": str(path), "class": classes[best], "probability": round(float(probabilities[best]), 4)}
