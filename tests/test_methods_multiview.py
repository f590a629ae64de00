"""BYOL, SimSiam, SwAV, MIRA and HyDeS (methods/): each step is its paper's objective on its own heads,
targets carry no gradient, multi-crop runs one forward per view size, and bad settings are refused."""
import pytest
import torch
import torch.nn.functional as F

import infomax.objectives as O
from infomax import config as C
from infomax import methods
from infomax.assign import mira, sinkhorn
from infomax.data.views import get_view_set, make_views
from infomax.methods.base import Teacher, TeacherSettings, by_size
from infomax.models import build_encoder

HEADS = {"byol": {"predictor_hidden": 8}, "simsiam": {"predictor_hidden": 8},
         "swav": {"num_prototypes": 7}, "mira": {"num_prototypes": 7}, "hydes": {}, "lejepa": {"slices": 64}}


def build(name, **settings):
    torch.manual_seed(0)
    return methods.build(name, build_encoder("convnet", width=4), projector_hidden=16, projector_out=12,
                         **{**HEADS[name], **settings})


def views(n=8, local=2, seed=0):
    images = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return make_views(images, get_view_set("multicrop", 32, n_local=local, local_size=16), torch.Generator().manual_seed(seed))


def heads(method, x):
    return method.projector(method.encoder(x).pooled)


def test_byol_is_eq2_against_the_teacher_and_the_teacher_starts_as_the_student():
    method, v = build("byol").eval(), views()[:2]
    z = [heads(method, x) for x in v]
    expected = sum(2 - 2 * F.cosine_similarity(method.predictor(z[i]), z[1 - i], dim=1).mean() for i in (0, 1))
    torch.testing.assert_close(method({"views": v})["loss"], expected)
    assert not any(p.requires_grad for p in method.teacher.parameters())


def test_simsiam_is_the_symmetrised_negative_cosine():
    method, v = build("simsiam").eval(), views()[:2]
    z = [heads(method, x) for x in v]
    expected = -(F.cosine_similarity(method.predictor(z[0]), z[1], dim=1).mean()
                 + F.cosine_similarity(method.predictor(z[1]), z[0], dim=1).mean()) / 2
    torch.testing.assert_close(method({"views": v})["loss"], expected)


