"""The data path at scale (issue 23), part 1: the decoded-cache build of an ImageNet-like folder.

1. A synthetic ImageNet-like set made from the real CIFAR-10 and Fashion-MNIST training images:
   JPEGs of 500 x 375 px at quality 90, each a 2 x 2 tile of four images upscaled (bicubic) with
   Gaussian noise (sigma 16) on top, so the files carry photo-like detail and size; every 4th from
   Fashion-MNIST (grey, as RGB); labelled by the first tile's class. `--unique` distinct files are made once under WORK/jpegs/; a set of N images
   (WORK/sets/N/) hard-links them in turn, so N can exceed the distinct files without the disk.
2. For each N in --sizes and each count in --workers: `load_dataset("imagefolder", ..., image_size=224)`
   in a fresh child process with an empty cache, timed (listing, key, decode, write, rename), with
   images/s, the child's peak RSS (ru_maxrss), the largest worker's (RUSAGE_CHILDREN) and the whole
   tree's peak proportional set size (PSS: shared pages split between the processes sharing them),
   sampled every 0.2 s from /proc/PID/smaps_rollup. Each cache is deleted after its measurement.

3. `--parts stream`: streaming throughput. The first --stream-images files are read by StreamBatches'
   DataLoader (the simclr view set at --image-size: two crops of 0.08-1 per image, JPEG draft,
   the uint8 crops out; the colour ops run on the device later and are not counted) with 1 and 2
   workers, against the floor: the same files read, decoded (with the same draft rule), cropped
   and resized to the same two crops in a bare Pillow loop in one process.
4. `--parts wait`: the data-wait fraction the loop logs for a ResNet-18 SimCLR step at batch 256
   (--wait-resolution px, bf16 where the CPU has it), streaming (2 workers) against the decoded cache.
5. `--parts disk`: the set packed into shards (`infomax data pack`) against its decoded cache, bytes on disk.

Results are rewritten after every measurement to OUT.{md,json}; each part keeps the others' results. The full run of the issue is
`--sizes 25000 50000 100000 --unique 20000`; the default sizes take about a quarter hour on 2 cores.

    python benchmarks/data_scale.py [--work runs/data_scale] [--sizes 2000 5000 10000] [--workers 1 2]
                                    [--unique N] [--image-size 224] [--out benchmarks/results/data_scale]
"""
from __future__ import annotations

import argparse
import io
import json
import math
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


def _tiles(cifar, fashion, picks: np.ndarray, index: int) -> tuple[np.ndarray, str]:
    """Four RGB tiles and the class folder: CIFAR-10's, or Fashion-MNIST's (grey, as RGB) for every 4th image."""
    if index % 4 == 3:
        name = fashion.classes[fashion.labels[picks[0]]].replace("/", "-")  # T-shirt/top
        return np.repeat(fashion.images[picks], 3, axis=-1), f"fashion-{name}"
    return cifar.images[picks], cifar.classes[cifar.labels[picks[0]]]


def make_unique(work: Path, count: int, processes: int) -> list[Path]:
    """`count` distinct JPEGs under WORK/jpegs/<class>/ (made once; a rerun keeps those present)."""
    from infomax.data.dataset import load_dataset

    folder, recipe = work / "jpegs", {"size": [WIDTH, HEIGHT], "quality": QUALITY, "noise": NOISE,
                                      "source": "cifar10 train; every 4th fashion-mnist train"}
    if (folder / "recipe.json").exists() and json.loads((folder / "recipe.json").read_text()) != recipe:
        shutil.rmtree(folder)  # made by another recipe
        shutil.rmtree(work / "sets", ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.json").write_text(json.dumps(recipe))
    have = {int(p.stem) for p in folder.glob("*/*.jpg")}
    todo = [i for i in range(count) if i not in have]
    if todo:
        cifar, fashion = load_dataset("cifar10", "train", SHARED), load_dataset("fashion-mnist", "train", SHARED)
        picks = np.random.default_rng(0).integers(0, min(len(cifar), len(fashion)), size=(count, 4))
        started = time.perf_counter()
        with ProcessPoolExecutor(processes) as pool:
            for first in range(0, len(todo), 500):
                batch = todo[first : first + 500]
                jobs = [pool.submit(_write_jpeg, str(folder), *_tiles(cifar, fashion, picks[i], i), i) for i in batch]
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


# ------------------------------------------------------------------------------- streaming


def _floor_crops(path: Path, rng, size: int) -> None:
    """The floor: one file read, decoded at the draft scale the stream would use, two crops resized."""
    import math

    from PIL import Image

    image = Image.open(io.BytesIO(path.read_bytes()))
    width, height = image.size
    boxes = []
    for _ in range(2):
        for _ in range(10):  # RandomResizedCrop's rule, in plain Python
            area = width * height * rng.uniform(0.08, 1.0)
            aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
            if w <= width and h <= height:
                break
        else:
            w, h = min(width, height), min(width, height)
        boxes.append((rng.uniform(0, width - w), rng.uniform(0, height - h), w, h))
    shrink = min(min(w, h) / size for _, _, w, h in boxes)
    if shrink >= 2:
        image.draft("RGB", (math.ceil(width / shrink), math.ceil(height / shrink)))
    image = image.convert("RGB")
    fx, fy = image.width / width, image.height / height
    for x0, y0, w, h in boxes:
        np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=(x0 * fx, y0 * fy, (x0 + w) * fx, (y0 + h) * fy)))


