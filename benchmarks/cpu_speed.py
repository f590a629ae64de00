"""CPU training and feature extraction at the hardware's speed: which settings make a step fastest here.

Side by side in one run, interleaved (A B C A B C ...) so load drift hits every option alike:
  - a training step (two views through the encoder, a mean-square loss on the pooled output,
    backward, SGD step) of ResNet-18 (CIFAR stem, 32 px), the CPU recipes' ConvNet (width 32, 32 px)
    and ViT-tiny (32 px, patch 4; batch 64: it is the slowest here);
  - EfficientNet-Lite0 feature extraction (no grad, eval mode) at 128 px, as finetune's cache runs it;
each under: fp32 (today's default), channels-last, bf16 autocast, bf16 + channels-last, and
torch.compile on the best of those; then intra-op threads (1 vs all) and the batch size for the best.
Every option's loss and gradient are compared with fp32's on the same batch (relative error of the
loss, cosine of the flattened gradient), so a faster setting that computes something else shows.

    python benchmarks/cpu_speed.py                 # -> benchmarks/results/cpu_speed.{md,json}
    python benchmarks/cpu_speed.py --quick         # 2 timed rounds, no compile: a smoke run
    python benchmarks/cpu_speed.py --models efficientnet-lite0 --append   # one model added to the committed results
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import machine  # noqa: E402

from infomax.models import build_encoder  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SWEPT = ("resnet18", "convnet")  # threads and batch size swept for the issue's target and the CPU recipes' encoder
MODELS = {  # name -> (encoder options, side, training?)
    "resnet18": ({"cifar_stem": True}, 32, True),
    "convnet": ({"width": 32}, 32, True),
    "vit-tiny": ({"image_size": 32, "patch_size": 4}, 32, True),
    "efficientnet-lite0": ({"pretrained": False}, 128, False),
}
OPTIONS = {  # name -> (channels_last, bf16)
    "fp32": (False, False),
    "channels_last": (True, False),
    "bf16": (False, True),
    "bf16+channels_last": (True, True),
}


def build(model: str, channels_last: bool):
    options, side, training = MODELS[model]
    torch.manual_seed(0)
    encoder = build_encoder(model, **options)
    encoder.train(training)
    if channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    return encoder, side, training


def step_fn(encoder, views, training: bool, bf16: bool, compiled: bool):
    """One training step (or one no-grad forward) on `views`; returns (fn, loss_and_grad)."""
    optimiser = torch.optim.SGD(encoder.parameters(), lr=1e-6, momentum=0.9) if training else None
    forward = torch.compile(encoder) if compiled else encoder
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def loss():
        with autocast():
            return sum(forward(v).pooled.float().square().mean() for v in views)

    def train():
        optimiser.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        optimiser.step()

    def extract():
        with torch.no_grad():
            loss()

    def loss_and_grad():
        encoder.zero_grad(set_to_none=True)
        value = loss()
        if not training:
            return float(value.detach()), None
        value.backward()
        grad = torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None])
        encoder.zero_grad(set_to_none=True)
        return float(value.detach()), grad

    return (train if training else extract), loss_and_grad


def views_for(side: int, batch: int, channels_last: bool, nviews: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    views = [torch.rand(batch, 3, side, side, generator=g) for _ in range(nviews)]
    return [v.contiguous(memory_format=torch.channels_last) if channels_last else v for v in views]


def compare(model: str, options: dict, batch: int, rounds: int, threads: int) -> dict:
    """Median seconds per call of every option, interleaved; accuracy against fp32's loss and gradient."""
    torch.set_num_threads(threads)
    fns, checks = {}, {}
    for name, (channels_last, bf16, compiled) in options.items():
        encoder, side, training = build(model, channels_last)
        views = views_for(side, batch, channels_last, 2 if training else 1)
        fn, check = step_fn(encoder, views, training, bf16, compiled)
        start = time.perf_counter()
        fn()  # warm-up (and compilation)
        fn()
        checks[name] = check()
        fns[name] = (fn, time.perf_counter() - start)
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, (fn, _) in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    images = batch * (2 if MODELS[model][2] else 1)
    ref_loss, ref_grad = checks.get("fp32", next(iter(checks.values())))
    rows = {}
    for name, samples in times.items():
        median = statistics.median(samples)
        loss, grad = checks[name]
        rows[name] = {"seconds": median, "images_per_s": images / median, "warmup_s": fns[name][1],
                      "loss_rel_error": abs(loss - ref_loss) / max(abs(ref_loss), 1e-12),
                      "grad_cosine": None if grad is None else float(torch.nn.functional.cosine_similarity(grad, ref_grad, dim=0)),
                      "spread": (max(samples) - min(samples)) / median}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--append", action="store_true", help="add --models to the committed results (each keeps its machine line)")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    cores = torch.get_num_threads()
    report = {"machine": machine(torch.device("cpu")), "batch": args.batch, "rounds": rounds, "models": {}}
    if args.append and (RESULTS / "cpu_speed.json").exists():
        report = json.loads((RESULTS / "cpu_speed.json").read_text())
    for model in args.models.split(","):
        batch = 128 if not MODELS[model][2] else 64 if model == "vit-tiny" else args.batch
        plain = {name: (cl, bf, False) for name, (cl, bf) in OPTIONS.items()}
        rows = compare(model, plain, batch, rounds, cores)
        best = max(rows, key=lambda n: rows[n]["images_per_s"])
        entry = {"options": rows, "best": best, "batch_size": batch, "machine": machine(torch.device("cpu")), "rounds": rounds}
        if not args.quick:
            cl, bf = OPTIONS[best]
            entry["compile"] = compare(model, {best: (cl, bf, False), f"{best}+compile": (cl, bf, True),
                                               "fp32": (False, False, False)}, batch, rounds, cores)
        if not args.quick and model in SWEPT:
            entry["threads"] = {str(t): compare(model, {best: (cl, bf, False), "fp32": (False, False, False)}, batch, rounds, t)
                                for t in sorted({1, cores})}
            entry["batch"] = {str(b): compare(model, {best: (cl, bf, False), "fp32": (False, False, False)}, b, rounds, cores)
                              for b in (64, 128, 512) if b != batch}
        report["models"][model] = entry
        print(json.dumps({model: {k: round(v["images_per_s"], 1) for k, v in rows.items()}}), flush=True)
        write(report)
    torch.set_num_threads(cores)


