"""Batched augmentation ops and view sets: exact identities, reproducibility, input checks."""
from __future__ import annotations

import colorsys
import math

import pytest
import torch
import torch.nn.functional as F

from infomax.data import augment as A
from infomax.data.views import VIEW_SETS, ViewSpec, get_view_set, make_views


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def uint8_batch(n: int = 8, size: int = 40, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, size, size, channels), dtype=torch.uint8, generator=gen(seed))


def smooth_batch(n: int = 4, size: int = 64) -> torch.Tensor:
    """Float (n, 3, size, size) of low-frequency sinusoids in [0, 1]."""
    t = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    phases = torch.arange(n * 3, dtype=torch.float32).view(n, 3, 1, 1)
    return 0.5 + 0.4 * torch.sin(2 * math.pi * (1.3 * xx + 0.7 * yy) + phases)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---------------------------------------------------------------- reproducibility and output contract

def test_same_seed_same_views_different_seed_different_views():
    images, recipe = uint8_batch(), get_view_set("byol", 40)
    first, again, other = (make_views(images, recipe, gen(s)) for s in (7, 7, 8))
    for a, b, c in zip(first, again, other):
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)


def test_global_generator_used_when_none_given():
    images, recipe = uint8_batch(), get_view_set("simclr", 32)
    torch.manual_seed(3)
    first = make_views(images, recipe)
    torch.manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(first, make_views(images, recipe)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(VIEW_SETS))
def test_every_view_set_gives_float_rgb_views_in_unit_range(name, device):
    recipe = get_view_set(name, 40)
    views = make_views(uint8_batch(n=6).to(device), recipe, gen())
    assert len(views) == len(recipe)
    for v, spec in zip(views, recipe):
        assert v.shape == (6, 3, spec.size, spec.size)
        assert v.dtype == torch.float32 and v.device.type == device
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_same_seed_same_views_on_cpu_and_gpu():
    images, recipe = uint8_batch(), get_view_set("multicrop", 48, n_local=2)
    on_cpu = make_views(images, recipe, gen(1))
    on_gpu = make_views(images.cuda(), recipe, gen(1))
    for a, b in zip(on_cpu, on_gpu):
        torch.testing.assert_close(b.cpu(), a, atol=2e-3, rtol=0)  # cuDNN may blur in TF32


def test_parameters_differ_between_samples_of_a_batch():
    one = uint8_batch(n=1, size=48)
    repeated = one.expand(16, -1, -1, -1).contiguous()
    spec = ViewSpec(32, scale=(0.08, 1.0), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, jitter_p=1.0)
    view, = make_views(repeated, [spec], gen())
    rows = view.flatten(1)
    distinct = {tuple(r[:50].tolist()) for r in rows}
    assert len(distinct) == 16
    boxes = A.crop_boxes(16, 48, 48, generator=gen())
    assert len(set(boxes[:, 2].tolist())) == 16


def test_uint8_nhwc_and_float_nchw_give_the_same_views():
    images = uint8_batch()
    as_float = images.permute(0, 3, 1, 2).float() / 255
    recipe = get_view_set("simclr", 40)
    for a, b in zip(make_views(images, recipe, gen(2)), make_views(as_float, recipe, gen(2))):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["simclr", "byol", "multicrop", "plain"])
def test_grey_batch_gives_grey_rgb_views(name):
    grey = uint8_batch(channels=1)
    for v in make_views(grey, get_view_set(name, 40), gen()):
        assert v.shape[1] == 3
        torch.testing.assert_close(v[:, 0], v[:, 1], atol=1e-5, rtol=0)
        torch.testing.assert_close(v[:, 0], v[:, 2], atol=1e-5, rtol=0)


def test_to_float_images_layouts_and_channels():
    images = uint8_batch(n=2, size=5)
    x = A.to_float_images(images)
    assert x.shape == (2, 3, 5, 5) and x.is_contiguous()
    torch.testing.assert_close(x[1, 2, 3, 4], images[1, 3, 4, 2].float() / 255)
    grey = A.to_float_images(uint8_batch(n=2, size=5, channels=1))
    assert grey.shape == (2, 3, 5, 5) and torch.equal(grey[:, 0], grey[:, 2])
    assert A.to_float_images(uint8_batch(n=2, size=5, channels=1), channels=None).shape == (2, 1, 5, 5)