def measure_stream(location: Path, size: int, workers_list: list[int]) -> dict:
    import random

    import torch

    from infomax.data.encoded import folder_samples
    from infomax.data.stream import StreamBatches
    from infomax.data.views import get_view_set

    samples = folder_samples(location, "train")
    paths = [Path(p) for p in samples.files]
    rng = random.Random(0)
    for path in paths[:50]:  # warm the page cache and Pillow alike for every contender
        path.read_bytes()
    started = time.perf_counter()
    for path in paths:
        _floor_crops(path, rng, size)
    floor = len(paths) / (time.perf_counter() - started)
    result = {"images": len(paths), "floor_images_per_s": floor, "workers": {}}
    views = get_view_set("simclr", size)
    for workers in workers_list:
        batches = StreamBatches(samples, np.arange(len(samples)), views, 64, seed=0, workers=workers)
        torch.set_num_threads(1)
        started = time.perf_counter()
        seen = sum(len(b["crops"][0]) for b in batches.loader(0))
        result["workers"][str(workers)] = seen / (time.perf_counter() - started)
        print(f"[data_scale] stream, {workers} workers: {result['workers'][str(workers)]:.0f} images/s (floor {floor:.0f})",
              file=sys.stderr, flush=True)
    return result


def measure_wait(location: Path, resolution: int, steps: int, work: Path) -> dict:
    """metrics.jsonl's data_wait of pretrain runs, streaming and decoded, on the same folder."""
    out = {}
    for source, extra in (("stream", ["--set", "data.workers=2"]), ("decoded", ["--set", f"data.image_size={resolution}"])):
        run = work / f"wait-{source}"
        argv = [sys.executable, "-m", "infomax", "pretrain", "--method", "simclr", "--dataset", "imagefolder",
                "--data-root", str(location), "--set", "model.backbone=resnet18", "--set", "model.options={}", "--batch-size", "256", "--max-steps", str(steps),
                "--set", f"data.source={source}", "--set", f"data.resolution={resolution}", "--set", "run.log_every=1",
                "--set", "run.knn_every=0", "--set", "data.holdout=0", "--out", str(run), "--overwrite", *extra]
        env = {**os.environ, "INFOMAX_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT)}
        subprocess.run(argv, env=env, check=True, capture_output=True)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "data_wait" in line]
        later = records[1:]  # the first step pays for starting the workers and warming up
        step_s = json.loads((run / "metrics.json").read_text())["train_seconds"] / steps
        out[source] = {"data_wait": float(np.mean([r["data_wait"] for r in later])), "seconds_per_step": step_s,
                       "precision": _saved(run, "run", "precision"), "steps": steps}
        print(f"[data_scale] wait, {source}: {out[source]['data_wait']:.1%} of the step", file=sys.stderr, flush=True)
    shutil.rmtree(work / "cache", ignore_errors=True)
    return out


def _saved(run: Path, section: str, key: str):
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())[section][key]


def measure_disk(location: Path, image_size: int, work: Path) -> dict:
    from infomax.data.shards import pack

    shards = work / "shards"
    shutil.rmtree(shards, ignore_errors=True)
    started = time.perf_counter()
    pack(location, shards, 1000)
    seconds = time.perf_counter() - started
    images = len(list(location.glob("*/*.jpg")))
    shard_bytes = sum(p.stat().st_size for p in shards.glob("*.tar"))
    shutil.rmtree(shards, ignore_errors=True)
    return {"images": images, "shard_bytes": shard_bytes, "decoded_bytes": images * image_size * image_size * 3,
            "pack_seconds": seconds}


# ------------------------------------------------------------------------------------- report


