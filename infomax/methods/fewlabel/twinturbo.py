"""TwinTURBO's trainable part on frozen, cached backbone features (twinturbo paper, App. B-C).

The backbone never runs here: each image arrives as `tokens` (N, T, C), its patch tokens,
and `pooled` (N, D), its global (CLS) token. The head follows App. B:
  tokens -> [token_proj] -> TokenBlock (Table 2) -> mean over tokens -> concat pooled
  -> projector Linear -> LeakyReLU(0.01) -> Dropout(0.3) = latent z      (Table 3)
  -> predictor Linear -> LeakyReLU(0.01) -> Linear = logits              (Table 4)
and the discriminator is Linear 500 -> ReLU -> Linear 500 -> ReLU -> Linear 1 (Table 5).

Widths. The paper's backbone (RADIOv2.5-B, Table 1) gives 768-wide patch tokens and a
2304-wide CLS token: the block runs at 768, the projector maps 3072 -> 8000 and the
predictor's hidden layer is 1024. `paper_widths` scales both with the projector input
width `in_dim` (latent = 125/48 in_dim, hidden = in_dim / 3, rounded up to a multiple
of 8), which gives exactly (8000, 1024) at the paper's 3072 and keeps the same ratios
for any other backbone.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..base import Steps
from ...objectives.twinturbo import RESCALES, bin_cross, cat_cross, cat_twin, critic_losses, latent_nce

TASKS = {"cat-cross": cat_cross, "cat-twin": cat_twin, "bin-cross": bin_cross}
PRIORS = ("uniform", "labels")
AUGMENT_TARGETS = ("augmented", "plain")
LATENT_NEGATIVES = ("other-classes", "all")
# The head's shape (config section `finetune`). "cpu": no token block, the pooled vector into a 512-wide
# latent (what the ladder measures on 2 CPU cores); "paper": App. B, the block at 768 on every token of
# the backbone's grid, latent 8000, predictor hidden 1024 (Tables 2-4).
HEADS = {
    "cpu": {"token_grid": 0, "token_width": 256, "latent_dim": 512, "hidden_dim": 128},
    "paper": {"token_grid": "native", "token_width": 768, "latent_dim": 8000, "hidden_dim": 1024},
}


def _round8(x: float) -> int:
    return max(8, 8 * math.ceil(x / 8))


def paper_widths(in_dim: int) -> tuple[int, int]:
    """(latent_dim, hidden_dim) for a projector input of width `in_dim`, scaled from
    App. B Tables 3-4 (3072 -> 8000 -> 1024): `paper_widths(768 + 2304) == (8000, 1024)`."""
    return _round8(in_dim * 125 / 48), _round8(in_dim / 3)


def _positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


class TokenBlock(nn.Module):
    """One pre-norm transformer layer on patch tokens (App. B.2, Table 2).

    x + Attn(LN(x)) with a single head, then x + SwiGLU(LN(x)). SwiGLU: Linear(C, 2H)
    split in two chunks, SiLU(chunk 1) * chunk 2, Linear(H, C). Table 2 uses H = C
    (768 -> 768 + 768), so `mlp_ratio` defaults to 1.0 (LLaMA-style blocks use 8/3).
    Acting on every token alike, it is equivariant to permutations of the tokens.
    """

    def __init__(self, dim: int, mlp_ratio: float = 1.0):
        super().__init__()
        _positive_int("dim", dim)
        if not mlp_ratio > 0:
            raise ValueError(f"`mlp_ratio` must be positive (the paper uses 1.0), got {mlp_ratio}.")
        hidden = max(1, round(dim * mlp_ratio))
        self.norm_attn, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.gate_up, self.down = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)  # (N, 1 head, T, C) each
        return self.out(F.scaled_dot_product_attention(q, k, v).squeeze(1))

    def swiglu(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm_attn(x))
        return x + self.swiglu(self.norm_mlp(x))


class TwinTurboHead(nn.Module):
    """Encoder f_phi (minus the frozen backbone) and predictor h_psi; `forward -> (z, logits)`.

    `token_dim=None` (a backbone without patch tokens) or `use_tokens=False` skips the
    block and feeds only `pooled` to the projector. `token_width` adds a Linear
    `token_proj` C -> token_width before the block: the paper runs it at 768 (Table 2)
    and keeps the wide CLS token out of it for its parameter count (footnote 6), so
    reducing e.g. EfficientNet's 1280 to 768 is an option; None keeps C. `latent_dim`
    and `hidden_dim` default to `paper_widths` of the projector input width.
    """

    def __init__(self, token_dim: int | None, global_dim: int, num_classes: int, latent_dim: int | None = None,
                 hidden_dim: int | None = None, dropout: float = 0.3, use_tokens: bool = True,
                 token_width: int | None = None, mlp_ratio: float = 1.0):
        super().__init__()
        _positive_int("global_dim", global_dim)
        if _positive_int("num_classes", num_classes) < 2:
            raise ValueError("`num_classes` must be at least 2.")
        if not 0 <= dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1) (the paper uses 0.3), got {dropout}.")
        self.token_dim, self.global_dim, self.num_classes = token_dim, global_dim, num_classes
        self.use_tokens = bool(use_tokens) and token_dim is not None
        in_dim = global_dim
        if self.use_tokens:
            width = _positive_int("token_width", token_width or _positive_int("token_dim", token_dim))
            self.token_proj = nn.Linear(token_dim, width) if width != token_dim else nn.Identity()
            self.block = TokenBlock(width, mlp_ratio)
            in_dim += width
        auto_latent, auto_hidden = paper_widths(in_dim)
        self.latent_dim = _positive_int("latent_dim", latent_dim or auto_latent)
        hidden = _positive_int("hidden_dim", hidden_dim or auto_hidden)
        # Backbone features arrive at any offset and scale; the head standardises them with
        # training-set statistics (set_input_statistics), kept as buffers so predict uses them.
        self.register_buffer("pooled_mean", torch.zeros(global_dim))
        self.register_buffer("pooled_std", torch.ones(global_dim))
        if self.use_tokens:
            self.register_buffer("token_mean", torch.zeros(token_dim))
            self.register_buffer("token_std", torch.ones(token_dim))
        self.projector = nn.Sequential(nn.Linear(in_dim, self.latent_dim), nn.LeakyReLU(0.01), nn.Dropout(dropout))
        self.predictor = nn.Sequential(nn.Linear(self.latent_dim, hidden), nn.LeakyReLU(0.01),
                                       nn.Linear(hidden, num_classes))

    @torch.no_grad()
    def set_input_statistics(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None) -> None:
        """Per-feature mean and std of training features (pooled (N, D), tokens (N, T, C))."""
        self.pooled_mean.copy_(pooled.mean(0))
        self.pooled_std.copy_(pooled.std(0).clamp_min(1e-6))
        if self.use_tokens and tokens is not None:
            flat = tokens.reshape(-1, tokens.shape[-1])
            self.token_mean.copy_(flat.mean(0))
            self.token_std.copy_(flat.std(0).clamp_min(1e-6))

    def _features(self, tokens: torch.Tensor | None, pooled: torch.Tensor) -> torch.Tensor:
        if not isinstance(pooled, torch.Tensor) or pooled.ndim != 2 or pooled.shape[1] != self.global_dim:
            shape = tuple(pooled.shape) if isinstance(pooled, torch.Tensor) else type(pooled).__name__
            raise ValueError(f"`pooled` must have shape (N, {self.global_dim}), got {shape}.")
        pooled = (pooled - self.pooled_mean) / self.pooled_std
        if not self.use_tokens:
            return pooled
        if tokens is None:
            raise ValueError("this head uses patch tokens but `tokens` is None; pass the cached tokens "
                             "or build the head with use_tokens=False.")
        n = pooled.shape[0]
        if tokens.ndim != 3 or tokens.shape[0] != n or tokens.shape[1] < 1 or tokens.shape[2] != self.token_dim:
            raise ValueError(f"`tokens` must have shape ({n}, T>=1, {self.token_dim}), got {tuple(tokens.shape)}.")
        mixed = self.block(self.token_proj((tokens - self.token_mean) / self.token_std))
        return torch.cat([mixed.mean(dim=1), pooled], dim=1)

    def forward(self, tokens: torch.Tensor | None, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.projector(self._features(tokens, pooled))
        return z, self.predictor(z)


class Discriminator(nn.Module):
    """D_alpha of Eq. 15/26 on class vectors: Linear K->500, ReLU, Linear 500->500, ReLU,
    Linear 500->1 (App. B.5, Table 5); returns logits (N, 1), D = sigmoid(logit)."""

    def __init__(self, num_classes: int, width: int = 500):
        super().__init__()
        _positive_int("num_classes", num_classes)
        _positive_int("width", width)
        self.net = nn.Sequential(nn.Linear(num_classes, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


@dataclass(frozen=True)
class TwinTurboLoss:
    """Settings of Eq. 17, and the one place their defaults live (`infomax finetune` reads them).

    Defaults: bin-cross with sigmoid rescaling and lambda_C=3, lambda_L=1, lambda_A=10, the setting
    whose worst margin over the cat-cross baseline was best across CIFAR-10, Fashion-MNIST and
    MNIST-5k at 40 to 1000 labels, on validation splits (benchmarks/twinturbo_defaults.py). The
    critic weight issue 5 chose on CIFAR-10 alone (10) fell up to 20 points below the baseline on
    MNIST-5k; the paper's SVHN weights of Fig. 2 (lambda_C=0.001, lambda_L=0.1, lambda_A=0.1) left
    the head no better than its baseline on CIFAR-10 (benchmarks/twinturbo_sweep.py).

    `prior`: the critic's real samples are one-hot vectors of classes drawn uniformly
    ("uniform") or the labelled minibatch's labels ("labels", the empirical p(y)).
    `augment_target`: which view of an unlabelled image is the stop-gradient target
    z* of Eq. 27. The paper (App. C) passes the augmented image x* through the network
    to make z* = f(x*), "the ground truth to which the encoder output f(x) must be
    aligned", so "augmented" (default) aligns the plain view to the detached augmented
    view; "plain" does the reverse.
    `latent_negatives`: "other-classes" (App. B: negatives are images of another class) or "all"
    (every other row of the batch, same-class ones included).
    `target_dropout`: whether the projector's dropout stays on while the stop-gradient targets
    z* are computed (off by default: a target is the network's answer, not a noisy sample of it).
    """

    name: ClassVar[str] = "twinturbo"
    task: str = "bin-cross"
    rescale: str = "sigmoid"
    lambda_critic: float = 3.0
    lambda_latent: float = 1.0
    lambda_augment: float = 10.0
    prior: str = "uniform"
    augment_target: str = "augmented"
    latent_negatives: str = "other-classes"
    target_dropout: bool = False

    def __post_init__(self):
        for name, value, choices in (("task", self.task, tuple(TASKS)), ("rescale", self.rescale, RESCALES),
                                     ("prior", self.prior, PRIORS), ("augment_target", self.augment_target, AUGMENT_TARGETS),
                                     ("latent_negatives", self.latent_negatives, LATENT_NEGATIVES)):
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
        for name in ("lambda_critic", "lambda_latent", "lambda_augment"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0 (0 turns the term off), got {value!r}.")


def encode_view(head: TwinTurboHead, batch: dict, view: str, needed_for: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `head` on `batch[view + "_tokens"]`, `batch[view + "_pooled"]`; name the gap if absent."""
    keys = [f"{view}_pooled"] + ([f"{view}_tokens"] if head.use_tokens else [])
    missing = [k for k in keys if batch.get(k) is None]
    if missing:
        raise ValueError(f"the batch lacks {missing}, needed for {needed_for}; add them to the batch or turn that term off.")
    return head(batch.get(f"{view}_tokens"), batch[f"{view}_pooled"])


class TwinTurbo(Steps):
    """Head + discriminator + settings; the loop's stages "head", then "discriminator" when lambda_C > 0.

    Head step: minimise `head_loss(batch)["total"]` (Eq. 17) over the head's parameters.
    The discriminator is applied there with detached parameters (functional_call), so
    the generator term's gradient flows through D into the head but leaves every
    D parameter's `.grad` untouched: one optimiser over all parameters is safe.
    Critic step: minimise `critic_loss(batch, fakes=terms["_fakes"])` (minus Eq. 26) over D's
    parameters; the fakes are the head step's detached logits (or a no-grad head forward),
    so no gradient reaches the head. The loop hands the head stage's terms to the discriminator stage.
    Batch keys: labelled_{tokens,pooled}, labels; unlabelled_{tokens,pooled} (critic,
    augment); augmented_{tokens,pooled} (augment); paired_{tokens,pooled}: another
    labelled image of the same class per labelled image (latent). *_tokens may be
    None or absent for a head without tokens.
    """

    name, Settings = "twinturbo", TwinTurboLoss

    def __init__(self, head: TwinTurboHead, settings: TwinTurboLoss | None = None, disc_width: int = 500):
        super().__init__()
        self.head, self.settings = head, settings or TwinTurboLoss()
        self.discriminator = Discriminator(head.num_classes, disc_width)

    @property
    def stages(self) -> tuple[str, ...]:
        return ("head", "discriminator") if self.settings.lambda_critic > 0 else ("head",)

    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        return list((self.discriminator if stage == "discriminator" else self.head).parameters())

    def training_step(self, batch: dict, stage: str = "head", carry: dict | None = None) -> dict[str, torch.Tensor]:
        if stage == "discriminator":
            return {"loss": self.critic_loss(batch, fakes=carry["_fakes"])}
        terms = self.head_loss(batch)
        terms["loss"] = terms.pop("total")
        return terms

    @property
    def views(self) -> tuple[str, ...]:
        """The batch views head_loss reads with these weights (a loop loads only these)."""
        s = self.settings
        return ("labelled", *(("paired",) if s.lambda_latent > 0 else ()),
                *(("unlabelled",) if s.lambda_critic > 0 or s.lambda_augment > 0 else ()),
                *(("augmented",) if s.lambda_augment > 0 else ()))

    def rescale(self, logits: torch.Tensor) -> torch.Tensor:
        """sigma of Eq. 8 (softmax) or Eq. 9 (sigmoid). With sigmoid, the discriminator sees the
        raw per-class sigmoids, which it can tell from one-hots unless exactly one is near 1."""
        return logits.softmax(dim=1) if self.settings.rescale == "softmax" else torch.sigmoid(logits)

    def _real_samples(self, batch: dict, n: int, device: torch.device) -> torch.Tensor:
        """One-hot samples of the prior p(y) (Eq. 26, first term)."""
        if self.settings.prior == "labels":
            if batch.get("labels") is None:
                raise ValueError("prior='labels' draws the critic's real samples from batch['labels']; add them.")
            y = batch["labels"].to(device)
        else:
            y = torch.randint(self.head.num_classes, (n,), device=device)
        return F.one_hot(y, self.head.num_classes).float()

    def _critic_terms(self, logits: torch.Tensor, batch: dict, frozen: bool) -> dict[str, torch.Tensor]:
        real = self._real_samples(batch, logits.shape[0], logits.device)
        disc = self.discriminator
        if frozen:
            params = {name: p.detach() for name, p in disc.named_parameters()}
            disc = lambda x: torch.func.functional_call(self.discriminator, params, (x,))  # noqa: E731
        return critic_losses(disc(real), disc(self.rescale(logits)))

    def head_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Terms of Eq. 17 ("task", and "critic", "latent", "augment" when their weight is
        nonzero), "total" = task + sum of weight * term, and "_fakes", the unlabelled logits
        detached, when the critic is on (the critic step's input)."""
        s = self.settings
        if batch.get("labels") is None:
            raise ValueError("the batch lacks 'labels' for the labelled images.")
        z_lab, logits_lab = encode_view(self.head, batch, "labelled", "the task loss")
        terms = {"task": TASKS[s.task](logits_lab, batch["labels"], rescale=s.rescale)}
        if s.lambda_critic > 0 or s.lambda_augment > 0:
            z_unl, logits_unl = encode_view(self.head, batch, "unlabelled", "the critic and augment terms")
        if s.lambda_critic > 0:
            terms["critic"] = self._critic_terms(logits_unl, batch, frozen=True)["generator"]  # Eq. 26
            terms["_fakes"] = logits_unl.detach()
        if s.lambda_latent > 0:
            with self._targets():
                z_pair, _ = encode_view(self.head, batch, "paired", "the latent term (lambda_latent > 0)")
            classes = batch["labels"].to(z_lab.device) if s.latent_negatives == "other-classes" else None
            terms["latent"] = latent_nce(z_lab, z_pair, classes)
        if s.lambda_augment > 0:
            terms["augment"] = self._augment_term(batch, z_unl)
        weights = {"critic": s.lambda_critic, "latent": s.lambda_latent, "augment": s.lambda_augment}
        terms["total"] = terms["task"] + sum(weights[k] * v for k, v in terms.items() if k in weights)
        return terms

    def _augment_term(self, batch: dict, z_plain: torch.Tensor) -> torch.Tensor:
        """Eq. 27 between two views of each unlabelled image; see TwinTurboLoss.augment_target."""
        needed = "the augment term (lambda_augment > 0)"
        if self.settings.augment_target == "plain":
            z_aug, _ = encode_view(self.head, batch, "augmented", needed)
            return latent_nce(z_aug, z_plain.detach())
        with self._targets():
            z_aug, _ = encode_view(self.head, batch, "augmented", needed)
        return latent_nce(z_plain, z_aug)

    @contextlib.contextmanager
    def _targets(self):
        """No gradient (z* is a stop-gradient target, Eq. 27) and, unless `target_dropout`, no dropout."""
        dropouts = [] if self.settings.target_dropout else [m for m in self.head.modules() if isinstance(m, nn.Dropout) and m.training]
        with torch.no_grad():
            for module in dropouts:
                module.eval()
            try:
                yield
            finally:
                for module in dropouts:
                    module.train()

    def critic_loss(self, batch: dict, fakes: torch.Tensor | None = None) -> torch.Tensor:
        """Minus Eq. 26 for the discriminator's step, with the fakes sigma(logits) detached.

        `fakes`: the unlabelled logits the head step just computed (its "_fakes"), which saves
        a head forward; by default the head is run again without gradient."""
        if fakes is None:
            with torch.no_grad():
                _, fakes = encode_view(self.head, batch, "unlabelled", "the critic step")
        return self._critic_terms(fakes.detach(), batch, frozen=False)["discriminator"]

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor | None, pooled: torch.Tensor) -> torch.Tensor:
        """Class probabilities: softmax, or sigmoids normalised to sum to 1 (computed as
        softmax(log sigmoid), which never divides by an underflowed sum). Call eval() first."""
        _, logits = self.head(tokens, pooled)
        if self.settings.rescale == "softmax":
            return logits.softmax(dim=1)
        return F.logsigmoid(logits).softmax(dim=1)
