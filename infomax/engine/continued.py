"""`infomax continue`: continued pre-training of a trained encoder (E2MC Sec. 4), judged before and after.

From `continued.init` (a registry name such as efficientnet-lite0 with its ImageNet weights, hf:<id>,
an encoder .safetensors, or a pretrain run directory, whose heads are kept when its method is the
same) a base method trains for a few epochs at `lr_scale` x its recipe's lr, held fixed (the paper's
"fixed reduced learning rate"), with any add-ons (`--add e2mc`). Heads the start lacks are created
and the run says so. At the end the encoder before and after is evaluated on the test split (weighted
kNN, linear probe, 1% / 10% / 10-per-class linear) into before/ and after/, with the geometry plots
of E2MC Figs. 2 and 4, and one report shows them side by side.

`train_from` (the CPU protocol): the blocks before it are frozen, their activations for the plain
view and K augmented views per image and view slot come from the feature cache
(data/cached_views.py), and a step runs only the tail. Without it the whole network trains on fresh
views, as the paper does (a GPU job).
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from .. import config as C
from ..runs import rundir
from .pretrain import CONFIG, check_run, resolve as resolve_tree, train_method, view_set

EVALUATION_VERSION = 1  # part of the evaluation memo's key: raise it when score() changes
FLAGS = ("init", "lr_scale", "train_from", "cached_views", "train_images", "eval_seeds")


def resolve(init: str, method: str | None, recipe: str | None, addons: list[str], sets: list[str], flags: dict,
            continued: dict, out: Path, resume: bool) -> C.TrainConfig:
    """The recipe of the base method with the continue settings: the start encoder, lr x lr_scale (once),
    a constant lr without warm-up, 10 epochs, no kNN monitor, the prototypes of a run unfrozen from the
    first step; then flags and --set as for pretrain.
    A recipe written for continue (with a `continued` section, as a continue run's config.yaml) is taken
    as written: its lr, schedule, resolution, add-ons and continue settings, under the flags."""
    from ..methods.addons import parse

    if resume:
        given = sorted(k for k, v in continued.items() if v is not None) + (["add"] if addons else []) + (["init"] if init else [])
        if given:
            raise ValueError(f"--resume continues the run as its config.yaml says; drop {', '.join('--' + g.replace('_', '-') for g in given)}.")
        return resolve_tree(recipe, method, sets, flags, out, True, verb="continue")
    if init is None:
        raise ValueError("name the encoder to continue from: --init efficientnet-lite0 | hf:<id> | FILE.safetensors | RUN_DIR.")
    if Path(init).exists():  # stored absolute, so a resume from another folder finds it
        init = str(Path(init).resolve())
    given = {k: v for k, v in continued.items() if v is not None}
    C.build(C.ContinueConfig, {"init": init, **given}, "continued")  # checked before the recipe is read
    start = StartingPoint(init)
    recipe = recipe or start.recipe(method)

    def preset(tree: dict) -> None:
        written = tree.get("continued") is not None
        settings = C.build(C.ContinueConfig, {**(tree["continued"] if written else {}), "init": init, **given}, "continued")
        tree["model"] = {"backbone": start.encoder_path, "options": {}}
        if not written:
            optim = tree.setdefault("optim", {})
            optim["lr"] = float(optim.get("lr", C.OptimConfig.lr)) * settings.lr_scale
            tree.setdefault("schedule", {}).update({"epochs": 10, "max_steps": None, "warmup_epochs": 0.0, "warmup_steps": 0,
                                                    "decay": "constant"})
            if start.has_trained_prototypes(tree.get("method", {}).get("name")):  # prototypes are frozen only while random (SwAV App. A)
                tree["method"]["freeze_prototypes_epochs"] = 0
        tree.setdefault("run", {}).update({"knn_every": 0, "linear_every": 0})  # no held-out slice: every image trains
        data = tree.setdefault("data", {})
        data.update({k.split(".", 1)[1]: v for k, v in flags.items() if k.startswith("data.") and v is not None})
        data["holdout"] = 0
        if flags.get("data.resolution") is None and not ((written or start.run) and "resolution" in data):
            data["resolution"] = start.resolution(data)
        tree["continued"] = dataclasses.asdict(settings)
        tree["addons"] = [parse(a) for a in addons] if addons or not written else tree.get("addons") or []

    return resolve_tree(recipe, method, sets, flags, out, resume, preset=preset)


class StartingPoint:
    """What `--init` names: an encoder (by name, hf:<id>, .safetensors) or a pretrain run directory."""

    def __init__(self, init: str):
        self.init, path = init, Path(init)
        self.run = path if path.is_dir() else None
        if self.run is not None and not (path / "encoder.safetensors").exists():
            raise ValueError(f"--init {init}: the folder has no encoder.safetensors; name a finished pretrain run, "
                             "an encoder .safetensors file, or an encoder name such as efficientnet-lite0.")
        self.encoder_path = str(path / "encoder.safetensors") if self.run is not None else init

    def recipe(self, method: str | None) -> str | None:
        """A pretrain run continues with its own recipe (the paper's protocol: same views, heads, optimiser)
        when the method is its own; another method starts from that method's recipe."""
        if self.run is None or not (self.run / CONFIG).is_file():
            return None
        named = C.load_recipe(str(self.run / CONFIG)).get("method", {}).get("name")
        return str(self.run / CONFIG) if method in (None, named) else None

    def resolution(self, data: dict) -> int:
        """The feature cache's default side for this encoder and dataset (CIFAR's 32 px -> 128)."""
        from ..data.dataset import load_dataset
        from ..data.features import default_resolution
        from ..models import build_encoder

        dataset = load_dataset(data.get("dataset", C.DataConfig.dataset), "train", data.get("data_root"),
                               download=bool(data.get("download")), image_size=data.get("image_size"),
                               source=data.get("source", C.DataConfig.source))
        return default_resolution(build_encoder(self.encoder_path), dataset)

    def has_trained_prototypes(self, name: str | None) -> bool:
        """Whether this start holds trained prototypes for method `name` (a run of it with saved heads)."""
        from ..methods import settings_of

        if self.run is None or not (self.run / "state.safetensors").exists() or not (self.run / CONFIG).is_file():
            return False
        fields = {f.name for f in dataclasses.fields(settings_of(name))} if name else set()
        return "freeze_prototypes_epochs" in fields and C.load_recipe(str(self.run / CONFIG)).get("method", {}).get("name") == name

    def created(self, method) -> list[str]:
        """The method's parts (heads) this start has none of: created afresh."""
        parts = [n for n, _ in method.named_children() if n not in ("encoder", "teacher")]
        return parts if self.run is None or not (self.run / "state.safetensors").exists() else []

    def load_heads(self, method, name: str) -> list[str]:
        """Load the heads a pretrain run of the same method saved; returns the parts created afresh."""
        parts = [n for n, _ in method.named_children() if n not in ("encoder", "teacher")]
        if self.created(method):
            return parts
        saved = C.load(self.run / CONFIG)
        if saved.method_name != name:
            raise ValueError(f"--init {self.init} was trained with {saved.method_name}, not {name}: its heads do not fit. "
                             f"Continue with --method {saved.method_name}, or pass {self.encoder_path} to start {name}'s heads afresh.")
        from ..runs.rundir import load_tensors

        tensors = load_tensors(self.run / "state.safetensors")
        prefix = next((p for p in ("model/method/base.", "model/method/") if any(k.startswith(p) for k in tensors)), None)
        if prefix is None:
            raise ValueError(f"--init {self.init}: its state.safetensors holds no method weights; pass {self.encoder_path} "
                             "to start the heads afresh.")
        for part in parts:
            state = {k[len(prefix) + len(part) + 1:]: v for k, v in tensors.items() if k.startswith(f"{prefix}{part}.")}
            try:
                getattr(method, part).load_state_dict(state)
            except RuntimeError as error:
                raise ValueError(f"--init {self.init}: its {part} does not fit this run's ({error}); start it afresh by "
                                 f"passing {self.encoder_path}.") from None
        if getattr(method, "teacher", None) is not None:  # the teacher starts from the loaded student, as any run's
            from ..methods.base import Teacher

            method.teacher = Teacher(method.student(), method.settings)
        return []


def continue_pretraining(config: C.TrainConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
                         evaluate: bool = True) -> dict:
    """Run `config` (from `resolve`) into `out`; with `evaluate`, before/ and after/ and the report."""
    if config.continued is None:
        raise ValueError("this config has no `continued` section; build it with engine.continued.resolve.")
    per_rank = check_run(config)
    c, out = config.continued, Path(out)
    rundir.take(out, resume=resume, overwrite=overwrite)  # before minutes of feature extraction
    start = StartingPoint(c.init)
    data = _Data(config)
    from ..models import build_encoder

    encoder = build_encoder(config.model.backbone, **config.model.options)
    source = _Source(config, encoder, data)
    before = source.embeddings() if evaluate else None
    created: list[str] = []

    def build(fabric):
        from ..methods.addons import WithAddOns
        from .pretrain import build_method

        method = build_method(config, fabric.world_size, fabric.device.type, encoder=source.trainable)
        base = method.base if isinstance(method, WithAddOns) else method
        created.extend(start.created(base) if resume else start.load_heads(base, config.method_name))  # resume: weights from the state
        if created and not resume and fabric.global_rank == 0:
            print(f"[continue] {c.init} has no {', '.join(created)} for {config.method_name}: created afresh",
                  file=sys.stderr, flush=True)
        if before is not None:
            before["projector"] = _project(base, before["test"])
        return method, source.batches(per_rank, fabric), ()

    result, method = train_method(config, out, build, resume=resume, overwrite=overwrite,
                                  name=f"continue {config.method_name}")
    if not result:  # another rank
        return {}
    result["created"] = created
    if evaluate:
        after = source.embeddings()
        from ..methods.addons import WithAddOns

        after["projector"] = _project(method.base if isinstance(method, WithAddOns) else method, after["test"])
        result.update(_judge(config, out, data, before, after))
    rundir.write_json(out / "metrics.json", result)
    if evaluate:
        from ..eval.report import write_report

        write_report([out / "before", out / "after", out], out / "report.html",
                     title=f"Continued pre-training: {config.method_name} + {' + '.join(a['name'] for a in config.addons) or 'no add-on'}"
                           f" from {c.init} on {config.data.dataset}")
    rundir.release(out)
    return result


class _Data:
    """The training images (all, or a seeded subset) and the test split."""

    def __init__(self, config: C.TrainConfig):
        from ..data.dataset import load_dataset

        d = config.data
        load = {"download": d.download, "image_size": d.image_size, "workers": d.workers, "source": d.source,
                "decoded_max_gb": d.decoded_max_gb, "max_bad_fraction": d.max_bad_fraction}
        self.train = load_dataset(d.dataset, "train", d.data_root, **load)
        self.test = load_dataset(d.dataset, "test", d.data_root, **load)
        n = config.continued.train_images
        if n is not None:
            if not config.optim.batch_size <= n <= len(self.train):
                raise ValueError(f"--train-images must lie in [batch size, training images] = [{config.optim.batch_size}, "
                                 f"{len(self.train)}], got {n}.")
            rows = np.sort(np.random.default_rng(0).permutation(len(self.train))[:n])
            self.train = self.train.subset(rows, f"{self.train.name}[{n} of {len(self.train)}]")


class _Source:
    """Where a run's views and its evaluation features come from: the whole encoder on fresh views, or
    (train_from) the cached trunk activations through the trainable tail."""

    def __init__(self, config: C.TrainConfig, encoder, data: _Data):
        from ..data.features import extract_features

        self.config, self.encoder, self.data = config, encoder, data
        self.resolution, c = config.data.resolution, config.continued
        self.device = "cuda" if config.run.accelerator in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
        self.views = view_set(config)
        self.trainable = encoder
        if c.train_from is None:
            return
        from ..models.partial import split

        sizes = sorted({spec.size for spec in self.views})
        if sizes != [self.resolution]:
            raise ValueError(f"--train-from caches views of one size, the tail's; this view set has crops of {sizes} px "
                             "(multi-crop). Drop --train-from to train the whole network, or choose two-crop views "
                             "(--set data.views=mira).")
        trunk, self.trainable = split(encoder, c.train_from, self.resolution)
        cache = dict(resolution=self.resolution, token_grid=0, device=self.device)
        self.slots = [extract_features(trunk, data.train, views=c.cached_views, augment=spec, seed=s, **cache).in_memory()
                      for s, spec in enumerate(self.views)]
        self.test_trunk = extract_features(trunk, data.test, views=0, **cache)

    def batches(self, per_rank: int, fabric):
        kw = dict(seed=self.config.run.seed, rank=fabric.global_rank, world_size=fabric.world_size, device=fabric.device)
        if self.config.continued.train_from is None:
            from .pretrain import view_batches

            train = self.data.train
            if train.streamed:
                return view_batches(self.config, train.images.samples, train.images.rows, self.views, per_rank, fabric)
            return view_batches(self.config, train, np.arange(len(train)), self.views, per_rank, fabric)
        from ..data.cached_views import CachedViewBatches

        return CachedViewBatches(self.slots, per_rank, **kw)

    @torch.no_grad()
    def embeddings(self) -> dict[str, torch.Tensor]:
        """Pooled features of the train and test images (plain view) by the encoder as it is now."""
        if self.config.continued.train_from is None:
            from ..data.features import extract_features

            cache = dict(resolution=self.resolution, token_grid=0, device=self.device, views=0)
            feats = [extract_features(self.encoder, d, **cache) for d in (self.data.train, self.data.test)]
            return {name: torch.from_numpy(np.asarray(f.pooled(0), dtype=np.float32)) for name, f in zip(("train", "test"), feats)}
        was, device = self.trainable.training, next(self.trainable.encoder.parameters()).device
        self.trainable.eval()
        try:
            return {name: torch.cat([self.trainable(torch.from_numpy(np.asarray(a[i:i + 1024], dtype=np.float32)).to(device)).pooled.cpu()
                                     for i in range(0, len(a), 1024)])
                    for name, a in (("train", self.slots[0].pooled(0)), ("test", self.test_trunk.pooled(0)))}
        finally:
            self.trainable.train(was)


@torch.no_grad()
def _project(method, h: torch.Tensor, rows: int = 5000) -> torch.Tensor:
    """The projector's output (the add-ons' default embedding) on backbone features, eval mode."""
    projector = method.projector
    was, device = projector.training, next(projector.parameters()).device
    projector.eval()
    try:
        return projector(h[:rows].to(device)).cpu()
    finally:
        projector.train(was)


def _memo(feats: dict, y: torch.Tensor, y_test: torch.Tensor, seeds, compute) -> dict:
    """score() of these exact features and labels, from the cache when an earlier run computed it (the
    start of every run from one encoder on one dataset is the same, and its probes take minutes)."""
    import hashlib
    import json

    from ..data.root import cache_root
    from ..runs.atomic import write_json

    digest = hashlib.sha256(repr((EVALUATION_VERSION, tuple(seeds))).encode())
    for tensor in (feats["train"], feats["test"], y, y_test):
        digest.update(repr((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    path = cache_root() / "evaluations" / f"{digest.hexdigest()[:24]}.json"
    if path.exists():
        return json.loads(path.read_text())
    metrics = compute()
    write_json(path, metrics)
    return metrics


def _judge(config: C.TrainConfig, out: Path, data: _Data, before: dict, after: dict) -> dict:
    """before/ and after/ run folders (metrics, geometry plots) and the flat before/after/delta metrics."""
    from ..eval.geometry import nn_distance_overlap
    from ..eval.plots import plot_marginals, plot_nn_distances
    from ..eval.run import score

    y, y_test = torch.from_numpy(data.train.labels), torch.from_numpy(data.test.labels)
    space = next((a["space"] for a in config.addons if a["name"] == "e2mc"), "hypersphere")
    flat = {}
    scores = {}
    for name, feats in (("before", before), ("after", after)):
        folder = rundir.prepare(out / name, overwrite=True)
        metrics = _memo(feats, y, y_test, config.continued.eval_seeds, lambda: score(
            feats["train"], y, feats["test"], y_test, seeds=config.continued.eval_seeds))
        rundir.write_json(folder / "config.json", {"encoder": config.continued.init if name == "before" else str(out / "encoder.safetensors"),
                                                   "dataset": config.data.dataset, "evaluated": f"{name} continued pre-training"})
        nn = nn_distance_overlap(feats["test"], min(100, len(y_test) - 1))
        metrics["nn_distance_overlap"] = nn.overlap
        rundir.write_json(folder / "metrics.json", metrics)
        plot_nn_distances(nn.nearest, nn.kth, folder / "plots" / "nn_distances.png", k=nn.k, overlap=nn.overlap,
                          title=f"Nearest vs {nn.k}th neighbour, {name}")
        plot_marginals(feats["test"], folder / "plots" / "marginals_2d.png", labels=y_test,
                       title=f"Backbone features, 2-D marginals (standardised, normal CDF), {name}")
        plot_marginals(feats["projector"], folder / "plots" / "projector_marginals_2d.png", labels=y_test[:len(feats["projector"])],
                       space=space, title=f"Projector output in the compact space, {name}")
        scores[name] = metrics
    for key, value in scores["before"].items():
        if isinstance(value, (int, float)) and not key.endswith(("_seconds", "_labelled", "_images", "weight_decay")):
            flat.update({f"before/{key}": value, f"after/{key}": scores["after"][key],
                         f"delta/{key}": scores["after"][key] - value})
    return flat
