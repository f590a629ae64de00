"""`infomax pretrain` end to end on scikit-learn's digits: the run directory, exact resume after SIGKILL
and SIGTERM (one process and two gloo processes), the guards, and bad input refused before anything is written."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from infomax import config as C
from infomax.cli import main
from infomax.engine import pretrain as pretrain_module
from infomax.engine.loop import NonFiniteLoss
from infomax.methods.smi import SMI

TINY = ["--dataset", "digits", "--batch-size", "64", "--set", "model.options.width=8", "--set", "method.projector_hidden=32",
        "--set", "method.projector_out=32", "--set", "run.log_every=1", "--set", "run.knn_every=0", "--set", "data.holdout=200"]


def cli(*argv):
    return [sys.executable, "-m", "infomax", "pretrain", *argv]


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r}


def interrupt(argv, run: Path, at_step: int, sig) -> int:
    """Start a run, send `sig` once it has logged `at_step` steps, return its exit code."""
    proc = subprocess.Popen(cli(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.jsonl").exists() and len(losses(run)) >= at_step:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.wait(timeout=240)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_repeats_every_later_step(tmp_path):
    argv = ["--method", "simclr", *TINY, "--max-steps", "20", "--checkpoint-every", "3"]
    subprocess.run(cli(*argv, "--out", str(tmp_path / "whole")), check=True, capture_output=True)
    assert interrupt([*argv, "--out", str(tmp_path / "cut")], tmp_path / "cut", 8, signal.SIGKILL) == -signal.SIGKILL
    assert max(losses(tmp_path / "cut")) < 20  # it really died mid-run, mid-epoch (epochs are 21 steps)
    subprocess.run(cli(*argv, "--out", str(tmp_path / "cut"), "--resume"), check=True, capture_output=True)
    whole, cut = losses(tmp_path / "whole"), losses(tmp_path / "cut")
    assert sorted(cut) == list(range(1, 21)) and cut == whole
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines() if "lr" in line]
    assert lrs[:3] == sorted(lrs[:3]) and lrs[2] > lrs[0]  # warm-up ran once, not restarted at the resume


@pytest.mark.slow
def test_two_process_run_stopped_by_sigterm_resumes_exactly(tmp_path):
    argv = ["--method", "barlow_twins", *TINY, "--max-steps", "16", "--devices", "2", "--accelerator", "cpu"]
    subprocess.run(cli(*argv, "--out", str(tmp_path / "whole")), check=True, capture_output=True)
    code = interrupt([*argv, "--out", str(tmp_path / "cut")], tmp_path / "cut", 6, signal.SIGTERM)
    assert code in (130, -signal.SIGKILL) and max(losses(tmp_path / "cut")) < 16  # 130, or killed by Lightning once rank 1 left
    subprocess.run(cli(*argv, "--out", str(tmp_path / "cut"), "--resume"), check=True, capture_output=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")


def test_a_run_leaves_what_evaluate_and_finetune_accept(tmp_path, monkeypatch):
    monkeypatch.setenv("INFOMAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "smi", *TINY, "--max-steps", "6", "--set", "run.knn_every=1", "--out", str(out)]) == 0
    for name in (".infomax-run", "config.yaml", "environment.json", "metrics.jsonl", "metrics.json", "state.safetensors",
                 "encoder.safetensors", "report.html"):
        assert (out / name).exists(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "loss/alignment", "loss/redundancy", "redundancy_to_alignment", "feature_std", "effective_rank", "grad_norm", "lr"} <= set(record)
    assert C.load(out / "config.yaml").method.lambd == 3.0
    assert main(["evaluate", "--encoder", str(out / "encoder.safetensors"), "--dataset", "digits", "--protocol", "knn",
                 "--resolution", "32", "--out", str(tmp_path / "eval")]) == 0


def test_a_non_finite_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = SMI.objective

    def poisoned(self, z_a, z_b):
        calls["n"] += 1
        terms = original(self, z_a, z_b)
        if calls["n"] == 5:
            terms["redundancy"] = terms["redundancy"] * float("nan")
            terms["loss"] = terms["alignment"] + terms["redundancy"]
        return terms

    monkeypatch.setattr(SMI, "objective", poisoned)
    config = pretrain_module.resolve(None, "smi", [a.split("=", 1)[0] + "=" + a.split("=", 1)[1] for a in TINY[5::2]],
                                     {"data.dataset": "digits", "optim.batch_size": 64, "run.checkpoint_every": 2}, tmp_path, False)
    with pytest.raises(NonFiniteLoss, match=r"step 5, stage main: the loss is not finite \(terms \[.loss., .redundancy.\]\); the last checkpoint"):
        pretrain_module.pretrain(config, tmp_path / "run")
    from infomax.runs.checkpoint import load_training_state
    method = pretrain_module.build_method(config, 1)
    assert load_training_state(tmp_path / "run" / "state.safetensors", {"method": method}, {})["step"] == 4
    assert all(torch.isfinite(p).all() for p in method.parameters())


def test_abort_on_collapse_stops_a_collapsed_embedding(tmp_path, monkeypatch, capsys):
    original = SMI.training_step

    def constant(self, batch, stage="main", carry=None):
        terms = original(self, batch, stage, carry)
        terms["_embedding"] = torch.ones_like(terms["_embedding"])
        return terms

    monkeypatch.setattr(SMI, "training_step", constant)
    assert main(["pretrain", "--method", "smi", *TINY, "--max-steps", "3", "--abort-on-collapse", "--out", str(tmp_path / "run")]) == 2
    assert "step 1: the embedding is collapsing" in capsys.readouterr().err
    assert main(["pretrain", "--method", "smi", *TINY, "--max-steps", "3", "--out", str(tmp_path / "warned")]) == 0
    assert "[warning] step 1: the embedding is collapsing" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--recipe", "smi-cpv"], "did you mean 'smi-cpu'"),
    (["--set", "optim.lrr=0.1"], "did you mean 'lr'"),
    (["--set", "optim.lr=fast"], "optim.lr must be float"),
    (["--batch-size", "1"], "needs at least 2 images per device"),
    (["--accelerator", "cuda"], "no CUDA device"),
    (["--devices", "2", "--batch-size", "63"], "does not split over 2 processes"),
    (["--set", "optim.lr=0"], "optim.lr must be positive"),
    (["--epochs", "0"], "schedule.epochs must be at least 1"),
    (["--batch-size", "4096"], "Lower --batch-size"),
    (["--set", "model.backbone=BAD"], "Unknown encoder 'BAD'"),
])
def test_bad_input_exits_2_with_the_fix_and_writes_nothing(tmp_path, capsys, extra, message):
    if extra == ["--accelerator", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "smi", *TINY, "--max-steps", "2", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_mismatched_encoder_file_names_its_tensors(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from infomax.models import build_encoder, save_encoder

    path = save_encoder(build_encoder("convnet", width=8), tmp_path / "enc.safetensors")
    tensors = load_file(path)
    first = sorted(tensors)[0]
    tensors[first] = torch.zeros(3)
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=metadata)
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "smi", *TINY, "--set", f"model.backbone={tmp_path / 'bad.safetensors'}",
                 "--set", "model.options={}", "--out", str(out)]) == 2
    assert first in capsys.readouterr().err and not out.exists()


def test_existing_run_is_refused_and_resume_refuses_changed_settings(tmp_path, capsys):
    out, constant = tmp_path / "run", ["--set", "schedule.decay=constant"]  # a finished cosine cannot be extended
    assert main(["pretrain", "--method", "smi", *TINY, *constant, "--max-steps", "2", "--out", str(out)]) == 0
    assert main(["pretrain", "--method", "smi", *TINY, *constant, "--max-steps", "2", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["pretrain", "--resume", "--set", "optim.lr=0.01", "--out", str(out)]) == 2
    assert "optim.lr: 0.3 -> 0.01" in capsys.readouterr().err
    assert main(["pretrain", "--resume", "--max-steps", "4", "--out", str(out)]) == 0  # more steps: allowed
    assert max(losses(out)) == 4
    os.remove(out / ".infomax-run")  # a config and metrics without the marker are not a run: nothing of it is touched
    assert main(["pretrain", "--resume", "--max-steps", "5", "--out", str(out)]) == 2
    assert f"touch {out / '.infomax-run'}" in capsys.readouterr().err
    assert main(["pretrain", "--method", "smi", *TINY, *constant, "--out", str(out), "--overwrite"]) == 2
    assert "not one" in capsys.readouterr().err and (out / "metrics.jsonl").exists() and (out / "encoder.safetensors").exists()
    (out / ".infomax-run").touch()  # marked by hand, as the message says: it resumes
    assert main(["pretrain", "--resume", "--max-steps", "5", "--out", str(out)]) == 0 and max(losses(out)) == 5


PEERS = {"byol": ["--set", "method.predictor_hidden=16"], "simsiam": ["--set", "method.predictor_hidden=16"],
         "swav": ["--set", "method.num_prototypes=32"], "mira": ["--set", "method.num_prototypes=32", "--set", "method.beta_start=0.75"],
         "hydes": ["--set", "method.kappa=10"]}


@pytest.mark.parametrize("name", list(PEERS))
def test_the_teacher_prototype_and_multicrop_methods_train_through_pretrain(tmp_path, name):
    out = tmp_path / name
    assert main(["pretrain", "--method", name, *TINY, *PEERS[name], "--max-steps", "3", "--out", str(out)]) == 0
    record = losses(out)
    assert sorted(record) == [1, 2, 3] and all(map(lambda v: v == v, record.values()))
    config = C.load(out / "config.yaml")
    assert config.method_name == name and (out / "encoder.safetensors").exists()
    if name == "hydes":
        assert config.method.kappa == 10.0 and config.data.views == "multicrop"  # from hydes-cpu


@pytest.mark.parametrize("name, extra, message", [
    ("swav", ["--set", "method.queue_length=0"], "smaller than method.num_prototypes = 3000"),
    ("hydes", ["--set", "method.kappa=0"], "method.kappa"),
    ("mira", ["--set", "method.momentum_base=1.0"], "teacher without a student"),
    ("hydes", ["--set", "data.view_options.local_size=64"], "local_size"),
    ("mira", ["--set", "data.views=plain"], "at least 2 views"),
    ("mira", ["--batch-size", "1"], "needs at least 2 images per device"),
])
def test_peer_bad_input_exits_2_naming_the_setting(tmp_path, capsys, name, extra, message):
    out = tmp_path / "run"
    assert main(["pretrain", "--method", name, *TINY, "--max-steps", "2", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()
