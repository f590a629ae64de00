"""A CPU recipe as a user runs it: `infomax pretrain --method M --dataset cifar10` end to end (issue 10:
finishes in <= 10 minutes on 2 cores and still learns). Records the wall time of the whole command
and of training, the online kNN on the held-out slice after each epoch, and the test-split kNN
(k=20, T=0.07, 10,000 training images as the bank) of the untrained and the trained encoder.

    python benchmarks/pretrain_cpu_recipe.py [--method smi]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402
from pretrain_smi_vs_barlow import SHARED, TestProbe  # noqa: E402

from infomax import config as C, methods  # noqa: E402
from infomax.data.dataset import load_dataset  # noqa: E402
from infomax.models import build_encoder, load_encoder  # noqa: E402

RESULTS = Path(__file__).parent / "results"


class _Encoded(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def embed(self, x):
        return self.encoder(x).pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="smi")
    parser.add_argument("--data-root", default=str(SHARED))
    parser.add_argument("--out", default="runs/cpu-recipe")
    args = parser.parse_args()
    out = Path(args.out) / args.method
    command = [sys.executable, "-m", "infomax", "pretrain", "--method", args.method, "--dataset", "cifar10",
               "--data-root", args.data_root, "--out", str(out)] + (["--overwrite"] if out.exists() else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    train, test = load_dataset("cifar10", "train", args.data_root), load_dataset("cifar10", "test", args.data_root)
    probe = TestProbe(train, test, every=1)
    config = C.load(out / "config.yaml")
    torch.manual_seed(config.run.seed)
    untrained = probe.score(methods.build(args.method, build_encoder(config.model.backbone, **config.model.options), config.method))
    trained = probe.score(_Encoded(load_encoder(out / "encoder.safetensors")))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    holdout = [(r["epoch"], r["knn_top1"]) for r in records if "knn_top1" in r]
    summary = json.loads((out / "metrics.json").read_text())
    facts = machine(torch.device("cpu"))
    record = {"machine": facts, "method": args.method, "command": " ".join(command[1:]), "wall_seconds": wall,
              "train_seconds": summary["train_seconds"], "steps": summary["steps"], "holdout_knn_by_epoch": holdout,
              "test_knn_untrained": untrained, "test_knn_trained": trained}
    stem = RESULTS / f"pretrain_cpu_recipe_{args.method}"
    Path(f"{stem}.json").write_text(json.dumps(record, indent=1))
    lines = [f"# The {args.method}-cpu recipe end to end on CIFAR-10", "",
             f"{facts['cpu']}, {facts['torch_threads']} threads, {facts['date']}. Command: `infomax pretrain --method {args.method} "
             f"--dataset cifar10 --data-root ../shared/data --out DIR` (the recipe's defaults). Rerun: "
             f"`python benchmarks/pretrain_cpu_recipe.py --method {args.method}`.", "",
             "| | value |", "|---|---|",
             f"| whole command (wall) | {wall / 60:.1f} min |", f"| training (wall) | {summary['train_seconds'] / 60:.1f} min, {summary['steps']} steps |",
             f"| held-out kNN after each epoch | {', '.join(f'{v:.1f}' for _, v in holdout)} |",
             f"| test kNN, untrained encoder | {untrained:.2f} |", f"| test kNN, trained encoder | {trained:.2f} ({trained - untrained:+.2f}) |"]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
