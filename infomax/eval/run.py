"""`infomax evaluate` and `infomax analyze`: an encoder + a dataset -> metrics, plots, a report.

Features come through the frozen-feature cache (plain view; analyze also takes one augmented
view of the test images for the positive-pair metrics), so a second evaluation of the same
encoder on the same data does not run the backbone again.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import load_dataset
from ..data.features import Features, extract_features
from ..runs import rundir
from ..models import build_encoder

PROTOCOLS = ("knn", "linear", "fewshot")


def _features(encoder, dataset: str, split: str, data_root, resolution, views: int = 0, **load) -> Features:
    data = load_dataset(dataset, split, data_root, **load)
    if not data.labelled:
        raise ValueError(f"{dataset}/{split} has unlabelled images; evaluation needs labels.")
    if data.num_classes < 2 or len(np.unique(data.labels)) < 2:
        raise ValueError(f"{dataset}/{split} holds a single class; accuracy needs at least two.")
    return extract_features(encoder, data, resolution=resolution, views=views, token_grid=0)


def _tensor(features: Features, view: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.asarray(features.pooled(view), dtype=np.float32)), torch.from_numpy(features.labels)


def _constant_warning(x: torch.Tensor) -> list[str]:
    if float(x.std(dim=0).max()) < 1e-6:
        return ["the encoder's output is constant over the dataset (collapsed): every metric is at chance"]
    return []


def evaluate(encoder: str, dataset: str, out: Path, *, protocols=PROTOCOLS, data_root=None, resolution=None,
             k: int = 20, temperature: float = 0.07, seeds=(0, 1, 2), overwrite: bool = False,
             download: bool = False, image_size: int | None = None, source: str = "auto") -> dict:
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        raise ValueError(f"unknown or no protocol(s) {sorted(unknown)}; choose from {', '.join(PROTOCOLS)}.")
    rundir.check_target(out, overwrite=overwrite)
    net = build_encoder(encoder)  # an unknown encoder or a missing dataset fails before the run dir exists
    load = {"download": download, "image_size": image_size, "source": source}
    (x, y) = _tensor(_features(net, dataset, "train", data_root, resolution, **load))
    (x_test, y_test) = _tensor(_features(net, dataset, "test", data_root, resolution, **load))
    out = rundir.prepare(out, overwrite=overwrite)
    config = {"encoder": encoder, "dataset": dataset, "protocols": list(protocols), "resolution": resolution, "k": k,
              "temperature": temperature, "seeds": list(seeds)}
    rundir.write_json(out / "config.json", config)
    rundir.record_environment(out)
    metrics = score(x, y, x_test, y_test, protocols=protocols, k=k, temperature=temperature, seeds=seeds)
    rundir.write_json(out / "metrics.json", metrics)
    return metrics


FEW_LABEL = (("1pct", {"fraction": 0.01}), ("10pct", {"fraction": 0.1}), ("10_per_class", {"per_class": 10}))


def score(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *, protocols=PROTOCOLS,
          k: int = 20, temperature: float = 0.07, seeds=(0, 1, 2)) -> dict:
    """The metrics of `evaluate` on given train and test features: kNN, linear probe, few-label linear."""
    from .fewshot import few_label_accuracy
    from .knn import weighted_knn
    from .linear import linear_probe

    metrics: dict = {"train_images": len(y), "test_images": len(y_test), "warnings": _constant_warning(x)}
    timings = {}
    if "knn" in protocols:
        started = time.perf_counter()
        result = weighted_knn(x, y, x_test, y_test, k=k, temperature=temperature)  # fewer than k images: an error, not a silent k
        metrics.update({"knn_top1": result.accuracy["top1"], "knn_top5": result.accuracy["top5"]})
        timings["knn_seconds"] = time.perf_counter() - started
    if "linear" in protocols:
        started = time.perf_counter()
        probe = linear_probe(x, y, x_test, y_test, seed=0)
        metrics.update({"linear_top1": probe.accuracy["top1"], "linear_top5": probe.accuracy["top5"], "linear_weight_decay": probe.weight_decay})
        timings["linear_seconds"] = time.perf_counter() - started
    if "fewshot" in protocols:
        started = time.perf_counter()
        for name, subset in FEW_LABEL:
            result = few_label_accuracy(x, y, x_test, y_test, seeds=seeds, protocol="linear", **subset)
            metrics.update({f"fewshot_{name}_top1_mean": result["mean"], f"fewshot_{name}_top1_std": result["std"], f"fewshot_{name}_labelled": result["n_labelled"]})
        timings["fewshot_seconds"] = time.perf_counter() - started
    metrics.update({k: round(v, 2) for k, v in timings.items()})
    return metrics


def analyze(encoder: str, dataset: str, out: Path, *, split: str = "test", data_root=None, resolution=None,
            max_points: int = 10_000, overwrite: bool = False, download: bool = False, image_size: int | None = None,
            source: str = "auto") -> dict:
    from .geometry import geometry_table
    from .plots import plot_geometry
    from .report import write_report

    rundir.check_target(out, overwrite=overwrite)
    net = build_encoder(encoder)
    features = _features(net, dataset, split, data_root, resolution, views=1, download=download, image_size=image_size,
                         source=source)
    out = rundir.prepare(out, overwrite=overwrite)
    rundir.write_json(out / "config.json", {"encoder": encoder, "dataset": dataset, "split": split, "resolution": resolution})
    rundir.record_environment(out)
    rows = np.sort(np.random.default_rng(0).permutation(len(features))[:max_points])
    (z, labels), (z_pair, _) = _tensor(features, 0), _tensor(features, 1)
    z, labels, z_pair = z[rows], labels[rows], z_pair[rows]
    table = geometry_table(z, labels, z_pair)
    rundir.write_json(out / "metrics.json", table)
    plot_geometry(z, out / "plots", labels=labels, z_pair=z_pair, class_names=features.classes)
    write_report([out], out / "report.html", title=f"Representation geometry: {encoder} on {dataset}/{split}")
    return table
