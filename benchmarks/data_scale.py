"""The data path at scale (issue 23), part 1: the decoded-cache build of an ImageNet-like folder.

1. A synthetic ImageNet-like set made from the real CIFAR-10 training images: JPEGs of 500 x 375 px
   at quality 90, each a 2 x 2 tile of four CIFAR images upscaled (bicubic) with Gaussian noise
   (sigma 16) on top, so the files carry photo-like detail and size; labelled by the first tile's
   class. `--unique` distinct files are made once under WORK/jpegs/; a set of N images
   (WORK/sets/N/) hard-links them in turn, so N can exceed the distinct files without the disk.
2. For each N in --sizes and each count in --workers: `load_dataset("imagefolder", ..., image_size=224)`
   in a fresh child process with an empty cache, timed (listing, key, decode, write, rename), with
   images/s, the child's peak RSS (ru_maxrss), the largest worker's (RUSAGE_CHILDREN) and the whole
   tree's peak proportional set size (PSS: shared pages split between the processes sharing them),
   sampled every 0.2 s from /proc/PID/smaps_rollup. Each cache is deleted after its measurement.

Results are rewritten after every measurement to OUT.{md,json}. The full run of the issue is
`--sizes 25000 50000 100000 --unique 20000`; the default sizes take about a quarter hour on 2 cores.

    python benchmarks/data_scale.py [--work runs/data_scale] [--sizes 2000 5000 10000] [--workers 1 2]
                                    [--unique N] [--image-size 224] [--out benchmarks/results/data_scale]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WIDTH, HEIGHT, QUALITY, NOISE = 500, 375, 90, 16.0  # noise 16: ~85 KB a file (ImageNet's average is ~110 KB)
TARGETS = "peak RSS under 2 GB and flat in N; 2 workers >= 1.8x one"


# ------------------------------------------------------------------------------ the synthetic set


def synthetic_jpeg(tiles: np.ndarray, seed: int) -> bytes:
    """One 500 x 375 JPEG: four 32 px images upscaled into a 2 x 2 tile, with Gaussian noise."""
    from PIL import Image

    half = (WIDTH // 2, (HEIGHT + 1) // 2)
    canvas = np.concatenate([np.concatenate([np.asarray(Image.fromarray(t).resize(half, Image.Resampling.BICUBIC))
                                             for t in pair], axis=1) for pair in (tiles[:2], tiles[2:])], axis=0)[:HEIGHT]
    noisy = canvas + np.random.default_rng(seed).normal(0, NOISE, canvas.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def _write_jpeg(folder: str, tiles: np.ndarray, class_name: str, index: int) -> None:
    path = Path(folder) / class_name / f"{index:06d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(synthetic_jpeg(tiles, seed=index))
    os.replace(tmp, path)


def make_unique(work: Path, count: int, processes: int) -> list[Path]:
    """`count` distinct JPEGs under WORK/jpegs/<class>/ (made once; a rerun keeps those present)."""
    from infomax.data.dataset import load_dataset

    folder, recipe = work / "jpegs", {"size": [WIDTH, HEIGHT], "quality": QUALITY, "noise": NOISE, "source": "cifar10 train"}
    if (folder / "recipe.json").exists() and json.loads((folder / "recipe.json").read_text()) != recipe:
        shutil.rmtree(folder)  # made by another recipe
        shutil.rmtree(work / "sets", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.json").write_text(json.dumps(recipe))
    have = {int(p.stem) for p in folder.glob("*/*.jpg")}
    todo = [i for i in range(count) if i not in have]
    if todo:
        cifar = load_dataset("cifar10", "train", SHARED)
        picks = np.random.default_rng(0).integers(0, len(cifar), size=(count, 4))
        started = time.perf_counter()
        with ProcessPoolExecutor(processes) as pool:
            for first in range(0, len(todo), 500):
                batch = todo[first : first + 500]
                jobs = [pool.submit(_write_jpeg, str(folder), cifar.images[picks[i]], cifar.classes[cifar.labels[picks[i, 0]]], i)
                        for i in batch]
                for job in jobs:
                    job.result()
                print(f"[data_scale] {first + len(batch)}/{len(todo)} JPEGs made, {time.perf_counter() - started:.0f}s",
                      file=sys.stderr, flush=True)
    return sorted((p for p in folder.glob("*/*.jpg") if int(p.stem) < count), key=lambda p: int(p.stem))


def make_set(work: Path, unique: list[Path], n: int) -> Path:
    """WORK/sets/N: n files, the i-th a hard link to unique[i % len(unique)] in its class folder."""
    folder = work / "sets" / str(n)
    if len(list(folder.glob("*/*.jpg"))) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(n):
        source = unique[i % len(unique)]
        target = folder / source.parent.name / f"{i:07d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
    return folder


# --------------------------------------------------------------------------------- measurement


def measure_child(location: str, workers: int, image_size: int) -> dict:
    """Run in a fresh process: build the cache, report time and this process tree's peak RSS."""
    from infomax.data.dataset import load_dataset

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    data = load_dataset("imagefolder", "train", location, image_size=image_size, workers=workers)
    seconds = time.perf_counter() - started
    return {"images": len(data), "seconds": seconds, "rss_before_build_mb": before / 1024,
            "rss_main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "shape": list(data.image_shape)}


def _tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        parent, frontier = frontier, []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) in parent:
                    frontier.append(int(stat.parent.name))
            except (OSError, ValueError, IndexError):
                continue
        pids += frontier
    return pids


