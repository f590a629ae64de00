"""Multi-view sets: a `ViewSpec` per view, `make_views` to draw them for a whole batch.

A view set is a list of `ViewSpec`s, one per view (multi-crop has several); `make_views`
(`make_view` for one spec) turns one batch of images into one float (N, 3, size, size)
tensor in [0, 1] per view, on the images' device, with the batched ops of
`infomax.data.augment` in the order the papers use: crop (+ flip) -> colour jitter ->
grayscale -> blur -> solarize. Crops are bilinear with area antialiasing (DINO and DINOv2
resize bicubically). Views are not normalised: infomax encoders take [0, 1] input and
normalise inside.

Published view sets (`VIEW_SETS`, built by `get_view_set(name, image_size, **overrides)`). Each
follows the source named below at the size it names; "<= 32 px" is the CIFAR setting of that
source, where one exists. Blur kernels are 10% of the side made odd, at least 3 (augment.py).

- ``simclr``: Chen et al., 2020, App. A: crop 0.08-1, flip, colour jitter with strength s
  (0.8s, 0.8s, 0.8s, 0.2s) p=0.8, grayscale 0.2, blur p=0.5 (sigma 0.1-2). s = 1 on ImageNet;
  CIFAR (App. B.9): s = 0.5 and no blur, the default at <= 32 px.
- ``byol``: Grill et al., 2020, Table 6: crop 0.08-1, flip, jitter (0.4, 0.4, 0.2, 0.1)
  p=0.8, grayscale 0.2; asymmetric: view 1 blur 1.0 solarize 0, view 2 blur 0.1 solarize 0.2.
  At <= 32 px solo-learn's scripts/pretrain/cifar/augmentations/asymmetric.yaml: no blur.
- ``barlow``: Zbontar et al., 2021, "Image augmentations": the same as ``byol`` (solo-learn's
  barlow.yaml uses asymmetric.yaml too).
- ``vicreg``: Bardes et al., 2022, App. C.1: the BYOL / Barlow Twins pipeline; at <= 32 px
  solo-learn's scripts/pretrain/cifar/vicreg.yaml: crop 0.2-1, jitter (0.4, 0.4, 0.2, 0.1) p=0.8,
  grayscale 0.2, no blur, solarize 0.1 on both views.
- ``swav``: Caron et al., 2020, App. A (the authors' src/multicropdataset.py): the strong
  symmetric colour distortion (0.8, 0.8, 0.8, 0.2) p=0.8, grayscale 0.2, blur p=0.5 on every
  crop, no solarisation, flip. Two crops of 0.08-1 (scripts/swav_400ep_2x224_pretrain.sh; at 32 px
  solo-learn's augmentations/symmetric.yaml, blur 0.5 included); with `n_local` local crops the
  multi-crop scales, global 0.14-1 and local 0.05-0.14 (scripts/swav_400ep_pretrain.sh).
- ``mira``: the MIRA authors' code (github.com/movinghoon/MIRA, src/loader.py). At <= 32 px
  without local crops their CIFARTransform: crop 0.2-1, jitter (0.4, 0.4, 0.2, 0.1) p=0.8,
  grayscale 0.2, no blur, solarize 0.2 on view 2. Otherwise their DINOTransform (DINO's, as
  the paper's Sec. 4.1 says): BYOL's asymmetric global crops at 0.14-1 and `n_local` local crops
  at 0.05-0.14 with blur 0.5 (blur dropped at <= 32 px, as their CIFAR transform drops it).
- ``simsiam``: Chen & He, 2021, Sec. 4 / the authors' main_simsiam.py (MoCo v2's): crop 0.2-1,
  jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale 0.2, blur p=0.5 above 32 px, flip, both views alike.
- ``multicrop``: DINO as the hydes paper uses it (Sec. III: "a similar augmentation recipe
  as DINO", 2 global views of 40-100%, 6 local views of 5-40%): the two BYOL-asymmetric
  global crops at image_size plus `n_local` crops at `local_size` (default
  round(image_size * 96 / 224), DINO's 96 of 224) with blur p=0.5.
- ``lejepa``: LeJEPA (Balestriero & LeCun, 2025; Sec. 6.1 and the authors' README): DINO's
  colour, blur and solarisation on 2 global crops of 30-100% and `n_local` = 6 local crops of
  5-30% at `local_size` (default DINO's 96 of 224).
- ``twinturbo``: the twinturbo paper, App. B: "resizing, cropping, horizontal flip (if not
  altering the semantic content of the image), colour jitter, grey scale, Gaussian blur and
  solarisation", parameters from DINOv2 (footnote 9). View 0 is the image itself (centre
  resize: the x of L_augment, Eq. 27), view 1 its augmented copy x*: DINOv2's second global
  crop (scale 0.32-1, flip, jitter (0.4, 0.4, 0.2, 0.1) p=0.8, grayscale 0.2, blur 0.1,
  solarize 0.2). Its 28/32 px images go to the backbone's 224 bilinearly (Table 1), so
  build it with image_size=224; pass flip_p=0 for digits and text. DINOv2's code applies
  its blur with probability 1 - p (dinov2 PR #411); we use the stated p.
- ``smi``: the smi paper, App. A.1.2 and Table 4, both views alike. At <= 32 px (CIFAR): crop
  0.2-1, flip, jitter (0.4, 0.4, 0.2, 0.1), grayscale, GaussianBlur, no solarisation (Table 4's
  "No" is its Solarization column). Above 32 px its ImageNette/ImageWoof row: crop 0.08-1,
  saturation 0.4, solarize 0.2. The text lost the probabilities: jitter 0.8 and grayscale 0.2
  are ours (its A.1.1 points at Barlow Twins'); GaussianBlur is named with no probability (unlike
  the others, whose lost values leave "()"), read as torchvision's GaussianBlur, applied always
  with sigma 0.1-2 (`SMI_BLUR_P`, our reading).
- ``plain``: the centre square resized to image_size, nothing random (evaluation).
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .augment import (
    Draws, _batch, _generator, _rgb, center_resize, check_probability, check_range, check_size, color_jitter, gaussian_blur,
    grayscale, horizontal_flip, random_resized_crop, solarize, to_float_images,
)

Tensor = torch.Tensor
SMALL_IMAGE = 32  # at or below this side a view set takes its source's CIFAR setting (module docstring)
PHOTOMETRIC_DRAWS = 9  # jitter: apply + 4 factors; grayscale 1; blur: apply + sigma; solarize 1
SMI_BLUR_P = 1.0  # smi paper App. A.1.2 names GaussianBlur with no probability: torchvision's, always on


@dataclass(frozen=True)
class ViewSpec:
    """How to draw one view. The defaults do nothing: ViewSpec(size) is the plain centre view.

    `scale=None` takes the centre square instead of a random resized crop. Probabilities:
    `flip_p`, `jitter_p` (for the whole colour jitter), `grayscale_p`, `blur_p`, `solarize_p`.
    """

    size: int
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    jitter_p: float = 0.0
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5

    def __post_init__(self):
        check_size(self.size)
        if self.scale is not None:
            object.__setattr__(self, "scale", check_range("scale", self.scale, 0.0, 1.0, "(0.08, 1.0)"))
        object.__setattr__(self, "ratio", check_range("ratio", self.ratio, 0.0, float("inf"), "(3/4, 4/3)"))
        object.__setattr__(self, "blur_sigma", check_range("blur_sigma", self.blur_sigma, 0.0, float("inf"), "(0.1, 2.0)"))
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            check_probability(name, getattr(self, name))
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"`{name}` must be a non-negative jitter strength, got {value!r}.")
        if not isinstance(self.hue, (int, float)) or not 0 <= self.hue <= 0.5:
            raise ValueError(f"`hue` must be in [0, 0.5] (turns of the colour wheel), got {self.hue!r}.")


ViewSet = list[ViewSpec]


@torch.no_grad()
def make_view(images, spec: ViewSpec, generator: torch.Generator | None = None) -> Tensor:
    """One view of a batch: float (N, 3, spec.size, spec.size) in [0, 1] on the images' device."""
    g = _generator(generator)
    if spec.scale is None:
        x = horizontal_flip(center_resize(images, spec.size), spec.flip_p, generator=g)
    else:
        x = random_resized_crop(images, spec.size, spec.scale, spec.ratio, flip_p=spec.flip_p, generator=g)
    return photometric(x, spec, g)


