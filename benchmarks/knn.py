"""Weighted kNN (infomax.eval.knn.weighted_knn) against its floor: the bare similarity search.

The floor is the work an exact kNN cannot avoid: on features already L2-normalised, one
(chunk, D) @ (D, N_train) matmul per chunk of test rows plus torch.topk(k) on it, in the
same chunks the library picks, and nothing else. The library call starts from raw
features and also normalises, gathers labels, weighs votes, and scores top-1/top-5.
Both are timed interleaved (A B A B ...) after one warm-up each; ratio = median / median.
Target: ratio <= 1.3 at 50,000 train x 10,000 test x D=512 on CPU.

    python benchmarks/knn.py                  # 50k x 10k x 512 -> benchmarks/results/knn.{md,json}
    python benchmarks/knn.py --quick          # smoke run, 5k x 1k x 128 -> knn.quick.*
    python benchmarks/knn.py --device cuda    # -> knn.cuda.*
    python benchmarks/knn.py --shape 20000x2000x256 --out /tmp/knn   # another size, written elsewhere
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from infomax.eval.knn import default_chunk_size, weighted_knn

from _timing import interleaved, machine, peak_extra_bytes, timed

RESULTS = pathlib.Path(__file__).parent / "results"
FULL = {"n_train": 50_000, "n_test": 10_000, "dim": 512, "classes": 1000}
QUICK = {"n_train": 5_000, "n_test": 1_000, "dim": 128, "classes": 100}
K, TEMPERATURE, TARGET_RATIO = 20, 0.07, 1.3
MiB = 2**20
MEMORY = {  # what _timing.peak_extra_bytes measures, for one call without autograd
    "cpu": "torch.profiler (profile_memory=True): peak of the running sum of CPU allocator events during one call",
    "cuda": "torch.cuda.max_memory_allocated() minus memory_allocated() before one call (peak stats reset first)",
}


def floor_search(bank: torch.Tensor, queries: torch.Tensor, k: int, chunk: int) -> None:
    """Bare exact search on normalised features: matmul + top-k per chunk of query rows."""
    for start in range(0, queries.shape[0], chunk):
        torch.topk(queries[start:start + chunk] @ bank.T, k, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run at 5k x 1k x 128")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: leave torch's own setting)")
    parser.add_argument("--shape", help="N_TRAINxN_TESTxD[xCLASSES] instead of the default sizes, e.g. 20000x2000x256")
    parser.add_argument("--reps", type=int, help="timed rounds (default 7, quick 3)")
    parser.add_argument("--out", type=pathlib.Path, help="output path without suffix (default benchmarks/results/knn[.cuda][.quick])")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = dict(QUICK if args.quick else FULL)
    if args.shape:
        size.update(zip(("n_train", "n_test", "dim", "classes"), (int(v) for v in args.shape.lower().split("x"))))
    reps = args.reps or (3 if args.quick else 7)
    facts = machine(device)

    g = torch.Generator().manual_seed(0)
    train = torch.randn(size["n_train"], size["dim"], generator=g).to(device)
    test = torch.randn(size["n_test"], size["dim"], generator=g).to(device)
    train_labels = torch.randint(0, size["classes"], (size["n_train"],), generator=g).to(device)
    test_labels = torch.randint(0, size["classes"], (size["n_test"],), generator=g).to(device)
    bank, queries = F.normalize(train, dim=1), F.normalize(test, dim=1)
    chunk = default_chunk_size(size["n_train"])

    def library():
        weighted_knn(train, train_labels, test, test_labels, k=K, temperature=TEMPERATURE, num_classes=size["classes"])

    def floor():
        with torch.no_grad():
            floor_search(bank, queries, K, chunk)

    start = time.perf_counter()
    warm = [timed(fn, device) for fn in (library, floor)]
    print(f"warm-up: library {warm[0]:.3f} s, floor {warm[1]:.3f} s; {reps} timed rounds next", flush=True)
    samples = interleaved([library, floor], device, reps)
    library_s, floor_s = (statistics.median(times) for times in samples)
    peaks = [peak_extra_bytes(fn, device) / MiB for fn in (library, floor)]
    gflop = 2 * size["n_train"] * size["n_test"] * size["dim"] / 1e9
    ratio = library_s / floor_s
    report = {
        "machine": facts | {"memory_method": MEMORY[device.type]}, "size": size, "k": K, "temperature": TEMPERATURE,
        "chunk_rows": chunk, "reps": reps, "library_s": library_s, "floor_s": floor_s, "ratio": ratio,
        "target_ratio": TARGET_RATIO, "meets": ratio <= TARGET_RATIO,
        "library_samples_s": samples[0], "floor_samples_s": samples[1],
        "matmul_gflop": gflop, "floor_gflop_per_s": gflop / floor_s,
        "library_peak_mib": peaks[0], "floor_peak_mib": peaks[1],
        "command": " ".join(["python benchmarks/knn.py", *sys.argv[1:]]), "wall_s": time.perf_counter() - start,
    }
    out = args.out or RESULTS / ("knn" + (".cuda" if device.type == "cuda" else "") + (".quick" if args.quick else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(f"{out}.json").write_text(json.dumps(report, indent=1) + "\n")
    pathlib.Path(f"{out}.md").write_text(markdown(report))
    print(f"library {library_s:.3f} s, floor {floor_s:.3f} s, ratio {ratio:.3f} (target <= {TARGET_RATIO}); "
          f"peak extra {peaks[0]:.0f} MiB vs {peaks[1]:.0f} MiB\nwrote {out}.md and {out}.json")


def row(name: str, median: float, samples: list, mib: float) -> str:
    return f"| {name} | {median:.3f} | {', '.join(f'{t:.3f}' for t in samples)} | {mib:.0f} |"


def markdown(r: dict) -> str:
    m, s = r["machine"], r["size"]
    return "\n".join([
        "# Weighted kNN against the bare similarity search", "",
        f"Written by `{r['command']}` on {m['date']}.", "",
        f"- Machine: {m['cpu']}, {m['cpu_cores']} cores, torch threads {m['torch_threads']}, load average "
        f"{m['load_average_1min']} at start" + (f"; GPU {m['gpu']} (CUDA {m['cuda']})" if "gpu" in m else ""),
        f"- torch {m['torch']}, Python {m['python']}, device `{m['device']}`, float32",
        f"- Problem: {s['n_train']:,} train x {s['n_test']:,} test x D={s['dim']}, {s['classes']} classes, k={r['k']}, "
        f"T={r['temperature']}, random Gaussian features, {r['chunk_rows']} test rows per chunk (the library's default budget)",
        "- Library: `weighted_knn` on raw features with test labels (normalise, matmul, top-k, votes, top-1/top-5)",
        "- Floor: on pre-normalised features, per chunk `torch.topk(queries @ bank.T, k)`, nothing else",
        f"- Time: one warm-up each, then the median of {r['reps']} rounds interleaved (A B A B ...)",
        f"- Memory: {m['memory_method']}", "",
        "| | median s | samples s | peak extra MiB |", "|---|---|---|---|",
        row("weighted_knn", r["library_s"], r["library_samples_s"], r["library_peak_mib"]),
        row("floor (matmul + top-k)", r["floor_s"], r["floor_samples_s"], r["floor_peak_mib"]),
        "", f"Floor matmul: {r['matmul_gflop']:.0f} GFLOP at {r['floor_gflop_per_s']:.1f} GFLOP/s.", "",
        f"Ratio weighted_knn / floor: **{r['ratio']:.3f}** (target <= {r['target_ratio']}: {'met' if r['meets'] else 'missed'}).", "",
    ])


if __name__ == "__main__":
    main()
