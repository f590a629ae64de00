"""A run directory: what was asked (config), where it ran (environment.json), what happened
(metrics.jsonl while training, metrics.json at the end) and the weights (safetensors).

Every run directory holds the marker `MARKER`. An existing non-empty directory is refused
unless the caller resumes or overwrites, and `--overwrite` deletes only a folder with the
marker, never the working directory, the home directory or a parent of either.
"""
from __future__ import annotations

import json
import platform
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file

from .atomic import save_tensors, write_atomic, write_json

__all__ = ["MARKER", "METRICS_LOG", "RunDirExists", "check_target", "environment", "is_run", "load_tensors", "log_metrics",
           "prepare", "read_metrics", "record_environment", "refuse_changes", "save_tensors", "truncate_log", "write_atomic",
           "write_json"]

METRICS_LOG = "metrics.jsonl"
MARKER = ".infomax-run"


class RunDirExists(FileExistsError):
    pass


def _protected(out: Path) -> bool:
    out = out.resolve()
    return any(out == p or out in p.parents for p in (Path.cwd().resolve(), Path.home().resolve())) or out == Path(out.anchor)


def is_run(out: Path) -> bool:
    """A run directory: it has the marker, or (written before markers existed) a config and metrics."""
    out = Path(out)
    config = any((out / name).exists() for name in ("config.json", "config.yaml"))
    return (out / MARKER).exists() or (config and any((out / name).exists() for name in ("metrics.json", METRICS_LOG)))


def check_target(out: Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Refuse a target that `prepare` would refuse, without touching the disk (call it before any work)."""
    out = Path(out)
    if resume and overwrite:
        raise ValueError("choose one of --resume and --overwrite.")
    holds = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if holds and not out.is_dir():
        raise RunDirExists(f"{out} is a file, not a run directory; choose another --out.")
    if holds and overwrite and not is_run(out):
        raise RunDirExists(f"--overwrite deletes only infomax run directories, and {out} is not one (no {MARKER}); "
                           "choose another --out or delete it yourself.")
    if holds and overwrite and _protected(out):
        raise RunDirExists(f"--overwrite refuses to delete {out}: it is or contains the working or home directory.")
    if holds and not (resume or overwrite):
        raise RunDirExists(f"{out} already holds a run; pass --resume to continue it or --overwrite to start again.")
    if resume and not is_run(out):
        raise FileNotFoundError(f"--resume: {out} holds no infomax run to continue; start one without --resume.")
    return out


def prepare(out: Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Create `out` with its marker, or open it for resuming; refuse to clobber anything by accident."""
    out = check_target(out, resume=resume, overwrite=overwrite)
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).exists():
        write_atomic(out / MARKER, "an infomax run directory; --overwrite may delete it\n")
    return out


def refuse_changes(saved: dict, asked: dict, allowed: set[str], source: str) -> None:
    """--resume: refuse any setting of `asked` that differs from the run's recorded `saved`, except `allowed`."""
    changed = sorted(k for k in saved.keys() | asked.keys() if saved.get(k) != asked.get(k) and k not in allowed)
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {asked.get(k)!r}" for k in changed)
        raise ValueError(f"--resume: these settings differ from the run's {source}: {detail}. Only "
                         f"{', '.join(sorted(allowed))} may change; start a new run (another --out) for the rest.")


def environment() -> dict:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
        "torch": torch.__version__, "platform": platform.platform(), "argv": sys.argv,
        "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "infomax": __import__("infomax").__version__,
    }


def record_environment(out: Path, **extra) -> None:
    """environment.json: this segment's environment, with every earlier segment of the run kept (a resume adds one)."""
    path = Path(out) / "environment.json"
    try:
        segments = json.loads(path.read_text()).get("segments", []) if path.exists() else []
    except (json.JSONDecodeError, AttributeError):
        segments = []
    now = {**environment(), **extra}
    write_json(path, {**now, "segments": [*segments, now]})


def log_metrics(out: Path, record: dict) -> None:
    """Append one JSON line; a reader tolerates a truncated last line left by a kill."""
    with open(out / METRICS_LOG, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(out: Path) -> list[dict]:
    path = Path(out) / METRICS_LOG
    records = []
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_log(out: Path, step: int) -> None:
    """Drop log lines past `step` (written after the checkpoint a resumed run restarts from)."""
    if not (out / METRICS_LOG).exists():
        return
    kept = [r for r in read_metrics(out) if r.get("step", 0) <= step]
    write_atomic(out / METRICS_LOG, "".join(json.dumps(r) + "\n" for r in kept))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
