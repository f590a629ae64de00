"""One self-contained HTML report for one or more run directories.

`write_report` reads, for each run directory, what the engine writes there:
  config.json | config.yaml   the resolved configuration (method, data, seeds, ...)
  environment.json            versions, device, seed
  metrics.json                headline metrics, flat keys (nested objects are flattened
                              with "/"); a list under a key ending in `warnings` is shown
                              prominently at the top
  metrics.jsonl               per-step records; drawn as training curves when plots/ has none
  plots/*.png                 figures, captioned from their file names
Everything lands in one HTML file: PNGs as base64 data URIs, inline CSS, no scripts and no
external resources, so it opens offline and can be mailed as is. All text is escaped.
A missing file becomes a note in the report; a missing run directory is a ValueError.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..runs.atomic import write_atomic

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MISSING = object()  # a key a run does not have, shown as a dash
HIGHER_IS_BETTER = re.compile(r"top\d|acc|auc|f1|map$|miou|recall|precision")
LOWER_IS_BETTER = re.compile(r"loss|error|err$")
_ACRONYMS = {"pca": "PCA", "nn": "NN", "knn": "kNN", "tsne": "t-SNE", "2d": "2-D", "std": "std"}
_SUMMARY = (  # (row label, source, candidate keys: a full flattened key or its last segment)
    ("method", "config", ("variant", "method", "method/name", "objective")),
    ("data", "config", ("data", "dataset", "data/name", "data/dataset", "data/source")),
    ("model", "config", ("model", "backbone", "encoder", "model/name", "model/backbone", "arch")),
    ("seed", "config", ("seed", "seeds")),
    ("epochs", "config", ("epochs", "max_epochs")),
    ("batch size", "config", ("batch_size",)),
    ("learning rate", "config", ("lr", "learning_rate", "base_lr")),
    ("seed (environment)", "environment", ("seed",)),
    ("infomax", "environment", ("infomax", "infomax_version")),
    ("torch", "environment", ("torch", "torch_version")),
    ("python", "environment", ("python", "python_version")),
    ("device", "environment", ("device", "gpu", "device_name")),
    ("git commit", "environment", ("git", "git_commit", "commit")),
)
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2328;
 background:#fafafa;max-width:1200px;margin:0 auto;padding:24px 28px 64px;line-height:1.45}
h1{font-size:1.7em;margin:0 0 4px} h2{font-size:1.3em;margin:36px 0 10px;border-bottom:1px solid #e1e4e8;
 padding-bottom:4px} h3{font-size:1.05em;margin:18px 0 8px}
.meta,.note{color:#57606a;font-size:.92em} code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
table{border-collapse:collapse;background:#fff;margin:8px 0 16px;font-size:.93em}
th,td{border:1px solid #d8dee4;padding:5px 10px;text-align:left;vertical-align:top}
thead th{background:#f3f4f6} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.best{font-weight:700;background:#eef8ee} td.missing{color:#8c959f;text-align:center}
.warn{background:#fff4e5;border:1px solid #f0b35b;border-left:6px solid #e67e22;border-radius:6px;
 padding:10px 16px;margin:16px 0} .warn h2{border:none;margin:0 0 6px;color:#9a4a00}
.notes{background:#f3f4f6;border-radius:6px;padding:6px 14px;margin:8px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:16px;align-items:start}
figure.wide{grid-column:span 2} @media (max-width:960px){figure.wide{grid-column:auto}}
caption{caption-side:top;text-align:left;padding:2px 0 6px}
figure{margin:0;background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:8px}
figure img{width:100%;height:auto;display:block} figcaption{font-size:.9em;color:#444;margin-top:6px;text-align:center}
details{margin:6px 0} summary{cursor:pointer;color:#0969da}
"""