def _pss_mb(pid: int) -> float:
    try:
        for line in (Path("/proc") / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(location: Path, workers: int, image_size: int, cache: Path) -> dict:
    """One build in a child process with an empty cache, its tree's PSS sampled meanwhile."""
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "INFOMAX_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, __file__, "--child", str(location), str(workers), str(image_size)]
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample() -> None:
        while child.poll() is None:
            peak[0] = max(peak[0], sum(_pss_mb(pid) for pid in _tree(child.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    sampler.join()
    shutil.rmtree(cache, ignore_errors=True)
    if child.returncode != 0:
        raise RuntimeError(f"the build of {location} with {workers} workers failed (exit {child.returncode})")
    record = json.loads(out.strip().splitlines()[-1])
    return {**record, "workers": workers, "images_per_s": record["images"] / record["seconds"], "tree_pss_peak_mb": peak[0]}


# ------------------------------------------------------------------------------------- report


def write_results(out: Path, setup: dict, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.with_suffix(".json")).write_text(json.dumps({"setup": setup, "builds": rows}, indent=1) + "\n")
    one = {r["images"]: r["images_per_s"] for r in rows if r["workers"] == 1}
    lines = [f"# Decoded-cache build at {setup['image_size']} px (benchmarks/data_scale.py)", "",
             f"Synthetic ImageNet-like set: {setup['unique']} distinct JPEGs, {WIDTH} x {HEIGHT} px, quality {QUALITY}, "
             f"mean {setup['mean_file_kb']:.0f} KB, from CIFAR-10 train (2 x 2 tiles upscaled, noise sigma {NOISE}); "
             "a set of N hard-links them in turn.", "",
             f"Machine: {setup['machine']['cpu']}, {setup['machine']['cores']} cores usable, load average "
             f"{setup['machine']['load_average_1min']} at the start. Targets (issue 23): {TARGETS}.", "",
             "Each build: a fresh process, an empty cache, `load_dataset(..., image_size, workers)` timed whole (listing, key, "
             "decode, write, rename). RSS: ru_maxrss of the main process and of the largest worker; tree PSS: the peak "
             "of the summed proportional set size of all the processes (shared pages counted once), sampled every 0.2 s.", "",
             "| N | workers | seconds | images/s | vs 1 worker | main RSS before / peak (MB) | worker peak RSS (MB) | tree PSS peak (MB) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['images_per_s'] / one[r['images']]:.2f}x" if r["images"] in one else "-"
        lines.append(f"| {r['images']} | {r['workers']} | {r['seconds']:.1f} | {r['images_per_s']:.0f} | {ratio} | "
                     f"{r['rss_before_build_mb']:.0f} / {r['rss_main_peak_mb']:.0f} | {r['rss_worker_peak_mb']:.0f} | "
                     f"{r['tree_pss_peak_mb']:.0f} |")
    (out.with_suffix(".md")).write_text("\n".join(lines) + "\n")


def machine() -> dict:
    from infomax.data.decode import available_cores

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    return {"cpu": cpu, "cores": available_cores(), "load_average_1min": round(os.getloadavg()[0], 2),
            "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "data_scale", help="where the JPEGs and caches go (git-ignored)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000], help="images per build")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="decode processes per build")
    parser.add_argument("--unique", type=int, default=None, help="distinct JPEGs made (default: the largest size, at most 20000)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data_scale", help="OUT.md and OUT.json")
    parser.add_argument("--child", nargs=3, metavar=("LOCATION", "WORKERS", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    unique_count = args.unique or min(max(args.sizes), 20000)
    unique = make_unique(args.work, unique_count, max(args.workers))
    setup = {"image_size": args.image_size, "unique": len(unique), "sizes": args.sizes, "workers": args.workers,
             "mean_file_kb": float(np.mean([p.stat().st_size for p in unique[:2000]]) / 1024), "machine": machine()}
    rows = []
    for n in args.sizes:
        location = make_set(args.work, unique, n)
        for workers in args.workers:
            rows.append(measure(location, workers, args.image_size, args.work / "cache"))
            write_results(args.out, setup, rows)
            r = rows[-1]
            print(f"[data_scale] N={n} workers={workers}: {r['images_per_s']:.0f} images/s, main peak {r['rss_main_peak_mb']:.0f} MB, "
                  f"tree PSS peak {r['tree_pss_peak_mb']:.0f} MB", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
