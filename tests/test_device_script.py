"""benchmarks/device.sh's dry run: every part of the GPU benchmark runs for one step on CPU, so the script a
lent device runs once is known to work before the device time is spent (issue 25)."""
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_device_benchmark_runs_every_part_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "device.sh"), "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "device.json").read_text())
    parts = report["parts"]
    assert report["dry_run"] and set(parts) == {"facts", "steps", "overhead", "simclr", "features", "twinturbo"}
    assert not [name for name, part in parts.items() if "failed" in part or "skipped" in part], parts
    from infomax.methods import METHODS

    assert {k.split("/")[1] for k in parts["steps"]["images_per_s"]} == set(METHODS)  # every method's step ran
    assert all(v > 0 for v in parts["steps"]["images_per_s"].values()) and 0 <= parts["simclr"]["knn_top1_test"] <= 100
    assert "DRY RUN" in (tmp_path / "out" / "device.md").read_text()
