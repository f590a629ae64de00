"""Every `-cifar10` recipe (and a CPU recipe's value that cites one) against the source it names: one cited reference per value, and the LARS
step each recipe runs against its source's formula, so that an edit drifting from a source fails.

Sources (read for issue 22): solo-learn = github.com/vturrisi/solo-learn (scripts/pretrain/cifar/*.yaml,
solo/utils/lars.py, solo/methods/base.py, solo/args/pretrain.py); MIRA code = github.com/movinghoon/MIRA
(train.py, src/builder.py, src/loader.py, src/optimizer.py); SimSiam code = github.com/facebookresearch/simsiam;
papers under /work/shared/papers (smi, mira, hydes) or as cited.
"""
import math

import pytest
import torch
import yaml

from infomax import config as C
from infomax import methods
from infomax.data.views import get_view_set
from infomax.engine.optim import build_optimiser, set_lr

SOLO = "solo-learn scripts/pretrain/cifar/"
SOLO_LARS = "solo-learn solo/utils/lars.py"
SOLO_BASE = "solo-learn solo/methods/base.py"
MIRA_CODE = "MIRA authors' "
SMI = "smi paper App. A.1.2"
TT = "twinturbo paper App. B: "

# (recipe, setting, value, where the value is stated). "views.I.field" is view I of the resolved view set.
TABLE = [
    # BYOL: solo-learn's CIFAR config
    ("byol-cifar10", "model.backbone", "resnet18", SOLO + "byol.yaml backbone.name"),
    ("byol-cifar10", "model.options.stem_padding", 2, SOLO_BASE + ": CIFAR conv1 3x3, stride 1, padding 2"),
    ("byol-cifar10", "model.options.zero_init_residual", False, SOLO_BASE + ": backbone.kwargs {} (torchvision default)"),
    ("byol-cifar10", "method.projector_hidden", 4096, SOLO + "byol.yaml proj_hidden_dim"),
    ("byol-cifar10", "method.projector_out", 256, SOLO + "byol.yaml proj_output_dim"),
    ("byol-cifar10", "method.predictor_hidden", 4096, SOLO + "byol.yaml pred_hidden_dim"),
    ("byol-cifar10", "method.momentum_base", 0.99, SOLO + "byol.yaml momentum.base_tau"),
    ("byol-cifar10", "method.momentum_final", 1.0, SOLO + "byol.yaml momentum.final_tau"),
    ("byol-cifar10", "optim.name", "lars", SOLO + "byol.yaml optimizer.name"),
    ("byol-cifar10", "optim.lr", 1.0, SOLO + "byol.yaml optimizer.lr (x 256/256)"),
    ("byol-cifar10", "optim.weight_decay", 1e-5, SOLO + "byol.yaml optimizer.weight_decay"),
    ("byol-cifar10", "optim.lars_eta", 0.02, SOLO + "byol.yaml optimizer.kwargs.eta"),
    ("byol-cifar10", "optim.lars_clip", True, SOLO + "byol.yaml optimizer.kwargs.clip_lr"),
    ("byol-cifar10", "optim.lars_norm", "sum", SOLO_LARS + ": p_norm / (g_norm + p_norm * weight_decay + eps)"),
    ("byol-cifar10", "optim.momentum", 0.9, "solo-learn solo/args/pretrain.py: lars momentum default 0.9"),
    ("byol-cifar10", "optim.batch_size", 256, SOLO + "byol.yaml optimizer.batch_size"),
    ("byol-cifar10", "schedule.epochs", 1000, SOLO + "byol.yaml max_epochs"),
    ("byol-cifar10", "schedule.warmup_epochs", 10, SOLO_BASE + ": scheduler.warmup_epochs default 10"),
    ("byol-cifar10", "warmup_start_lr", 3e-5, SOLO_BASE + ": scheduler.warmup_start_lr default 3e-5"),
    ("byol-cifar10", "schedule.final_factor", 0.0, SOLO_BASE + ": scheduler.min_lr default 0"),
    ("byol-cifar10", "views.0.blur_p", 0.0, SOLO + "augmentations/asymmetric.yaml gaussian_blur.prob"),
    ("byol-cifar10", "views.1.solarize_p", 0.2, SOLO + "augmentations/asymmetric.yaml (second crop) solarization.prob"),
    ("byol-cifar10", "views.0.scale", (0.08, 1.0), SOLO + "augmentations/asymmetric.yaml crop_min_scale"),
    # SwAV: solo-learn's CIFAR config
    ("swav-cifar10", "model.options.stem_padding", 2, SOLO_BASE + ": CIFAR conv1 padding 2"),
    ("swav-cifar10", "method.projector_hidden", 2048, SOLO + "swav.yaml proj_hidden_dim"),
    ("swav-cifar10", "method.projector_out", 128, SOLO + "swav.yaml proj_output_dim"),
    ("swav-cifar10", "method.num_prototypes", 3000, SOLO + "swav.yaml num_prototypes"),
    ("swav-cifar10", "method.freeze_prototypes_epochs", 2, SOLO + "swav.yaml freeze_prototypes_epochs"),
    ("swav-cifar10", "method.temperature", 0.1, SOLO + "swav.yaml temperature"),
    ("swav-cifar10", "method.queue_length", 3840, SOLO + "swav.yaml queue_size"),
    ("swav-cifar10", "method.queue_start_epoch", 50, SOLO + "swav.yaml epoch_queue_starts"),
    ("swav-cpu", "method.queue_length", 3840, SOLO + "swav.yaml queue_size"),
    ("swav-cpu", "method.queue_start_epoch", 50, SOLO + "swav.yaml epoch_queue_starts (past a CPU run's end: no queue)"),
    ("swav-cifar10", "method.epsilon", 0.05, "solo-learn solo/methods/swav.py sk_epsilon default"),
    ("swav-cifar10", "method.sinkhorn_iters", 3, "solo-learn solo/methods/swav.py sk_iters default"),
    ("swav-cifar10", "optim.lr", 0.6, SOLO + "swav.yaml optimizer.lr"),
    ("swav-cifar10", "optim.weight_decay", 1e-6, SOLO + "swav.yaml optimizer.weight_decay"),
    ("swav-cifar10", "optim.lars_eta", 0.02, SOLO + "swav.yaml optimizer.kwargs.eta"),
    ("swav-cifar10", "optim.lars_clip", True, SOLO + "swav.yaml optimizer.kwargs.clip_lr"),
    ("swav-cifar10", "optim.lars_norm", "sum", SOLO_LARS),
    ("swav-cifar10", "warmup_start_lr", 3e-5, SOLO_BASE + ": warmup_start_lr default"),
    ("swav-cifar10", "schedule.epochs", 1000, SOLO + "swav.yaml max_epochs"),
    ("swav-cifar10", "views.0.brightness", 0.8, SOLO + "augmentations/symmetric.yaml color_jitter.brightness"),
    ("swav-cifar10", "views.1.saturation", 0.8, SOLO + "augmentations/symmetric.yaml color_jitter.saturation"),
    ("swav-cifar10", "views.0.hue", 0.2, SOLO + "augmentations/symmetric.yaml color_jitter.hue"),
    ("swav-cifar10", "views.1.blur_p", 0.5, SOLO + "augmentations/symmetric.yaml gaussian_blur.prob"),
    ("swav-cifar10", "views.1.solarize_p", 0.0, SOLO + "augmentations/symmetric.yaml solarization.prob"),
    ("swav-cifar10", "views.0.scale", (0.08, 1.0), SOLO + "augmentations/symmetric.yaml crop_min_scale"),
    # VICReg: solo-learn's CIFAR config
    ("vicreg-cifar10", "model.options.stem_padding", 2, SOLO_BASE + ": CIFAR conv1 padding 2"),
    ("vicreg-cifar10", "method.projector_hidden", 2048, SOLO + "vicreg.yaml proj_hidden_dim"),
    ("vicreg-cifar10", "method.projector_out", 2048, SOLO + "vicreg.yaml proj_output_dim"),
    ("vicreg-cifar10", "method.projector_layers", 3, "solo-learn solo/methods/vicreg.py: three nn.Linear"),
    ("vicreg-cifar10", "method.sim", 25.0, SOLO + "vicreg.yaml sim_loss_weight (VICReg Sec. 4.2)"),
    ("vicreg-cifar10", "method.var", 25.0, SOLO + "vicreg.yaml var_loss_weight"),
    ("vicreg-cifar10", "method.cov", 1.0, SOLO + "vicreg.yaml cov_loss_weight"),
    ("vicreg-cifar10", "optim.lr", 0.3, SOLO + "vicreg.yaml optimizer.lr"),
    ("vicreg-cifar10", "optim.weight_decay", 1e-4, SOLO + "vicreg.yaml optimizer.weight_decay"),
    ("vicreg-cifar10", "optim.lars_eta", 0.02, SOLO + "vicreg.yaml optimizer.kwargs.eta"),
    ("vicreg-cifar10", "optim.lars_clip", True, SOLO + "vicreg.yaml optimizer.kwargs.clip_lr"),
    ("vicreg-cifar10", "optim.lars_norm", "sum", SOLO_LARS),
    ("vicreg-cifar10", "warmup_start_lr", 3e-5, SOLO_BASE + ": warmup_start_lr default"),
    ("vicreg-cifar10", "views.0.scale", (0.2, 1.0), SOLO + "vicreg.yaml rrc.crop_min_scale"),
    ("vicreg-cifar10", "views.0.solarize_p", 0.1, SOLO + "vicreg.yaml solarization.prob (num_crops 2: both views)"),
    ("vicreg-cifar10", "views.1.solarize_p", 0.1, SOLO + "vicreg.yaml solarization.prob (num_crops 2: both views)"),
    ("vicreg-cifar10", "views.1.blur_p", 0.0, SOLO + "vicreg.yaml gaussian_blur.enabled False"),
    # SimCLR: the paper's CIFAR setting
    ("simclr-cifar10", "model.backbone", "resnet50", "SimCLR App. B.9"),
    ("simclr-cifar10", "method.temperature", 0.5, "SimCLR App. B.9"),
    ("simclr-cifar10", "optim.lr", 1.0, "SimCLR App. B.9: 0.5 x B/256 at B 512"),
    ("simclr-cifar10", "optim.batch_size", 512, "SimCLR App. B.9"),
    ("simclr-cifar10", "optim.weight_decay", 1e-6, "SimCLR App. B.9"),
    ("simclr-cifar10", "optim.lars_eta", 0.001, "SimCLR code lars_optimizer.py EETA_DEFAULT (DESIGN.md)"),
    ("simclr-cifar10", "optim.lars_clip", False, "SimCLR code: no clipping"),
    ("simclr-cifar10", "optim.lars_norm", "update", "SimCLR code: trust ratio on the decayed gradient's norm"),
    ("simclr-cifar10", "views.0.brightness", 0.4, "SimCLR App. B.9: colour strength 0.5"),
    ("simclr-cifar10", "views.0.blur_p", 0.0, "SimCLR App. B.9: no blur on CIFAR"),
    # MIRA: the paper's Sec. 4.1 and the authors' code
    ("mira-cifar10", "model.options.zero_init_residual", True, MIRA_CODE + "src/builder.py build_encoder(zero_init_residual=True)"),
    ("mira-cifar10", "model.options.stem_padding", 2, MIRA_CODE + "src/builder.py cifar=True: padding (2, 2)"),
    ("mira-cifar10", "method.projector_hidden", 2048, "mira paper Sec. 4.1: [2048, 2048, d]"),
    ("mira-cifar10", "method.projector_out", 256, "mira paper Sec. 4.1: d = 256"),
    ("mira-cifar10", "method.num_prototypes", 3000, "mira paper Sec. 4.1: K = 3000"),
    ("mira-cifar10", "method.student_temperature", 0.1, "mira paper Sec. 4.1: tau_s"),
    ("mira-cifar10", "method.teacher_temperature", 0.225, "mira paper Sec. 4.1: tau_t"),
    ("mira-cifar10", "method.beta", 2 / 3, "mira paper Sec. 4.1"),
    ("mira-cifar10", "method.iters", 30, "mira paper Sec. 4.1: 30 steps of the fixed point"),
    ("mira-cifar10", "method.momentum_base", 0.99, "mira paper Sec. 4.1: EMA from 0.99"),
    ("mira-cifar10", "method.momentum_final", 1.0, "mira paper Sec. 4.1: to 1 by cosine"),
    ("mira-cifar10", "method.teacher_head", "shared", MIRA_CODE + "train.py _update_ema_params: head is shared"),
    ("mira-cifar10", "method.freeze_prototypes_epochs", 1, MIRA_CODE + "train.py --freeze-head-epochs 1"),
    ("mira-cifar10", "optim.lr", 0.3, "mira paper Sec. 4.1: base lr 0.3 x B/256"),
    ("mira-cifar10", "optim.weight_decay", 1e-6, "mira paper Sec. 4.1"),
    ("mira-cifar10", "optim.lars_eta", 0.001, MIRA_CODE + "src/optimizer.py LARS eta default"),
    ("mira-cifar10", "optim.lars_clip", False, MIRA_CODE + "src/optimizer.py: no clipping"),
    ("mira-cifar10", "optim.lars_norm", "update", MIRA_CODE + "src/optimizer.py: eta |p| / |g + wd p|"),
    ("mira-cifar10", "schedule.warmup_epochs", 10, "mira paper Sec. 4.1"),
    ("mira-cifar10", "schedule.epochs", 1000, "mira paper Table 7"),
    ("mira-cifar10", "views.0.scale", (0.2, 1.0), MIRA_CODE + "src/loader.py CIFARTransform"),
    ("mira-cifar10", "views.0.blur_p", 0.0, MIRA_CODE + "src/loader.py CIFARTransform: no blur"),
    ("mira-cifar10", "views.1.solarize_p", 0.2, MIRA_CODE + "src/loader.py CIFARTransform aug2 Solarize p 0.2"),
    # SimSiam: the paper's App. D and the authors' code
    ("simsiam-cifar10", "model.options.zero_init_residual", True, "SimSiam simsiam/builder.py zero_init_residual=True"),
    ("simsiam-cifar10", "method.predictor_hidden", 512, "SimSiam simsiam/builder.py pred_dim 512"),
    ("simsiam-cifar10", "method.projector_out", 2048, "SimSiam simsiam/builder.py dim 2048"),
    ("simsiam-cifar10", "optim.name", "sgd", "SimSiam App. D"),
    ("simsiam-cifar10", "optim.lr", 0.06, "SimSiam App. D: 0.03 x B/256"),
    ("simsiam-cifar10", "optim.batch_size", 512, "SimSiam App. D"),
    ("simsiam-cifar10", "optim.weight_decay", 5e-4, "SimSiam App. D"),
    ("simsiam-cifar10", "schedule.epochs", 800, "SimSiam App. D"),
    ("simsiam-cifar10", "views.0.scale", (0.2, 1.0), "SimSiam main_simsiam.py RandomResizedCrop scale"),
    ("simsiam-cifar10", "views.0.saturation", 0.4, "SimSiam main_simsiam.py ColorJitter(0.4, 0.4, 0.4, 0.1)"),
    # SMI and Barlow Twins: the SMI paper's small-dataset protocol
    *[(name, key, value, source) for name in ("smi-cifar10", "barlow_twins-cifar10") for key, value, source in [
        ("model.backbone", "resnet50", SMI + ": ResNet-50"),
        ("model.options.stem_padding", 1, SMI + ": 3x3 stride 1 padding 1"),
        ("method.projector_hidden", 4096, SMI + ": 4096 hidden units"),
        ("method.projector_layers", 3, SMI + ": three-layer projection head"),
        ("optim.name", "adamw", SMI + ": AdamW"),
        ("optim.batch_size", 256, SMI + ": batch size 256"),
        ("schedule.epochs", 300, SMI + ": 300 epochs"),
        ("schedule.decay", "cosine", SMI + ": cosine annealing"),
        ("views.0.scale", (0.2, 1.0), "smi paper Table 4: CIFAR crop scale"),
        ("views.1.solarize_p", 0.0, "smi paper Table 4: CIFAR Solarization No"),
        ("views.0.blur_p", 1.0, SMI + ": GaussianBlur (no probability given: torchvision's, always on)"),
    ]],
    ("barlow_twins-cifar10", "method.lambd", 5e-3, "Barlow Twins Sec. 3"),
    # HyDeS
    ("hydes-cifar10", "model.backbone", "resnet18", "hydes paper Sec. IV"),
    ("hydes-cifar10", "optim.name", "adamw", "hydes paper Sec. IV"),
    ("hydes-cifar10", "optim.lr", 1e-3, "hydes paper Sec. IV"),
    ("hydes-cifar10", "optim.batch_size", 128, "hydes paper Sec. IV"),
    ("hydes-cifar10", "schedule.epochs", 200, "hydes paper Sec. IV"),
    ("hydes-cifar10", "method.kappa", 1.0, "hydes paper Sec. III"),
    ("hydes-cifar10", "views.0.scale", (0.4, 1.0), "hydes paper Sec. III: global views 40-100 %"),
    ("hydes-cifar10", "views.7.scale", (0.05, 0.4), "hydes paper Sec. III: 6 local views 5-40 %"),
    # LeJEPA (arXiv 2511.08544; the authors' repo rbalestr-lab/lejepa README and MINIMAL.md; lightly lejepa_loss.py)
    ("lejepa-cifar10", "model.backbone", "resnet18", "LeJEPA Table 5: ResNet-18 on CIFAR-10"),
    ("lejepa-cifar10", "method.lambd", 0.05, "LeJEPA Sec. 6.1: lambda = 0.05"),
    ("lejepa-cifar10", "method.slices", 1024, "LeJEPA Sec. 6.1: 1024 slices as a starting point"),
    ("lejepa-cifar10", "method.num_global", 2, "LeJEPA Sec. 6.1: V_g = 2"),
    ("lejepa-cifar10", "method.projector_hidden", 2048, "the authors' MINIMAL.md: MLP [2048, 2048, proj_dim]"),
    ("lejepa-cifar10", "method.projector_out", 64, "LeJEPA Table 1d (64 beats 1024); lightly LeJEPAProjectionHead output_dim"),
    ("lejepa-cifar10", "optim.name", "adamw", "LeJEPA Sec. 6.1 and the authors' README: AdamW"),
    ("lejepa-cifar10", "optim.lr", 5e-4, "the authors' README: lr 5e-4"),
    ("lejepa-cifar10", "optim.weight_decay", 5e-4, "the authors' README: weight decay 5e-4 for ResNets"),
    ("lejepa-cifar10", "schedule.final_factor", 1e-3, "the authors' README: cosine to lr / 1000"),
    ("lejepa-cifar10", "views.0.scale", (0.3, 1.0), "the authors' README: global crops 30-100 %"),
    ("lejepa-cifar10", "views.7.scale", (0.05, 0.3), "the authors' README: 6 local crops of 5-30 %"),
    # TwinTURBO: the paper's App. B (training recipe) and Tables 2-4 (the head)
    ("twinturbo-paper", "optim.name", "adamw", TT + "AdamW optimiser"),
    ("twinturbo-paper", "optim.lr", 5e-5, TT + "learning rate 5e-5"),
    ("twinturbo-paper", "optim.batch_size", 512, TT + "batch size 512"),
    ("twinturbo-paper", "schedule.epochs", 5, TT + "5 epochs"),
    ("twinturbo-paper", "schedule.warmup_steps", 150, TT + "150-step linear warm-up"),
    ("twinturbo-paper", "schedule.warmup_start", 0.001, TT + "initial factor 0.001"),
    ("twinturbo-paper", "finetune.token_grid", "native", TT + "Table 2: the block on every patch token"),
    ("twinturbo-paper", "finetune.token_width", 768, TT + "Table 2: width 768"),
    ("twinturbo-paper", "finetune.latent_dim", 8000, TT + "Table 3: projector to 8000"),
    ("twinturbo-paper", "finetune.hidden_dim", 1024, TT + "Table 4: predictor hidden 1024"),
    ("twinturbo-cpu", "optim.batch_size", 512, TT + "batch size 512"),
    ("twinturbo-cpu", "schedule.warmup_steps", 150, TT + "150-step linear warm-up"),
    ("twinturbo-cpu", "schedule.warmup_start", 0.001, TT + "initial factor 0.001"),
    ("fixmatch-cpu", "method.threshold", 0.95, "FixMatch (Sohn et al. 2020) Sec. 4: confidence threshold tau = 0.95"),
    ("fixmatch-cpu", "method.lambda_u", 1.0, "FixMatch Sec. 4: lambda_u = 1"),
]


