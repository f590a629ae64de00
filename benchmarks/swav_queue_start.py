"""When SwAV's queue may join on the CPU recipe (issue 25): swav-cpu on real CIFAR-10 with its queue
from epoch 1, 2 or 50 (solo-learn's CIFAR value, past the end of these runs: no queue), each on the
leaderboard's long schedule (4970 steps, warm-up 497) and stopped after `--stop` steps, with the
test-split kNN probe of the leaderboard (k=20, T=0.07, 10,000 training images) every `--every` steps
and the training loss. SwAV's log(K) = log(3000) = 8.0 is the loss of uniform predictions.

    python benchmarks/swav_queue_start.py [--stop 600] [--every 100] [--starts 1,2,50]

Results are rewritten after every run (results/swav_queue_start.{json,md})."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _budget import TestProbe, config_for  # noqa: E402
from _timing import machine  # noqa: E402

import torch  # noqa: E402

from infomax.data.dataset import load_dataset  # noqa: E402
from infomax.engine.pretrain import pretrain  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SCHEDULE = 4970  # swav-0's step count on the long leaderboard


class _Stop(Exception):
    pass


def one_run(start: int, args, train, test) -> dict:
    probe, losses = TestProbe(train, test, args.every), {}

    def watch(loop, terms):
        if loop.step % 50 == 0:
            losses[loop.step] = round(float(terms["loss"].detach()), 3)
        if loop.step >= args.stop:
            raise _Stop
        return {}

    config = config_for("swav", 0, SCHEDULE, args.data_root, (f"method.queue_start_epoch={start}",))
    try:
        pretrain(config, Path(args.work) / f"queue-{start}", overwrite=True, watch=(probe, watch))
    except _Stop:
        pass
    return {"queue_start_epoch": start, "knn": {p["step"]: p["knn_top1"] for p in probe.points}, "loss": losses}


def write(record: dict) -> None:
    stem = RESULTS / "swav_queue_start"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    runs = record["runs"]
    steps = sorted({int(s) for r in runs for s in r["knn"]})
    lines = [f"# SwAV's queue start on swav-cpu (CIFAR-10, test-split kNN top-1 %)\n",
             f"{record['machine']['cpu']}, {record['machine']['torch_threads']} threads, {record['machine']['date']}; "
             f"schedule of {SCHEDULE} steps, stopped at step {record['stop']}; one epoch = 195 steps; queue 3840, full 15 steps after it "
             f"starts. Rerun: `python benchmarks/swav_queue_start.py --stop {record['stop']}`.\n",
             "| queue from epoch | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for r in runs:
        knn = {int(k): v for k, v in r["knn"].items()}
        lines.append(f"| {r['queue_start_epoch']} | " + " | ".join(f"{knn[s]:.1f}" if s in knn else "-" for s in steps) + " |")
    lines += ["", "Training loss (log 3000 = 8.0: uniform predictions):", "",
              "| queue from epoch | " + " | ".join(f"step {s}" for s in sorted({int(s) for r in runs for s in r["loss"]})) + " |"]
    loss_steps = sorted({int(s) for r in runs for s in r["loss"]})
    lines.append("|---|" + "---|" * len(loss_steps))
    for r in runs:
        loss = {int(k): v for k, v in r["loss"].items()}
        lines.append(f"| {r['queue_start_epoch']} | " + " | ".join(f"{loss[s]:.2f}" if s in loss else "-" for s in loss_steps) + " |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stop", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--starts", default="1,2,50")
    parser.add_argument("--data-root", default=str(SHARED))
    parser.add_argument("--work", default="runs/swav_queue_start")
    args = parser.parse_args()
    train, test = load_dataset("cifar10", "train", args.data_root), load_dataset("cifar10", "test", args.data_root)
    record = {"machine": machine(torch.device("cpu")), "stop": args.stop, "runs": []}
    for start in (int(s) for s in args.starts.split(",")):
        record["runs"].append(one_run(start, args, train, test))
        write(record)


if __name__ == "__main__":
    main()
