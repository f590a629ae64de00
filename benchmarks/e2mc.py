"""E2MC's ablation on real weights and real data (issue 12): continued pre-training of EfficientNet-Lite0
(ImageNet) with a base loss alone or with an add-on, judged on the test split before and after.

Rows, at one budget each (same steps, batch, lr, cached views): no continued training | base loss only |
+ VCReg | + uniformity | + MMCR | + SIGReg | + E2MC, each add-on with the paper's App. A weights (SIGReg: LeJEPA's
lambda 0.05). Columns: linear
probe at 1% / 10% / 100% of the training images' labels, weighted kNN (k=20, T=0.07), and the
nearest-vs-100th-neighbour overlap; mean ± std over the training seeds (the few-label columns are
themselves means over 3 label draws). The CPU protocol (`--train-from`, docs in engine/continued.py):
blocks before `--train-from` frozen and cached for K augmented views per image and view, the tail
trained on a seeded subset of the training split, evaluation on that subset (labels) and the full test split.

Also measured side by side in one process: one training step of the whole network against the tail
alone (the speed-up of the protocol), and the add-on's share of a tail step (E2MC's sort over the batch).

    python benchmarks/e2mc.py [--datasets cifar10,fashion-mnist] [--seeds 0,1,2] [--base vicreg]
    (each invocation adds its datasets to results/e2mc_BASE.json; --fresh starts it anew;
     --rows lr0 --timing 0 adds rows to a dataset already there, --append --seeds 1,2 --timing 0 more seeds)
    python benchmarks/e2mc.py --render-only
    python benchmarks/e2mc.py --init runs/leaderboard_long/vicreg-0 --base vicreg --train-from '' --train-images 0 \
        --epochs 3 --datasets cifar10 --stem e2mc_leaderboard_vicreg   # issue 25: the paper's protocol in miniature
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, machine  # noqa: E402

from infomax.engine.continued import continue_pretraining, resolve  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ROWS = (("base loss only", None), ("+ VCReg", "vcreg"), ("+ uniformity", "uniformity"), ("+ MMCR", "mmcr"), ("+ SIGReg", "sigreg"),
        ("+ E2MC", "e2mc"), ("+ E2MC, beta and gamma chosen on validation", "e2mc-chosen"), ("control: lr 1e-12 (batch-norm statistics only)", "lr0"))  # the control runs at the first seed only
COLUMNS = (("1% linear", "fewshot_1pct_top1_mean"), ("10% linear", "fewshot_10pct_top1_mean"), ("100% linear", "linear_top1"),
           ("kNN", "knn_top1"), ("NN overlap", "nn_distance_overlap"))


def config_for(args, dataset: str, base: str, addon: str | None, seed: int, out: Path):
    """`addon` "lr0": the base loss at lr 1e-12 (0 is refused), so only the tail's batch-norm running statistics move;
    "e2mc-chosen": E2MC at --e2mc-chosen's beta and gamma (benchmarks/e2mc_weights.py chooses them on validation)."""
    sets = list(args.set) + (["optim.lr=1e-12"] if addon == "lr0" else [])
    addon = None if addon == "lr0" else chosen_spec(args) if addon == "e2mc-chosen" else addon
    flags = {"data.dataset": dataset, "data.data_root": args.data_root, "optim.batch_size": args.batch_size,
             "schedule.epochs": args.epochs, "run.seed": seed, "run.progress": False}
    continued = {"lr_scale": args.lr_scale, "train_from": args.train_from or None,
                 "cached_views": args.cached_views if args.train_from else None, "train_images": args.train_images or None}
    return resolve(args.init, base, None, [addon] if addon else [], sets, flags, continued, out, False)


def chosen_spec(args) -> str:
    if not getattr(args, "e2mc_chosen", None):
        raise SystemExit("the e2mc-chosen row needs --e2mc-chosen BETA,GAMMA (from benchmarks/e2mc_weights.py).")
    beta, gamma = (float(v) for v in args.e2mc_chosen.split(","))
    return f"e2mc:beta={beta:g},gamma={gamma:g}"


