"""`infomax pretrain`: a self-supervised method trains an encoder from scratch on the engine.

The training split loses a seeded held-out slice (`data.holdout` images, the kNN monitor's
queries; `data.bank` more images are its voters and still train); the rest is shuffled,
sharded over ranks and augmented on the device. The run leaves config.yaml (read back by
--resume), environment.json, metrics.jsonl, TensorBoard events, state.safetensors (resumable)
and encoder.safetensors, which `evaluate`, `analyze` and `finetune --backbone` accept.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from .. import config as C
from .. import methods
from ..precision import native_precision
from ..runs import loggers, rundir
from .loop import STATE, Loop, Schedule
from .monitors import HeldOut, KNNMonitor, OnlineLinear, embedding_spread, redundancy_to_alignment
from .optim import build_optimiser

CONFIG = "config.yaml"
# Settings a resumed run may change; any other difference from config.yaml is refused.
RESUMABLE = {"schedule.epochs", "schedule.max_steps", "run.checkpoint_every", "run.log_every", "run.progress",
             "run.knn_every", "data.data_root", "data.download", "data.workers", "data.prefetch", "data.max_bad_fraction",
             "run.abort_on_collapse", "run.linear_every", "run.linear_lr", "run.loggers", "run.project"}  # none touches the method
PRECISIONS, ACCELERATORS = C.PRECISIONS, C.ACCELERATORS


def resolve(recipe: str | None, method: str | None, sets: list[str], flags: dict, out: Path, resume: bool,
            preset=None, verb: str = "pretrain") -> C.TrainConfig:
    """The run's config: config.yaml of the run (resume) or the recipe (then `preset(tree)`, a verb's own
    changes to a fresh recipe), then flags, then --set. `verb`: the command, whose runs alone it resumes."""
    saved = out / CONFIG
    if resume:
        tree = saved_tree(out)
        if method and method != tree["method"]["name"]:
            raise ValueError(f"--resume: {out} trains {tree['method']['name']}, not {method}; drop --method or choose another --out.")
        if recipe:
            raise ValueError(f"--resume reads the run's own settings from {saved}; drop --recipe {recipe}.")
        made_by = "continue" if tree.get("continued") is not None else "finetune" if tree.get("finetune") is not None else "pretrain"
        if made_by != verb:
            raise ValueError(f"--resume: {out} is an `infomax {made_by}` run; resume it with `infomax {made_by} --resume --out {out}`.")
    else:
        if not method and not recipe:
            raise ValueError(f"name a method (--method {'|'.join(methods.METHODS)}) or a --recipe.")
        tree = C.load_recipe(recipe or f"{method}-cpu")
        named = (tree.get("method") or {}).get("name")
        if method and named and named != method:
            raise ValueError(f"recipe {recipe!r} is for {named}, not {method}; choose a {method}-... recipe (`infomax recipes`).")
        tree.setdefault("method", {})["name"] = named or method
        if preset is not None:
            preset(tree)
    for key, value in flags.items():
        if value is not None:
            C.set_value(tree, f"{key}={value}" if not isinstance(value, str) else f"{key}={_quoted(value)}")
    for assignment in sets:
        C.set_value(tree, assignment)
    return C.build_config(tree)


def saved_tree(out: Path) -> dict:
    """The settings config.yaml of the run in `out` records, as a tree; a clear error when they cannot be read."""
    saved = Path(out) / CONFIG
    if not saved.is_file():
        raise ValueError(f"--resume: {out} has no {CONFIG} (it stopped before its settings were written), so there is "
                         "nothing to resume; start again with --overwrite.")
    try:
        return C.to_dict(C.load(saved))
    except (ValueError, OSError) as error:
        raise ValueError(f"--resume: {saved} cannot be read ({error}); restore it, or start again with --overwrite.") from None


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def check_resume(config: C.TrainConfig, out: Path, resumable: set[str] = RESUMABLE) -> None:
    rundir.refuse_changes(_flat(saved_tree(out)), _flat(C.to_dict(config)), resumable, CONFIG)


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "options" and key != "view_options":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_devices(run, batch_size: int) -> None:
    """What RunConfig cannot know alone: this machine's devices, the launcher, the batch's split."""
    if run.accelerator == "cuda" and not torch.cuda.is_available():
        raise ValueError("--accelerator cuda: this machine has no CUDA device (or this torch is a CPU build); use --accelerator cpu.")
    if run.accelerator == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--accelerator mps: MPS is not available here; use --accelerator cpu.")
    on_cpu = run.accelerator == "cpu" or (run.accelerator == "auto" and not torch.cuda.is_available()
                                          and not torch.backends.mps.is_available())
    if run.precision == "auto":
        run.precision = native_precision("cpu" if on_cpu else "mps" if run.accelerator == "mps" or not torch.cuda.is_available() else "cuda")
    if run.precision == "16-mixed" and on_cpu:
        raise ValueError("--precision 16-mixed needs a GPU (on a CPU it would run bf16 and say fp16); use bf16-mixed.")
    if run.num_nodes > 1 and not launched():
        raise ValueError(f"--num-nodes {run.num_nodes} needs a launcher that starts this command on every node, or it waits "
                         f"forever for the others: `torchrun --nnodes {run.num_nodes} --nproc-per-node {run.devices} "
                         "--rdzv-backend c10d --rdzv-endpoint HOST:29500 -m infomax pretrain ...` on each node, or `srun` "
                         "inside an sbatch job on SLURM.")
    world = run.devices * run.num_nodes
    if batch_size % world:
        raise ValueError(f"--batch-size {batch_size} does not split over {world} processes; use a multiple of {world}.")


def launched() -> bool:
    """Started by a multi-node launcher Fabric knows (torchrun, SLURM, LSF, MPI)."""
    from lightning.fabric.plugins.environments import LSFEnvironment, MPIEnvironment, SLURMEnvironment, TorchElasticEnvironment

    return any(env.detect() for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment))


def make_fabric(run, out: Path, resume: bool = False):
    from lightning.fabric import Fabric

    world = run.devices * run.num_nodes
    strategy = "ddp" if world > 1 else "auto"
    return Fabric(accelerator=run.accelerator, devices=run.devices, num_nodes=run.num_nodes, precision=run.precision,
                  strategy=strategy, loggers=loggers.build(run, out, resume))


def split_rows(labels: np.ndarray, holdout: int, bank: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training rows, kNN bank rows, held-out query rows) from one seeded permutation."""
    n = len(labels)
    holdout = min(holdout, n // 5)
    if n - holdout < batch_size:
        holdout = max(0, n - batch_size)
    order = np.random.default_rng(0).permutation(n)
    query, rest = order[:holdout], order[holdout:]
    return np.sort(rest), np.sort(rest[:bank]), np.sort(query)


def build_method(config: C.TrainConfig, world: int, device_type: str = "cpu", encoder=None):
    """The method around its encoder (`config.model.backbone`, or `encoder` when given), with its add-ons.
    Under DDP on CUDA, batch norm is synchronised for methods that communicate (SimCLR, Barlow Twins,
    VICReg: their papers' global BN); SMI keeps per-device BN by design; on CPU (gloo) torch has no
    synchronised BN, so BN statistics stay per process."""
    from ..methods.addons import WithAddOns, build_addons
    from ..models import build_encoder

    encoder = build_encoder(config.model.backbone, **config.model.options) if encoder is None else encoder
    try:
        method = methods.build(config.method_name, encoder, config.method)
    except TypeError as error:
        raise ValueError(f"method {config.method_name}: {error}") from None
    if config.addons:
        cls = methods.METHODS[config.method_name]
        method = WithAddOns(method, build_addons(config.addons, config.method_name, cls.embeddings, config.optim.batch_size))
    if world > 1 and methods.METHODS[config.method_name].communicates and device_type == "cuda":
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    return method


def check_run(config: C.TrainConfig) -> int:
    """Checks every training verb makes before anything is built; returns the per-device batch."""
    if config.method_name not in methods.METHODS:
        raise ValueError(f"{config.method_name} is a few-label head on a frozen backbone, not a pretraining method: "
                         f"run it with `infomax finetune --method {config.method_name}`.")
    if config.data.resolution is None:
        raise ValueError("data.resolution is null; pretraining needs the views' side in pixels, e.g. --resolution 32.")
    run = config.run
    check_devices(run, config.optim.batch_size)
    per_rank = config.optim.batch_size // (run.devices * run.num_nodes)
    cls = methods.METHODS[config.method_name]
    if per_rank < cls.min_batch:
        raise ValueError(f"{config.method_name} needs at least {cls.min_batch} images per device per step, got {per_rank}; "
                         "raise --batch-size.")
    if config.addons:  # checked now, and saved with every setting written out (a resume never re-resolves them)
        from ..methods.addons import resolved_entries

        config.addons = resolved_entries(config.addons, config.method_name, cls.embeddings, config.optim.batch_size)
    return per_rank


def view_set(config: C.TrainConfig):
    from ..data.views import get_view_set

    cls = methods.METHODS[config.method_name]
    views = get_view_set(config.data.views or cls.default_views, config.data.resolution, **config.data.view_options)
    if len(views) < cls.num_views:
        raise ValueError(f"{config.method_name} trains on at least {cls.num_views} views; the view set "
                         f"{config.data.views!r} gives {len(views)}. Choose another data.views (or drop it for the method's own).")
    if cls.max_views is not None and len(views) > cls.max_views:
        raise ValueError(f"{config.method_name} trains on {cls.max_views} views, but data.views={config.data.views!r} makes "
                         f"{len(views)}: the rest would be made and thrown away. Drop data.views (or choose a 2-view one); "
                         "multi-crop is for swav, mira and hydes.")
    return views


def pretrain(config: C.TrainConfig, out: Path, *, resume: bool = False, overwrite: bool = False, watch: tuple = ()) -> dict:
    """Train `config`'s method into the run directory `out`; `watch`: more callables `(loop, terms) -> dict`
    for the logged steps (a benchmark's own probes)."""
    per_rank = check_run(config)
    train = training_images(config)
    views = view_set(config)

    def build(fabric):
        method = build_method(config, fabric.world_size, fabric.device.type)
        labelled = bool(len(train.labels)) and bool((train.labels >= 0).all())
        holdout = config.data.holdout if labelled else 0  # no labels, no monitor: every image trains
        rows, bank, query = split_rows(train.labels, holdout, config.data.bank, config.optim.batch_size)
        batches = view_batches(config, train, rows, views, per_rank, fabric)
        run = config.run
        if not labelled and run.knn_every and fabric.global_rank == 0:
            print(f"[pretrain] {config.data.dataset} has unlabelled images, so the kNN monitor (which needs labels) is off "
                  "and every image trains; evaluate the encoder on labelled data afterwards (infomax evaluate).",
                  file=sys.stderr, flush=True)
        return method, batches, _monitors(config, train, bank, query, method, fabric.device)

    return train_method(config, out, build, resume=resume, overwrite=overwrite, watch=watch, name=f"pretrain {config.method_name}")[0]


def _monitors(config: C.TrainConfig, train, bank, query, method, device) -> tuple:
    """The online kNN (when the bank holds k rows) and the online linear probe, on the held-out `query` rows."""
    run = config.run
    if not len(query) or not (run.knn_every or run.linear_every):
        return ()
    known, bank, query = _monitor_images(config, train, bank, query) if config.data.source == "stream" else (train, bank, query)
    monitors, held_out = [], HeldOut(known, query, config.data.resolution)
    if run.knn_every and len(bank) >= run.knn_k:
        monitors.append(KNNMonitor(held_out, bank, run.knn_k, run.knn_temperature, run.knn_every))
    if run.linear_every and "backbone" in getattr(method, "embeddings", ()):
        labels = train.labels  # every training row's label; `known` holds the monitor's rows only
        monitors.append(OnlineLinear(held_out, method.encoder.dim, run.linear_lr, run.linear_every, run.seed, device, labels=labels))
    return tuple(monitors)


def training_images(config: C.TrainConfig):
    """The training split: a decoded Dataset, or encoded Samples for the stream (data.source, resolved and
    recorded here, so a resume reads the images as the run did)."""
    from ..data.stream import resolve_source

    data = config.data
    data.source, samples = resolve_source(data)
    if samples is not None:
        return samples
    from ..data.dataset import load_dataset

    return load_dataset(data.dataset, "train", data.data_root, download=data.download, image_size=data.image_size,
                        workers=data.workers)


def view_batches(config: C.TrainConfig, train, rows, views, per_rank: int, fabric):
    """This rank's batches of views of `rows`: of a decoded Dataset's array, or streamed from encoded Samples."""
    from ..data.encoded import Samples

    common = dict(seed=config.run.seed, rank=fabric.global_rank, world_size=fabric.world_size, device=fabric.device)
    if not isinstance(train, Samples):
        from ..data.batches import ViewBatches

        return ViewBatches(train.images, rows, views, per_rank, **common)
    from ..data.decode import resolve_workers
    from ..data.stream import StreamBatches

    def total(count: int) -> int:
        return int(fabric.all_reduce(torch.tensor(float(count), device=fabric.device), reduce_op="sum"))

    return StreamBatches(train, rows, views, per_rank, workers=resolve_workers(config.data.workers),
                         prefetch=config.data.prefetch, max_bad_fraction=config.data.max_bad_fraction,
                         total=total if fabric.world_size > 1 else None, **common)


def _monitor_images(config: C.TrainConfig, samples, bank, query):
    """The kNN monitor's bank and queries decoded once as plain views (a few thousand images, in memory)."""
    from types import SimpleNamespace

    from ..data.stream import plain_images

    wanted = np.concatenate([bank, query])
    images, kept = plain_images(samples, wanted, config.data.resolution)
    position = {int(r): i for i, r in enumerate(kept)}
    known = SimpleNamespace(images=images, labels=samples.labels[kept])
    return (known, np.asarray([position[r] for r in bank if r in position], np.int64),
            np.asarray([position[r] for r in query if r in position], np.int64))


def train_method(config: C.TrainConfig, out: Path, build, *, resume: bool, overwrite: bool, watch: tuple = (),
                 name: str = "train") -> tuple[dict, object]:
    """The run of every training verb: Fabric, the run directory, `build(fabric) -> (method, batches,
    monitors)`, the Loop, and at the end encoder.safetensors, metrics.json and the report (rank 0).
    Nothing is written before every input is checked and a resume's checkpoint is loaded, and a new run
    that stops before its first checkpoint leaves no folder behind. Returns (the result, empty on other
    ranks; the trained method) for a verb's own evaluation."""
    out, run = Path(out), config.run
    fabric = make_fabric(run, out, resume)
    if fabric.global_rank == 0:
        rundir.take(out, resume=resume, overwrite=overwrite)
        if resume:
            check_resume(config, out)
    try:
        fabric.launch()
        torch.manual_seed(run.seed)  # the same initial weights on every rank
        method, batches, monitors = build(fabric)
        method.check_batch(config.optim.batch_size)
        method = method.to(memory_format=torch.channels_last)  # 1.3x on CPU too, fp32 or bf16 (cpu_speed.md)
        optimiser = build_optimiser(method.stage_parameters("main"), config.optim)
        compiled = torch.compile(method) if run.compile else method
        model, optimiser = fabric.setup(compiled, optimiser)
        schedule = make_schedule(config.schedule, len(batches))
        loop = Loop(fabric, model, {"main": optimiser}, batches, schedule, run, out, monitors=monitors,
                    watch=(embedding_spread, redundancy_to_alignment, *watch), name=name, clip_grad=config.optim.clip_grad)
        loop.method = method
        if resume:
            loop.restore()
        fresh = not rundir.is_run(out)
        if fabric.global_rank == 0:  # only now, with every input checked, is anything written
            out = rundir.prepare(out, resume=resume, overwrite=overwrite)
            C.save(config, out / CONFIG)
            rundir.record_environment(out, world_size=fabric.world_size, device=str(fabric.device))
            loggers.record(fabric.loggers, out)
        fabric.barrier()
        try:
            summary = loop.fit(resume)
        except BaseException as error:
            loggers.close(fabric.loggers, "interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
            if fresh and fabric.global_rank == 0 and not (out / STATE).exists():  # nothing to resume: no folder to block a rerun
                rundir.discard(out)
            raise
        loggers.close(fabric.loggers, "success")
        result = {"method": config.method_name, "steps": summary["steps"], "train_seconds": round(summary["seconds"], 2)}
        last = {f"last/{k}": v for k, v in loop.last_values().items()}  # every rank takes part
        if fabric.global_rank == 0:
            result.update(last or rundir.previous_last(out))  # a resume of a finished run trained nothing: keep what it had
            _finish(out, method, monitors, fabric.device, result)
        fabric.barrier()
        return (result if fabric.global_rank == 0 else {}), method
    finally:
        rundir.release(out)


def _finish(out: Path, method, monitors, device, result: dict) -> None:
    """Rank 0 at the end: the encoder, the held-out kNN into `result`, metrics.json, the report."""
    from ..models.partial import Tail
    from ..models.registry import save_encoder

    encoder = method.encoder
    save_encoder(encoder.encoder if isinstance(encoder, Tail) else encoder, out / "encoder.safetensors")
    for monitor in monitors:
        result.update(monitor.final(method, device))
    rundir.write_json(out / "metrics.json", result)
    _write_report(out)


def make_schedule(schedule: C.ScheduleConfig, per_epoch: int) -> Schedule:
    total = schedule.epochs * per_epoch
    total = min(total, schedule.max_steps) if schedule.max_steps else total
    warmup = schedule.warmup_steps if schedule.warmup_steps is not None else round(schedule.warmup_epochs * per_epoch)
    return Schedule(total, min(warmup, total), schedule.warmup_start, schedule.decay, schedule.final_factor)


def _write_report(out: Path) -> None:
    from ..eval.plots import plot_training_curves
    from ..eval.report import write_report

    if (out / rundir.METRICS_LOG).exists():
        try:
            plot_training_curves(out, out / "plots" / "training_curves.png", title=f"Pretraining: {out.name}")
        except ValueError:
            return
    write_report([out], out / "report.html")


__all__ = ["pretrain", "resolve"]
