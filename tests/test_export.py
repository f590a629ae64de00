"""`infomax export` (models/export.py): each file, loaded back in its target runtime, gives the encoder's
pooled features at any batch size."""
import importlib.util

import numpy as np
import pytest
import torch

from infomax.cli import main
from infomax.models import build_encoder


def reference(encoder_file, x):
    with torch.no_grad():
        return build_encoder(str(encoder_file)).eval()(x).pooled


def test_torchscript_loads_back_and_matches(tmp_path, encoder_file):
    out = tmp_path / "encoder.pt"
    assert main(["export", "--encoder", str(encoder_file), "--format", "torchscript", "--resolution", "16", "--out", str(out)]) == 0
    loaded = torch.jit.load(str(out))
    for n in (1, 5):
        x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(n))
        torch.testing.assert_close(loaded(x), reference(encoder_file, x))


def test_onnx_runs_in_onnxruntime_and_matches(tmp_path, encoder_file):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime checks the ONNX file: pip install onnxruntime")
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript: pip install 'infomax[onnx]'")
    out = tmp_path / "encoder.onnx"
    assert main(["export", "--encoder", str(encoder_file), "--format", "onnx", "--resolution", "16", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out))
    assert [i.name for i in session.get_inputs()] == ["images"]
    for n in (1, 7):  # the batch dimension is dynamic
        x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(n))
        got = session.run(None, {"images": x.numpy()})[0]
        np.testing.assert_allclose(got, reference(encoder_file, x).numpy(), atol=1e-5, rtol=1e-4)


def test_a_missing_exporter_package_names_the_install_line(tmp_path, encoder_file, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    out = tmp_path / "encoder.onnx"
    assert main(["export", "--encoder", str(encoder_file), "--format", "onnx", "--out", str(out)]) == 2
    assert "pip install 'infomax[onnx]'" in capsys.readouterr().err and not out.exists()
    assert main(["export", "--encoder", "no-such-net", "--format", "torchscript", "--out", str(out)]) == 2
    assert not out.exists()
