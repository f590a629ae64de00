"""Geometry of a representation: rank, isotropy, redundancy, class separation, angles.

The measurements of HyDeS Table III (Sec. VI-B), SMI Sec. 3.5 and E2MC Fig. 4, each a
function of embeddings `z` (N, D), plus class labels or a second view where the metric
needs one. `geometry_table` runs them all and returns flat keys for `metrics.json`.

Everything is computed in float64 on the device of `z`. Metrics over pairs of points
(angles, d', uniformity, neighbour distances) use at most `max_samples` rows (or queries)
drawn with a seeded generator, so N = 10^5 stays cheap; the others use every row.
Cosine metrics L2-normalise rows first; an all-zero row stays zero (cosine 0 to all).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..objectives import wang_isola
from ._embed import as_embeddings, as_labels, as_pair, input_eps, sample_rows, take_rows, unit_rows

_NAN = float("nan")
RANKME_EPS = 1e-7  # Garrido et al. (2023), Eq. 1
COLLAPSE_RTOL = 1e-6  # spread of the rows below this fraction of their scale = collapse


def _rank_from(s: torch.Tensor, rtol: float) -> int:
    if s.numel() == 0 or float(s.max()) == 0.0:
        return 0
    return int((s > s.max() * rtol).sum())


def _erank_from(s: torch.Tensor) -> float:
    total = s.sum()
    if float(total) == 0.0:
        return 0.0
    p = s / total + RANKME_EPS
    return float(torch.exp(-(p * p.log()).sum()))


def effective_rank(z) -> float:
    """RankMe (Garrido et al., 2023, "RankMe", Eq. 1): exp(-sum_k p_k log p_k), with the
    singular values of z normalised to p_k = sigma_k / ||sigma||_1 + 1e-7.

    D orthonormal directions give D; identical rows give 1; the zero matrix gives 0.
    Rows are used as they are (not centred), as in the paper.
    """
    return _erank_from(torch.linalg.svdvals(as_embeddings("z", z, min_rows=1)))


def embedding_rank(z, rtol: float | None = None) -> int:
    """Numerical rank of z (HyDeS Table III "Embed. Rank"): the number of singular values
    above rtol * sigma_max. The default rtol = max(N, D) * eps (the LAPACK / numpy convention)
    with eps of float32 for float32/16 inputs and of float64 for float64 and integer inputs,
    so float32 embeddings are judged at float32 precision, not at float64 rounding noise.
    """
    x = as_embeddings("z", z, min_rows=1)
    tol = max(x.shape) * input_eps(z) if rtol is None else rtol
    return _rank_from(torch.linalg.svdvals(x), tol)


def class_centroids(z, labels) -> torch.Tensor:
    """(C, D) means of the L2-normalised rows of each class, in order of class index."""
    x = unit_rows(as_embeddings("z", z, min_rows=1))
    y = as_labels(labels, x.shape[0]).to(x.device)
    classes, y = torch.unique(y, return_inverse=True)
    sums = torch.zeros(len(classes), x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, y, x)
    return sums / torch.bincount(y, minlength=len(classes)).unsqueeze(1).to(x.dtype)


def centroid_rank(z, labels, rtol: float | None = None) -> int:
    """Numerical rank of the class-centroid matrix (HyDeS Table III "Centroid Rank"), at most
    min(C, D); centroids are means of L2-normalised rows; tolerance as in `embedding_rank`."""
    c = class_centroids(z, labels)
    tol = max(c.shape) * input_eps(z) if rtol is None else rtol
    return _rank_from(torch.linalg.svdvals(c), tol)


def anisotropy(z) -> float:
    """Mean cosine similarity over all N(N-1) ordered pairs of distinct rows (HyDeS Table
    III "Aniso."; Ethayarajh, 2019). Exact in O(ND): sum_{i != j} u_i.u_j = ||sum_i u_i||^2
    - sum_i ||u_i||^2. About 0 for an isotropic Gaussian, 1 for identical rows."""
    u = unit_rows(as_embeddings("z", z))
    n, total = u.shape[0], u.sum(dim=0)
    return float((total @ total - u.square().sum()) / (n * (n - 1)))


def centre_norm(z) -> float:
    """Norm of the mean of the L2-normalised rows, ||mean_i z_i/||z_i|| || (HyDeS Table III
    "CVN"). In [0, 1]: 1 when all rows point one way, about 1/sqrt(N) for an isotropic Gaussian."""
    return float(unit_rows(as_embeddings("z", z, min_rows=1)).mean(dim=0).norm())


def mean_abs_correlation(z, chunk: int = 1024) -> float:
    """Mean |Pearson correlation| between distinct features (HyDeS Table III "Corr.";
    SMI Sec. 3.5): mean_{j != k} |corr(z_:j, z_:k)|. Constant features (correlation
    undefined) are left out; NaN if fewer than two features vary. For N independent
    Gaussian samples the expected value is about sqrt(2 / (pi N)), not exactly 0."""
    x = as_embeddings("z", z)
    xc = x - x.mean(dim=0)
    norms = xc.norm(dim=0)
    varies = norms > 1e-9 * math.sqrt(x.shape[0]) * x.abs().amax(dim=0)
    if int(varies.sum()) < 2:
        return float("nan")
    xs = xc[:, varies] / norms[varies]
    d, total = xs.shape[1], 0.0
    for start in range(0, d, chunk):
        total += float((xs[:, start:start + chunk].T @ xs).abs().sum())
    return (total - d) / (d * (d - 1))  # the diagonal is exactly |1| per feature


def sensitivity_index(z, labels, *, max_samples: int | None = 4096, seed: int = 0) -> float:
    """d' between within-class and between-class cosine similarities (HyDeS Table III d'):
    (mu_w - mu_b) / sqrt((sigma_w^2 + sigma_b^2) / 2), over distinct pairs of rows with
    population variances. NaN if either set of pairs is empty (fewer than two classes, or
    no class with two rows) or both are constant and equal; +-inf if only the spread is 0."""
    x = as_embeddings("z", z)
    y = as_labels(labels, x.shape[0]).to(x.device)
    index = sample_rows(x.shape[0], max_samples, seed)
    u, y = unit_rows(take_rows(x, index)), take_rows(y, index)
    sim = u @ u.T
    same = y.unsqueeze(0) == y.unsqueeze(1)
    within = sim[same & ~torch.eye(len(y), dtype=torch.bool, device=x.device)]
    between = sim[~same]
    if within.numel() == 0 or between.numel() == 0:
        return float("nan")
    gap = float(within.mean() - between.mean())
    spread = math.sqrt(float(within.var(correction=0) + between.var(correction=0)) / 2)
    if spread == 0.0:
        return float("nan") if gap == 0.0 else math.copysign(math.inf, gap)
    return gap / spread


def pair_angles(z, z_pair=None, *, max_samples: int | None = 4096, seed: int = 0):
    """Angles in degrees: between all distinct pairs of (subsampled) rows, and between
    row i of z and row i of z_pair (positive pairs, every row) or None without z_pair."""
    x = as_embeddings("z", z)
    u = unit_rows(take_rows(x, sample_rows(x.shape[0], max_samples, seed)))
    upper = torch.ones(len(u), len(u), dtype=torch.bool, device=u.device).triu(diagonal=1)
    all_deg = torch.rad2deg(torch.arccos((u @ u.T)[upper].clamp(-1, 1)))
    if z_pair is None:
        return all_deg, None
    cos = (unit_rows(x) * unit_rows(as_pair(x, z_pair))).sum(dim=1)
    return all_deg, torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def pairwise_angles(z, z_pair=None, *, max_samples: int | None = 4096, seed: int = 0) -> dict[str, float]:
    """Mean and std of pairwise angles in degrees (HyDeS Table III: all pairs; positive
    pairs when z_pair holds a second view). Keys all_mean, all_std[, positive_mean, positive_std].
    Orthonormal rows give 90 +- 0; an isotropic Gaussian in high D gives about 90."""
    all_deg, pos_deg = pair_angles(z, z_pair, max_samples=max_samples, seed=seed)
    out = {"all_mean": float(all_deg.mean()), "all_std": float(all_deg.std(correction=0))}
    if pos_deg is not None:
        out.update(positive_mean=float(pos_deg.mean()), positive_std=float(pos_deg.std(correction=0)))
    return out


def per_dimension_std(z, normalize: bool = True) -> torch.Tensor:
    """(D,) standard deviation of each feature over the rows, of L2-normalised rows by
    default (SimSiam, Chen & He 2021, Sec. 4.1; SMI Fig. 4 "feature std"): 0 under
    collapse, about 1/sqrt(D) when the rows spread evenly over the sphere."""
    x = as_embeddings("z", z)
    return (unit_rows(x) if normalize else x).std(dim=0, correction=0)


def alignment(z, z_pair, alpha: float = 2.0) -> float:
    """Wang & Isola (2020) Eq. 4: mean ||u_i - v_i||^alpha over positive pairs of unit rows."""
    x = as_embeddings("z", z, min_rows=1)
    return float(wang_isola.alignment(x, as_pair(x, z_pair), alpha=alpha))


def uniformity(z, t: float = 2.0, *, max_samples: int | None = 4096, seed: int = 0) -> float:
    """Wang & Isola (2020) Eq. 5: log mean_{i != j} exp(-t ||u_i - u_j||^2) over unit rows.
    Uniform on S^2 with t = 2 gives -4 + log(sinh(4) / 4) = -2.0795; tends to -2t in high D."""
    x = as_embeddings("z", z)
    return float(wang_isola.uniformity(take_rows(x, sample_rows(x.shape[0], max_samples, seed)), t=t))


def pca_spectrum(z) -> torch.Tensor:
    """Variances along the principal axes, descending: sigma_k(z - mean)^2 / (N - 1)."""
    x = as_embeddings("z", z)
    return torch.linalg.svdvals(x - x.mean(dim=0)).square() / (x.shape[0] - 1)


def explained_variance(z) -> torch.Tensor:
    """Cumulative explained-variance ratio of the PCA spectrum, length min(N, D): entry k
    is the fraction of total variance in the first k + 1 components. NaN if z is constant."""
    return _cumulative(pca_spectrum(z))


def _cumulative(variances: torch.Tensor) -> torch.Tensor:
    total = variances.sum()
    if float(total) == 0.0:
        return torch.full_like(variances, float("nan"))
    return variances.cumsum(dim=0) / total


def components_for(cumulative: torch.Tensor, fraction: float) -> int:
    """Fewest principal components whose cumulative explained variance reaches `fraction`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1], got {fraction}.")
    if bool(torch.isnan(cumulative).any()):
        return 0
    reached = (cumulative >= fraction - 1e-12).nonzero()
    return int(reached[0]) + 1 if len(reached) else len(cumulative)


