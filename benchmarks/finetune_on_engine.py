"""The finetune move onto the engine must not change results (issue 10): the CIFAR-10 ladder's
`+critic` rung, rerun with the same settings and seeds, against the numbers committed before the
move (results/twinturbo_cifar10.json as of commit 084a68a; the ladder has since been rerun with
other defaults, so the settings of that time are spelled out here).

    python benchmarks/finetune_on_engine.py [--labels 100,1000] [--seeds 42,1337,3435]
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
from twinturbo import SHARED  # noqa: E402

from infomax.engine.ablate import ladder  # noqa: E402
from infomax.engine.finetune import configure, finetune, prepare_features, with_settings  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BEFORE = "084a68a"  # the commit whose ladder results were measured on the loop before the move
SETTINGS = dict(resolution=128, token_grid=0, latent_dim=512, hidden_dim=128, critic=10.0, latent=1.0, augment=10.0)


def committed_ladder() -> dict:
    path = "benchmarks/results/twinturbo_cifar10.json"
    text = subprocess.run(["git", "show", f"{BEFORE}:{path}"], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent).stdout
    return json.loads(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", default="100,1000")
    parser.add_argument("--seeds", default="42,1337,3435")
    parser.add_argument("--work", default="runs/finetune-on-engine")
    args = parser.parse_args()
    committed = committed_ladder()
    base = configure(dataset="cifar10", data_root=str(SHARED), **SETTINGS, baseline_check=False)
    rung = dict(ladder(base))["+critic"]
    prepared = prepare_features(base)
    rows, started = [], time.perf_counter()
    for labels in map(int, args.labels.split(",")):
        seeds = list(map(int, args.seeds.split(",")))
        before = dict(zip(committed["seeds"], committed["results"][str(labels)]["+critic"]))
        for seed in seeds:
            config = with_settings(base, **rung, labels=labels, seed=seed)
            metrics = finetune(config, Path(args.work) / f"{labels}-{seed}", overwrite=True, prepared=prepared, report=False)
            rows.append({"labels": labels, "seed": seed, "before": before[seed], "after": round(metrics["test_top1"], 2)})
            print(rows[-1], flush=True)
    record = {"machine": machine(torch.device("cpu")), "minutes": (time.perf_counter() - started) / 60, "rows": rows}
    (RESULTS / "finetune_on_engine.json").write_text(json.dumps(record, indent=1))
    lines = ["# The finetune move onto the engine: CIFAR-10 ladder, `+critic` rung", "",
             f"{record['machine']['cpu']}, {record['machine']['date']}. Before: `results/twinturbo_cifar10.json` at {BEFORE} "
             "(the loop before the move); after: the engine's loop, same settings, seeds and cached features. "
             "Rerun: `python benchmarks/finetune_on_engine.py`.", "",
             "| labels | seed | before | after | difference |", "|---|---|---|---|---|"]
    lines += [f"| {r['labels']} | {r['seed']} | {r['before']:.2f} | {r['after']:.2f} | {r['after'] - r['before']:+.2f} |" for r in rows]
    (RESULTS / "finetune_on_engine.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
