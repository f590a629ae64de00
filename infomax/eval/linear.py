"""Linear probe: L2-regularised multinomial logistic regression on frozen features.

The transfer protocol of Ericsson et al. (2021, "How well do self-supervised models
transfer?", §3) used by MIRA's transfer table (Lee et al., 2022, §4.2, Table 5):
standardise the features with training statistics, fit a multinomial logistic
regression, search its L2 coefficient on held-out data, then refit on all training data
with the chosen coefficient and report test accuracy. Here the held-out data is a
stratified split of the training set (`val_fraction`), so the test set is never looked at.

Objective, for standardised features x_i and labels y_i:
    J(W, b) = mean_i CE(W x_i + b, y_i) + (weight_decay / 2) * ||W||_F^2,
bias unpenalised; scikit-learn's LogisticRegression(C) is the same problem with
C = 1 / (weight_decay * N). Solved full-batch with L-BFGS (strong-Wolfe line search),
warm-started from strong to weak regularisation along the grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from .knn import check_labels, check_pair, class_count, topk_accuracy

WEIGHT_DECAYS = tuple(10.0 ** (e / 2) for e in range(-12, 1))  # 1e-6 ... 1, half a decade apart
DEFAULT_WEIGHT_DECAY = 1e-2  # used when there is no validation split (e.g. one sample per class)
HISTORY = 10  # L-BFGS curvature pairs, as scipy's L-BFGS-B (m=10) behind scikit-learn
STD_FLOOR = 1e-6  # constant features are centred, not blown up


@dataclass(frozen=True)
class LinearProbeResult:
    """Test `accuracy` ("top1", "top5" in percent), the chosen `weight_decay`, `search`
    (one dict per grid value: weight_decay, val_top1, val_loss, iterations; empty when
    no split was made), test `predictions`, and the classifier: logits = standardise(x) @
    weight.T + bias with standardise(x) = (x - mean) / std."""

    accuracy: dict[str, float]
    weight_decay: float
    search: list[dict] = field(default_factory=list)
    predictions: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    iterations: int = 0

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.to(self.weight) - self.mean) / self.std
        return x @ self.weight.T + self.bias


def stratified_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, held-out) index tensors; each class gives round(fraction * n_c) rows to the
    held-out part but keeps at least one for fitting (a class of one stays whole)."""
    labels = labels.cpu()
    order = torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    grouped = order[torch.argsort(shuffled, stable=True)]
    _, counts = torch.unique(labels, return_counts=True)
    held, fit, start = [], [], 0
    for count in counts.tolist():
        rows = grouped[start:start + count]
        n_held = min(math.floor(fraction * count + 0.5), count - 1)
        held.append(rows[:n_held])
        fit.append(rows[n_held:])
        start += count
    return torch.cat(fit).sort().values, torch.cat(held).sort().values