def run_dataset(args, dataset: str, save=lambda rows: None) -> dict:
    """The rows of one dataset; `save(rows)` after every run, so a cut-short invocation leaves what it measured."""
    work = Path(args.work) / dataset
    rows: dict[str, list[dict]] = dict(args.earlier.get(dataset, {}).get("rows", {}))
    rows.pop("no continued training", None)
    before = None
    for seed in args.seeds:
        for label, addon in ROWS:
            if ((args.rows and (addon or "base") not in args.rows) or (addon == "lr0" and (seed != args.seeds[0] or args.append))
                    or (addon == "e2mc-chosen" and not args.e2mc_chosen)):
                continue
            if args.rows and not args.append and seed == args.seeds[0]:  # a rerun row replaces its earlier seeds
                rows[label] = []
            out = work / f"{args.base}-{addon or 'base'}-{seed}"
            started = time.perf_counter()
            result = continue_pretraining(config_for(args, dataset, args.base, addon, seed, out), out, overwrite=True)
            print(f"[e2mc] {dataset} {label} seed {seed}: {time.perf_counter() - started:.0f} s, "
                  f"1% {result['after/fewshot_1pct_top1_mean']:.2f} (before {result['before/fewshot_1pct_top1_mean']:.2f})",
                  file=sys.stderr, flush=True)
            before = {k[len("before/"):]: v for k, v in result.items() if k.startswith("before/")}
            rows.setdefault(label, []).append({**{k[len("after/"):]: v for k, v in result.items() if k.startswith("after/")},
                                               "train_seconds": result["train_seconds"], "steps": result["steps"],
                                               **({"addon": chosen_spec(args)} if addon == "e2mc-chosen" else {})})
            save({"no continued training": [before], **{k: rows[k] for k in _order(rows)}})
    return {"no continued training": [before], **{k: rows[k] for k in _order(rows)}}


def _order(rows: dict) -> list[str]:
    return [label for label, _ in ROWS if label in rows]


