"""The streaming source (issue 23): views cut at decode time, the same whatever the workers or ranks, exact
resume after SIGKILL with workers, bad images skipped and counted, shards packed, checked and streamed."""
import io
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from infomax.cli import main
from infomax.data.augment import resample_boxes, to_float_images
from infomax.data.encoded import folder_samples
from infomax.data.shards import find_shards, shard_samples
from infomax.data.augment import BOX_DRAWS, crop_box
from infomax.data.stream import VIEW_DRAWS, StreamBatches, ViewDecoder, sample_draws
from infomax.data.views import ViewSpec, get_view_set

CLASSES, PER_CLASS = 3, 24


def photo(rng, height: int, width: int) -> np.ndarray:
    """Smooth colour fields plus a little noise: JPEG-like content with structure at every scale."""
    coarse = rng.random((height // 8 + 2, width // 8 + 2, 3))
    big = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / f"class{c}").mkdir()
        for i in range(PER_CLASS):
            Image.fromarray(photo(rng, 56 + 4 * (i % 5), 72 + 2 * (i % 7))).save(root / f"class{c}/{i:02d}.jpg", quality=90)
    return root


def collect(samples, views, workers: int, epoch: int = 1, world: int = 1, skip: int = 0) -> dict[int, list[torch.Tensor]]:
    """{row: its views} over every rank's share of one epoch."""
    out = {}
    for rank in range(world):
        batches = StreamBatches(samples, np.arange(len(samples)), views, 8, seed=5, rank=rank, world_size=world, workers=workers)
        for rows, batch in zip(batches.rows_of(epoch)[skip:], batches.epoch(epoch, skip)):
            for i, row in enumerate(rows):
                out[int(row)] = [v[i] for v in batch["views"]]
    return out


def test_views_do_not_depend_on_workers_ranks_or_skipped_batches(folder):
    samples = folder_samples(folder, "train")
    views = get_view_set("mira", 24, n_local=2, local_size=12)
    one = collect(samples, views, workers=0)
    for other in (collect(samples, views, workers=2), collect(samples, views, workers=1, world=2),
                  collect(samples, views, workers=0, skip=3)):
        assert other and all(all(torch.equal(a, b) for a, b in zip(one[row], vs)) for row, vs in other.items())
    assert not torch.equal(one[0][0], collect(samples, views, workers=0, epoch=2)[0][0])  # a new epoch, new views


def test_crop_at_decode_matches_cropping_the_full_image(folder, tmp_path):
    """The boxes land where they should: against resample_boxes on the fully decoded image (PNG: no draft),
    and with JPEG draft (a 1/2-1/8 scale decode) within the error of a reduced-scale decode."""
    png = tmp_path / "png" / "a"
    png.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(photo(rng, 120, 160)).save(png / f"{i}.png")
    jpeg = tmp_path / "jpeg" / "a"
    jpeg.mkdir(parents=True)
    for i in range(4):
        Image.open(png / f"{i}.png").save(jpeg / f"{i}.jpg", quality=95)
    spec = ViewSpec(16, scale=(0.3, 1.0), flip_p=0.5)
    for root, tolerance in ((png.parent, 0.06), (jpeg.parent, 0.08)):  # a box off by 8 px or mirrored: 0.17-0.25
        samples = folder_samples(root, "train")
        decoder = ViewDecoder(samples, np.arange(4), [spec], seed=0)
        for row in range(4):
            u = sample_draws(0, 0, row).random((1, VIEW_DRAWS))
            crops, _ = decoder.crops(row, u)
            box = torch.tensor([crop_box(u[0, :BOX_DRAWS], 120, 160, spec.scale, spec.ratio)], dtype=torch.float64)
            flip = torch.tensor([u[0, BOX_DRAWS] < spec.flip_p])
            full = np.array(Image.open(png / f"{row}.png").convert("RGB"))[None]
            reference = resample_boxes(to_float_images(torch.from_numpy(full)), box, 16, flip)
            got = to_float_images(torch.from_numpy(crops[0][None]))
            assert (got - reference).abs().mean() < tolerance


def tiny(folder, out: Path, *extra) -> list[str]:
    return ["pretrain", "--method", "simclr", "--dataset", "imagefolder", "--data-root", str(folder), "--batch-size", "16",
            "--set", "data.source=stream", "--set", "data.resolution=16", "--set", "model.options.width=8",
            "--set", "method.projector_hidden=32", "--set", "method.projector_out=32", "--set", "run.log_every=1",
            "--set", "run.knn_every=0", "--set", "data.holdout=0", "--precision", "32-true", "--out", str(out), *extra]


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r}


