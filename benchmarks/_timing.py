"""Helpers shared by benchmark scripts: interleaved timing, peak extra memory, machine facts."""
from __future__ import annotations

import contextlib
import datetime
import itertools
import os
import platform
import time
from typing import Callable, Sequence

import torch

MEMORY_METHODS = {
    "cpu": "torch.profiler (profile_memory=True): peak of the running sum of CPU allocator events "
    "during one forward+backward, inputs already allocated, their .grad cleared beforehand",
    "cuda": "torch.cuda.max_memory_allocated() minus memory_allocated() before one forward+backward "
    "(peak stats reset first), inputs already allocated, their .grad cleared beforehand",
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(fns: Sequence[Callable[[], object]], device: torch.device, reps: int) -> list[list[float]]:
    """Seconds per call of each fn over `reps` rounds run A B A B ..., so drifting load hits all alike."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, times in zip(fns, samples):
            times.append(timed(fn, device))
    return samples


@contextlib.contextmanager
def _stderr_silenced():
    """Kineto prints start/stop banners straight to fd 2; keep them out of the report."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by `fn` above what was allocated when it started (see MEMORY_METHODS)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    cpu = torch._C._autograd.DeviceType.CPU
    with _stderr_silenced(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == cpu]
    events.sort(key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    facts = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "memory_method": MEMORY_METHODS[device.type],
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["cuda"] = torch.version.cuda
    return facts
