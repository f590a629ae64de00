"""Plots write valid PNGs; the HTML report is self-contained, escaped and renders in a browser."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infomax.eval import geometry as g
from infomax.eval import plots
from infomax.eval.report import PNG_SIGNATURE, write_report

MALICIOUS = '<script>alert("pwned")</script>'


def _assert_png(path: Path, min_bytes: int = 5_000) -> None:
    data = Path(path).read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > min_bytes, (path, len(data))


def _write_metrics_jsonl(path: Path, steps: int = 40, truncated: bool = True) -> None:
    with open(path, "w") as f:
        for step in range(0, steps * 10, 10):
            record = {"step": step, "epoch": step // 100, "loss": 3 / (1 + step / 50), "loss/on": -0.5,
                      "loss/off": 1 / (1 + step), "knn_top1": step / 500, "grad_norm": 5 / (1 + step),
                      "feature_std": 0.02 + step / 1e4, "redundancy_to_alignment": 0.4}
            f.write(json.dumps(record) + "\n")
        if truncated:
            f.write('{"step": 400, "loss": 0.1')  # a killed run


@pytest.fixture(scope="module")
def embeddings():
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 4
    z = torch.randn(120, 24, generator=generator) + 2.5 * torch.nn.functional.one_hot(y, 24)
    return z, z + 0.3 * torch.randn(120, 24, generator=generator), y


# --- plots ---------------------------------------------------------------------------------

def test_every_embedding_plot_writes_a_png(tmp_path, embeddings):
    z, z_pair, y = embeddings
    written = plots.plot_geometry(z, tmp_path / "plots", labels=y, z_pair=z_pair, tsne=False)
    assert {p.name for p in written} == {"pca_spectrum.png", "feature_std.png", "nn_distances.png",
                                         "pairwise_angles.png", "marginals_2d.png"}
    all_deg, _ = g.pair_angles(z)
    written += [
        plots.plot_angles(all_deg.numpy(), None, tmp_path / "angles_all_only.png"),
        plots.plot_marginals(z.numpy(), tmp_path / "sub" / "marginals_unlabelled.png", grid=2),
        plots.plot_tsne(z[:60], y[:60], tmp_path / "tsne.png", max_iter=250),
    ]
    for path in written:
        _assert_png(path)


def test_plots_reject_unusable_input(tmp_path):
    with pytest.raises(ValueError, match="D >= 2"):
        plots.plot_marginals(np.zeros((10, 1)), tmp_path / "m.png")
    with pytest.raises(ValueError, match="one label per row"):
        plots.plot_tsne(np.zeros((10, 3)), [0, 1], tmp_path / "t.png")
    with pytest.raises(ValueError, match="no finite values"):
        plots.plot_feature_std([float("nan")] * 4, tmp_path / "s.png")


def test_training_curves_tolerate_a_truncated_last_line(tmp_path):
    _write_metrics_jsonl(tmp_path / "metrics.jsonl", steps=40, truncated=True)
    records = plots.read_metrics_jsonl(tmp_path / "metrics.jsonl")
    assert len(records) == 40
    groups = plots.metric_series(records)
    assert list(groups) == ["loss", "accuracy", "grad_norm", "feature_std", "redundancy_to_alignment"]
    assert set(groups["loss"]) == {"loss", "loss/on", "loss/off"}
    path = plots.plot_training_curves(tmp_path)
    assert path == tmp_path / "plots" / "training_curves.png"
    _assert_png(path)


def test_training_curves_skip_absent_groups_and_warn_on_a_bad_interior_line(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0 / (s + 1)}) for s in range(5)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines[:2] + ["not json"] + lines[2:]) + "\n")
    with pytest.warns(UserWarning, match="line 3"):
        records = plots.read_metrics_jsonl(tmp_path / "metrics.jsonl")
    assert list(plots.metric_series(records)) == ["loss"]
    with pytest.warns(UserWarning, match="line 3"):
        _assert_png(plots.plot_training_curves(tmp_path, tmp_path / "curves.png"), min_bytes=3_000)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="metrics.jsonl"):
        plots.plot_training_curves(tmp_path / "empty")


# --- report --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory, embeddings):
    z, z_pair, _ = embeddings
    root = tmp_path_factory.mktemp("runs")
    alpha, beta = root / "alpha", root / "beta"
    (alpha / "plots").mkdir(parents=True)
    beta.mkdir()
    (alpha / "config.json").write_text(json.dumps({"method": "smi", "data": {"name": "cifar10"}, "seed": 42,
                                                   "comment": MALICIOUS}))
    (alpha / "environment.json").write_text(json.dumps({"versions": {"torch": "2.3", "python": "3.11"}, "device": "cpu"}))
    (alpha / "metrics.json").write_text(json.dumps({"knn_top1": 0.61, "linear_top1": 0.70, "loss": 1.5,
                                                    "geometry": {"effective_rank": 20.5},
                                                    "warnings": ["Collapse: every row is the same"]}))
    _write_metrics_jsonl(alpha / "metrics.jsonl")
    Image.new("RGB", (600, 400), (255, 0, 0)).save(alpha / "plots" / "calibration_red.png")
    plots.plot_feature_std(g.per_dimension_std(z), alpha / "plots" / "feature_std.png")
    all_deg, pos_deg = g.pair_angles(z, z_pair)
    plots.plot_angles(all_deg, pos_deg, alpha / "plots" / "pairwise_angles.png")
    (beta / "config.yaml").write_text("method: barlow_twins\ndata:\n  name: cifar10\nseed: 1337\n")
    (beta / "metrics.json").write_text(json.dumps({"knn_top1": 0.66, "linear_top1": 0.68, "loss": 2.0}))
    return alpha, beta


@pytest.fixture(scope="module")
def report(runs) -> Path:
    return write_report(list(runs), runs[0].parent / "out" / "report.html", title="Test <report>")


def test_report_embeds_every_image_as_a_data_uri(report):
    text = report.read_text()
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 4  # training curves drawn from metrics.jsonl + 3 PNGs in plots/
    for uri in sources:
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert "Training curves (drawn from metrics.jsonl)" in text and "Calibration red" in text
    assert not re.search(r'(href|src)="(?!data:)', text) and "<link" not in text and "<script" not in text


def test_report_metrics_table_has_runs_as_columns_and_bold_best(report):
    text = report.read_text()
    assert "<th>alpha</th><th>beta</th>" in text
    assert re.search(r"<th>knn_top1</th><td[^>]*>0\.61</td><td class=\"num best\">0\.66</td>", text)
    assert re.search(r"<th>linear_top1</th><td class=\"num best\">0\.7</td>", text)
    assert re.search(r"<th>loss</th><td class=\"num best\">1\.5</td>", text)  # lower is better
    assert "<th>geometry/effective_rank</th>" in text
    assert "barlow_twins" in text and "1337" in text and "cifar10" in text


def test_report_escapes_text_and_shows_warnings_and_notes(report):
    text = report.read_text()
    assert MALICIOUS not in text and "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in text
    assert "Test &lt;report&gt;" in text
    assert 'class="warn"' in text and "Collapse: every row is the same" in text
    assert "No environment.json" in text and "No plots/ folder" in text


def test_report_survives_broken_files_but_not_a_missing_run(tmp_path):
    run = tmp_path / "broken"
    (run / "plots").mkdir(parents=True)
    (run / "metrics.json").write_text("{not json")
    (run / "config.yaml").write_text("- just\n- a list\n")
    (run / "plots" / "fake.png").write_text("not a png")
    text = write_report([run], tmp_path / "r.html").read_text()
    assert "metrics.json could not be read" in text and "does not hold a mapping" in text
    assert "fake.png is not a PNG" in text
    with pytest.raises(ValueError, match="does_not_exist"):
        write_report([run, tmp_path / "does_not_exist"], tmp_path / "r.html")
    with pytest.raises(ValueError, match="empty"):
        write_report([], tmp_path / "r.html")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed: apt-get install chromium")
    shot = tmp_path / "shot.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,3000", f"--screenshot={shot}",
               "--dump-dom", report.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<table") >= 2 and dom.count("<img") == 4 and "<th>knn_top1</th>" in dom
    rgb = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(np.uint32)
    packed = rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]
    assert len(np.unique(packed)) > 50  # not blank: text, tables and plots in many colours
    assert (packed == 0xFF0000).sum() > 20_000  # the solid red PNG was decoded and drawn
