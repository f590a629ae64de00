"""Encoders (shapes, normalisation, checkpoints, fingerprints), heads and EMA."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from infomax.models import (
    EMA, ENCODERS, MLP, PROJECTORS, Encoder, PrototypeHead, build_encoder, cosine_momentum, fingerprint,
    load_encoder, predictor, projector, save_encoder,
)
from infomax.models.vit import ViT

# (name, options, input side, expected token count, pooled dim)
SHAPES = [
    ("resnet18", {}, 224, 49, 512),
    ("resnet18", {}, 32, 1, 512),
    ("resnet18", {"cifar_stem": True}, 32, 16, 512),
    ("resnet50", {"cifar_stem": True}, 32, 16, 2048),
    ("resnet50", {}, 64, 4, 2048),
    ("vit-tiny", {"patch_size": 4, "image_size": 32}, 32, 64, 192),
    ("vit-tiny", {"patch_size": 4, "image_size": 32}, 64, 256, 192),
    ("vit-tiny", {}, 224, 196, 192),
    ("vit-small", {}, 32, 4, 384),
    ("convnet", {}, 32, 16, 256),
    ("convnet", {"width": 8}, 64, 64, 64),
    ("efficientnet-lite0", {"pretrained": False}, 224, 49, 1280),
    ("efficientnet-lite0", {"pretrained": False}, 32, 1, 1280),
]


@pytest.fixture(scope="module")
def convnet() -> Encoder:
    torch.manual_seed(0)
    return build_encoder("convnet", width=8).eval()


@pytest.mark.parametrize("name,options,side,tokens,dim", SHAPES)
def test_encoder_shapes(name, options, side, tokens, dim):
    encoder = build_encoder(name, **options).eval()
    with torch.no_grad():
        out = encoder(torch.rand(2, 3, side, side))
    assert out.pooled.shape == (2, dim) and encoder.dim == dim
    assert out.tokens.shape == (2, tokens, encoder.token_dim)
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    assert encoder.name == name and encoder.config["name"] == name


def test_every_registered_encoder_is_covered():
    assert {name for name, *_ in SHAPES} == set(ENCODERS)


REBUILDS = [
    ("resnet18", {"cifar_stem": True}),
    ("vit-tiny", {"patch_size": 8, "image_size": 32}),
    ("convnet", {"width": 4}),
    ("efficientnet-lite0", {"pretrained": False}),
]
ROUNDTRIPS = [
    ("convnet", {"width": 8}, 32),
    ("vit-tiny", {"patch_size": 8, "image_size": 32, "depth": 1}, 32),
    ("efficientnet-lite0", {"pretrained": False}, 32),
]


@pytest.mark.parametrize("name,options", REBUILDS)
def test_config_rebuilds_same_architecture(name, options):
    encoder = build_encoder(name, **options)
    rebuilt = build_encoder(**encoder.config)
    shapes = {k: v.shape for k, v in encoder.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert rebuilt.config == encoder.config


def test_cifar_stem_keeps_resolution():
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        plain = build_encoder("resnet18").eval()(x).tokens
        cifar = build_encoder("resnet18", cifar_stem=True).eval()(x).tokens
    assert plain.shape[1] == 1 and cifar.shape[1] == 16  # 32/32 = 1x1 versus 32/8 = 4x4
    assert build_encoder("resnet18", cifar_stem=True).input_size == 32


def test_resnet_pooled_is_mean_of_tokens():
    encoder = build_encoder("resnet18", cifar_stem=True).eval()
    with torch.no_grad():
        out = encoder(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))


def test_vit_position_embedding_interpolation():
    vit = ViT("vit-tiny", patch_size=4, image_size=32, depth=1)
    assert vit.position_embedding(8, 8) is vit.pos_embed  # native grid: untouched
    with torch.no_grad():
        vit.pos_embed[:, 1:] = 0.25  # a constant grid stays constant under bicubic resizing
    resized = vit.position_embedding(16, 12)
    assert resized.shape == (1, 1 + 16 * 12, 192)
    torch.testing.assert_close(resized[:, 1:], torch.full_like(resized[:, 1:], 0.25))
    torch.testing.assert_close(resized[:, 0], vit.pos_embed[:, 0])
    with torch.no_grad():
        assert vit(torch.rand(1, 3, 64, 48)).tokens.shape == (1, 16 * 12, 192)


def test_vit_tokens_are_row_major_patches_and_pooled_is_cls():
    flat = ViT("vit-tiny", patch_size=8, image_size=32, depth=0).eval()  # no attention: tokens do not mix
    x = torch.rand(1, 3, 32, 32)
    y = x.clone()
    y[..., 0:8, 24:32] = 1 - y[..., 0:8, 24:32]  # the patch in row 0, column 3
    with torch.no_grad():
        a, b = flat(x), flat(y)
    changed = (a.tokens - b.tokens).abs().amax(dim=-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == [3]
    torch.testing.assert_close(a.pooled, b.pooled)  # CLS sees no patch without attention
    deep = ViT("vit-tiny", patch_size=8, image_size=32, depth=2).eval()
    with torch.no_grad():
        assert not torch.allclose(deep(x).pooled, deep(y).pooled)
        patches = deep.patch_embed(deep.normalise(x)).flatten(2).transpose(1, 2)
        normed = deep.norm(deep.blocks(torch.cat([deep.cls_token, patches], 1) + deep.pos_embed))
    torch.testing.assert_close(deep(x).pooled, normed[:, 0])


def test_normalisation_is_applied(convnet):
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        manual = convnet.encode((x - convnet.input_mean) / convnet.input_std).pooled
        assert torch.equal(convnet(x).pooled, manual)
        shifted = copy.deepcopy(convnet)
        shifted.input_mean += 0.1
        assert not torch.allclose(shifted(x).pooled, manual)
    lite = build_encoder("efficientnet-lite0", pretrained=False)
    torch.testing.assert_close(lite.input_mean.flatten(), torch.full((3,), 127 / 255))
    torch.testing.assert_close(lite.input_std.flatten(), torch.full((3,), 128 / 255))


def test_grey_input_equals_repeated_rgb(convnet):
    grey = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(convnet(grey).pooled, convnet(grey.repeat(1, 3, 1, 1)).pooled)


@pytest.mark.parametrize(
    "images,match",
    [
        (torch.rand(3, 32, 32), r"\(N, 3, H, W\).*unsqueeze"),
        (torch.rand(2, 2, 32, 32), r"\(N, 3, H, W\)"),
        (torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), r"float\(\) / 255"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_images_raise(convnet, images, match):
    with pytest.raises(ValueError, match=match):
        convnet(images)


def test_bad_sizes_and_names_raise():
    with pytest.raises(ValueError, match="multiple of `patch_size`"):
        ViT("vit-tiny", patch_size=8, image_size=32, depth=1)(torch.rand(1, 3, 36, 36))
    with pytest.raises(ValueError, match="multiple of `patch_size`"):
        ViT("vit-tiny", patch_size=5, image_size=32)
    with pytest.raises(ValueError, match="known names: .*convnet.*resnet18.*hf:"):
        build_encoder("resnet34")
    with pytest.raises(ValueError, match="Bad options for encoder 'convnet'"):
        build_encoder("convnet", depth=3)
    with pytest.raises(ValueError, match="3 values"):
        build_encoder("convnet", mean=(0.5, 0.5))


def test_fingerprint_tracks_weights(convnet):
    twin = copy.deepcopy(convnet)
    assert fingerprint(twin) == fingerprint(convnet)
    assert len(fingerprint(convnet)) == 64
    with torch.no_grad():
        twin.features[0][0].weight[0, 0, 0, 0] += 1e-6
    assert fingerprint(twin) != fingerprint(convnet)
    twin.load_state_dict(convnet.state_dict())
    assert fingerprint(twin) == fingerprint(convnet)
    twin.features[0][1].running_var[0] += 1.0  # buffers count too
    assert fingerprint(twin) != fingerprint(convnet)
    torch.manual_seed(1)
    assert fingerprint(build_encoder("convnet", width=8)) != fingerprint(convnet)  # other random init


@pytest.mark.parametrize("name,options,side", ROUNDTRIPS)
def test_checkpoint_roundtrip(tmp_path, name, options, side):
    encoder = build_encoder(name, **options)
    encoder.train()(torch.rand(4, 3, side, side))  # move BatchNorm running stats off their init
    encoder.eval()
    path = save_encoder(encoder, tmp_path / "sub" / "enc.safetensors")
    assert [p.name for p in path.parent.iterdir()] == ["enc.safetensors"]
    for loaded in (load_encoder(path), build_encoder(str(path))):
        loaded.eval()
        assert type(loaded) is type(encoder) and loaded.config == encoder.config
        assert fingerprint(loaded) == fingerprint(encoder)
        x = torch.rand(2, 3, side, side)
        with torch.no_grad():
            a, b = encoder(x), loaded(x)
        assert torch.equal(a.pooled, b.pooled) and torch.equal(a.tokens, b.tokens)


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch, convnet):
    from pathlib import Path

    def broken(self, data):  # Ctrl-C halfway through writing the temp file
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    target = tmp_path / "enc.safetensors"
    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(KeyboardInterrupt):
        save_encoder(convnet, target)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    save_encoder(convnet, target)
    before = target.read_bytes()
    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(KeyboardInterrupt):
        save_encoder(build_encoder("convnet", width=8), target)
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]


def test_foreign_checkpoint_and_bad_paths_raise(tmp_path, convnet):
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not an infomax encoder checkpoint"):
        load_encoder(foreign)
    with pytest.raises(ValueError, match="No encoder checkpoint"):
        build_encoder(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="must end in '.safetensors'"):
        save_encoder(convnet, tmp_path / "enc.pt")


def test_mlp_structure_and_shapes():
    mlp = MLP(16, [32, 32], 8)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert mlp[0].bias is None and mlp[-1].bias is not None
    assert mlp(torch.randn(4, 16)).shape == (4, 8)
    bn_out = MLP(16, [], 8, batch_norm=False, last_batch_norm=True, activation="gelu")
    assert [type(m).__name__ for m in bn_out] == ["Linear", "BatchNorm1d"]
    with pytest.raises(ValueError, match="activation"):
        MLP(4, [4], 4, activation="tanhh")


def test_projector_defaults_and_overrides():
    assert PROJECTORS["barlow"][:2] == ((8192, 8192), 8192) and PROJECTORS["vicreg"][:2] == ((8192, 8192), 8192)
    mira = projector("mira", 64)
    widths = [m.out_features for m in mira if isinstance(m, torch.nn.Linear)]
    assert widths == [2048, 2048, 256] and isinstance(mira[-1], torch.nn.Linear)
    small = projector("barlow", 32, hidden_dim=48, out_dim=24)
    assert [m.out_features for m in small if isinstance(m, torch.nn.Linear)] == [48, 48, 24]
    simclr = projector("simclr", 32, hidden_dim=16)
    assert [m.out_features for m in simclr if isinstance(m, torch.nn.Linear)] == [16, 128]
    simsiam = projector("simsiam", 8, hidden_dim=8, out_dim=8)  # the authors' builder.py: BatchNorm1d(dim, affine=False)
    assert isinstance(simsiam[-1], torch.nn.BatchNorm1d) and not simsiam[-1].affine and simsiam[-2].bias is None
    assert projector("vicreg", 8, hidden_dim=8, out_dim=4, num_layers=4)(torch.randn(3, 8)).shape == (3, 4)
    with pytest.raises(ValueError, match="choose one of"):
        projector("moco", 8)


def test_predictor_is_linear_bn_relu_linear():
    pred = predictor(32, 16)
    assert [type(m).__name__ for m in pred] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert pred(torch.randn(4, 32)).shape == (4, 32)
    assert predictor(32, 16, 8)(torch.randn(4, 32)).shape == (4, 8)


def test_prototype_head_is_cosine_to_unit_prototypes():
    head = PrototypeHead(16, 30)
    x = torch.randn(5, 16) * 7
    scores = head(x)
    protos = head.prototypes()
    assert scores.shape == (5, 30)
    torch.testing.assert_close(protos.norm(dim=1), torch.ones(30))
    torch.testing.assert_close(scores, torch.nn.functional.cosine_similarity(x[:, None], protos[None], dim=-1))
    assert scores.abs().max() <= 1 + 1e-6 and not hasattr(head, "bias")
    with torch.no_grad():
        head.weight.mul_(5)  # rescaling the raw weight changes nothing: the norm is fixed at 1
    torch.testing.assert_close(head(x), scores)
    with pytest.raises(ValueError, match=r"\(N, 16\)"):
        head(torch.randn(5, 8))


def test_ema_update_formula():
    online = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    ema = EMA(online)
    assert all(not p.requires_grad for p in ema.parameters())
    start = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online(torch.randn(8, 4))  # changes BatchNorm buffers
    ema.update(online, momentum=1.0)
    for k, v in ema.module.named_parameters():
        assert torch.equal(v, start[f"module.{k}"])
    ema.update(online, momentum=0.9)
    for (k, v), p in zip(ema.module.named_parameters(), online.parameters()):
        torch.testing.assert_close(v, 0.9 * start[f"module.{k}"] + 0.1 * p)
    assert torch.equal(ema.module[1].running_mean, online[1].running_mean)
    ema.update(online, momentum=0.0)
    assert all(torch.equal(a, b) for a, b in zip(ema.module.state_dict().values(), online.state_dict().values()))
    assert ema(torch.randn(2, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ema.update(online, 1.5)
    with pytest.raises(ValueError, match="do not match"):
        ema.update(torch.nn.Linear(4, 3), 0.5)


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100) == pytest.approx(0.99)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    assert cosine_momentum(50, 100) == pytest.approx(0.995)
    assert cosine_momentum(500, 100) == pytest.approx(1.0)
    assert cosine_momentum(25, 100, base=0.996) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)
    values = [cosine_momentum(k, 10) for k in range(11)]
    assert values == sorted(values)
    with pytest.raises(ValueError, match="total_steps"):
        cosine_momentum(0, 0)


def test_resnet_stem_padding_2_is_solo_learns_cifar_stem_and_zero_init_zeroes_each_blocks_last_bn():
    from infomax.models.resnet import BasicBlock
    encoder = build_encoder("resnet18", cifar_stem=True, stem_padding=2, zero_init_residual=True)
    assert encoder.stem[0].padding == (2, 2)  # solo/methods/base.py: nn.Conv2d(3, 64, 3, 1, padding=2)
    out = encoder(torch.rand(1, 3, 32, 32))
    assert out.tokens.shape[1] == 5 * 5  # (32 + 4 - 3) + 1 = 34, then stride 2 three times: 17, 9, 5
    last_bns = [m.body[-1].weight for m in encoder.modules() if isinstance(m, BasicBlock)]
    assert len(last_bns) == 8 and all(bool((w == 0).all()) for w in last_bns)