def test_bootstrap_objectives_closed_forms_and_stop_gradient():
    a = torch.randn(6, 5)
    assert O.byol(a, a, a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert O.byol(a, a, -a, -a).item() == pytest.approx(8.0, abs=1e-5)  # both pairs opposite: 2 x (2 + 2)
    assert O.byol(a, -a, -a, a).item() == pytest.approx(0.0, abs=1e-6)  # p_a predicts t_b, p_b predicts t_a
    assert O.simsiam(a, a, a, a).item() == pytest.approx(-1.0, abs=1e-6)
    target = torch.randn(6, 5, requires_grad=True)
    prediction = torch.randn(6, 5, requires_grad=True)
    (O.byol(prediction, prediction, target, target) + O.simsiam(prediction, prediction, target, target)).backward()
    assert target.grad is None and prediction.grad.abs().sum() > 0


def unit_scores(method, x):
    return method.prototypes(F.normalize(heads(method, x), dim=1))


def test_swav_codes_are_sinkhorn_of_the_global_crops_predicted_by_every_crop():
    method, v = build("swav").eval(), views(local=2)
    terms = method({"views": v})
    scores = [unit_scores(method, x) for x in v]
    codes = [sinkhorn(s, 0.05, 3) for s in scores[:2]]
    torch.testing.assert_close(terms["_targets"], torch.stack(codes))
    torch.testing.assert_close(terms["loss"], O.swapped_prediction(codes, scores, 0.1))


def test_mira_targets_are_the_fixed_point_on_the_teacher_scores():
    method, v = build("mira", iters=12).eval(), views(local=1)
    with torch.no_grad():
        for p in method.teacher.parameters():  # a teacher unlike its student (head too): targets come from the teacher
            p.add_(0.05 * torch.randn_like(p))
    terms = method({"views": v})
    teacher = [method.teacher["prototypes"](F.normalize(method.teacher["projector"](method.teacher["encoder"](x).pooled), dim=1))
               for x in v[:2]]
    targets = [mira(t, 0.225, 2 / 3, 12) for t in teacher]
    torch.testing.assert_close(terms["_targets"], torch.stack(targets))
    torch.testing.assert_close(terms["loss"], O.swapped_prediction(targets, [unit_scores(method, x) for x in v], 0.1))
    own = build("mira", iters=12, ema=False).eval()
    assert own.teacher is None
    torch.testing.assert_close(own({"views": v})["_targets"][0], mira(unit_scores(own, v[0]), 0.225, 2 / 3, 12))


@pytest.mark.parametrize("teacher_head", ["shared", "ema"])
def test_mira_teacher_after_a_step_is_the_authors_update(teacher_head):
    """github.com/movinghoon/MIRA train.py, Model._update_ema_params: every teacher parameter becomes
    m t + (1 - m) s, then (their "head is shared") the head is overwritten with the student's."""
    method = build("mira", teacher_head=teacher_head)
    with torch.no_grad():
        for p in method.parameters():  # a student that moved away from its teacher
            p.add_(0.1 * torch.randn_like(p))
    before = {k: v.clone() for k, v in method.teacher.ema.module.state_dict().items()}
    student = {k: v.clone() for k, v in torch.nn.ModuleDict(method.student()).state_dict().items()}
    method.on_step_end(0, 10)
    m = 0.99  # cosine_momentum(0, 10) from base 0.99: the paper's Sec. 4.1 start
    after = method.teacher.ema.module.state_dict()
    for name, value in after.items():
        if name == "prototypes.weight" and teacher_head == "shared":
            expected = student[name]
        elif name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            expected = student[name]  # buffers are copied (models/ema.py)
        else:
            expected = m * before[name] + (1 - m) * student[name]
        torch.testing.assert_close(value, expected, msg=name)
    # the default is the authors' code's choice; the paper (Sec. 4.1) says only "EMA network"
    assert C.build_config({"method": {"name": "mira"}}).method.teacher_head == "shared"


def test_mira_anneals_beta_over_optimiser_steps_when_asked():
    method = build("mira", beta_start=0.75)
    assert float(method.beta_now) == 0.75 and "beta_now" in method.state_dict()  # saved: a resume goes on from there
    method.on_step_end(4, 10)
    assert float(method.beta_now) == pytest.approx(2 / 3 - (2 / 3 - 0.75) * (1 + torch.cos(torch.tensor(torch.pi / 2)).item()) / 2)
    method.on_step_end(9, 10)
    assert float(method.beta_now) == pytest.approx(2 / 3)
    fixed = build("mira")
    fixed.on_step_end(4, 10)
    assert float(fixed.beta_now) == pytest.approx(2 / 3)


def test_hydes_every_crop_is_an_anchor_of_its_image():
    method, v = build("hydes", kappa=2.0).eval(), views(local=3)
    z = torch.cat([heads(method, x) for x in v])
    images = torch.arange(8).repeat(len(v))
    terms = method({"views": v})
    expected = O.hydes(z, images, kappa=2.0, return_terms=True)
    for key in ("loss", "global_entropy", "local_entropy"):
        torch.testing.assert_close(terms[key], expected[key])


def test_multicrop_runs_one_forward_per_view_size():
    method, v = build("hydes").eval(), views(local=6)
    calls = []
    hook = method.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    method({"views": v})
    hook.remove()
    assert [tuple(s) for s in calls] == [(16, 3, 32, 32), (48, 3, 16, 16)]
    with torch.no_grad():
        one_by_one = [heads(method, x) for x in v]
        batched = by_size(v, lambda x: heads(method, x))
    for a, b in zip(batched, one_by_one):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(HEADS))
