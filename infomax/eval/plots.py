"""PNG figures of a representation's geometry (HyDeS Sec. VI-B, E2MC Figs. 2 and 4).

Each function takes arrays (numpy or torch) and an output path, writes one PNG and
returns the path. Figures are drawn on `matplotlib.figure.Figure` objects rendered by
the Agg backend, never through pyplot, so nothing touches the caller's backend or global
figure state and the functions are safe in notebooks, threads and headless servers.
`plot_training_curves` reads a run directory's `metrics.jsonl` (SMI Figs. 3-6).
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.special import ndtr

DPI = 110
ALL_COLOUR, POSITIVE_COLOUR = "#1f77b4", "#ff7f0e"  # matplotlib's C0 / C1, as in E2MC Fig. 4


def to_numpy(a, name: str = "array") -> np.ndarray:
    """A float64 numpy copy of a numpy array or (any-device) torch tensor."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        raise ValueError(f"`{name}` is empty; there is nothing to plot.")
    return a


def save(fig: Figure, path) -> Path:
    """Write `fig` as PNG to `path` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    kept = a[np.isfinite(a)]
    if kept.size == 0:
        raise ValueError(f"`{name}` has no finite values to plot.")
    return kept


def plot_spectrum(variances, path, *, title: str = "PCA eigenspectrum") -> Path:
    """Left: variance along each principal axis (log scale). Right: cumulative explained
    variance with the 90 % and 99 % levels and the components needed to reach them.
    `variances` is `geometry.pca_spectrum(z)` (any order; sorted here)."""
    var = np.sort(_finite(to_numpy(variances, "variances"), "variances"))[::-1]
    index = np.arange(1, var.size + 1)
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_var, ax_cum = fig.subplots(1, 2)
    positive = var > 0
    ax_var.plot(index[positive], var[positive], color=ALL_COLOUR, lw=1.5)
    ax_var.set_yscale("log")
    ax_var.set(xlabel="principal component (sorted by variance)", ylabel="variance (squared embedding units)",
               title="Eigenvalues")
    total = var.sum()
    cumulative = np.cumsum(var) / total if total > 0 else np.zeros_like(var)
    ax_cum.plot(index, cumulative, color=ALL_COLOUR, lw=1.5, label="cumulative")
    for level, style in ((0.9, "--"), (0.99, ":")):
        needed = int(np.searchsorted(cumulative, level - 1e-12) + 1) if total > 0 else 0
        ax_cum.axhline(level, color="grey", ls=style, lw=1, label=f"{level:.0%}: {needed} components")
    ax_cum.set(xlabel="number of principal components", ylabel="explained variance (fraction of total)",
               title="Cumulative explained variance", ylim=(0, 1.02))
    ax_cum.legend(loc="lower right")
    for ax in (ax_var, ax_cum):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} ({var.size} components)")
    return save(fig, path)


def plot_feature_std(stds, path, *, title: str = "Per-dimension standard deviation") -> Path:
    """Histogram of per-dimension std (`geometry.per_dimension_std`, L2-normalised rows),
    with 1/sqrt(D), the value for rows spread evenly over the sphere, and 0 = collapse."""
    std = _finite(to_numpy(stds, "stds").ravel(), "stds")
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    ax.hist(std, bins=min(60, max(10, std.size // 4)), color=ALL_COLOUR, alpha=0.85)
    ax.axvline(1 / np.sqrt(std.size), color="black", ls="--", lw=1, label=f"1/sqrt(D) = {1 / np.sqrt(std.size):.3g}")
    ax.axvline(std.mean(), color=POSITIVE_COLOUR, lw=1.5, label=f"mean = {std.mean():.3g}")
    ax.set(xlabel="std of a dimension over samples (unit-sphere coordinates)", ylabel="number of dimensions",
           title=f"{title} (D = {std.size})")
    ax.legend()
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_nn_distances(nearest, kth, path, *, k: int = 100, overlap: float | None = None,
                      title: str = "Nearest vs k-th nearest neighbour distance") -> Path:
    """E2MC Fig. 4: histograms of each query's distance to its 1st (blue) and k-th (orange)
    neighbour (`geometry.nn_distance_overlap`). Overlap means the k-th neighbour of one
    point is often closer than the 1st neighbour of another: poor separation."""
    first, far = _finite(to_numpy(nearest, "nearest"), "nearest"), _finite(to_numpy(kth, "kth"), "kth")
    lo, hi = min(first.min(), far.min()), max(first.max(), far.max())
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 51)
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    for values, colour, label in ((first, ALL_COLOUR, "nearest neighbour"), (far, POSITIVE_COLOUR, f"{k}th nearest neighbour")):
        ax.hist(values, bins=bins, weights=np.full(values.size, 1 / values.size), color=colour, alpha=0.6, label=label)
    suffix = "" if overlap is None else f" (overlap {overlap:.2f})"
    ax.set(xlabel="Euclidean distance (L2-normalised embeddings)", ylabel="fraction of query points",
           title=title + suffix)
    ax.legend()
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_angles(all_deg, positive_deg, path, *, title: str = "Pairwise angles") -> Path:
    """Histograms of angles between all pairs and between positive pairs (two views of one
    input; pass None without a second view), in degrees (`geometry.pair_angles`)."""
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    bins = np.linspace(0, 180, 91)
    series = [(all_deg, ALL_COLOUR, "all pairs")] + ([] if positive_deg is None else [(positive_deg, POSITIVE_COLOUR, "positive pairs")])
    for values, colour, label in series:
        a = _finite(to_numpy(values, label), label)
        ax.hist(a, bins=bins, weights=np.full(a.size, 1 / a.size), color=colour, alpha=0.6,
                label=f"{label}: {a.mean():.1f}° ± {a.std():.1f}°")
    ax.axvline(90, color="grey", ls="--", lw=1)
    ax.set(xlabel="angle between embeddings (degrees)", ylabel="fraction of pairs", title=title, xlim=(0, 180))
    ax.legend()
    ax.grid(alpha=0.3)
    return save(fig, path)


def _sample(n: int, max_points: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.arange(n) if n <= max_points else np.sort(rng.choice(n, size=max_points, replace=False))


def _labels_np(labels, n: int) -> np.ndarray:
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"`labels` has {y.shape[0]} entries but `z` has {n} rows; pass one label per row.")
    return y


def _colour_args(colours, labels_given: bool) -> dict:
    if labels_given:
        classes, index = np.unique(colours, return_inverse=True)
        return {"c": index, "cmap": "tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "turbo"}
    return {"c": colours, "cmap": "viridis"}


def plot_marginals(z, path, *, labels=None, grid: int = 3, seed: int = 0, max_points: int = 5000,
                   title: str = "2-D marginals in the compact space", space: str | None = None) -> Path:
    """E2MC Fig. 2: features standardised and mapped through the standard normal CDF into
    [0, 1] (the hypersphere map of E2MC Sec. 3.2), or with `space` ("hypercube": sigmoid,
    "hypersphere": normal CDF) mapped as they are, as the E2MC add-on maps them; then a grid x
    grid array of scatter plots of random dimension pairs (the same pairs for the same seed and
    width). Maximum-entropy embeddings fill each square evenly.
    Points are coloured by class when `labels` is given, else by their first principal
    component score, so one can see where points of the embedding land in each square."""
    x = to_numpy(z, "z")
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"`z` must have shape (N, D) with D >= 2 to draw pairs of dimensions, got {x.shape}.")
    rng = np.random.default_rng(seed)
    keep = _sample(x.shape[0], max_points, seed)
    std = x.std(axis=0)
    if space is None:
        u = ndtr((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0))[keep]
    else:
        from ..objectives.e2mc import to_compact

        u = to_compact(torch.from_numpy(x[keep]).double(), space).numpy()
    if labels is not None:
        colour = _colour_args(_labels_np(labels, x.shape[0])[keep], True)
    else:
        centred = x[keep] - x[keep].mean(axis=0)
        colour = _colour_args(centred @ np.linalg.svd(centred, full_matrices=False)[2][0], False)
    d = x.shape[1]
    if d * (d - 1) // 2 <= grid * grid:  # few dimensions: every pair once
        pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
        grid = math.ceil(math.sqrt(len(pairs)))
    else:
        pairs = [tuple(rng.choice(d, size=2, replace=False)) for _ in range(grid * grid)]
    fig = Figure(figsize=(3 * grid, 3 * grid), layout="constrained")
    axes = np.atleast_1d(fig.subplots(grid, grid)).ravel()
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    for ax, (i, j) in zip(axes, pairs):
        ax.scatter(u[:, i], u[:, j], s=3, alpha=0.6, linewidths=0, **colour)
        symbol = "σ" if space == "hypercube" else "Φ"
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel=f"{symbol}(dim {i}) ∈ [0, 1]", ylabel=f"{symbol}(dim {j}) ∈ [0, 1]")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}: {len(pairs)} pairs of {d} dims, {len(keep)} points")
    return save(fig, path)


def plot_tsne(z, labels, path, *, max_points: int = 2000, seed: int = 0, max_iter: int = 1000,
              title: str = "t-SNE of the embeddings", class_names: list[str] | None = None) -> Path:
    """2-D t-SNE (van der Maaten & Hinton, 2008; sklearn) of at most `max_points` rows drawn
    with `seed`, after PCA to 50 dimensions; points coloured by class (`labels` may be None),
    the legend naming classes by `class_names[label]` when given."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = to_numpy(z, "z")
    if x.ndim != 2 or x.shape[0] < 5:
        raise ValueError(f"`z` must have shape (N, D) with N >= 5 for t-SNE, got {x.shape}.")
    n, keep = x.shape[0], _sample(x.shape[0], max_points, seed)
    y = None if labels is None else _labels_np(labels, n)[keep]
    x = x[keep]
    if min(x.shape) > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(keep) - 1) / 3)
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=max_iter,
              random_state=seed).fit_transform(x)
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    if y is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.7, color=ALL_COLOUR, linewidths=0)
    else:
        classes = np.unique(y)
        points = ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.7, linewidths=0, **_colour_args(y, True))
        if len(classes) <= 20:
            handles = points.legend_elements(num=None)[0]
            names = [class_names[int(c)] if class_names else str(c) for c in classes]
            ax.legend(handles, names, title="class", fontsize=7, loc="best", markerscale=0.8)
        else:
            fig.colorbar(points, ax=ax, label="class index")
    ax.set(xlabel="t-SNE 1 (arbitrary units)", ylabel="t-SNE 2 (arbitrary units)",
           title=f"{title} ({len(keep)} points, perplexity {perplexity:.0f})")
    ax.set_xticks([])
    ax.set_yticks([])
    return save(fig, path)


