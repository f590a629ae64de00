"""`run.precision: auto` (issue 25 item 1): bf16 autocast where the device has bf16 arithmetic, fp32
elsewhere; the run's config.yaml records the choice, so a resume runs what the run ran."""
import yaml

from infomax.cli import main
from infomax import precision as P

TINY = ["--dataset", "digits", "--batch-size", "64", "--set", "model.options.width=8", "--set", "method.projector_hidden=32",
        "--set", "method.projector_out=32", "--set", "run.knn_every=0", "--set", "data.holdout=200"]


def test_auto_is_bf16_only_with_native_bf16(monkeypatch):
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert P.native_precision("cpu") == "32-true"  # AVX-512 without BF16 would emulate it: slower than fp32
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert P.native_precision("cpu") == "bf16-mixed"
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"amx_bf16"})
    assert P.native_precision("cpu") == "bf16-mixed"
    assert P.native_precision("mps") == "32-true"


def test_a_run_records_what_auto_chose_and_a_resume_keeps_it(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx512_bf16"})
    assert main(["pretrain", "--method", "simclr", *TINY, "--max-steps", "2", "--out", str(out)]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["precision"] == "bf16-mixed"
    monkeypatch.setattr(P, "_cpu_flags", lambda: set())  # the same run resumed on a machine without bf16
    assert main(["pretrain", "--resume", "--out", str(out)]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["precision"] == "bf16-mixed"


def test_an_explicit_precision_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "_cpu_flags", lambda: {"avx512_bf16"})
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "simclr", *TINY, "--max-steps", "1", "--precision", "32-true", "--out", str(out)]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["precision"] == "32-true"
