"""The frozen-feature cache against the bare backbone (issue 3 targets).

1. Extraction throughput: `extract_features` (views, fp16 memmap writes, progress file) vs the
   bare `encoder(center_resize(x))` forward over the same images in the same batches, both
   under inference mode, run back to back in this process. Target: ratio >= 0.9. With K
   augmented views the reference does (1 + K) bare forwards, so the ratio also charges the
   augmentation to us.
2. Head training: S AdamW steps of a linear head + MLP on batches of B from the in-memory
   cache vs the same steps where each batch's features are recomputed by the frozen backbone
   from images. Target: ratio >= 20.

    python benchmarks/cache.py [--images 2048] [--resolution 128] [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402

from infomax.data.augment import center_resize, to_float_images  # noqa: E402
from infomax.data.dataset import Dataset, load_dataset  # noqa: E402
from infomax.data.features import extract_features  # noqa: E402
from infomax.models import build_encoder  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def images_for(n: int) -> Dataset:
    try:
        data = load_dataset("cifar10", "train", SHARED)
    except (FileNotFoundError, ValueError):
        data = load_dataset("mnist-5k", "train")
    rows = np.random.default_rng(0).permutation(len(data))[:n]
    return Dataset(data.name, "bench", np.array(data.images[np.sort(rows)]), data.labels[np.sort(rows)], data.classes, data.origin)


def bare_forward(encoder, dataset: Dataset, resolution: int, batch: int, passes: int) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(dataset), batch):
            x = center_resize(to_float_images(dataset.batch(slice(start, start + batch))), resolution)
            for _ in range(passes):
                encoder(x)
    return time.perf_counter() - started


def ours(encoder, dataset: Dataset, resolution: int, batch: int, views: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        extract_features(encoder, dataset, resolution=resolution, views=views, batch_size=batch, token_grid=0, cache_dir=Path(folder), progress=False)
        return time.perf_counter() - started


def head_steps(features: torch.Tensor | None, encoder, dataset: Dataset, resolution: int, steps: int, batch: int) -> float:
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(encoder.dim, 512), torch.nn.ReLU(), torch.nn.Linear(512, dataset.num_classes))
    optimiser = torch.optim.AdamW(head.parameters(), lr=1e-3)
    labels = torch.from_numpy(dataset.labels)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(steps):
        rows = np.sort(rng.choice(len(dataset), batch, replace=False))
        if features is not None:
            x = features[rows]
        else:
            with torch.no_grad():
                x = encoder(center_resize(to_float_images(dataset.batch(rows)), resolution)).pooled
        loss = torch.nn.functional.cross_entropy(head(x), labels[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.images, args.resolution, args.steps, args.reps = 256, 64, 5, 1
    encoder = build_encoder("efficientnet-lite0").eval()
    dataset = images_for(args.images)
    rows = {}
    for views in (0, 1):
        bare = min(bare_forward(encoder, dataset, args.resolution, args.batch, 1 + views) for _ in range(args.reps))
        cached = min(ours(encoder, dataset, args.resolution, args.batch, views) for _ in range(args.reps))
        rows[f"extract_views{views}"] = {"bare_s": bare, "ours_s": cached, "throughput_ratio": bare / cached, "images_per_s": len(dataset) * (1 + views) / cached}
    with tempfile.TemporaryDirectory() as folder:
        features = extract_features(encoder, dataset, resolution=args.resolution, views=0, token_grid=0, cache_dir=Path(folder), progress=False)
        in_memory = torch.from_numpy(np.asarray(features.pooled(0), dtype=np.float32))
    from_cache = min(head_steps(in_memory, encoder, dataset, args.resolution, args.steps, 256) for _ in range(args.reps))
    from_images = head_steps(None, encoder, dataset, args.resolution, args.steps, 256)
    rows["head_training"] = {"from_cache_s": from_cache, "from_images_s": from_images, "speedup": from_images / from_cache, "steps": args.steps, "batch": 256}
    report(rows, vars(args))


def report(rows: dict, settings: dict) -> None:
    facts = machine(torch.device("cpu"))
    out = {"machine": facts, "settings": settings, "results": rows}
    lines = [
        "# Frozen-feature cache vs the bare backbone", "",
        f"EfficientNet-Lite0 (ImageNet weights), {settings['images']} CIFAR-10 training images resized to "
        f"{settings['resolution']}x{settings['resolution']}, batch {settings['batch']}; {facts['cpu']}, "
        f"{facts['torch_threads']} threads, torch {facts['torch']}, {facts['date']}. "
        "Best of the repeats, both sides run back to back in one process. Rerun: `python benchmarks/cache.py`.", "",
        "| extraction | bare forward (s) | extract_features (s) | throughput ratio (target >= 0.9) |", "|---|---|---|---|",
    ]
    for views in (0, 1):
        r = rows[f"extract_views{views}"]
        lines.append(f"| plain view + {views} augmented | {r['bare_s']:.2f} | {r['ours_s']:.2f} | **{r['throughput_ratio']:.2f}** |")
    h = rows["head_training"]
    lines += ["", "| head training | seconds for the steps | speed-up (target >= 20) |", "|---|---|---|",
              f"| from images (backbone forward per batch) | {h['from_images_s']:.2f} | |",
              f"| from the cache | {h['from_cache_s']:.3f} | **{h['speedup']:.0f}x** |", "",
              f"{h['steps']} AdamW steps of a 2-layer head on batches of {h['batch']}."]
    print("\n".join(lines))
    if not settings["quick"]:  # a smoke run is not a measurement
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "cache.json").write_text(json.dumps(out, indent=1))
        (RESULTS / "cache.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
