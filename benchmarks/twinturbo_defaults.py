"""TwinTURBO's shipped defaults, measured where a user will run them (issue 14): validation split only.

Every candidate setting and the cat-cross baseline are trained on the same labelled subsets for
each dataset and label count of the grid (CIFAR-10, Fashion-MNIST and MNIST-5k, a small dataset
of 4,000 training images, at 40, 100, 250 and 1000 labels by default) and scored on the validation split that `infomax finetune` carves from the
training set (10%, seed 0); the test split is never read for this. A candidate's score is its
worst margin over the baseline across the grid: defaults must never lose to the baseline, so the
chosen one is the candidate whose worst point is best, and the script says whether that worst
point is >= 0. Candidates are overrides of the twinturbo-cpu recipe as shipped (the head, K views,
weights, lr); `--views-used K` reads only the first K cached views (the K-vs-cost trade-off).

    python benchmarks/twinturbo_defaults.py [--datasets cifar10,fashion-mnist] [--labels 40,100,250,1000]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402
from twinturbo import SHARED, RESOLUTION, fp32_features  # noqa: E402

from infomax.engine.finetune import BASELINE, configure, finetune, prepare_features, variant, with_settings, words_of  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CANDIDATES = {  # on bin-cross sigmoid, everything else as shipped; "one cached view" reads view 1 of 2 (= --views 1)
    "critic 3, latent 1, augment 1": {"critic": 3.0, "latent": 1.0, "augment": 1.0, "views": 2},
    "critic 3, latent 1, augment 10": {"critic": 3.0, "latent": 1.0, "augment": 10.0, "views": 2},
    "critic 3, latent 1, augment 1, one cached view": {"critic": 3.0, "latent": 1.0, "augment": 1.0, "views": 2, "views_used": 1},
    "critic 3, latent 1, augment 1, token crops": {"critic": 3.0, "latent": 1.0, "augment": 1.0, "augmentation": "tokens"},
    "critic 10, latent 1, augment 10 (issue 5's)": {"critic": 10.0, "latent": 1.0, "augment": 10.0, "views": 2},
    "critic 3, latent 1, augment 10, one cached view": {"critic": 3.0, "latent": 1.0, "augment": 10.0, "views": 2, "views_used": 1},
    "critic 3, latent 1, augment 10, token crops": {"critic": 3.0, "latent": 1.0, "augment": 10.0, "augmentation": "tokens"},
    # issue 14's ladder targets, probed on CIFAR-10's validation split with the shipped one-view cache
    "critic 3 (shipped, no latent, no augment)": {"critic": 3.0, "latent": 0.0, "augment": 0.0},
    "critic 3, latent 1 (shipped, no augment)": {"critic": 3.0, "latent": 1.0, "augment": 0.0},
    "shipped": {},
    "shipped, augment 30": {"augment": 30.0},
    "shipped, latent 3": {"latent": 3.0},
    "shipped, lr 1e-3": {"lr": 1e-3},
    "shipped, 20 epochs": {"epochs": 20},
    "baseline, 20 epochs (its margin: over the 5-epoch baseline)": {**BASELINE, "epochs": 20},
    "shipped, token crops": {"augmentation": "tokens"},
    "shipped, 4 cached views": {"views": 4},
}


def restricted(prepared, views: int | None):
    """The prepared features with only the plain view and the first `views` augmented ones."""
    if views is None:
        return prepared
    (plain, plain_tokens), (augmented, tokens) = prepared.train.groups
    groups = [(plain, plain_tokens), (augmented[:views], None if tokens is None else tokens[:views])]
    return dataclasses.replace(prepared, train=dataclasses.replace(prepared.train, groups=groups))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="cifar10,fashion-mnist,mnist-5k")
    parser.add_argument("--labels", default="40,100,250,1000")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--only", default=None, help="semicolon-separated candidate names")
    parser.add_argument("--work", default="runs/twinturbo-defaults")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if not args.render_only:
        for dataset in args.datasets.split(","):  # one file per dataset, so that datasets can run side by side
            run_grid(args, dataset, RESULTS / f"twinturbo_defaults_{dataset}.json")
    records = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("twinturbo_defaults_*.json"))]
    render({k: v for r in records for k, v in r["runs"].items()}, all(r.get("feature_precision") == "auto" for r in records))


def run_grid(args, dataset: str, path: Path) -> None:
    record = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    names = [n.strip() for n in args.only.split(";")] if args.only else list(CANDIDATES)
    base = configure(dataset=dataset, data_root=str(SHARED), resolution=RESOLUTION[dataset], baseline_check=False)
    prepared = {}
    for labels in map(int, args.labels.split(",")):
        for seed in map(int, args.seeds.split(",")):
            for name in ["baseline", *names]:
                overrides = dict(BASELINE if name == "baseline" else {"task_loss": "bin-cross", "rescale": "sigmoid", **CANDIDATES[name]})
                views = overrides.pop("views_used", None)
                config = with_settings(base, labels=labels, seed=seed, **overrides)
                kind = (config.finetune.augmentation, config.finetune.cached_views)
                if kind not in prepared:
                    prepared[kind] = prepare_features(config, progress=False)
                started = time.perf_counter()
                slug = "".join(c if c.isalnum() else "-" for c in name)[:60]
                metrics = finetune(config, Path(args.work) / dataset / str(labels) / f"seed{seed}" / slug, overwrite=True,
                                   prepared=restricted(prepared[kind], views), report=False)
                key = f"{dataset}|{labels}|{seed}|{name}"
                record["runs"][key] = {"val_top1": metrics["val_top1"], "steps": metrics["steps"], "seconds": time.perf_counter() - started,
                                       "variant": variant(config), "overrides": CANDIDATES.get(name, BASELINE)}
                print(f"[defaults] {key}: val {metrics['val_top1']:.2f}", flush=True)
                record.update(machine=machine(torch.device("cpu")), shipped=words_of(configure()), feature_precision="auto")
                path.write_text(json.dumps(record, indent=1))


def render(runs: dict, native_features: bool) -> None:
    points = sorted({tuple(k.split("|")[:3]) for k in runs}, key=lambda p: (p[0], int(p[1]), int(p[2])))
    names = list(dict.fromkeys(k.split("|")[3] for k in runs if not k.endswith("|baseline")))
    header = " | ".join(f"{d} {n}{'' if s == '42' else f' s{s}'}" for d, n, s in points)
    lines = ["# TwinTURBO defaults across datasets and label counts (validation split only)", "",
             "Validation top-1 % minus the cat-cross baseline's on the same labels (10% of each training set, never the test split). "
             "The baseline row gives its own accuracy. Rerun: `python benchmarks/twinturbo_defaults.py`.", "",
             *fp32_features({"feature_precision": "auto" if native_features else None}),
             f"| setting | {header} | worst | mean |", "|---|" + "---|" * (len(points) + 2)]
    base = {p: runs.get("|".join((*p, "baseline")), {}).get("val_top1") for p in points}
    lines.append("| baseline (accuracy) | " + " | ".join(f"{base[p]:.2f}" if base[p] is not None else "-" for p in points) + " | | |")
    for name in names:
        margins = [runs["|".join((*p, name))]["val_top1"] - base[p] if "|".join((*p, name)) in runs and base[p] is not None else None for p in points]
        seen = [m for m in margins if m is not None]
        cells = " | ".join(f"{m:+.2f}" if m is not None else "-" for m in margins)
        lines.append(f"| {name} | {cells} | {min(seen):+.2f} | {statistics.fmean(seen):+.2f} |" if seen else f"| {name} | {cells} | - | - |")
    shipped = words_of(configure())
    lines += ["", "Shipped defaults: " + ", ".join(f"{k} {shipped[k]}" for k in ("task_loss", "rescale", "critic", "latent", "augment", "lr",
                                                                                 "views", "augmentation", "head", "epochs", "min_steps")) + "."]
    (RESULTS / "twinturbo_defaults.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
