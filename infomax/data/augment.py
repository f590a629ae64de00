"""Batched image augmentation ops: whole batches on the CPU or a GPU, per-sample parameters.

Every random op takes a float batch (N, C, H, W) in [0, 1] (or a uint8 (N, H, W, C) batch,
converted by `to_float_images`) and a CPU `torch.Generator`. All random parameters are drawn
on that CPU generator and only then moved to the batch's device, so one seed gives the same
views on the CPU and on a GPU (up to float rounding of the kernels). Nothing loops over
samples: a view's crops are one `grid_sample`, the blur is one grouped convolution per
axis, the colour ops broadcast per-sample factors. An op applied with probability p runs on
the drawn rows only (the row indices are known on the CPU, so no host sync is needed).

The ops follow torchvision's semantics, which the SimCLR, BYOL, Barlow Twins, VICReg and
DINO recipes were written against; the differences are documented per op.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .. import _validate

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as torchvision's rgb_to_grayscale
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_SUPERSAMPLE = 4  # antialiasing sub-samples per output pixel and axis, at most

Tensor = torch.Tensor


# ---------------------------------------------------------------- input checks and helpers

def check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"`size` must be a positive int (output side in pixels), got {size!r}.")
    return size


def check_probability(name: str, p) -> float:
    if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1], got {p!r}.")
    return float(p)


def check_range(name: str, pair, low: float, high: float, example: str, open_low: bool = True) -> tuple[float, float]:
    """A (lo, hi) pair with low < lo <= hi <= high (low <= lo when not open_low)."""
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a pair (low, high), got {pair!r}; use e.g. {example}.") from None
    bad_low = lo <= low if open_low else lo < low
    if bad_low or hi > high or lo > hi or math.isnan(lo) or math.isnan(hi):
        bound = "<" if open_low else "<="
        raise ValueError(f"`{name}` must satisfy {low:g} {bound} low <= high <= {high:g}, got {pair!r}; use e.g. {example}.")
    return lo, hi


class Draws:
    """Uniform draws made beforehand, a row per sample and a column per draw, handed out column by column
    in the order the ops ask: the streaming source draws each sample's row from (seed, epoch, index) in a
    worker, so its views do not depend on which batch, worker or rank the sample lands in."""

    def __init__(self, table: Tensor):
        self.table, self.used = table.to(torch.float64), 0

    def take(self, n: int) -> Tensor:
        if n != self.table.shape[0] or self.used >= self.table.shape[1]:
            raise ValueError(f"asked for draw {self.used + 1} of {n} samples; the table holds {self.table.shape[1]} of "
                             f"{self.table.shape[0]} (views.PHOTOMETRIC_DRAWS is too small for the ops).")
        self.used += 1
        return self.table[:, self.used - 1]


def _generator(generator: torch.Generator | Draws | None) -> torch.Generator | Draws:
    if generator is None:
        return torch.default_generator
    if isinstance(generator, Draws):
        return generator
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError("`generator` must be a CPU torch.Generator (parameters are drawn on the CPU so that "
                         "a seed gives the same views on every device); use torch.Generator().manual_seed(seed).")
    return generator


def _rand(n: int, generator: torch.Generator | Draws) -> Tensor:
    return generator.take(n) if isinstance(generator, Draws) else torch.rand(n, generator=generator, dtype=torch.float64)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | Draws) -> Tensor:
    return low + (high - low) * _rand(n, generator)


def _coin(n: int, p: float, generator: torch.Generator | Draws) -> Tensor:
    return _rand(n, generator) < p


def _on_rows(x: Tensor, mask: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """fn(rows, cpu_index) on the rows where the CPU bool `mask` is set; other rows pass unchanged."""
    index = mask.nonzero().squeeze(1)
    if index.numel() == 0:
        return x
    if index.numel() == x.shape[0]:
        return fn(x, index)
    rows = index.to(x.device)
    return x.index_copy(0, rows, fn(x.index_select(0, rows), index))


def _batch(images) -> Tensor:
    """A float (N, C, H, W) batch as is; anything else through `to_float_images` (channels kept)."""
    if isinstance(images, Tensor) and images.ndim == 4 and images.dtype == torch.float32 and images.shape[1] in (1, 3):
        return images
    return to_float_images(images, channels=None)


def _rgb(x: Tensor) -> Tensor:
    return x if x.shape[1] == 3 else x.repeat(1, 3, 1, 1)


def to_float_images(images: Tensor, channels: int | None = 3) -> Tensor:
    """Float32 (N, C, H, W) in [0, 1] on the input's device.

    Accepts uint8 (N, H, W, C), the layout datasets store, scaled by 1/255, or floating
    (N, C, H, W) already in [0, 1]; C must be 1 or 3. `channels=3` repeats grey to RGB,
    `channels=None` keeps C. The [0, 1] range of float input is checked (one host sync;
    `infomax._validate.checks(False)` skips it).
    """
    if not isinstance(images, Tensor):
        raise ValueError(f"`images` must be a torch.Tensor, got {type(images).__name__}; convert with torch.as_tensor(array).")
    if images.ndim != 4:
        hint = " Add the batch dimension with images[None]." if images.ndim == 3 else ""
        raise ValueError(f"`images` must be a batch, uint8 (N, H, W, C) or float (N, C, H, W); got shape {tuple(images.shape)}.{hint}")
    if channels not in (None, 1, 3):
        raise ValueError(f"`channels` must be 1, 3 or None (keep), got {channels!r}.")
    if images.dtype == torch.uint8:
        c = images.shape[-1]
        if c not in (1, 3):
            fix = (" Drop the alpha channel with images[..., :3]." if c == 4 else
                   " For channels-first uint8 use images.permute(0, 2, 3, 1)." if images.shape[1] in (1, 3) else "")
            raise ValueError(f"uint8 `images` must be (N, H, W, C) with C = 1 or 3, got shape {tuple(images.shape)}.{fix}")
        x = images.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format).div_(255)
    elif images.is_floating_point():
        c = images.shape[1]
        if c not in (1, 3):
            fix = " For channels-last floats use images.permute(0, 3, 1, 2)." if images.shape[-1] in (1, 3) else ""
            raise ValueError(f"float `images` must be (N, C, H, W) with C = 1 or 3, got shape {tuple(images.shape)}.{fix}")
        x = images.to(torch.float32)
        if _validate._CHECK_FINITE and x.numel() and not torch.compiler.is_compiling():
            lo, hi = (float(v) for v in torch.aminmax(x))
            if not (lo >= -1e-6 and hi <= 1 + 1e-6):
                raise ValueError(f"float `images` must lie in [0, 1], got values in [{lo:g}, {hi:g}]; "
                                 "divide 0-255 data by 255 or pass the uint8 tensor itself.")
    else:
        raise ValueError(f"`images` must be uint8 (N, H, W, C) or floating (N, C, H, W), got dtype {images.dtype}; "
                         "convert with images.to(torch.uint8) or images.float() / 255.")
    if channels == 3:
        return _rgb(x)
    if channels == 1 and x.shape[1] == 3:
        return luma(x)
    return x


# ---------------------------------------------------------------- geometry

def crop_boxes(n: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
               generator: torch.Generator | None = None) -> Tensor:
    """(n, 4) float64 boxes (x0, y0, w, h) in pixels, torchvision's RandomResizedCrop sampling.

    Each sample tries 10 times an area fraction uniform in `scale` and an aspect ratio
    log-uniform in `ratio`, keeps the first box that fits, else falls back to the central
    crop with the ratio clamped to `ratio` (Szegedy et al., 2015; torchvision). Unlike
    torchvision the box is not rounded to whole pixels: sizes and offsets are continuous.
    """
    scale = check_range("scale", scale, 0.0, 1.0, "(0.08, 1.0)")
    ratio = check_range("ratio", ratio, 0.0, math.inf, "(3/4, 4/3)")
    g = _generator(generator)
    area = height * width * _uniform(n * 10, *scale, g).view(n, 10)
    log_ratio = _uniform(n * 10, math.log(ratio[0]), math.log(ratio[1]), g).view(n, 10)
    aspect = log_ratio.exp()
    w, h = (area * aspect).sqrt(), (area / aspect).sqrt()
    fits = (w <= width) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    image_ratio = width / height
    if image_ratio < ratio[0]:
        fw, fh = width, width / ratio[0]
    elif image_ratio > ratio[1]:
        fw, fh = height * ratio[1], height
    else:
        fw, fh = width, height
    found = fits.any(dim=1)
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    offsets = torch.rand(n, 2, generator=g, dtype=torch.float64)
    offsets = torch.where(found[:, None], offsets, torch.full_like(offsets, 0.5))
    return torch.stack([offsets[:, 0] * (width - w), offsets[:, 1] * (height - h), w, h], dim=1)


BOX_DRAWS = 22  # crop_boxes' uniforms per sample: 10 areas, 10 log-ratios, 2 offsets


def crop_box(u, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[float, float, float, float]:
    """`crop_boxes` for one sample in plain Python, from its BOX_DRAWS uniforms `u` in the order
    crop_boxes draws them: the streaming workers cut a box per view without a tensor op."""
    for area_u, ratio_u in zip(u[:10], u[10:20]):
        area = height * width * (scale[0] + (scale[1] - scale[0]) * area_u)
        aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * ratio_u)
        w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
        if w <= width and h <= height:
            return u[20] * (width - w), u[21] * (height - h), w, h
    if width / height < ratio[0]:
        w, h = width, width / ratio[0]
    elif width / height > ratio[1]:
        w, h = height * ratio[1], height
    else:
        w, h = width, height
    return 0.5 * (width - w), 0.5 * (height - h), w, h


@torch.no_grad()
def resample_boxes(images, boxes: Tensor, size: int, flip: Tensor | None = None, antialias: bool = True) -> Tensor:
    """Each sample's box (x0, y0, w, h in pixels, CPU) resized to size x size: one grid_sample.

    Bilinear, border padding, align_corners=False (pixel centres at half-integers, as
    F.interpolate). `flip` (CPU bools) mirrors those samples inside the same sampling grid.
    With `antialias`, when a box is larger than the output the grid is sampled k times
    finer per axis and k x k averaged (k = the batch's largest shrink factor, rounded up,
    at most MAX_SUPERSAMPLE), an area filter that keeps e.g. 224 -> 32 crops from aliasing.
    """
    x = _batch(images)
    size = check_size(size)
    n, c, height, width = x.shape
    x0, y0, w, h = boxes.to(torch.float64).unbind(1)
    sx, sy = w / width, h / height
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2] = sx, (2 * x0 + w) / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = sy, (2 * y0 + h) / height - 1
    k = 1
    if antialias and n:
        k = max(1, min(MAX_SUPERSAMPLE, math.ceil(float(torch.maximum(w, h).max()) / size - 1e-6)))
    grid = F.affine_grid(theta.to(x.device, torch.float32), [n, c, size * k, size * k], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(out, k) if k > 1 else out


@torch.no_grad()
def random_resized_crop(images, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), *, flip_p: float = 0.0,
                        antialias: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """Random area/aspect crops (see `crop_boxes`) resized to size x size in one grid_sample.

    `flip_p` folds a random horizontal flip into the same sampling grid (free).
    """
    x = _batch(images)
    size = check_size(size)
    flip_p = check_probability("flip_p", flip_p)
    g = _generator(generator)
    boxes = crop_boxes(x.shape[0], x.shape[2], x.shape[3], scale, ratio, g)
    flip = _coin(x.shape[0], flip_p, g) if flip_p > 0 else None
    return resample_boxes(x, boxes, size, flip, antialias)


@torch.no_grad()
def center_resize(images, size: int) -> Tensor:
    """The central square (side = the shorter side) resized to size x size, bilinear with antialias."""
    x = _batch(images)
    size = check_size(size)
    height, width = x.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    x = x[..., top:top + side, left:left + side]
    if side == size:
        return x.contiguous()
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


@torch.no_grad()
def horizontal_flip(images, p: float = 0.5, *, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each sample left-right with probability p."""
    x = _batch(images)
    p = check_probability("p", p)
    if p == 0:
        return x
    return _on_rows(x, _coin(x.shape[0], p, _generator(generator)), lambda rows, _: rows.flip(-1))