@torch.no_grad()
def photometric(x: Tensor, spec: ViewSpec, generator: torch.Generator | Draws | None = None) -> Tensor:
    """The colour half of a view, on a batch already cropped to spec.size (the streaming source crops at
    decode time): jitter -> grayscale -> blur -> solarize, at most PHOTOMETRIC_DRAWS draws per sample."""
    g = _generator(generator)
    x = _rgb(_batch(x))
    x = color_jitter(x, spec.brightness, spec.contrast, spec.saturation, spec.hue, spec.jitter_p, generator=g)
    x = grayscale(x, spec.grayscale_p, generator=g)
    x = gaussian_blur(x, spec.blur_sigma, spec.blur_p, generator=g)
    return solarize(x, spec.solarize_p, spec.solarize_threshold, generator=g)


@torch.no_grad()
def make_views(images: Tensor, views: Sequence[ViewSpec], generator: torch.Generator | None = None) -> list[Tensor]:
    """One tensor per ViewSpec of `views` (see `get_view_set`), all drawn from `generator`.

    `images`: uint8 (N, H, W, C) or float (N, C, H, W) in [0, 1], C = 1 or 3, on any device;
    converted once and shared by the views. Same generator state, same views.
    """
    if isinstance(views, ViewSpec):
        views = [views]
    if isinstance(views, str) or not isinstance(views, Sequence) or not views \
            or not all(isinstance(s, ViewSpec) for s in views):
        raise ValueError("`views` must be a non-empty list of ViewSpec; build one with get_view_set(name, image_size) "
                         f"(names: {', '.join(VIEW_SETS)}).")
    g = _generator(generator)
    x = to_float_images(images, channels=None)
    return [make_view(x, spec, g) for spec in views]