def lookup(name: str, key: str):
    config = C.build_config(C.load_recipe(name))
    if key == "warmup_start_lr":  # our warm-up start is a factor of the base lr
        return config.schedule.warmup_start * config.optim.lr
    if key.startswith("views."):
        _, index, field = key.split(".")
        views = get_view_set(config.data.views or methods.METHODS[config.method_name].default_views, config.data.resolution,
                             **config.data.view_options)
        return getattr(views[int(index)], field)
    value = C.to_dict(config)
    for part in key.split("."):
        value = value[part]
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize("name, key, value, source", TABLE, ids=[f"{r[0]}:{r[1]}" for r in TABLE])
def test_recipe_value_is_its_sources(name, key, value, source):
    got = lookup(name, key)
    if isinstance(value, float):
        assert math.isclose(got, value, rel_tol=1e-9), f"{name} {key} = {got}, {source} says {value}"
    else:
        assert got == value, f"{name} {key} = {got!r}, {source} says {value!r}"


def test_every_cifar10_recipe_is_in_the_table_and_every_recipe_names_its_sources():
    names = C.recipe_names()
    assert {n for n in names if n.endswith(("-cifar10", "-paper"))} <= {row[0] for row in TABLE}
    for name in names:
        tree = yaml.safe_load((C.RECIPES / f"{name}.yaml").read_text())
        sources = tree.get("sources")
        assert isinstance(sources, dict) and {"model", "heads", "views", "optim", "schedule"} <= set(sources), name
        assert all(isinstance(v, str) and v.strip() for v in sources.values()), name