def plot_geometry(z, out_dir, *, labels=None, z_pair=None, seed: int = 0, tsne: bool = True,
                  class_names: list[str] | None = None) -> list[Path]:
    """Every embedding figure above for one set of embeddings, into `out_dir` (a run's
    `plots/` folder, where `infomax.eval.report` finds them). Returns the written paths."""
    from . import geometry
    from ._embed import as_embeddings

    out_dir = Path(out_dir)
    x = as_embeddings("z", z)
    written = [plot_spectrum(geometry.pca_spectrum(x), out_dir / "pca_spectrum.png"),
               plot_feature_std(geometry.per_dimension_std(x), out_dir / "feature_std.png")]
    k = min(100, x.shape[0] - 1)
    nn = geometry.nn_distance_overlap(x, k, seed=seed)
    written.append(plot_nn_distances(nn.nearest, nn.kth, out_dir / "nn_distances.png", k=k, overlap=nn.overlap))
    all_deg, pos_deg = geometry.pair_angles(x, z_pair, seed=seed)
    written.append(plot_angles(all_deg, pos_deg, out_dir / "pairwise_angles.png"))
    if x.shape[1] >= 2:
        written.append(plot_marginals(x, out_dir / "marginals_2d.png", labels=labels, seed=seed))
    if tsne and x.shape[0] >= 5:
        written.append(plot_tsne(x, labels, out_dir / "tsne.png", seed=seed, class_names=class_names))
    return written


