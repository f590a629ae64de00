"""Hugging Face `transformers` vision backbones (ViT, DINOv2 with or without registers, CLIP).

pooled = the CLS token of `last_hidden_state`, which is after the final LayerNorm for
ViT and DINOv2 (Oquab et al., 2024); for CLIP (Radford et al., 2021) it is
`pooler_output`, the CLS token after the post-LayerNorm, and only the vision tower is
kept. tokens = the patch tokens of `last_hidden_state` (the last (H/p)(W/p) tokens),
so CLS and register tokens (Darcet et al., 2024) are dropped. Input mean/std come from
the model's image processor config, else ImageNet's. `transformers` is imported lazily.
"""
from __future__ import annotations

import inspect
import json
from typing import Any, Sequence

from torch import Tensor, nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Encoder, EncoderOutput

HF_HINT = "pip install 'infomax[hf]'"


def _transformers():
    try:
        import transformers
    except ImportError as err:
        raise ValueError(f"Hugging Face encoders need the `transformers` package: {HF_HINT}") from err
    return transformers


def _vision_config(config):
    """CLIP-like configs carry a `vision_config`; keep only the vision tower."""
    return getattr(config, "vision_config", None) or config


def _config_dict(config) -> dict[str, Any]:
    return json.loads(config.to_json_string(use_diff=False))


def _offline_error(model_id: str, err: Exception) -> ValueError:
    return ValueError(
        f"Could not load Hugging Face model {model_id!r} ({type(err).__name__}: {err}). Run once with network "
        f"access to cache it, or download it with `hf download {model_id}` (older hubs: `huggingface-cli "
        f"download {model_id}`) and point HF_HOME at that cache (HF_HUB_OFFLINE=1 then uses it without network)."
    )


def _processor_stats(model_id: str) -> tuple[Sequence[float], Sequence[float]]:
    """image_mean / image_std from the model's preprocessor config, else ImageNet's."""
    try:
        from huggingface_hub import hf_hub_download

        with open(hf_hub_download(model_id, "preprocessor_config.json")) as fh:
            cfg = json.load(fh)
        mean, std = cfg["image_mean"], cfg["image_std"]
        if len(mean) == 3 and len(std) == 3:
            return mean, std
    except Exception:  # no processor config: fall back to ImageNet statistics
        pass
    return IMAGENET_MEAN, IMAGENET_STD


class HFEncoder(Encoder):
    """Wrap a `transformers` vision model as an `Encoder`; build with `from_pretrained` or `from_config`."""

    def __init__(
        self,
        model: nn.Module,
        model_id: str | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__(mean, std)
        config = model.config
        self.model = model
        self.model_type = config.model_type
        patch = config.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
        self.uses_pooler = "clip" in self.model_type
        params = inspect.signature(model.forward).parameters
        self._interpolate = {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in params else {}
        image_size = getattr(config, "image_size", None)
        self.name = f"hf:{model_id}" if model_id else f"hf:{self.model_type}"
        self.dim = self.token_dim = int(config.hidden_size)
        self.input_size = int(image_size) if isinstance(image_size, int) else None
        self.config = {
            "name": self.name, "hf_config": _config_dict(config),
            "mean": list(map(float, mean)), "std": list(map(float, std)),
        }

    @classmethod
    def from_config(cls, config, model_id: str | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> "HFEncoder":
        """Randomly initialised model from a `transformers` config object or its dict."""
        transformers = _transformers()
        if isinstance(config, dict):
            config = dict(config)
            if "model_type" not in config:
                raise ValueError("`hf_config` needs a 'model_type' entry, as written by PretrainedConfig.to_dict().")
            config = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        config = _vision_config(config)
        kwargs = {"add_pooling_layer": False} if config.model_type == "vit" else {}
        model = transformers.AutoModel.from_config(config, **kwargs)
        return cls(model, model_id, mean, std)

    @classmethod
    def from_pretrained(cls, model_id: str, mean=None, std=None) -> "HFEncoder":
        """Pretrained weights from the Hub or the local cache (`HF_HOME`); mean/std override the processor's."""
        transformers = _transformers()
        try:
            config = _vision_config(transformers.AutoConfig.from_pretrained(model_id))
            model_cls = transformers.MODEL_MAPPING[type(config)]
            kwargs = {"add_pooling_layer": False} if config.model_type == "vit" else {}
            model = model_cls.from_pretrained(model_id, **kwargs).float()  # some checkpoints are stored in half
        except Exception as err:  # offline, unknown id, unsupported architecture: say which and how to fix
            raise _offline_error(model_id, err) from err
        if mean is None or std is None:
            stats = _processor_stats(model_id)
            mean, std = mean or stats[0], std or stats[1]
        return cls(model, model_id, mean, std)

    def encode(self, x: Tensor) -> EncoderOutput:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"Image size {h}x{w} must be a multiple of the patch size {self.patch_size}; resize or crop the images."
            )
        out = self.model(pixel_values=x, **self._interpolate)
        hidden = out.last_hidden_state
        num_patches = (h // self.patch_size) * (w // self.patch_size)
        pooled = out.pooler_output if self.uses_pooler else hidden[:, 0]
        return EncoderOutput(pooled, hidden[:, -num_patches:])


def build_hf(model_id: str, hf_config: dict | None = None, mean=None, std=None) -> HFEncoder:
    """`hf:<model id>`: pretrained, or the architecture only when `hf_config` is given (checkpoint reload)."""
    if hf_config is None:
        return HFEncoder.from_pretrained(model_id, mean, std)
    return HFEncoder.from_config(hf_config, model_id, mean or IMAGENET_MEAN, std or IMAGENET_STD)
