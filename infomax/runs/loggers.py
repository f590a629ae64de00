"""The metric loggers of a run (`run.loggers`), through Lightning's logger classes; metrics.jsonl is
written whatever they are.

    tensorboard  OUT/tensorboard (the default)
    csv          OUT/csv/version_K/metrics.csv, one folder per segment of a resumed run
    wandb        Weights & Biases, project `run.project` (pip install 'infomax[wandb]'; WANDB_MODE=offline works)
    mlflow       MLflow, experiment `run.project`, at MLFLOW_TRACKING_URI (pip install 'infomax[mlflow]')

A resumed or requeued run logs into the same W&B and MLflow run: their ids are kept in OUT/loggers.json
when the run starts. A new W&B id is SLURM's job or torchrun's run id where there is one (runs/slurm.py).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import uuid
from pathlib import Path

from . import slurm
from .atomic import write_atomic

IDS = "loggers.json"
PACKAGES = {"wandb": "wandb", "mlflow": "mlflow"}


def check(names: list[str]) -> None:
    """Refuse a logger whose package is missing, naming the install line, before anything runs."""
    for name in names:
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise ValueError(f"run.loggers has {name}, but the {package} package is not installed: "
                             f"pip install 'infomax[{name}]' (or drop {name} from run.loggers).")


def saved_ids(out: Path) -> dict:
    path = Path(out) / IDS
    return json.loads(path.read_text()) if path.is_file() else {}


def build(run, out: Path, resume: bool) -> list:
    """The run's Lightning loggers, in run.loggers order; a resumed run's keep the ids loggers.json holds."""
    check(run.loggers)
    out = Path(out)
    ids = saved_ids(out) if resume else {}
    loggers = []
    for name in run.loggers:
        if name == "tensorboard":
            from lightning.fabric.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(root_dir=str(out), name="tensorboard", version=""))
        elif name == "csv":
            from lightning.fabric.loggers import CSVLogger

            loggers.append(CSVLogger(root_dir=str(out), name="csv"))  # csv/version_K per segment: Lightning empties an old file
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(WandbLogger(project=run.project, name=out.name, id=ids.get("wandb") or new_id(out),
                                       save_dir=str(out), resume="allow"))
        elif name == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger

            loggers.append(MLFlowLogger(experiment_name=run.project, run_name=out.name, run_id=ids.get("mlflow"),
                                        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")))  # read now, not at import
    return loggers


def new_id(out: Path) -> str:
    """SLURM's or torchrun's run id (shared by every rank, kept by a requeue) with the run folder's, else a random one."""
    shared = slurm.run_id()
    if shared is None:
        return uuid.uuid4().hex[:12]
    return f"{shared}-{hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:6]}"


def record(loggers: list, out: Path) -> None:
    """Rank 0, once the run folder exists: the W&B and MLflow run ids into OUT/loggers.json (an MLflow run
    is created here, so its id is known before the first metric). --overwrite has cleared the old file."""
    ids = dict(saved_ids(out))
    for logger in loggers:
        kind = type(logger).__name__
        if kind == "WandbLogger":
            ids["wandb"] = logger.version  # the id it was given: no W&B run is started for it
        elif kind == "MLFlowLogger":
            ids["mlflow"] = logger.run_id
    if ids and ids != saved_ids(out):
        write_atomic(Path(out) / IDS, json.dumps(ids, indent=1) + "\n")


def close(loggers: list, status: str) -> None:
    """Flush every logger (the csv file is written here) and end the W&B run, so a resume in the same process
    starts it again under its id."""
    for logger in loggers:
        kind = type(logger).__name__
        try:
            logger.finalize("KILLED" if kind == "MLFlowLogger" and status == "interrupted" else status)
            if kind == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
                logger.experiment.finish(exit_code=0 if status == "success" else 1)
        except Exception as error:  # noqa: BLE001 - a logger failing to close never hides how the run ended
            print(f"[infomax] warning: the {kind} did not close cleanly ({error}).", file=sys.stderr, flush=True)
