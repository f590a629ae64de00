"""`infomax finetune`: TwinTURBO (or FixMatch) on a frozen backbone's cached features.

The run's settings are the config tree of every training verb (config.py): `method` is the head's
loss (twinturbo or fixmatch settings), `finetune` the labelled draw, the cached views and the head's
shape, `optim`/`schedule`/`run` as for pretrain; recipes twinturbo-cpu, twinturbo-paper and
fixmatch-cpu, `--set`, and config.yaml in the run folder. The backbone runs once, inside the feature
cache (plain view + K augmented views of every training image, plain view of every test image); the
loop then trains only the small head. Data: a fixed validation split (10% of the training set, seed 0,
the same for every run) is held out for model selection; the labelled subset is drawn, class-balanced,
from the rest with the run's seed; every other training image is unlabelled. Training follows the
paper's recipe (twinturbo paper, Sec. 4 and App. B): the dual sampler, AdamW, linear warm-up from
0.001x over 150 steps, head and discriminator steps in alternation. Checkpoints resume exactly
(weights, optimiser moments, RNG, sampler position). The baseline check then trains the cat-cross head
on the same labels in OUT/baseline and records the run's margin over it on the validation split,
warning when it is negative.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import config as C
from ..data.dataset import load_dataset
from ..data.feature_batches import FeatureBatches, to_grid
from ..data.features import Features, extract_features
from ..data.subsets import DualSampler, balanced_subset, read_labels_file, save_subset
from ..methods.fewlabel import FEWLABEL, HEADS, TwinTurboHead
from ..runs import loggers, rundir
from ..precision import native_precision
from .optim import build_optimiser
from .pretrain import CONFIG, RESUMABLE as PRETRAIN_RESUMABLE, check_resume

# The words of finetune's and ablate's flags (and of runs written before the config tree) -> the tree's keys.
FLAGS = {
    "backbone": "model.backbone", "dataset": "data.dataset", "data_root": "data.data_root", "image_size": "data.image_size",
    "source": "data.source", "download": "data.download", "resolution": "data.resolution",
    "method": "method.name", "task_loss": "method.task", "rescale": "method.rescale", "critic": "method.lambda_critic",
    "latent": "method.lambda_latent", "augment": "method.lambda_augment", "prior": "method.prior",
    "latent_negatives": "method.latent_negatives", "target_dropout": "method.target_dropout",
    "labels": "finetune.labels", "labels_file": "finetune.labels_file", "views": "finetune.cached_views",
    "augmentation": "finetune.augmentation", "head": "finetune.head", "token_grid": "finetune.token_grid",
    "token_width": "finetune.token_width", "latent_dim": "finetune.latent_dim", "hidden_dim": "finetune.hidden_dim",
    "min_steps": "finetune.min_steps", "baseline_check": "finetune.baseline_check", "val_fraction": "finetune.val_fraction",
    "standardise": "finetune.standardise", "feature_batch": "finetune.feature_batch",
    "lr": "optim.lr", "weight_decay": "optim.weight_decay", "batch_size": "optim.batch_size",
    "epochs": "schedule.epochs", "warmup_steps": "schedule.warmup_steps", "warmup_start": "schedule.warmup_start",
    "seed": "run.seed", "log_every": "run.log_every", "device": "run.accelerator",
}
# Settings a resumed run may change besides pretrain's; any other difference from config.yaml is refused.
RESUMABLE = PRETRAIN_RESUMABLE | {"finetune.baseline_check", "finetune.min_steps", "finetune.feature_batch", "run.accelerator"}
DEVICES = ("auto", "cpu", "cuda")


def configure(recipe: str | None = None, sets=(), **words) -> C.TrainConfig:
    """A finetune config: the recipe (default METHOD-cpu), then `words` (FLAGS' names), then --set assignments."""
    method = words.get("method") or "twinturbo"
    if method not in FEWLABEL:
        raise ValueError(f"finetune --method must be one of {', '.join(FEWLABEL)}, got {method!r}.")
    return C.build_config(apply(over_base(C.load_recipe(recipe or f"{method}-cpu"), method), words, sets))


def over_base(tree: dict, method: str | None = None) -> dict:
    """A recipe laid over its method's METHOD-cpu recipe: a recipe file that leaves out the optimiser or
    the schedule trains the head with finetune's (AdamW, warm-up, constant lr), not pretraining's defaults."""
    named = (tree.get("method") or {}).get("name") or method or "twinturbo"
    if named not in FEWLABEL:
        return dict(tree)  # check_settings names the verb that trains it
    base = C.load_recipe(f"{named}-cpu")
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in tree.items():
        merged[section] = {**merged[section], **values} if isinstance(values, dict) and isinstance(merged.get(section), dict) else values
    return merged


def new_head(section: dict, head: str | None) -> None:
    """A head preset other than the section's fills the head's shape afresh (what is set with it still wins)."""
    if head is not None and head != section.get("head", C.FinetuneConfig.head):
        for key in HEADS.get(head, ()):
            section.pop(key, None)


def with_settings(config: C.TrainConfig, **words) -> C.TrainConfig:
    """`config` with some settings changed (FLAGS' names); another method starts from its own defaults."""
    return C.build_config(apply(C.to_dict(config), words))


def words_of(config: C.TrainConfig) -> dict:
    """The config in finetune's flag words (FLAGS), as benchmark records and runs of earlier versions spell it."""
    tree = C.to_dict(config)
    pairs = {word: key.split(".") for word, key in FLAGS.items()}
    return {word: tree[s][k] for word, (s, k) in pairs.items() if k in (tree.get(s) or {})}


def apply(tree: dict, words: dict, sets=()) -> dict:
    unknown = [w for w in words if w not in FLAGS]
    if unknown:
        raise ValueError(f"unknown finetune setting {unknown[0]!r}{C.nearest(unknown[0], FLAGS)}")
    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    tree["finetune"] = dict(tree.get("finetune") or {})
    if words.get("method") and words["method"] != (tree.get("method") or {}).get("name"):
        tree["method"] = {"name": words["method"]}
    new_head(tree["finetune"], words.get("head"))
    for word, value in words.items():
        if value is not None:
            section, key = FLAGS[word].split(".")
            tree.setdefault(section, {})[key] = value
    for assignment in sets:
        C.set_value(tree, assignment)
    return tree


def variant(config: C.TrainConfig) -> str:
    """What the run is, in words: the report's "method" row (the baseline is named as the baseline)."""
    if config.method_name == "fixmatch":
        return "FixMatch"
    m = config.method
    terms = [f"{name} {w:g}" for name, w in (("critic", m.lambda_critic), ("latent", m.lambda_latent), ("augment", m.lambda_augment)) if w]
    if not terms:
        return f"{'baseline: ' if is_baseline(config) else 'TwinTURBO task loss only: '}{m.task} {m.rescale}"
    return f"TwinTURBO: {m.task} {m.rescale} + " + " + ".join(terms)


OFF = {"critic": 0.0, "latent": 0.0, "augment": 0.0}
BASELINE = {"task_loss": "cat-cross", "rescale": "softmax", **OFF}  # what TwinTURBO is measured against


def resolve_device(name: str) -> str:
    if name not in DEVICES:
        raise ValueError(f"finetune runs on {', '.join(DEVICES)}, got run.accelerator={name!r}; use --device cpu (or auto).")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU here; use --device cpu (or auto).")
    return name


@dataclass
class Prepared:
    """Everything a run needs that does not depend on its seed: features and the fixed split."""

    train: Features
    test: Features
    validation: np.ndarray
    pool: np.ndarray  # training rows outside the validation split
    channels: int  # of the dataset's images: predict turns photos grey for a grey dataset
    files: list[str] | None = None  # the training split's files, where the dataset has them (labels files may name them)


def prepare_features(config: C.TrainConfig, progress: bool = True) -> Prepared:
    from ..models import build_encoder
    from ..models.registry import ENCODERS

    backbone, data, f = config.model.backbone, config.data, config.finetune
    encoder = build_encoder(backbone, **config.model.options)
    if backbone in ENCODERS and not encoder.config.get("pretrained"):
        raise ValueError(f"--backbone {backbone} has random weights here (no pretrained file is available offline), and a "
                         "frozen random backbone gives features worth little and different on every run. Pass "
                         "efficientnet-lite0 (ImageNet), hf:<model id>, or an encoder .safetensors, e.g. from `infomax pretrain`.")
    from ..data.imagefolder import MissingSplit

    load = {"download": data.download, "image_size": data.image_size, "source": data.source}
    train_set = load_dataset(data.dataset, "train", data.data_root, **load)
    try:
        test_set = load_dataset(data.dataset, "test", data.data_root, **load)
    except MissingSplit as missing:
        raise ValueError(f"{missing} finetune scores the head on a test split: lay the images out as train/CLASS/... and "
                         "test/CLASS/... (a few per class are enough).") from None
    common = {"resolution": data.resolution, "token_grid": f.cache_grid, "batch_size": f.feature_batch,
              "progress": progress, "device": resolve_device(config.run.accelerator), "precision": "auto"}
    # Token crops are cut from the plain view's full token map, so that one is stored at the native grid.
    train_views = {"views": 0, "token_grid": None} if f.augmentation == "tokens" else {"views": f.cached_views}
    train = extract_features(encoder, train_set, seed=0, **{**common, **train_views}).in_memory()
    test = extract_features(encoder, test_set, views=0, **common).in_memory()
    validation = balanced_subset(train.labels, fraction=f.val_fraction, seed=0) if f.val_fraction else np.array([], dtype=np.int64)
    pool = np.setdiff1d(np.arange(len(train)), validation)
    return Prepared(train, test, validation, pool, train_set.image_shape[-1], train_set.files)


def build_method(config: C.TrainConfig, token_dim: int | None, dim: int, num_classes: int):
    f = config.finetune
    head = TwinTurboHead(token_dim, dim, num_classes, latent_dim=f.latent_dim, hidden_dim=f.hidden_dim,
                         use_tokens=token_dim is not None, token_width=f.token_width)
    return FEWLABEL[config.method_name](head, config.method)


def run_epochs(config: C.TrainConfig, steps_per_epoch: int) -> int:
    """Epochs the run lasts. A small dataset gives few steps per epoch, and the critic needs steps:
    on MNIST-5k (7 steps an epoch) 5 epochs left full TwinTURBO 20 points below its baseline on the
    validation split, where ~400 steps put it above (benchmarks/results/twinturbo_defaults.md)."""
    return max(config.schedule.epochs, -(-config.finetune.min_steps // max(steps_per_epoch, 1)))


class Trainer:
    def __init__(self, config: C.TrainConfig, prepared: Prepared, out: Path):
        self.config, self.prepared, self.out = config, prepared, out
        f, seed = config.finetune, config.run.seed
        self.labels, self.labelled, self.validation = self._labelled_subset(config, prepared)
        self.unlabelled = np.setdiff1d(prepared.pool, self.labelled)
        batch = min(config.optim.batch_size, len(self.unlabelled))
        self.sampler = DualSampler(self.unlabelled, self.labelled, self.labels, batch, seed=seed)
        torch.manual_seed(seed)
        token_dim = prepared.train.token_dim if f.token_grid != 0 else None
        self.method = build_method(config, token_dim, prepared.train.dim, len(prepared.train.classes))
        if f.standardise:
            sample = np.sort(np.random.default_rng(0).permutation(prepared.pool)[:10_000])
            tokens, pooled = prepared.train.load(sample, 0, tokens=token_dim is not None)
            self.method.head.set_input_statistics(pooled, to_grid(tokens, f.cache_grid))
        self.optimisers = {stage: build_optimiser(self.method.stage_parameters(stage), config.optim) for stage in self.method.stages}
        per_epoch = len(self.sampler)
        total = run_epochs(config, per_epoch) * per_epoch
        self.total_steps = min(total, config.schedule.max_steps) if config.schedule.max_steps else total
        self.step, self.seconds = 0, 0.0

    @staticmethod
    def _labelled_subset(config: C.TrainConfig, prepared: Prepared) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels of the training split, labelled rows, validation rows): a seeded balanced draw from
        the pool, or the user's labels file, whose labels win and whose images leave validation."""
        labels, f = prepared.train.labels, config.finetune
        if not f.labels_file:
            return labels, prepared.pool[balanced_subset(labels[prepared.pool], f.labels, seed=config.run.seed)], prepared.validation
        rows, given = read_labels_file(f.labels_file, prepared.train.classes, len(labels), prepared.files)
        labels = labels.copy()
        labels[rows] = given
        return labels, rows, np.setdiff1d(prepared.validation, rows)

    def schedule(self):
        from .loop import Schedule

        s, per_epoch = self.config.schedule, len(self.sampler)
        warmup = s.warmup_steps if s.warmup_steps is not None else round(s.warmup_epochs * per_epoch)
        if warmup > self.total_steps // 2:
            shorter = self.total_steps // 10
            print(f"[finetune] the {warmup}-step warm-up would take most of this {self.total_steps}-step run; "
                  f"warming up over {shorter} steps instead (set --warmup-steps to choose).", file=sys.stderr, flush=True)
            warmup = shorter
        return Schedule(self.total_steps, warmup, s.warmup_start, s.decay, s.final_factor)

    def setup(self, resume: bool) -> None:
        """The head on the engine's loop: one Fabric process (--device), a checkpoint at every epoch end
        and every run.checkpoint_every steps. With `resume` the checkpoint is loaded here, before anything is written."""
        from lightning.fabric import Fabric

        from .loop import Loop

        run = self.config.run
        device = resolve_device(run.accelerator)
        precision = native_precision(device) if run.precision == "auto" else run.precision
        fabric = Fabric(accelerator=device, devices=1, precision=precision, loggers=loggers.build(run, self.out, resume))
        model, *optimisers = fabric.setup(self.method, *self.optimisers.values())
        f = self.config.finetune
        batches = FeatureBatches(self.sampler, self.prepared.train, self.labels, self.method.views, fabric.device,
                                 head_grid=f.cache_grid, augmentation=f.augmentation)
        self.loop = Loop(fabric, model, dict(zip(self.optimisers, optimisers)), batches, self.schedule(), run, self.out, name="finetune",
                         clip_grad=self.config.optim.clip_grad)
        if resume:
            self.loop.restore()

    def train(self, resume: bool) -> None:
        save_subset(self.out / "labelled.json", self.labelled, self.labels, dataset=self.config.data.dataset, split="train",
                    seed=self.config.run.seed)
        fabric = self.loop.fabric
        loggers.record(fabric.loggers, self.out)
        try:
            summary = self.loop.fit(resume)
        except BaseException as error:
            loggers.close(fabric.loggers, "interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
            raise
        loggers.close(fabric.loggers, "success")
        self.step, self.seconds = summary["steps"], summary["seconds"]
        self.last_terms = {k: v.detach() for k, v in self.loop.last_terms.items() if not k.startswith("_")}

    @torch.no_grad()
    def predict(self, features: Features, rows: np.ndarray | None = None) -> torch.Tensor:
        self.method.eval()
        device = next(self.method.parameters()).device
        rows = np.arange(len(features)) if rows is None else rows
        chunks = []
        for i in range(0, len(rows), 4096):
            tokens, pooled = features.load(rows[i : i + 4096], 0, device, tokens=self.method.head.use_tokens)
            chunks.append(self.method.predict(to_grid(tokens, self.config.finetune.cache_grid), pooled).cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, len(features.classes))

    def evaluate(self) -> dict:
        test, train = self.prepared.test, self.prepared.train
        probabilities = self.predict(test)
        predicted, truth = probabilities.argmax(1).numpy(), test.labels
        metrics = {"test_top1": 100 * float((predicted == truth).mean())}
        for c, name in enumerate(test.classes):
            members = truth == c
            metrics[f"test_class/{name}"] = 100 * float((predicted[members] == c).mean()) if members.any() else float("nan")
        if len(self.validation):
            val = self.predict(train, self.validation).argmax(1).numpy()
            metrics["val_top1"] = 100 * float((val == train.labels[self.validation]).mean())
        metrics.update({f"last/{k}": float(v) for k, v in getattr(self, "last_terms", {}).items()})
        metrics.update({"labelled": len(self.labelled), "unlabelled": len(self.unlabelled), "steps": self.step,
                        "train_seconds": round(getattr(self, "seconds", 0.0), 2)})
        return metrics


def save_head(trainer: Trainer, path: Path, channels: int) -> None:
    """The trained method's weights, with what `infomax predict` needs to rebuild the pipeline (the config tree)."""
    import json

    features = trainer.prepared.train
    spec = {k: features.manifest[k] for k in ("resolution", "encoder_config", "weights")}
    spec["precision"] = features.manifest.get("precision", "32-true")  # predict runs the backbone as the cache did
    spec.update(token_grid=trainer.config.finetune.cache_grid, token_dim=features.token_dim, dim=features.dim, channels=channels)
    record = {"config": C.to_dict(trainer.config), "classes": features.classes, "features": spec}
    rundir.save_tensors(path, trainer.method.state_dict(), {"infomax_finetune": json.dumps(record)})


def finetune(config: C.TrainConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
             prepared: Prepared | None = None, report: bool = True) -> dict:
    check_settings(config)
    rundir.take(out, resume=resume, overwrite=overwrite)  # resumed or overwritten: one owner before any work
    if resume:
        check_resume(config, Path(out), RESUMABLE)
    prepared = prepared or prepare_features(config, progress=config.run.progress)
    trainer = Trainer(config, prepared, Path(out))  # every input is checked before anything is written
    trainer.setup(resume)
    out = trainer.out = rundir.prepare(out, resume=resume, overwrite=overwrite)
    C.save(config, out / CONFIG)
    rundir.record_environment(out)
    trainer.train(resume)
    metrics = {"variant": variant(config), **trainer.evaluate()}
    if not any(k.startswith("last/") for k in metrics):  # a resume of a finished run trained nothing: keep what it had
        metrics.update(rundir.previous_last(out))
    save_head(trainer, out / "head.safetensors", prepared.channels)
    rundir.write_json(out / "metrics.json", metrics)  # the run is finished and usable before any baseline check
    if config.finetune.baseline_check and not is_baseline(config):
        checked = compare_with_baseline(config, prepared, out, metrics.get("val_top1"))
        if checked:
            metrics.update(checked)
            rundir.write_json(out / "metrics.json", metrics)
    if report:
        write_run_report(out)
    rundir.release(out)
    return metrics


def is_baseline(config: C.TrainConfig) -> bool:
    """The run is the cat-cross baseline itself (BASELINE's settings, no added term)."""
    m = config.method
    return config.method_name == "twinturbo" and (m.task, m.rescale, m.lambda_critic, m.lambda_latent, m.lambda_augment) == (
        BASELINE["task_loss"], BASELINE["rescale"], 0.0, 0.0, 0.0)


def compare_with_baseline(config: C.TrainConfig, prepared: Prepared, out: Path, val_top1: float | None) -> dict:
    """Train the cat-cross baseline on the same labels in OUT/baseline and compare on the validation split:
    no default is safe on every dataset, and a run should say when it did worse than the plain head.
    A check that cannot run or fails is said and leaves the finished run as it is."""
    if val_top1 is None:
        print("[finetune] baseline check skipped: no validation images are left (the labels file covers them); "
              "nothing to compare on.", file=sys.stderr, flush=True)
        return {}
    print(f"[finetune] baseline check: the cat-cross head on the same labels, in {out / BASELINE_DIR}", file=sys.stderr, flush=True)
    baseline = with_settings(config, method="twinturbo", baseline_check=False, **BASELINE)
    try:
        result = finetune(baseline, out / BASELINE_DIR, overwrite=True, prepared=prepared, report=False)
    except Exception as error:  # noqa: BLE001 - the run itself is saved; the check only adds a comparison
        print(f"[finetune] baseline check failed ({error}); the run in {out} is complete without it.", file=sys.stderr, flush=True)
        return {}
    margin = val_top1 - result["val_top1"]
    if margin < 0:
        advice = "or lower --critic and --augment" if config.method_name == "twinturbo" else "or use --method twinturbo"
        print(f"[finetune] warning: on the validation split this run scores {val_top1:.1f}%, below the cat-cross baseline "
              f"trained on the same labels ({result['val_top1']:.1f}%). That baseline's head is in {out / BASELINE_DIR} "
              f"(infomax predict --run {out / BASELINE_DIR}); {advice}.", file=sys.stderr, flush=True)
    return {"baseline/val_top1": result["val_top1"], "baseline/test_top1": result["test_top1"], "val_margin_over_baseline": margin}


BASELINE_DIR = "baseline"


def check_settings(config: C.TrainConfig) -> None:
    """Refuse settings that would run but mean nothing, naming the fix."""
    if config.method_name not in FEWLABEL:
        raise ValueError(f"finetune trains a few-label head ({', '.join(FEWLABEL)}), not {config.method_name}: "
                         f"pretrain it with `infomax pretrain --method {config.method_name}` and pass its encoder as --backbone.")
    f = config.finetune
    if f is None:
        raise ValueError("the config has no finetune section; start from a finetune recipe (twinturbo-cpu, fixmatch-cpu).")
    if not config.optim.lr < 1e3:
        raise ValueError(f"--lr must be a positive learning rate below 1000, got {config.optim.lr}.")
    if config.data.resolution is not None and config.data.resolution < 8:
        raise ValueError(f"--resolution must be at least 8 pixels (or left out for the backbone's own), got {config.data.resolution}.")
    augment = config.method_name == "fixmatch" or config.method.lambda_augment > 0
    if f.cached_views < 1 and f.augmentation == "cached" and augment:
        raise ValueError(f"--views {f.cached_views} leaves no augmented view for the augment term or FixMatch's strong view; "
                         "use --views 1 or more, --augmentation tokens, or --augment 0 with --method twinturbo.")
    if f.labels_file and f.labels != C.FinetuneConfig.labels:
        raise ValueError("--labels and --labels-file both choose the labelled images; pass one of them.")
    run = config.run
    resolve_device(run.accelerator)
    if run.devices * run.num_nodes > 1 or run.compile:
        raise ValueError("finetune trains a small head in one process on cached features: leave run.devices and "
                         "run.num_nodes at 1 and run.compile off (they are for pretrain and continue).")
    loggers.check(run.loggers)  # a missing wandb or mlflow is said now, not after the feature cache


def write_run_report(out: Path) -> Path:
    """report.html: the run, beside its baseline check's run when there is one."""
    from ..eval.plots import plot_training_curves
    from ..eval.report import write_report

    if (out / rundir.METRICS_LOG).exists():
        plot_training_curves(out, out / "plots" / "training_curves.png", title="TwinTURBO head training")
    checked = out / BASELINE_DIR
    return write_report([out, checked] if (checked / "metrics.json").exists() else [out], out / "report.html")
