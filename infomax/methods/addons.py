"""Add-on losses composed with any method: `--add NAME[:key=value,...]`.

An add-on reads one embedding the method names in its terms (`_embeddings`: "projector", the
projector output before any normalisation, or "backbone", the encoder's pooled output; one
(N, D) tensor per view, global crops first) and returns raw terms; `weights` gives each term's
signed weight, and `WithAddOns` is the one place where they are applied:
    loss = base loss + sum over add-ons and terms of weight * term,
each raw term logged as `NAME/TERM` and each add-on's weighted sum as `NAME`.

    e2mc        L_base - beta H + gamma Cov on the compact map of the two global views (E2MC Eq. 3.2-3.4,
                Alg. 1); paper weights per base method (App. A), none for other methods (give them)
    vcreg       mu * variance hinge + nu * covariance, summed over the two global views (E2MC Eq. A.1)
    uniformity  lambda * sum over the two global views of log E exp(-t ||u - v||^2) (E2MC Eq. A.2-A.4)
    mmcr        -lambda * nuclear norm of the views' mean unit embedding, over every view (E2MC Eq. A.5)
    sigreg      lambda * mean over every view of SIGReg, LeJEPA's sketched Epps-Pulley test of the
                embedding against the isotropic Gaussian (LeJEPA Alg. 1-2; lambda = 0.05, Sec. 6.1)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .._validate import full_precision
from ..distributed import gather_rows
from ..objectives.e2mc import SPACES, e2mc
from ..objectives.mmcr import mmcr
from ..objectives.sigreg import LAMBDA, SLICES, sigreg, slice_directions
from ..objectives.vicreg import covariance_penalty, variance_hinge
from ..objectives.wang_isola import uniformity
from .base import Steps

# E2MC App. A.1: (beta, gamma, compact space) for the base methods the paper continues
E2MC_PAPER = {"vicreg": (1000.0, 100.0, "hypercube"), "swav": (1.0, 25.0, "hypersphere"),
              "simsiam": (0.001, 0.01, "hypersphere")}


@dataclass
class AddOnSettings:
    name: ClassVar[str]
    embedding: str = "projector"

    def check(self, method: str, embeddings: tuple[str, ...], batch: int) -> None:
        if self.embedding not in embeddings:
            raise ValueError(f"--add {self.name}: {method} gives no {self.embedding!r} embedding; it gives "
                             f"{', '.join(embeddings)} (set embedding=... to one of them).")


@dataclass
class E2MCSettings(AddOnSettings):
    name: ClassVar[str] = "e2mc"
    beta: float | None = None  # None: the paper's weight for the base method (E2MC_PAPER)
    gamma: float | None = None
    space: str | None = None

    def check(self, method: str, embeddings: tuple[str, ...], batch: int) -> None:
        super().check(method, embeddings, batch)
        if None in (self.beta, self.gamma, self.space) and method not in E2MC_PAPER:
            raise ValueError(f"--add e2mc: the paper gives weights for {', '.join(E2MC_PAPER)} only, not {method}; "
                             "give them: --add e2mc:beta=B,gamma=G,space=hypercube|hypersphere.")
        if self.space is not None and self.space not in SPACES:
            raise ValueError(f"--add e2mc: space must be one of {', '.join(SPACES)}, got {self.space!r}.")
        if batch <= math.sqrt(batch) + 1:
            raise ValueError(f"--add e2mc: m-spacings needs a batch n > sqrt(n) + 1, got n = {batch}; raise --batch-size "
                             "(the paper uses 512).")

    def resolved(self, method: str) -> E2MCSettings:
        beta, gamma, space = E2MC_PAPER.get(method, (None, None, None))
        return dataclasses.replace(self, beta=_first(self.beta, beta), gamma=_first(self.gamma, gamma),
                                   space=self.space or space)


@dataclass
class VCRegSettings(AddOnSettings):
    name: ClassVar[str] = "vcreg"
    mu: float = 0.1  # E2MC App. A.1 (their search over [0.01, 0.1, 1, 25])
    nu: float = 0.001


@dataclass
class UniformitySettings(AddOnSettings):
    name: ClassVar[str] = "uniformity"
    weight: float = 0.5  # E2MC App. A.1: lambda = 0.5, t = 2
    t: float = 2.0

    def __post_init__(self):
        if not self.t > 0:
            raise ValueError(f"--add uniformity: t (the Gaussian potential's scale) must be positive, got {self.t}.")


@dataclass
class MMCRSettings(AddOnSettings):
    name: ClassVar[str] = "mmcr"
    weight: float = 0.005  # E2MC App. A.1


@dataclass
class SIGRegSettings(AddOnSettings):
    name: ClassVar[str] = "sigreg"
    weight: float = LAMBDA  # LeJEPA Sec. 6.1's lambda; here the base loss stands where its prediction term stood
    slices: int = SLICES

    def __post_init__(self):
        if not (isinstance(self.slices, int) and self.slices >= 1):
            raise ValueError(f"--add sigreg: slices must be a positive int, got {self.slices!r}; LeJEPA starts from 1024.")


ADDONS: dict[str, type[AddOnSettings]] = {s.name: s for s in (E2MCSettings, VCRegSettings, UniformitySettings, MMCRSettings,
                                                              SIGRegSettings)}


def _first(value, fallback):
    return fallback if value is None else value


def parse(text: str) -> dict:
    """`e2mc:beta=1,space=hypersphere` -> {"name": "e2mc", "beta": 1, "space": "hypersphere"}."""
    import yaml

    name, _, rest = text.partition(":")
    entry = {"name": name.strip()}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--add {text!r}: settings are key=value pairs after a colon, e.g. e2mc:beta=1,gamma=25.")
        entry[key.strip()] = yaml.safe_load(value)
    return entry


def terms(settings: AddOnSettings, views: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """(raw terms, their signed weights) of one add-on on one embedding's views (global batch rows)."""
    s, pair = settings, views[:2]
    if isinstance(s, E2MCSettings):
        parts = [e2mc(z, s.space) for z in pair]
        return ({"entropy": sum(p["entropy"] for p in parts), "covariance": sum(p["covariance"] for p in parts)},
                {"entropy": -s.beta, "covariance": s.gamma})
    if isinstance(s, VCRegSettings):
        parts = [_variance_covariance(z) for z in pair]
        return {"variance": sum(p[0] for p in parts), "covariance": sum(p[1] for p in parts)}, {"variance": s.mu, "covariance": s.nu}
    if isinstance(s, UniformitySettings):
        return {"uniformity": sum(uniformity(z, s.t) for z in pair)}, {"uniformity": s.weight}
    if isinstance(s, SIGRegSettings):
        directions = slice_directions(views[0].shape[1], s.slices, views[0].device)
        return {"sigreg": torch.stack([sigreg(z, directions) for z in views]).mean()}, {"sigreg": s.weight}
    return {"negative_nuclear_norm": mmcr(views)}, {"negative_nuclear_norm": s.weight}