def test_gradients_reach_the_student_only(name):
    method = build(name, **({"freeze_prototypes_epochs": 0} if name in ("swav", "mira") else {}))
    method({"views": views(local=2 if name in ("swav", "mira", "hydes", "lejepa") else 0)})["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.encoder.parameters() if p.ndim > 1)
    teacher = getattr(method, "teacher", None)
    assert teacher is None or all(p.grad is None for p in teacher.parameters())


def test_prototypes_take_no_step_in_their_frozen_epochs():
    method = build("swav")
    method.on_epoch_start(0)
    method({"views": views()})["loss"].backward()
    method.on_before_optimiser_step("main")
    assert method.prototypes.weight.grad is None and method.projector[0].weight.grad is not None
    method.on_epoch_start(1)
    method({"views": views()})["loss"].backward()
    method.on_before_optimiser_step("main")
    assert method.prototypes.weight.grad is not None


def test_the_swav_queue_joins_the_sinkhorn_batch_once_full():
    method = build("swav", queue_length=16, num_prototypes=20).eval()
    v = views()
    method({"views": v})
    assert int(method.queued) == 8
    plain = method.codes(unit_scores(method, v[0]), 0)
    torch.testing.assert_close(plain, sinkhorn(unit_scores(method, v[0]), 0.05, 3))  # half full: not used yet
    method({"views": views(seed=1)})
    scores = unit_scores(method, v[0])
    with_queue = sinkhorn(torch.cat([scores, method.prototypes(method.queue[0])]), 0.05, 3)[:8]
    torch.testing.assert_close(method.codes(scores, 0), with_queue)
    assert (with_queue - sinkhorn(scores, 0.05, 3)).abs().max() > 1e-3


def test_bad_settings_name_the_setting():
    cases = {("hydes", "kappa", 0.0): "method.kappa", ("hydes", "kappa", -1.0): "method.kappa",
             ("mira", "beta", 1.0): "method.beta", ("mira", "init", "uniform"): "method.init",
             ("mira", "momentum_base", 1.0): "teacher without a student", ("byol", "momentum_final", 0.5): "momentum_final",
             ("swav", "epsilon", 0.0): "method.epsilon", ("swav", "num_prototypes", 1): "method.num_prototypes"}
    for (name, key, value), message in cases.items():
        with pytest.raises(C.ConfigError, match=message):
            C.build_config({"method": {"name": name, key: value}})
    with pytest.raises(ValueError, match="num_prototypes.*queue_length"):
        build("swav", num_prototypes=300).check_batch(256)
    build("swav", num_prototypes=300, queue_length=64).check_batch(256)
    build("mira", num_prototypes=300).check_batch(256)  # MIRA has no equipartition: K > B is fine
    with pytest.raises(ValueError, match="local_size"):
        get_view_set("multicrop", 32, local_size=48)
    frozen = build_encoder("convnet", width=4).requires_grad_(False)
    with pytest.raises(ValueError, match="student"):
        Teacher({"encoder": frozen}, TeacherSettings())


class Batches:
    """`per_epoch` fixed multi-crop batches per epoch, for the loop."""

    def __init__(self, per_epoch, local=2):
        self.per_epoch, self.local = per_epoch, local

    def __len__(self):
        return self.per_epoch

    def epoch(self, epoch, skip=0):
        for i in range(skip, self.per_epoch):
            yield {"views": views(local=self.local, seed=100 * epoch + i)}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def run_loop(method, tmp_path, epochs, per_epoch, watch, start_step=0):
    from lightning.fabric import Fabric

    from infomax.config import OptimConfig, RunConfig
    from infomax.engine.loop import Loop, Schedule
    from infomax.engine.optim import build_optimiser

    fabric = Fabric(accelerator="cpu", devices=1)
    tmp_path.mkdir(parents=True, exist_ok=True)
    optimiser = build_optimiser(method.stage_parameters("main"), OptimConfig(name="sgd", lr=0.1, weight_decay=1e-2))
    model, optimiser = fabric.setup(method, optimiser)
    loop = Loop(fabric, model, {"main": optimiser}, Batches(per_epoch), Schedule(epochs * per_epoch, 0, 0.0, "constant", 1.0),
                RunConfig(log_every=1, progress=False, checkpoint_every=10**6), out=tmp_path, watch=(watch,))
    loop.step = start_step
    loop.fit()


def test_the_teacher_momentum_counts_optimiser_steps_over_the_whole_run(tmp_path):
    from infomax.models import cosine_momentum

    method, seen = build("byol"), []
    run_loop(method, tmp_path, epochs=3, per_epoch=2, watch=lambda loop, terms: seen.append(loop.method.teacher.momentum) or {})
    assert seen == pytest.approx([cosine_momentum(k, 6) for k in range(6)])  # not per epoch: one ramp over all 6 steps
    assert seen[0] == pytest.approx(0.99) and 0.99 < seen[3] < seen[-1] < 1.0


def test_prototypes_stay_put_through_the_first_epoch_and_move_after(tmp_path):
    method, seen = build("swav", num_prototypes=7), []
    run_loop(method, tmp_path, epochs=2, per_epoch=2,
             watch=lambda loop, terms: seen.append(loop.method.prototypes.weight.detach().clone()) or {})
    start = build("swav", num_prototypes=7).prototypes.weight
    assert torch.equal(seen[0], start) and torch.equal(seen[1], start)  # no gradient, momentum or weight decay step
    assert not torch.equal(seen[2], start)
    resumed, after = build("swav", num_prototypes=7), []
    run_loop(resumed, tmp_path / "resumed", epochs=2, per_epoch=2, start_step=3,  # mid-epoch 1, as after a resume
             watch=lambda loop, terms: after.append(loop.method.prototypes.weight.detach().clone()) or {})
    assert resumed.epoch == 1 and not torch.equal(after[0], start)


@pytest.mark.parametrize("name", ["swav", "mira"])
def test_a_step_under_bf16_autocast_with_blown_up_weights_stays_finite(name):
    method = build(name, freeze_prototypes_epochs=0)
    with torch.no_grad():  # what a far too high lr leaves behind: huge weights everywhere
        for p in method.parameters():
            p.mul_(1e4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = method({"views": views()})
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and torch.isfinite(terms["_targets"]).all()
    torch.testing.assert_close(terms["_targets"].float().sum(-1), torch.ones(2, 8), atol=2e-2, rtol=0)
