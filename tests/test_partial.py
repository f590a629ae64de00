"""models/partial.py: an encoder cut into a frozen trunk and a trainable tail gives the whole network's
output exactly, the trunk's fingerprint ignores the tail, and bad cuts are refused naming the blocks."""
import pytest
import torch

from infomax.models import build_encoder
from infomax.models.base import fingerprint
from infomax.models.partial import split

CUTS = [("convnet", {"width": 8}, "block2", 32), ("resnet18", {"cifar_stem": True}, "layer3", 32),
        ("efficientnet-lite0", {"pretrained": False}, "block11", 64), ("efficientnet-lite0", {"pretrained": False}, "head", 64)]


@pytest.mark.parametrize("name,options,block,size", CUTS)
def test_trunk_then_tail_is_the_whole_network(name, options, block, size):
    encoder = build_encoder(name, **options).eval()
    images = torch.rand(3, 3, size, size)
    trunk, tail = split(encoder, block, size)
    with torch.no_grad():
        whole, parts = encoder(images).pooled, tail(trunk(images).pooled).pooled
    assert trunk(images).pooled.shape == (3, trunk.dim)
    torch.testing.assert_close(parts, whole, rtol=0, atol=0)


@pytest.mark.parametrize("name,options,block,size", CUTS[:3])
def test_only_the_tail_trains_and_the_trunk_fingerprint_ignores_it(name, options, block, size):
    encoder = build_encoder(name, **options)
    trunk, tail = split(encoder, block, size)
    before = fingerprint(trunk)
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    assert 0 < len(trainable) < len(list(encoder.parameters()))
    with torch.no_grad():
        for p in trainable:
            p.add_(1.0)
    assert fingerprint(trunk) == before
    with torch.no_grad():
        next(p for p in encoder.parameters() if not p.requires_grad).add_(1.0)
    assert fingerprint(trunk) != before


def test_the_trunk_runs_in_eval_mode_and_leaves_running_statistics_alone():
    encoder = build_encoder("convnet", width=8).train()
    trunk, _ = split(encoder, "block2", 32)
    stats = {k: v.clone() for k, v in encoder.state_dict().items() if "running" in k}
    trunk(torch.rand(4, 3, 32, 32))
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in stats.items())
    assert encoder.training


def test_bad_cuts_name_the_blocks():
    with pytest.raises(ValueError, match="its blocks, in order: block0, block1, block2, block3"):
        split(build_encoder("convnet", width=8), "block9", 32)
    with pytest.raises(ValueError, match="freezes nothing"):
        split(build_encoder("convnet", width=8), "block0", 32)
    with pytest.raises(ValueError, match="cannot be cut"):
        split(build_encoder("vit-tiny"), "block1", 32)


def test_the_tail_refuses_activations_of_another_shape():
    trunk, tail = split(build_encoder("convnet", width=8), "block2", 32)
    with pytest.raises(ValueError, match="flattened activations"):
        tail(torch.rand(2, trunk.dim + 1))
