"""A real analysis: EfficientNet-Lite0 (ImageNet weights, frozen) on CIFAR-10 from ../shared/data.

Runs `infomax evaluate` (weighted kNN k=20 T=0.07, linear probe, 1% / 10% / 10-per-class
few-label linear probes over 3 seeds) and `infomax analyze` (geometry of the test set, plots)
at one input resolution, then one report for both. Images are resized from 32 to
`--resolution` (128 by default: the backbone's 224 costs 3x the time on a CPU).

    python benchmarks/cifar10_analysis.py [--resolution 128] [--data-root ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402

from infomax.eval.report import write_report  # noqa: E402
from infomax.eval.run import analyze, evaluate  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cifar10_efficientnet_lite0"
GEOMETRY_ROWS = ("effective_rank", "embedding_rank", "centroid_rank", "anisotropy", "mean_abs_correlation", "centre_norm",
                 "sensitivity_index", "angle_all_mean_deg", "angle_positive_mean_deg", "feature_std_x_sqrt_d", "alignment",
                 "uniformity", "pca_components_90pct", "pca_components_99pct", "nn_distance_overlap", "sparsity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    started = time.perf_counter()
    metrics = evaluate("efficientnet-lite0", "cifar10", RESULTS / "evaluate", data_root=args.data_root, resolution=args.resolution, overwrite=True)
    geometry = analyze("efficientnet-lite0", "cifar10", RESULTS / "analyze", data_root=args.data_root, resolution=args.resolution, overwrite=True)
    report = write_report([RESULTS / "evaluate", RESULTS / "analyze"], RESULTS / "report.html",
                          title=f"EfficientNet-Lite0 (ImageNet, frozen) on CIFAR-10 at {args.resolution}px")
    summary(metrics, geometry, args, time.perf_counter() - started, report)


def summary(metrics: dict, geometry: dict, args, seconds: float, report: Path) -> None:
    facts = machine(torch.device("cpu"))
    lines = [f"# EfficientNet-Lite0 (ImageNet weights, frozen) on CIFAR-10, {args.resolution}x{args.resolution}", "",
             f"{facts['cpu']}, {facts['torch_threads']} threads, torch {facts['torch']}, {facts['date']}; "
             f"{seconds / 60:.1f} min end to end including feature extraction. Rerun: `python benchmarks/cifar10_analysis.py`.", "",
             "| protocol | top-1 % | notes |", "|---|---|---|",
             f"| weighted kNN (k=20, T=0.07), 50,000 labels | {metrics['knn_top1']:.2f} | top-5 {metrics['knn_top5']:.2f} |",
             f"| linear probe, 50,000 labels | {metrics['linear_top1']:.2f} | top-5 {metrics['linear_top5']:.2f}, weight decay {metrics['linear_weight_decay']:g} chosen on a held-out 20% |"]
    for name, label in (("1pct", "1% labels"), ("10pct", "10% labels"), ("10_per_class", "10 labels per class")):
        lines.append(f"| linear probe, {label} ({metrics[f'fewshot_{name}_labelled']}) | {metrics[f'fewshot_{name}_top1_mean']:.2f} ± {metrics[f'fewshot_{name}_top1_std']:.2f} | 3 seeds |")
    lines += ["", "Geometry of the 10,000 test embeddings (1280-d pooled features; positives = one augmented view):", "",
              "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {geometry[key]:.4g} |" for key in GEOMETRY_ROWS if isinstance(geometry.get(key), (int, float))]
    if geometry.get("warnings"):
        lines += ["", "Warnings: " + "; ".join(geometry["warnings"])]
    lines += ["", f"Report with every plot: `{report.relative_to(Path(__file__).parent)}`."]
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "summary.json").write_text(json.dumps({"machine": facts, "evaluate": metrics, "geometry": geometry, "seconds": seconds}, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
