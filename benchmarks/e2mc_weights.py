"""E2MC's beta and gamma chosen on a validation split (issue 25, part 3). At the paper's App. A weights E2MC lost
to the base loss alone on the test split (e2mc_leaderboard_*.md), so this sweeps them without looking at test.

The protocol is e2mc.py's (the same continued training, steps and seed), only the judging differs: a seeded
10,000 of the training images (--validation) are the validation images; the probes take their labels from the others only
(1% linear, the mean over --draws label draws; 10% linear over 3; the weighted kNN). Ten 1% draws, not the test
table's three: at 400 labels one draw's probe varies by 1-5 points (its weight decay is chosen on 80 images), more
than the rows differ; `--rescore` scores the saved encoders again, e.g. at another --draws. Continued training sees every training image,
unlabelled, as in the test table. Rows: the start untouched, the base loss alone, and E2MC at beta x {1, 0.1, 0.01}
and gamma x {1, 0.1} of the paper's; the chosen point is the E2MC row with the best 1% validation accuracy (the
paper's claim is about few labels), which e2mc.py then runs on the test split: `--rows e2mc-chosen --e2mc-chosen B,G`.

    python benchmarks/e2mc_weights.py --init runs/leaderboard_long/swav-0 --base swav --stem e2mc_weights_swav \
        --work runs/e2mc_weights_swav
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402
from e2mc import SHARED, config_for  # noqa: E402

from infomax.data.dataset import load_dataset  # noqa: E402
from infomax.data.features import extract_features  # noqa: E402
from infomax.engine.continued import continue_pretraining  # noqa: E402
from infomax.eval.fewshot import few_label_accuracy  # noqa: E402
from infomax.eval.knn import weighted_knn  # noqa: E402
from infomax.methods.addons import E2MC_PAPER  # noqa: E402
from infomax.models import build_encoder  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SPLIT_SEED = 1234  # differs from every label draw's seed (0, 1, 2)
COLUMNS = (("1% linear", "fewshot_1pct"), ("10% linear", "fewshot_10pct"), ("kNN", "knn_top1"))
SCORES = tuple(key for _, key in COLUMNS)


def grid(base: str) -> list[tuple[float, float]]:
    beta, gamma, _ = E2MC_PAPER[base]
    return [(beta * b, gamma * g) for b in (1, 0.1, 0.01) for g in (1, 0.1)]


def validation_split(n: int, held: int) -> tuple[np.ndarray, np.ndarray]:
    """(the probes' labelled pool, the validation rows) of n training images."""
    if not 0 < held <= n // 2:
        raise SystemExit(f"--validation must lie in [1, {n // 2}] (half of the {n} training images), got {held}.")
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def score(encoder_path: str, train, resolution: int, held: int, draws: int, columns=SCORES) -> dict:
    """Validation accuracies of an encoder in `columns`, the probes' labels from the non-validation images only."""
    features = extract_features(build_encoder(encoder_path), train, resolution=resolution, views=0, token_grid=0)
    x, y = torch.from_numpy(np.asarray(features.pooled(0), dtype=np.float32)), torch.from_numpy(train.labels)
    pool, held = (torch.from_numpy(r) for r in validation_split(len(y), held))
    result = {"draws": draws}
    if "knn_top1" in columns:
        result["knn_top1"] = weighted_knn(x[pool], y[pool], x[held], y[held], k=20, temperature=0.07).accuracy["top1"]
    for key, fraction, seeds in (("fewshot_1pct", 0.01, range(draws)), ("fewshot_10pct", 0.1, range(3))):
        if key in columns:
            result[key] = few_label_accuracy(x[pool], y[pool], x[held], y[held], fraction=fraction, seeds=seeds)["mean"]
    return result


def label(row: dict) -> str:
    if row["addon"] is None:
        return "no continued training" if row["untouched"] else "base loss only"
    return f"+ E2MC beta={row['beta']:g}, gamma={row['gamma']:g}" + (" (the paper's)" if row["paper"] else "")


def choose(rows: list[dict]) -> dict | None:
    e2mc = [r for r in rows if r["addon"]]
    return max(e2mc, key=lambda r: (r["fewshot_1pct"], r["knn_top1"])) if e2mc else None


def render(data: dict) -> str:
    rows, m = data["rows"], data["machine"]
    lines = [f"# E2MC's beta, gamma on a validation split: {data['args']['base']} from {data['args']['init']}", "",
             f"{m['cpu']}, {m['torch_threads']} threads, torch {m['torch']}, {m['date']}; rerun: `{shlex.join(data['argv'])}`.", "",
             f"Continued training as e2mc.py ({data['args']['epochs']} epochs at {data['args']['lr_scale']} x the run's lr, "
             f"batch {data['args']['batch_size']}, training seed {data['args']['seed']}, every training image unlabelled). "
             f"Judged on {data['args']['validation']:,} training images held out from the probes' labels (split seed {SPLIT_SEED}); "
             "the test split is not read. Accuracies in %; the 1% column is the mean over "
             f"{data['args']['draws']} label draws, the 10% column over 3.", "",
             "| row | " + " | ".join(c for c, _ in COLUMNS) + " | minutes |", "|---" * (len(COLUMNS) + 2) + "|"]
    best = choose(rows)
    for r in rows:
        mark = " **chosen**" if r is best else ""
        lines.append(f"| {label(r)}{mark} | " + " | ".join(f"{r[k]:.2f}" for _, k in COLUMNS) + f" | {r['minutes']:.1f} |")
    if best:
        paper = next((r for r in rows if r["paper"]), None)
        base = next((r for r in rows if r["addon"] is None and not r["untouched"]), None)
        said = [f"Chosen on validation: beta={best['beta']:g}, gamma={best['gamma']:g} (1% linear {best['fewshot_1pct']:.2f}"]
        if paper:
            said.append(f"; the paper's weights {paper['fewshot_1pct']:.2f}")
        if base:
            said.append(f"; the base loss alone {base['fewshot_1pct']:.2f}")
        lines += ["", "".join(said) + f"). On test: `python benchmarks/e2mc.py ... --rows e2mc-chosen "
                  f"--e2mc-chosen {best['beta']:g},{best['gamma']:g}`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", required=True, help="a pretrain run directory (its projector and prototypes continue)")
    p.add_argument("--base", required=True, choices=sorted(E2MC_PAPER))
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-root", default=str(SHARED))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validation", type=int, default=10_000, help="training images held out from the probes' labels")
    p.add_argument("--draws", type=int, default=10, help="label draws of the 1%% column, the choice's criterion (seeds 0..DRAWS-1)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr-scale", type=float, default=0.01)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--stem", help="results/STEM.{json,md} (default e2mc_weights_BASE)")
    p.add_argument("--work", default="/tmp/infomax-e2mc-weights")
    p.add_argument("--append", action="store_true", help="keep the rows already in the results file, run the others")
    p.add_argument("--rescore", action="store_true", help="with --append: score the kept rows again from their encoders in --work")
    args = p.parse_args()
    if args.draws < 1:
        raise SystemExit(f"--draws must be at least 1 (label draws of the 1% column), got {args.draws}.")
    if args.rescore and not args.append:
        raise SystemExit("--rescore scores the rows already in the results file again: add --append.")
    args.train_from, args.cached_views, args.train_images = "", 0, 0  # e2mc.py's whole-network protocol
    stem = RESULTS / (args.stem or f"e2mc_weights_{args.base}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rerun = [a for a in sys.argv if a not in ("--append", "--rescore")]  # the command that rebuilds the table from scratch
    data = {"args": {k: v for k, v in vars(args).items()}, "argv": ["python", *rerun], "machine": machine(torch.device("cpu")), "rows": []}
    if args.append and stem.with_suffix(".json").exists():
        data["rows"] = json.loads(stem.with_suffix(".json").read_text())["rows"]
        other = sorted({r.get("draws", 3) for r in data["rows"]} - {args.draws})  # rows from before --draws had 3
        if other and not args.rescore:
            raise SystemExit(f"{stem}.json holds rows scored over {other} label draws, not --draws {args.draws}: add "
                             "--rescore to score them again from their saved encoders, or pass that --draws.")
    paper = E2MC_PAPER[args.base][:2]
    plan = [dict(addon=None, untouched=True), dict(addon=None, untouched=False)] + [
        dict(addon=f"e2mc:beta={b:g},gamma={g:g}", untouched=False, beta=b, gamma=g) for b, g in grid(args.base)]
    train = None
    for point in plan:
        point["paper"] = (point.get("beta"), point.get("gamma")) == paper
        kept = next((r for r in data["rows"] if label(r) == label(point)), None)
        if kept and not args.rescore:
            continue
        started = time.perf_counter()
        out = Path(args.work) / label(point).replace(" ", "_").replace(",", "").replace("(the_paper's)", "").strip("_+")
        config = config_for(args, args.dataset, args.base, point["addon"], args.seed, out)
        encoder = args.init if point["untouched"] else str(out)
        if kept and not point["untouched"] and not (out / "encoder.safetensors").exists():
            raise SystemExit(f"--rescore: no saved encoder for '{label(point)}' in {out}; give the --work of the run "
                             "that trained it, or rerun without --rescore.")
        if not kept and not point["untouched"]:
            continue_pretraining(config, out, overwrite=True, evaluate=False)
        if train is None:
            train = load_dataset(args.dataset, "train", args.data_root)
        columns = ("fewshot_1pct",) if kept else SCORES  # a rescore redoes the one column --draws changes
        row = kept or point
        row.update(score(encoder, train, config.data.resolution, args.validation, args.draws, columns))
        if not kept:
            row["minutes"] = (time.perf_counter() - started) / 60
            data["rows"].append(row)
        print(f"[e2mc-weights] {label(row)}: 1% {row['fewshot_1pct']:.2f}, kNN {row['knn_top1']:.2f}", file=sys.stderr, flush=True)
        stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
        stem.with_suffix(".md").write_text(render(data))

if __name__ == "__main__":
    main()
