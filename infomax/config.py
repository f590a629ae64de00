"""The typed configuration of a training run: one dataclass per section, one default per setting.

    method    the method's own `Settings` dataclass (methods/<name>.py), picked by `method.name`
    model     the encoder and its options
    data      dataset, resolution, view set, the kNN monitor's held-out slice
    optim     optimiser, lr, weight decay, batch size
    schedule  epochs or max steps, warm-up, decay
    run       seed, checkpoints, logging, monitors, devices, precision
    addons    add-on losses on the method's embeddings (methods/addons.py), a list of {name, settings}
    continued `infomax continue` only: the starting encoder, the lr scale, partial fine-tuning
    finetune  `infomax finetune` and `ablate` only: the labelled draw, the cached views, the head's shape

A YAML recipe (`infomax/recipes/*.yaml`, listed by `infomax recipes`) overrides some defaults,
`--set section.key=value` overrides any, and the resolved tree is saved as `config.yaml` in the
run directory. Unknown keys are errors naming the nearest valid key; wrong types name the type.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RECIPES = Path(__file__).parent / "recipes"
MAX_SIDE = 2048  # pixels: larger views would ask the allocator for terabytes before the first step
ACCELERATORS = ("cpu", "cuda", "mps", "auto")
SOURCES = ("auto", "decoded", "stream")  # data.source
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")


class ConfigError(ValueError):
    pass


def require(section: str, settings, **rules) -> None:
    """Check a section when it is built: each rule is key=(test, what the value must be); the message names the key."""
    for key, (ok, expect) in rules.items():
        value = getattr(settings, key)
        if not ok(value):
            raise ConfigError(f"{section}.{key} must be {expect}, got {value!r}.")


def at_least(low):
    return (lambda v: v >= low), f"at least {low}"


def optional(rule):
    ok, expect = rule
    return (lambda v: v is None or ok(v)), f"null or {expect}"


def one_of(*choices):
    return (lambda v: v in choices), f"one of {', '.join(map(str, choices))}"


POSITIVE = (lambda v: v > 0), "positive"
FRACTION = (lambda v: 0 <= v <= 1), "between 0 and 1"
MOMENTUM = (lambda v: 0 <= v < 1), "in [0, 1)"


@dataclass
class ModelConfig:
    backbone: str = "convnet"  # a name build_encoder knows, hf:<id>, or an encoder .safetensors
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the encoder


@dataclass
class DataConfig:
    dataset: str = "cifar10"
    data_root: str | None = None
    image_size: int | None = None  # imagefolder only: resize images of mixed sizes to this square
    workers: int | None = None  # decode processes (the decoded cache's, or the stream's loader workers); None: the machine's cores
    source: str = "auto"  # decoded | stream | auto: shards stream; an image folder streams when its cache would pass decoded_max_gb
    decoded_max_gb: float = 32.0  # ours: a decoded cache up to this size lives on local disk and reads faster than a stream decodes
    prefetch: int = 2  # batches each stream worker prepares ahead (torch's default)
    max_bad_fraction: float = 0.001  # a stream skips undecodable images and stops when they pass this share of the split
    download: bool = False
    resolution: int | None = 32  # None (finetune): the feature cache's side for the encoder and data (features.default_resolution)
    views: str = ""  # a view set of data/views.py; "" takes the method's own
    view_options: dict[str, Any] = field(default_factory=dict)  # get_view_set overrides, e.g. flip_p: 0
    holdout: int = 1000  # training images kept out of training for the kNN monitor (queries)
    bank: int = 5000  # training images the monitor's kNN votes with

    def __post_init__(self):
        side = (lambda v: 4 <= v <= MAX_SIDE), f"between 4 and {MAX_SIDE} pixels"
        require("data", self, resolution=optional(side), image_size=optional(side), holdout=at_least(0), bank=at_least(1),
                workers=optional(at_least(0)), source=one_of(*SOURCES), decoded_max_gb=POSITIVE, prefetch=at_least(1),
                max_bad_fraction=((lambda v: 0 <= v <= 1), "between 0 and 1"))


@dataclass
class OptimConfig:
    name: str = "lars"  # lars | adamw | sgd
    lr: float = 0.3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # lars and sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    lars_eta: float = 0.001  # trust coefficient (SimCLR, BYOL, Barlow Twins, VICReg)
    # False: the SimCLR/BYOL papers' LARS is unclipped (eta 0.001); solo-learn's CIFAR recipes clip (eta 0.02)
    lars_clip: bool = False  # cap the adaptive lr at the scheduled lr (solo-learn clip_lr): ratio min(r / lr, 1)
    lars_norm: str = "update"  # trust ratio eta|p|/|g + wd p| (SimCLR/BYOL/Barlow code) | "sum": eta|p|/(|g| + wd|p|) (LARS Eq. 6, solo-learn)
    exclude_bias_norm: bool = True  # biases and norm weights: no weight decay, no LARS adaptation
    batch_size: int = 256  # global: split over devices
    clip_grad: float | None = None

    def __post_init__(self):
        from .engine.optim import OPTIMISERS

        require("optim", self, name=one_of(*OPTIMISERS), lr=POSITIVE, weight_decay=at_least(0), momentum=MOMENTUM,
                lars_eta=POSITIVE, batch_size=at_least(1), clip_grad=optional(POSITIVE))
        require("optim", self, betas=((lambda v: all(0 <= b < 1 for b in v)), "two numbers in [0, 1)"))


@dataclass
class ScheduleConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop earlier than `epochs`
    warmup_steps: int | None = None  # None: `warmup_epochs` worth of steps
    warmup_epochs: float = 1.0
    warmup_start: float = 0.0  # lr factor at step 0
    decay: str = "cosine"  # cosine | constant
    final_factor: float = 0.0  # lr factor at the last step (cosine)

    def __post_init__(self):
        from .engine.optim import DECAYS

        require("schedule", self, epochs=at_least(1), max_steps=optional(at_least(1)), warmup_steps=optional(at_least(0)),
                warmup_epochs=at_least(0), warmup_start=FRACTION, decay=one_of(*DECAYS), final_factor=FRACTION)


def _knn_default(name: str):
    import inspect

    from .eval.knn import weighted_knn

    return inspect.signature(weighted_knn).parameters[name].default


LOGGERS = ("tensorboard", "csv", "wandb", "mlflow")


@dataclass
class RunConfig:
    seed: int = 0
    checkpoint_every: int = 500  # optimiser steps; also at each epoch end, the end, SIGINT and SIGTERM
    log_every: int = 10
    knn_every: int = 1  # epochs; 0 turns the monitor off
    knn_k: int = _knn_default("k")  # 20 and 0.07, the DINO/MIRA protocol; written out in config.yaml
    knn_temperature: float = _knn_default("temperature")
    linear_every: int = 1  # epochs between scores of the online linear probe (trained every step); 0 turns it off
    linear_lr: float = 0.1  # solo-learn's classifier_lr (scripts/pretrain/cifar/*.yaml), on the run's lr schedule
    abort_on_collapse: bool = False  # the collapse monitor (on logged steps) stops the run instead of warning
    accelerator: str = "auto"  # cpu | cuda | mps | auto
    devices: int = 1
    num_nodes: int = 1
    precision: str = "auto"  # bf16-mixed where the device computes bf16 natively, else 32-true; config.yaml keeps the choice
    compile: bool = False
    progress: bool = True
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])  # + csv, wandb, mlflow; metrics.jsonl always
    project: str = "infomax"  # the W&B project, the MLflow experiment

    def __post_init__(self):
        require("run", self, seed=at_least(0), checkpoint_every=at_least(1), log_every=at_least(1), knn_every=at_least(0),
                knn_k=at_least(1), knn_temperature=POSITIVE, linear_every=at_least(0), linear_lr=POSITIVE, accelerator=one_of(*ACCELERATORS), devices=at_least(1),
                num_nodes=at_least(1), precision=one_of(*PRECISIONS))
        unknown = [name for name in self.loggers if name not in LOGGERS] if isinstance(self.loggers, list) else [self.loggers]
        if unknown:
            raise ConfigError(f"run.loggers must be a list of {', '.join(LOGGERS)}, got {self.loggers!r} "
                              f"(e.g. --set run.loggers=[tensorboard,wandb]).")


@dataclass
class ContinueConfig:
    """Continued pre-training (E2MC Sec. 4): from a trained encoder, at a fraction of the recipe's lr."""

    init: str = "efficientnet-lite0"  # a name build_encoder knows, hf:<id>, an encoder .safetensors, or a pretrain run
    lr_scale: float = 0.01  # times the recipe's lr (the paper's 0.01 x base lr), applied once when the run is made
    train_from: str | None = None  # a block name: the blocks before it are frozen and their activations cached
    cached_views: int = 4  # augmented views cached per image and view of the view set, with train_from
    train_images: int | None = None  # a seeded subset of the training split (the CPU protocol); None: all
    eval_seeds: tuple[int, ...] = (0, 1, 2)  # few-label draws of the before/after evaluation

    def __post_init__(self):
        require("continued", self, lr_scale=POSITIVE, cached_views=at_least(1), train_images=optional(at_least(1)))


