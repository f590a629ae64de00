"""Atomic writes: every file goes to a temp name beside its target, is flushed to disk and
renamed, so a crash, Ctrl-C or kill leaves the previous version or the new one, never half.

Files get the permissions the umask allows (mkstemp alone makes them owner-only, which breaks a
cache or run folder shared with colleagues).
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block succeeds it replaces `path`, else it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str) -> None:
    with replacing(Path(path)) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(path: Path, record: dict, indent: int | None = 1) -> None:
    write_atomic(path, json.dumps(record, indent=indent, default=str) + "\n")


def save_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """A safetensors file (tensors moved to the CPU, made contiguous), written atomically. Serialised in
    memory and written by Python, so a full disk raises OSError (ENOSPC) as every other write does, not
    the library's own error type."""
    from safetensors.torch import save

    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_atomic(Path(path), save(cpu, metadata={k: str(v) for k, v in (metadata or {}).items()}))