# ---------------------------------------------------------------- LARS: the per-tensor step of each recipe

def solo_learn_update(p, g, lr, wd, eta, clip):
    """solo-learn solo/utils/lars.py, per tensor (exclude_bias_n_norm: 1-d tensors get the plain gradient)."""
    if p.ndim == 1 or p.norm() == 0 or g.norm() == 0:
        return g
    local = eta * p.norm() / (g.norm() + p.norm() * wd + 1e-8)
    if clip:
        local = min(float(local) / lr, 1.0)
    return (g + wd * p) * local


def decayed_gradient_update(p, g, lr, wd, eta, clip):
    """SimCLR's / MoCo v3's (the MIRA authors' src/optimizer.py) LARS: 1-d tensors excluded, else
    eta |p| / |g + wd p| times g + wd p; neither source clips."""
    assert not clip
    if p.ndim == 1:
        return g
    u = g + wd * p
    return u * (eta * p.norm() / u.norm())


# recipe -> (the source's LARS, its hyper-parameters as the source states them)
LARS_SOURCES = {
    "byol-cifar10": (solo_learn_update, dict(lr=1.0, wd=1e-5, eta=0.02, clip=True, momentum=0.9)),  # solo-learn byol.yaml
    "swav-cifar10": (solo_learn_update, dict(lr=0.6, wd=1e-6, eta=0.02, clip=True, momentum=0.9)),  # solo-learn swav.yaml
    "vicreg-cifar10": (solo_learn_update, dict(lr=0.3, wd=1e-4, eta=0.02, clip=True, momentum=0.9)),  # solo-learn vicreg.yaml
    "simclr-cifar10": (decayed_gradient_update, dict(lr=1.0, wd=1e-6, eta=0.001, clip=False, momentum=0.9)),  # SimCLR App. B.9
    "mira-cifar10": (decayed_gradient_update, dict(lr=0.3, wd=1e-6, eta=0.001, clip=False, momentum=0.9)),  # MIRA Sec. 4.1, code
}


