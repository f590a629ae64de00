"""benchmarks/e2mc_weights.py chooses E2MC's weights without the test split: its validation rows are disjoint from
the probes' labelled pool, the same for every run, and the choice is among E2MC rows only (the base loss may score
higher, and then the table says so beside the chosen point)."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import e2mc_weights as W  # noqa: E402


def test_validation_rows_are_disjoint_from_the_pool_and_fixed():
    pool, held = W.validation_split(1000, 200)
    assert len(held) == 200 and len(pool) == 800
    assert not np.intersect1d(pool, held).size and np.array_equal(np.union1d(pool, held), np.arange(1000))
    assert np.array_equal(held, W.validation_split(1000, 200)[1])
    assert not np.array_equal(held, np.arange(200))  # seeded draw, not the first rows


@pytest.mark.parametrize("held", [0, 501])
def test_a_validation_size_beyond_half_the_images_is_refused(held):
    with pytest.raises(SystemExit, match="--validation"):
        W.validation_split(1000, held)


def test_the_choice_is_the_best_e2mc_row_at_1pct_then_knn_never_the_base_loss():
    rows = [dict(addon=None, untouched=False, fewshot_1pct=90.0, knn_top1=90.0),
            dict(addon="e2mc:beta=1,gamma=25", beta=1, gamma=25, fewshot_1pct=50.0, knn_top1=60.0),
            dict(addon="e2mc:beta=0.1,gamma=25", beta=0.1, gamma=25, fewshot_1pct=55.0, knn_top1=40.0),
            dict(addon="e2mc:beta=0.1,gamma=2.5", beta=0.1, gamma=2.5, fewshot_1pct=55.0, knn_top1=45.0)]
    assert W.choose(rows)["gamma"] == 2.5


def test_the_grid_scales_the_paper_weights_and_holds_them():
    assert (1000.0, 100.0) in W.grid("vicreg") and (1.0, 25.0) in W.grid("swav")
    assert len(set(W.grid("swav"))) == 6 and max(W.grid("swav")) == (1.0, 25.0)


def _results(tmp_path, monkeypatch, rows):
    import json
    monkeypatch.setattr(W, "RESULTS", tmp_path)
    (tmp_path / "e2mc_weights_swav.json").write_text(json.dumps({"rows": rows}))


def test_appending_to_rows_scored_over_other_draws_is_refused_and_names_rescore(tmp_path, monkeypatch):
    _results(tmp_path, monkeypatch, [dict(addon=None, untouched=True, knn_top1=1.0, fewshot_1pct=1.0, fewshot_10pct=1.0)])
    monkeypatch.setattr(sys, "argv", ["e2mc_weights.py", "--init", "x", "--base", "swav", "--append"])
    with pytest.raises(SystemExit, match="--rescore"):
        W.main()


def test_rescoring_without_a_saved_encoder_names_the_work_folder(tmp_path, monkeypatch):
    rows = [dict(addon=None, untouched=False, knn_top1=1.0, fewshot_1pct=1.0, fewshot_10pct=1.0, draws=10, minutes=1.0)]
    _results(tmp_path, monkeypatch, rows)
    from types import SimpleNamespace
    scores = dict(knn_top1=2.0, fewshot_1pct=2.0, fewshot_10pct=2.0, draws=10)
    monkeypatch.setattr(W, "score", lambda encoder, *a: scores if encoder == "x" else pytest.fail("scored without an encoder"))
    monkeypatch.setattr(W, "config_for", lambda *a: SimpleNamespace(data=SimpleNamespace(resolution=32)))
    monkeypatch.setattr(W, "load_dataset", lambda *a: object())
    monkeypatch.setattr(sys, "argv", ["e2mc_weights.py", "--init", "x", "--base", "swav", "--append", "--rescore",
                                      "--work", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="no saved encoder for 'base loss only'"):
        W.main()


def test_rescore_needs_append(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["e2mc_weights.py", "--init", "x", "--base", "swav", "--rescore"])
    with pytest.raises(SystemExit, match="add --append"):
        W.main()


def test_a_rescore_redoes_only_the_1pct_column_and_keeps_the_rest(tmp_path, monkeypatch):
    from types import SimpleNamespace
    points = [dict(addon=None, untouched=True, paper=False), dict(addon=None, untouched=False, paper=False)] + [
        dict(addon=f"e2mc:beta={b:g},gamma={g:g}", untouched=False, beta=b, gamma=g, paper=(b, g) == (1.0, 25.0))
        for b, g in W.grid("swav")]
    rows = [{**p, "knn_top1": 60.0 + i, "fewshot_1pct": 50.0, "fewshot_10pct": 55.0, "minutes": 3.0}
            for i, p in enumerate(points)]
    _results(tmp_path, monkeypatch, rows)
    for row in rows[1:]:
        out = tmp_path / "work" / W.label(row).replace(" ", "_").replace(",", "").replace("(the_paper's)", "").strip("_+")
        out.mkdir(parents=True)
        (out / "encoder.safetensors").write_bytes(b"")
    asked = []
    monkeypatch.setattr(W, "score", lambda enc, train, res, held, draws, columns: asked.append(columns) or
                        {"fewshot_1pct": 51.0 + draws, "draws": draws})
    monkeypatch.setattr(W, "config_for", lambda *a: SimpleNamespace(data=SimpleNamespace(resolution=32)))
    monkeypatch.setattr(W, "load_dataset", lambda *a: object())
    monkeypatch.setattr(sys, "argv", ["e2mc_weights.py", "--init", "x", "--base", "swav", "--append", "--rescore",
                                      "--draws", "4", "--work", str(tmp_path / "work")])
    W.main()
    import json
    after = json.loads((tmp_path / "e2mc_weights_swav.json").read_text())
    assert asked == [("fewshot_1pct",)] * len(rows)
    assert [r["knn_top1"] for r in after["rows"]] == [r["knn_top1"] for r in rows]
    assert {(r["fewshot_1pct"], r["fewshot_10pct"], r["draws"], r["minutes"]) for r in after["rows"]} == {(55.0, 55.0, 4, 3.0)}
    assert "--rescore" not in after["argv"] and "--append" not in after["argv"]
    assert "mean over 4 label draws" in (tmp_path / "e2mc_weights_swav.md").read_text()
