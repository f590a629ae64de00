"""SLURM requeue (runs/slurm.py): SIGUSR1 checkpoints and requeues through a stand-in `scontrol`, and
the requeued job's repeated command resumes the unfinished run by itself."""
import json
import os
import signal

import pytest

import infomax.engine.pretrain as pretrain_module
from infomax.cli import main
from infomax.runs import slurm

ARGS = ["pretrain", "--method", "simclr", "--dataset", "digits", "--batch-size", "64", "--max-steps", "40",
        "--set", "model.options.width=4", "--set", "method.projector_hidden=16", "--set", "method.projector_out=8",
        "--set", "run.knn_every=0", "--set", "run.linear_every=0", "--set", "run.log_every=1"]


@pytest.fixture
def scontrol(tmp_path, monkeypatch):
    """A stand-in scontrol on PATH that records its arguments (and fails when told to)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.calls"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n[ -z "$SCONTROL_FAILS" ] || {{ echo "Invalid job id" >&2; exit 1; }}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    return calls


def usr1_at(step, monkeypatch):
    def watch(loop, terms):
        if loop.step == step:
            os.kill(os.getpid(), signal.SIGUSR1)
        return {}

    monkeypatch.setattr(pretrain_module, "redundancy_to_alignment", watch)  # one of the loop's watches, by name


def steps(out):
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_sigusr1_requeues_the_job_and_the_requeued_command_resumes_by_itself(tmp_path, scontrol, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    out = tmp_path / "run"
    usr1_at(15, monkeypatch)
    assert main([*ARGS, "--out", str(out)]) == 130
    assert scontrol.read_text().split() == ["requeue", "4242"]
    assert "requeued SLURM job 4242" in capsys.readouterr().err
    assert slurm.unfinished(out) and steps(out)[-1] == 15
    monkeypatch.undo()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert main([*ARGS, "--out", str(out)]) == 0  # the same command, no --resume
    assert "resuming it" in capsys.readouterr().err
    assert steps(out) == list(range(1, 41)) and not slurm.unfinished(out)
    assert main([*ARGS, "--out", str(out)]) == 2  # a finished run is not resumed by itself
    assert "already holds a run" in capsys.readouterr().err


def test_an_array_task_is_requeued_by_its_array_id_and_a_failed_requeue_says_resubmit(tmp_path, scontrol, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "9001")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "9000")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SCONTROL_FAILS", "1")
    usr1_at(5, monkeypatch)
    assert main([*ARGS, "--out", str(tmp_path / "run")]) == 130
    assert scontrol.read_text().split() == ["requeue", "9000_3"]
    err = capsys.readouterr().err
    assert "Invalid job id" in err and "resubmit the job" in err
    assert slurm.run_id() == "9000_3"


def test_sigusr1_outside_slurm_checkpoints_and_names_the_fix(tmp_path, scontrol, monkeypatch, capsys):
    out = tmp_path / "run"
    usr1_at(10, monkeypatch)
    assert main([*ARGS, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "outside a SLURM job" in err and "rerun with --resume" in err
    assert not scontrol.exists() and slurm.unfinished(out)
    monkeypatch.undo()
    assert main([*ARGS, "--out", str(out)]) == 2  # outside SLURM a run is resumed only when asked
    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    assert steps(out) == list(range(1, 41))


def test_the_run_id_is_slurms_job_else_torchruns(monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    assert slurm.run_id() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's placeholder without a rendezvous id
    assert slurm.run_id() is None
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc123")
    assert slurm.run_id() == "abc123"
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert slurm.run_id() == "77"


def test_a_requeued_recipe_command_resumes_and_a_requeued_overwrite_is_refused(tmp_path, scontrol, monkeypatch, capsys):
    recipe = ["pretrain", "--recipe", "simclr-cpu", *ARGS[3:]]  # the README's sbatch line names a recipe
    monkeypatch.setenv("SLURM_JOB_ID", "31")
    out = tmp_path / "run"
    usr1_at(12, monkeypatch)
    assert main([*recipe, "--out", str(out)]) == 130
    monkeypatch.undo()
    monkeypatch.setenv("SLURM_JOB_ID", "31")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert main([*recipe, "--overwrite", "--out", str(out)]) == 2
    assert "drop --overwrite" in capsys.readouterr().err and slurm.unfinished(out)
    assert main([*recipe, "--out", str(out)]) == 0
    assert steps(out) == list(range(1, 41))