# ---------------------------------------------------------------- view sets

def _byol_pair(size: int, scale: tuple[float, float]) -> ViewSet:
    """BYOL Table 6 (and DINO's global crops): shared crop/jitter/grey, asymmetric blur and solarize."""
    blur = size > SMALL_IMAGE
    base = ViewSpec(size, scale=scale, flip_p=0.5, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                    jitter_p=0.8, grayscale_p=0.2)
    return [dataclasses.replace(base, blur_p=1.0 if blur else 0.0),
            dataclasses.replace(base, blur_p=0.1 if blur else 0.0, solarize_p=0.2)]


def simclr(image_size: int, strength: float | None = None) -> ViewSet:
    s = (0.5 if image_size <= SMALL_IMAGE else 1.0) if strength is None else strength
    spec = ViewSpec(image_size, scale=(0.08, 1.0), flip_p=0.5, brightness=0.8 * s, contrast=0.8 * s,
                    saturation=0.8 * s, hue=min(0.5, 0.2 * s), jitter_p=0.8, grayscale_p=0.2,
                    blur_p=0.5 if image_size > SMALL_IMAGE else 0.0)
    return [spec, spec]


def byol(image_size: int) -> ViewSet:
    return _byol_pair(image_size, (0.08, 1.0))


def vicreg(image_size: int) -> ViewSet:
    if image_size > SMALL_IMAGE:
        return byol(image_size)
    spec = ViewSpec(image_size, scale=(0.2, 1.0), flip_p=0.5, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                    jitter_p=0.8, grayscale_p=0.2, solarize_p=0.1)
    return [spec, spec]


def _check_local(image_size: int, n_local: int, local_size: int | None) -> int:
    """The local crops' side (default DINO's 96 of 224), after checking both options."""
    if isinstance(n_local, bool) or not isinstance(n_local, int) or n_local < 0:
        raise ValueError(f"`n_local` must be a non-negative int (number of local crops), got {n_local!r}.")
    local_size = max(1, round(image_size * 96 / 224)) if local_size is None else check_size(local_size)
    if local_size > image_size:
        raise ValueError(f"local crops of {local_size} px are larger than the {image_size} px global ones; "
                         f"set local_size (data.view_options.local_size) to at most {image_size}, DINO's ratio is 96/224.")
    return local_size


def _with_locals(globals_: ViewSet, image_size: int, n_local: int, local_size: int | None,
                 scale: tuple[float, float]) -> ViewSet:
    """DINO's local crops: the first global view's colour, blur 0.5 (none at <= 32 px), no solarisation."""
    size = _check_local(image_size, n_local, local_size)
    if not n_local:
        return globals_
    local = dataclasses.replace(globals_[0], size=size, scale=scale, solarize_p=0.0,
                                blur_p=0.5 if image_size > SMALL_IMAGE else 0.0)
    return globals_ + [local] * n_local