def write_results(out: Path, record: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.with_suffix(".json")).write_text(json.dumps(record, indent=1) + "\n")
    setup = record["setup"]
    lines = ["# The data path at scale (benchmarks/data_scale.py)", "",
             f"Synthetic ImageNet-like set: {setup['unique']} distinct JPEGs, {WIDTH} x {HEIGHT} px, quality {QUALITY}, "
             f"mean {setup['mean_file_kb']:.0f} KB, from CIFAR-10 and (every 4th) Fashion-MNIST train (2 x 2 tiles upscaled, "
             f"noise sigma {NOISE}); "
             "a set of N hard-links them in turn.", "",
             f"Machine: {setup['machine']['cpu']}, {setup['machine']['cores']} cores usable, load average "
             f"{setup['machine']['load_average_1min']} at the start of the latest invocation ({setup['machine']['date']}; "
             "`--parts` reruns one part and keeps the others' results).", ""]
    lines += _cache_lines(record.get("builds", []), setup) + _stream_lines(record.get("stream")) + \
        _wait_lines(record.get("wait"), setup) + _disk_lines(record.get("disk")) + _per_gpu_lines(record.get("stream"))
    (out.with_suffix(".md")).write_text("\n".join(lines) + "\n")


def _cache_lines(rows: list[dict], setup: dict) -> list[str]:
    if not rows:
        return []
    one = {r["images"]: r["images_per_s"] for r in rows if r["workers"] == 1}
    lines = [f"## Decoded-cache build at {setup['image_size']} px", "", f"Targets (issue 23): {TARGETS}.", "",
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
    return lines + [""]


def _stream_lines(stream: dict | None) -> list[str]:
    if not stream:
        return []
    floor, rates = stream["floor_images_per_s"], stream["workers"]
    lines = [f"## Streaming throughput, {stream['images']} files, two {stream['size']} px crops per image", "",
             "Targets: >= 0.9x the floor per worker; 2 workers >= 1.8x one. The floor: the same files read, decoded at the "
             "same draft scale, cropped and resized twice in a bare Pillow loop in one process."
             + (f" Measured {stream['machine']['date']}, load average {stream['machine']['load_average_1min']} at the start."
                if "machine" in stream else ""), "",
             "| reader | images/s | vs the floor | vs 1 worker |", "|---|---:|---:|---:|",
             f"| bare Pillow loop (floor) | {floor:.0f} | 1.00x | |"]
    for workers, rate in rates.items():
        vs_one = f"{rate / rates['1']:.2f}x" if "1" in rates else ""
        lines.append(f"| StreamBatches, {workers} worker(s) | {rate:.0f} | {rate / floor:.2f}x | {vs_one} |")
    return lines + [""]


def _wait_lines(wait: dict | None, setup: dict) -> list[str]:
    if not wait:
        return []
    lines = [f"## Data wait of a ResNet-18 SimCLR step (batch 256, {wait['resolution']} px)", "",
             "The share of each step the loop spent waiting for its batch (metrics.jsonl's data_wait, mean over the steps "
             "after the first). Streaming: 2 DataLoader workers beside the training on the same 2 cores; decoded: views "
             "made in the training process from the memory-mapped cache.", "",
             "| source | data wait | seconds / step | precision |", "|---|---:|---:|---|"]
    for source in ("stream", "decoded"):
        r = wait[source]
        lines.append(f"| {source} | {r['data_wait']:.1%} | {r['seconds_per_step']:.1f} | {r['precision']} |")
    return lines + [""]


def _disk_lines(disk: dict | None) -> list[str]:
    if not disk:
        return []
    return [f"## On disk, {disk['images']} images", "",
            f"Shards (`infomax data pack`, 1000 per shard): {disk['shard_bytes'] / 1e9:.2f} GB, packed in "
            f"{disk['pack_seconds']:.0f} s; the decoded cache at {disk['image_size']} px: {disk['decoded_bytes'] / 1e9:.2f} GB "
            f"({disk['decoded_bytes'] / disk['shard_bytes']:.1f}x the shards).", ""]


# ResNet-50 v1.5 training on one A100 80GB, mixed precision, batch 256: NVIDIA DeepLearningExamples,
# PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training performance: NVIDIA DGX A100 (8x A100 80GB)".
A100_RESNET50_IMAGES_PER_S = 2470
# Dense bf16 tensor-core peaks, TFLOPS: H100 SXM 989 (NVIDIA H100 datasheet), A100 312 (A100 datasheet).
H100_OVER_A100 = 989 / 312


def _per_gpu_lines(stream: dict | None) -> list[str]:
    """Decode workers one H100 needs for ResNet-50 two-view pretraining, from the measured per-worker rate."""
    if not stream or "1" not in stream["workers"]:
        return []
    per_worker = stream["workers"]["1"]
    low, high = A100_RESNET50_IMAGES_PER_S / 2, A100_RESNET50_IMAGES_PER_S * H100_OVER_A100 / 2
    return ["## On paper: decode workers per GPU for ResNet-50 pretraining on ImageNet", "",
            f"Supervised ResNet-50 trains at {A100_RESNET50_IMAGES_PER_S} images/s on one A100 80GB with mixed precision "
            "(NVIDIA DeepLearningExamples, PyTorch ResNet50 v1.5 README, batch 256); no published single-H100 figure of the "
            f"same recipe was found, so an H100 is bounded below by the A100 and above by the ratio of dense bf16 peaks, "
            f"989 / 312 TFLOPS = {H100_OVER_A100:.2f}x. A two-view SSL step runs the network on two 224 px crops of each "
            f"image, so it consumes half as many images: {low:.0f} to {high:.0f} images/s per H100 (the projector and "
            "the loss are small beside ResNet-50).", "",
            f"One worker here streams {per_worker:.0f} images/s (two 224 px crops each, the table above), so one H100 needs "
            f"{low / per_worker:.1f} to {high / per_worker:.1f} decode workers, i.e. about {math.ceil(low / per_worker)} to "
            f"{math.ceil(high / per_worker)} cores of this machine's kind per GPU; an 8-GPU node needs "
            f"{8 * math.ceil(low / per_worker)} to {8 * math.ceil(high / per_worker)}. "
            "Multi-crop recipes (SwAV, HyDeS: 2 x 224 + 6 x 96) decode once per image and cut every crop from it, so "
            "their cost per image grows by the extra resizes only, while the GPU's grows by the extra crops.", ""]


def machine() -> dict:
    from infomax.data.decode import available_cores

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    return {"cpu": cpu, "cores": available_cores(), "load_average_1min": round(os.getloadavg()[0], 2),
            "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "data_scale", help="where the JPEGs and caches go (git-ignored)")
    parser.add_argument("--parts", nargs="+", default=["cache", "stream", "wait", "disk"], choices=["cache", "stream", "wait", "disk"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000], help="images per build")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="decode processes per build")
    parser.add_argument("--unique", type=int, default=None, help="distinct JPEGs made (default: the largest size, at most 20000)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--stream-images", type=int, default=2000)
    parser.add_argument("--wait-resolution", type=int, default=224)
    parser.add_argument("--wait-steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data_scale", help="OUT.md and OUT.json")
    parser.add_argument("--child", nargs=3, metavar=("LOCATION", "WORKERS", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    unique_count = args.unique or min(max(args.sizes + [args.stream_images]), 20000)
    unique = make_unique(args.work, unique_count, max(args.workers))
    record = json.loads(args.out.with_suffix(".json").read_text()) if args.out.with_suffix(".json").exists() else {}
    record["setup"] = {"image_size": args.image_size, "unique": len(unique), "sizes": args.sizes, "workers": args.workers,
                       "mean_file_kb": float(np.mean([p.stat().st_size for p in unique[:2000]]) / 1024), "machine": machine()}
    if "cache" in args.parts:
        record["builds"] = []
        for n in args.sizes:
            location = make_set(args.work, unique, n)
            for workers in args.workers:
                record["builds"].append(measure(location, workers, args.image_size, args.work / "cache"))
                write_results(args.out, record)
                r = record["builds"][-1]
                print(f"[data_scale] N={n} workers={workers}: {r['images_per_s']:.0f} images/s, main peak "
                      f"{r['rss_main_peak_mb']:.0f} MB, tree PSS peak {r['tree_pss_peak_mb']:.0f} MB", file=sys.stderr, flush=True)
    small = make_set(args.work, unique, args.stream_images)
    if "stream" in args.parts:
        record["stream"] = {**measure_stream(small, args.image_size, args.workers), "size": args.image_size, "machine": machine()}
        write_results(args.out, record)
    if "wait" in args.parts:
        record["wait"] = {**measure_wait(small, args.wait_resolution, args.wait_steps, args.work), "resolution": args.wait_resolution}
        write_results(args.out, record)
    if "disk" in args.parts:
        record["disk"] = {**measure_disk(make_set(args.work, unique, max(args.sizes)), args.image_size, args.work),
                          "image_size": args.image_size}
        write_results(args.out, record)


if __name__ == "__main__":
    main()
