"""engine/continued.py beyond "it runs": `continue` with a teacher method (BYOL with an add-on, MIRA) trains
the student and its EMA teacher starts from the loaded student and follows it (after one step the teacher
is m * the pretrain run's student + (1 - m) * the student after the step, read from the two runs' files),
except MIRA's prototypes, which the teacher shares with the student;
and the before/after features are those of the encoder in eval mode, leaving its batch-norm statistics
as they were, with and without --train-from."""
import copy

import pytest
import torch
from safetensors.torch import load_file

from infomax import methods
from infomax.cli import main
from infomax.models import build_encoder, save_encoder

SMALL = {"byol": ["method.predictor_hidden=8"], "mira": ["method.num_prototypes=16"]}
HEADS = ["method.projector_hidden=16", "method.projector_out=8"]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "input_mean", "input_std")
SHARED = {"mira": ("prototypes.weight",)}  # trained prototypes train from the first continued step
MOMENTUM = 0.5  # the teacher's momentum at step 0 of 1 is its base: teacher = 0.5 start + 0.5 student


def sets(*assignments: str) -> list[str]:
    return [item for a in assignments for item in ("--set", a)]


def pretrain_run(out, method: str) -> None:
    assert main(["pretrain", "--method", method, "--dataset", "digits", "--batch-size", "32", "--max-steps", "2",
                 *sets("model.options.width=4", "data.resolution=8", "run.knn_every=0", *HEADS, *SMALL[method]),
                 "--out", str(out)]) == 0


def continue_run(init, out, method: str, addons: list[str], *assignments: str) -> None:
    """`infomax continue` without its before/after evaluation (the API the command calls, evaluate=False)."""
    from infomax.engine.continued import continue_pretraining, resolve

    flags = {"data.dataset": "digits", "data.resolution": 8, "optim.batch_size": 32, "schedule.max_steps": 1}
    config = resolve(init=str(init), method=method, recipe=None, addons=addons, sets=[*HEADS, *SMALL[method], *assignments],
                     flags=flags, continued={"lr_scale": 1.0}, out=out, resume=False)
    continue_pretraining(config, out, evaluate=False)


def student_weights(state: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The student's tensors (no teacher), named from the method's parts: encoder.*, projector.*, ..."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and ".teacher." not in f".{k[len(prefix):]}"}


@pytest.mark.parametrize("method, add", [("byol", ["uniformity"]), ("mira", [])])
def test_continue_with_a_teacher_method_trains_and_the_teacher_follows_the_loaded_student(tmp_path, method, add):
    pretrain_run(tmp_path / "pre", method)
    out = tmp_path / "cont"
    continue_run(tmp_path / "pre", out, method, add, f"method.momentum_base={MOMENTUM}")
    start = student_weights(load_file(tmp_path / "pre" / "state.safetensors"), "model/method/")
    state = load_file(out / "state.safetensors")
    prefix = "model/method/base." if add else "model/method/"
    after = student_weights(state, prefix)
    teacher = {k[len(prefix + "teacher.ema.module."):]: v for k, v in state.items() if k.startswith(prefix + "teacher.ema.module.")}
    assert set(teacher) <= set(after) == set(start) and any(k.startswith("projector.") for k in teacher)
    assert any(not torch.equal(start[k], after[k]) for k in after if k.startswith("encoder."))  # the student trained
    for name, value in teacher.items():
        if name.endswith(BUFFERS):  # batch-norm statistics are the student's
            assert torch.equal(value, after[name]), name
        elif name in SHARED.get(method, ()):  # copied from the student after the EMA update (MIRA's teacher_head)
            assert torch.equal(value, after[name]) and not torch.equal(value, start[name]), name
        else:
            expected = MOMENTUM * start[name] + (1 - MOMENTUM) * after[name]
            torch.testing.assert_close(value, expected, msg=lambda m, name=name: f"{name}: {m}")


def batch_norm_state(module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if k.endswith(BUFFERS[:3])}


def trained_looking_encoder():
    """A width-4 ConvNet whose running statistics are its own (not the batch's), in train mode."""
    torch.manual_seed(0)
    encoder = build_encoder("convnet", width=4)
    with torch.no_grad():
        for _ in range(3):
            encoder(torch.rand(32, 3, 8, 8) * 0.3)
    return encoder


@pytest.mark.parametrize("train_from", [None, "block2"])
def test_before_and_after_features_are_the_eval_mode_encoders_and_leave_batch_norm_alone(tmp_path, monkeypatch, train_from):
    from infomax.engine.continued import _Data, _Source, resolve

    monkeypatch.setenv("INFOMAX_CACHE", str(tmp_path / "cache"))
    start = save_encoder(trained_looking_encoder(), tmp_path / "encoder.safetensors")
    continued = {"train_from": train_from, "cached_views": 1, "train_images": 64}
    config = resolve(init=str(start), method="vicreg", recipe=None, addons=[], sets=HEADS,
                     flags={"data.dataset": "digits", "data.resolution": 8, "optim.batch_size": 32},
                     continued={k: v for k, v in continued.items() if v is not None}, out=tmp_path / "run", resume=False)
    data = _Data(config)
    encoder = build_encoder(config.model.backbone)
    reference = copy.deepcopy(encoder).eval()
    source = _Source(config, encoder, data)
    encoder.train()
    stats = batch_norm_state(encoder)
    features = source.embeddings()
    assert encoder.training and all(m.training for m in encoder.modules())
    assert all(torch.equal(v, batch_norm_state(encoder)[k]) for k, v in stats.items())
    for split, dataset in (("train", data.train), ("test", data.test)):
        pixels = torch.from_numpy(dataset.images.copy()).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            expected = reference(pixels).pooled
        torch.testing.assert_close(features[split].float(), expected, rtol=2e-2, atol=2e-2 * float(expected.abs().mean()))


def test_the_projected_before_after_features_are_the_eval_mode_projectors():
    from infomax.engine.continued import _project

    method = methods.build("vicreg", trained_looking_encoder(), projector_hidden=16, projector_out=8)
    with torch.no_grad():
        for _ in range(3):  # running statistics of its own in the projector too
            method.projector(torch.randn(32, method.encoder.dim) * 3 + 1)
    h = torch.randn(40, method.encoder.dim)
    expected = copy.deepcopy(method.projector).eval()(h).detach()
    stats = batch_norm_state(method.projector)
    projected = _project(method, h)
    assert method.projector.training
    assert all(torch.equal(v, batch_norm_state(method.projector)[k]) for k, v in stats.items())
    torch.testing.assert_close(projected, expected)
