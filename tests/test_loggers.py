"""run.loggers (runs/loggers.py): csv, W&B in offline mode and a local MLflow file store, each continued
by a resumed run under the same run id; bad input named before anything is written."""
import csv
import importlib.util
import json

import pytest

from infomax.cli import main

ARGS = ["pretrain", "--method", "simclr", "--dataset", "digits", "--batch-size", "64",
        "--set", "model.options.width=4", "--set", "method.projector_hidden=16", "--set", "method.projector_out=8",
        "--set", "run.knn_every=0", "--set", "run.linear_every=0", "--set", "run.log_every=1",
        "--set", "schedule.decay=constant"]  # constant: a finished run may be extended by --resume


def test_csv_logs_every_logged_step_one_file_per_segment_and_tensorboard_is_off_when_not_listed(tmp_path):
    out = tmp_path / "run"
    assert main([*ARGS, "--max-steps", "5", "--set", "run.loggers=[csv]", "--out", str(out)]) == 0
    assert main([*ARGS, "--max-steps", "7", "--resume", "--out", str(out)]) == 0
    steps = [[int(r["step"]) for r in csv.DictReader((out / "csv" / f"version_{k}" / "metrics.csv").open()) if r.get("loss")]
             for k in (0, 1)]
    assert steps == [[1, 2, 3, 4, 5], [6, 7]]  # a resume never empties the first segment's file
    assert not (out / "tensorboard").exists()
    assert main([*ARGS, "--max-steps", "2", "--set", "run.loggers=[csv]", "--overwrite", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "csv").iterdir()) == ["version_0"]  # --overwrite clears what the loggers wrote


def test_an_unknown_logger_and_a_missing_package_are_named_before_anything_is_written(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main([*ARGS, "--max-steps", "2", "--set", "run.loggers=[neptune]", "--out", str(out)]) == 2
    assert "tensorboard, csv, wandb, mlflow" in capsys.readouterr().err and not out.exists()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert main([*ARGS, "--max-steps", "2", "--set", "run.loggers=[tensorboard,wandb]", "--out", str(out)]) == 2
    assert "pip install 'infomax[wandb]'" in capsys.readouterr().err and not out.exists()


def test_wandb_offline_continues_the_same_run_after_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is an optional extra: pip install 'infomax[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    out = tmp_path / "run"
    assert main([*ARGS, "--max-steps", "3", "--set", "run.loggers=[wandb]", "--out", str(out)]) == 0
    first = json.loads((out / "loggers.json").read_text())["wandb"]
    assert first.startswith("777-")  # SLURM's job id: the same on every rank and after a requeue
    assert main([*ARGS, "--max-steps", "6", "--resume", "--out", str(out)]) == 0
    assert json.loads((out / "loggers.json").read_text())["wandb"] == first
    runs = sorted(p.name for p in (out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(name.endswith(first) for name in runs)


def test_mlflow_logs_both_segments_of_a_resumed_run_into_one_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is an optional extra: pip install 'infomax[mlflow]'")
    from mlflow.tracking import MlflowClient

    store = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store needs no server or database package
    out = tmp_path / "run"
    assert main([*ARGS, "--max-steps", "3", "--set", "run.loggers=[mlflow]", "--set", "run.project=tests",
                 "--out", str(out)]) == 0
    run_id = json.loads((out / "loggers.json").read_text())["mlflow"]
    assert main([*ARGS, "--max-steps", "6", "--resume", "--out", str(out)]) == 0
    assert json.loads((out / "loggers.json").read_text())["mlflow"] == run_id
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("tests")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == [1, 2, 3, 4, 5, 6]


def test_an_interrupted_mlflow_run_ends_killed_and_the_interrupt_stands(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is an optional extra: pip install 'infomax[mlflow]'")
    import os
    import signal

    from mlflow.tracking import MlflowClient

    import infomax.engine.pretrain as pretrain_module

    store = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    def interrupt(loop, terms):
        if loop.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return {}

    monkeypatch.setattr(pretrain_module, "redundancy_to_alignment", interrupt)
    out = tmp_path / "run"
    assert main([*ARGS, "--max-steps", "8", "--set", "run.loggers=[mlflow]", "--out", str(out)]) == 130
    run_id = json.loads((out / "loggers.json").read_text())["mlflow"]
    assert MlflowClient(store).get_run(run_id).info.status == "KILLED"
