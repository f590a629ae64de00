"""The decoded cache's image array, written chunk by chunk by worker processes, resumable.

`write_images(images, target, workers)` fills `target`, an .npy preallocated with
`np.lib.format.open_memmap` (a sparse file: nothing is zero-filled), with one row per image. Rows
are cut into chunks of at most `CHUNK_ROWS` images and `CHUNK_BYTES` of decoded pixels. A worker
process is handed one chunk at a time, as file paths (a folder) or the chunk's encoded bytes (a tar,
which only one reader can walk), decodes it image by image and writes each row at its offset in the
file with `pwrite`; decoded pixels never cross a pipe and never sit in a list, so a process holds
one chunk's input and one image whatever the dataset's size. (Rows are not assigned through a
mapping of the file: pages written through a mapping count in the writer's resident memory until it
is unmapped.)

A finished chunk is synced to disk and then appended to the log beside `target`
(`images.chunks`); `images.plan.json` holds the shape and the chunk size. A killed build rerun on
the same `target` decodes only the chunks missing from the log, and since every row is a pure
function of its file, 0, 1 or N workers and any number of restarts give the same bytes.

Unreadable files (truncated, not images) and images of another size do not stop the decode: each is
named on stderr as it is found, and all of them are raised together at the end.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections import defaultdict, deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from ..runs.atomic import write_json
from .formats import DataFormatError, decode_image, tar_stream

CHUNK_ROWS = 1024  # images per chunk at most: resume and progress granularity, work spread over workers
CHUNK_BYTES = 32 << 20  # decoded pixels per chunk at most (222 rows at 224 x 224 x 3)
SHOWN_BAD = 10  # unreadable files listed in the final message (all are printed as found)


@dataclass(frozen=True)
class EncodedImages:
    """Images not decoded yet: row i is the file `members[i]` of `location` (a folder, or a tar's member
    name), resized to `image_size` (shorter side, then the centre square) when given."""

    location: Path
    members: list[str]
    image_size: int | None = None

    def __len__(self) -> int:
        return len(self.members)

    def name(self, row: int) -> str:
        return f"{self.location}/{self.members[row]}"


class Failure(NamedTuple):
    """A row that could not be written: an unreadable file (`shape` None) or an image of another size."""

    message: str
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Plan:
    shape: tuple[int, ...]  # the whole array (N, H, W, C)
    rows_per_chunk: int
    offset: int  # bytes before row 0 (the .npy header)
    first: str  # the image the row shape was taken from

    @property
    def chunks(self) -> int:
        return math.ceil(self.shape[0] / self.rows_per_chunk)

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:])


def available_cores() -> int:
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+: honours the affinity mask
    if counter is not None:
        return counter() or 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """Decode processes: None is the cores this process may run on; 0 decodes in this process."""
    if workers is None:
        return available_cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a whole number >= 0 (0: decode in this process) or None (the machine's "
                         f"cores), got {workers!r}.")
    return workers


def decode_resized(raw: bytes, name: str, image_size: int | None) -> np.ndarray:
    """One image as RGB uint8; with `image_size`, the shorter side resized to it (bicubic), centre cropped."""
    if image_size is None:
        return decode_image(raw, name)
    from PIL import Image

    image = Image.fromarray(decode_image(raw, name))
    scale = image_size / min(image.size)
    width, height = max(image_size, round(image.width * scale)), max(image_size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - image_size) // 2, (height - image_size) // 2
    return np.asarray(image.crop((left, top, left + image_size, top + image_size)), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ writing


def write_images(images: np.ndarray | EncodedImages, target: Path, workers: int | None = None, label: str = "") -> None:
    """Fill `target` (.npy) with `images`, resuming from the chunks its log says are done.

    An array (a built-in source already decoded) is copied chunk by chunk in this process; encoded
    images are decoded by `workers` processes. Raises DataFormatError naming every unreadable file and
    every image of another size, after all chunks were tried."""
    workers = resolve_workers(workers)
    target = Path(target)
    plan = _resumable_plan(target, images) or _new_plan(target, images)
    done = _done_chunks(target)
    if isinstance(images, np.ndarray):
        _copy_array(images, target, plan, done)
        return
    failures = _decode_all(images, target, plan, done, workers, label or target.parent.name)
    if failures:
        raise DataFormatError(failure_message(images.location, plan, failures))


def plan_path(target: Path) -> Path:
    return target.with_suffix(".plan.json")


def log_path(target: Path) -> Path:
    return target.with_suffix(".chunks")


def _new_plan(target: Path, images) -> Plan:
    log_path(target).unlink(missing_ok=True)
    row_shape, first = _row_shape(images)
    shape = (len(images), *row_shape)
    rows = max(1, min(CHUNK_ROWS, CHUNK_BYTES // max(1, math.prod(row_shape))))
    array = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=shape)
    plan = Plan(shape, rows, int(array.offset), first)
    del array
    write_json(plan_path(target), {"shape": list(shape), "rows_per_chunk": rows, "offset": plan.offset, "first": first})
    return plan


def _resumable_plan(target: Path, images) -> Plan | None:
    """The plan of an interrupted build of these images into `target`, or None to start again."""
    try:
        record = json.loads(plan_path(target).read_text())
        plan = Plan(tuple(record["shape"]), int(record["rows_per_chunk"]), int(record["offset"]), record["first"])
        size_ok = target.stat().st_size == plan.offset + plan.shape[0] * plan.row_bytes
    except (OSError, ValueError, KeyError, TypeError):
        return None
    expected = images.shape if isinstance(images, np.ndarray) else (len(images),)
    return plan if size_ok and plan.shape[: len(expected)] == tuple(expected) else None


def _row_shape(images) -> tuple[tuple[int, ...], str]:
    """One row's shape and the image it was taken from (the first that decodes, in reading order)."""
    if isinstance(images, np.ndarray):
        return tuple(images.shape[1:]), "the array"
    if images.image_size is not None:
        return (images.image_size, images.image_size, 3), f"--image-size {images.image_size}"
    for _, items in _encoded_chunks(images, 1, set()):
        (_, name, source), = items
        try:
            return decode_resized(_read(source, name), name, None).shape, name
        except DataFormatError:
            continue  # reported with every other unreadable file by the decode
    return (1, 1, 3), "none (no file is readable)"


