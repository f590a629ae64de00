"""Cost of batched view augmentation against one ResNet-18 training step on the same views.

Target: the two simclr views of a batch of 256 CIFAR-sized (32 x 32) images are drawn in
at most 10% of the time of one ResNet-18 (CIFAR stem, `build_encoder("resnet18",
cifar_stem=True)`) forward + backward on those 2 x 256 views, on the same machine. The
augmentation and the model step are timed interleaved (A B A B ...), medians of repeats.
The multi-crop recipe at 224 (2 x 224 + 6 x 96) is timed on its own (absolute time), with
a per-op breakdown for both settings. The uint8 (N, H, W, C) batch already sits on the
device, as a loader that moves uint8 batches would leave it; the conversion to float is
part of the augmentation time.

    python benchmarks/views.py                  # -> benchmarks/results/views.{md,json}
    python benchmarks/views.py --device cuda    # -> benchmarks/results/views.cuda.{md,json}
    python benchmarks/views.py --quick          # smoke run, few repeats -> views.quick.*
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import torch

from infomax.data import augment as A
from infomax.data.views import get_view_set, make_views
from infomax.models import build_encoder

from _timing import interleaved, machine, sync, timed

RESULTS = pathlib.Path(__file__).parent / "results"
TARGET_RATIO = 0.10


def uint8_images(n: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g).to(device)


def model_step(views: list[torch.Tensor], device: torch.device):
    """ResNet-18 (CIFAR stem) forward + backward on the concatenated views, training mode."""
    model = build_encoder("resnet18", cifar_stem=True).to(device).train()
    batch = torch.cat(views)

    def step():
        model.zero_grad(set_to_none=True)
        model(batch).pooled.square().mean().backward()

    return step


def op_breakdown(images: torch.Tensor, size: int, device: torch.device, reps: int) -> dict[str, float]:
    """Median ms of each op on one view's batch, every op applied to all samples (p = 1)."""
    g = torch.Generator().manual_seed(1)
    x = A.to_float_images(images)
    crop = A.random_resized_crop(x, size, generator=g)
    ops = {
        "to_float_images": lambda: A.to_float_images(images),
        "random_resized_crop": lambda: A.random_resized_crop(x, size, flip_p=0.5, generator=g),
        "color_jitter": lambda: A.color_jitter(crop, 0.4, 0.4, 0.2, 0.1, p=1.0, generator=g),
        "grayscale": lambda: A.grayscale(crop, 1.0, generator=g),
        "gaussian_blur": lambda: A.gaussian_blur(crop, p=1.0, generator=g),
        "solarize": lambda: A.solarize(crop, 1.0, generator=g),
    }
    for fn in ops.values():
        fn()
    samples = interleaved(list(ops.values()), device, reps)
    return {name: statistics.median(times) * 1e3 for name, times in zip(ops, samples)}


def simclr_target(args, device: torch.device) -> dict:
    images = uint8_images(args.batch, 32, device)
    recipe = get_view_set("simclr", 32)
    g = torch.Generator().manual_seed(0)
    augment = lambda: make_views(images, recipe, g)  # noqa: E731
    step = model_step(augment(), device)
    for _ in range(args.warmups):
        augment()
        step()
    augment_s, model_s = (statistics.median(t) for t in interleaved([augment, step], device, args.reps))
    return {
        "recipe": "simclr", "images": args.batch, "image_size": 32, "views": [f"{len(recipe)} x 32"],
        "augment_ms": augment_s * 1e3, "model_ms": model_s * 1e3, "ratio": augment_s / model_s,
        "meets": augment_s / model_s <= TARGET_RATIO, "reps": args.reps,
        "ops_ms": op_breakdown(images, 32, device, args.reps),
    }


def multicrop_timing(args, device: torch.device) -> dict:
    images = uint8_images(args.multicrop_batch, 224, device, seed=1)
    recipe = get_view_set("multicrop", 224)
    g = torch.Generator().manual_seed(0)
    augment = lambda: make_views(images, recipe, g)  # noqa: E731
    for _ in range(args.warmups):
        augment()
    times = [timed(augment, device) for _ in range(args.multicrop_reps)]
    median = statistics.median(times)
    return {
        "recipe": "multicrop", "images": args.multicrop_batch, "image_size": 224, "views": ["2 x 224", "6 x 96"],
        "augment_ms": median * 1e3, "ms_per_image": median * 1e3 / args.multicrop_batch,
        "images_per_s": args.multicrop_batch / median, "reps": args.multicrop_reps,
        "ops_ms": op_breakdown(images, 224, device, args.multicrop_reps),
    }


