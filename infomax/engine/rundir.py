"""A run directory: what was asked (config.json), where it ran (environment.json), what happened
(metrics.jsonl while training, metrics.json at the end) and the weights (safetensors).

An existing directory is refused unless the caller resumes or overwrites. Every file is written
to a temp name and renamed, so a kill leaves the previous version or the new one, never half.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

METRICS_LOG = "metrics.jsonl"


class RunDirExists(FileExistsError):
    pass


def prepare(out: Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Create `out`, or open it for resuming; refuse to clobber a run by accident."""
    out = Path(out)
    if resume and overwrite:
        raise ValueError("choose one of --resume and --overwrite.")
    if out.exists() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif not resume:
            raise RunDirExists(f"{out} already holds a run; pass --resume to continue it or --overwrite to start again.")
    elif resume:
        raise FileNotFoundError(f"--resume: {out} holds no run to continue.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_atomic(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, record: dict) -> None:
    write_atomic(path, json.dumps(record, indent=1, default=str) + "\n")


def environment() -> dict:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
        "torch": torch.__version__, "platform": platform.platform(), "argv": sys.argv,
        "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "infomax": __import__("infomax").__version__,
    }


def log_metrics(out: Path, record: dict) -> None:
    """Append one JSON line; a reader tolerates a truncated last line left by a kill."""
    with open(out / METRICS_LOG, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_log(out: Path, step: int) -> None:
    """Drop log lines past `step` (written after the checkpoint a resumed run restarts from)."""
    path = out / METRICS_LOG
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= step:
            kept.append(line)
    write_atomic(path, "".join(line + "\n" for line in kept))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