@dataclass
class FinetuneConfig:
    """A few-label head on a frozen backbone's cached features (`infomax finetune`, `ablate`)."""

    labels: int = 100  # labelled training images, a class-balanced draw seeded by run.seed
    labels_file: str | None = None  # `image,class` lines; replaces the balanced draw of `labels`
    cached_views: int = 1  # augmented views cached per image; with K > 1 each epoch shows each image another one
    augmentation: str = "cached"  # or "tokens": crops of the plain view's token map (no cached views needed)
    head: str = "cpu"  # a preset of methods/fewlabel/twinturbo.py HEADS; it fills the four settings below left at None
    token_grid: int | str | None = None  # 0: no tokens, G: pooled to G x G, "native": the backbone's grid
    token_width: int | None = None
    latent_dim: int | None = None
    hidden_dim: int | None = None
    min_steps: int = 400  # a run lasts schedule.epochs or whole epochs up to this many steps, whichever is longer
    baseline_check: bool = True  # also train the cat-cross baseline on the same labels; warn when the run is below it on validation
    val_fraction: float = 0.1  # of the training split, seed 0, the same for every run: model selection
    standardise: bool = True  # the head's input, with training-set statistics
    feature_batch: int = 128  # images per backbone pass while the feature cache is built

    def __post_init__(self):
        from .data.feature_batches import AUGMENTATIONS
        from .methods.fewlabel.twinturbo import HEADS

        require("finetune", self, labels=at_least(1), cached_views=at_least(0), augmentation=one_of(*AUGMENTATIONS),
                head=one_of(*HEADS), min_steps=at_least(0), val_fraction=((lambda v: 0 <= v < 1), "in [0, 1)"),
                feature_batch=at_least(1))
        for name, value in HEADS[self.head].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        require("finetune", self, token_grid=((lambda v: v == "native" or (isinstance(v, int) and v >= 0)),
                                              "0 (no tokens), a grid side G >= 1, or 'native'"))

    @property
    def cache_grid(self) -> int | None:
        """token_grid as the feature cache reads it (None: the backbone's own grid)."""
        return None if self.token_grid == "native" else self.token_grid


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "schedule": ScheduleConfig, "run": RunConfig}
EXTRA = ("addons", "continued", "finetune")  # sections that are not one dataclass each


