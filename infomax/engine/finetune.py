"""`infomax finetune`: TwinTURBO (or FixMatch) on a frozen backbone's cached features.

The backbone runs once, inside the feature cache (plain view + K augmented views of every
training image, plain view of every test image); the loop then trains only the small head.
Data: a fixed validation split (10% of the training set, seed 0, the same for every run) is
held out for model selection; the labelled subset is drawn, class-balanced, from the rest with
the run's seed; every other training image is unlabelled. Training follows the paper's recipe
(twinturbo paper, Sec. 4): the dual sampler, AdamW, linear warm-up from 0.001x over 150 steps,
head and discriminator steps in alternation; the loss weights and lr are ours, chosen on a
validation split (see FinetuneConfig). Checkpoints are taken every epoch and resume
exactly (weights, optimiser moments, RNG, sampler position). The baseline check then trains the
cat-cross head on the same labels in OUT/baseline and records the run's margin over it on the
validation split, warning when it is negative.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import SOURCES, DataConfig, RunConfig
from ..data.dataset import load_dataset
from ..data.feature_batches import AUGMENTATIONS, FeatureBatches, to_grid
from ..data.features import Features, extract_features
from ..data.subsets import DualSampler, balanced_subset, read_labels_file, save_subset
from ..methods.fewlabel.fixmatch import FixMatch
from ..methods.fewlabel.twinturbo import TwinTurbo, TwinTurboHead, TwinTurboLoss
from ..runs import rundir


@dataclass
class FinetuneConfig:
    backbone: str = "efficientnet-lite0"
    dataset: str = "cifar10"
    data_root: str | None = None
    image_size: int | None = None  # imagefolder only: resize images of mixed sizes to this square
    source: str = DataConfig.source  # decoded | stream | auto, as data.source
    download: bool = False
    labels: int = 100
    labels_file: str | None = None  # `image,class` lines; replaces the balanced draw of `labels`
    seed: int = 42
    method: str = "twinturbo"  # or "fixmatch"
    task_loss: str = TwinTurboLoss.task
    rescale: str = TwinTurboLoss.rescale
    critic: float = TwinTurboLoss.lambda_critic  # the loss weights' defaults live in TwinTurboLoss
    latent: float = TwinTurboLoss.lambda_latent
    augment: float = TwinTurboLoss.lambda_augment
    prior: str = TwinTurboLoss.prior
    lr: float = 3e-4  # chosen with the weights on CIFAR-10's validation split
    weight_decay: float = 0.01
    batch_size: int = 512
    epochs: int = 5
    min_steps: int = 400  # a run lasts `epochs` epochs or whole epochs up to this many steps, whichever is longer
    warmup_steps: int = 150
    warmup_start: float = 0.001
    resolution: int | None = None
    views: int = 1  # augmented views cached per image; with K > 1 each epoch shows each image another one
    augmentation: str = "cached"  # or "tokens": crops of the plain view's token map (no cached views needed)
    head: str = "cpu"  # a preset of HEADS; it fills the four settings below that are left at None
    token_grid: int | str | None = None  # 0: no tokens, G: pooled to G x G, "native": the backbone's grid
    token_width: int | None = None
    latent_dim: int | None = None
    hidden_dim: int | None = None
    latent_negatives: str = TwinTurboLoss.latent_negatives
    target_dropout: bool = TwinTurboLoss.target_dropout
    device: str = "auto"  # cpu, cuda, or auto (cuda when there is one)
    baseline_check: bool = True  # also train the cat-cross baseline on the same labels; warn when the run is below it on validation
    val_fraction: float = 0.1
    standardise: bool = True  # the head's input, with training-set statistics
    feature_batch: int = 128
    log_every: int = RunConfig.log_every
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"--head must be one of {sorted(HEADS)}, got {self.head!r}.")
        for name, value in HEADS[self.head].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if not (self.token_grid == "native" or (isinstance(self.token_grid, int) and self.token_grid >= 0)):
            raise ValueError(f"--token-grid must be 0 (no tokens), a grid side G >= 1, or 'native', got {self.token_grid!r}.")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"--augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}.")
        if self.device not in DEVICES:
            raise ValueError(f"--device must be one of {DEVICES}, got {self.device!r}.")
        if self.source not in SOURCES:
            raise ValueError(f"--source must be one of {SOURCES}, got {self.source!r}.")

    @property
    def cache_grid(self) -> int | None:
        """token_grid as the feature cache reads it (None: the backbone's own grid)."""
        return None if self.token_grid == "native" else self.token_grid

    @property
    def variant(self) -> str:
        """What the run is, in words: the report's "method" row (the baseline is named as the baseline)."""
        if self.method == "fixmatch":
            return "FixMatch"
        terms = [f"{name} {weight:g}" for name, weight in (("critic", self.critic), ("latent", self.latent), ("augment", self.augment)) if weight]
        if not terms:
            prefix = "baseline: " if is_baseline(self) else "TwinTURBO task loss only: "
            return f"{prefix}{self.task_loss} {self.rescale}"
        return f"TwinTURBO: {self.task_loss} {self.rescale} + " + " + ".join(terms)

    def record(self) -> dict:
        """config.json: every setting, and the variant."""
        return {**json.loads(json.dumps(dataclasses.asdict(self), default=str)), "variant": self.variant}

    def loss_settings(self) -> TwinTurboLoss:
        return TwinTurboLoss(task=self.task_loss, rescale=self.rescale, lambda_critic=self.critic,
                             lambda_latent=self.latent, lambda_augment=self.augment, prior=self.prior,
                             latent_negatives=self.latent_negatives, target_dropout=self.target_dropout)


OFF = {"critic": 0.0, "latent": 0.0, "augment": 0.0}
BASELINE = {"task_loss": "cat-cross", "rescale": "softmax", **OFF}  # what TwinTURBO is measured against


# The head's shape. "cpu": no token block, the pooled vector into a 512-wide latent (what the ladder
# measures on 2 CPU cores); "paper": the twinturbo paper's App. B, the block at 768 on every token of
# the backbone's grid, latent 8000, predictor hidden 1024 (Tables 2-4).
HEADS = {
    "cpu": {"token_grid": 0, "token_width": 256, "latent_dim": 512, "hidden_dim": 128},
    "paper": {"token_grid": "native", "token_width": 768, "latent_dim": 8000, "hidden_dim": 1024},
}
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
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


def prepare_features(config: FinetuneConfig, progress: bool = True) -> Prepared:
    from ..models import build_encoder
    from ..models.registry import ENCODERS

    encoder = build_encoder(config.backbone)
    if config.backbone in ENCODERS and not encoder.config.get("pretrained"):
        raise ValueError(f"--backbone {config.backbone} has random weights here (no pretrained file is available offline), and a "
                         "frozen random backbone gives features worth little and different on every run. Pass "
                         "efficientnet-lite0 (ImageNet), hf:<model id>, or an encoder .safetensors, e.g. from `infomax pretrain`.")
    from ..data.imagefolder import MissingSplit

    load = {"download": config.download, "image_size": config.image_size, "source": config.source}
    train_set = load_dataset(config.dataset, "train", config.data_root, **load)
    try:
        test_set = load_dataset(config.dataset, "test", config.data_root, **load)
    except MissingSplit as missing:
        raise ValueError(f"{missing} finetune scores the head on a test split: lay the images out as train/CLASS/... and "
                         "test/CLASS/... (a few per class are enough).") from None
    common = {"resolution": config.resolution, "token_grid": config.cache_grid, "batch_size": config.feature_batch,
              "progress": progress, "device": resolve_device(config.device)}
    # Token crops are cut from the plain view's full token map, so that one is stored at the native grid.
    train_views = {"views": 0, "token_grid": None} if config.augmentation == "tokens" else {"views": config.views}
    train = extract_features(encoder, train_set, seed=0, **{**common, **train_views}).in_memory()
    test = extract_features(encoder, test_set, views=0, **common).in_memory()
    validation = balanced_subset(train.labels, fraction=config.val_fraction, seed=0) if config.val_fraction else np.array([], dtype=np.int64)
    pool = np.setdiff1d(np.arange(len(train)), validation)
    return Prepared(train, test, validation, pool, train_set.image_shape[-1], train_set.files)


def build_method(config: FinetuneConfig, token_dim: int | None, dim: int, num_classes: int):
    tokens = token_dim is not None
    head = TwinTurboHead(token_dim, dim, num_classes,
                         latent_dim=config.latent_dim, hidden_dim=config.hidden_dim, use_tokens=tokens, token_width=config.token_width)
    if config.method == "fixmatch":
        return FixMatch(head)
    if config.method != "twinturbo":
        raise ValueError(f"`method` must be 'twinturbo' or 'fixmatch', got {config.method!r}.")
    return TwinTurbo(head, config.loss_settings())


def run_epochs(config: FinetuneConfig, steps_per_epoch: int) -> int:
    """Epochs the run lasts. A small dataset gives few steps per epoch, and the critic needs steps:
    on MNIST-5k (7 steps an epoch) 5 epochs left full TwinTURBO 20 points below its baseline on the
    validation split, where ~400 steps put it above (benchmarks/results/twinturbo_defaults.md)."""
    return max(config.epochs, -(-config.min_steps // max(steps_per_epoch, 1)))


class Trainer:
    def __init__(self, config: FinetuneConfig, prepared: Prepared, out: Path):
        self.config, self.prepared, self.out = config, prepared, out
        self.labels, self.labelled, self.validation = self._labelled_subset(config, prepared)
        self.unlabelled = np.setdiff1d(prepared.pool, self.labelled)
        batch = min(config.batch_size, len(self.unlabelled))
        self.sampler = DualSampler(self.unlabelled, self.labelled, self.labels, batch, seed=config.seed)
        torch.manual_seed(config.seed)
        token_dim = prepared.train.token_dim if config.token_grid != 0 else None
        self.method = build_method(config, token_dim, prepared.train.dim, len(prepared.train.classes))
        if config.standardise:
            sample = np.sort(np.random.default_rng(0).permutation(prepared.pool)[:10_000])
            tokens, pooled = prepared.train.load(sample, 0, tokens=token_dim is not None)
            self.method.head.set_input_statistics(pooled, to_grid(tokens, config.cache_grid))
        self.optimisers = {stage: self._adamw(self.method.stage_parameters(stage)) for stage in self.method.stages}
        self.step, self.total_steps, self.seconds = 0, run_epochs(config, len(self.sampler)) * len(self.sampler), 0.0

    def _adamw(self, params) -> torch.optim.Optimizer:
        optimiser = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        for group in optimiser.param_groups:
            group["base_lr"] = self.config.lr
        return optimiser

    @staticmethod
    def _labelled_subset(config: FinetuneConfig, prepared: Prepared) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels of the training split, labelled rows, validation rows): a seeded balanced draw from
        the pool, or the user's labels file, whose labels win and whose images leave validation."""
        labels = prepared.train.labels
        if not config.labels_file:
            return labels, prepared.pool[balanced_subset(labels[prepared.pool], config.labels, seed=config.seed)], prepared.validation
        rows, given = read_labels_file(config.labels_file, prepared.train.classes, len(labels), prepared.files)
        labels = labels.copy()
        labels[rows] = given
        return labels, rows, np.setdiff1d(prepared.validation, rows)

    def setup(self, resume: bool) -> None:
        """The head on the engine's loop: one Fabric process (--device), warm-up then constant lr,
        a checkpoint at every epoch end. With `resume` the checkpoint is loaded here, before anything is written."""
        from lightning.fabric import Fabric

        from .loop import Loop, Schedule

        fabric = Fabric(accelerator=resolve_device(self.config.device), devices=1, precision="32-true")
        model, *optimisers = fabric.setup(self.method, *self.optimisers.values())
        warmup = self.config.warmup_steps
        if warmup > self.total_steps // 2:
            warmup = self.total_steps // 10
            print(f"[finetune] the {self.config.warmup_steps}-step warm-up would take most of this {self.total_steps}-step run; "
                  f"warming up over {warmup} steps instead (set --warmup-steps to choose).", file=sys.stderr, flush=True)
        schedule = Schedule(self.total_steps, warmup, self.config.warmup_start, decay="constant", final_factor=1.0)
        run = RunConfig(log_every=self.config.log_every, checkpoint_every=2**62, knn_every=0)
        batches = FeatureBatches(self.sampler, self.prepared.train, self.labels, self.method.views, fabric.device,
                                 head_grid=self.config.cache_grid, augmentation=self.config.augmentation)
        self.loop = Loop(fabric, model, dict(zip(self.optimisers, optimisers)), batches, schedule, run, self.out, name="finetune")
        if resume:
            self.loop.restore()

    def train(self, resume: bool) -> None:
        save_subset(self.out / "labelled.json", self.labelled, self.labels, dataset=self.config.dataset, split="train", seed=self.config.seed)
        summary = self.loop.fit(resume)
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
            chunks.append(self.method.predict(to_grid(tokens, self.config.cache_grid), pooled).cpu())
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
    """The trained method's weights, with what `infomax predict` needs to rebuild the pipeline."""
    features = trainer.prepared.train
    spec = {k: features.manifest[k] for k in ("resolution", "encoder_config", "weights")}
    spec.update(token_grid=trainer.config.cache_grid, token_dim=features.token_dim, dim=features.dim, channels=channels)
    record = {"config": dataclasses.asdict(trainer.config), "classes": features.classes, "features": spec}
    rundir.save_tensors(path, trainer.method.state_dict(), {"infomax_finetune": json.dumps(record)})


def finetune(config: FinetuneConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
             prepared: Prepared | None = None, report: bool = True) -> dict:
    check_settings(config)
    rundir.take(out, resume=resume, overwrite=overwrite)  # resumed or overwritten: one owner before any work
    if resume:
        check_resume(config, Path(out) / "config.json")
    prepared = prepared or prepare_features(config)
    trainer = Trainer(config, prepared, Path(out))  # every input is checked before anything is written
    trainer.setup(resume)
    out = trainer.out = rundir.prepare(out, resume=resume, overwrite=overwrite)
    rundir.write_json(out / "config.json", config.record())
    rundir.record_environment(out)
    trainer.train(resume)
    metrics = trainer.evaluate()
    if not any(k.startswith("last/") for k in metrics):  # a resume of a finished run trained nothing: keep what it had
        metrics.update(rundir.previous_last(out))
    save_head(trainer, out / "head.safetensors", prepared.channels)
    rundir.write_json(out / "metrics.json", metrics)  # the run is finished and usable before any baseline check
    if config.baseline_check and not is_baseline(config):
        checked = compare_with_baseline(config, prepared, out, metrics.get("val_top1"))
        if checked:
            metrics.update(checked)
            rundir.write_json(out / "metrics.json", metrics)
    if report:
        write_run_report(out)
    rundir.release(out)
    return metrics


def is_baseline(config: FinetuneConfig) -> bool:
    """The run is the cat-cross baseline itself (BASELINE's settings, no added term)."""
    return config.method == "twinturbo" and all(getattr(config, k) == v for k, v in BASELINE.items())


def compare_with_baseline(config: FinetuneConfig, prepared: Prepared, out: Path, val_top1: float | None) -> dict:
    """Train the cat-cross baseline on the same labels in OUT/baseline and compare on the validation split:
    no default is safe on every dataset, and a run should say when it did worse than the plain head.
    A check that cannot run or fails is said and leaves the finished run as it is."""
    if val_top1 is None:
        print("[finetune] baseline check skipped: no validation images are left (the labels file covers them); "
              "nothing to compare on.", file=sys.stderr, flush=True)
        return {}
    print(f"[finetune] baseline check: the cat-cross head on the same labels, in {out / BASELINE_DIR}", file=sys.stderr, flush=True)
    baseline = dataclasses.replace(config, method="twinturbo", baseline_check=False, **BASELINE)
    try:
        result = finetune(baseline, out / BASELINE_DIR, overwrite=True, prepared=prepared, report=False)
    except Exception as error:  # noqa: BLE001 - the run itself is saved; the check only adds a comparison
        print(f"[finetune] baseline check failed ({error}); the run in {out} is complete without it.", file=sys.stderr, flush=True)
        return {}
    margin = val_top1 - result["val_top1"]
    if margin < 0:
        advice = "or lower --critic and --augment" if config.method == "twinturbo" else "or use --method twinturbo"
        print(f"[finetune] warning: on the validation split this run scores {val_top1:.1f}%, below the cat-cross baseline "
              f"trained on the same labels ({result['val_top1']:.1f}%). That baseline's head is in {out / BASELINE_DIR} "
              f"(infomax predict --run {out / BASELINE_DIR}); {advice}.", file=sys.stderr, flush=True)
    return {"baseline/val_top1": result["val_top1"], "baseline/test_top1": result["test_top1"], "val_margin_over_baseline": margin}


BASELINE_DIR = "baseline"
RESUMABLE = {"baseline_check", "epochs", "min_steps", "log_every", "data_root", "feature_batch", "download", "device"}  # may differ on --resume; nothing else may


def check_resume(config: FinetuneConfig, saved_path: Path) -> None:
    if not saved_path.is_file():
        raise ValueError(f"--resume: {saved_path.parent} has no {saved_path.name} (it stopped before its settings were "
                         "written), so there is nothing to resume; start again with --overwrite.")
    try:
        saved = json.loads(saved_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--resume: {saved_path} cannot be read ({error}); restore it, or start again with --overwrite.") from None
    rundir.refuse_changes(saved, config.record(), RESUMABLE, saved_path.name)


def check_settings(config: FinetuneConfig) -> None:
    """Refuse settings that would run but mean nothing, naming the fix."""
    if config.min_steps < 0:
        raise ValueError(f"--min-steps must be 0 (epochs alone decide) or more, got {config.min_steps}.")
    for name in ("epochs", "batch_size", "labels"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}.")
    if not (config.lr > 0 and config.lr < 1e3):
        raise ValueError(f"--lr must be a positive learning rate below 1000, got {config.lr}.")
    if config.resolution is not None and config.resolution < 8:
        raise ValueError(f"--resolution must be at least 8 pixels (or left out for the backbone's own), got {config.resolution}.")
    if config.views < 1 and config.augmentation == "cached" and (config.method == "fixmatch" or config.augment > 0):
        raise ValueError(f"--views {config.views} leaves no augmented view for the augment term or FixMatch's strong view; "
                         "use --views 1 or more, --augmentation tokens, or --augment 0 with --method twinturbo.")
    if config.labels_file and config.labels != FinetuneConfig.labels:
        raise ValueError("--labels and --labels-file both choose the labelled images; pass one of them.")


def write_run_report(out: Path) -> Path:
    """report.html: the run, beside its baseline check's run when there is one."""
    from ..eval.plots import plot_training_curves
    from ..eval.report import write_report

    if (out / rundir.METRICS_LOG).exists():
        plot_training_curves(out, out / "plots" / "training_curves.png", title="TwinTURBO head training")
    checked = out / BASELINE_DIR
    return write_report([out, checked] if (checked / "metrics.json").exists() else [out], out / "report.html")