def _standardiser(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(0)
    return mean, x.std(0, correction=0).clamp_min(STD_FLOOR)


def objective_and_gradient(params: torch.Tensor, x: torch.Tensor, y: torch.Tensor, weight_decay: float,
                           x_t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """J and dJ/dparams in closed form: d mean CE / d logits = (softmax - onehot) / N.

    `x_t`, a contiguous copy of x.T, makes the gradient matmul about twice as fast on CPU.
    """
    weight, column = params[:-1], y[:, None]
    log_p = torch.log_softmax(torch.addmm(params[-1], x, weight), dim=1)
    # the value in float64, so L-BFGS still sees progress below float32's resolution of ~1e-7
    loss = -log_p.gather(1, column).double().mean() + 0.5 * weight_decay * weight.double().square().sum()
    residual = log_p.exp_().scatter_add_(1, column, log_p.new_full(column.shape, -1.0)).div_(x.shape[0])
    grad_weight = torch.addmm(weight, x.T if x_t is None else x_t, residual, beta=weight_decay)
    return loss, torch.cat([grad_weight, residual.sum(0, keepdim=True)])


def fit_logistic(x: torch.Tensor, y: torch.Tensor, weight_decay: float, start: torch.Tensor, max_iter: int,
                 tolerance: float, x_t: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Minimise J from `start` ((D + 1, C): weight rows then the bias row); returns (params, iterations).

    Stops after `max_iter` L-BFGS iterations, once the largest gradient entry is at most
    `tolerance`, or when the loss stops changing. `x_t` is x.T made contiguous (computed if None).
    """
    params = start.clone()
    x_t = x.T.contiguous() if x_t is None else x_t
    optimizer = torch.optim.LBFGS([params], lr=1, max_iter=max_iter, tolerance_grad=tolerance, tolerance_change=1e-10,
                                  history_size=HISTORY, line_search_fn="strong_wolfe")

    def closure():
        loss, params.grad = objective_and_gradient(params, x, y, weight_decay, x_t)
        return loss

    optimizer.step(closure)
    return params, int(optimizer.state[params].get("n_iter", 0))


def _check_settings(val_fraction, weight_decays, max_iter) -> tuple[float, ...]:
    if not 0 <= val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in [0, 1), got {val_fraction}.")
    grid = tuple(float(w) for w in weight_decays)
    if not grid or any(not (w >= 0) or math.isinf(w) for w in grid):
        raise ValueError(f"`weight_decays` must be a non-empty sequence of finite values >= 0, got {weight_decays!r}.")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive integer, got {max_iter!r}.")
    return tuple(sorted(set(grid), reverse=True))  # strong to weak: each fit warm-starts the next


def _search(x, y, fit, held, classes, grid, max_iter, tolerance) -> tuple[list[dict], dict[float, torch.Tensor]]:
    mean, std = _standardiser(x[fit])
    x_fit, x_held = (x[fit] - mean) / std, (x[held] - mean) / std
    x_t, params = x_fit.T.contiguous(), x.new_zeros(x.shape[1] + 1, classes)
    rows, solutions = [], {}
    for weight_decay in grid:
        params, iterations = fit_logistic(x_fit, y[fit], weight_decay, params, max_iter, tolerance, x_t)
        logits = x_held @ params[:-1] + params[-1]
        rows.append({"weight_decay": weight_decay, "val_top1": topk_accuracy(logits, y[held], (1,))["top1"],
                     "val_loss": float(F.cross_entropy(logits, y[held])), "iterations": iterations})
        solutions[weight_decay] = params
    return rows, solutions


def _best(rows: list[dict], select: str) -> float:
    """Highest validation accuracy, ties to the lower validation loss, then to the stronger decay
    (select="accuracy"); or lowest validation loss (select="loss")."""
    if select == "loss":
        return min(rows, key=lambda r: (r["val_loss"], -r["weight_decay"]))["weight_decay"]
    return min(rows, key=lambda r: (-r["val_top1"], r["val_loss"], -r["weight_decay"]))["weight_decay"]


@torch.no_grad()
def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    val_fraction: float = 0.2,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    seed: int = 0,
    max_iter: int = 500,
    tolerance: float = 1e-5,
    select: str = "accuracy",
    num_classes: int | None = None,
    topk: Sequence[int] = (1, 5),
) -> LinearProbeResult:
    """Fit the probe on the training features and report its test accuracy in percent.

    The L2 coefficient is chosen from `weight_decays` on a stratified `val_fraction`
    split of the training set (seeded by `seed`), by validation top-1 accuracy with ties
    broken by validation cross-entropy (`select="loss"` ranks by cross-entropy alone);
    the probe is then refit on the whole training set, warm-started from the search's
    solution. No split is made, and `DEFAULT_WEIGHT_DECAY` is used (or the grid's only
    value), when the grid has one value or the split holds out nothing: `val_fraction`
    is 0, or every class is too small to give round(val_fraction * n_c) >= 1 rows while
    keeping one (e.g. one sample per class). Classes absent from the validation split
    simply contribute no validation rows.

    `max_iter` and `tolerance` (on the largest gradient entry) bound each L-BFGS fit.
    Runs in float32 (float64 kept) on the train features' device; deterministic for a
    seed on a given machine.
    """
    train, test = check_pair(train_features, test_features)
    train_labels = check_labels("train_labels", train_labels, train.shape[0], "train_features")
    test_labels = check_labels("test_labels", test_labels, test.shape[0], "test_features")
    grid = _check_settings(val_fraction, weight_decays, max_iter)
    if select not in ("accuracy", "loss"):
        raise ValueError(f"`select` must be 'accuracy' or 'loss', got {select!r}.")
    if torch.unique(train_labels).numel() < 2:
        raise ValueError("a linear probe needs at least two classes in `train_labels`.")
    classes = class_count(num_classes, train_labels, test_labels)

    device = train.device
    dtype = torch.float64 if train.dtype == torch.float64 else torch.float32
    x, y = train.detach().to(dtype), train_labels.to(device)
    fit, held = stratified_split(train_labels, val_fraction, seed)
    rows, start, chosen = [], x.new_zeros(x.shape[1] + 1, classes), grid[0] if len(grid) == 1 else DEFAULT_WEIGHT_DECAY
    if held.numel() and len(grid) > 1:
        rows, solutions = _search(x, y, fit.to(device), held.to(device), classes, grid, max_iter, tolerance)
        chosen = _best(rows, select)
        start = solutions[chosen]
    mean, std = _standardiser(x)
    params, iterations = fit_logistic((x - mean) / std, y, chosen, start, max_iter, tolerance)
    logits = ((test.detach().to(device=device, dtype=dtype) - mean) / std) @ params[:-1] + params[-1]
    return LinearProbeResult(
        accuracy=topk_accuracy(logits, test_labels.to(device), tuple(topk)), weight_decay=chosen, search=rows,
        predictions=logits.argmax(1), weight=params[:-1].T.contiguous(), bias=params[-1].clone(), mean=mean, std=std,
        iterations=iterations,
    )