def _done_chunks(target: Path) -> set[int]:
    try:
        lines = log_path(target).read_text().split()
    except FileNotFoundError:
        return set()
    return {int(line) for line in lines if line.isdigit()}  # a torn last line (a kill mid-append) is not done


def _log_chunk(target: Path, chunk: int) -> None:
    """Record `chunk` as done; called only once its rows are on disk."""
    fd = os.open(log_path(target), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, f"{chunk}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_array(images: np.ndarray, target: Path, plan: Plan, done: set[int]) -> None:
    fd = os.open(target, os.O_WRONLY)
    try:
        for chunk in range(plan.chunks):
            if chunk in done:
                continue
            start = chunk * plan.rows_per_chunk
            rows = np.ascontiguousarray(images[start : start + plan.rows_per_chunk], dtype=np.uint8)
            _pwrite_all(fd, rows.tobytes(), plan.offset + start * plan.row_bytes)
            os.fdatasync(fd)
            _log_chunk(target, chunk)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------- decoding


def decode_chunk(target: str, offset: int, row_shape: tuple[int, ...], image_size: int | None,
                 items: list[tuple[int, str, str | bytes]]) -> list[Failure]:
    """Decode one chunk's `(row, name, path or bytes)` items into `target`'s rows; synced before it returns."""
    failures, row_bytes = [], math.prod(row_shape)
    fd = os.open(target, os.O_WRONLY)
    try:
        for row, name, source in items:
            try:
                image = decode_resized(_read(source, name), name, image_size)
            except DataFormatError as error:
                failures.append(Failure(str(error)))
                continue
            if image.shape != tuple(row_shape):
                failures.append(Failure(f"{name} is {_size(image.shape)}", image.shape))
                continue
            _pwrite_all(fd, image.tobytes(), offset + row * row_bytes)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return failures


def _read(source: str | bytes, name: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as error:  # removed or unreadable since the folder was listed
        raise DataFormatError(f"{name}: cannot be read ({error.strerror or error}).") from None


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _encoded_chunks(images: EncodedImages, rows_per_chunk: int, done: set[int]) -> Iterator[tuple[int, list]]:
    """(chunk, [(row, name, path or bytes)]) for every chunk not in `done`, in reading order: a folder's
    rows in order (workers read the paths); a tar's members as the archive holds them (bytes)."""
    if images.location.is_dir():
        for chunk in range(math.ceil(len(images) / rows_per_chunk)):
            if chunk not in done:
                rows = range(chunk * rows_per_chunk, min(len(images), (chunk + 1) * rows_per_chunk))
                yield chunk, [(row, images.name(row), str(images.location / images.members[row])) for row in rows]
        return
    yield from _tar_chunks(images, rows_per_chunk, done)


def _tar_chunks(images: EncodedImages, rows_per_chunk: int, done: set[int]) -> Iterator[tuple[int, list]]:
    rows_of = defaultdict(deque)  # a member name -> its rows (a name stored twice in a tar is two rows)
    for row, member in enumerate(images.members):
        rows_of[member].append(row)
    position, items = 0, []
    for name, read in tar_stream(images.location):
        if not rows_of.get(name):
            continue
        row, chunk = rows_of[name].popleft(), position // rows_per_chunk
        position += 1
        if chunk not in done:
            items.append((row, images.name(row), read()))
        if position % rows_per_chunk == 0 or position == len(images):
            if items:
                yield chunk, items
            items = []


def _decode_all(images: EncodedImages, target: Path, plan: Plan, done: set[int], workers: int, label: str) -> list[Failure]:
    failures: list[Failure] = []
    meter = Meter(plan.shape[0], _rows_in(done, plan), label, workers)

    def finished(chunk: int, rows: int, found: list[Failure]) -> None:
        for failure in found:
            print(f"[data] {failure.message}", file=sys.stderr, flush=True)
        failures.extend(found)
        if not found:
            _log_chunk(target, chunk)
        meter.update(rows)

    chunks = _encoded_chunks(images, plan.rows_per_chunk, done)
    task = (str(target), plan.offset, plan.shape[1:], images.image_size)
    if workers == 0:
        for chunk, items in chunks:
            finished(chunk, len(items), decode_chunk(*task, items))
    else:
        _decode_in_pool(chunks, task, min(workers, plan.chunks - len(done)), finished)
    meter.close()
    return failures


def _rows_in(done: set[int], plan: Plan) -> int:
    return sum(min(plan.rows_per_chunk, plan.shape[0] - chunk * plan.rows_per_chunk) for chunk in done)


def _decode_in_pool(chunks, task: tuple, workers: int, finished) -> None:
    """At most two chunks per worker are in flight, so a tar's encoded bytes waiting in the queue stay bounded."""
    if workers < 1:
        return
    pool = ProcessPoolExecutor(workers, mp_context=_start_method(), initializer=_worker_started, initargs=(os.getpid(),))
    running = {}
    try:
        for chunk, items in chunks:
            running[pool.submit(decode_chunk, *task, items)] = (chunk, len(items))
            while len(running) >= 2 * workers:
                _collect(running, finished)
        while running:
            _collect(running, finished)
    except BrokenProcessPool:
        raise RuntimeError("a decode worker process died (killed, or out of memory); run again: the build resumes at its "
                           "first unfinished chunk. Fewer --workers use less memory.") from None
    finally:
        pool.shutdown(wait=not running, cancel_futures=True)


def _collect(running: dict, finished) -> None:
    ready, _ = wait(running, return_when=FIRST_COMPLETED)
    for future in ready:
        chunk, rows = running.pop(future)
        finished(chunk, rows, future.result())


def _start_method():
    """fork on Linux: a worker starts in milliseconds and needs nothing but the module's functions (it never
    touches torch); spawn elsewhere, where fork is unsafe."""
    import multiprocessing

    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _worker_started(parent: int) -> None:
    """Ctrl-C is the parent's to handle (the workers finish their chunk and stop); a worker dies with its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


# ---------------------------------------------------------------------------------------- reporting


def _size(shape) -> str:
    return "x".join(str(n) for n in shape[:2])


def failure_message(location: Path, plan: Plan, failures: list[Failure]) -> str:
    """Every unreadable file and every image of another size, each named, with what to do."""
    parts = []
    bad = [f.message for f in failures if f.shape is None]
    if bad:
        more = f"\n  ... and {len(bad) - SHOWN_BAD} more (all were printed above as they were found)" if len(bad) > SHOWN_BAD else ""
        parts.append(f"{len(bad)} unreadable image(s); remove or replace them (copy a truncated file again, delete or "
                     f"rename a file that is no image), then run again:\n  " + "\n  ".join(bad[:SHOWN_BAD]) + more)
    odd = [f for f in failures if f.shape is not None]
    if odd:
        parts.append(f"{location}: images differ in size: {plan.first} is {_size(plan.shape[1:])}, but {len(odd)} are not, "
                     f"e.g. {odd[0].message}; pass --image-size N to resize them all to N x N.")
    return "\n".join(parts)


class Meter:
    """Progress of a decode: a tqdm bar (rate, ETA) on a terminal; elsewhere a line at the start, one
    every 30 s, and one at the end."""

    EVERY = 30.0

    def __init__(self, total: int, done: int, label: str, workers: int):
        self.total, self.done, self.start_done, self.label = total, done, done, label
        self.started = self.shown = time.perf_counter()
        self.bar = None
        self.terminal = sys.stderr.isatty()
        if not self.terminal:
            resumed = f", resuming at {done}" if done else ""
            print(f"[data] {label}: decoding {total} images with {workers or 'no'} worker process(es){resumed}",
                  file=sys.stderr, flush=True)

    def update(self, rows: int) -> None:
        self.done += rows
        if self.terminal:
            self._bar().update(rows)
        elif time.perf_counter() - self.shown >= self.EVERY:
            self._line()

    def _bar(self):
        if self.bar is None:  # made after the workers are forked: tqdm starts a monitor thread
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.start_done, desc=self.label, unit="img", dynamic_ncols=True)
        return self.bar

    def _line(self) -> None:
        now = time.perf_counter()
        rate = (self.done - self.start_done) / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / max(rate, 1e-9)
        print(f"[data] {self.label}: {self.done}/{self.total} images, {rate:.0f}/s, ETA {eta:.0f}s",
              file=sys.stderr, flush=True)
        self.shown = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.terminal:
            self._line()
