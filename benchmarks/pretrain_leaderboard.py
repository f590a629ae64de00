"""All nine pretraining methods at one compute budget on real CIFAR-10, 2 seeds (issue 11).

Each method trains with its CPU recipe (`infomax/recipes/METHOD-cpu.yaml`) for the same budget of
process CPU time: a pilot measures each method's CPU-seconds per step (all pilots first, side by
side), and each run's step count is set so that its cosine schedule ends at the budget. CPU time,
not wall time, because these machines are shared: it counts the work a run did, whatever ran
beside it; each run's wall time is reported too. The test-split kNN probe (k=20, T=0.07, 10,000
training images vote for the 10,000 test images, eval mode, plain view) runs every
`--probe-every` steps and at the end, its own time not counted; at the end a linear probe
(eval/linear.py, L2 chosen on a split of the 10,000 training features) is fitted on the same
features. Claims checked: MIRA >= SwAV (MIRA Table 7), SMI >= Barlow Twins (SMI Table 3), HyDeS
learns fastest early (HyDeS Sec. VIII), each at this budget only.

    python benchmarks/pretrain_leaderboard.py [--budget 480] [--seeds 0,1] [--methods ...]
    python benchmarks/pretrain_leaderboard.py --render-only      # the .md and .png from the .json

The trained runs stay in --work (state.safetensors with every head, used by assign_convergence.py --logits).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _budget import TestProbe, at_time, config_for, pilot_cpu_per_step  # noqa: E402
from _timing import machine  # noqa: E402

from infomax import methods as M  # noqa: E402
from infomax.data.dataset import load_dataset  # noqa: E402
from infomax.engine.pretrain import pretrain  # noqa: E402
from infomax.eval.linear import linear_probe  # noqa: E402
from infomax.models import build_encoder  # noqa: E402

RESULTS = Path(__file__).parent / "results"
STEM = RESULTS / "pretrain_leaderboard"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FIRST = 80  # the first probe after step 0 (--probe-every's default)
ALL = ["simclr", "barlow_twins", "vicreg", "smi", "byol", "simsiam", "swav", "mira", "hydes"]


def one_run(method: str, seed: int, steps: int, train, test, args, sets: tuple[str, ...] = (), name: str | None = None) -> dict:
    probe = TestProbe(train, test, args.probe_every)
    config = config_for(method, seed, steps, args.data_root, sets)
    torch.manual_seed(seed)  # the encoder pretrain starts from: the untrained point of the curve
    probe.record(M.build(method, build_encoder(config.model.backbone, **config.model.options), config.method), 0)
    probe.cpu0, probe.wall0, probe.probe_cpu, probe.probe_wall = time.process_time(), time.perf_counter(), 0.0, 0.0
    out = Path(args.work) / f"{name or method}-{seed}"
    result = pretrain(config, out, overwrite=True, watch=(probe,))
    from infomax.models.registry import load_encoder

    encoder = load_encoder(out / "encoder.safetensors")
    holder = M.build(method, encoder, config.method)
    bank, query = probe.features(holder)
    linear = linear_probe(bank, torch.from_numpy(train.labels[probe.bank]), query, torch.from_numpy(test.labels))
    return {"method": method, "seed": seed, "steps": steps, "curve": probe.points, "train_seconds": result["train_seconds"],
            "linear_top1": linear.accuracy["top1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=480.0, help="process CPU seconds of training per run")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--methods", default=",".join(ALL))
    parser.add_argument("--probe-every", type=int, default=FIRST)
    parser.add_argument("--data-root", default=str(SHARED))
    parser.add_argument("--work", default="runs/leaderboard")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        record = json.loads(STEM.with_suffix(".json").read_text())
        return write(record["runs"], record["budget_cpu_s"], record["cpu_s_per_step"], record["machine"])
    train, test = load_dataset("cifar10", "train", args.data_root), load_dataset("cifar10", "test", args.data_root)
    methods, seeds = args.methods.split(","), [int(s) for s in args.seeds.split(",")]
    per_step = {}
    for m in methods:
        per_step[m] = pilot_cpu_per_step(m, Path(args.work), args.data_root)
        print(f"pilot {m}: {per_step[m]:.3f} CPU-s per step", flush=True)
    runs = []
    for seed in seeds:
        for method in methods:
            steps = max(20, int(args.budget / per_step[method]))
            print(f"{method} seed {seed}: {steps} steps", flush=True)
            runs.append(one_run(method, seed, steps, train, test, args))
            write(runs, args.budget, per_step)
    write(runs, args.budget, per_step)


def _fmt(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def _mean(values) -> float:
    return statistics.fmean(values)


def write(runs: list[dict], budget: float, per_step: dict, facts: dict | None = None) -> None:
    facts = facts or machine(torch.device("cpu"))
    STEM.with_suffix(".json").write_text(json.dumps({"machine": facts, "budget_cpu_s": budget, "cpu_s_per_step": per_step,
                                                     "runs": runs}, indent=1))
    by_method: dict[str, list[dict]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    early = 0.25 * min(r["curve"][-1]["cpu_s"] for r in runs)
    common = min(r["curve"][-1]["cpu_s"] for r in runs)
    seeds = sorted({r["seed"] for r in runs})
    lines = ["# Nine pretraining methods at one CPU budget (CIFAR-10, CPU recipes)", "",
             f"{facts['cpu']}, {facts['torch_threads']} threads, {facts['date']}; budget {budget:.0f} process CPU-seconds "
             f"of training per run (steps set from a pilot); seeds {', '.join(map(str, seeds))}. kNN (k=20, T=0.07) and a "
             "linear probe from 10,000 training images to the 10,000 test images, encoder in eval mode. "
             "Rerun: `python benchmarks/pretrain_leaderboard.py`.", "",
             f"| method | CPU-s / step | steps | kNN at step {FIRST} | kNN at {early:.0f} CPU-s (early) | kNN at {common:.0f} CPU-s | "
             "final kNN | final linear | wall min / run |", "|---|---|---|---|---|---|---|---|---|"]
    order = sorted(by_method, key=lambda m: -_mean(r["curve"][-1]["knn_top1"] for r in by_method[m]))
    for method in order:
        group = by_method[method]
        lines.append(f"| {method} | {per_step[method]:.2f} | {group[0]['steps']} | "
                     f"{_fmt([at_time(r['curve'], FIRST, 'step') for r in group])} | {_fmt([at_time(r['curve'], early) for r in group])} | {_fmt([at_time(r['curve'], common) for r in group])} | "
                     f"{_fmt([r['curve'][-1]['knn_top1'] for r in group])} | {_fmt([r['linear_top1'] for r in group])} | "
                     f"{_mean(r['curve'][-1]['wall_s'] for r in group) / 60:.1f} |")
    untrained = [r["curve"][0]["knn_top1"] for r in runs]
    lines += ["", f"Untrained encoders: kNN {_fmt(untrained)}. Mean ± std over seeds (a single value: one seed so far). "
              f"The step-{FIRST} column compares equal numbers of optimiser steps (equal images seen, per epoch as the "
              "papers plot it); the early column interpolates each curve at a quarter of the shortest run's CPU time.",
              "", "## Claims, at this budget", ""]
    lines += verdicts(by_method, early)
    STEM.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(by_method, str(STEM.with_suffix(".png")), budget)
    print("\n".join(lines), flush=True)


def verdicts(by_method: dict, early: float) -> list[str]:
    final = {m: _mean(r["curve"][-1]["knn_top1"] for r in g) for m, g in by_method.items()}
    linear = {m: _mean(r["linear_top1"] for r in g) for m, g in by_method.items()}
    out = []
    for a, b, source in (("mira", "swav", "MIRA Table 7"), ("smi", "barlow_twins", "SMI Table 3")):
        if a in final and b in final:
            holds = final[a] >= final[b] and linear[a] >= linear[b]
            out.append(f"- {a} >= {b} ({source}): kNN {final[a]:.1f} vs {final[b]:.1f}, linear {linear[a]:.1f} vs "
                       f"{linear[b]:.1f}: **{'holds' if holds else 'does not hold' if final[a] < final[b] and linear[a] < linear[b] else 'mixed'}**.")
    if "hydes" in by_method:
        for label, axis, at in ((f"at step {FIRST} (equal images seen)", "step", FIRST), (f"at {early:.0f} CPU-s (equal compute)", "cpu_s", early)):
            scores = {m: _mean(at_time(r["curve"], at, axis) for r in g) for m, g in by_method.items()}
            best = max(scores, key=scores.get)
            out.append(f"- HyDeS learns fastest early (HyDeS Sec. VIII), {label}: hydes {scores['hydes']:.1f}, the best is "
                       f"{best} {scores[best]:.1f}: **{'holds' if best == 'hydes' else 'does not hold'}**.")
    return out


def plot(by_method: dict, path: str, budget: float) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for index, (method, group) in enumerate(by_method.items()):
        for i, run in enumerate(group):
            ax.plot([p["cpu_s"] for p in run["curve"]], [p["knn_top1"] for p in run["curve"]], marker="o", ms=2.5,
                    color=f"C{index % 10}", ls="-" if index < 10 else "--", alpha=0.9 if i == 0 else 0.45,
                    label=method if i == 0 else None)
    ax.set(xlabel="training time (process CPU-seconds)", ylabel="kNN top-1 on the test split (%)",
           title=f"CIFAR-10, CPU recipes, {budget:.0f} CPU-s per run")
    ax.grid(alpha=0.3)
    ax.legend(ncol=3, fontsize=8)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