# ---------------------------------------------------------------- colour

def luma(x: Tensor) -> Tensor:
    """(N, 1, H, W) ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B of an RGB batch."""
    return (x * x.new_tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _blend(image: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """factor * image + (1 - factor) * other, clamped to [0, 1] (torchvision's _blend)."""
    return torch.lerp(other, image, factor.view(-1, 1, 1, 1)).clamp_(0, 1)


def shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by `shift` (per sample, in turns) through HSV, as torchvision's adjust_hue."""
    value, low = x.amax(dim=1), x.amin(dim=1)
    chroma = value - low
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    rc, gc, bc = ((value.unsqueeze(1) - x) / safe.unsqueeze(1)).unbind(1)
    r, g = x[:, 0], x[:, 1]
    hue = torch.where(value == r, bc - gc, torch.where(value == g, 2 + rc - bc, 4 + gc - rc))
    hue = hue / 6 + shift.view(-1, 1, 1)
    hue = (6 * (hue - hue.floor())).unsqueeze(1)  # in [0, 6)
    # HSV -> RGB: pure hue (|6H - 3| - 1, 2 - |6H - 2|, 2 - |6H - 4|) clamped to [0, 1], then V - C (1 - pure)
    pure = torch.addcmul(x.new_tensor([-1.0, 2.0, 2.0]).view(1, 3, 1, 1), x.new_tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1),
                         (hue - x.new_tensor([3.0, 2.0, 4.0]).view(1, 3, 1, 1)).abs_()).clamp_(0, 1)
    return torch.addcmul(low.unsqueeze(1), chroma.unsqueeze(1), pure)


def _factor(n: int, strength: float, generator: torch.Generator) -> Tensor:
    return _uniform(n, max(0.0, 1 - strength), 1 + strength, generator)


@torch.no_grad()
def color_jitter(images, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1,
                 p: float = 0.8, *, generator: torch.Generator | None = None) -> Tensor:
    """torchvision's ColorJitter applied with probability p, per-sample factors, RGB output.

    Factors are uniform in [max(0, 1 - s), 1 + s] (hue shift uniform in [-hue, hue] turns).
    Brightness scales, contrast blends with the mean luma of the image, saturation blends
    with its luma image, each clamped to [0, 1]; hue rotates in HSV (`shift_hue`). The order
    is fixed: brightness, contrast, saturation, hue (torchvision draws a random order per
    call). A zero strength skips that adjustment exactly.
    """
    x = _rgb(_batch(images))
    for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"`{name}` must be a non-negative strength, got {value!r}.")
    if not isinstance(hue, (int, float)) or not 0 <= hue <= 0.5:
        raise ValueError(f"`hue` must be in [0, 0.5] (turns of the colour wheel), got {hue!r}.")
    p = check_probability("p", p)
    if p == 0 or not (brightness or contrast or saturation or hue):
        return x
    g = _generator(generator)
    n = x.shape[0]
    mask = _coin(n, p, g)
    factors = torch.stack([_factor(n, brightness, g), _factor(n, contrast, g), _factor(n, saturation, g),
                           _uniform(n, -hue, hue, g)], dim=1)

    def apply(rows: Tensor, index: Tensor) -> Tensor:
        b, c, s, h = factors[index].to(rows.device, rows.dtype).unbind(1)
        if brightness:
            rows = (rows * b.view(-1, 1, 1, 1)).clamp_(0, 1)
        if contrast:
            rows = _blend(rows, luma(rows).mean(dim=(1, 2, 3), keepdim=True), c)
        if saturation:
            rows = _blend(rows, luma(rows), s)
        if hue:
            rows = shift_hue(rows, h)
        return rows

    return _on_rows(x, mask, apply)