@full_precision
def _variance_covariance(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return variance_hinge(z), covariance_penalty(z)


class WithAddOns(Steps):
    """`base` (a Method) with add-on losses on its embeddings; hooks and stages are the base's."""

    def __init__(self, base, addons: list[AddOnSettings]):
        super().__init__()
        self.base, self.addons = base, addons
        self.stages = base.stages

    @property
    def encoder(self):
        return self.base.encoder

    @property
    def settings(self):
        return self.base.settings

    @property
    def embeddings(self) -> tuple[str, ...]:
        return self.base.embeddings

    def check_batch(self, global_batch: int) -> None:
        self.base.check_batch(global_batch)

    def embed(self, images):
        return self.base.embed(images)

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        out = self.base(batch, stage, carry)
        if stage != self.stages[0]:
            return out
        embeddings = out.pop("_embeddings", None)
        if embeddings is None:
            raise ValueError(f"{type(self.base).__name__} names no embeddings in its terms, so add-ons cannot attach to it.")
        loss = out["loss"]
        for addon in self.addons:
            views = [gather_rows(v) for v in embeddings[addon.embedding]]
            raw, weights = terms(addon, views)
            weighted = sum(weights[k] * v for k, v in raw.items())
            out.update({f"{addon.name}/{k}": v.detach() for k, v in raw.items()})
            out[addon.name] = weighted.detach()
            loss = loss + weighted
        out["loss"] = loss
        out["_embeddings"] = embeddings  # the loop's online probe reads the backbone's
        return out

    def stage_parameters(self, stage: str):
        return self.base.stage_parameters(stage)

    def on_before_optimiser_step(self, stage: str) -> None:
        self.base.on_before_optimiser_step(stage)

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.base.on_step_end(step, total_steps)

    def on_epoch_start(self, epoch: int) -> None:
        self.base.on_epoch_start(epoch)

    def rank_state(self) -> dict[str, torch.Tensor]:
        return self.base.rank_state()

    def load_rank_state(self, state: dict[str, torch.Tensor]) -> None:
        self.base.load_rank_state(state)


def resolved_entries(entries: list[dict], method: str, embeddings: tuple[str, ...], batch: int) -> list[dict]:
    """The entries with every setting written out (paper defaults filled in): what config.yaml keeps."""
    return [{"name": a.name, **dataclasses.asdict(a)} for a in build_addons(entries, method, embeddings, batch)]


def build_addons(entries: list[dict], method: str, embeddings: tuple[str, ...], batch: int) -> list[AddOnSettings]:
    """Checked settings of each `{"name": ..., key: value}` entry, paper defaults filled in for `method`."""
    from ..config import ConfigError, build

    built = []
    for i, entry in enumerate(entries):
        entry = dict(entry)
        name = entry.pop("name", None)
        if name not in ADDONS:
            raise ValueError(f"unknown add-on {name!r}; choose one of: {', '.join(ADDONS)}.")
        try:
            settings = build(ADDONS[name], entry, f"addons[{i}] ({name})")
        except (ConfigError, TypeError) as error:
            raise ValueError(str(error)) from None
        settings.check(method, embeddings, batch)
        built.append(settings.resolved(method) if isinstance(settings, E2MCSettings) else settings)
    if len({a.name for a in built}) < len(built):
        raise ValueError("each add-on may be given once; merge the settings of the repeated --add into one.")
    return built
