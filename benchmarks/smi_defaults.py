"""How infomax picked SMI's defaults (lambd, eps, reduction, within_view): a measured sweep.

Self-supervised pretraining of a small MLP on scikit-learn's 8x8 digits (bundled, so the
sweep runs anywhere), two views per image from batched shift / noise / cut-out
augmentations, then weighted kNN (cosine, T=0.07) on the encoder features of a held-out
split, with labels from the training split only: all 1,297 of them (k=20), and 10 per
class (k=10), the few-label score used to choose since full-label kNN on digits is
near its ceiling. Each setting is trained with several seeds; the table reports mean
and std. Barlow Twins and VICReg with
their paper defaults run on the same encoder as reference points.

    python benchmarks/smi_defaults.py            # full sweep, ~6 min on 2 CPU cores
    python benchmarks/smi_defaults.py --quick    # smoke run
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

import infomax.objectives as O

RESULTS = Path(__file__).parent / "results"


def load_split(seed: int = 0):
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, held_out = order[:1297], order[1297:]
    return x[train], y[train], x[held_out], y[held_out]


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2, n), generator=g)
    rows = (dy[:, None] + torch.arange(8))[:, :, None].expand(n, 8, 8)
    cols = (dx[:, None] + torch.arange(8))[:, None, :].expand(n, 8, 8)
    shifted = padded[torch.arange(n)[:, None, None], 0, rows, cols][:, None]
    cut = torch.ones_like(shifted)
    cy, cx = torch.randint(0, 7, (2, n), generator=g)
    keep = torch.rand(n, generator=g) < 0.5
    cut[keep, 0, cy[keep], cx[keep]] = 0
    cut[keep, 0, (cy + 1)[keep], cx[keep]] = 0
    noisy = shifted * cut + 0.1 * torch.randn(shifted.shape, generator=g)
    return noisy.flatten(1)


def make_model(seed: int):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 128))
    projector = nn.Sequential(nn.ReLU(), nn.Linear(128, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 512))
    return encoder, projector


def knn_top1(train_f, train_y, test_f, test_y, k=20, t=0.07, classes=10):
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    sim, idx = (test_f @ train_f.T).topk(k, dim=1)
    votes = torch.zeros(test_f.shape[0], classes).scatter_add_(1, train_y[idx], (sim / t).exp())
    return (votes.argmax(1) == test_y).float().mean().item()


def few_label_bank(y: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.nonzero(y == c).flatten()[torch.randperm(int((y == c).sum()), generator=g)[:per_class]] for c in range(10)])


def pretrain_and_score(loss_fn, seed: int, epochs: int, data) -> tuple[float, float]:
    x_train, y_train, x_test, y_test = data
    encoder, projector = make_model(seed)
    params = list(encoder.parameters()) + list(projector.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(x_train), generator=g).split(256):
            if len(batch) < 32:
                continue
            xb = x_train[batch]
            z_a, z_b = projector(encoder(augment(xb, g))), projector(encoder(augment(xb, g)))
            loss = loss_fn(z_a, z_b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    encoder.eval()
    with torch.no_grad():
        f_train, f_test = encoder(x_train.flatten(1)), encoder(x_test.flatten(1))
    bank = few_label_bank(y_train, 10, seed)
    return knn_top1(f_train, y_train, f_test, y_test), knn_top1(f_train[bank], y_train[bank], f_test, y_test, k=10)


def settings(quick: bool):
    lambdas = (0.3, 1.0) if quick else (0.1, 0.3, 1.0, 3.0, 10.0)
    epss = (1e-3,) if quick else (1e-4, 1e-3, 1e-2)
    grid = {f"smi lambd={l:g} eps={e:g}": (lambda a, b, l=l, e=e: O.smi(a, b, lambd=l, eps=e)) for l, e in itertools.product(lambdas, epss)}
    if not quick:
        grid["smi lambd=1 eps=0.001 cross-only"] = lambda a, b: O.smi(a, b, within_view=False)
        grid["smi lambd=1 eps=0.001 sum"] = lambda a, b: O.smi(a, b, reduction="sum") / a.shape[0]
    grid["barlow_twins (paper)"] = lambda a, b: O.barlow_twins(a, b)
    grid["vicreg (paper)"] = lambda a, b: O.vicreg(a, b)
    return grid


def summary(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}


def cell(stat: dict) -> str:
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 40)
    seeds = range(args.seeds or (1 if args.quick else 3))
    data = load_split()
    rows, start = [], time.time()
    with O.checks(False):
        for name, fn in settings(args.quick).items():
            full, few = np.array([pretrain_and_score(fn, s, epochs, data) for s in seeds]).T * 100
            rows.append({"setting": name, "knn_all": summary(full), "knn_10_per_class": summary(few)})
            print(f"{name:36s} kNN all labels {full.mean():5.1f} ± {full.std():.1f}   10/class {few.mean():5.1f} ± {few.std():.1f}  ({time.time() - start:.0f}s)", flush=True)
    untrained = np.array([pretrain_and_score(None, s, 0, data) for s in seeds]).T * 100
    random_init = {"knn_all": summary(untrained[0]), "knn_10_per_class": summary(untrained[1])}
    if args.quick:
        return
    RESULTS.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "machine": platform.processor() or platform.machine(), "epochs": epochs, "seeds": list(seeds), "date": time.strftime("%Y-%m-%d")}
    (RESULTS / "smi_defaults.json").write_text(json.dumps({"meta": meta, "random_init_knn": random_init, "rows": rows}, indent=1))
    lines = [
        "# SMI defaults sweep (benchmarks/smi_defaults.py)", "",
        f"sklearn digits, MLP encoder 64-256-128 + projector 512-512, {epochs} epochs, batch 256, AdamW 2e-3, "
        f"seeds {list(seeds)}; weighted kNN (T=0.07) on 500 held-out images. torch {torch.__version__}, {meta['date']}.", "",
        "| setting | kNN top-1 %, all labels | kNN top-1 %, 10 labels per class |", "|---|---|---|",
        f"| untrained encoder | {cell(random_init['knn_all'])} | {cell(random_init['knn_10_per_class'])} |",
    ]
    lines += [f"| {r['setting']} | {cell(r['knn_all'])} | {cell(r['knn_10_per_class'])} |" for r in rows]
    (RESULTS / "smi_defaults.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