# ---------------------------------------------------------------- geometry

def test_full_crop_with_unit_ratio_is_a_plain_resize_when_upsampling():
    x = smooth_batch(size=16)
    crop = A.random_resized_crop(x, 24, scale=(1, 1), ratio=(1, 1), generator=gen())
    resized = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(crop, resized, atol=1e-5, rtol=0)
    torch.testing.assert_close(A.center_resize(x, 24), resized, atol=1e-5, rtol=0)


def test_full_crop_matches_antialiased_resize_when_downsampling():
    x = smooth_batch(size=96)
    crop = A.random_resized_crop(x, 32, scale=(1, 1), ratio=(1, 1), generator=gen())
    assert (crop - A.center_resize(x, 32)).abs().max() < 0.02


def test_antialias_removes_checkerboard_aliasing():
    board = ((torch.arange(48).view(-1, 1) + torch.arange(48)) % 2).float().expand(2, 3, 48, 48)
    smooth = A.random_resized_crop(board, 16, scale=(1, 1), ratio=(1, 1), generator=gen())
    aliased = A.random_resized_crop(board, 16, scale=(1, 1), ratio=(1, 1), antialias=False, generator=gen())
    assert float(aliased.std()) > 0.4
    assert float(smooth.std()) < 0.1
    torch.testing.assert_close(smooth.mean(), torch.tensor(0.5), atol=0.02, rtol=0)


def test_crop_boxes_follow_scale_and_ratio_and_stay_inside():
    boxes = A.crop_boxes(2000, 30, 50, scale=(0.2, 0.6), ratio=(0.5, 2.0), generator=gen())
    x0, y0, w, h = boxes.unbind(1)
    area = w * h / (30 * 50)
    assert float(area.min()) >= 0.2 - 1e-9 and float(area.max()) <= 0.6 + 1e-9
    aspect = w / h
    assert float(aspect.min()) >= 0.5 - 1e-9 and float(aspect.max()) <= 2.0 + 1e-9
    assert float(x0.min()) >= 0 and float((x0 + w).max()) <= 50 + 1e-9
    assert float(y0.min()) >= 0 and float((y0 + h).max()) <= 30 + 1e-9


def test_crop_falls_back_to_the_centre_when_nothing_fits():
    boxes = A.crop_boxes(4, 10, 100, scale=(0.9, 1.0), ratio=(1.0, 1.0), generator=gen())
    torch.testing.assert_close(boxes, torch.tensor([[45.0, 0.0, 10.0, 10.0]], dtype=torch.float64).expand(4, 4))


@pytest.mark.parametrize("height, width, scale, ratio", [(375, 500, (0.08, 1.0), (3 / 4, 4 / 3)),
                                                        (10, 100, (0.9, 1.0), (1.0, 1.0)), (30, 50, (0.2, 0.6), (0.5, 2.0))])
def test_the_streaming_box_rule_is_crop_boxes_on_the_same_uniforms(height, width, scale, ratio):
    for seed in range(200):  # crop_boxes draws 10 areas, 10 log-ratios, then 2 offsets: rand(22) in one go
        u = torch.rand(A.BOX_DRAWS, generator=gen(seed), dtype=torch.float64)
        expected = A.crop_boxes(1, height, width, scale, ratio, generator=gen(seed))[0]
        got = torch.tensor(A.crop_box(u.tolist(), height, width, scale, ratio), dtype=torch.float64)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-9)


def test_crop_of_a_quadrant_reads_that_quadrant():
    x = torch.zeros(1, 3, 8, 8)
    x[..., :4, 4:] = 1.0  # top-right quadrant
    out = A.resample_boxes(x, torch.tensor([[4.0, 0.0, 4.0, 4.0]]), 4)
    assert torch.equal(out, torch.ones(1, 3, 4, 4))


def test_horizontal_flip_with_p_one_is_torch_flip():
    x = smooth_batch()
    torch.testing.assert_close(A.horizontal_flip(x, 1.0, generator=gen()), torch.flip(x, dims=[-1]), atol=0, rtol=0)
    assert torch.equal(A.horizontal_flip(x, 0.0, generator=gen()), x)
    folded = A.random_resized_crop(x, 64, scale=(1, 1), ratio=(1, 1), flip_p=1.0, generator=gen())
    torch.testing.assert_close(folded, torch.flip(x, dims=[-1]), atol=1e-5, rtol=0)


