"""engine/loop.py and engine/optim.py's set_lr against closed forms. The method here has a loss linear in
its weights, sum(w * a) + sum(b * c), so its gradient is (a, c) at every step and every weight after a
plain-SGD run is known by hand: that pins the lr of every parameter group at every step, gradient
clipping by total norm, and that a non-finite step never reaches the weights or the optimiser's moments."""
import json
import math

import pytest
import torch
from lightning.fabric import Fabric
from torch import nn

from infomax.config import RunConfig
from infomax.engine.loop import Loop, NonFiniteLoss, Schedule
from infomax.methods.base import Steps

RUN = RunConfig(log_every=1, checkpoint_every=10**6, knn_every=0, progress=False)


class LinearLoss(Steps):
    """loss = sum(w * a) + sum(b * c) + the batch's "poison" (0, or NaN for a bad loss); with "bad_gradient"
    the loss stays finite but its gradient is NaN (d sqrt(|x|) / dx at 0). Snapshots after every step."""

    def __init__(self, a: torch.Tensor, c: torch.Tensor):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.randn(a.shape)), nn.Parameter(torch.randn(c.shape))
        self.register_buffer("a", a)
        self.register_buffer("c", c)
        self.optimiser, self.after_step, self.step_calls, self.epoch_starts = None, [], [], []

    def training_step(self, batch, stage="main", carry=None):
        loss = (self.w * self.a).sum() + (self.b * self.c).sum() + batch["poison"]
        if batch.get("bad_gradient"):
            loss = loss + (self.w.sum() * 0).abs().sqrt()
        return {"loss": loss}

    def on_step_end(self, step, total_steps):
        moments = [s["momentum_buffer"].clone() for s in self.optimiser.state.values()] if self.optimiser else []
        self.after_step.append((self.w.detach().clone(), self.b.detach().clone(), moments))
        self.step_calls.append((step, total_steps))

    def on_epoch_start(self, epoch):
        self.epoch_starts.append(epoch)


