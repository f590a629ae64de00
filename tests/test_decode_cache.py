"""The decoded cache built by worker processes (data/decode.py, data/dataset.py): the same bytes for
any number of workers and any number of restarts, chunk-sized work, one builder per cache, and bad
input named with its fix. Tiny JPEG folders made here with Pillow."""
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infomax.cli import main
from infomax.data import decode
from infomax.data.dataset import load_dataset
from infomax.data.formats import DataFormatError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INFOMAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(decode, "CHUNK_ROWS", 3)  # many chunks from a few images


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _jpeg_folder(root: Path, n: int = 14, seed: int = 0, sizes=((24, 32),)) -> list[Path]:
    """n JPEGs as class/image.jpg over three classes, sizes cycling through `sizes`."""
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        path = root / f"c{i % 3}" / f"{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
        files.append(path)
    return sorted(files, key=lambda p: str(p.relative_to(root)))


def _cache_bytes(data) -> dict[str, bytes]:
    folder = Path(data.images.filename).parent
    return {name: (folder / name).read_bytes() for name in ("images.npy", "labels.npy", "meta.json")}


def _decoded(tmp_path, monkeypatch, name: str, location: Path, **options):
    monkeypatch.setenv("INFOMAX_CACHE", str(tmp_path / name))
    return load_dataset("imagefolder", "train", location, **options)


@pytest.mark.parametrize("image_size", [None, 20])
def test_zero_one_and_two_workers_write_the_same_bytes_as_pillow(tmp_path, monkeypatch, image_size):
    sizes = ((24, 32),) if image_size is None else ((24, 32), (40, 28), (21, 21))
    files = _jpeg_folder(tmp_path / "jpegs", sizes=sizes)
    built = {w: _decoded(tmp_path, monkeypatch, f"w{w}", tmp_path / "jpegs", workers=w, image_size=image_size) for w in (0, 1, 2)}
    assert _cache_bytes(built[0]) == _cache_bytes(built[1]) == _cache_bytes(built[2])
    expected = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    if image_size is not None:
        expected = [decode.decode_resized(f.read_bytes(), str(f), image_size) for f in files]
        assert expected[1].shape == (20, 20, 3) and not np.array_equal(expected[1], np.asarray(Image.open(files[1]))[:20, :20])
    assert np.array_equal(built[2].images, np.stack(expected))
    assert built[2].labels.tolist() == [int(f.parent.name[1]) for f in files] and built[2].classes == ["c0", "c1", "c2"]


def test_a_tar_decodes_to_the_folders_rows_whatever_its_member_order(tmp_path, monkeypatch):
    files = _jpeg_folder(tmp_path / "jpegs", n=10)
    with tarfile.open(tmp_path / "jpegs.tar", "w") as tar:
        for path in reversed(files):  # archive order is not row order
            tar.add(path, arcname=str(path.relative_to(tmp_path / "jpegs")))
    folder = _decoded(tmp_path, monkeypatch, "folder", tmp_path / "jpegs", workers=0)
    archive = _decoded(tmp_path, monkeypatch, "tar", tmp_path / "jpegs.tar", workers=2)
    assert np.array_equal(folder.images, archive.images) and folder.labels.tolist() == archive.labels.tolist()
    assert archive.files == folder.files