DRAWS = 50_000  # 2 x 2 images: each op is one batched call, so many draws are cheap


def hoeffding_interval(n, p, delta=1e-6):
    """n Bernoulli(p) draws give a count outside n p +- t with probability below delta (Hoeffding)."""
    t = math.sqrt(n * math.log(2 / delta) / 2)
    return n * p - t, n * p + t


def rows_equal(a, b, atol=1e-6):
    return ((a - b).abs().flatten(1) <= atol).all(1)


PROBABILITY_OPS = {  # the op at probability p, and what an applied row becomes (None: anything else)
    "flip": (lambda x, p, g: A.horizontal_flip(x, p, generator=g), lambda x: x.flip(-1)),
    "crop_flip": (lambda x, p, g: A.random_resized_crop(x, 2, scale=(1, 1), ratio=(1, 1), flip_p=p, generator=g),
                  lambda x: x.flip(-1)),
    "jitter": (lambda x, p, g: A.color_jitter(x, 0.4, 0, 0, 0, p=p, generator=g), None),
    "grayscale": (lambda x, p, g: A.grayscale(x, p, generator=g), lambda x: A.luma(x).expand_as(x)),
    "blur": (lambda x, p, g: A.gaussian_blur(x, (1.0, 2.0), p, generator=g), None),
    "solarize": (lambda x, p, g: A.solarize(x, p, threshold=0.0, generator=g), lambda x: 1 - x),
}


# the recipes' probabilities; a true p fails with probability < 1e-6, one scaled by 0.6
# (0.1 -> 0.06, the closest case) passes with probability < 1e-30
@pytest.mark.parametrize("op, p", [("flip", 0.5), ("crop_flip", 0.5), ("jitter", 0.8), ("grayscale", 0.2),
                                   ("blur", 0.5), ("blur", 0.1), ("solarize", 0.2)])
def test_ops_apply_with_their_probability_and_keep_the_other_rows(op, p):
    x = 0.1 + 0.8 * torch.rand(DRAWS, 3, 2, 2, generator=gen(1))
    apply, applied = PROBABILITY_OPS[op]
    out = apply(x, p, gen())
    kept = rows_equal(out, x)
    if applied is not None:
        assert torch.all(rows_equal(out, applied(x)) ^ kept)
    low, high = hoeffding_interval(DRAWS, p)
    assert low <= int((~kept).sum()) <= high


def test_center_resize_takes_the_central_square():
    x = torch.zeros(1, 3, 10, 30)
    x[..., 10:20] = 1.0
    assert torch.equal(A.center_resize(x, 10), torch.ones(1, 3, 10, 10))


# ---------------------------------------------------------------- colour, blur, solarize

def test_grayscale_equals_the_bt601_luma_in_every_channel():
    x = smooth_batch()
    out = A.grayscale(x, 1.0, generator=gen())
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[:, c], expected, atol=1e-6, rtol=0)


def test_solarize_threshold_above_max_is_identity_and_zero_threshold_inverts():
    x = smooth_batch()
    assert torch.equal(A.solarize(x, 1.0, threshold=1.01, generator=gen()), x)
    torch.testing.assert_close(A.solarize(x, 1.0, threshold=0.0, generator=gen()), 1 - x, atol=0, rtol=0)


def test_blur_keeps_a_constant_image_and_reduces_noise_variance():
    constant = torch.full((3, 3, 40, 40), 0.3)
    torch.testing.assert_close(A.gaussian_blur(constant, p=1.0, generator=gen()), constant, atol=1e-6, rtol=0)
    noise = torch.rand(6, 3, 40, 40, generator=gen(1))
    blurred = A.gaussian_blur(noise, sigma=(1.0, 2.0), p=1.0, generator=gen())
    assert torch.all(blurred.var(dim=(1, 2, 3)) < 0.5 * noise.var(dim=(1, 2, 3)))
    torch.testing.assert_close(blurred.mean(), noise.mean(), atol=5e-3, rtol=0)
    assert torch.equal(A.gaussian_blur(noise, p=0.0, generator=gen()), noise)


