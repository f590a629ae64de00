"""Equal-budget pretraining runs shared by the benchmarks: a test-split kNN probe the loop calls on
its logged steps (its own time not counted), a CPU recipe run for a fixed number of steps, a pilot
that measures a method's process CPU-seconds per step, and interpolation of a probe curve."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from infomax import config as C
from infomax.engine.monitors import embed
from infomax.engine.pretrain import pretrain
from infomax.eval.knn import weighted_knn


class TestProbe:
    """A watch for the loop: kNN top-1 on the test split every `every` steps, against CPU time."""

    def __init__(self, train, test, every: int, linear_at: tuple[int, ...] = (), saved=None):
        """`linear_at`: steps whose probe also fits the linear probe; `saved(points)`: called after each probe."""
        self.train, self.test, self.every, self.linear_at, self.saved = train, test, every, set(linear_at), saved
        self.bank = np.sort(np.random.default_rng(0).permutation(len(train))[:10_000])
        self.points, self.probe_cpu, self.probe_wall = [], 0.0, 0.0
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def resume_from(self, points: list[dict], step: int) -> None:
        """Go on from a checkpoint at `step`: the points up to it are kept, the clocks continue from its point."""
        self.points = [p for p in points if p["step"] <= step]
        last = self.points[-1] if self.points else {"cpu_s": 0.0, "wall_s": 0.0}
        self.cpu0, self.wall0 = time.process_time() - last["cpu_s"], time.perf_counter() - last["wall_s"]
        self.probe_cpu = self.probe_wall = 0.0

    def features(self, method) -> tuple[torch.Tensor, torch.Tensor]:
        """(bank, test) features of the encoder in eval mode on the plain view."""
        was = method.training
        method.eval()
        bank = embed(method, self.train.images[self.bank], 32, "cpu")
        query = embed(method, self.test.images, 32, "cpu")
        method.train(was)
        return bank, query

    def score(self, method) -> float:
        bank, query = self.features(method)
        labels = torch.from_numpy(self.train.labels[self.bank])
        return weighted_knn(bank, labels, query, torch.from_numpy(self.test.labels), k=20, temperature=0.07).accuracy["top1"]

    def record(self, method, step: int) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        bank, query = self.features(method)
        labels = torch.from_numpy(self.train.labels[self.bank])
        point = {"step": step, "cpu_s": cpu - self.cpu0 - self.probe_cpu, "wall_s": wall - self.wall0 - self.probe_wall,
                 "knn_top1": weighted_knn(bank, labels, query, torch.from_numpy(self.test.labels), k=20, temperature=0.07).accuracy["top1"]}
        if step in self.linear_at:
            from infomax.eval.linear import linear_probe

            point["linear_top1"] = linear_probe(bank, labels, query, torch.from_numpy(self.test.labels)).accuracy["top1"]
        self.points = [p for p in self.points if p["step"] != step] + [point]  # a step redone after a resume replaces its point
        self.probe_cpu += time.process_time() - cpu
        self.probe_wall += time.perf_counter() - wall
        if self.saved:
            self.saved(self.points)
        print(f"  step {step}: kNN {point['knn_top1']:.2f}" + (f", linear {point['linear_top1']:.2f}" if "linear_top1" in point else "")
              + f" at {point['cpu_s']:.0f} CPU-s", flush=True)

    def __call__(self, loop, terms) -> dict:
        if loop.step % self.every == 0 or loop.step == loop.schedule.total_steps:
            self.record(loop.method, loop.step)
        return {}


def config_for(method: str, seed: int, steps: int | None, data_root: str, sets: tuple[str, ...] = (),
               checkpoint_every: int = 10**9) -> C.TrainConfig:
    tree = C.load_recipe(f"{method}-cpu")
    for assignment in sets:
        C.set_value(tree, assignment)
    tree["data"] = {**tree.get("data", {}), "dataset": "cifar10", "data_root": data_root}
    tree["run"] = {**tree.get("run", {}), "seed": seed, "knn_every": 0, "log_every": 10, "checkpoint_every": checkpoint_every,
                   "progress": False}
    tree["schedule"] = {**tree.get("schedule", {}), "epochs": 1000}
    if steps:
        tree["schedule"]["max_steps"] = steps
        tree["schedule"]["warmup_steps"] = max(1, steps // 10)
    return C.build_config(tree)


def pilot_cpu_per_step(method: str, work: Path, data_root: str, sets: tuple[str, ...] = ()) -> float:
    marks = {}

    def mark(loop, terms):
        marks[loop.step] = time.process_time()
        return {}

    pretrain(config_for(method, 0, 30, data_root, sets), work / f"pilot-{method}", overwrite=True, watch=(mark,))
    return (marks[30] - marks[10]) / 20


def at_time(curve: list[dict], cpu_s: float, axis: str = "cpu_s") -> float:
    """kNN top-1 linearly interpolated at `cpu_s` of training (or at a step, with axis="step")."""
    return float(np.interp(cpu_s, [p[axis] for p in curve], [p["knn_top1"] for p in curve]))
