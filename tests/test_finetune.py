"""`infomax finetune` / `predict` end to end on scikit-learn's digits with a small random ConvNet."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from infomax.cli import main
from infomax.data.dataset import load_dataset
from infomax.data.imagefolder import save_png
from infomax.engine import finetune as finetune_module
from infomax import config as C
from infomax.engine.finetune import configure, finetune
from infomax.engine.loop import Loop
from infomax.models import build_encoder, save_encoder


@pytest.fixture
def backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("INFOMAX_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    return str(save_encoder(build_encoder("convnet", width=8), tmp_path / "convnet.safetensors"))


def _config(encoder, **overrides):
    """A small head and few steps for the mechanics (no baseline check unless asked); the loss weights are the shipped ones."""
    settings = dict(backbone=encoder, dataset="digits", labels=30, resolution=16, epochs=3, min_steps=0, batch_size=128,
                    warmup_steps=4, lr=3e-3, token_grid=2, token_width=16, latent_dim=64, hidden_dim=32, log_every=2,
                    baseline_check=False)
    return configure(**{**settings, **overrides})


def test_finetune_writes_a_complete_run(backbone, tmp_path):
    """With the shipped weights, step floor and baseline check: 70.7 % measured, the cat-cross baseline 66.5; bar 60."""
    metrics = finetune(_config(backbone, min_steps=C.FinetuneConfig.min_steps, baseline_check=True), tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "environment.json", "labelled.json", "head.safetensors", "metrics.json", "metrics.jsonl", "report.html"):
        assert (run / name).exists(), name
    per_epoch = metrics["unlabelled"] // 128
    assert metrics["test_top1"] > 60 and metrics["labelled"] == 30
    baseline = json.loads((run / "baseline" / "metrics.json").read_text())
    assert baseline["variant"] == "baseline: cat-cross softmax" and metrics["variant"].startswith("TwinTURBO: bin-cross")
    assert baseline["steps"] == metrics["steps"] and baseline["test_top1"] == metrics["baseline/test_top1"] < metrics["test_top1"]
    assert metrics["val_margin_over_baseline"] == pytest.approx(metrics["val_top1"] - baseline["val_top1"])
    assert json.loads((run / "baseline" / "labelled.json").read_text()) == json.loads((run / "labelled.json").read_text())
    assert json.loads((run / "metrics.json").read_text())["val_margin_over_baseline"] == metrics["val_margin_over_baseline"]
    assert "baseline: cat-cross softmax" in (run / "report.html").read_text()  # the report shows both runs
    assert metrics["steps"] == -(-C.FinetuneConfig.min_steps // per_epoch) * per_epoch  # whole epochs up to the floor
    assert {"last/task", "last/critic", "last/latent", "last/augment", "last/discriminator/loss"} <= set(metrics)
    assert len([k for k in metrics if k.startswith("test_class/")]) == 10
    labelled = json.loads((run / "labelled.json").read_text())
    assert np.bincount(labelled["labels"]).tolist() == [3] * 10 and labelled["seed"] == 42


def test_interrupted_run_resumes_to_the_same_weights(backbone, tmp_path, monkeypatch):
    finetune(_config(backbone), tmp_path / "whole", report=False)
    original, calls = Loop.train_step, {"n": 0}

    def dying(self, batch):
        calls["n"] += 1
        if calls["n"] == 22:  # in the third epoch, after the second checkpoint
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Loop, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        finetune(_config(backbone), tmp_path / "cut", report=False)
    monkeypatch.setattr(Loop, "train_step", original)
    finetune(_config(backbone), tmp_path / "cut", resume=True, report=False)
    whole, cut = load_file(tmp_path / "whole" / "head.safetensors"), load_file(tmp_path / "cut" / "head.safetensors")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no step logged twice after the resume


def test_existing_run_dir_is_refused_without_resume_or_overwrite(backbone, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    argv = ["finetune", "--backbone", backbone, "--dataset", "digits", "--labels", "20", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    ({"labels": 5}, "cannot cover 10 classes"),
    ({"backbone": "resnet-9000"}, "Unknown encoder"),
    ({"method": "mixmatch"}, "must be one of twinturbo, fixmatch"),
])
def test_bad_settings_name_the_fix(backbone, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        finetune(_config(backbone, **overrides), tmp_path / "run", report=False)


def test_predict_classifies_image_files_without_the_training_data(backbone, tmp_path, capsys):
    finetune(_config(backbone, method="fixmatch"), tmp_path / "run", report=False)
    test = load_dataset("digits", "test")
    for i in range(6):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / f"{i}.png").write_bytes(save_png(test.images[i]))
    assert main(["predict", "--run", str(tmp_path / "run"), str(tmp_path / "images")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # the same answers as the trained head on the run's own cached test features (fp16-stored: probabilities to 1e-2)
    from infomax.engine.predict import load_classifier
    method = load_classifier(tmp_path / "run")[0]
    cached = finetune_module.prepare_features(_config(backbone, method="fixmatch"), progress=False).test
    expected = method.predict(*cached.load(np.arange(6), 0))
    assert [r["class"] for r in rows] == [test.classes[i] for i in expected.argmax(1).tolist()]
    assert np.allclose([r["probability"] for r in rows], expected.max(1).values.numpy(), atol=1e-2)
    (tmp_path / "images" / "9-broken.png").write_bytes(b"not a png")
    assert main(["predict", "--run", str(tmp_path / "run"), str(tmp_path / "images")]) == 1
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 7 and sum("class" in r for r in rows) == 6 and "corrupt" in rows[-1]["error"]  # the good ones still print
    assert "1 image(s) could not be read" in err
    assert main(["predict", "--run", str(tmp_path / "nothing"), str(tmp_path / "images")]) == 2


def test_ablation_ladder_table_chart_and_rerun_skips_finished_runs(backbone, tmp_path, monkeypatch):
    from infomax.engine import ablate as ablate_module

    base = _config(backbone, epochs=1)
    rungs = ("cat-cross softmax", "+augment")
    summary = ablate_module.ablate(base, tmp_path / "ladder", labels=(20,), seeds=(1, 2), rungs=rungs, progress=False)
    table = summary["results"]["20"]
    assert set(table) == {*rungs, "FixMatch", "logistic regression", "weighted kNN"}
    assert all(len(v) == 2 for v in table.values())
    markdown = (tmp_path / "ladder" / "ablation.md").read_text()
    assert "cat-cross softmax" in markdown and "±" in markdown
    assert (tmp_path / "ladder" / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setattr(ablate_module, "finetune", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = ablate_module.ablate(base, tmp_path / "ladder", labels=(20,), seeds=(1, 2), rungs=rungs, progress=False)
    assert again["results"] == summary["results"]


def test_ladder_switches_on_the_base_weights_one_rung_at_a_time():
    from infomax.engine.ablate import RUNGS, ladder

    rungs = dict(ladder(configure(critic=10.0, latent=1.0, augment=3.0)))
    assert tuple(rungs) == RUNGS
    weights = [(r["critic"], r["latent"], r["augment"]) for r in rungs.values()]
    assert weights == [(0, 0, 0)] * 5 + [(10.0, 0, 0), (10.0, 1.0, 0), (10.0, 1.0, 3.0)]
    assert rungs["cat-cross softmax"]["task_loss"] == "cat-cross" and rungs["+augment"]["task_loss"] == "bin-cross"
    assert (rungs["bin-cross softmax"]["task_loss"], rungs["bin-cross softmax"]["rescale"]) == ("bin-cross", "softmax")
    softmax = dict(ladder(configure(rescale="softmax")))  # the top rungs run the base config's task loss
    assert softmax["+critic"]["rescale"] == softmax["+augment"]["rescale"] == "softmax"


def test_a_small_dataset_trains_for_min_steps_in_whole_epochs(backbone, tmp_path):
    from infomax.engine.finetune import run_epochs

    assert run_epochs(configure(epochs=5, min_steps=400), 87) == 5  # CIFAR-10: 87 steps an epoch
    assert run_epochs(configure(epochs=5, min_steps=400), 7) == 58  # MNIST-5k: 7
    assert run_epochs(configure(epochs=5, min_steps=0), 7) == 5
    metrics = finetune(_config(backbone, epochs=1, min_steps=25), tmp_path / "run", report=False)
    per_epoch = metrics["unlabelled"] // 128
    assert metrics["steps"] == -(-25 // per_epoch) * per_epoch >= 25
    with pytest.raises(ValueError, match="finetune.min_steps must be at least 0"):
        finetune(_config(backbone, min_steps=-1), tmp_path / "bad", report=False)


def test_head_presets_fill_only_the_settings_left_unset():
    from infomax.methods.fewlabel import HEADS

    cpu, paper = C.FinetuneConfig(), C.FinetuneConfig(head="paper")
    assert {k: getattr(cpu, k) for k in HEADS["cpu"]} == HEADS["cpu"] and cpu.cache_grid == 0
    assert (paper.token_grid, paper.token_width, paper.latent_dim, paper.hidden_dim) == ("native", 768, 8000, 1024)
    assert paper.cache_grid is None  # the feature cache's "the backbone's own grid"
    assert C.FinetuneConfig(head="paper", latent_dim=64).latent_dim == 64
    assert configure(head="paper").finetune.token_grid == "native"  # the preset replaces the recipe's cpu shape
    for bad, message in (({"head": "big"}, "finetune.head must be one of"), ({"token_grid": "coarse"}, "finetune.token_grid must be"),
                         ({"device": "tpu"}, "run.accelerator must be one of")):
        with pytest.raises(ValueError, match=message):
            configure(**bad)


def test_labels_file_chooses_the_labelled_images_and_leaves_validation(backbone, tmp_path):
    train = load_dataset("digits", "train")
    rows = [int(np.flatnonzero(train.labels == c)[i]) for c in range(10) for i in range(2)]
    given = [(c + 1) % 10 if r == rows[0] else c for r, c in zip(rows, np.repeat(np.arange(10), 2))]  # one relabelled image
    names = train.classes
    (tmp_path / "labels.csv").write_text("image,class\n" + "".join(f"{r},{names[c]}\n" for r, c in zip(rows, given)))
    config = _config(backbone, labels=C.FinetuneConfig.labels, labels_file=str(tmp_path / "labels.csv"))
    trainer = finetune_module.Trainer(config, finetune_module.prepare_features(config, progress=False), tmp_path / "run")
    assert sorted(trainer.labelled.tolist()) == sorted(rows)
    assert trainer.labels[rows[0]] == given[0] != train.labels[rows[0]]
    assert not set(rows) & set(trainer.validation.tolist()) and not set(rows) & set(trainer.unlabelled.tolist())
    (tmp_path / "bad.csv").write_text("0,eleven\n")
    with pytest.raises(ValueError, match="unknown class 'eleven'"):
        finetune(_config(backbone, labels=C.FinetuneConfig.labels, labels_file=str(tmp_path / "bad.csv")), tmp_path / "bad", report=False)


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": 0}, "schedule.epochs must be at least 1"),
    ({"epochs": -2}, "schedule.epochs must be at least 1"),
    ({"lr": 0.0}, "optim.lr must be positive"),
    ({"lr": 1e6}, "--lr must be a positive"),
    ({"resolution": 0}, "data.resolution must be null or between 4"),
    ({"resolution": 6}, "--resolution must be at least 8"),
    ({"labels": 0}, "finetune.labels must be at least 1"),
    ({"views": 0}, "--views 0 leaves no augmented view"),
    ({"labels_file": "x.csv", "labels": 30}, "--labels and --labels-file"),
])
def test_nonsense_settings_are_refused_before_anything_is_written(backbone, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        finetune(_config(backbone, **overrides), tmp_path / "run", report=False)
    assert not (tmp_path / "run").exists()


def test_a_failed_run_leaves_no_directory_and_resume_refuses_other_settings(backbone, tmp_path):
    with pytest.raises(ValueError, match="cannot cover 10 classes"):
        finetune(_config(backbone, labels=5), tmp_path / "run", report=False)
    assert not (tmp_path / "run").exists()  # so the corrected command is not refused as "already holds a run"
    finetune(_config(backbone, epochs=1), tmp_path / "run", report=False)
    with pytest.raises(ValueError, match=r"finetune.labels: 30 -> 40"):
        finetune(_config(backbone, epochs=1, labels=40), tmp_path / "run", resume=True, report=False)
    metrics = finetune(_config(backbone, epochs=2), tmp_path / "run", resume=True, report=False)  # more epochs: allowed
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert len(environment["segments"]) == 2 and metrics["steps"] == 2 * (metrics["unlabelled"] // 128)


def test_a_warm_up_longer_than_the_run_is_shortened_and_said(backbone, tmp_path, capsys):
    metrics = finetune(_config(backbone, epochs=1, warmup_steps=150), tmp_path / "run", report=False)
    assert f"warming up over {metrics['steps'] // 10} steps" in capsys.readouterr().err
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lrs[-1] == pytest.approx(3e-3)  # the run reached its lr instead of ending at a few % of it


def test_ablate_reuses_a_finished_sub_run_only_with_the_same_config(tmp_path, monkeypatch):
    from infomax.engine import ablate as ablate_module

    calls = []
    monkeypatch.setattr(ablate_module, "finetune", lambda config, run_dir, **kw: calls.append(config.optim.lr) or {"test_top1": 1.0})
    run = tmp_path / "sub"
    run.mkdir()
    asked = configure(lr=1e-3)
    (run / "metrics.json").write_text(json.dumps({"test_top1": 50.0}))
    C.save(configure(lr=3e-4), run / "config.yaml")
    assert ablate_module._one(asked, run, None)["test_top1"] == 1.0 and calls == [1e-3]  # other settings: trained again
    C.save(configure(lr=1e-3, log_every=3, baseline_check=False), run / "config.yaml")
    assert ablate_module._one(asked, run, None)["test_top1"] == 50.0 and calls == [1e-3]  # same settings: reused
    (run / "config.yaml").write_text("lr: 0.001\n")  # a flat config of another version
    assert ablate_module._one(asked, run, None)["test_top1"] == 1.0 and calls == [1e-3, 1e-3]


def test_a_random_weight_backbone_is_refused_with_the_alternatives(tmp_path):
    with pytest.raises(ValueError, match="random weights.*efficientnet-lite0.*infomax pretrain"):
        finetune(configure(backbone="resnet18", dataset="digits"), tmp_path / "run", report=False)
    assert not (tmp_path / "run").exists()


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(backbone, tmp_path, capsys, monkeypatch):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path / "work")
    for out in (".", str(tmp_path / "work")):
        assert main(["finetune", "--dataset", "cifar11", "--out", out, "--overwrite"]) == 2
        assert main(["finetune", "--backbone", backbone, "--dataset", "digits", "--out", out, "--overwrite"]) == 2
    assert "not one" in capsys.readouterr().err and (tmp_path / "work" / "notes.txt").read_text() == "mine"


def test_a_run_below_its_baseline_on_validation_says_so(backbone, tmp_path, capsys):
    config = _config(backbone, epochs=1)
    prepared = finetune_module.prepare_features(config, progress=False)
    checked = finetune_module.compare_with_baseline(config, prepared, tmp_path / "run", val_top1=-1.0)
    assert checked["val_margin_over_baseline"] == -1.0 - checked["baseline/val_top1"] < 0
    err = capsys.readouterr().err
    assert "below the cat-cross baseline" in err and f"predict --run {tmp_path / 'run' / 'baseline'}" in err
    assert finetune_module.is_baseline(configure(**finetune_module.BASELINE)) and not finetune_module.is_baseline(config)


def test_a_failed_baseline_check_leaves_the_finished_run_complete(backbone, tmp_path, capsys):
    finetune(_config(backbone, epochs=1), tmp_path / "run", report=False)
    (tmp_path / "run" / "baseline").mkdir()
    (tmp_path / "run" / "baseline" / "mine.txt").write_text("not a run")  # the check may not overwrite it
    metrics = finetune(_config(backbone, epochs=1, baseline_check=True), tmp_path / "run", resume=True, report=False)
    assert "baseline check failed" in capsys.readouterr().err
    assert "val_margin_over_baseline" not in metrics and (tmp_path / "run" / "head.safetensors").exists()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_top1"] == metrics["test_top1"]
    assert (tmp_path / "run" / "baseline" / "mine.txt").read_text() == "not a run"


def test_the_baseline_itself_and_no_baseline_check_train_no_second_run(backbone, tmp_path):
    from infomax.engine.finetune import BASELINE

    metrics = finetune(_config(backbone, epochs=1, baseline_check=True, **BASELINE), tmp_path / "base", report=False)
    assert not (tmp_path / "base" / "baseline").exists() and "val_margin_over_baseline" not in metrics
    args = ["finetune", "--backbone", backbone, "--dataset", "digits", "--labels", "30", "--resolution", "16", "--epochs", "1",
            "--min-steps", "0", "--batch-size", "128", "--no-baseline-check", "--out", str(tmp_path / "cli")]
    assert main(args) == 0
    assert not (tmp_path / "cli" / "baseline").exists()
    assert C.load(tmp_path / "cli" / "config.yaml").finetune.baseline_check is False
    resumed = [a for a in args[:-2] if a != "--no-baseline-check"]
    assert main([*resumed, "--epochs", "2", "--resume", "--out", str(tmp_path / "cli")]) == 0  # resumed without the flag
    assert not (tmp_path / "cli" / "baseline").exists()


def test_train_seconds_add_up_over_a_resume(backbone, tmp_path):
    first = finetune(_config(backbone, epochs=1), tmp_path / "run", report=False)
    both = finetune(_config(backbone, epochs=2), tmp_path / "run", resume=True, report=False)
    assert both["train_seconds"] > first["train_seconds"] > 0


def test_a_run_written_before_the_config_tree_still_predicts(backbone, tmp_path, capsys):
    """tests/fixtures/finetune_v1_record.json: what the flat FinetuneConfig wrote into head.safetensors. The same
    weights saved with that record and with today's config tree predict alike, and the record reads into the tree."""
    from pathlib import Path

    from infomax.engine.predict import run_config
    from infomax.models import fingerprint
    from infomax.models.registry import load_encoder
    from infomax.runs.rundir import save_tensors

    record = json.loads((Path(__file__).parent / "fixtures" / "finetune_v1_record.json").read_text())
    record.pop("written_by")
    assert "method" in record["config"] and not isinstance(record["config"]["method"], dict)  # the flat settings
    record["config"]["backbone"] = backbone
    record["features"]["weights"] = fingerprint(load_encoder(backbone))
    config = run_config(record["config"])  # read through finetune's flag words into today's tree
    assert (config.finetune.token_grid, config.finetune.latent_dim, config.data.resolution, config.run.seed) == (2, 16, 16, 42)
    assert config.method.lambda_critic == 3.0 and config.optim.lr == 3e-3
    spec = record["features"]
    torch.manual_seed(0)
    method = finetune_module.build_method(config, spec["token_dim"], spec["dim"], len(record["classes"]))
    test = load_dataset("digits", "test")
    (tmp_path / "images").mkdir()
    for i in range(6):
        (tmp_path / "images" / f"{i}.png").write_bytes(save_png(test.images[i]))
    rows = {}
    for name, recorded in (("old", record), ("new", {**record, "config": C.to_dict(config)})):
        (tmp_path / name).mkdir()
        save_tensors(tmp_path / name / "head.safetensors", method.state_dict(), {"infomax_finetune": json.dumps(recorded)})
        assert main(["predict", "--run", str(tmp_path / name), str(tmp_path / "images")]) == 0
        rows[name] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows["old"]) == 6 and rows["old"] == rows["new"]
    fixmatch = run_config({**record["config"], "method": "fixmatch"})  # TwinTURBO's weights dropped, not refused
    assert fixmatch.method_name == "fixmatch" and fixmatch.method.threshold == 0.95