def mira(image_size: int, n_local: int = 0, local_size: int | None = None) -> ViewSet:
    if image_size <= SMALL_IMAGE and not n_local:  # the authors' CIFARTransform
        return _byol_pair(image_size, (0.2, 1.0))
    return _with_locals(_byol_pair(image_size, (0.14, 1.0)), image_size, n_local, local_size, (0.05, 0.14))


def swav(image_size: int, n_local: int = 0, local_size: int | None = None) -> ViewSet:
    size = _check_local(image_size, n_local, local_size)
    spec = ViewSpec(image_size, scale=(0.14, 1.0) if n_local else (0.08, 1.0), flip_p=0.5, brightness=0.8,
                    contrast=0.8, saturation=0.8, hue=0.2, jitter_p=0.8, grayscale_p=0.2, blur_p=0.5)
    if not n_local:
        return [spec, spec]
    local = dataclasses.replace(spec, size=size, scale=(0.05, 0.14))
    return [spec, spec] + [local] * n_local


def simsiam(image_size: int) -> ViewSet:
    spec = ViewSpec(image_size, scale=(0.2, 1.0), flip_p=0.5, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                    jitter_p=0.8, grayscale_p=0.2, blur_p=0.5 if image_size > SMALL_IMAGE else 0.0)
    return [spec, spec]


def multicrop(image_size: int, n_local: int = 6, local_size: int | None = None) -> ViewSet:
    return _with_locals(_byol_pair(image_size, (0.4, 1.0)), image_size, n_local, local_size, (0.05, 0.4))


def lejepa(image_size: int, n_local: int = 6, local_size: int | None = None) -> ViewSet:
    return _with_locals(_byol_pair(image_size, (0.3, 1.0)), image_size, n_local, local_size, (0.05, 0.3))


def twinturbo(image_size: int) -> ViewSet:
    augmented = _byol_pair(image_size, (0.32, 1.0))[1]
    return [ViewSpec(image_size), augmented]


def smi(image_size: int) -> ViewSet:
    cifar = image_size <= SMALL_IMAGE  # Table 4: CIFAR at 32 px, ImageNette/ImageWoof at 160
    spec = ViewSpec(image_size, scale=(0.2, 1.0) if cifar else (0.08, 1.0), flip_p=0.5, brightness=0.4, contrast=0.4,
                    saturation=0.2 if cifar else 0.4, hue=0.1, jitter_p=0.8, grayscale_p=0.2, blur_p=SMI_BLUR_P,
                    solarize_p=0.0 if cifar else 0.2)
    return [spec, spec]


def plain(image_size: int) -> ViewSet:
    return [ViewSpec(image_size)]


VIEW_SETS: dict[str, Callable[..., ViewSet]] = {
    "simclr": simclr, "byol": byol, "barlow": byol, "vicreg": vicreg, "mira": mira, "swav": swav, "simsiam": simsiam,
    "multicrop": multicrop, "lejepa": lejepa, "smi": smi, "twinturbo": twinturbo, "plain": plain,
}
_FIELDS = {f.name for f in dataclasses.fields(ViewSpec)} - {"size"}


def get_view_set(name: str, image_size: int, **overrides) -> ViewSet:
    """The named view set (see the module docstring) for square views of side `image_size`.

    `overrides` are the view set's own options (simclr: strength; multicrop, mira, swav: n_local,
    local_size) or ViewSpec fields, which replace that field in every view (e.g. flip_p=0).
    """
    if name not in VIEW_SETS:
        raise ValueError(f"unknown view set {name!r}; choose one of: {', '.join(VIEW_SETS)}.")
    check_size(image_size)
    builder = VIEW_SETS[name]
    options = set(inspect.signature(builder).parameters) - {"image_size"}
    unknown = set(overrides) - options - _FIELDS
    if unknown:
        raise ValueError(f"unknown override(s) {sorted(unknown)} for view set {name!r}; its options: "
                         f"{sorted(options) or 'none'}; ViewSpec fields: {sorted(_FIELDS)} (view sizes come from image_size).")
    views = builder(image_size, **{k: v for k, v in overrides.items() if k in options})
    fields = {k: v for k, v in overrides.items() if k not in options}
    return [dataclasses.replace(spec, **fields) for spec in views] if fields else views