def test_zero_one_and_two_workers_train_to_the_same_losses(folder, tmp_path):
    runs = []
    for workers in (0, 1, 2):
        assert main(tiny(folder, tmp_path / str(workers), "--max-steps", "5", "--set", f"data.workers={workers}")) == 0
        runs.append(losses(tmp_path / str(workers)))
    assert len(runs[0]) == 5 and runs[0] == runs[1] == runs[2]
    record = json.loads((tmp_path / "2" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 <= record["data_wait"] <= 1 and record["data_bad"] == 0


@pytest.mark.slow
def test_sigkill_mid_epoch_with_two_workers_then_resume_is_exact(folder, tmp_path):
    argv = tiny(folder, tmp_path / "whole", "--max-steps", "12", "--checkpoint-every", "2", "--set", "data.workers=2")
    subprocess.run([sys.executable, "-m", "infomax", *argv], check=True, capture_output=True)
    cut = tmp_path / "cut"
    argv = [a if a != str(tmp_path / "whole") else str(cut) for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "infomax", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not ((cut / "metrics.jsonl").exists() and len(losses(cut)) >= 5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL and max(losses(cut)) < 12  # died mid-run; an epoch is 4 steps
    resumed = subprocess.run([sys.executable, "-m", "infomax", *argv, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert losses(cut) == losses(tmp_path / "whole") and sorted(losses(cut)) == list(range(1, 13))


def test_bad_images_are_skipped_counted_and_named_once_then_stop_the_run_past_the_limit(folder, tmp_path, capsys):
    data = tmp_path / "data"
    import shutil

    shutil.copytree(folder, data)
    good = (data / "class0" / "00.jpg").read_bytes()
    (data / "class1" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (data / "class2" / "notes.jpg").write_bytes(b"not an image at all")
    assert main(tiny(data, tmp_path / "ok", "--max-steps", "10", "--set", "data.max_bad_fraction=0.1")) == 0
    err = capsys.readouterr().err
    assert err.count("truncated.jpg") == 1 and err.count("notes.jpg") == 1  # named once, though read every epoch
    last = [json.loads(line) for line in (tmp_path / "ok" / "metrics.jsonl").read_text().splitlines() if "loss" in line][-1]
    assert last["data_bad"] == 2
    assert main(tiny(data, tmp_path / "stop", "--max-steps", "10", "--set", "data.max_bad_fraction=0.01")) == 2
    err = capsys.readouterr().err
    assert "data.max_bad_fraction=0.01" in err and ("truncated.jpg" in err or "notes.jpg" in err)


def test_pack_writes_checksummed_shards_resumes_and_streams_the_same_views(folder, tmp_path):
    out = tmp_path / "shards"
    assert main(["data", "pack", str(folder), str(out), "--shard-size", "20"]) == 0
    names = sorted(p.name for p in out.glob("*.tar"))
    assert names == [f"train-{i:06d}.tar" for i in range(4)] and (out / "classes.txt").read_text().split() == ["class0", "class1", "class2"]
    first = {n: (out / n).read_bytes() for n in names}
    (out / names[-1]).unlink()  # a pack killed before its last shard
    stamp = (out / names[0]).stat().st_mtime_ns
    assert main(["data", "pack", str(folder), str(out), "--shard-size", "20"]) == 0
    assert (out / names[0]).stat().st_mtime_ns == stamp and {n: (out / n).read_bytes() for n in names} == first
    shards, files = shard_samples(find_shards(out)), folder_samples(folder, "train")
    assert len(shards) == len(files) == CLASSES * PER_CLASS and np.array_equal(shards.labels, files.labels)
    views = get_view_set("simclr", 16)
    a, b = collect(shards, views, workers=0), collect(files, views, workers=0)
    assert all(torch.equal(x, y) for row in a for x, y in zip(a[row], b[row]))
    argv = tiny(out, tmp_path / "run", "--max-steps", "2", "--set", "data.source=auto")
    argv[argv.index("imagefolder")] = "shards"
    assert main(argv) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["source"] == "stream"


def test_data_check_reads_shards_and_reports_counts_and_bad_files(folder, tmp_path, capsys):
    out = tmp_path / "shards"
    assert main(["data", "pack", str(folder), str(out), "--shard-size", "40"]) == 0
    capsys.readouterr()
    assert main(["data", "check", "shards", "--data-root", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["images"] == 72 and summary["splits"]["train"]["per_class"]["class1"] == 24
    with open(out / "train-000001.tar", "r+b") as handle:  # damage one image's bytes inside a shard
        handle.seek(2048)
        handle.write(b"\0" * 600)
    assert main(["data", "check", "shards", "--data-root", str(out)]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["checksum_mismatch"] == ["train-000001.tar"]


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_bad_shards_are_refused_naming_the_file_and_the_fix(folder, tmp_path, capsys):
    jpg = (folder / "class0" / "00.jpg").read_bytes()
    (tmp_path / "empty").mkdir()
    write_tar(tmp_path / "empty" / "train-000000.tar", {})
    (tmp_path / "nolabel").mkdir()
    write_tar(tmp_path / "nolabel" / "train-000000.tar", {"a.jpg": jpg, "a.cls": b"0", "b.jpg": jpg})
    cases = {str(tmp_path / "empty"): "holds no images", str(tmp_path / "nolabel"): "b.jpg has no .cls label",
             str(tmp_path / "none-*.tar"): "matches no file", str(tmp_path / "missing"): "no such folder"}
    for root, said in cases.items():
        argv = tiny(root, tmp_path / "run", "--max-steps", "1")
        argv[argv.index("imagefolder")] = "shards"
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert said in err and ("data pack" in err or "pattern" in err or "check the path" in err)
        assert not (tmp_path / "run").exists()


def test_auto_streams_a_folder_whose_cache_would_pass_the_limit_and_records_it(folder, tmp_path):
    argv = tiny(folder, tmp_path / "run", "--max-steps", "1")
    argv[argv.index("data.source=stream")] = "data.decoded_max_gb=0.0001"
    assert main(argv) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["source"] == "stream"
    argv = tiny(folder, tmp_path / "small", "--max-steps", "1", "--set", "data.image_size=24")
    argv[argv.index("data.source=stream")] = "data.source=auto"
    assert main(argv) == 0
    assert yaml.safe_load((tmp_path / "small" / "config.yaml").read_text())["data"]["source"] == "decoded"


@pytest.mark.slow
def test_two_processes_stream_and_stop_together_past_the_bad_image_limit(folder, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(folder, data)
    for c in range(CLASSES):
        (data / f"class{c}" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    base = [sys.executable, "-m", "infomax", *tiny(data, tmp_path / "ok", "--max-steps", "4", "--set", "data.workers=1",
                                                   "--devices", "2", "--accelerator", "cpu", "--set", "data.max_bad_fraction=0.1")]
    assert subprocess.run(base, capture_output=True, timeout=240).returncode == 0
    assert len(losses(tmp_path / "ok")) == 4
    stop = [a if a != str(tmp_path / "ok") else str(tmp_path / "stop") for a in base]
    stop[stop.index("data.max_bad_fraction=0.1")] = "data.max_bad_fraction=0.001"
    ended = subprocess.run([*stop[:stop.index("--max-steps") + 1], "40", *stop[stop.index("--max-steps") + 2:]],
                           capture_output=True, text=True, timeout=240)  # a hang would time out here
    assert ended.returncode != 0 and "data.max_bad_fraction=0.001" in ended.stderr
