"""SLURM: requeue before the time limit, and pick the run up again when the requeued job starts.

`#SBATCH --signal=USR1@90` has SLURM send SIGUSR1 90 s before the limit. The loop then finishes its
step, checkpoints (every rank stops at the same step) and rank 0 asks `scontrol requeue` for the job.
The requeued job runs the same command: a training verb whose --out holds an unfinished run (a
checkpoint, no metrics.json) resumes it by itself under SLURM, its config checked as --resume checks it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def job_id() -> str | None:
    """This job's id for scontrol (an array task as ARRAY_TASK), or None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def run_id() -> str | None:
    """An id every rank of this launch shares and a requeue keeps: SLURM's job id, else torchrun's run id."""
    elastic = os.environ.get("TORCHELASTIC_RUN_ID")
    return job_id() or (elastic if elastic and elastic != "none" else None)


def requeue() -> str:
    """Ask SLURM to requeue this job; the sentence to end the run with."""
    job = job_id()
    if job is None:
        return ("SIGUSR1 outside a SLURM job (no SLURM_JOB_ID), so there is nothing to requeue; the checkpoint is saved: "
                "rerun with --resume.")
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return (f"SIGUSR1: `scontrol requeue {job}` could not run ({error}); the checkpoint is saved: resubmit the job, "
                "which resumes the run by itself.")
    if done.returncode != 0:
        return (f"SIGUSR1: `scontrol requeue {job}` failed ({done.stderr.strip() or done.returncode}); the checkpoint is "
                "saved: resubmit the job, which resumes the run by itself.")
    return f"SIGUSR1: requeued SLURM job {job}; it resumes from the checkpoint when it starts again."


def unfinished(out: Path) -> bool:
    from .rundir import is_run

    out = Path(out)
    return is_run(out) and (out / "state.safetensors").is_file() and not (out / "metrics.json").is_file()


def resume_requeued(out, resume: bool, overwrite: bool) -> bool:
    """`resume`, or True when this is a SLURM job and `out` holds an unfinished run (a requeued job)."""
    if resume or job_id() is None or out is None or not unfinished(Path(out)):
        return resume
    if overwrite:
        if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
            raise ValueError(f"this requeued SLURM job would --overwrite its own unfinished run in {out}; drop --overwrite "
                             "from the job script (the requeued job resumes the run by itself).")
        return resume
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    print(f"[infomax] SLURM job {job_id()} (restart {restarts}): {out} holds an unfinished run; resuming it.",
          file=sys.stderr, flush=True)
    return True
