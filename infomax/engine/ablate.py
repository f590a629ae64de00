"""`infomax ablate twinturbo`: the ladder of the TwinTURBO paper's Fig. 2 and the baselines.

Rungs, each adding one change to the one before, as in the paper's Fig. 2: cat-cross/softmax
(baseline) -> cat-twin/softmax -> cat-twin/sigmoid -> bin-cross/softmax -> bin-cross/sigmoid ->
+critic -> +latent -> +augment, the last three on the base config's task loss and rescaling. Baselines
on the same cached features and the same labelled subsets: logistic regression and weighted
kNN on the labelled images' features, and FixMatch on the same head. Every run is a normal
run directory under OUT/<labels>/<rung>/seed<seed>, so finished runs are skipped on a rerun.
The table reports, as the paper does, the best seed and the min-max range, plus mean +- std.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from .. import config as C
from ..runs import rundir
from .finetune import CONFIG, OFF, finetune, prepare_features, with_settings

RUNGS = ("cat-cross softmax", "cat-twin softmax", "cat-twin sigmoid", "bin-cross softmax", "bin-cross sigmoid",
         "+critic", "+latent", "+augment")


def ladder(base: C.TrainConfig) -> list[tuple[str, dict]]:
    """The rungs as (name, settings changed, in finetune's flag words); the critic/latent/augment rungs
    switch on the base config's weights one at a time (the paper fixes them per dataset, Fig. 2 caption)."""
    m = base.method
    weights = {"critic": m.lambda_critic, "latent": m.lambda_latent, "augment": m.lambda_augment}
    task = {"task_loss": m.task, "rescale": m.rescale}
    plain = [(name, {"task_loss": name.split()[0], "rescale": name.split()[1], **OFF}) for name in RUNGS[:5]]
    return plain + [
        ("+critic", {**task, **OFF, "critic": weights["critic"]}),
        ("+latent", {**task, **OFF, "critic": weights["critic"], "latent": weights["latent"]}),
        ("+augment", {**task, **weights}),
    ]


BASELINES = ("logistic regression", "weighted kNN", "FixMatch")


def _slug(name: str) -> str:
    return name.replace(" ", "-").replace("+", "plus-").lower()


def _one(config: C.TrainConfig, run_dir: Path, prepared) -> dict:
    """A finished sub-run is reused only when its recorded config is the one asked for."""
    done = run_dir / "metrics.json"
    if done.exists() and (run_dir / CONFIG).exists():
        try:
            same = _comparable(C.to_dict(C.load(run_dir / CONFIG))) == _comparable(C.to_dict(config))
        except ValueError:  # written by another version: run it again
            same = False
        if same:
            return json.loads(done.read_text())
    return finetune(config, run_dir, overwrite=True, prepared=prepared, report=False)


def _comparable(tree: dict) -> dict:
    """A config tree without the settings that cannot change a sub-run's result."""
    loose = {"finetune": ("baseline_check",), "run": ("log_every", "progress", "loggers", "project")}
    return {section: {k: v for k, v in values.items() if k not in loose.get(section, ())} if isinstance(values, dict) else values
            for section, values in tree.items()}


def _feature_baselines(prepared, labelled_rows: np.ndarray) -> dict[str, float]:
    from ..eval.knn import weighted_knn
    from ..eval.linear import linear_probe

    train, test = prepared.train, prepared.test
    x = torch.from_numpy(train.pooled(0)[labelled_rows].astype(np.float32))
    y = torch.from_numpy(train.labels[labelled_rows])
    x_test, y_test = torch.from_numpy(np.asarray(test.pooled(0), dtype=np.float32)), torch.from_numpy(test.labels)
    return {"logistic regression": linear_probe(x, y, x_test, y_test, seed=0).accuracy["top1"],
            "weighted kNN": weighted_knn(x, y, x_test, y_test, k=min(20, len(y))).accuracy["top1"]}


def ablate(base: C.TrainConfig, out: Path, labels=(100, 1000), seeds=(42, 1337, 3435), rungs=None, progress=True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = with_settings(base, baseline_check=False)  # the ladder's first rung is that baseline
    started = time.perf_counter()
    prepared = prepare_features(base, progress=progress)
    features_seconds = time.perf_counter() - started
    rungs_to_run = [r for r in ladder(base) if rungs is None or r[0] in rungs]
    results: dict[str, dict[str, list[float]]] = {}
    for count in labels:
        table = results.setdefault(str(count), {})
        for seed in seeds:
            for name, overrides in rungs_to_run:
                config = with_settings(base, labels=count, seed=seed, **overrides)
                metrics = _one(config, out / str(count) / _slug(name) / f"seed{seed}", prepared)
                table.setdefault(name, []).append(metrics["test_top1"])
                if progress:
                    print(f"[ablate] {count} labels, seed {seed}, {name}: {metrics['test_top1']:.2f}", flush=True)
            fixmatch = _one(with_settings(base, labels=count, seed=seed, method="fixmatch"), out / str(count) / "fixmatch" / f"seed{seed}", prepared)
            table.setdefault("FixMatch", []).append(fixmatch["test_top1"])
            from ..data.subsets import load_subset

            labelled = load_subset(out / str(count) / "fixmatch" / f"seed{seed}" / "labelled.json", prepared.train.labels)
            for key, value in _feature_baselines(prepared, labelled).items():
                table.setdefault(key, []).append(value)
    summary = {"results": results, "seeds": list(seeds), "features_seconds": features_seconds,
               "total_seconds": time.perf_counter() - started, "config": C.to_dict(base)}
    rundir.write_json(out / "ablation.json", summary)
    (out / "ablation.md").write_text(markdown_table(results, seeds) + "\n")
    bar_chart(results, out / "ablation.png", title=f"TwinTURBO ladder: {base.data.dataset}, {base.model.backbone}")
    return summary


def _stats(values: list[float]) -> dict[str, float]:
    return {"best": max(values), "min": min(values), "max": max(values), "mean": statistics.fmean(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0}


def markdown_table(results: dict, seeds) -> str:
    lines = [f"| method | {' | '.join(f'{n} labels: best (min-max) / mean ± std' for n in results)} |",
             "|---|" + "---|" * len(results)]
    names = list(dict.fromkeys(name for table in results.values() for name in table))
    for name in names:
        cells = []
        for table in results.values():
            if name not in table:
                cells.append("-")
                continue
            s = _stats(table[name])
            cells.append(f"{s['best']:.2f} ({s['min']:.2f}-{s['max']:.2f}) / {s['mean']:.2f} ± {s['std']:.2f}")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines.append(f"\nTest top-1 %, seeds {', '.join(map(str, seeds))}.")
    return "\n".join(lines)


def bar_chart(results: dict, path: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(name for table in results.values() for name in table))
    fig = Figure(figsize=(max(8, 1.1 * len(names)), 4.5))
    ax = fig.add_subplot()
    width = 0.8 / len(results)
    for i, (count, table) in enumerate(results.items()):
        stats = [_stats(table[n]) if n in table else None for n in names]
        x = np.arange(len(names)) + (i - (len(results) - 1) / 2) * width
        means = [s["mean"] if s else np.nan for s in stats]
        low = [s["mean"] - s["min"] if s else 0 for s in stats]
        high = [s["max"] - s["mean"] if s else 0 for s in stats]
        ax.bar(x, means, width, yerr=[low, high], capsize=3, label=f"{count} labels")
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("test top-1 accuracy (%), mean with min-max over seeds")
    ax.set_title(title)
    ax.legend()
    lows = [min(v) for table in results.values() for v in table.values()]
    ax.set_ylim(max(0, min(lows) - 5), 100)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
