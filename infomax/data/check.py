"""`infomax data check NAME`: find a dataset, decode every split, verify known checksums, and
print one JSON summary. Exit status 0 when usable, 1 with the fix in `error` when not."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .dataset import get_source, load_dataset, locate
from .formats import DataFormatError
from .imagefolder import MissingSplit
from .root import DatasetNotFound, file_digest


def checksum_status(location: Path, known: dict[str, tuple[str, str, bool]]) -> dict[str, str]:
    """'ok' / 'MISMATCH (...)' for each file we know a checksum of; others are not listed."""
    files = [location] if location.is_file() else [p for p in sorted(location.iterdir()) if p.is_file()]
    status = {}
    for path in files:
        if path.name in known:
            algorithm, expected, decompressed = known[path.name]
            got = file_digest(path, algorithm, decompress=decompressed)
            status[path.name] = "ok" if got == expected else f"MISMATCH ({algorithm} {got}, expected {expected}): re-download it"
    return status


def summarise(name: str, data_root: str | None = None, download: bool = False, image_size: int | None = None,
              workers: int | None = None) -> dict:
    if name == "shards":
        return summarise_shards(data_root)
    source = get_source(name)
    location = locate(name, data_root, download=download)
    summary = {"dataset": name, "source": str(location), "splits": {}}
    for split in source.splits:
        started = time.perf_counter()
        try:
            data = load_dataset(name, split, data_root, image_size=image_size, workers=workers)
        except MissingSplit:
            continue  # an image folder need not have every split
        summary["splits"][split] = {
            "images": len(data), "image_shape": list(data.image_shape), "classes": data.num_classes,
            "per_class": data.class_counts(), "unlabelled": int((data.labels < 0).sum()),
            "load_seconds": round(time.perf_counter() - started, 3),
        }
    summary["checksums"] = checksum_status(location, source.checksums) if location.exists() else {}
    bad = [f"{file}: {state}" for file, state in summary["checksums"].items() if state != "ok"]
    summary["ok"] = not bad and bool(summary["splits"])
    if bad:
        summary["error"] = "; ".join(bad)
    return summary


def summarise_shards(location: str | None) -> dict:
    """Each split's shards read whole: counts, classes, checksums against manifest.json, undecodable images."""
    from .shards import check, is_pattern

    if not location:
        raise ValueError("data check shards needs --data-root: the shards' folder or a pattern such as DIR/train-*.tar.")
    summary = {"dataset": "shards", "source": str(location), "splits": {}}
    for split in ("train",) if is_pattern(str(location)) else ("train", "val", "test", "unlabelled"):
        if is_pattern(str(location)) or any(Path(location).glob(f"{split}-*.tar")):
            summary["splits"][split] = check(location, split)
    problems = [f"{split}: {len(s['bad'])} undecodable ({s['bad'][0]})" for split, s in summary["splits"].items() if s["bad"]]
    problems += [f"{split}: checksum mismatch in {s['checksum_mismatch']}; repack them" for split, s in summary["splits"].items()
                 if s["checksum_mismatch"]]
    if not summary["splits"]:
        problems.append(f"{location}: no SPLIT-*.tar shards; pack a folder with `infomax data pack SRC OUT`")
    summary["ok"] = not problems
    if problems:
        summary["error"] = "; ".join(problems)
    return summary


def run(name: str, data_root: str | None, download: bool = False, image_size: int | None = None, workers: int | None = None) -> int:
    try:
        summary = summarise(name, data_root, download, image_size, workers)
    except (DatasetNotFound, DataFormatError, ValueError) as error:
        summary = {"dataset": name, "ok": False, "error": str(error)}
    print(json.dumps(summary, indent=2))
    if not summary["ok"]:
        print(f"infomax data check: {summary.get('error', 'no split could be read')}", file=sys.stderr)
    return 0 if summary["ok"] else 1