def histogram_overlap(a, b, bins: int = 50) -> float:
    """Overlap coefficient sum_b min(p_b, q_b) of two histograms on shared bins over the
    joint range: 1 for identical samples, 0 for samples in disjoint bins."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    if hi <= lo:
        return 1.0
    p = np.histogram(a, bins=bins, range=(lo, hi))[0] / a.size
    q = np.histogram(b, bins=bins, range=(lo, hi))[0] / b.size
    return float(np.minimum(p, q).sum())


@dataclass(frozen=True)
class NeighbourDistances:
    """Distances from each query row to its nearest and k-th nearest other row."""

    nearest: torch.Tensor
    kth: torch.Tensor
    k: int
    overlap: float


def nn_distance_overlap(z, k: int = 100, *, normalize: bool = True, max_queries: int | None = 4096,
                        bins: int = 50, seed: int = 0, chunk: int = 512) -> NeighbourDistances:
    """E2MC Fig. 4: Euclidean distance from each query to its nearest and its k-th nearest
    neighbour among all other rows (of the L2-normalised rows by default), and the overlap
    coefficient of their histograms (`histogram_overlap`). Low overlap: the 100th neighbour
    of one point is rarely closer than the 1st of another, i.e. points are well separated."""
    x = as_embeddings("z", z)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"`k` must be in [1, N - 1] = [1, {n - 1}], got {k}; lower k or pass more rows.")
    x = unit_rows(x) if normalize else x
    queries = torch.arange(n) if (index := sample_rows(n, max_queries, seed)) is None else index
    queries, sq = queries.to(x.device), x.square().sum(dim=1)
    nearest, kth = [], []
    for q in queries.split(chunk):
        d2 = (sq[q].unsqueeze(1) + sq.unsqueeze(0) - 2 * x[q] @ x.T).clamp_min(0)
        d2[torch.arange(len(q), device=x.device), q] = math.inf  # a point is not its own neighbour
        smallest = d2.topk(k, dim=1, largest=False).values.sqrt()
        nearest.append(smallest[:, 0])
        kth.append(smallest[:, k - 1])
    nearest, kth = torch.cat(nearest), torch.cat(kth)
    return NeighbourDistances(nearest, kth, k, histogram_overlap(nearest.cpu(), kth.cpu(), bins))


def sparsity(z, tol: float = 1e-3) -> float:
    """Fraction of entries with |z_ij| <= tol * max_j |z_ij| (relative to the largest entry
    of the same row, so it ignores scale and D). One-hot rows give (D - 1) / D."""
    x = as_embeddings("z", z, min_rows=1).abs()
    return float((x <= tol * x.amax(dim=1, keepdim=True)).double().mean())


def geometry_table(z, labels=None, z_pair=None, *, k: int = 100, max_samples: int | None = 4096,
                   seed: int = 0) -> dict:
    """Every metric above with flat keys, plus `warnings`: a list of plain sentences about
    anything that makes a number undefined or suspect (collapse, zero rows, too few rows
    or classes). Class metrics need `labels`; alignment and positive angles need `z_pair`.

    Bad input (wrong shapes, NaN/inf rows, N < 2, labels of the wrong length) raises
    ValueError; a collapsed encoder gives its metrics, NaN where undefined, and a warning.
    """
    x = as_embeddings("z", z)
    n, d = x.shape
    y = None if labels is None else as_labels(labels, n).to(x.device)
    xp = None if z_pair is None else as_pair(x, z_pair)
    notes: list[str] = []
    spread, scale = float((x - x.mean(dim=0)).abs().max()), float(x.abs().max())
    collapsed = spread <= COLLAPSE_RTOL * scale
    if collapsed:
        notes.append("Collapse: every row of `z` is (nearly) the same vector, so correlation, d', PCA "
                     "and neighbour metrics are undefined (NaN); check the loss for a trivial solution.")
    if zero_rows := int((x.abs().amax(dim=1) == 0).sum()):
        notes.append(f"{zero_rows} of {n} rows of `z` are all zeros; cosine metrics treat them as orthogonal to all.")
    s = torch.linalg.svdvals(x)
    out: dict = {"n_samples": n, "n_dims": d, "effective_rank": _erank_from(s),
                 "embedding_rank": _rank_from(s, max(n, d) * input_eps(z))}
    if y is not None:
        out["n_classes"] = int(torch.unique(y).numel())
        out["centroid_rank"] = centroid_rank(x, y, rtol=max(out["n_classes"], d) * input_eps(z))
        out["sensitivity_index"] = _NAN if collapsed else sensitivity_index(x, y, max_samples=max_samples, seed=seed)
        if out["n_classes"] < 2:
            notes.append("Only one class in `labels`: d' needs pairs from two classes (NaN).")
    out.update(anisotropy=anisotropy(x), centre_norm=centre_norm(x),
               mean_abs_correlation=_NAN if collapsed else mean_abs_correlation(x))
    angles = pairwise_angles(x, xp, max_samples=max_samples, seed=seed)
    out.update({f"angle_{key}_deg": value for key, value in angles.items()})
    stds = per_dimension_std(x)
    out.update(feature_std_mean=float(stds.mean()), feature_std_x_sqrt_d=float(stds.mean()) * math.sqrt(d))
    if xp is not None:
        out["alignment"] = alignment(x, xp)
    out["uniformity"] = uniformity(x, max_samples=max_samples, seed=seed)
    cumulative = _cumulative(pca_spectrum(x))
    for fraction in (0.9, 0.99):
        out[f"pca_components_{round(fraction * 100)}pct"] = _NAN if collapsed else components_for(cumulative, fraction)
    k_used = min(k, n - 1)
    if k_used < k:
        notes.append(f"Only {n} rows: the neighbour overlap compares the 1st with the {k_used}th neighbour, not the {k}th.")
    nn = nn_distance_overlap(x, k_used, max_queries=max_samples, seed=seed)
    out.update(nn_distance_overlap=_NAN if collapsed else nn.overlap, nn_first_distance_mean=float(nn.nearest.mean()),
               nn_kth_distance_mean=float(nn.kth.mean()), nn_k=k_used, sparsity=sparsity(x))
    undefined = [key for key, value in out.items() if isinstance(value, float) and math.isnan(value)]
    if undefined and not collapsed:
        notes.append("Undefined (NaN): " + ", ".join(undefined) + ".")
    out["warnings"] = notes
    return out
