"""Where datasets live and how they arrive: the data root, the cache root, verified downloads.

Data root: `--data-root`, then `$INFOMAX_DATA`, then `<user cache>/data`. Decoded arrays go
under the cache root (`$INFOMAX_CACHE`, else `$XDG_CACHE_HOME/infomax`, else
`~/.cache/infomax`), so read-only data roots such as /usr/share/datasets work.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from ..runs.atomic import replacing


class DatasetNotFound(FileNotFoundError):
    """A dataset's files are absent; the message lists what was expected and where."""


def cache_root() -> Path:
    if os.environ.get("INFOMAX_CACHE"):
        return Path(os.environ["INFOMAX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "infomax"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get("INFOMAX_DATA"):
        return Path(os.environ["INFOMAX_DATA"]).expanduser()
    return cache_root() / "data"


def file_digest(path: Path, algorithm: str = "md5", decompress: bool = False) -> str:
    """Hex digest of a file, or of its gunzipped bytes (recompressed copies keep their content)."""
    digest = hashlib.new(algorithm)
    opener = gzip.open if decompress and path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, md5: str | None = None) -> Path:
    """Fetch `url` to `dest` atomically: a temp file in the same folder, verified, then renamed."""
    try:
        with replacing(dest, suffix=".part") as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0)
                _copy_with_progress(response, out, total, dest.name)
            if md5 is not None and (got := file_digest(tmp)) != md5:
                raise OSError(f"{url}: checksum mismatch (md5 {got}, expected {md5}); the download is corrupt, try again.")
        return dest
    except OSError as error:
        raise DatasetNotFound(f"could not download {url} to {dest}: {error}. Without network, copy the file there by hand.") from None


def _copy_with_progress(src, dst, total: int, label: str) -> None:
    done, step = 0, max(total // 20, 1 << 20)
    next_report = step
    while block := src.read(1 << 20):
        dst.write(block)
        done += len(block)
        if done >= next_report:
            share = f"{100 * done / total:.0f}%" if total else f"{done >> 20} MiB"
            print(f"[download] {label} {share}", flush=True)
            next_report += step


def extract_tar(archive: Path, into: Path) -> None:
    """Unpack into a temp folder beside `into`, then rename, so a kill leaves no half tree."""
    import tarfile

    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}.", dir=into.parent))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, filter="data")
        (tmp_content,) = list(tmp.iterdir()) or [tmp]
        os.replace(tmp_content, into)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