def test_blur_kernel_is_a_tenth_of_the_side_made_odd_and_at_least_3():
    # a tenth is SimCLR's rule (App. A); of these sizes only 23 at 224 is a number a paper gives (BYOL)
    assert [A.blur_kernel_size(s) for s in (224, 100, 96, 50, 32, 14)] == [23, 11, 9, 5, 3, 3]


def test_color_jitter_with_zero_strengths_or_p_is_identity():
    x = smooth_batch()
    assert torch.equal(A.color_jitter(x, 0, 0, 0, 0, p=1.0, generator=gen()), x)
    assert torch.equal(A.color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.0, generator=gen()), x)
    assert not torch.allclose(A.color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=1.0, generator=gen()), x)


def test_brightness_alone_scales_each_sample():
    x = smooth_batch() * 0.5
    out = A.color_jitter(x, brightness=0.5, contrast=0, saturation=0, hue=0, p=1.0, generator=gen())
    factors = (out / x).flatten(1)
    torch.testing.assert_close(factors.min(dim=1).values, factors.max(dim=1).values, atol=1e-5, rtol=0)
    assert float(factors.min()) >= 0.5 - 1e-6 and float(factors.max()) <= 1.5 + 1e-6
    assert len(set(factors[:, 0].tolist())) == x.shape[0]


def test_contrast_scales_deviations_from_the_mean_luma_and_saturation_keeps_luma():
    x = 0.25 + 0.5 * smooth_batch()  # in [0.05, 0.95] after +-40% contrast: no clamping
    out = A.color_jitter(x, brightness=0, contrast=0.4, saturation=0, hue=0, p=1.0, generator=gen())
    mean = A.luma(x).mean(dim=(1, 2, 3), keepdim=True)
    factor = ((out - mean) / (x - mean)).flatten(1)
    torch.testing.assert_close(factor.min(dim=1).values, factor.max(dim=1).values, atol=1e-3, rtol=0)
    torch.testing.assert_close(A.luma(out).mean(dim=(1, 2, 3)), mean.flatten(), atol=1e-5, rtol=0)
    saturated = A.color_jitter(x, brightness=0, contrast=0, saturation=0.8, hue=0, p=1.0, generator=gen())
    torch.testing.assert_close(A.luma(saturated), A.luma(x), atol=1e-5, rtol=0)
    assert not torch.allclose(saturated, x, atol=1e-3)


def test_hue_shift_matches_colorsys_hsv():
    x = torch.rand(3, 3, 4, 5, generator=gen(), dtype=torch.float64)
    x[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # grey: hue undefined, must stay grey
    shift = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64)
    out = A.shift_hue(x, shift)
    expected = torch.empty_like(x)
    for n in range(3):
        for i in range(4):
            for j in range(5):
                h, s, v = colorsys.rgb_to_hsv(*x[n, :, i, j].tolist())
                expected[n, :, i, j] = torch.tensor(colorsys.hsv_to_rgb((h + float(shift[n])) % 1.0, s, v))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(A.shift_hue(red, torch.tensor([1 / 3])), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1),
                               atol=1e-6, rtol=0)


def test_normalize_uses_per_channel_mean_and_std():
    x = torch.full((1, 3, 2, 2), 0.5)
    out = A.normalize(x, mean=(0.5, 0.25, 0.0), std=(1.0, 0.5, 0.25))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.0, 0.5, 2.0]))


# ---------------------------------------------------------------- recipes

def test_multicrop_gives_two_global_and_local_views_of_the_right_sizes():
    views = make_views(uint8_batch(n=4, size=32), get_view_set("multicrop", 32), gen())
    assert [v.shape[-1] for v in views] == [32, 32] + [14] * 6
    views = make_views(uint8_batch(n=4, size=32), get_view_set("multicrop", 32, n_local=2, local_size=12), gen())
    assert [tuple(v.shape) for v in views] == [(4, 3, 32, 32)] * 2 + [(4, 3, 12, 12)] * 2
    big = get_view_set("multicrop", 224)
    assert [s.size for s in big] == [224, 224] + [96] * 6
    assert big[0].scale == (0.4, 1.0) and big[2].scale == (0.05, 0.4) and big[2].blur_p == 0.5