def write(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu_speed.json").write_text(json.dumps(report, indent=1))
    m = report["machine"]
    lines = ["# CPU speed: which settings make a step fastest on this machine", "",
             f"{m['cpu']}, {m['cpu_cores']} cores, torch {m['torch']}, {m['date']}; load average {m['load_average_1min']} "
             f"at the start. Median of {report['rounds']} interleaved rounds after two warm-up calls. Training models: two "
             f"views of the batch named per model through the encoder, backward, SGD step; EfficientNet-Lite0: a no-grad "
             "forward of 128 images at 128 px. Accuracy against fp32 on the same batch. "
             "Rerun: `python benchmarks/cpu_speed.py`.", ""]
    for model, entry in report["models"].items():
        fp32 = entry["options"]["fp32"]["images_per_s"]
        lines += [f"## {model} (batch {entry['batch_size']})", ""]
        own = entry.get("machine", m)
        if own.get("date") != m["date"]:  # measured in another invocation (--append)
            lines += [f"Measured {own['date']} on {own['cpu']}, load average {own['load_average_1min']} at its start, "
                      f"median of {entry.get('rounds', report['rounds'])} rounds.", ""]
        lines += ["| option | images/s | vs fp32 | loss rel. error | grad cosine | warm-up (s) |", "|---|---|---|---|---|---|"]
        for section in ("options", "compile"):
            for name, r in entry.get(section, {}).items():
                if section == "compile" and name == "fp32":
                    continue
                ratio = r["images_per_s"] / (entry[section]["fp32"]["images_per_s"] if section == "compile" else fp32)
                cosine = "-" if r["grad_cosine"] is None else f"{r['grad_cosine']:.5f}"
                lines.append(f"| {name} | {r['images_per_s']:.0f} | {ratio:.2f}x | {r['loss_rel_error']:.1e} | {cosine} | {r['warmup_s']:.1f} |")
        for key, label in (("threads", "threads"), ("batch", "batch")):
            for value, rows in entry.get(key, {}).items():
                best = entry["best"]
                lines.append(f"| {best}, {label} {value} | {rows[best]['images_per_s']:.0f} | "
                             f"{rows[best]['images_per_s'] / rows['fp32']['images_per_s']:.2f}x (fp32 at the same {label}: "
                             f"{rows['fp32']['images_per_s']:.0f}) | | | |")
        lines.append("")
    (RESULTS / "cpu_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
