"""A run directory: what was asked (config), where it ran (environment.json), what happened
(metrics.jsonl while training, metrics.json at the end) and the weights (safetensors).

Every run directory holds the marker `MARKER`. An existing non-empty directory is refused
unless the caller resumes or overwrites. `--overwrite` opens only a folder with the marker, never
the working directory, the home directory or a parent of either, and deletes only what infomax
writes there (`WRITTEN`, temp files, marked sub-runs): a file someone else put in it stays.
A process owns a run directory through an flock on `LOCK` while it runs; the kernel drops the
lock when the process ends however it ends, so a lock is never stale and a second owner is refused.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file

from .atomic import save_tensors, write_atomic, write_json

__all__ = ["LOCK", "MARKER", "METRICS_LOG", "RunDirBusy", "RunDirExists", "check_target", "claim", "clear", "discard", "environment", "is_run",
           "load_tensors", "log_metrics", "prepare", "previous_last", "read_metrics", "record_environment", "release", "take", "refuse_changes", "save_tensors", "truncate_log", "write_atomic",
           "write_json"]

METRICS_LOG = "metrics.jsonl"
MARKER = ".infomax-run"
LOCK = ".infomax-lock"
# What the verbs write at the top of a run directory; --overwrite deletes these (and marked sub-runs), nothing else.
WRITTEN = frozenset({MARKER, "config.yaml", "config.json", "environment.json", METRICS_LOG, "metrics.json", "state.safetensors",
                     "encoder.safetensors", "head.safetensors", "labelled.json", "report.html", "plots", "tensorboard",
                     "ablation.md", "ablation.png", "ablation.json", "loggers.json", "csv", "wandb",
                     "features.safetensors", "files.txt", "embed.json"})
_HELD: dict[Path, int] = {}  # run directory -> the descriptor of its lock, for as long as this process owns it


def _drop_inherited_locks() -> None:
    """In a forked child (a DataLoader or decode worker): close the lock descriptors it inherited. The lock
    belongs to the parent; a worker outliving a killed parent must not keep the run locked."""
    for fd in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


class RunDirExists(FileExistsError):
    pass


class RunDirBusy(RunDirExists):
    pass


def _protected(out: Path) -> bool:
    out = out.resolve()
    return any(out == p or out in p.parents for p in (Path.cwd().resolve(), Path.home().resolve())) or out == Path(out.anchor)


def is_run(out: Path) -> bool:
    """A run directory: it has the marker (a folder that merely holds a config and metrics is not one)."""
    return (Path(out) / MARKER).is_file()


def _unmarked(out: Path) -> str:
    looks = any((out / name).exists() for name in ("config.yaml", "config.json"))
    return (f" If it is a run of an older infomax (from before run markers), mark it (touch {out / MARKER}) and retry."
            if looks else "")


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
                           f"choose another --out or delete it yourself.{_unmarked(out)}")
    if holds and overwrite and _protected(out):
        raise RunDirExists(f"--overwrite refuses to delete {out}: it is or contains the working or home directory.")
    if holds and not (resume or overwrite):
        raise RunDirExists(f"{out} already holds a run; pass --resume to continue it or --overwrite to start again.")
    if resume and not is_run(out):
        raise FileNotFoundError(f"--resume: {out} holds no infomax run to continue; start one without --resume.{_unmarked(out)}")
    return out


def take(out: Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """`check_target`, then claim `out` when it already holds a run (resumed or overwritten): a second owner is
    refused before any work. A new run is claimed by `prepare`, which creates it."""
    out = check_target(out, resume=resume, overwrite=overwrite)
    if is_run(out):
        claim(out)
    return out


def prepare(out: Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Create `out` with its marker and claim it, or claim it for resuming or overwriting; refuse to clobber
    anything by accident. With `overwrite`, what an earlier run wrote is deleted and anything else kept."""
    out = check_target(out, resume=resume, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    claim(out)
    for temp in out.glob(".*.tmp"):  # left by a kill mid-write; only the owner writes here, and that is us now
        temp.unlink(missing_ok=True)
    if overwrite:
        kept = clear(out)
        if kept:
            print(f"[infomax] --overwrite kept what infomax did not write in {out}: {', '.join(kept)}", file=sys.stderr, flush=True)
    if not (out / MARKER).exists():
        write_atomic(out / MARKER, "an infomax run directory; --overwrite deletes what infomax wrote in it\n")
    return out


def clear(out: Path) -> list[str]:
    """Delete what infomax wrote in the run directory `out` (its lock stays); return the names it kept."""
    kept = []
    for entry in sorted(out.iterdir()):
        name = entry.name
        ours = name in WRITTEN or (name.startswith(".") and name.endswith(".tmp"))
        if name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink() and not ours and is_run(entry):  # a sub-run: ablate's rungs, baseline/
            inner = clear(entry)
            kept += [f"{name}/{k}" for k in inner]
            if not inner:
                (entry / LOCK).unlink(missing_ok=True)
                entry.rmdir()
            continue
        if ours:
            _remove(entry)
        else:
            kept.append(name)
    return kept


def discard(out: Path) -> None:
    """Remove a run directory this process made and that holds nothing worth keeping (a new run that
    failed before its first checkpoint), so the corrected command can reuse the name."""
    if clear(out):
        return
    (out / LOCK).unlink(missing_ok=True)
    if not any(out.iterdir()):
        out.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def claim(out: Path) -> None:
    """Own the run directory `out` for the rest of this process (or until `release`); refuse when another
    process owns it. Claiming a directory this process already owns does nothing."""
    out = Path(out).resolve()
    if out in _HELD:
        return
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        raise RunDirBusy(f"{out} is in use by {owner}; wait for it to finish (or stop it), then rerun, "
                         "or choose another --out.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}\n".encode(), 0)
    _HELD[out] = fd


def release(out: Path) -> None:
    """Give up this process's claim on `out` (the lock file stays, unlocked)."""
    fd = _HELD.pop(Path(out).resolve(), None)
    if fd is not None:
        os.close(fd)


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


def previous_last(out: Path) -> dict:
    """The `last/*` metrics the run's metrics.json recorded (a resume of a finished run trains no step to log)."""
    try:
        saved = json.loads((Path(out) / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in saved.items() if k.startswith("last/")} if isinstance(saved, dict) else {}


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
