"""Every pretraining method at one compute budget on real CIFAR-10, 2 seeds (issues 11 and 25).

Each method trains with its CPU recipe (`infomax/recipes/METHOD-cpu.yaml`) at the record's one precision
(the first machine's CPU default, bf16 autocast where it has native bf16, kept on every later machine,
emulated there if need be, so the table never mixes precisions) for the same budget of process CPU time: a pilot
measures each method's CPU-seconds per step (all pilots first, side by side), and each run's step
count is set so that its cosine schedule ends at the budget. The table's and the plot's CPU-time axis is
steps x that pilot's CPU-seconds per step: one machine's clock for every run, whichever machine ran it,
and blind to what ran beside it (a second job on these 2 cores inflated a run's own process CPU time
2.8x: hydes-0's first 500 steps); each run's own CPU time and wall time stay in the JSON. The test-split kNN probe (k=20, T=0.07, 10,000 training images vote for the 10,000
test images, eval mode, plain view) runs every `--probe-every` steps and at the end, its own time
not counted; at the probes nearest a quarter, half, three quarters and the end of a run the linear
probe (eval/linear.py, L2 chosen on a split of the 10,000 training features, never on test) is
fitted on the same features. Claims checked: MIRA >= SwAV (MIRA Table 7), SMI >= Barlow Twins (SMI
Table 3), HyDeS learns fastest early (HyDeS Sec. VIII), each at this budget only.

Long budgets run for hours: every run checkpoints at each probe and writes its curve beside it, so
a stopped script rerun with `--append` skips the finished runs and resumes the unfinished one where
its last checkpoint stands; results are rewritten after every run, a table missing runs is marked
partial.

    python benchmarks/pretrain_leaderboard.py [--budget 480] [--seeds 0,1] [--methods ...] [--stem NAME]
    python benchmarks/pretrain_leaderboard.py --budget 2400 --probe-every 500 --stem pretrain_leaderboard_long --append
    python benchmarks/pretrain_leaderboard.py --render-only [--stem NAME]   # the .md and .png from the .json

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
from _timing import cpu_model, machine  # noqa: E402

from infomax import methods as M  # noqa: E402
from infomax.data.dataset import load_dataset  # noqa: E402
from infomax.engine.pretrain import pretrain  # noqa: E402
from infomax.eval.linear import linear_probe  # noqa: E402
from infomax.models import build_encoder  # noqa: E402
from infomax.precision import native_precision  # noqa: E402
from infomax.runs import rundir  # noqa: E402

RESULTS = Path(__file__).parent / "results"
STEM = RESULTS / "pretrain_leaderboard"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FIRST = 80  # the first probe after step 0 (--probe-every's default)
ALL = ["simclr", "barlow_twins", "vicreg", "smi", "byol", "simsiam", "swav", "mira", "hydes", "lejepa"]
BATCH = 256  # the CPU recipes' batch: images seen = steps x BATCH


def one_run(method: str, seed: int, steps: int, train, test, args, sets: tuple[str, ...] = (), name: str | None = None) -> dict:
    out = Path(args.work) / f"{name or method}-{seed}"
    curve = out.with_name(out.name + ".curve.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    every = args.probe_every
    quarters = tuple(sorted({min(steps, round(steps * q / every) * every) or every for q in (0.25, 0.5, 0.75)} | {steps}))
    probe = TestProbe(train, test, every, linear_at=quarters, saved=lambda points: curve.write_text(json.dumps(points)))
    config = config_for(method, seed, steps, args.data_root, sets, checkpoint_every=every)
    resume = rundir.is_run(out) and (out / "state.safetensors").exists() and curve.exists()
    if resume:
        step = _checkpoint_step(out)
        probe.resume_from(json.loads(curve.read_text()), step)
        print(f"{method} seed {seed}: resuming at step {step}", flush=True)
    else:
        torch.manual_seed(seed)  # the encoder pretrain starts from: the untrained point of the curve
        probe.record(M.build(method, build_encoder(config.model.backbone, **config.model.options), config.method), 0)
        probe.cpu0, probe.wall0, probe.probe_cpu, probe.probe_wall = time.process_time(), time.perf_counter(), 0.0, 0.0
    result = pretrain(config, out, resume=resume, overwrite=not resume, watch=(probe,))
    linear = [p for p in probe.points if "linear_top1" in p]
    return {"method": method, "seed": seed, "steps": steps, "curve": probe.points, "train_seconds": result["train_seconds"],
            "precision": config.run.precision, "cpu": cpu_model(), "linear_top1": linear[-1]["linear_top1"] if linear else _final_linear(out, method, config, probe)}


def _started_steps(out: Path) -> int | None:
    """The step count of a run already started (its schedule must not change on resume)."""
    import yaml

    if not ((out / "config.yaml").exists() and (out / "state.safetensors").exists()):
        return None
    return int(yaml.safe_load((out / "config.yaml").read_text())["schedule"]["max_steps"])


def _checkpoint_step(out: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(out / "state.safetensors"), "pt") as handle:
        return int(json.loads(handle.metadata()["infomax_state"])["counters"]["step"])


def _final_linear(out: Path, method: str, config, probe) -> float:
    from infomax.models.registry import load_encoder

    bank, query = probe.features(M.build(method, load_encoder(out / "encoder.safetensors"), config.method))
    return linear_probe(bank, torch.from_numpy(probe.train.labels[probe.bank]), query, torch.from_numpy(probe.test.labels)).accuracy["top1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=480.0, help="process CPU seconds of training per run")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--methods", default=",".join(ALL))
    parser.add_argument("--probe-every", type=int, default=FIRST, help="steps between probes and checkpoints (a multiple of 10)")
    parser.add_argument("--data-root", default=str(SHARED))
    parser.add_argument("--work", default="runs/leaderboard")
    parser.add_argument("--stem", default=STEM.name, help="results/STEM.{json,md,png}")
    parser.add_argument("--append", action="store_true", help="keep STEM.json's runs and pilots; run only what is missing")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    stem = RESULTS / args.stem
    if args.render_only:
        record = json.loads(stem.with_suffix(".json").read_text())
        return write(stem, record)
    record = json.loads(stem.with_suffix(".json").read_text()) if args.append and stem.with_suffix(".json").exists() else {}
    if record and record["budget_cpu_s"] != args.budget:
        raise SystemExit(f"{stem}.json holds a {record['budget_cpu_s']:.0f} CPU-s budget; pass --budget {record['budget_cpu_s']:.0f}.")
    methods, seeds = args.methods.split(","), [int(s) for s in args.seeds.split(",")]
    record.update({"machine": record.get("machine") or machine(torch.device("cpu")), "budget_cpu_s": args.budget,
                   "probe_every": args.probe_every, "planned": {"methods": sorted(set(record.get("planned", {}).get("methods", [])) | set(methods)),
                                                                "seeds": sorted(set(record.get("planned", {}).get("seeds", [])) | set(seeds))}})
    record.setdefault("runs", [])
    precision = record.setdefault("precision", next((r["precision"] for r in record["runs"]), native_precision("cpu")))
    pinned = (f"run.precision={precision}",)
    per_step = record.setdefault("cpu_s_per_step", {})
    train, test = load_dataset("cifar10", "train", args.data_root), load_dataset("cifar10", "test", args.data_root)
    for m in methods:
        if m not in per_step:
            per_step[m] = pilot_cpu_per_step(m, Path(args.work), args.data_root, pinned)
            print(f"pilot {m}: {per_step[m]:.3f} CPU-s per step", flush=True)
            write(stem, record)  # a run stopped before its end resumes with the step count this pilot set
    done = {(r["method"], r["seed"]) for r in record["runs"]}
    for seed in seeds:
        for method in methods:
            if (method, seed) in done:
                continue
            steps = _started_steps(Path(args.work) / f"{method}-{seed}") or max(20, int(args.budget / per_step[method]) // 10 * 10)
            print(f"{method} seed {seed}: {steps} steps", flush=True)
            record["runs"].append(one_run(method, seed, steps, train, test, args, sets=pinned))
            write(stem, record)
    write(stem, record)


def _fmt(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def _mean(values) -> float:
    return statistics.fmean(values)


def on_pilot_clock(run: dict, per_step: dict) -> dict:
    """The run with its curve's CPU-seconds replaced by steps x its method's pilot CPU-seconds per step."""
    return {**run, "curve": [{**point, "cpu_s": point["step"] * per_step[run["method"]]} for point in run["curve"]]}


def write(stem: Path, record: dict) -> None:
    budget, per_step, facts = record["budget_cpu_s"], record["cpu_s_per_step"], record["machine"]
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    if not record["runs"]:
        return
    runs = [on_pilot_clock(run, per_step) for run in record["runs"]]
    by_method: dict[str, list[dict]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    early = 0.25 * min(r["curve"][-1]["cpu_s"] for r in runs)
    common = min(r["curve"][-1]["cpu_s"] for r in runs)
    seeds = sorted({r["seed"] for r in runs})
    first = min(record.get("probe_every", FIRST), min(r["steps"] for r in runs))
    planned = record.get("planned", {"methods": sorted(by_method), "seeds": seeds})
    missing = [f"{m} seed {s}" for s in planned["seeds"] for m in planned["methods"] if (m, s) not in {(r["method"], r["seed"]) for r in runs}]
    precisions = sorted({r.get("precision", "32-true") for r in runs})
    cpus = {r.get("cpu", facts["cpu"]) for r in runs}
    lines = [f"# {len(planned['methods'])} pretraining methods at one CPU budget (CIFAR-10, CPU recipes){' (PARTIAL)' if missing else ''}", "",
             f"{facts['cpu']}, {facts['torch_threads']} threads, {facts['date']}; budget {budget:.0f} process CPU-seconds "
             f"of training per run (steps set from a pilot, CPU-seconds below = steps x the pilot's CPU-s / step); precision {', '.join(precisions)}; seeds {', '.join(map(str, seeds))}. "
             "kNN (k=20, T=0.07) and a linear probe from 10,000 training images to the 10,000 test images, encoder in eval mode. "
             f"Rerun: `python benchmarks/pretrain_leaderboard.py --budget {budget:.0f} --stem {stem.name}`.", ""]
    if len(cpus) > 1:
        where = {c: ", ".join(f"{r['method']}-{r['seed']}" for r in runs if r.get("cpu", facts["cpu"]) == c) for c in sorted(cpus)}
        lines += [f"Runs came from {len(cpus)} CPU models ({'; '.join(f'{c}: {names}' for c, names in where.items())}). "
                  "Every run's step count and its CPU-seconds axis come from the pilots on the first machine, so both axes and "
                  "the final scores compare; the wall times are each machine's own.", ""]
    for old in record.get("superseded", []):  # runs of an earlier recipe, kept in the record with why they left the table
        run = old["run"]
        now = [r for r in runs if (r["method"], r["seed"]) == (run["method"], run["seed"])]
        rerun = f" The rerun in the table: final kNN {now[0]['curve'][-1]['knn_top1']:.1f}, linear {now[0]['linear_top1']:.1f}." if now else ""
        lines += [f"Superseded, not in the table: {run['method']}-{run['seed']} ({run['steps']} steps, {run.get('precision', '32-true')}, "
                  f"final kNN {run['curve'][-1]['knn_top1']:.1f}, linear {run['linear_top1']:.1f}): {old['why']}{rerun}", ""]
    if missing:
        lines += [f"**Partial**: {len(missing)} planned run(s) not done yet: {', '.join(missing)}. "
                  f"Continue with `--append --budget {budget:.0f} --stem {stem.name}`.", ""]
    lines += [f"| method | CPU-s / step | steps | kNN at step {first} | kNN at {early:.0f} CPU-s (early) | kNN at {common:.0f} CPU-s | "
              "final kNN | linear at 1/4 | linear at 1/2 | final linear | wall min / run |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(by_method, key=lambda m: -_mean(r["curve"][-1]["knn_top1"] for r in by_method[m]))
    for method in order:
        group = by_method[method]
        lines.append(f"| {method} | {per_step[method]:.2f} | {group[0]['steps']} | "
                     f"{_fmt([at_time(r['curve'], first, 'step') for r in group])} | {_fmt([at_time(r['curve'], early) for r in group])} | {_fmt([at_time(r['curve'], common) for r in group])} | "
                     f"{_fmt([r['curve'][-1]['knn_top1'] for r in group])} | {_linear_at(group, 0.25)} | {_linear_at(group, 0.5)} | "
                     f"{_fmt([r['linear_top1'] for r in group])} | {_mean(r['curve'][-1]['wall_s'] for r in group) / 60:.1f} |")
    untrained = [r["curve"][0]["knn_top1"] for r in runs]
    best = max(order, key=lambda m: _mean(r["curve"][-1]["knn_top1"] for r in by_method[m]))
    best_knn = _mean(r["curve"][-1]["knn_top1"] for r in by_method[best])
    lines += ["", f"Untrained encoders: kNN {_fmt(untrained)}; the best method, {best}, ends {best_knn - _mean(untrained):+.1f} points "
              f"above them (target +25). Mean ± std over seeds (a single value where a method has one seed so far). "
              f"The step-{first} column compares equal numbers of optimiser steps (equal images seen, per epoch as the "
              "papers plot it); the early column interpolates each curve at a quarter of the shortest run's CPU time.", ""]
    lines += separation(by_method, order)
    lines += ["", "## Claims, at this budget", ""]
    lines += verdicts(by_method, early, first)
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(by_method, str(stem.with_suffix(".png")), budget)
    print("\n".join(lines), flush=True)


def _linear_at(group: list[dict], fraction: float) -> str:
    values = []
    for run in group:
        points = [p for p in run["curve"] if "linear_top1" in p and p["step"]]
        if points:
            values.append(min(points, key=lambda p: abs(p["step"] - fraction * run["steps"]))["linear_top1"])
    return _fmt(values) if values else "-"


def separation(by_method: dict, order: list[str]) -> list[str]:
    """Whether neighbours in the ranking differ by more than twice their seed spread (final kNN), and tiers: a
    new tier starts at the first method separated so from the current tier's best (one-seed methods join it)."""
    finals = {m: [r["curve"][-1]["knn_top1"] for r in by_method[m]] for m in order}

    def separated(upper: str, lower: str) -> tuple[float, float | None]:
        a, b = finals[upper], finals[lower]
        spread = max(statistics.stdev(a), statistics.stdev(b)) if len(a) > 1 and len(b) > 1 else None
        return _mean(a) - _mean(b), spread

    rows, tiers = [], [[order[0]]]
    for upper, lower in zip(order, order[1:]):
        gap, spread = separated(upper, lower)
        rows.append(f"{upper} > {lower}: gap {gap:.1f}, spread unknown (one seed)" if spread is None else
                    f"{upper} > {lower}: gap {gap:.2f} {'>' if gap > 2 * spread else '<='} 2 x spread {2 * spread:.2f}")
        gap, spread = separated(tiers[-1][0], lower)
        tiers.append([lower]) if spread is not None and gap > 2 * spread else tiers[-1].append(lower)
    return ["Ranking gaps (final kNN) against twice the larger seed std of the pair: " + "; ".join(rows) + ".", "",
            f"Tiers (a tier's members are within twice the seed spread of its best): {' > '.join('{' + ', '.join(t) + '}' for t in tiers)}."]


