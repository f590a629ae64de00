"""TwinTURBO's ablation ladder on real data with a frozen EfficientNet-Lite0 (issue 5 targets).

For each dataset: `infomax ablate twinturbo` (7 rungs of the paper's Fig. 2 + logistic
regression, weighted kNN and FixMatch on the same cached features and labelled subsets), then
the targets are checked and written next to the table:
  1. full TwinTURBO >= 8 points above the cat-cross baseline at 100 labels (mean over seeds),
     and above every baseline;
  2. the 100-label mean within 5 points of the 1000-label mean;
  3. the min-max range over seeds narrower with the critic than without (+critic vs bin-cross);
  4. the whole ladder, features included, in <= 60 minutes on this machine.
Hyperparameters are fixed in advance (below) or chosen on the validation split that
`infomax finetune` carves from the training set; the test split is only reported.

    python benchmarks/twinturbo.py [--dataset cifar10] [--labels 100,1000] [--seeds 42,1337,3435]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402

from infomax.engine.ablate import ablate  # noqa: E402
from infomax.engine.finetune import FinetuneConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# CPU-sized head: no token block (token_grid=0: the head sees the pooled 1280-d vector, which is
# the mean of the tokens), latent 512, predictor hidden 128. The plain view is shared with
# benchmarks/cifar10_analysis.py through the feature cache.
SETTINGS = dict(backbone="efficientnet-lite0", resolution=128, token_grid=0, latent_dim=512, hidden_dim=128,
                lr=3e-4, epochs=5, batch_size=512, warmup_steps=150)


def targets(results: dict, seconds: float) -> dict:
    mean = lambda values: statistics.fmean(values)  # noqa: E731
    spread = lambda values: max(values) - min(values)  # noqa: E731
    checks = {}
    if "100" in results:
        r = results["100"]
        full, base = mean(r["+augment"]), mean(r["cat-cross softmax"])
        others = {k: mean(v) for k, v in r.items() if k in ("logistic regression", "weighted kNN", "FixMatch")}
        checks["full_minus_baseline_100"] = {"value": full - base, "target": ">= 8", "met": full - base >= 8}
        checks["full_above_every_baseline_100"] = {"value": {k: full - v for k, v in others.items()}, "target": "> 0 each", "met": all(full > v for v in others.values())}
        if "bin-cross sigmoid" in r and "+critic" in r:
            checks["range_with_critic_narrower"] = {"value": [spread(r["+critic"]), spread(r["bin-cross sigmoid"])], "target": "with < without",
                                                    "met": spread(r["+critic"]) < spread(r["bin-cross sigmoid"])}
    if "100" in results and "1000" in results:
        gap = mean(results["1000"]["+augment"]) - mean(results["100"]["+augment"])
        checks["gap_1000_vs_100"] = {"value": gap, "target": "<= 5", "met": gap <= 5}
    checks["minutes"] = {"value": seconds / 60, "target": "<= 60", "met": seconds <= 3600}
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-root", default=str(SHARED))
    parser.add_argument("--labels", default="100,1000")
    parser.add_argument("--seeds", default="42,1337,3435")
    parser.add_argument("--work", default="runs/twinturbo-bench", help="run directories (finished runs are reused)")
    args = parser.parse_args()
    labels, seeds = [int(v) for v in args.labels.split(",")], [int(v) for v in args.seeds.split(",")]
    base = FinetuneConfig(dataset=args.dataset, data_root=args.data_root, **SETTINGS)
    work = Path(args.work) / args.dataset
    summary = ablate(base, work, labels=labels, seeds=seeds)
    checks = targets(summary["results"], summary["total_seconds"])
    stem = RESULTS / f"twinturbo_{args.dataset}"
    shutil.copy(work / "ablation.png", f"{stem}.png")
    facts = machine(torch.device("cpu"))
    text = [f"# TwinTURBO ladder: {args.dataset}, frozen EfficientNet-Lite0 (ImageNet weights)", "",
            f"{facts['cpu']}, {facts['torch_threads']} threads, {facts['date']}; labels {args.labels}, seeds {args.seeds}; "
            f"features {summary['features_seconds'] / 60:.1f} min, everything {summary['total_seconds'] / 60:.1f} min. "
            f"Settings: {json.dumps(SETTINGS)}. Rerun: `python benchmarks/twinturbo.py --dataset {args.dataset}`.", "",
            (work / "ablation.md").read_text(), "", "## Targets", "", "| target | value | met |", "|---|---|---|"]
    text += [f"| {name} ({c['target']}) | {json.dumps(c['value'], default=lambda v: round(v, 2)) if not isinstance(c['value'], float) else round(c['value'], 2)} | {'yes' if c['met'] else 'NO'} |" for name, c in checks.items()]
    Path(f"{stem}.md").write_text("\n".join(text) + "\n")
    Path(f"{stem}.json").write_text(json.dumps({"machine": facts, "settings": SETTINGS, **summary, "targets": checks}, indent=1, default=str))
    print("\n".join(text))


if __name__ == "__main__":
    main()