@dataclass
class _Run:
    name: str
    path: Path
    config: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    images: list = field(default_factory=list)  # (caption, data URI, wide)


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def flatten(tree, prefix: str = "") -> dict:
    """Nested mappings as one flat dict with keys joined by "/"; other values kept as they are."""
    if not isinstance(tree, dict):
        return {prefix or "value": tree}
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        flat.update(flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return flat


def _read_mapping(path: Path, notes: list) -> dict:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        notes.append(f"{path.name} could not be read ({type(error).__name__}: {error}); it is left out.")
        return {}
    if not isinstance(data, dict):
        notes.append(f"{path.name} does not hold a mapping of keys to values; it is left out.")
        return {}
    return flatten(data)


def _caption(stem: str) -> str:
    words = [_ACRONYMS.get(word.lower(), word) for word in re.split(r"[_\-\s]+", stem) if word]
    text = " ".join(words) or stem
    return text[0].upper() + text[1:]


def _png(path: Path, caption: str, notes: list) -> tuple[str, str, bool] | None:
    """(caption, data URI, wide) of a PNG file; wide figures (aspect > 2) span two grid cells."""
    try:
        data = path.read_bytes()
    except OSError as error:
        notes.append(f"{path.name} could not be read ({error}).")
        return None
    if not data.startswith(PNG_SIGNATURE) or len(data) < 24:
        notes.append(f"{path.name} is not a PNG file; it is left out.")
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR
    return caption, "data:image/png;base64," + base64.b64encode(data).decode("ascii"), width > 2 * max(height, 1)


def _training_curves(run: _Run) -> None:
    from .plots import plot_training_curves

    with tempfile.TemporaryDirectory() as tmp:
        try:
            png = plot_training_curves(run.path, Path(tmp) / "training_curves.png")
        except (ValueError, OSError) as error:
            run.notes.append(f"Training curves not drawn: {error}")
            return
        if (image := _png(png, "Training curves (drawn from metrics.jsonl)", run.notes)) is not None:
            run.images.insert(0, image)


def _load_run(path: Path, name: str) -> _Run:
    run = _Run(name=name, path=path)
    configs = [path / f for f in ("config.json", "config.yaml", "config.yml") if (path / f).is_file()]
    if configs:
        run.config = _read_mapping(configs[0], run.notes)
    else:
        run.notes.append("No config.json or config.yaml: what was run is unknown.")
    if (path / "environment.json").is_file():
        run.environment = _read_mapping(path / "environment.json", run.notes)
    else:
        run.notes.append("No environment.json: versions and device are unknown.")
    if (path / "metrics.json").is_file():
        for key, value in _read_mapping(path / "metrics.json", run.notes).items():
            if key == "variant":  # what the run is, in words (finetune): the summary's method row
                run.config = {"variant": value, **run.config}
            elif key.split("/")[-1] == "warnings":
                items = value if isinstance(value, list) else [value]
                run.warnings += [f"{key}: {item}" if "/" in key else str(item) for item in items if item]
            else:
                run.metrics[key] = value
    else:
        run.notes.append("No metrics.json: no headline metrics.")
    pngs = sorted((path / "plots").glob("*.png")) if (path / "plots").is_dir() else []
    for png in sorted(pngs, key=lambda p: (p.stem != "training_curves", p.name)):
        if (image := _png(png, _caption(png.stem), run.notes)) is not None:
            run.images.append(image)
    if (path / "metrics.jsonl").is_file() and not (path / "plots" / "training_curves.png").is_file():
        _training_curves(run)
    if not pngs:
        run.notes.append("No PNG files in plots/." if (path / "plots").is_dir() else "No plots/ folder: no figures.")
    return run


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _format(value) -> str:
    number = _number(value)
    if number is None:
        return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)
    if math.isnan(number) or math.isinf(number):
        return str(number)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.4g}"


def _best(key: str, values: list) -> set[int]:
    """Indices of the best runs in a row, when the key says which direction is better."""
    name = key.lower().split("/")[-1]
    if name.endswith("std") or "_std_" in name:  # a spread over seeds: neither larger nor smaller is "better"
        return set()
    direction = 1 if HIGHER_IS_BETTER.search(name) else -1 if LOWER_IS_BETTER.search(name) else 0
    numbers = [(i, n) for i, v in enumerate(values) if (n := _number(v)) is not None and math.isfinite(n)]
    if not direction or len(numbers) < 2 or len({n for _, n in numbers}) < 2:
        return set()
    best = max(direction * n for _, n in numbers)
    return {i for i, n in numbers if direction * n == best}


def _cell(value, best: bool, missing: bool) -> str:
    if missing:
        return '<td class="missing">–</td>'
    classes = " ".join(c for c, on in (("num", _number(value) is not None), ("best", best)) if on)
    return f'<td class="{classes}">{_e(_format(value))}</td>' if classes else f"<td>{_e(_format(value))}</td>"