def test_finetune_runs_on_the_config_tree_of_every_training_verb(backbone, tmp_path, capsys):
    """Recipes, --set and config.yaml as for pretrain; one resume rule; each verb refuses the other's methods."""
    tiny = ["--backbone", backbone, "--dataset", "digits", "--labels", "30", "--resolution", "16", "--epochs", "1",
            "--min-steps", "0", "--batch-size", "128", "--no-baseline-check"]
    out = tmp_path / "fix"
    assert main(["finetune", "--recipe", "fixmatch-cpu", *tiny, "--set", "method.threshold=0.5", "--set", "run.loggers=[csv]",
                 "--out", str(out)]) == 0
    saved = C.load(out / "config.yaml")
    assert (saved.method_name, saved.method.threshold, saved.finetune.labels, saved.optim.name) == ("fixmatch", 0.5, 30, "adamw")
    assert json.loads((out / "metrics.json").read_text())["variant"] == "FixMatch" and list((out / "csv").rglob("metrics.csv"))
    capsys.readouterr()
    assert main(["finetune", "--resume", "--set", "finetune.labels=40", "--out", str(out)]) == 2
    assert "finetune.labels: 30 -> 40" in capsys.readouterr().err
    assert main(["finetune", "--resume", "--epochs", "2", "--out", str(out)]) == 0  # its own method, without --method
    assert C.load(out / "config.yaml").schedule.epochs == 2
    assert main(["finetune", "--recipe", "simclr-cpu", *tiny, "--out", str(tmp_path / "x")]) == 2
    assert "few-label head" in capsys.readouterr().err
    assert main(["pretrain", "--recipe", "twinturbo-cpu", "--out", str(tmp_path / "y")]) == 2
    assert "infomax finetune --method twinturbo" in capsys.readouterr().err
    assert main(["pretrain", "--resume", "--out", str(out)]) == 2
    assert "resume it with `infomax finetune --resume" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_recipe_file_is_laid_over_its_methods_cpu_recipe_and_a_new_head_fills_its_shape(backbone, tmp_path, capsys):
    from infomax.engine.finetune import with_settings

    (tmp_path / "mine.yaml").write_text("method: {name: twinturbo, lambda_critic: 1.0}\nfinetune: {token_grid: 2}\n")
    config = configure(recipe=str(tmp_path / "mine.yaml"))
    shipped = configure()
    assert config.method.lambda_critic == 1.0 and config.finetune.token_grid == 2
    assert (config.optim, config.schedule, config.run.seed) == (shipped.optim, shipped.schedule, 42)  # not pretraining's LARS
    paper = configure(recipe=str(tmp_path / "mine.yaml"), head="paper")
    assert (paper.finetune.token_grid, paper.finetune.latent_dim) == ("native", 8000)
    kept = with_settings(configure(latent_dim=64), head="cpu")  # the same head: what was set stays
    assert kept.finetune.latent_dim == 64
    assert main(["finetune", "--recipe", str(tmp_path / "mine.yaml"), "--head", "paper", "--backbone", backbone,
                 "--dataset", "digits", "--set", "run.devices=2", "--out", str(tmp_path / "x")]) == 2
    assert "one process" in capsys.readouterr().err and not (tmp_path / "x").exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text("{}")
    assert main(["finetune", "--resume", "--out", str(old)]) == 2
    assert "earlier infomax" in capsys.readouterr().err