def verdicts(by_method: dict, early: float, first: int = FIRST) -> list[str]:
    final = {m: _mean(r["curve"][-1]["knn_top1"] for r in g) for m, g in by_method.items()}
    linear = {m: _mean(r["linear_top1"] for r in g) for m, g in by_method.items()}
    out = []
    for a, b, source in (("mira", "swav", "MIRA Table 7"), ("smi", "barlow_twins", "SMI Table 3")):
        if a in final and b in final:
            holds = final[a] >= final[b] and linear[a] >= linear[b]
            out.append(f"- {a} >= {b} ({source}): kNN {final[a]:.1f} vs {final[b]:.1f}, linear {linear[a]:.1f} vs "
                       f"{linear[b]:.1f}: **{'holds' if holds else 'does not hold' if final[a] < final[b] and linear[a] < linear[b] else 'mixed'}**.")
    if "hydes" in by_method:
        for label, axis, at in ((f"at step {first} (equal images seen)", "step", first), (f"at {early:.0f} CPU-s (equal compute)", "cpu_s", early)):
            scores = {m: _mean(at_time(r["curve"], at, axis) for r in g) for m, g in by_method.items()}
            best = max(scores, key=scores.get)
            out.append(f"- HyDeS learns fastest early (HyDeS Sec. VIII), {label}: hydes {scores['hydes']:.1f}, the best is "
                       f"{best} {scores[best]:.1f}: **{'holds' if best == 'hydes' else 'does not hold'}**.")
    return out


def plot(by_method: dict, path: str, budget: float) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    by_images, by_cpu = fig.subplots(1, 2, sharey=True)
    for index, (method, group) in enumerate(by_method.items()):
        for i, run in enumerate(group):
            style = dict(marker="o", ms=2.5, color=f"C{index % 10}", ls="-" if index < 10 else "--", alpha=0.9 if i == 0 else 0.45,
                         label=method if i == 0 else None)
            knn = [p["knn_top1"] for p in run["curve"]]
            by_images.plot([p["step"] * BATCH / 1e6 for p in run["curve"]], knn, **style)
            by_cpu.plot([p["cpu_s"] for p in run["curve"]], knn, **style)
    by_images.set(xlabel="images seen (millions; 2 views each)", ylabel="kNN top-1 on the test split (%)")
    by_cpu.set(xlabel="training time (steps x the pilot's process CPU-seconds per step)")
    fig.suptitle(f"CIFAR-10, CPU recipes, {budget:.0f} CPU-s per run")
    for ax in (by_images, by_cpu):
        ax.grid(alpha=0.3)
    by_cpu.legend(ncol=3, fontsize=8)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