def _table(runs: list[_Run], rows: list[tuple[str, list]], caption: str, *, mark_best: bool) -> str:
    head = "".join(f"<th>{_e(run.name)}</th>" for run in runs)
    body = []
    for label, values in rows:
        best = _best(label, values) if mark_best else set()
        cells = "".join(_cell(v, i in best, v is _MISSING) for i, v in enumerate(values))
        body.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    return (f"<table><caption class=\"meta\">{_e(caption)}</caption><thead><tr><th>key</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _lookup(flat: dict, candidates: tuple[str, ...]):
    for candidate in candidates:
        if candidate in flat:
            return flat[candidate]
    for candidate in candidates:
        for key, value in flat.items():
            if key.split("/")[-1] == candidate:
                return value
    return _MISSING


def _summary(runs: list[_Run]) -> str:
    rows = []
    for label, source, candidates in _SUMMARY:
        values = [_lookup(getattr(run, source), candidates) for run in runs]
        if any(v is not _MISSING for v in values):
            rows.append((label, values))
    if not rows:
        return '<p class="note">No run has a config.json, config.yaml or environment.json to say what was run.</p>'
    return _table(runs, rows, "From config.* and environment.json; the full files are under each run below.", mark_best=False)


def _metrics(runs: list[_Run]) -> str:
    keys = list(dict.fromkeys(key for run in runs for key in run.metrics))
    if not keys:
        return '<p class="note">No run has a metrics.json.</p>'
    rows = [(key, [run.metrics.get(key, _MISSING) for run in runs]) for key in keys]
    return _table(runs, rows, "Best value per row in bold where the key says which way is better "
                  "(accuracy, top-k, F1: higher; loss, error: lower).", mark_best=True)


def _flat_table(flat: dict) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_format(v))}</td></tr>" for k, v in flat.items())
    return f"<table><tbody>{rows}</tbody></table>"


def _run_section(run: _Run) -> str:
    parts = [f"<h2 id=\"run-{_e(run.name)}\">{_e(run.name)}</h2>", f'<p class="meta"><code>{_e(run.path)}</code></p>']
    if run.notes:
        parts.append('<div class="notes">' + "".join(f'<p class="note">{_e(n)}</p>' for n in run.notes) + "</div>")
    if run.images:
        figures = "".join(f'<figure class="{"wide" if wide else "plain"}"><img src="{uri}" alt="{_e(caption)}">'
                          f"<figcaption>{_e(caption)}</figcaption></figure>" for caption, uri, wide in run.images)
        parts.append(f'<h3>Figures</h3><div class="grid">{figures}</div>')
    for label, flat in (("Configuration", run.config), ("Environment", run.environment)):
        if flat:
            parts.append(f"<details><summary>{label} ({len(flat)} keys)</summary>{_flat_table(flat)}</details>")
    return "<section>" + "".join(parts) + "</section>"


def _warnings(runs: list[_Run]) -> str:
    flagged = [run for run in runs if run.warnings]
    if not flagged:
        return ""
    items = "".join(f"<li><strong>{_e(run.name)}</strong>: {_e(w)}</li>" for run in flagged for w in run.warnings)
    return f'<div class="warn"><h2>⚠ Warnings</h2><ul>{items}</ul></div>'


def _names(paths: list[Path]) -> list[str]:
    names = [p.name or str(p) for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def write_report(run_dirs: list[Path], out_path: Path, title: str | None = None) -> Path:
    """Write one self-contained HTML report of `run_dirs` (side by side) to `out_path`
    and return the path. Columns of the tables are the run directory names."""
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ValueError("`run_dirs` is empty; pass at least one run directory.")
    for path in paths:
        if not path.is_dir():
            raise ValueError(f"run directory {str(path)!r} does not exist or is not a directory.")
    runs = [_load_run(path, name) for path, name in zip(paths, _names(paths))]
    from .. import __version__

    title = title or "infomax report: " + ", ".join(run.name for run in runs)
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = (f"<h1>{_e(title)}</h1><p class=\"meta\">{len(runs)} run(s) · written {_e(stamp)} by infomax "
            f"{_e(__version__)}</p>{_warnings(runs)}<h2>What was run</h2>{_summary(runs)}"
            f"<h2>Metrics</h2>{_metrics(runs)}" + "".join(_run_section(run) for run in runs))
    document = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(title)}</title>'
                f"<style>{CSS}</style></head><body>{body}</body></html>\n")
    out_path = Path(out_path)
    write_atomic(out_path, document)  # a reader never sees half a report
    return out_path