@torch.no_grad()
def grayscale(images, p: float = 1.0, *, generator: torch.Generator | None = None) -> Tensor:
    """With probability p replace each sample by its BT.601 luma repeated to 3 channels."""
    x = _rgb(_batch(images))
    p = check_probability("p", p)
    if p == 0:
        return x
    return _on_rows(x, _coin(x.shape[0], p, _generator(generator)), lambda rows, _: luma(rows).repeat(1, 3, 1, 1))


@torch.no_grad()
def solarize(images, p: float = 0.2, threshold: float = 0.5, *, generator: torch.Generator | None = None) -> Tensor:
    """With probability p invert the pixels >= threshold (x -> 1 - x), as torchvision's solarize.

    threshold 0.5 on [0, 1] data inverts the uint8 values >= 128, the BYOL/DINO setting.
    """
    x = _batch(images)
    p = check_probability("p", p)
    if p == 0:
        return x
    return _on_rows(x, _coin(x.shape[0], p, _generator(generator)),
                    lambda rows, _: torch.where(rows >= threshold, 1 - rows, rows))


# ---------------------------------------------------------------- blur and normalisation

def blur_kernel_size(side: int, fraction: float = 0.1) -> int:
    """Odd kernel size about `fraction` of the image side, at least 3 (SimCLR App. A: 10%; 23 at 224)."""
    return max(3, int(fraction * side) | 1)