def fixed_model_and_gradients(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                                torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    grads = [torch.randn_like(p) for p in model.parameters()]
    grads[0] *= 1e-4  # a tiny gradient: a large trust ratio, which clipping caps at the scheduled lr
    grads[3] *= 1e3  # a large one: a small ratio, which clipping leaves alone
    return model, grads


def test_the_cifar10_lars_recipes_are_exactly_those_in_the_table():
    lars = {n for n in C.recipe_names() if n.endswith("-cifar10") and C.build_config(C.load_recipe(n)).optim.name == "lars"}
    assert lars == set(LARS_SOURCES)


@pytest.mark.parametrize("name", sorted(LARS_SOURCES))
def test_lars_step_per_tensor_is_the_recipe_sources_formula(name):
    formula, source = LARS_SOURCES[name]
    model, grads = fixed_model_and_gradients(0)
    start = [p.detach().clone() for p in model.parameters()]
    opt = build_optimiser(list(model.parameters()), C.build_config(C.load_recipe(name)).optim)
    factor = 0.7  # a point of the schedule below the base lr: clipping is against the scheduled lr
    set_lr(opt, factor)
    lr = factor * source["lr"]
    velocity = [torch.zeros_like(p) for p in start]
    params = [p.clone() for p in start]
    for step in range(2):  # the second step runs through the momentum buffer
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone() * (1 + step)
        opt.step()
        for i, g in enumerate(grads):
            update = formula(params[i], g * (1 + step), lr, source["wd"], source["eta"], source["clip"])
            velocity[i] = source["momentum"] * velocity[i] + update
            params[i] = params[i] - lr * velocity[i]
        for i, p in enumerate(model.parameters()):
            torch.testing.assert_close(p.detach(), params[i], rtol=1e-6, atol=1e-9, msg=f"{name} tensor {i} step {step}")
    if source["clip"]:  # both regimes occur on this model: the cap binds on one tensor and not on another
        ratios = [float(source["eta"] * p.norm() / (g.norm() + source["wd"] * p.norm())) / lr
                  for p, g in zip(start, grads) if p.ndim > 1]
        assert min(ratios) < 1 < max(ratios)


# ---------------------------------------------------------------- infomax recipes

def test_recipes_lists_each_recipes_sources_line(capsys):
    from infomax.cli import main

    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in C.recipe_names():
        at = next(i for i, line in enumerate(lines) if line.startswith(name + " "))
        sources = yaml.safe_load((C.RECIPES / f"{name}.yaml").read_text())["sources"]
        assert lines[at + 1].strip() == "sources: " + "; ".join(f"{k}: {v}" for k, v in sources.items())


def test_recipes_name_prints_its_path_and_the_resolved_tree(capsys):
    from infomax.cli import main

    assert main(["recipes", "swav-cifar10"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"# {(C.RECIPES / 'swav-cifar10.yaml').resolve()}"
    tree = yaml.safe_load(out)
    assert tree == C.to_dict(C.build_config(C.load_recipe("swav-cifar10")))
    assert tree["optim"]["lars_clip"] is True and tree["run"]["seed"] == C.RunConfig().seed  # defaults filled in