def test_each_call_decodes_one_chunk_of_at_most_the_chunk_size(tmp_path, monkeypatch):
    _jpeg_folder(tmp_path / "jpegs", n=11)
    with tarfile.open(tmp_path / "jpegs.tar", "w") as tar:
        tar.add(tmp_path / "jpegs", arcname=".")
    fed, real = [], decode.decode_chunk

    def recording(target, offset, shape, size, items):
        fed.append([row for row, _, _ in items])
        return real(target, offset, shape, size, items)

    monkeypatch.setattr(decode, "decode_chunk", recording)
    for location in ("jpegs", "jpegs.tar"):
        fed.clear()
        _decoded(tmp_path, monkeypatch, f"cache-{location}", tmp_path / location, workers=0)
        assert [len(rows) for rows in fed] == [3, 3, 3, 2]  # 11 images, 3 per chunk
        assert sorted(row for rows in fed for row in rows) == list(range(11))
    monkeypatch.setattr(decode, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(decode, "CHUNK_BYTES", 5 * 24 * 32 * 3)  # five decoded rows of pixels
    fed.clear()
    _decoded(tmp_path, monkeypatch, "bytes", tmp_path / "jpegs", workers=0)
    assert [len(rows) for rows in fed] == [5, 5, 1]


def test_a_build_stopped_after_two_chunks_resumes_and_equals_a_clean_build(tmp_path, monkeypatch):
    _jpeg_folder(tmp_path / "jpegs", n=14)  # 5 chunks of 3
    clean = _cache_bytes(_decoded(tmp_path, monkeypatch, "clean", tmp_path / "jpegs", workers=0))
    real_log, logged = decode._log_chunk, []

    def dying_log(target, chunk):
        if len(logged) == 2:
            raise KeyboardInterrupt  # a kill after two chunks were written and recorded
        logged.append(chunk)
        real_log(target, chunk)

    monkeypatch.setattr(decode, "_log_chunk", dying_log)
    with pytest.raises(KeyboardInterrupt):
        _decoded(tmp_path, monkeypatch, "cut", tmp_path / "jpegs", workers=0)
    monkeypatch.setattr(decode, "_log_chunk", real_log)
    fed, real = [], decode.decode_chunk
    monkeypatch.setattr(decode, "decode_chunk", lambda *task: fed.append(task[-1]) or real(*task))
    resumed = _decoded(tmp_path, monkeypatch, "cut", tmp_path / "jpegs", workers=0)
    assert len(fed) == 3 and all(row >= 6 for items in fed for row, _, _ in items)  # only the chunks not done
    assert _cache_bytes(resumed) == clean
    assert not list((tmp_path / "cut" / "decoded").glob(".*.partial"))


def test_sigkill_mid_build_with_two_workers_then_rerun_gives_the_clean_bytes(tmp_path, monkeypatch):
    _jpeg_folder(tmp_path / "jpegs", n=30)  # 10 chunks of 3
    clean = _cache_bytes(_decoded(tmp_path, monkeypatch, "clean", tmp_path / "jpegs", workers=2))
    child = textwrap.dedent(f"""
        import time
        from infomax.data import decode
        from infomax.data.dataset import load_dataset
        decode.CHUNK_ROWS, real = 3, decode.decode_resized
        decode.decode_resized = lambda *a: time.sleep(0.1) or real(*a)  # forked workers inherit the slow decode
        load_dataset("imagefolder", "train", {str(tmp_path / "jpegs")!r}, workers=2)
    """)
    env = {**os.environ, "INFOMAX_CACHE": str(tmp_path / "cut"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", child], env=env, stderr=subprocess.PIPE)
    logs, deadline = tmp_path / "cut" / "decoded", time.time() + 60
    while time.time() < deadline and proc.poll() is None and sum(len(p.read_text().split()) for p in logs.glob(".*.partial/images.chunks")) < 3:
        time.sleep(0.02)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(logs.glob("imagefolder-*")), "the build finished before the kill"
    (log,) = logs.glob(".*.partial/images.chunks")
    done = len(log.read_text().split())
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.02)
    assert len(workers) == 2 and not any(_alive(pid) for pid in workers)  # the workers died with their parent
    fed, real = [], decode.decode_chunk
    monkeypatch.setattr(decode, "decode_chunk", lambda *task: fed.append(task[-1]) or real(*task))
    resumed = _decoded(tmp_path, monkeypatch, "cut", tmp_path / "jpegs", workers=0)
    assert 3 <= done < 10 and len(fed) == 10 - done
    assert _cache_bytes(resumed) == clean


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_truncated_jpeg_and_a_non_image_are_named_with_the_fix_and_the_old_cache_kept(tmp_path, monkeypatch, capsys):
    files = _jpeg_folder(tmp_path / "jpegs", n=8)
    before = load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=0)
    truncated = files[2].read_bytes()
    files[2].write_bytes(truncated[: len(truncated) // 2])
    (tmp_path / "jpegs" / "c1" / "notes.jpg").write_text("meeting notes, not a photo")
    with pytest.raises(DataFormatError) as error:
        load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=2)
    message = str(error.value)
    assert message.startswith("2 unreadable image(s); remove or replace them")
    assert f"{files[2]}: corrupt or unreadable image: truncated" in message
    assert f"{tmp_path / 'jpegs' / 'c1' / 'notes.jpg'}: corrupt or unreadable image: not an image file" in message
    assert "notes.jpg" in capsys.readouterr().err  # named as soon as it was found
    decoded = tmp_path / "cache" / "decoded"
    assert not list(decoded.glob(".*.partial"))  # fixing the files changes the key: nothing to resume
    assert Path(before.images.filename).exists() and files[3].exists()  # the last good cache and the files untouched
    files[2].write_bytes(truncated)
    (tmp_path / "jpegs" / "c1" / "notes.jpg").unlink()
    assert np.array_equal(load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=2).images, before.images)


def test_images_of_another_size_are_named_with_the_image_size_fix(tmp_path):
    _jpeg_folder(tmp_path / "jpegs", n=6, sizes=((24, 32), (24, 32), (30, 30)))
    with pytest.raises(DataFormatError, match=r"images differ in size: .*c0/000.jpg is 24x32, but 2 are not, e\.g\. "
                                              r".*c2/002.jpg is 30x30; pass --image-size N"):
        load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=2)


