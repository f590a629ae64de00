"""The engine's full training step against a bare PyTorch step of the same model (issue 10 target <= 1.15).

Per method, ResNet-18 with the CIFAR stem, the method's paper projector (its -cifar10 recipe's
widths), batch 256, 32 px views of real CIFAR-10 images:
  engine: the next batch from ViewBatches (index the uint8 array, augment on the device) and
          Loop.train_step (Fabric forward/backward, the lr schedule, the finiteness guard, logging
          on its steps), i.e. everything the loop does per step;
  bare:   `loss = method(views)["loss"]; loss.backward(); optimiser.step()` on pre-made views.
The two alternate step by step (A B A B ...) so load drift hits both alike; we report the median
of each and their ratio, and the backbone's own forward+backward for scale. On a GPU (bf16-mixed)
the same ratio and images/s.

    python benchmarks/pretrain_overhead.py [--steps 4] [--device cpu|cuda] [--methods simclr,smi]
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
from _timing import machine, sync  # noqa: E402

from infomax import config as C, methods  # noqa: E402
from infomax.data.batches import ViewBatches  # noqa: E402
from infomax.precision import native_precision  # noqa: E402
from infomax.data.dataset import load_dataset  # noqa: E402
from infomax.data.views import get_view_set  # noqa: E402
from infomax.engine.loop import Loop, Schedule  # noqa: E402
from infomax.engine.optim import build_optimiser  # noqa: E402
from infomax.models import build_encoder  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def setup(name: str, device: str, precision: str, batch: int, method: dict | None = None):
    """`method`: settings over the recipe's (benchmarks/device.py's dry run shrinks the heads)."""
    from lightning.fabric import Fabric

    tree = C.load_recipe(f"{name}-cifar10")
    tree["model"] = {"backbone": "resnet18", "options": {"cifar_stem": True}}
    tree["method"].update(method or {})
    tree.setdefault("optim", {})["batch_size"] = batch
    config = C.build_config(tree)
    fabric = Fabric(accelerator=device, devices=1, precision=precision)
    torch.manual_seed(0)
    method = methods.build(name, build_encoder("resnet18", cifar_stem=True), config.method).to(fabric.device)
    optimiser = build_optimiser(method.stage_parameters("main"), config.optim)
    return fabric, method, optimiser, config


def measure(name: str, images, rows, device: str, precision: str, batch: int, steps: int, method: dict | None = None) -> dict:
    fabric, method, optimiser, config = setup(name, device, precision, batch, method)
    recipe = get_view_set(config.data.views or methods.METHODS[name].default_views, 32)
    batches = ViewBatches(images, rows, recipe, batch, seed=0, device=fabric.device)
    model, optimiser = fabric.setup(method, optimiser)
    loop = Loop(fabric, model, {"main": optimiser}, batches, Schedule(10_000, 10, 0.0, "cosine", 0.0), config.run, Path("."), name="bench")
    loop.emit = lambda record: None  # no metrics file from a benchmark
    stream = batches.epoch(0)
    fixed = next(batches.epoch(1))
    dev = fabric.device

    def engine():
        loop.train_step(next(stream))

    def bare():
        with fabric.autocast():
            loss = method(fixed)["loss"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def backbone():
        with fabric.autocast():
            loss = sum(method.encoder(v).pooled.float().square().mean() for v in fixed["views"][:2])
        loss.backward()

    times = {"engine": [], "bare": [], "backbone": []}
    for i in range(steps + 1):  # the first round warms up
        for key, fn in (("engine", engine), ("bare", bare), ("backbone", backbone)):
            sync(dev)
            start = time.perf_counter()
            fn()
            sync(dev)
            if i:
                times[key].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {"engine_s": median["engine"], "bare_s": median["bare"], "backbone_s": median["backbone"],
            "ratio": median["engine"] / median["bare"], "images_per_s": 2 * batch / median["engine"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default=None, help="default: the engine's (run.precision auto: bf16-mixed where the device has bf16)")
    parser.add_argument("--methods", default="simclr,barlow_twins,vicreg,smi")
    parser.add_argument("--data-root", default=str(SHARED))
    args = parser.parse_args()
    default = native_precision(torch.device(args.device).type)
    precision = args.precision or default
    train = load_dataset("cifar10", "train", args.data_root)
    rows = torch.arange(len(train)).numpy()
    results = {name: measure(name, train.images, rows, args.device, precision, args.batch, args.steps)
               for name in args.methods.split(",")}
    facts = machine(torch.device(args.device))
    stem = RESULTS / (f"pretrain_overhead_{args.device}" + ("" if precision == default else f"_{precision}"))
    Path(f"{stem}.json").write_text(json.dumps({"machine": facts, "precision": precision, "batch": args.batch, "results": results}, indent=1))
    lines = [f"# Engine step vs bare PyTorch step ({args.device}, {precision})", "",
             f"{facts.get('cpu') or facts.get('device')}, {facts.get('torch_threads')} threads, {facts.get('date')}; ResNet-18 CIFAR stem, "
             f"batch {args.batch} x 2 views at 32 px, each method's paper projector; median of {args.steps} interleaved steps. "
             f"Rerun: `python benchmarks/pretrain_overhead.py --device {args.device}"
             + ("" if precision == default else f" --precision {precision}") + "`.", "",
             "| method | engine step (s) | bare step (s) | engine / bare (target <= 1.15) | backbone fwd+bwd (s) | images/s (engine) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {r['engine_s']:.3f} | {r['bare_s']:.3f} | {r['ratio']:.3f} | {r['backbone_s']:.3f} | {r['images_per_s']:.0f} |"
              for n, r in results.items()]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