def markdown(report: dict) -> str:
    m, s, t, mc = report["machine"], report["settings"], report["simclr"], report["multicrop"]
    where = f"GPU {m['gpu']} (CUDA {m['cuda']}), host CPU {m['cpu']}" if "gpu" in m else f"CPU {m['cpu']}"
    lines = [
        "# View augmentation cost", "",
        f"Written by `{s['command']}` on {m['date']}.", "",
        f"- Device `{m['device']}`: {where}; {m['cpu_cores']} cores, torch threads {m['torch_threads']}, "
        f"load average {m['load_average_1min']} at start",
        f"- torch {m['torch']}, Python {m['python']}; float32; input uint8 (N, H, W, C) already on the device",
        f"- Time: {s['warmups']} warm-up round(s), then medians of repeats; augmentation and model step interleaved",
        "- Model step: ResNet-18, CIFAR stem (`build_encoder(\"resnet18\", cifar_stem=True)`), training mode, "
        "forward + backward of mean(pooled^2) on the concatenated views", "",
        f"## Target: simclr views of {t['images']} images at 32 x 32 within {TARGET_RATIO:.0%} of the model step"
        + (" (smoke run: the target is stated for 256 images)" if t["images"] != 256 else ""), "",
        f"| augment ms (2 views) | ResNet-18 fwd+bwd ms (2 x {t['images']}) | ratio | meets | reps |", "|---|---|---|---|---|",
        f"| {t['augment_ms']:.2f} | {t['model_ms']:.1f} | {t['ratio']:.3f} | {'yes' if t['meets'] else 'no'} | {t['reps']} |", "",
        f"## multicrop at 224: {mc['images']} images -> 2 x 224 + 6 x 96 views", "",
        "| augment ms | ms per image | images/s | reps |", "|---|---|---|---|",
        f"| {mc['augment_ms']:.1f} | {mc['ms_per_image']:.2f} | {mc['images_per_s']:.0f} | {mc['reps']} |", "",
        "## Per-op cost, one view, every op applied to all samples (p = 1), ms", "",
        "| op | 32 x 32, " + f"{t['images']} images | 224 x 224, {mc['images']} images |", "|---|---|---|",
        *(f"| {op} | {t['ops_ms'][op]:.2f} | {mc['ops_ms'][op]:.2f} |" for op in t["ops_ms"]), "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run: few repeats, batch 64, multicrop batch 8")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: leave torch's own setting)")
    parser.add_argument("--batch", type=int, default=256, help="images per batch for the simclr target")
    parser.add_argument("--multicrop-batch", type=int, help="images per multicrop batch (default 256 on cuda, 32 on cpu)")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--multicrop-reps", type=int, default=7)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--out", type=pathlib.Path, help="output path without suffix (default benchmarks/results/views[.cuda][.quick])")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.multicrop_batch is None:
        args.multicrop_batch = 256 if device.type == "cuda" else 32
    if args.quick:
        args.reps, args.multicrop_reps, args.warmups = min(args.reps, 3), min(args.multicrop_reps, 2), 1
        args.batch, args.multicrop_batch = min(args.batch, 64), min(args.multicrop_batch, 8)
    torch.manual_seed(0)
    facts = machine(device)
    start = time.perf_counter()
    target = simclr_target(args, device)
    print(f"simclr 32x32, {args.batch} images: augment {target['augment_ms']:.2f} ms, ResNet-18 fwd+bwd "
          f"{target['model_ms']:.1f} ms, ratio {target['ratio']:.3f} (target <= {TARGET_RATIO})", flush=True)
    multi = multicrop_timing(args, device)
    print(f"multicrop 224, {args.multicrop_batch} images: {multi['augment_ms']:.1f} ms "
          f"({multi['ms_per_image']:.2f} ms/image)", flush=True)
    sync(device)
    command = " ".join(["python benchmarks/views.py", *sys.argv[1:]])
    report = {"machine": facts, "simclr": target, "multicrop": multi,
              "settings": {"command": command, "warmups": args.warmups, "target_ratio": TARGET_RATIO,
                           "wall_s": time.perf_counter() - start}}
    out = args.out or RESULTS / ("views" + (".cuda" if device.type == "cuda" else "") + (".quick" if args.quick else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(f"{out}.json").write_text(json.dumps(report, indent=1) + "\n")
    pathlib.Path(f"{out}.md").write_text(markdown(report))
    print(f"wrote {out}.md and {out}.json in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
