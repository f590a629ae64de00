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
