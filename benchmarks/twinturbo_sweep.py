"""Choose TwinTURBO's loss weights and optimiser settings on the validation split (issue 5).

Every setting is trained once (seed 42, 100 labels by default) on the cached features; the
score is top-1 on the validation split that `infomax finetune` carves from the training set
(10%, seed 0), never on the test split. The best setting feeds benchmarks/twinturbo.py.

    python benchmarks/twinturbo_sweep.py [--dataset cifar10] [--labels 100] [--seed 42]
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
from twinturbo import SHARED, fp32_features, settings  # noqa: E402

from infomax.engine.finetune import configure, finetune, prepare_features, with_settings  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BASE = {"task_loss": "bin-cross", "rescale": "sigmoid", "critic": 0.0, "latent": 0.0, "augment": 0.0}
GRID = {
    "cat-cross softmax": {"task_loss": "cat-cross", "rescale": "softmax"},
    "FixMatch (reference)": {"method": "fixmatch"},
    "bin-cross": {},
    "paper SVHN weights: critic 0.001, latent 0.1, augment 0.1": {"critic": 0.001, "latent": 0.1, "augment": 0.1},
    **{f"critic {w:g}": {"critic": w} for w in (0.001, 0.1, 1.0, 3.0, 10.0)},
    **{f"critic 1, latent {w:g}": {"critic": 1.0, "latent": w} for w in (0.1, 1.0)},
    **{f"critic 1, augment {w:g}": {"critic": 1.0, "augment": w} for w in (0.1, 1.0, 10.0)},
    "critic 1, latent 1, augment 1": {"critic": 1.0, "latent": 1.0, "augment": 1.0},
    **{f"critic {c:g}, latent {l:g}, augment {a:g}": {"critic": c, "latent": l, "augment": a}
       for c, l, a in ((3.0, 1.0, 10.0), (10.0, 1.0, 10.0), (10.0, 3.0, 10.0), (10.0, 1.0, 30.0), (30.0, 1.0, 10.0))},
    "critic 1, 10 epochs": {"critic": 1.0, "epochs": 10},
    "critic 1, lr 1e-3": {"critic": 1.0, "lr": 1e-3},
    "critic 1, lr 5e-5": {"critic": 1.0, "lr": 5e-5},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-root", default=str(SHARED))
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", default=None, help="semicolon-separated names from the grid")
    parser.add_argument("--work", default="runs/twinturbo-sweep")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the committed .json")
    args = parser.parse_args()
    stem = RESULTS / f"twinturbo_sweep_{args.dataset}"
    record = json.loads(Path(f"{stem}.json").read_text()) if Path(f"{stem}.json").exists() else {"runs": {}}
    if not args.render_only:
        run_grid(args, record)
        Path(f"{stem}.json").write_text(json.dumps(record, indent=1))
    render(record, args.dataset, stem)


def run_grid(args: argparse.Namespace, record: dict) -> None:
    base = configure(dataset=args.dataset, data_root=args.data_root, labels=args.labels, seed=args.seed, **settings(args.dataset), **BASE, baseline_check=False)
    prepared = prepare_features(base)
    names = [n.strip() for n in args.only.split(";") if n.strip()] if args.only else list(GRID)
    for name in names:
        config = with_settings(base, **GRID[name])
        started = time.perf_counter()
        metrics = finetune(config, Path(args.work) / args.dataset / name.replace(" ", "-"), overwrite=True, prepared=prepared, report=False)
        record["runs"][name] = {"overrides": GRID[name], "val_top1": metrics["val_top1"], "seconds": time.perf_counter() - started}
        print(f"[sweep] {name}: val {metrics['val_top1']:.2f} ({time.perf_counter() - started:.0f} s)", flush=True)
    record.update(machine=machine(torch.device("cpu")), settings={**settings(args.dataset), **BASE, "labels": args.labels, "seed": args.seed, "feature_precision": "auto"})


def render(record: dict, dataset: str, stem: Path) -> None:
    settings_text = json.dumps(record["settings"])
    lines = [f"# TwinTURBO settings chosen on the validation split: {dataset}, {record['settings']['labels']} labels, "
             f"seed {record['settings']['seed']}", "",
             f"Validation top-1 % (10% of the training set, never the test split). Base: `{settings_text}`. "
             f"Rerun: `python benchmarks/twinturbo_sweep.py --dataset {dataset}`. "
             "Seconds are wall time on a shared 2-core machine, some runs beside other work: not a speed measurement.", "",
             *fp32_features(record["settings"]), "| setting | val top-1 | seconds |", "|---|---|---|"]
    lines += [f"| {n} | {r['val_top1']:.2f} | {r['seconds']:.0f} |" for n, r in sorted(record["runs"].items(), key=lambda kv: -kv[1]["val_top1"])]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
