"""The CPU default (`run.precision: auto`, channels-last) against the former one (32-true, NCHW), in training.

cpu_speed.py times one step; this checks that the faster default learns as well. The simclr and smi CPU
recipes (ConvNet, CIFAR-10) train the same number of steps from the same seed both ways, with the
test-split kNN probe of the leaderboard (benchmarks/_budget.py) along the way and the linear probe at
the end. The two settings alternate method by method so load drift hits both alike; CPU-seconds per
step come from the probe's process CPU clock (probe time excluded).

    python benchmarks/cpu_default.py [--steps 600] [--seeds 0] [--methods simclr,smi]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _budget import TestProbe, config_for  # noqa: E402
from _timing import machine  # noqa: E402

from infomax import methods as M  # noqa: E402
from infomax.data.dataset import load_dataset  # noqa: E402
from infomax.engine.pretrain import pretrain  # noqa: E402
from infomax.precision import native_precision  # noqa: E402
from infomax.eval.linear import linear_probe  # noqa: E402
from infomax.models.registry import load_encoder  # noqa: E402

RESULTS = Path(__file__).parent / "results"
STEM = RESULTS / "cpu_default"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETTINGS = {"32-true (former default)": "32-true", "auto (new default)": "auto"}


def one(method: str, precision: str, seed: int, steps: int, train, test, work: Path) -> dict:
    probe = TestProbe(train, test, max(1, steps // 4))
    config = config_for(method, seed, steps, str(SHARED), (f"run.precision={precision}",))
    out = work / f"{method}-{precision}-{seed}"
    result = pretrain(config, out, overwrite=True, watch=(probe,))
    holder = M.build(method, load_encoder(out / "encoder.safetensors"), config.method)
    bank, query = probe.features(holder)
    linear = linear_probe(bank, torch.from_numpy(train.labels[probe.bank]), query, torch.from_numpy(test.labels))
    cpu = probe.points[-1]["cpu_s"] - probe.points[0]["cpu_s"]
    return {"method": method, "precision": config.run.precision, "seed": seed, "steps": steps, "curve": probe.points,
            "cpu_s_per_step": cpu / (probe.points[-1]["step"] - probe.points[0]["step"]),
            "train_seconds": result["train_seconds"], "linear_top1": linear.accuracy["top1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--methods", default="simclr,smi")
    parser.add_argument("--work", default="runs/cpu_default")
    args = parser.parse_args()
    train, test = load_dataset("cifar10", "train", str(SHARED)), load_dataset("cifar10", "test", str(SHARED))
    runs = []
    for seed in map(int, args.seeds.split(",")):
        for method in args.methods.split(","):
            for label, precision in SETTINGS.items():
                print(f"{method} seed {seed}, {label}", flush=True)
                runs.append({"setting": label, **one(method, precision, seed, args.steps, train, test, Path(args.work))})
                write(runs, args.steps)


def write(runs: list[dict], steps: int) -> None:
    facts = machine(torch.device("cpu"))
    STEM.with_suffix(".json").write_text(json.dumps({"machine": facts, "auto_resolves_to": native_precision("cpu"),
                                                     "runs": runs}, indent=1))
    lines = ["# The CPU default in training: precision auto + channels-last against 32-true NCHW", "",
             f"{facts['cpu']}, {facts['torch_threads']} threads, torch {facts['torch']}, {facts['date']}; here `auto` "
             f"resolves to {native_precision('cpu')}. Each method's CPU recipe (ConvNet width 32, CIFAR-10, batch 256), "
             f"{steps} steps from the same seed both ways; kNN (k=20, T=0.07) from 10,000 training images to the 10,000 "
             "test images along the way, linear probe at the end. Rerun: `python benchmarks/cpu_default.py`.", "",
             "| method | seed | setting | CPU-s / step | speed-up | kNN at 1/4 | kNN at 1/2 | kNN at 3/4 | final kNN | final linear |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base = {}
    for r in runs:
        key = (r["method"], r["seed"])
        base.setdefault(key, r["cpu_s_per_step"])
        knn = [p["knn_top1"] for p in r["curve"]]
        lines.append(f"| {r['method']} | {r['seed']} | {r['setting']} ({r['precision']}) | {r['cpu_s_per_step']:.3f} | "
                     f"{base[key] / r['cpu_s_per_step']:.2f}x | {knn[0]:.1f} | {knn[1]:.1f} | {knn[2]:.1f} | {knn[-1]:.1f} | {r['linear_top1']:.1f} |")
    STEM.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