@dataclass
class TrainConfig:
    method: Any  # an instance of the method's Settings
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    addons: list[dict] = field(default_factory=list)
    continued: ContinueConfig | None = None
    finetune: FinetuneConfig | None = None

    @property
    def method_name(self) -> str:
        return self.method.name


# ---------------------------------------------------------------- typed building

def nearest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(valid))}"


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(value, hint, where: str):
    """`value` as type `hint` (int, float, bool, str, None unions, tuples, lists, dicts), or ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where} must be {' or '.join(_type_name(a) for a in args)}, got {value!r}.")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {value!r}.")
        if number is not None:
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list) and isinstance(value, (list, tuple)):
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where} must have {len(args)} values, got {value!r}.")
            return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        return origin(coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    elif origin is dict and isinstance(value, dict):
        return dict(value)
    raise ConfigError(f"{where} must be {_type_name(hint)}, got {value!r} ({type(value).__name__}).")


def build(cls, values: dict, where: str):
    """A dataclass `cls` from a dict, every key checked against its fields and types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of settings, got {values!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"unknown setting {where}.{unknown[0]}{nearest(unknown[0], names)}")
    return cls(**{k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def build_config(tree: dict) -> TrainConfig:
    from . import methods

    tree = dict(tree)
    unknown = [k for k in tree if k not in ("method", *SECTIONS, *EXTRA)]
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r}{nearest(unknown[0], ['method', *SECTIONS, *EXTRA])}")
    addons = tree.get("addons") or []
    if not isinstance(addons, list) or not all(isinstance(a, dict) and "name" in a for a in addons):
        raise ConfigError(f"addons must be a list of mappings with a name, e.g. [{{name: e2mc, beta: 1}}]; got {addons!r}.")
    continued = build(ContinueConfig, tree["continued"], "continued") if tree.get("continued") is not None else None
    finetune = build(FinetuneConfig, tree["finetune"], "finetune") if tree.get("finetune") is not None else None
    method = dict(tree.pop("method", None) or {})
    name = method.pop("name", None)
    settings_cls = methods.settings_of(name)
    built = {key: build(cls, tree.get(key) or {}, key) for key, cls in SECTIONS.items()}
    try:
        settings = build(settings_cls, method, "method")
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"method {name}: {error}") from None
    return TrainConfig(method=settings, **built, addons=[dict(a) for a in addons], continued=continued, finetune=finetune)


