"""Input checks and precision guards shared by objectives and assigners.

Every public objective runs in float32 (float64 stays float64, for gradcheck) with
autocast disabled, and rejects malformed input with a ValueError naming the argument.
The finiteness check costs one host sync; `checks(False)` turns it off for hot loops
that already guard their inputs (and it is skipped while torch.compile traces).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator, TypeVar

import torch

_CHECK_FINITE = True
F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def checks(enabled: bool) -> Iterator[None]:
    """Enable or disable the NaN/inf input checks inside a block."""
    global _CHECK_FINITE
    previous, _CHECK_FINITE = _CHECK_FINITE, enabled
    try:
        yield
    finally:
        _CHECK_FINITE = previous


def _upcast(x):
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
        return x.float()
    if isinstance(x, (list, tuple)):
        return type(x)(_upcast(v) for v in x)
    return x


def full_precision(fn: F) -> F:
    """Run `fn` with autocast off and low-precision float tensor arguments cast to float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = tuple(_upcast(a) for a in args)
        kwargs = {k: _upcast(v) for k, v in kwargs.items()}
        device_types = {a.device.type for a in args if isinstance(a, torch.Tensor)} or {"cpu"}
        with contextlib.ExitStack() as stack:
            for device_type in device_types:
                stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def check_finite(name: str, x: torch.Tensor) -> None:
    if not _CHECK_FINITE or torch.compiler.is_compiling():
        return
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"`{name}` contains NaN or inf values; check the model output or lower the learning rate.")


def check_matrix(name: str, x, *, min_rows: int = 2, floating: bool = True) -> torch.Tensor:
    """A (rows, features) float tensor with at least `min_rows` rows and finite values."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != 2:
        raise ValueError(f"`{name}` must have shape (N, D), got {tuple(x.shape)}.")
    if floating and not x.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor, got {x.dtype}.")
    if x.shape[0] < min_rows:
        raise ValueError(f"`{name}` needs at least {min_rows} rows (samples), got {x.shape[0]}.")
    if x.shape[1] < 1:
        raise ValueError(f"`{name}` needs at least one feature column, got shape {tuple(x.shape)}.")
    check_finite(name, x)
    return x


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"`{name_a}` {tuple(a.shape)} and `{name_b}` {tuple(b.shape)} must have the same shape.")


def check_labels(name: str, y, n: int, num_classes: int | None = None) -> torch.Tensor:
    """Integer class indices of shape (n,), each in [0, num_classes)."""
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"`{name}` must be a 1-D integer tensor of class indices.")
    if y.shape[0] != n:
        raise ValueError(f"`{name}` has {y.shape[0]} entries but there are {n} rows of predictions.")
    if num_classes is not None and n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"`{name}` must hold class indices in [0, {num_classes}); got range [{int(y.min())}, {int(y.max())}].")
    return y


def check_positive(name: str, value: float) -> float:
    if not (value > 0) or value != value or value == float("inf"):
        raise ValueError(f"`{name}` must be a positive finite number, got {value}.")
    return float(value)
