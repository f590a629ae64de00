"""Forward+backward time and peak extra memory of every infomax objective against its floor.

An objective's floor is the bare work it cannot avoid (its matmuls, plus the sort behind
m-spacings and the SVD behind MMCR), written as autograd on random leaf tensors and
timed exactly like the objective, interleaved with it: ratio = objective / floor.
Configurations whose floor alone is estimated (from rates measured at start-up) to take
longer than --max-seconds per forward+backward are skipped and marked as such, except
SMI and Barlow Twins at N=256, D=8192, the shape of the SMI-vs-Barlow target.

    python benchmarks/objectives.py                  # N x D grid -> benchmarks/results/objectives.{md,json}
    python benchmarks/objectives.py --quick          # smoke run, N=64, D=32 -> objectives.quick.*
    python benchmarks/objectives.py --device cuda    # -> objectives.cuda.*
    python benchmarks/objectives.py --dry-run        # calibrate, print the plan and its estimated time
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

import infomax.objectives as O
from infomax.objectives._crosscov import resolve_form

from _timing import interleaved, machine, peak_extra_bytes, timed

RESULTS = pathlib.Path(__file__).parent / "results"
PROTOTYPES = 3000
FULL_GRID = ((256, 1024, 4096), (128, 2048, 8192))
QUICK_GRID = ((64,), (32,))
TARGET_RATIO = 1.5
SMI_TIME_TARGET, SMI_MEMORY_TARGET = 8.0, 10.0
TARGET_SHAPE, TARGET_CASES = (256, 8192), ("smi", "barlow_twins[feature]", "barlow_twins[sample]")  # always measured
MiB = 2**20


def mm(m: int, k: int, n: int, grads: int = 2) -> int:
    """(m x k) @ (k x n) forward plus one backward matmul per operand that needs a gradient."""
    return 2 * m * k * n * (1 + grads)


def svd(m: int, n: int) -> int:
    """Thin SVD with U and V (Golub & Van Loan's R-SVD, 6mn^2 + 11n^3) plus the backward U diag(g) V^T."""
    m, n = max(m, n), min(m, n)
    return 8 * m * n * n + 11 * n**3


def sort(n: int, d: int) -> float:
    return n * d * math.log2(max(n, 2))


def cov_form(n: int, d: int) -> str:
    return resolve_form("auto", n, d, grams=1)


def gram(x: torch.Tensor) -> torch.Tensor:
    return x @ x.T if cov_form(*x.shape) == "sample" else x.T @ x


def cov_work(n: int, d: int) -> int:
    return mm(n, d, n) if cov_form(n, d) == "sample" else mm(d, n, d)


class Tensors:
    def __init__(self, device: torch.device, seed: int = 0):
        self.device, self.generator = device, torch.Generator().manual_seed(seed)

    def const(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(shape, generator=self.generator) * scale).to(self.device)

    def leaf(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        return self.const(*shape, scale=scale).requires_grad_()

    def ids(self, n: int, views: int) -> torch.Tensor:
        return torch.arange(n, device=self.device).repeat(views)


@dataclass(frozen=True)
class Case:
    name: str
    inputs: Callable[[int, int, Tensors], list]
    objective: Callable[..., torch.Tensor]
    floor_inputs: Callable[[int, int, Tensors], list]
    floor: Callable[..., list]
    work: Callable[[int, int], dict]
    floor_label: str


def two(n, d, t):
    return [t.leaf(n, d), t.leaf(n, d)]


def one(n, d, t):
    return [t.leaf(n, d)]


def stacked_views(n, d, t):
    return [t.leaf(2 * n, d)]


def swapped_inputs(n, d, t):
    targets = [t.const(n, PROTOTYPES).softmax(dim=1) for _ in range(2)]
    return [*swapped_floor_inputs(n, d, t), *targets]


def swapped_floor_inputs(n, d, t):
    return [t.leaf(n, d), t.leaf(n, d), t.leaf(d, PROTOTYPES, scale=d**-0.5)]


def swapped(z_a, z_b, prototypes, w_a, w_b):
    return O.swapped_prediction([w_a, w_b], [z_a @ prototypes, z_b @ prototypes])


def e2mc_loss(z):
    terms = O.e2mc(z, space="hypercube")
    return terms["entropy"] + terms["covariance"]


CASES = [
    Case("info_nce", two, O.info_nce, stacked_views, lambda x: [x @ x.T],
         lambda n, d: {"matmul": mm(2 * n, d, 2 * n)}, "(2N,D)@(D,2N)"),
    Case("barlow_twins[feature]", two, lambda a, b: O.barlow_twins(a, b, form="feature"), two, lambda a, b: [a.T @ b],
         lambda n, d: {"matmul": mm(d, n, d)}, "(D,N)@(N,D)"),
    Case("barlow_twins[sample]", two, lambda a, b: O.barlow_twins(a, b, form="sample"), two, lambda a, b: [a @ a.T, b @ b.T],
         lambda n, d: {"matmul": 2 * mm(n, d, n)}, "2 x (N,D)@(D,N)"),
    Case("vicreg[feature]", two, lambda a, b: O.vicreg(a, b, form="feature"), two, lambda a, b: [a.T @ a, b.T @ b],
         lambda n, d: {"matmul": 2 * mm(d, n, d)}, "2 x (D,N)@(N,D)"),
    Case("vicreg[sample]", two, lambda a, b: O.vicreg(a, b, form="sample"), two, lambda a, b: [a @ a.T, b @ b.T],
         lambda n, d: {"matmul": 2 * mm(n, d, n)}, "2 x (N,D)@(D,N)"),
    Case("vcreg", one, O.vcreg, one, lambda x: [gram(x)],
         lambda n, d: {"matmul": cov_work(n, d)}, "1 covariance Gram, the library's auto form"),
    Case("smi", two, O.smi, two, lambda a, b: [a @ b.T, a @ a.T, b @ b.T],
         lambda n, d: {"matmul": 3 * mm(n, d, n)}, "3 x (N,D)@(D,N)"),
    Case("e2mc", one, e2mc_loss, one, lambda x: [x.sort(dim=0).values, gram(x)],
         lambda n, d: {"matmul": cov_work(n, d), "sort": sort(n, d)}, "sort (N,D) on dim 0 + 1 covariance Gram (auto form)"),
    Case("hydes", lambda n, d, t: [t.leaf(2 * n, d), t.ids(n, 2)], O.hydes, stacked_views, lambda x: [x @ x.T],
         lambda n, d: {"matmul": mm(2 * n, d, 2 * n)}, "(2N,D)@(D,2N), 2 views per image"),
    Case("alignment", two, O.alignment, two, lambda a, b: [(a * b).sum(dim=1)],
         lambda n, d: {"matmul": 4 * n * d}, "row-wise a.b (no matmul: one pass over both inputs)"),
    Case("uniformity", one, O.uniformity, one, lambda x: [x @ x.T],
         lambda n, d: {"matmul": mm(n, d, n)}, "(N,D)@(D,N)"),
    Case("mmcr", two, lambda a, b: O.mmcr([a, b]), one, lambda x: [torch.linalg.svdvals(x)],
         lambda n, d: {"svd": svd(n, d)}, "svdvals of (N,D), 2 views"),
    Case("swapped_prediction", swapped_inputs, swapped, swapped_floor_inputs, lambda a, b, p: [a @ p, b @ p],
         lambda n, d: {"matmul": 2 * mm(n, d, PROTOTYPES)}, f"2 x (N,D)@(D,K), K={PROTOTYPES}"),
    Case("latent_nce", lambda n, d, t: [t.leaf(n, d), t.const(n, d)], O.latent_nce,
         lambda n, d, t: [t.leaf(n, d), t.const(n, d)], lambda z, target: [z @ target.T],
         lambda n, d: {"matmul": mm(n, d, n, grads=1)}, "(N,D)@(D,N), target detached"),
]


def prepared(fn: Callable, tensors: list) -> tuple[Callable[[], None], Callable[[], None]]:
    """(call, clear): call runs fn forward and backward (ones as output gradients); clear drops .grad."""
    leaves = [x for x in tensors if x.requires_grad]

    def clear():
        for x in leaves:
            x.grad = None

    def call():
        clear()
        out = fn(*tensors)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

    return call, clear


def calibrate(device: torch.device) -> dict:
    """Rates of the floor's kernels on this machine: matmul and SVD in FLOP/s, sort in n log2 n units/s."""
    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device)
    x = torch.randn(128, 256, device=device, requires_grad=True)
    svd_call, _ = prepared(lambda x: [torch.linalg.svdvals(x)], [x])
    y = torch.randn(512, 512, device=device)
    kernels = {"matmul": (lambda: a @ a, 2 * size**3), "svd": (svd_call, svd(128, 256)), "sort": (lambda: y.sort(dim=0), sort(512, 512))}
    rates = {}
    for kind, (fn, work) in kernels.items():
        fn()
        rates[kind] = work / statistics.median(timed(fn, device) for _ in range(3))
    return rates


def estimate(work: dict, rates: dict) -> float:
    return sum(amount / rates[kind] for kind, amount in work.items())


def plan(case: Case, n: int, d: int, rates: dict, args, forced: bool = False) -> dict:
    work = case.work(n, d)
    floor_s = estimate(work, rates)
    skip = floor_s > args.max_seconds and not forced
    round_s = 2.5 * floor_s + 2 * args.call_overhead
    reps = max(args.min_reps, min(args.max_reps, int(args.seconds_per_entry / round_s)))
    warmups = 0 if round_s > 1 else 1
    return {
        "objective": case.name, "N": n, "D": d, "floor": case.floor_label,
        "floor_gflop": sum(v for k, v in work.items() if k != "sort") / 1e9,
        "floor_est_s": floor_s, "skip": skip,
        "reps": reps, "warmups": warmups, "est_total_s": 0.0 if skip else (warmups + 1 + reps) * round_s,
    }


def measure(case: Case, row: dict, device: torch.device) -> dict:
    n, d = row["N"], row["D"]
    tensors = Tensors(device)
    objective, clear_objective = prepared(case.objective, case.inputs(n, d, tensors))
    floor, clear_floor = prepared(case.floor, case.floor_inputs(n, d, tensors))
    for _ in range(row["warmups"]):
        objective()
        floor()
    peaks, counted = [], []
    for call, clear in ((objective, clear_objective), (floor, clear_floor)):
        clear()
        with FlopCounterMode(display=False) as counter:
            peaks.append(peak_extra_bytes(call, device))
        counted.append(counter.get_total_flops() / 1e9)
    samples = interleaved([objective, floor], device, row["reps"])
    objective_s, floor_s = (statistics.median(times) for times in samples)
    return row | {
        "objective_ms": objective_s * 1e3, "floor_ms": floor_s * 1e3, "ratio": objective_s / floor_s,
        "objective_samples_ms": [t * 1e3 for t in samples[0]], "floor_samples_ms": [t * 1e3 for t in samples[1]],
        "floor_gflops_per_s": row["floor_gflop"] / floor_s,
        "objective_mm_gflop_counted": counted[0], "floor_mm_gflop_counted": counted[1],
        "objective_mib": peaks[0] / MiB, "floor_mib": peaks[1] / MiB, "memory_ratio": peaks[0] / max(peaks[1], 1),
    }


def num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def status(row: dict) -> str:
    if "error" in row:
        return f"failed ({row['error']})"
    return f"skipped (est. {row['floor_est_s']:.1f} s)" if row["skip"] else ""


def find(rows: list, name: str, n: int, d: int) -> dict | None:
    return next((r for r in rows if r["objective"] == name and r["N"] == n and r["D"] == d and not r["skip"]), None)


def targets(rows: list, n: int, d: int) -> dict:
    per_objective = {}
    for case in CASES:
        measured = [r for r in rows if r["objective"] == case.name and not r["skip"]]
        if not measured:
            continue
        largest = max(measured, key=lambda r: r["floor_gflop"])
        per_objective[case.name] = {
            "within": sum(r["ratio"] <= TARGET_RATIO for r in measured), "measured": len(measured),
            "median_ratio": statistics.median(r["ratio"] for r in measured),
            "largest": {"N": largest["N"], "D": largest["D"], "ratio": largest["ratio"]},
            "meets": largest["ratio"] <= TARGET_RATIO,
        }
    smi = find(rows, "smi", n, d)
    versus = {}
    for peer in TARGET_CASES[1:]:
        other = find(rows, peer, n, d)
        if smi and other:
            time_ratio, memory_ratio = other["objective_ms"] / smi["objective_ms"], other["objective_mib"] / smi["objective_mib"]
            versus[peer] = {"time_ratio": time_ratio, "memory_ratio": memory_ratio,
                            "time_ok": time_ratio >= SMI_TIME_TARGET, "memory_ok": memory_ratio >= SMI_MEMORY_TARGET}
        else:
            versus[peer] = None
    return {"floor": per_objective, "smi_vs_barlow": {"N": n, "D": d, "peers": versus}}


def target_lines(result: dict) -> list[str]:
    goal = result["floor"]
    lines = [f"Target 1: objectives within {TARGET_RATIO}x of their floor (verdict at the largest measured configuration, "
             "where per-call overhead matters least)", "",
             "| objective | <= 1.5x at | median ratio | ratio at largest (N, D) | meets |", "|---|---|---|---|---|"]
    for name, g in goal.items():
        big = g["largest"]
        lines.append(f"| {name} | {g['within']}/{g['measured']} | {g['median_ratio']:.2f} | "
                     f"{big['ratio']:.2f} at ({big['N']}, {big['D']}) | {'yes' if g['meets'] else 'no'} |")
    lines.append("")
    lines.append("Meets target 1: " + (", ".join(k for k, g in goal.items() if g["meets"]) or "none"))
    smi = result["smi_vs_barlow"]
    lines += ["", f"Target 2: SMI against Barlow Twins at N={smi['N']}, D={smi['D']} "
              f"(time >= {SMI_TIME_TARGET:g}x faster, extra memory >= {SMI_MEMORY_TARGET:g}x less)", ""]
    for peer, v in smi["peers"].items():
        if v is None:
            lines.append(f"- vs {peer}: not measured (configuration skipped or not in the grid)")
        else:
            lines.append(f"- vs {peer}: SMI {v['time_ratio']:.2f}x faster ({'met' if v['time_ok'] else 'missed'}), "
                         f"{v['memory_ratio']:.2f}x less extra memory ({'met' if v['memory_ok'] else 'missed'})")
    return lines


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        "# Objective cost against its floor", "",
        f"Written by `{s['command']}` on {m['date']}.", "",
        f"- Machine: {m['cpu']}, {m['cpu_cores']} cores, torch threads {m['torch_threads']}, load average {m['load_average_1min']} at start"
        + (f"; GPU {m['gpu']} (CUDA {m['cuda']})" if "gpu" in m else ""),
        f"- torch {m['torch']}, Python {m['python']}, device `{m['device']}`, float32, library input checks on (the default)",
        f"- Time: forward + backward (ones as output gradients), {s['warmups_note']}, then the median of `reps` rounds "
        "with objective and floor interleaved (A B A B ...)",
        f"- Memory: {m['memory_method']}",
        "- Floor GFLOP: analytic forward+backward count of the floor (matmul: 2mkn forward + 2mkn per operand gradient; "
        "SVD: 6mn^2 + 11n^3 + 2mn^2, approximate; sort: none). Objective mm GFLOP: matmul FLOPs the objective actually ran, "
        "counted by torch.utils.flop_counter (no SVD or sort)",
        f"- Skipped: floor estimated above {s['max_seconds']:g} s per forward+backward from start-up rates "
        + ", ".join(f"{k} {v / 1e9:.3g} G/s" for k, v in report["rates"].items())
        + f" (sort in n log2 n units); {', '.join(TARGET_CASES)} always run at the target-2 shape",
        "- The floor's memory includes its output gradients (ones) and the input gradients, as the objective's does; "
        "an objective can come out below its floor",
        "- Not run: cat_cross, cat_twin, bin_cross (N x 10 logits, no matmul floor)", "",
        "| objective | floor |", "|---|---|",
        *(f"| {c.name} | {c.floor_label} |" for c in CASES if any(r["objective"] == c.name for r in report["rows"])), "",
        "| objective | N | D | time ms | floor ms | ratio | floor GFLOP | floor GFLOP/s | objective mm GFLOP | extra MiB | floor MiB | reps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        head = f"| {r['objective']} | {r['N']} | {r['D']} |"
        if r["skip"]:
            lines.append(f"{head} {status(r)} | | | {num(r['floor_gflop'])} | | | | | |")
        else:
            lines.append(f"{head} {num(r['objective_ms'])} | {num(r['floor_ms'])} | {r['ratio']:.2f} | {num(r['floor_gflop'])} | "
                         f"{num(r['floor_gflops_per_s'])} | {num(r['objective_mm_gflop_counted'])} | {num(r['objective_mib'])} | "
                         f"{num(r['floor_mib'])} | {r['reps']} |")
    return "\n".join(lines + [""] + target_lines(report["targets"]) + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run at N=64, D=32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dry-run", action="store_true", help="calibrate and print the plan only")
    parser.add_argument("--only", help="comma-separated objective names")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: leave torch's own setting)")
    parser.add_argument("--max-seconds", type=float, default=3.0, help="skip when the floor's estimated forward+backward exceeds this")
    parser.add_argument("--seconds-per-entry", type=float, default=1.5, help="timing budget per configuration, sets reps")
    parser.add_argument("--min-reps", type=int, default=3)
    parser.add_argument("--max-reps", type=int, default=25)
    parser.add_argument("--call-overhead", type=float, default=1e-3, help="assumed fixed seconds per call, for planning")
    parser.add_argument("--out", type=pathlib.Path, help="output path without suffix (default benchmarks/results/objectives[.cuda][.quick])")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.max_reps = min(args.max_reps, 5)
    ns, ds = QUICK_GRID if args.quick else FULL_GRID
    cases = [c for c in CASES if not args.only or c.name in args.only.split(",")]
    torch.manual_seed(0)

    target_n, target_d = (ns[-1], ds[-1]) if args.quick else TARGET_SHAPE
    facts = machine(device)
    rates = calibrate(device)
    rows = [plan(c, n, d, rates, args, forced=c.name in TARGET_CASES and (n, d) == (target_n, target_d)) for c in cases for n in ns for d in ds]
    total = sum(r["est_total_s"] for r in rows)
    print("rates: " + ", ".join(f"{k} {v / 1e9:.3g} G/s" for k, v in rates.items())
          + f"; {sum(not r['skip'] for r in rows)}/{len(rows)} configurations, estimated {total / 60:.1f} min")
    if args.dry_run:
        for r in rows:
            note = status(r) or f"floor ~{r['floor_est_s'] * 1e3:.1f} ms, {r['warmups']}+1+{r['reps']} rounds, ~{r['est_total_s']:.1f} s"
            print(f"{r['objective']:>22} N={r['N']:<5} D={r['D']:<5} {note}")
        return

    start, done_est = time.perf_counter(), 0.0
    for i, r in enumerate(rows):
        if not r["skip"]:
            try:
                rows[i] = r = measure(next(c for c in cases if c.name == r["objective"]), r, device)
            except (RuntimeError, ValueError) as error:
                rows[i] = r = r | {"skip": True, "error": f"{type(error).__name__}: {error}".splitlines()[0][:120]}
            done_est += r["est_total_s"]
        elapsed = time.perf_counter() - start
        left = (total - done_est) * elapsed / done_est if done_est else total
        result = status(r) or f"{num(r['objective_ms'])} ms vs floor {num(r['floor_ms'])} ms = {r['ratio']:.2f}x, {num(r['objective_mib'])} MiB vs {num(r['floor_mib'])} MiB"
        print(f"[{i + 1}/{len(rows)} {elapsed:.0f}s, ~{left:.0f}s left] {r['objective']:>22} N={r['N']:<5} D={r['D']:<5} {result}", flush=True)

    command = " ".join(["python benchmarks/objectives.py", *sys.argv[1:]])
    report = {
        "machine": facts, "rates": rates, "rows": rows, "targets": targets(rows, target_n, target_d),
        "settings": {"command": command, "grid": {"N": ns, "D": ds}, "max_seconds": args.max_seconds,
                     "seconds_per_entry": args.seconds_per_entry, "min_reps": args.min_reps, "max_reps": args.max_reps,
                     "warmups_note": "1 warm-up round (none when a round is estimated above 1 s) plus the profiled memory/FLOP-count round",
                     "wall_s": time.perf_counter() - start},
    }
    out = args.out or RESULTS / ("objectives" + (".cuda" if device.type == "cuda" else "") + (".quick" if args.quick else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(f"{out}.json").write_text(json.dumps(report, indent=1) + "\n")
    pathlib.Path(f"{out}.md").write_text(markdown(report))
    print("\n".join([""] + target_lines(report["targets"])))
    print(f"\nwrote {out}.md and {out}.json in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