def to_dict(config: TrainConfig) -> dict:
    tree = {"method": {"name": config.method_name, **dataclasses.asdict(config.method)}}
    tree.update({key: dataclasses.asdict(getattr(config, key)) for key in SECTIONS})
    if config.addons:
        tree["addons"] = [dict(a) for a in config.addons]
    if config.continued is not None:
        tree["continued"] = dataclasses.asdict(config.continued)
    if config.finetune is not None:
        tree["finetune"] = dataclasses.asdict(config.finetune)
    return _plain(tree)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------- recipes and overrides

def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def load_recipe(name_or_file: str) -> dict:
    """A shipped recipe by name (`simclr-cpu`) or a YAML file of the same shape."""
    path = Path(name_or_file)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = RECIPES / f"{name_or_file}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown recipe {name_or_file!r}{nearest(str(name_or_file), recipe_names())} "
                              "(or pass a .yaml file); `infomax recipes` lists them.")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (method, model, data, optim, schedule, run).")
    tree.pop("description", None), tree.pop("sources", None)
    return tree


def describe(name: str) -> str:
    tree = yaml.safe_load((RECIPES / f"{name}.yaml").read_text()) or {}
    return str(tree.get("description", "")).strip()


def set_value(tree: dict, assignment: str) -> None:
    """Apply one `section.key=value` (value parsed as YAML: 0.1, true, [0.2, 1.0], null)."""
    if "=" not in assignment:
        raise ConfigError(f"--set takes section.key=value, got {assignment!r}; e.g. --set optim.lr=0.1.")
    path, text = assignment.split("=", 1)
    keys = path.strip().split(".")
    if len(keys) < 2 or not all(keys):
        raise ConfigError(f"--set {assignment!r}: name a section and a key, e.g. optim.lr or method.temperature.")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {key} is a value, not a section.")
    node[keys[-1]] = value


def save(config: TrainConfig, path: Path) -> None:
    from .runs.atomic import write_atomic

    write_atomic(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def load(path: Path) -> TrainConfig:
    """A run's config.yaml; ConfigError (naming the file) when it is not valid YAML or not a config tree."""
    try:
        tree = yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (method, model, data, optim, schedule, run).")
    try:
        return build_config(tree)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path}: {error}") from None
