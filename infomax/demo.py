"""`infomax demo`: what the objective core does, measured on this machine in under a minute.

1. Forward+backward time of SMI against Barlow Twins at the SMI paper's per-device
   shape (N=256, D=8192), Barlow Twins both as the paper computes it (D x D) and
   through infomax's exact Gram identity (N x N).
2. MIRA's fixed point against Sinkhorn-Knopp on a clustered batch: iterations each
   needs to come within 1e-6 (sum of squared errors) of its 1000-iteration answer.
(The TwinTURBO few-label fine-tuning demo replaces this once it lands.)
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from . import objectives as O
from .assign import mira, sinkhorn


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _fwd_bwd(loss_fn, n: int, d: int):
    z_a, z_b = torch.randn(n, d, requires_grad=True), torch.randn(n, d, requires_grad=True)
    return lambda: loss_fn(z_a, z_b).backward()


def _iterations_to(tolerance: float, run_at, reference) -> int | None:
    for iters in (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 1000):
        if (run_at(iters) - reference).square().sum().item() <= tolerance:
            return iters
    return None


def _clustered_logits(b: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(k, 64, generator=g), dim=1)
    members = torch.randint(0, k // 3, (b,), generator=g)
    z = F.normalize(protos[members] + 0.8 * torch.randn(b, 64, generator=g) / 8, dim=1)
    return z @ protos.T


def run(quick: bool = False) -> int:
    n, d, repeats = (64, 1024, 3) if quick else (256, 8192, 5)
    with O.checks(False):
        timings = {
            "SMI": _median_seconds(_fwd_bwd(O.smi, n, d), repeats),
            "Barlow Twins (D x D, as in the paper)": _median_seconds(_fwd_bwd(lambda a, b: O.barlow_twins(a, b, form="feature"), n, d), repeats),
            "Barlow Twins (N x N Gram identity)": _median_seconds(_fwd_bwd(lambda a, b: O.barlow_twins(a, b, form="sample"), n, d), repeats),
        }
    print(f"\nObjective cost, forward+backward, N={n}, D={d}, {torch.get_num_threads()} threads")
    for name, seconds in timings.items():
        print(f"  {name:40s} {1000 * seconds:8.1f} ms   {seconds / timings['SMI']:5.1f}x SMI")

    b, k = (128, 300) if quick else (512, 3000)
    logits = _clustered_logits(b, k)
    mira_ref, sk_ref = mira(logits, iters=1000), sinkhorn(logits, iters=1000)
    print(f"\nAssignment convergence, batch {b}, {k} prototypes: iterations to SSE <= 1e-6 of the 1000-iteration answer")
    for name, run_at, ref in (("MIRA fixed point", lambda i: mira(logits, iters=i), mira_ref), ("Sinkhorn-Knopp", lambda i: sinkhorn(logits, iters=i), sk_ref)):
        needed = _iterations_to(1e-6, run_at, ref)
        print(f"  {name:40s} {needed if needed else '> 1000'}")
    print()
    return 0
