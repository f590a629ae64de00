"""What a run directory promises (issue 26): --overwrite deletes only what infomax wrote, one process owns a
run at a time, a refused resume changes nothing, a new run that fails early leaves nothing, unlabelled folders
pretrain, a monitor never costs a checkpoint, and an extended run keeps the lr it stands at."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infomax.cli import main
from infomax.engine.loop import Schedule
from infomax.runs import rundir

TINY = ["--dataset", "digits", "--batch-size", "64", "--set", "model.options.width=8", "--set", "method.projector_hidden=32",
        "--set", "method.projector_out=32", "--set", "run.knn_every=0", "--set", "run.linear_every=0", "--set", "data.holdout=200"]


def pretrain(*argv) -> int:
    return main(["pretrain", *argv])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_leaves_a_folder_that_only_looks_like_a_run_untouched(tmp_path, capsys):
    proj = tmp_path / "proj"  # the reproduction: a config and a metrics log, no marker
    (proj / "sub").mkdir(parents=True)
    (proj / "config.yaml").write_text("lr: 1\n")
    (proj / "metrics.jsonl").write_text("{}\n")
    (proj / "thesis.txt").write_text("thesis")
    before = snapshot(proj)
    assert pretrain("--method", "simclr", "--dataset", "digits", "--max-steps", "2", "--batch-size", "32",
                    "--out", str(proj), "--overwrite") == 2
    assert "not one" in capsys.readouterr().err
    assert snapshot(proj) == before and (proj / "sub").is_dir()


def test_overwrite_of_a_run_deletes_what_infomax_wrote_and_keeps_the_rest(tmp_path, capsys):
    out = tmp_path / "run"
    assert pretrain("--method", "smi", *TINY, "--max-steps", "2", "--out", str(out)) == 0
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "data.csv").write_text("1,2")
    (out / "plots" / "extra.png").write_bytes(b"ours to delete: plots/ is infomax's")
    old_state = (out / "state.safetensors").read_bytes()
    assert pretrain("--method", "smi", *TINY, "--max-steps", "1", "--out", str(out), "--overwrite") == 0
    assert "kept what infomax did not write" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "mine" / "data.csv").read_text() == "1,2"
    assert not (out / "plots" / "extra.png").exists() and (out / "state.safetensors").read_bytes() != old_state
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_clear_keeps_unmarked_folders_and_clears_marked_sub_runs(tmp_path):
    out = tmp_path / "run"
    for folder in (out, out / "baseline", out / "user"):
        folder.mkdir(parents=True)
    for folder in (out, out / "baseline"):
        (folder / rundir.MARKER).write_text("")
        (folder / "metrics.json").write_text("{}")
    (out / "baseline" / "notes.txt").write_text("mine")
    (out / "user" / "metrics.json").write_text("{}")  # a folder of the user's, not a run: every file stays
    (out / ".state.safetensors.abc.tmp").write_bytes(b"a temp file of ours left by a kill")
    assert rundir.clear(out) == ["baseline/notes.txt", "user"]
    assert sorted(p.name for p in out.iterdir()) == ["baseline", "user"]
    assert [p.name for p in (out / "baseline").iterdir()] == ["notes.txt"] and (out / "user" / "metrics.json").exists()


def test_a_refused_resume_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert pretrain("--method", "smi", *TINY, "--epochs", "2", "--out", str(out)) == 0
    before = snapshot(out)
    refusals = [
        (["--epochs", "1"], "past the"),  # fewer epochs than done
        (["--recipe", "simclr-cpu"], "drop --recipe"),
        (["--set", "data.views=multicrop"], "data.views"),
    ]
    for extra, message in refusals:
        assert pretrain("--resume", *extra, "--out", str(out)) == 2
        assert message in capsys.readouterr().err
        assert snapshot(out) == before, extra
    state = out / "state.safetensors"
    state.write_bytes(state.read_bytes()[:300])  # truncated by a full disk or a copy cut short
    damaged = snapshot(out)
    assert pretrain("--resume", "--epochs", "3", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "state.safetensors cannot be read" in err and "--overwrite" in err and "Traceback" not in err
    assert snapshot(out) == damaged
    (out / "config.yaml").write_text("method: [unclosed\n")
    assert pretrain("--resume", "--out", str(out)) == 2
    assert "config.yaml cannot be read" in capsys.readouterr().err


def test_a_continue_run_is_resumed_only_by_continue(tmp_path, capsys):
    from infomax.models import build_encoder, save_encoder

    start = save_encoder(build_encoder("convnet", width=8), tmp_path / "encoder.safetensors")
    out = tmp_path / "cont"
    argv = ["continue", "--init", str(start), "--method", "vicreg", "--dataset", "digits", "--batch-size", "64",
            "--max-steps", "2", "--set", "method.projector_hidden=32", "--set", "method.projector_out=32",
            "--train-from", "block2", "--cached-views", "1", "--out", str(out)]
    assert main(argv) == 0
    before = snapshot(out)
    assert pretrain("--resume", "--max-steps", "3", "--out", str(out)) == 2
    assert "infomax continue --resume" in capsys.readouterr().err
    assert main(["continue", "--resume", "--init", str(start), "--out", str(out)]) == 2
    assert "drop --init" in capsys.readouterr().err
    assert snapshot(out) == before
    run = tmp_path / "pre"
    assert pretrain("--method", "vicreg", *TINY, "--max-steps", "1", "--out", str(run)) == 0
    assert main(["continue", "--resume", "--out", str(run)]) == 2
    assert "infomax pretrain --resume" in capsys.readouterr().err


def test_resume_of_a_folder_without_its_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.MARKER).write_text("")
    assert pretrain("--resume", "--method", "smi", *TINY, "--out", str(out)) == 2
    assert "has no config.yaml" in capsys.readouterr().err and sorted(p.name for p in out.iterdir()) == [rundir.MARKER]


def _holder(out: Path) -> subprocess.Popen:
    """Another process that owns `out` until it is killed."""
    code = f"from infomax.runs import rundir; import time; rundir.claim({str(out)!r}); print('held', flush=True); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_owned_by_another_process_is_refused_until_that_process_dies(tmp_path, capsys):
    out = tmp_path / "run"
    assert pretrain("--method", "smi", *TINY, "--max-steps", "2", "--out", str(out)) == 0
    holder = _holder(out)
    try:
        before = snapshot(out)
        for extra in (["--resume", "--max-steps", "3"], ["--method", "smi", *TINY, "--overwrite"]):
            assert pretrain(*extra, "--out", str(out)) == 2
            assert f"in use by pid {holder.pid}" in capsys.readouterr().err
        assert snapshot(out) == before
    finally:
        holder.send_signal(signal.SIGKILL)  # a kill leaves no stale lock behind: the kernel drops it
        holder.wait()
    assert pretrain("--resume", "--out", str(out)) == 0


def test_two_processes_resuming_one_run_do_not_both_train(tmp_path):
    out = tmp_path / "run"
    assert pretrain("--method", "smi", *TINY, "--max-steps", "1", "--set", "schedule.decay=constant", "--out", str(out)) == 0
    argv = [sys.executable, "-m", "infomax", "pretrain", "--resume", "--max-steps", "400", "--set", "run.log_every=1", "--out", str(out)]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len((out / "metrics.jsonl").read_text().splitlines()) < 3:
            time.sleep(0.05)
        second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "in use by pid" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one writer: no interleaved lines


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, monkeypatch, capsys):
    from infomax.methods.smi import SMI

    original = SMI.objective

    def poisoned(self, z_a, z_b):
        terms = original(self, z_a, z_b)
        terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(SMI, "objective", poisoned)
    out = tmp_path / "run"
    assert pretrain("--method", "smi", *TINY, "--max-steps", "2", "--out", str(out)) == 1
    assert "no checkpoint was written yet" in capsys.readouterr().err and not out.exists()
    monkeypatch.setattr(SMI, "objective", original)
    assert pretrain("--method", "smi", *TINY, "--max-steps", "2", "--out", str(out)) == 0  # the same command, corrected


@pytest.fixture
def unlabelled_folder(tmp_path) -> Path:
    folder = tmp_path / "flat"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(160):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def test_pretraining_on_an_unlabelled_folder_trains_every_image_and_keeps_its_epoch(tmp_path, unlabelled_folder, capsys):
    out = tmp_path / "run"
    assert pretrain("--method", "simclr", "--dataset", "imagefolder", "--data-root", str(unlabelled_folder), "--epochs", "1",
                    "--batch-size", "32", "--resolution", "16", "--set", "model.options.width=8", "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert err.count("kNN monitor (which needs labels) is off") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 160 // 32 and "knn_top1_holdout" not in metrics  # no held-out slice: all 160 images train
    assert (out / "encoder.safetensors").exists() and (out / "state.safetensors").exists()


def test_knn_every_0_means_no_knn_at_the_end_either(tmp_path):
    out = tmp_path / "run"
    assert pretrain("--method", "smi", *TINY, "--max-steps", "2", "--out", str(out)) == 0
    assert "knn_top1_holdout" not in json.loads((out / "metrics.json").read_text())


def _saved_step(state: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(state), framework="pt") as f:
        return json.loads(f.metadata()["infomax_state"])["counters"]["step"]


def test_a_failing_monitor_warns_and_never_costs_the_epochs_checkpoint(tmp_path, monkeypatch, capsys):
    from infomax.engine import monitors

    out, seen = tmp_path / "run", []

    def broken(self, loop, epoch):
        seen.append((loop.step, _saved_step(out / "state.safetensors")))  # the epoch is saved before any monitor runs
        raise RuntimeError("out of memory in the monitor")

    monkeypatch.setattr(monitors.KNNMonitor, "__call__", broken)
    assert pretrain("--method", "smi", *TINY, "--set", "run.knn_every=1", "--epochs", "2", "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert err.count("KNNMonitor failed after epoch 1") == 1 and "training goes on" in err
    assert len(seen) == 1 and seen[0][0] == seen[0][1] > 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2 * seen[0][0]


def test_multicrop_views_for_a_two_view_method_are_refused_by_name(tmp_path, capsys):
    out = tmp_path / "run"
    assert pretrain("--method", "simclr", *TINY, "--set", "data.views=multicrop", "--out", str(out)) == 2
    assert "simclr trains on 2 views" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("stretches", [((), 100), (((30, 100),), 160), (((30, 100), (90, 160)), 250)])
def test_an_extended_schedule_goes_on_from_the_lr_it_stands_at(stretches):
    (done, total) = stretches
    base = Schedule(100, 10, 0.0, "cosine", 0.0)
    schedule = Schedule(total, 10, 0.0, "cosine", 0.0, done)
    if done:
        previous = Schedule(done[-1][1], 10, 0.0, "cosine", 0.0, done[:-1])
        start = done[-1][0]
        assert abs(schedule.factor(start) - previous.factor(start)) < 1e-12  # no jump at the resume step
        assert all(schedule.factor(s) == previous.factor(s) for s in range(start + 1))
        # the rest is the old rest, stretched: the old schedule's midpoint between start and end is the new one's
        mid_old, mid_new = (start + previous.total_steps) / 2, (start + total) / 2
        assert abs(schedule.factor(mid_new) - previous.factor(mid_old)) < 1e-12
    factors = [schedule.factor(s) for s in range(10, total + 1)]
    assert all(a >= b - 1e-12 for a, b in zip(factors, factors[1:])) and factors[-1] == 0.0 and factors[0] == 1.0
    assert base.factor(50) == schedule.factor(50) or done


def test_resumed_schedule_records_each_extension_and_refuses_a_finished_cosine():
    s = Schedule(160, 10, 0.0, "cosine", 0.0)
    assert s.resumed({"total_steps": 100, "warmup_steps": 10, "stretches": []}, 30).stretches == ((30, 100),)
    assert s.resumed({"total_steps": 160, "warmup_steps": 10, "stretches": [[30, 100]]}, 50).stretches == ((30, 100),)
    with pytest.raises(ValueError, match="cosine down to lr 0.*infomax continue"):
        s.resumed({"total_steps": 100, "warmup_steps": 10, "stretches": []}, 100)
    flat = Schedule(160, 10, 0.0, "constant", 1.0)
    assert flat.resumed({"total_steps": 100, "warmup_steps": 10, "stretches": []}, 100).factor(120) == 1.0


def _lrs(out: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "lr" in r}


def test_extending_a_stopped_run_keeps_its_lr_at_the_resume_step(tmp_path):
    import shutil

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "infomax", "pretrain", "--method", "smi", *TINY, "--epochs", "3", "--set", "run.log_every=1",
            "--set", "run.checkpoint_every=1000", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(_lrs(out) if (out / "metrics.jsonl").exists() else ()) < 25:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    stopped = _saved_step(out / "state.safetensors")
    shutil.copytree(out, tmp_path / "same")
    assert main(["pretrain", "--resume", "--out", str(tmp_path / "same")]) == 0  # the schedule it was on
    assert main(["pretrain", "--resume", "--epochs", "6", "--out", str(out)]) == 0  # twice as long
    same, longer = _lrs(tmp_path / "same"), _lrs(out)
    per_epoch = max(same) // 3
    assert max(longer) == 6 * per_epoch
    assert longer[stopped + 1] == same[stopped + 1]  # the lr goes on from where it stood (a new cosine would jump up)
    assert all(longer[s] > same[s] for s in range(stopped + 2, max(same) + 1))  # then decays more slowly
    rest = [longer[s] for s in range(stopped + 1, max(longer) + 1)]
    assert all(a >= b for a, b in zip(rest, rest[1:])) and rest[-1] < 1e-3 * rest[0]


@pytest.mark.parametrize("method, extra, message", [
    ("simclr", ["--set", "method.temperature=0"], "method.temperature must be positive"),
    ("simclr", ["--set", "method.temperature=.nan"], "method.temperature must be a finite number"),
    ("smi", ["--set", "schedule.decay=linear"], "schedule.decay must be one of cosine, constant"),
    ("smi", ["--set", "optim.weight_decay=nan"], "optim.weight_decay must be a finite number"),
    ("vicreg", ["--add", "vcreg:mu=nan"], "mu must be a finite number"),
    ("smi", ["--set", "run.knn_k=0"], "run.knn_k must be at least 1"),
    ("smi", ["--resolution", "100000"], "data.resolution must be null or between 4 and 2048"),
    ("smi", ["--set", "optim.clip_grad=-1"], "optim.clip_grad must be null or positive"),
    ("smi", ["--set", "schedule.warmup_start=-1"], "schedule.warmup_start must be between 0 and 1"),
    ("smi", ["--set", "optim.momentum=1.5"], "optim.momentum must be in [0, 1)"),
    ("smi", ["--set", "data.holdout=-5"], "data.holdout must be at least 0"),
    ("smi", ["--precision", "16-mixed", "--accelerator", "cpu"], "16-mixed needs a GPU"),
    ("smi", ["--num-nodes", "2"], "torchrun --nnodes 2"),
])
def test_every_setting_is_checked_when_read_and_nothing_is_written(tmp_path, capsys, monkeypatch, method, extra, message):
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_ID", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "run"
    assert pretrain("--method", method, *TINY, "--max-steps", "2", *extra, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_a_kill_mid_checkpoint_leaves_a_temp_file_the_next_segment_removes(tmp_path):
    out = tmp_path / "run"
    assert pretrain("--method", "smi", *TINY, "--max-steps", "2", "--set", "schedule.decay=constant", "--out", str(out)) == 0
    (out / ".state.safetensors.k1ll3d.tmp").write_bytes(b"\0" * 4096)  # what a SIGKILL inside write_atomic leaves
    assert pretrain("--resume", "--max-steps", "3", "--out", str(out)) == 0
    assert not list(out.glob(".*.tmp"))


def test_a_full_disk_in_the_safetensors_writer_is_an_oserror_with_no_temp_file(tmp_path, monkeypatch):
    import errno

    import torch

    from infomax.runs import atomic

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as caught:
        atomic.save_tensors(tmp_path / "state.safetensors", {"w": torch.ones(3)})
    assert caught.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_an_encoder_file_loads_only_an_architecture_it_was_written_with(tmp_path, capsys):
    import json as _json

    import torch
    from safetensors.torch import save_file

    from infomax.models.registry import load_encoder

    for name in (str(tmp_path / "self.safetensors"), "hf:someone/some-model"):  # itself (recursion); a hub download
        save_file({"w": torch.zeros(1)}, str(tmp_path / "self.safetensors"), metadata={"infomax_encoder": _json.dumps({"name": name})})
        with pytest.raises(ValueError, match="infomax loads only what you name"):
            load_encoder(tmp_path / "self.safetensors")


def test_a_relative_init_is_stored_absolute_and_a_resumed_continue_keeps_created(tmp_path, monkeypatch):
    from infomax.models import build_encoder, save_encoder

    save_encoder(build_encoder("convnet", width=8), tmp_path / "start" / "encoder.safetensors")
    monkeypatch.chdir(tmp_path)
    argv = ["continue", "--init", "start/encoder.safetensors", "--method", "vicreg", "--dataset", "digits", "--batch-size", "64",
            "--set", "method.projector_hidden=32", "--set", "method.projector_out=32", "--train-from", "block2",
            "--cached-views", "1", "--max-steps", "2", "--out", "cont"]
    assert main(argv) == 0
    monkeypatch.chdir(tmp_path / "start")  # resumed from another folder
    assert main(["continue", "--resume", "--max-steps", "2", "--out", str(tmp_path / "cont")]) == 0
    import yaml

    saved = yaml.safe_load((tmp_path / "cont" / "config.yaml").read_text())
    assert saved["continued"]["init"] == str(tmp_path / "start" / "encoder.safetensors")
    assert json.loads((tmp_path / "cont" / "metrics.json").read_text())["created"] == ["projector"]


def test_the_report_marks_no_best_spread():
    from infomax.eval.report import _best

    assert _best("knn_top1_std", [1.0, 2.0]) == set() and _best("knn_top1", [1.0, 2.0]) == {1}


def test_continue_takes_a_recipe_written_for_continue_as_written(tmp_path):
    import yaml

    from infomax.engine.continued import resolve
    from infomax.models import build_encoder, save_encoder

    start = str(save_encoder(build_encoder("convnet", width=8), tmp_path / "encoder.safetensors"))
    recipe = yaml.safe_load((Path(__file__).parents[1] / "infomax" / "recipes" / "vicreg-cpu.yaml").read_text())
    recipe.update({"optim": {**recipe["optim"], "lr": 0.004}, "schedule": {"epochs": 3, "decay": "cosine"},
                   "data": {"dataset": "digits", "resolution": 24}, "continued": {"init": "elsewhere", "train_from": "block2"}})
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(recipe))
    config = resolve(start, None, str(tmp_path / "mine.yaml"), [], [], {}, {}, tmp_path / "out", False)
    assert (config.optim.lr, config.schedule.epochs, config.schedule.decay, config.data.resolution) == (0.004, 3, "cosine", 24)
    assert config.continued.train_from == "block2" and config.continued.init == start
    del recipe["continued"]  # a pretraining recipe: the base method's, run by continue's protocol
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(recipe))
    config = resolve(start, None, str(tmp_path / "base.yaml"), [], [], {}, {}, tmp_path / "out", False)
    assert (config.optim.lr, config.schedule.epochs, config.schedule.decay) == (0.004 * 0.01, 10, "constant")


def test_first_contact_help_lr_and_run_folders(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "--lr" in text
    out = tmp_path / "run"
    assert pretrain("--method", "smi", *TINY, "--max-steps", "1", "--lr", "0.05", "--out", str(out)) == 0
    import yaml

    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["lr"] == 0.05
    err = capsys.readouterr().err
    assert "starting step 0 of 1" in err and "step 1/1" in err  # shown at once on a non-terminal, not after 30 s
    from infomax.models import build_encoder

    assert build_encoder(str(out)).dim == build_encoder(str(out / "encoder.safetensors")).dim  # a run folder names its encoder
    with pytest.raises(ValueError, match="folder without encoder.safetensors"):
        build_encoder(str(tmp_path))
