"""Feature extraction in bf16 against fp32 (issue 25 part 1): is `precision: auto` (bf16 autocast on a CPU
with native bf16) safe as the feature cache's default? The same frozen backbone, the same images, both
ways: speed side by side (interleaved forwards of one batch), how far the features move (cosine and
relative L2 per image), and what evaluation sees (weighted kNN k=20 T=0.07, the linear probe; its
regularisation chosen on a validation slice of the training split) on the test split.

    python benchmarks/feature_precision.py [--datasets cifar10,fashion-mnist] [--reps 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, machine  # noqa: E402

from infomax.data.augment import center_resize, to_float_images  # noqa: E402
from infomax.data.dataset import load_dataset  # noqa: E402
from infomax.data.features import default_resolution, extract_features  # noqa: E402
from infomax.eval.knn import weighted_knn  # noqa: E402
from infomax.eval.linear import linear_probe  # noqa: E402
from infomax.models import build_encoder  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PRECISIONS = ("32-true", "bf16-mixed")


def speed(encoder, images: np.ndarray, resolution: int, reps: int) -> dict:
    x = center_resize(to_float_images(torch.from_numpy(np.array(images)), channels=None), resolution)

    def forward(bf16: bool):
        def go():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                encoder(x)
        return go

    fns = [forward(False), forward(True)]
    for fn in fns:
        fn()
    fp32, bf16 = (statistics.median(t) for t in interleaved(fns, torch.device("cpu"), reps))
    return {"batch": len(x), "fp32_images_per_s": len(x) / fp32, "bf16_images_per_s": len(x) / bf16, "speedup": fp32 / bf16}


def judge(features: dict) -> dict:
    out = {}
    for precision, (train, test) in features.items():
        x, y = torch.from_numpy(train.pooled(0)[:].astype(np.float32)), torch.from_numpy(train.labels)
        xt, yt = torch.from_numpy(test.pooled(0)[:].astype(np.float32)), torch.from_numpy(test.labels)
        out[precision] = {"knn_top1": weighted_knn(x, y, xt, yt, k=20, temperature=0.07).accuracy["top1"],
                          "linear_top1": linear_probe(x, y, xt, yt, seed=0).accuracy["top1"]}
    a = torch.from_numpy(features["32-true"][1].pooled(0)[:].astype(np.float32))
    b = torch.from_numpy(features["bf16-mixed"][1].pooled(0)[:].astype(np.float32))
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    relative = (a - b).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12)
    out["test_features"] = {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
                            "relative_l2_median": float(relative.median()), "relative_l2_max": float(relative.max())}
    return out


def run(dataset: str, args) -> dict:
    encoder = build_encoder("efficientnet-lite0")
    train, test = (load_dataset(dataset, split, args.data_root) for split in ("train", "test"))
    resolution = default_resolution(encoder, train)
    record = {"resolution": resolution, "speed": speed(encoder.eval(), train.images[:128], resolution, args.reps)}
    features, seconds = {}, {}
    for precision in PRECISIONS:
        started = time.perf_counter()
        features[precision] = tuple(extract_features(encoder, split, resolution=resolution, views=0, precision=precision,
                                                     cache_dir=Path(args.cache), progress=False) for split in (train, test))
        seconds[precision] = time.perf_counter() - started
    record.update(judge(features), extraction_seconds=seconds)
    return record


def render(data: dict) -> str:
    m = data["machine"]
    lines = ["# Feature extraction: bf16 autocast against fp32 (EfficientNet-Lite0, ImageNet weights)", "",
             f"{m['cpu']}, {m['torch_threads']} threads, torch {m['torch']}, {m['date']}. Speed: median of "
             f"{data['reps']} interleaved no-grad forwards of one batch of 128 training images. Accuracy: the test split, "
             "weighted kNN (k=20, T=0.07) and the linear probe on all training features. Rerun: "
             "`python benchmarks/feature_precision.py`.", "",
             "| dataset | px | fp32 images/s | bf16 images/s | speed-up | kNN fp32 | kNN bf16 | linear fp32 | linear bf16 | "
             "cosine min / mean | rel. L2 median / max |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in data["datasets"].items():
        s, f = r["speed"], r["test_features"]
        lines.append(f"| {name} | {r['resolution']} | {s['fp32_images_per_s']:.0f} | {s['bf16_images_per_s']:.0f} | "
                     f"{s['speedup']:.2f}x | {r['32-true']['knn_top1']:.2f} | {r['bf16-mixed']['knn_top1']:.2f} | "
                     f"{r['32-true']['linear_top1']:.2f} | {r['bf16-mixed']['linear_top1']:.2f} | "
                     f"{f['cosine_min']:.4f} / {f['cosine_mean']:.5f} | {f['relative_l2_median']:.4f} / {f['relative_l2_max']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="cifar10,fashion-mnist")
    p.add_argument("--data-root", default=str(SHARED))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--cache", default="runs/feature_precision_cache")
    args = p.parse_args()
    data = {"machine": machine(torch.device("cpu")), "reps": args.reps, "datasets": {}, "argv": ["python", *sys.argv]}
    stem = RESULTS / "feature_precision"
    for name in args.datasets.split(","):
        data["datasets"][name] = run(name, args)
        stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
        stem.with_suffix(".md").write_text(render(data))
        print(render(data), flush=True)


if __name__ == "__main__":
    main()