SOLO = "solo-learn scripts/pretrain/cifar/"
MIRA_CODE = "github.com/movinghoon/MIRA src/loader.py"
# (recipe, image size, view, ViewSpec field, value, where the value is stated)
PUBLISHED = [
    ("simclr", 224, 0, "brightness", 0.8, "SimCLR App. A: s = 1, 0.8 s"),
    ("simclr", 224, 0, "blur_p", 0.5, "SimCLR App. A"),
    ("simclr", 32, 0, "brightness", 0.4, "SimCLR App. B.9: s = 0.5 on CIFAR"),
    ("simclr", 32, 0, "blur_p", 0.0, "SimCLR App. B.9: no blur on CIFAR"),
    *[(name, 224, view, field, value, "BYOL Table 6 (Barlow Twins and VICReg App. C.1 take it)")
      for name in ("byol", "barlow", "vicreg") for view, field, value in
      [(0, "blur_p", 1.0), (0, "solarize_p", 0.0), (1, "blur_p", 0.1), (1, "solarize_p", 0.2), (0, "brightness", 0.4),
       (0, "saturation", 0.2), (0, "hue", 0.1), (0, "jitter_p", 0.8), (0, "grayscale_p", 0.2), (0, "scale", (0.08, 1.0))]],
    *[(name, 32, view, field, value, SOLO + "augmentations/asymmetric.yaml")
      for name in ("byol", "barlow") for view, field, value in
      [(0, "blur_p", 0.0), (1, "blur_p", 0.0), (0, "solarize_p", 0.0), (1, "solarize_p", 0.2), (0, "scale", (0.08, 1.0))]],
    *[("vicreg", 32, view, field, value, SOLO + "vicreg.yaml") for view, field, value in
      [(0, "scale", (0.2, 1.0)), (0, "blur_p", 0.0), (1, "blur_p", 0.0), (0, "solarize_p", 0.1), (1, "solarize_p", 0.1)]],
    *[("swav", 32, view, field, value, SOLO + "augmentations/symmetric.yaml") for view, field, value in
      [(0, "brightness", 0.8), (1, "saturation", 0.8), (0, "hue", 0.2), (0, "jitter_p", 0.8), (0, "grayscale_p", 0.2),
       (0, "blur_p", 0.5), (1, "blur_p", 0.5), (1, "solarize_p", 0.0), (0, "scale", (0.08, 1.0))]],
    ("swav", 224, 1, "blur_p", 0.5, "SwAV src/multicropdataset.py PILRandomGaussianBlur(p=0.5)"),
    *[("mira", 32, view, field, value, MIRA_CODE + " CIFARTransform") for view, field, value in
      [(0, "scale", (0.2, 1.0)), (0, "blur_p", 0.0), (1, "blur_p", 0.0), (0, "solarize_p", 0.0), (1, "solarize_p", 0.2)]],
    *[("mira", 224, view, field, value, MIRA_CODE + " DINOTransform") for view, field, value in
      [(0, "scale", (0.14, 1.0)), (0, "blur_p", 1.0), (1, "blur_p", 0.1), (1, "solarize_p", 0.2)]],
    *[("simsiam", 224, 0, field, value, "SimSiam main_simsiam.py (MoCo v2's)") for field, value in
      [("scale", (0.2, 1.0)), ("saturation", 0.4), ("hue", 0.1), ("blur_p", 0.5)]],
    *[("smi", 32, 0, field, value, "smi paper App. A.1.2 / Table 4 (CIFAR)") for field, value in
      [("scale", (0.2, 1.0)), ("saturation", 0.2), ("solarize_p", 0.0), ("blur_p", 1.0)]],
    *[("smi", 160, 1, field, value, "smi paper App. A.1.2 / Table 4 (ImageNette, ImageWoof)") for field, value in
      [("scale", (0.08, 1.0)), ("saturation", 0.4), ("solarize_p", 0.2), ("blur_p", 1.0)]],
    ("twinturbo", 224, 1, "scale", (0.32, 1.0), "DINOv2's second global crop (twinturbo paper, footnote 9)"),
    ("twinturbo", 224, 1, "solarize_p", 0.2, "DINOv2's second global crop"),
]


@pytest.mark.parametrize("name, size, view, field, value, source", PUBLISHED)
def test_recipes_carry_the_published_parameters(name, size, view, field, value, source):
    assert getattr(get_view_set(name, size)[view], field) == value, source


