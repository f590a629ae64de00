"""Backbones behind one `Encoder` contract, projection/prototype heads, and EMA teachers."""
from __future__ import annotations

from .base import IMAGENET_MEAN, IMAGENET_STD, Encoder, EncoderOutput, fingerprint
from .convnet import ConvNet
from .ema import EMA, cosine_momentum
from .efficientnet_lite import EfficientNetLite0
from .hf import HFEncoder
from .heads import MLP, PROJECTORS, PrototypeHead, predictor, projector
from .registry import ENCODERS, build_encoder, load_encoder, read_encoder_config, save_encoder
from .resnet import ResNet
from .vit import ViT

__all__ = [
    "ENCODERS", "EMA", "IMAGENET_MEAN", "IMAGENET_STD", "MLP", "PROJECTORS", "ConvNet", "EfficientNetLite0",
    "Encoder", "EncoderOutput", "HFEncoder", "PrototypeHead", "ResNet", "ViT", "build_encoder", "cosine_momentum",
    "fingerprint", "load_encoder", "predictor", "projector", "read_encoder_config", "save_encoder",
]