class Batches:
    """`per_epoch` batches per epoch; the batch at global step `poisoned` carries a NaN (or a NaN gradient)."""

    def __init__(self, per_epoch: int, poisoned: int | None = None, bad_gradient: bool = False):
        self.per_epoch, self.poisoned, self.bad_gradient, self.calls = per_epoch, poisoned, bad_gradient, []

    def __len__(self):
        return self.per_epoch

    def epoch(self, epoch, skip=0):
        self.calls.append((epoch, skip))
        for i in range(skip, self.per_epoch):
            bad = epoch * self.per_epoch + i == self.poisoned
            poison = torch.tensor(0.0 if not bad or self.bad_gradient else math.nan)
            yield {"poison": poison, "bad_gradient": bad and self.bad_gradient}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def sgd_groups(method, w_lr: float, b_lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
    """Plain SGD with w and b in two groups of different base lr."""
    optimiser = torch.optim.SGD([{"params": [method.w], "lr": w_lr}, {"params": [method.b], "lr": b_lr}],
                                lr=w_lr, momentum=momentum, weight_decay=weight_decay)
    for group in optimiser.param_groups:
        group["base_lr"] = group["lr"]
    method.optimiser = optimiser
    return optimiser


def make_loop(tmp_path, method, optimiser, batches, schedule, clip_grad=None, start_step=0) -> Loop:
    fabric = Fabric(accelerator="cpu", devices=1)
    model, wrapped = fabric.setup(method, optimiser)
    loop = Loop(fabric, model, {"main": wrapped}, batches, schedule, RUN, tmp_path, clip_grad=clip_grad)
    loop.step = start_step
    return loop


def gradients(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(3, 4, generator=g), 3 * torch.randn(3, generator=g)


def factor_by_hand(step: int) -> float:
    """Warm-up over 2 steps from 0.1, then a cosine over the other 4 steps down to 0.05."""
    if step < 2:
        return 0.1 + 0.9 * step / 2
    return 0.05 + 0.95 * (1 + math.cos(math.pi * (step - 2) / 4)) / 2


def test_every_param_group_steps_with_its_base_lr_times_the_schedule(tmp_path):
    a, c = gradients()
    method = LinearLoss(a, c)
    w0, b0 = method.w.detach().clone(), method.b.detach().clone()
    optimiser = sgd_groups(method, w_lr=0.1, b_lr=0.02)
    make_loop(tmp_path, method, optimiser, Batches(3), Schedule(6, 2, 0.1, "cosine", 0.05)).fit()
    factors = [factor_by_hand(k) for k in range(6)]
    for k, (w, b, _) in enumerate(method.after_step):  # w_k+1 = w_k - lr_k a, in each group with its own lr
        torch.testing.assert_close(w, w0 - 0.1 * sum(factors[: k + 1]) * a)
        torch.testing.assert_close(b, b0 - 0.02 * sum(factors[: k + 1]) * c)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in logged if "lr" in r] == pytest.approx([0.1 * f for f in factors])


@pytest.mark.parametrize("limit_over_norm", [0.2, 2.0])
def test_clip_grad_scales_the_total_norm_to_the_limit_and_keeps_the_direction(tmp_path, limit_over_norm):
    a, c = gradients(1)
    total = torch.cat([a.flatten(), c]).norm()
    method = LinearLoss(a, c)
    w0, b0 = method.w.detach().clone(), method.b.detach().clone()
    optimiser = sgd_groups(method, w_lr=1.0, b_lr=1.0)
    limit = float(limit_over_norm * total)
    make_loop(tmp_path, method, optimiser, Batches(1), Schedule(1, 0, 1.0, "constant", 1.0), clip_grad=limit).fit()
    scale = min(1.0, limit / float(total))  # one factor for all parameters: the total norm, not each one's
    w, b, _ = method.after_step[0]
    torch.testing.assert_close(w0 - w, scale * a)
    torch.testing.assert_close(b0 - b, scale * c)
    assert float(torch.cat([(w0 - w).flatten(), b0 - b]).norm()) == pytest.approx(min(limit, float(total)), rel=1e-5)


@pytest.mark.parametrize("bad_gradient", [False, True], ids=["nan_loss", "nan_gradient"])
def test_a_non_finite_step_leaves_the_weights_and_moments_as_they_were(tmp_path, bad_gradient):
    method = LinearLoss(*gradients())
    optimiser = sgd_groups(method, w_lr=0.1, b_lr=0.1, momentum=0.9, weight_decay=0.1)
    loop = make_loop(tmp_path, method, optimiser, Batches(4, poisoned=2, bad_gradient=bad_gradient),
                     Schedule(4, 0, 1.0, "constant", 1.0))
    with pytest.raises(NonFiniteLoss, match="step 3"):
        loop.fit()
    assert len(method.after_step) == 2  # steps 1 and 2 done, step 3 stopped
    w, b, moments = method.after_step[-1]
    assert torch.equal(method.w.detach(), w) and torch.equal(method.b.detach(), b)
    now = [s["momentum_buffer"] for s in optimiser.state.values()]
    assert len(now) == len(moments) == 2 and all(torch.equal(x, y) for x, y in zip(now, moments))


def test_a_run_resumed_mid_epoch_reads_the_rest_of_that_epoch_then_the_next(tmp_path):
    method, batches = LinearLoss(*gradients()), Batches(2)
    loop = make_loop(tmp_path, method, sgd_groups(method, 0.1, 0.1), batches, Schedule(6, 0, 1.0, "constant", 1.0), start_step=3)
    loop.fit()
    assert batches.calls == [(1, 1), (2, 0)]  # step 3 of 2-batch epochs is the second batch of epoch 1
    assert method.epoch_starts == [1, 2]
    assert method.step_calls == [(3, 6), (4, 6), (5, 6)]  # hooks count optimiser steps over the whole run


class ViewPairs(Batches):
    """`per_epoch` batches of two random 8 x 8 views of 8 images each, the same for a given step."""

    def epoch(self, epoch, skip=0):
        for i in range(skip, self.per_epoch):
            g = torch.Generator().manual_seed(100 * epoch + i)
            yield {"views": [torch.rand(8, 3, 8, 8, generator=g) for _ in range(2)]}


def test_the_ema_teacher_is_the_momentum_weighted_average_of_the_students_steps(tmp_path):
    """BYOL Eq. 1 with the cosine momentum of Sec. 3.2, by hand: t_0 = s_0, t_k+1 = m_k t_k + (1 - m_k) s_k+1,
    m_k = 1 - (1 - base)(cos(pi k / K) + 1) / 2; batch-norm statistics are the student's."""
    from infomax import methods
    from infomax.models import build_encoder

    torch.manual_seed(0)
    byol = methods.build("byol", build_encoder("convnet", width=4), projector_hidden=16, projector_out=8, predictor_hidden=8,
                         momentum_base=0.9)
    student = {**{f"encoder.{k}": v for k, v in byol.encoder.named_parameters()},
               **{f"projector.{k}": v for k, v in byol.projector.named_parameters()}}
    seen = []

    def record(loop, terms):
        teacher = dict(loop.method.teacher.ema.module.named_parameters())
        seen.append(({k: v.detach().clone() for k, v in student.items()}, {k: v.detach().clone() for k, v in teacher.items()},
                     loop.method.teacher.ema.module.projector.state_dict()["1.running_mean"].clone(),
                     byol.projector.state_dict()["1.running_mean"].clone()))
        return {}

    expected = {k: v.detach().clone() for k, v in student.items()}  # t_0 = s_0
    optimiser = torch.optim.SGD(byol.stage_parameters("main"), lr=0.5)
    optimiser.param_groups[0]["base_lr"] = 0.5
    fabric = Fabric(accelerator="cpu", devices=1)
    model, wrapped = fabric.setup(byol, optimiser)
    Loop(fabric, model, {"main": wrapped}, ViewPairs(2), Schedule(4, 0, 1.0, "constant", 1.0), RUN, tmp_path,
         watch=(record,)).fit()
    assert len(seen) == 4
    for k, (after, teacher, teacher_stats, student_stats) in enumerate(seen):
        m = 1 - 0.1 * (math.cos(math.pi * k / 4) + 1) / 2
        expected = {name: m * expected[name] + (1 - m) * after[name] for name in expected}
        for name, value in teacher.items():
            torch.testing.assert_close(value, expected[name], msg=lambda text, name=name, k=k: f"step {k}, {name}: {text}")
        assert torch.equal(teacher_stats, student_stats)
    assert not torch.equal(seen[-1][0]["encoder.features.0.0.weight"], seen[0][0]["encoder.features.0.0.weight"])
