"""LARS against its formula, the bias/norm exclusion, and the step-driven schedule."""
import math

import torch

from infomax.config import OptimConfig
from infomax.engine.optim import build_optimiser, lr_factor, set_lr


def test_lars_step_is_the_formula_and_biases_are_plain_sgd():
    layer = torch.nn.Linear(4, 3)
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.weight.grad, layer.bias.grad = torch.randn(3, 4), torch.randn(3)
    gw, gb = layer.weight.grad.clone(), layer.bias.grad.clone()
    opt = build_optimiser(list(layer.parameters()), OptimConfig(name="lars", lr=0.5, weight_decay=0.1, momentum=0.9, lars_eta=0.02))
    opt.step()
    g = gw + 0.1 * w0
    expected = w0 - 0.5 * (0.02 * w0.norm() / g.norm()) * g
    torch.testing.assert_close(layer.weight.detach(), expected)
    torch.testing.assert_close(layer.bias.detach(), b0 - 0.5 * gb)  # no decay, no trust ratio


def test_adamw_and_sgd_exclude_biases_and_norms_from_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    for name in ("adamw", "sgd"):
        opt = build_optimiser(list(model.parameters()), OptimConfig(name=name, lr=0.1, weight_decay=0.05))
        decays = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
        assert decays[id(model[0].weight)] == 0.05
        assert decays[id(model[0].bias)] == decays[id(model[1].weight)] == decays[id(model[1].bias)] == 0.0


def test_schedule_warms_up_linearly_then_follows_a_cosine_or_stays():
    assert lr_factor(0, 100, 10, 0.001, "cosine", 0.0) == 0.001
    assert math.isclose(lr_factor(5, 100, 10, 0.0, "cosine", 0.0), 0.5)
    assert lr_factor(10, 100, 10, 0.0, "cosine", 0.0) == 1.0
    assert math.isclose(lr_factor(55, 100, 10, 0.0, "cosine", 0.1), 0.1 + 0.9 * 0.5)
    assert math.isclose(lr_factor(100, 100, 10, 0.0, "cosine", 0.1), 0.1)
    assert lr_factor(80, 100, 10, 0.0, "constant", 0.0) == 1.0
    opt = build_optimiser([torch.nn.Parameter(torch.ones(2, 2))], OptimConfig(name="sgd", lr=0.4))
    assert set_lr(opt, 0.25) == 0.1 and set_lr(opt, 1.0) == 0.4  # from base_lr, not compounded


def _one_lars_step(config: OptimConfig, w0: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    p = torch.nn.Parameter(w0.clone())
    p.grad = grad.clone()
    build_optimiser([p], config).step()
    return p.detach()


def test_lars_sum_form_is_the_lars_paper_eq6_with_solo_learns_eps():
    w0, grad = torch.randn(5, 3), torch.randn(5, 3)
    step = _one_lars_step(OptimConfig(name="lars", lr=0.5, weight_decay=0.1, lars_eta=0.02, lars_norm="sum"), w0, grad)
    local_lr = 0.02 * w0.norm() / (grad.norm() + 0.1 * w0.norm() + 1e-8)  # You et al. Eq. 6 (+ solo-learn's eps)
    torch.testing.assert_close(step, w0 - 0.5 * local_lr * (grad + 0.1 * w0))


def test_lars_clip_caps_the_adaptive_lr_at_the_scheduled_lr():
    w0, grad = torch.randn(5, 3), torch.randn(5, 3)
    for lr in (1e-3, 10.0):  # the ratio is below lr in one case and above it in the other
        config = OptimConfig(name="lars", lr=lr, weight_decay=1e-4, lars_eta=0.02, lars_norm="sum", lars_clip=True)
        local_lr = 0.02 * w0.norm() / (grad.norm() + 1e-4 * w0.norm() + 1e-8)
        effective = min(float(local_lr), lr)  # lr * min(local_lr / lr, 1)
        torch.testing.assert_close(_one_lars_step(config, w0, grad), w0 - effective * (grad + 1e-4 * w0))
    unclipped = _one_lars_step(OptimConfig(name="lars", lr=1e-3, weight_decay=1e-4, lars_eta=0.02, lars_norm="sum"), w0, grad)
    clipped = _one_lars_step(OptimConfig(name="lars", lr=1e-3, weight_decay=1e-4, lars_eta=0.02, lars_norm="sum",
                                         lars_clip=True), w0, grad)
    assert (w0 - clipped).norm() > 10 * (w0 - unclipped).norm()  # clipped: min(ratio, lr), not lr x ratio (ratio << 1)


def test_lars_sum_form_leaves_a_zero_tensor_to_plain_sgd():
    step = _one_lars_step(OptimConfig(name="lars", lr=0.5, weight_decay=0.1, lars_norm="sum"), torch.zeros(2, 2),
                          torch.ones(2, 2))
    torch.testing.assert_close(step, torch.full((2, 2), -0.5))