def test_multi_crop_scales_are_their_sources():
    mira_views = get_view_set("mira", 224, n_local=6)  # the MIRA authors' DINOTransform(num_local_crops=6)
    assert [v.size for v in mira_views] == [224, 224] + [96] * 6
    assert mira_views[0].scale == (0.14, 1.0) and mira_views[2].scale == (0.05, 0.14) and mira_views[2].blur_p == 0.5
    swav_views = get_view_set("swav", 224, n_local=6)  # SwAV scripts/swav_400ep_pretrain.sh
    assert swav_views[0].scale == (0.14, 1.0) and swav_views[2].scale == (0.05, 0.14) and swav_views[2].size == 96
    assert get_view_set("plain", 32) == [ViewSpec(32)] and get_view_set("twinturbo", 224)[0] == ViewSpec(224)


def test_overrides_replace_fields_in_every_view():
    recipe = get_view_set("byol", 64, flip_p=0.0, solarize_p=0.0)
    assert all(s.flip_p == 0.0 and s.solarize_p == 0.0 for s in recipe)
    assert get_view_set("simclr", 32, strength=1.0)[0].brightness == 0.8


def test_plain_recipe_is_the_centre_resize():
    images = uint8_batch(size=48)
    view, = make_views(images, get_view_set("plain", 32), gen())
    torch.testing.assert_close(view, A.center_resize(A.to_float_images(images), 32), atol=0, rtol=0)


# ---------------------------------------------------------------- input checks

@pytest.mark.parametrize("images, match", [
    (torch.zeros(32, 32, 3, dtype=torch.uint8), r"batch.*images\[None\]"),
    (torch.zeros(2, 8, 8, 4, dtype=torch.uint8), r"C = 1 or 3.*alpha"),
    (torch.zeros(2, 8, 8, 3), r"C = 1 or 3.*permute"),
    (torch.zeros(2, 2, 8, 8), r"C = 1 or 3"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), r"C = 1 or 3.*permute\(0, 2, 3, 1\)"),
    (torch.full((2, 3, 8, 8), 255.0), r"\[0, 1\].*divide"),
    (torch.zeros(2, 8, 8, 3, dtype=torch.int64), r"dtype.*convert"),
    ([[0]], r"torch.Tensor"),
])
def test_bad_images_raise_value_errors_naming_the_fix(images, match):
    with pytest.raises(ValueError, match=match):
        make_views(images, get_view_set("simclr", 8), gen())


def test_bad_view_sets_and_parameters_raise_value_errors_naming_the_fix():
    images = uint8_batch(n=2, size=8)
    with pytest.raises(ValueError, match=r"unknown view set 'simclrr'.*choose one of: simclr"):
        get_view_set("simclrr", 32)
    with pytest.raises(ValueError, match=r"unknown override.*'flip'.*ViewSpec fields"):
        get_view_set("simclr", 32, flip=0.0)
    with pytest.raises(ValueError, match=r"get_view_set"):
        make_views(images, "simclr", gen())
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match=r"`size` must be a positive int"):
            get_view_set("simclr", bad)
        with pytest.raises(ValueError, match=r"`size` must be a positive int"):
            A.random_resized_crop(images, bad, generator=gen())
    for scale in ((0.0, 1.0), (0.5, 1.2), (0.8, 0.2), (-0.1, 0.5)):
        with pytest.raises(ValueError, match=r"`scale` must satisfy 0 < low <= high <= 1.*e\.g\. \(0\.08, 1\.0\)"):
            ViewSpec(32, scale=scale)
        with pytest.raises(ValueError, match=r"`scale`"):
            A.random_resized_crop(images, 8, scale=scale, generator=gen())
    with pytest.raises(ValueError, match=r"`blur_p` must be a probability"):
        ViewSpec(32, blur_p=1.5)
    with pytest.raises(ValueError, match=r"`hue` must be in \[0, 0.5\]"):
        A.color_jitter(images, hue=0.7, generator=gen())
    with pytest.raises(ValueError, match=r"CPU torch.Generator"):
        make_views(images, get_view_set("plain", 8), generator=0)
    with pytest.raises(ValueError, match=r"`n_local`"):
        get_view_set("multicrop", 32, n_local=-1)
