"""What each TwinTURBO head preset costs per training step (issue 14): `--head cpu` against `--head paper`.

One full step as `infomax finetune` takes it (head stage: task + critic + latent + augment,
backward, AdamW; discriminator stage: forward, backward, AdamW) on random features of the shapes
EfficientNet-Lite0 gives at the resolution asked (its native grid: side / 32 tokens a side, 1280
wide), timed interleaved (cpu, paper, cpu, ...) so that drifting load hits both alike. Reported:
median seconds per step on the device named, and the ratio paper / cpu.

    python benchmarks/twinturbo_heads.py [--resolution 128] [--batch-size 512] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, machine  # noqa: E402

from infomax.engine.finetune import build_method, configure  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WIDTH, CLASSES = 1280, 10


def step_fn(head: str, batch_size: int, side: int, device: torch.device):
    config = configure(head=head)
    grid = config.finetune.token_grid
    tokens = None if grid == 0 else (side * side if grid == "native" else grid ** 2)
    method = build_method(config, WIDTH if tokens else None, WIDTH, CLASSES).to(device).train()
    optimisers = {stage: torch.optim.AdamW(method.stage_parameters(stage), lr=1e-4) for stage in method.stages}
    batch = {"labels": torch.randint(CLASSES, (batch_size,), device=device)}
    for view in method.views:
        batch[f"{view}_pooled"] = torch.randn(batch_size, WIDTH, device=device)
        batch[f"{view}_tokens"] = torch.randn(batch_size, tokens, WIDTH, device=device) if tokens else None

    def step():
        carry = None
        for stage in method.stages:
            terms = method.training_step(batch, stage, carry)
            optimisers[stage].zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimisers[stage].step()
            carry = terms
    parameters = sum(p.numel() for p in method.parameters())
    return step, {"tokens_per_image": tokens or 0, "parameters": parameters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    built = {head: step_fn(head, args.batch_size, args.resolution // 32, device) for head in ("cpu", "paper")}
    times = interleaved([fn for fn, _ in built.values()], device, args.reps)
    rows = {head: {**facts, "seconds_per_step": statistics.median(t)} for (head, (_, facts)), t in zip(built.items(), times)}
    ratio = rows["paper"]["seconds_per_step"] / rows["cpu"]["seconds_per_step"]
    record = {"machine": machine(device), "settings": vars(args), "heads": rows, "paper_over_cpu": ratio}
    stem = RESULTS / f"twinturbo_heads_{device.type}"
    Path(f"{stem}.json").write_text(json.dumps(record, indent=1))
    lines = [f"# TwinTURBO head presets: cost of one training step ({record['machine']['cpu'] if device.type == 'cpu' else record['machine'].get('gpu', device)})", "",
             f"EfficientNet-Lite0 feature shapes at {args.resolution} px, batch {args.batch_size} (labelled, paired, unlabelled, augmented rows each), "
             f"median of {args.reps} interleaved steps. Rerun: `python benchmarks/twinturbo_heads.py --device {device.type}`.", "",
             "| head | tokens per image | parameters | seconds per step |", "|---|---|---|---|"]
    lines += [f"| {h} | {r['tokens_per_image']} | {r['parameters'] / 1e6:.1f} M | {r['seconds_per_step']:.3f} |" for h, r in rows.items()]
    lines += ["", f"paper / cpu: **{ratio:.1f}x** per step."]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
