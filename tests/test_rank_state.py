"""State that differs by rank stays per rank: SwAV's queue is no weight of the module DDP wraps, every
rank's queue is in the checkpoint, and a 2-rank run stopped by SIGTERM resumes with each rank's own.

(The other methods keep no such state: BYOL's and MIRA's teachers and MIRA's beta follow the weights
and the step count, equal on every rank; batch-norm running statistics differ by rank on CPU, and DDP
broadcasts rank 0's, as it does everywhere.)"""
import signal
import subprocess

import pytest
import torch

from _distributed_workers import TinyEncoder
from infomax import methods
from infomax.runs.checkpoint import load_extra
from infomax.runs.rundir import load_tensors
from test_pretrain import TINY, cli, interrupt, losses


def build(name, **settings):
    torch.manual_seed(0)
    return methods.build(name, TinyEncoder(), projector_hidden=16, projector_out=10, **settings)


def test_the_queue_is_no_buffer_and_an_older_checkpoints_queue_loads_as_this_ranks():
    method = build("swav", queue_length=16, num_prototypes=20)
    assert not [k for k in method.state_dict() if "queue" in k]  # DDP broadcasts buffers, and only rank 0 writes weights
    method({"views": [torch.rand(8, 3, 8, 8) for _ in range(2)]})
    saved = {"queue": method.queue.clone(), "queued": method.queued.clone()}
    older = build("swav", queue_length=16, num_prototypes=20)
    older.load_state_dict({**method.state_dict(), **saved})  # a checkpoint from when the queue was a buffer
    assert torch.equal(older.queue, saved["queue"]) and older.queued == 8
    fresh = build("swav", queue_length=16, num_prototypes=20)
    fresh.load_rank_state(method.rank_state())
    assert torch.equal(fresh.queue, method.queue) and fresh.queued == method.queued
    with pytest.raises(ValueError, match="queue_length"):
        build("swav", queue_length=8, num_prototypes=20).load_rank_state(method.rank_state())


@pytest.mark.slow
def test_two_rank_swav_with_a_full_queue_stopped_by_sigterm_resumes_exactly(tmp_path):
    """Per rank a batch of 32 and a queue of 64: full after the second step and in every Sinkhorn after it,
    so a resume that gave rank 1 rank 0's queue (or none) would change the later losses."""
    swav = ["--set", "method.num_prototypes=16", "--set", "method.queue_length=64", "--set", "method.queue_start_epoch=0",
            "--set", "method.freeze_prototypes_epochs=0"]
    argv = ["--method", "swav", *TINY, *swav, "--max-steps", "12", "--devices", "2", "--accelerator", "cpu"]
    subprocess.run(cli(*argv, "--out", str(tmp_path / "whole")), check=True, capture_output=True)
    code = interrupt([*argv, "--out", str(tmp_path / "cut")], tmp_path / "cut", 5, signal.SIGTERM)
    assert code in (130, -signal.SIGKILL) and max(losses(tmp_path / "cut")) < 12  # 130, or killed by Lightning once rank 1 left
    subprocess.run(cli(*argv, "--out", str(tmp_path / "cut"), "--resume"), check=True, capture_output=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    whole, cut = (load_extra(tmp_path / run / "state.safetensors") for run in ("whole", "cut"))
    queues = [whole[f"rank{r}/method/queue"] for r in (0, 1)]
    assert all(int(whole[f"rank{r}/method/queued"]) == 12 * 32 for r in (0, 1))
    assert (queues[0] - queues[1]).abs().max() > 0.1  # each rank's own images
    for r in (0, 1):
        assert torch.equal(cut[f"rank{r}/method/queue"], queues[r])
    weights = [load_tensors(tmp_path / run / "state.safetensors") for run in ("whole", "cut")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0] if k.startswith("model/"))