def timings(args, dataset: str) -> dict:
    """Seconds per step, interleaved: the whole network vs the tail (batch --time-batch), tail with vs without E2MC."""
    from infomax.engine.pretrain import build_method
    from infomax.models import build_encoder
    from infomax.models.partial import split
    from infomax.data.views import make_views

    config = config_for(args, dataset, args.base, "e2mc", 0, Path(args.work) / "timing")
    size, n = config.data.resolution, args.time_batch
    images = torch.rand(n, 3, size, size)
    whole = build_method(config, 1, encoder=build_encoder("efficientnet-lite0"))
    trunk, tail = split(build_encoder("efficientnet-lite0"), args.train_from, size)
    with_addon = build_method(config, 1, encoder=tail)
    plain_config = config_for(args, dataset, args.base, None, 0, Path(args.work) / "timing")
    without = build_method(plain_config, 1, encoder=tail)
    recipe = __import__("infomax.engine.pretrain", fromlist=["view_set"]).view_set(config)
    with torch.no_grad():
        acts = [trunk(v).pooled for v in make_views(images, recipe, torch.Generator().manual_seed(0))]

    def step(method, views):
        def go():
            method.zero_grad(set_to_none=True)
            method({"views": views})["loss"].backward()
        return go

    full_views = make_views(images, recipe, torch.Generator().manual_seed(0))
    times = interleaved([step(whole, full_views), step(with_addon, acts), step(without, acts)], torch.device("cpu"), args.time_reps)
    median = [statistics.median(t[1:] or t) for t in times]
    big = [a.repeat(-(-args.batch_size // n), 1)[: args.batch_size] for a in acts]  # the runs' batch, for the sort's share
    big_times = interleaved([step(with_addon, big), step(without, big)], torch.device("cpu"), args.time_reps)
    big_median = [statistics.median(t[1:] or t) for t in big_times]
    return {"batch": n, "resolution": size, "whole_step_s": median[0], "tail_step_s": median[1], "tail_step_no_addon_s": median[2],
            "speedup": median[0] / median[1], "e2mc_share_of_tail_step": (median[1] - median[2]) / median[1],
            "run_batch": args.batch_size, "e2mc_share_at_run_batch": (big_median[0] - big_median[1]) / big_median[0]}


def summarise(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.pstdev(values):.2f}"


def render(data: dict) -> str:
    start = data["args"].get("init", "efficientnet-lite0")
    title = "EfficientNet-Lite0 (ImageNet)" if start == "efficientnet-lite0" else f"the {data['args']['base']} run {start}"
    commands = data.get("invocations") or [data["args"].get("argv") or ["python", "benchmarks/e2mc.py"]]
    rerun = "`, then `".join(shlex.join(c) for c in commands)
    lines = [f"# E2MC continued pre-training of {title}, base {data['args']['base']}", "",
             f"{data['machine']['cpu']}, {data['machine']['torch_threads']} threads, torch {data['machine']['torch']}, "
             f"{data['machine']['date']}; rerun: `{rerun}`.", "",
             "Protocol (CPU): " + data["protocol"], ""]
    for dataset, result in data["datasets"].items():
        seeds = max((len(runs) for label, runs in result["rows"].items() if label != "no continued training"), default=0)
        lines += [f"## {dataset} ({seeds} training seed{'s' if seeds != 1 else ''}; the control row: the first seed)", "", "| row | " + " | ".join(c for c, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for label, runs in result["rows"].items():
            spec = runs[0].get("addon", "")
            label = f"{label} ({spec[len('e2mc:'):].replace('=', ' ').replace(',', ', ')})" if spec else label
            lines.append(f"| {label} | " + " | ".join(summarise([r[key] for r in runs]) for _, key in COLUMNS) + " |")
        t = result.get("timing")
        if t:
            lines += ["", f"One step at batch {t['batch']}, {t['resolution']} px, median of interleaved repeats: the whole network "
                      f"{t['whole_step_s']:.2f} s, the tail from {data['args']['train_from']} {t['tail_step_s']:.3f} s "
                      f"(**{t['speedup']:.0f}x**); the E2MC add-on is {100 * t['e2mc_share_of_tail_step']:.1f}% of a tail step"
                      + (f" ({100 * t['e2mc_share_at_run_batch']:.1f}% at the runs' batch of {t['run_batch']})." if "run_batch" in t else ".")]
        lines.append("")
    lines += ["Accuracies in %, test split; mean ± std over training seeds (the 'no continued training' row has one value: "
              "the evaluation is deterministic). NN overlap: E2MC Fig. 4's overlap of the 1st- and 100th-neighbour "
              "distance histograms (lower is better separated).", "", data.get("verdict", "")]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="cifar10,fashion-mnist")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--base", default="vicreg")
    p.add_argument("--init", default="efficientnet-lite0",
                   help="the start: an encoder name, or a pretrain run of --base (its projector and prototypes continue too)")
    p.add_argument("--stem", help="results/STEM.{json,md} (default e2mc_BASE)")
    p.add_argument("--data-root", default=str(SHARED))
    p.add_argument("--train-from", default="block15", help="'' trains the whole network on fresh augmentations")
    p.add_argument("--cached-views", type=int, default=2)
    p.add_argument("--train-images", type=int, default=5000, help="0: the whole training split")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr-scale", type=float, default=0.01)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--timing", type=int, default=1, help="1: also time whole vs tail steps on each dataset")
    p.add_argument("--time-batch", type=int, default=64)
    p.add_argument("--time-reps", type=int, default=4)
    p.add_argument("--work", default="/tmp/infomax-e2mc")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--fresh", action="store_true", help="drop the datasets of an earlier results file")
    p.add_argument("--rows", default="", help="only these rows (e.g. base,lr0,e2mc), merged into the dataset's earlier rows")
    p.add_argument("--append", action="store_true", help="add these --seeds to the dataset's earlier rows")
    p.add_argument("--e2mc-chosen", default="", help="BETA,GAMMA: adds the row e2mc-chosen (E2MC at these weights)")
    args = p.parse_args()
    stem = RESULTS / (args.stem or f"e2mc_{args.base}")
    if args.render_only:
        stem.with_suffix(".md").write_text(render(json.loads(stem.with_suffix(".json").read_text())))
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.rows = [r for r in args.rows.split(",") if r]
    started = time.perf_counter()
    data = {"args": {**{k: v for k, v in vars(args).items() if k != "render_only"}, "argv": ["python", *sys.argv]}, "machine": machine(torch.device("cpu")), "datasets": {},
            "protocol": f"from {args.init}: " + (f"blocks before {args.train_from} frozen, {args.cached_views} cached augmented "
                        "views per image and view, " if args.train_from else "the whole network on fresh augmentations, ")
                        + f"{args.train_images or 'all'} training images, batch {args.batch_size}, {args.epochs} epochs at "
                        f"{args.lr_scale} x the lr of " + ("the run's own recipe" if Path(args.init).is_dir() else f"the {args.base}-cpu recipe")
                        + " (constant, no warm-up), the add-ons' paper weights."}
    if args.init != "efficientnet-lite0" or not args.train_from:
        args.timing = 0  # the whole-vs-tail timing is of EfficientNet-Lite0's tail protocol
    args.earlier = {}
    if stem.with_suffix(".json").exists() and not args.fresh:  # another dataset's rows from an earlier invocation stay
        earlier = json.loads(stem.with_suffix(".json").read_text())
        data["datasets"] = earlier.get("datasets", {})
        if args.rows or args.append:  # this invocation adds to the earlier ones' rows: the rerun takes them all
            data["invocations"] = (earlier.get("invocations") or [earlier["args"]["argv"]]) + [data["args"]["argv"]]
        args.earlier = {k: v for k, v in data["datasets"].items()} if args.rows or args.append else {}
    def save(dataset, rows):
        data["datasets"][dataset] = {**data["datasets"].get(dataset, {}), "rows": rows}
        data["minutes"] = (time.perf_counter() - started) / 60
        stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
        stem.with_suffix(".md").write_text(render(data))

    for dataset in args.datasets.split(","):
        save(dataset, run_dataset(args, dataset, lambda rows: save(dataset, rows)))
        if args.timing:
            data["datasets"][dataset]["timing"] = timings(args, dataset)
        data["minutes"] = (time.perf_counter() - started) / 60
        stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
        stem.with_suffix(".md").write_text(render(data))


if __name__ == "__main__":
    main()