@torch.no_grad()
def gaussian_blur(images, sigma=(0.1, 2.0), p: float = 0.5, *, kernel_fraction: float = 0.1,
                  generator: torch.Generator | None = None) -> Tensor:
    """With probability p a Gaussian blur, sigma uniform in `sigma` (pixels) per sample.

    Separable: one grouped (depthwise, per-sample kernel) conv2d per axis over reflect-padded
    rows; kernel size from `blur_kernel_size` of the shorter side (SimCLR's 10%, BYOL's 23
    at 224, DINOv2's 9 at 96).
    """
    x = _batch(images)
    lo, hi = check_range("sigma", sigma, 0.0, math.inf, "(0.1, 2.0)")
    p = check_probability("p", p)
    n, c, height, width = x.shape
    if p == 0 or min(height, width) < 2:
        return x
    g = _generator(generator)
    mask, sigmas = _coin(n, p, g), _uniform(n, lo, hi, g)
    k = min(blur_kernel_size(min(height, width), kernel_fraction), 2 * min(height, width) - 1)
    taps = torch.arange(k, dtype=torch.float64) - k // 2

    def apply(rows: Tensor, index: Tensor) -> Tensor:
        kernel = torch.exp(-taps.square() / (2 * sigmas[index, None].square()))
        kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
        kernel = kernel.to(rows.device, rows.dtype)
        m = kernel.shape[0]
        flat = F.pad(rows.reshape(1, m, height, width), (k // 2,) * 4, mode="reflect")
        flat = F.conv2d(flat, kernel.view(m, 1, 1, k), groups=m)
        flat = F.conv2d(flat, kernel.view(m, 1, k, 1), groups=m)
        return flat.view(rows.shape)

    return _on_rows(x, mask, apply)


@torch.no_grad()
def normalize(images, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """(x - mean) / std per channel; infomax encoders take [0, 1] input, so views skip this by default."""
    x = _batch(images)
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"`mean` and `std` need one value per channel ({x.shape[1]}), got {len(mean)} and {len(std)}.")
    if any(not s > 0 for s in std):
        raise ValueError(f"`std` must be positive, got {tuple(std)}.")
    return (x - x.new_tensor(mean).view(1, -1, 1, 1)) / x.new_tensor(std).view(1, -1, 1, 1)