_GROUP_ORDER = ("loss", "accuracy", "grad_norm", "feature_std", "redundancy_to_alignment", "lr")
_Y_LABELS = {"loss": "loss (objective units)", "accuracy": "accuracy", "grad_norm": "gradient L2 norm",
             "feature_std": "feature std (unit-sphere coordinates)", "lr": "learning rate",
             "redundancy_to_alignment": "redundancy / alignment (ratio)"}
_NOT_METRICS = {"step", "epoch"}


def read_metrics_jsonl(path) -> list[dict]:
    """The records of a `metrics.jsonl` file, one JSON object per line. Blank lines are
    skipped; a line that does not parse is skipped too (a killed run leaves a truncated
    last line), with a warning when it is not the last one."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif number < len(lines):
            warnings.warn(f"{path}: line {number} is not a JSON object; skipped.", stacklevel=2)
    return records


def _group(key: str) -> str:
    if key == "loss" or key.startswith("loss/"):
        return "loss"
    if any(tag in key.lower() for tag in ("top1", "top5", "acc")):
        return "accuracy"
    return key.split("/")[0]


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def metric_series(records: list[dict]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{group: {key: (steps, values)}} of the finite numeric metrics, groups in display order.
    A record without an integer `step` takes its position in the file as its step."""
    groups: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for position, record in enumerate(records):
        step = _number(record.get("step"))
        step = float(position) if step is None else step
        for key, value in record.items():
            if key in _NOT_METRICS or (number := _number(value)) is None:
                continue
            steps, values = groups.setdefault(_group(key), {}).setdefault(key, ([], []))
            steps.append(step)
            values.append(number)
    rank = {name: i for i, name in enumerate(_GROUP_ORDER)}
    return dict(sorted(groups.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


def plot_training_curves(run_dir, path=None, *, title: str | None = None) -> Path:
    """One panel per metric group of `run_dir/metrics.jsonl` against the optimiser step
    (SMI Figs. 3, 4, 6): loss and its `loss/<term>` parts together, accuracies (`*top1*`,
    `*acc*`) together, then grad_norm, feature_std, redundancy_to_alignment, lr and any other
    key by its prefix before "/". Absent groups are skipped. Default output:
    `run_dir/plots/training_curves.png`."""
    run_dir = Path(run_dir)
    source = run_dir / "metrics.jsonl"
    if not source.is_file():
        raise ValueError(f"{source} does not exist; training curves need the run's metrics.jsonl.")
    groups = metric_series(read_metrics_jsonl(source))
    if not groups:
        raise ValueError(f"{source} holds no numeric metrics to plot.")
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    fig = Figure(figsize=(4.6 * columns, 3.4 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, (group, series) in zip(axes, groups.items()):
        for key, (steps, values) in sorted(series.items()):
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, lw=1.4, label=key)
        values = np.concatenate([v for _, v in series.values()])
        if values.min() > 0 and values.max() / values.min() > 1e3:
            ax.set_yscale("log")
        ax.set(xlabel="step (optimiser updates)", ylabel=_Y_LABELS.get(group, group), title=group)
        ax.grid(alpha=0.3)
        if len(series) > 1 or group not in series:
            ax.legend(fontsize=7)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(title or f"Training curves: {run_dir.name}")
    return save(fig, run_dir / "plots" / "training_curves.png" if path is None else path)
