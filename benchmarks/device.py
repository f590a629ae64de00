"""What a lent GPU does with infomax, in at most 8 minutes (issue 25): run by benchmarks/device.sh.

Parts, each written to OUT/device.{json,md} as soon as it is measured, each skipped (and said so)
when the time left cannot hold it:
  facts      the card, its memory, driver, torch and CUDA versions
  steps      images/s of every method's training step (method + backbone + backward + optimiser step on
             random views of the method's own view set), ResNet-18 (CIFAR stem) at 32 px and ResNet-50
             at 224 px, bf16-mixed, channels-last; eager, and torch.compile for one method of each family
  overhead   the engine's step (ViewBatches + Loop.train_step) against a bare step on the same device
             (benchmarks/pretrain_overhead.py's measure), real CIFAR-10 images
  simclr     a SimCLR run (simclr-cifar10 recipe, ResNet-18) of about 2 minutes, then its test kNN
  features   EfficientNet-Lite0 feature extraction (224 px, no grad), images/s
  twinturbo  TwinTURBO's `--head paper` training step rate (benchmarks/twinturbo_heads.py's step)

    python benchmarks/device.py --out OUT [--data-root device_data]   # on the GPU
    python benchmarks/device.py --out OUT --dry-run                     # every part for one step on CPU
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine, sync  # noqa: E402

from infomax import config as C, methods  # noqa: E402
from infomax.data.views import get_view_set  # noqa: E402
from infomax.engine.optim import build_optimiser  # noqa: E402
from infomax.models import build_encoder  # noqa: E402

BUDGET_S = 8 * 60 - 30  # the 8 minutes, less what the writes and the shell take
FAMILIES = ("simclr", "byol", "swav")  # compiled: a two-view method, a teacher method, a prototype method
MODELS = {"resnet18": ({"cifar_stem": True}, 32, 256), "resnet50": ({}, 224, 128)}
DRY = {"convnet": ({"width": 4}, 32, 4)}  # the dry run checks the code path, not the numbers: tiny model, heads
SMALL_HEADS = {"projector_hidden": 32, "projector_out": 16}
SMALL = {"byol": {"predictor_hidden": 16}, "simsiam": {"predictor_hidden": 16}, "swav": {"num_prototypes": 16, "queue_length": 0},
         "mira": {"num_prototypes": 16}}


class Report:
    def __init__(self, out: Path, dry: bool):
        self.out, self.dry, self.start, self.data = out, dry, time.perf_counter(), {"dry_run": dry, "parts": {}}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return BUDGET_S - (time.perf_counter() - self.start)

    def part(self, name: str, need_s: float, fn) -> None:
        if not self.dry and self.left() < need_s:
            self.data["parts"][name] = {"skipped": f"{self.left():.0f} s left, {need_s:.0f} s needed"}
        else:
            began = time.perf_counter()
            try:
                self.data["parts"][name] = {**fn(), "seconds": round(time.perf_counter() - began, 1)}
            except Exception as error:  # noqa: BLE001 - one part failing must not cost the others' numbers
                self.data["parts"][name] = {"failed": f"{type(error).__name__}: {error}"}
        print(f"[device] {name}: {json.dumps(self.data['parts'][name])[:300]}", flush=True)
        self.write()

    def write(self) -> None:
        (self.out / "device.json").write_text(json.dumps(self.data, indent=1))
        (self.out / "device.md").write_text(render(self.data))


def timed_rate(step, images: int, device: torch.device, reps: int) -> float:
    step()
    step()  # warm-up: kernels chosen, caches filled, graphs compiled
    samples = []
    for _ in range(reps):
        sync(device)
        began = time.perf_counter()
        step()
        sync(device)
        samples.append(time.perf_counter() - began)
    return images / statistics.median(samples)


def small(name: str) -> dict:
    return {**SMALL_HEADS, **SMALL.get(name, {})}


def method_step(name: str, model: str, options: dict, side: int, batch: int, device: torch.device, compiled: bool, dry: bool):
    tree = C.load_recipe(f"{name}-cifar10")
    tree["model"] = {"backbone": model, "options": options}
    tree["method"].update(small(name) if dry else {})
    config = C.build_config(tree)
    torch.manual_seed(0)
    method = methods.build(name, build_encoder(model, **options), config.method).to(device).to(memory_format=torch.channels_last)
    optimiser = build_optimiser(method.stage_parameters("main"), config.optim)
    views = [torch.rand(batch, 3, spec.size, spec.size, device=device).contiguous(memory_format=torch.channels_last)
             for spec in get_view_set(config.data.views or methods.METHODS[name].default_views, side)]
    forward = torch.compile(method) if compiled else method
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def step():
        with autocast:
            loss = forward({"views": views}, "main", None)["loss"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        method.on_step_end(0, 10)

    return step, batch * len(views)


def steps_part(device: torch.device, dry: bool, report: Report) -> dict:
    rows = {}
    for model, (options, side, batch) in (DRY if dry else MODELS).items():
        for name in methods.METHODS:
            for compiled in (False, True):
                if compiled and (dry or name not in FAMILIES or report.left() < 60):
                    continue
                step, images = method_step(name, model, options, side, batch, device, compiled, dry)
                rows[f"{model}/{name}{'/compile' if compiled else ''}"] = round(timed_rate(step, images, device, 1 if dry else 5), 1)
    return {"images_per_s": rows, "precision": "bf16-mixed", "memory_format": "channels_last"}


def overhead_part(device: torch.device, dry: bool, data_root: str) -> dict:
    from pretrain_overhead import measure

    from infomax.data.dataset import load_dataset

    train = load_dataset("digits" if dry else "cifar10", "train", None if dry else data_root)
    rows = torch.arange(len(train)).numpy()
    batch = 4 if dry else 256
    precision = "32-true" if device.type == "cpu" else "bf16-mixed"
    return {name: {k: round(v, 4) for k, v in measure(name, train.images, rows, device.type, precision, batch, 1 if dry else 5,
                                                      small(name) if dry else None).items()}
            for name in ("simclr", "smi")}


def simclr_part(device: torch.device, dry: bool, data_root: str, seconds_per_step: float, work: Path) -> dict:
    from _budget import TestProbe

    from infomax.data.dataset import load_dataset
    from infomax.engine.pretrain import pretrain
    from infomax.models.registry import load_encoder

    dataset = "digits" if dry else "cifar10"
    tree = C.load_recipe("simclr-cifar10")
    tree["data"] = {**tree.get("data", {}), "dataset": dataset, "data_root": None if dry else data_root}
    steps = 2 if dry else max(50, int(120 / seconds_per_step))
    tree["optim"] = {**tree["optim"], "batch_size": 16 if dry else 512}
    tree["schedule"] = {**tree.get("schedule", {}), "epochs": 10_000, "max_steps": steps, "warmup_steps": max(1, steps // 10)}
    tree["run"] = {"accelerator": device.type, "precision": "32-true" if dry else "bf16-mixed", "knn_every": 0,
                   "checkpoint_every": 10**9, "progress": False}
    if dry:
        tree["model"] = {"backbone": "convnet", "options": {"width": 4}}
        tree["method"].update(SMALL_HEADS)
        tree["data"]["holdout"] = 100
    config = C.build_config(tree)
    began = time.perf_counter()
    result = pretrain(config, work / "simclr", overwrite=True)
    wall = time.perf_counter() - began
    train, test = load_dataset(dataset, "train", config.data.data_root), load_dataset(dataset, "test", config.data.data_root)
    holder = methods.build("simclr", load_encoder(work / "simclr" / "encoder.safetensors"), config.method)
    probe = TestProbe(train, test, every=10**9)
    return {"steps": result["steps"], "batch": config.optim.batch_size, "train_wall_s": round(wall, 1),
            "images_per_s": round(2 * config.optim.batch_size * result["steps"] / max(wall, 1e-9), 1),
            "knn_top1_test": round(probe.score(holder), 2)}


def features_part(device: torch.device, dry: bool) -> dict:
    encoder = build_encoder("efficientnet-lite0", pretrained=False).to(device).eval().to(memory_format=torch.channels_last)
    batch, side = (4, 64) if dry else (512, 224)
    x = torch.rand(batch, 3, side, side, device=device).contiguous(memory_format=torch.channels_last)

    def step():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            encoder(x)

    return {"resolution": side, "batch": batch, "images_per_s": round(timed_rate(step, batch, device, 1 if dry else 10), 1)}


def twinturbo_part(device: torch.device, dry: bool) -> dict:
    from twinturbo_heads import step_fn

    batch = 8 if dry else 512
    step, shape = step_fn("paper", batch, 2 if dry else 7, device)
    return {"batch": batch, **shape, "steps_per_s": round(timed_rate(step, 1, device, 1 if dry else 5), 2)}


def render(data: dict) -> str:
    parts = data["parts"]
    facts = parts.get("facts", {})
    lines = ["# infomax on a lent device", "", f"{facts.get('gpu') or facts.get('cpu')}; torch {facts.get('torch')}, "
             f"CUDA {facts.get('cuda')}; {facts.get('date')}{' (DRY RUN on CPU: not a measurement)' if data['dry_run'] else ''}. "
             "Rerun: `bash benchmarks/device.sh` on the device (see its header).", ""]
    steps = parts.get("steps", {})
    if "images_per_s" in steps:
        lines += ["## Training step, bf16-mixed, channels-last (images/s, every view counted)", "", "| model/method | images/s |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in steps["images_per_s"].items()] + [""]
    for name in ("overhead", "simclr", "features", "twinturbo"):
        if name in parts:
            lines += [f"## {name}", "", "```", json.dumps(parts[name], indent=1), "```", ""]
    skipped = {k: v for k, v in parts.items() if "skipped" in v or "failed" in v}
    if skipped:
        lines += ["## Not measured", ""] + [f"- {k}: {v}" for k, v in skipped.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-root", default="device_data")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    device = torch.device("cpu" if args.dry_run else "cuda")
    if not args.dry_run and not torch.cuda.is_available():
        sys.exit("benchmarks/device.py: no CUDA device here; use --dry-run to try every part on CPU.")
    report = Report(Path(args.out), args.dry_run)
    report.part("facts", 0, lambda: {**machine(device), **({"capability": ".".join(map(str, torch.cuda.get_device_capability()))}
                                                          if device.type == "cuda" else {})})
    report.part("steps", 150, lambda: steps_part(device, args.dry_run, report))
    report.part("overhead", 45, lambda: overhead_part(device, args.dry_run, args.data_root))
    rate = report.data["parts"]["steps"].get("images_per_s", {}).get("resnet18/simclr")
    per_step = 2 * 512 / rate if rate else 0.2
    work = Path(tempfile.mkdtemp(prefix="infomax-device-"))  # not under OUT: only the tables travel back
    report.part("simclr", 170, lambda: simclr_part(device, args.dry_run, args.data_root, per_step, work))
    report.part("features", 20, lambda: features_part(device, args.dry_run))
    report.part("twinturbo", 20, lambda: twinturbo_part(device, args.dry_run))
    print(f"[device] done in {time.perf_counter() - report.start:.0f} s: {Path(args.out) / 'device.md'}", flush=True)


if __name__ == "__main__":
    main()