def test_a_folder_changed_after_its_cache_was_built_is_decoded_again(tmp_path):
    files = _jpeg_folder(tmp_path / "jpegs", n=6)
    first = load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=0)
    replacement = np.full((24, 32, 3), 200, dtype=np.uint8)
    files[0].write_bytes(_jpeg(replacement))  # same name, new content and mtime
    stat = files[0].stat()
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=2)
    assert np.abs(second.images[0].astype(int) - 200).max() < 8 and np.array_equal(second.images[1:], first.images[1:])
    (tmp_path / "jpegs" / "c0" / "100.jpg").write_bytes(_jpeg(replacement))
    third = load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=2)
    assert len(third) == 7 and third.files[2] == "c0/100.jpg"
    files[-1].unlink()
    assert len(load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=2)) == 6


def test_a_cache_root_inside_the_image_folder_is_not_part_of_its_key(tmp_path, monkeypatch):
    _jpeg_folder(tmp_path / "jpegs", n=4)
    monkeypatch.setenv("INFOMAX_CACHE", str(tmp_path / "jpegs" / ".cache"))
    first = load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=2)
    assert load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=2).images.filename == first.images.filename


def test_a_folder_changed_while_it_is_decoded_is_named_and_not_cached(tmp_path, monkeypatch):
    files = _jpeg_folder(tmp_path / "jpegs", n=6)
    real = decode.decode_resized

    def meddling(raw, name, size):
        if name.endswith("003.jpg"):
            files[4].write_bytes(files[4].read_bytes() + b"\0")
        return real(raw, name, size)

    monkeypatch.setattr(decode, "decode_resized", meddling)
    with pytest.raises(DataFormatError, match=rf"{files[4]} was modified while the dataset was being decoded.*Run again"):
        load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=0)
    assert not [p for p in (tmp_path / "cache" / "decoded").iterdir() if p.suffix != ".lock"]


def test_a_second_process_waits_for_the_builder_and_says_so(tmp_path, capsys):
    import fcntl

    _jpeg_folder(tmp_path / "jpegs", n=4)
    first = load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=0)
    os.utime(tmp_path / "jpegs" / "c0" / "000.jpg", ns=(0, 10**18))  # a new key: the cache is built again
    result = {}
    with open(_lock_of(tmp_path, "jpegs"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiter = threading.Thread(target=lambda: result.update(data=load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=0)))
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and "data" not in result  # blocked on the builder's lock
        fcntl.flock(held, fcntl.LOCK_UN)
    waiter.join(10)
    assert np.array_equal(result["data"].images, first.images)
    assert "another process is building the decoded cache" in capsys.readouterr().err


def _lock_of(tmp_path: Path, location: str) -> Path:
    """The lock file of the cache the folder's current files would be built into."""
    from infomax.data.dataset import _Cache, _file_stats

    entry = _Cache("imagefolder", tmp_path / location, {}, _file_stats(tmp_path / location))
    folder = entry.folder("train")
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent / f".{folder.name}.lock"


def test_workers_must_be_a_count_and_data_check_takes_them(tmp_path, capsys):
    _jpeg_folder(tmp_path / "jpegs", n=5)
    with pytest.raises(ValueError, match="workers must be a whole number >= 0"):
        load_dataset("imagefolder", "train", tmp_path / "jpegs", workers=-1)
    assert main(["data", "check", "imagefolder", "--data-root", str(tmp_path / "jpegs"), "--workers", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["images"] == 5 and summary["splits"]["train"]["image_shape"] == [24, 32, 3]
