"""TwinTURBO head on cached features, its two training steps, and the FixMatch baseline."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infomax.methods.fewlabel import (Discriminator, FixMatch, FixMatchLoss, TokenBlock, TwinTurbo, TwinTurboHead,
                             TwinTurboLoss, fixmatch_loss, paper_widths)
from infomax.objectives import bin_cross, cat_cross, cat_twin, critic_losses, latent_nce

TASKS = {"cat-cross": cat_cross, "cat-twin": cat_twin, "bin-cross": bin_cross}
T, C, D, K = 5, 8, 12, 4  # tokens per image, token width, global width, classes


def small_head(**kw) -> TwinTurboHead:
    return TwinTurboHead(C, D, K, latent_dim=32, hidden_dim=16, **kw)


def make_batch(n: int = 6, m: int = 7, tokens: bool = True) -> dict:
    views = {"labelled": n, "paired": n, "unlabelled": m, "augmented": m}
    batch = {f"{v}_pooled": torch.randn(k, D) for v, k in views.items()}
    if tokens:
        batch.update({f"{v}_tokens": torch.randn(k, T, C) for v, k in views.items()})
    batch["labels"] = torch.arange(n) % K
    return batch


def test_shapes_with_and_without_tokens():
    z, logits = small_head()(torch.randn(3, T, C), torch.randn(3, D))
    assert z.shape == (3, 32) and logits.shape == (3, K)
    no_tokens = TwinTurboHead(None, D, K, latent_dim=32, hidden_dim=16)
    assert not no_tokens.use_tokens and not hasattr(no_tokens, "block")
    assert no_tokens(None, torch.randn(3, D))[1].shape == (3, K)
    assert no_tokens.projector[0].in_features == D and small_head().projector[0].in_features == C + D
    ignored = small_head(use_tokens=False)
    assert ignored.projector[0].in_features == D and ignored(torch.randn(3, T, C), torch.randn(3, D))[1].shape == (3, K)
    with pytest.raises(ValueError, match="use_tokens=False"):
        small_head()(None, torch.randn(3, D))
    with pytest.raises(ValueError, match="tokens"):
        small_head()(torch.randn(3, T, C + 1), torch.randn(3, D))
    with pytest.raises(ValueError, match="pooled"):
        small_head()(torch.randn(3, T, C), torch.randn(3, D + 1))


def test_widths_follow_the_paper_tables():
    assert paper_widths(768 + 2304) == (8000, 1024)  # Tables 3-4
    with torch.device("meta"):
        head = TwinTurboHead(768, 2304, 10)  # RADIOv2.5-B, Table 1
        wide = TwinTurboHead(1280, 1280, 10, token_width=768)
    assert (head.projector[0].in_features, head.projector[0].out_features) == (3072, 8000)
    assert [m.out_features for m in head.predictor if isinstance(m, torch.nn.Linear)] == [1024, 10]
    assert head.block.gate_up.out_features == 768 + 768 and head.block.down.in_features == 768  # Table 2
    assert isinstance(head.projector[1], torch.nn.LeakyReLU) and head.projector[1].negative_slope == 0.01
    assert head.projector[2].p == 0.3
    assert wide.token_proj.in_features == 1280 and wide.block.qkv.in_features == 768
    assert wide.projector[0].in_features == 768 + 1280
    shapes = [(m.in_features, m.out_features) for m in Discriminator(10).net if isinstance(m, torch.nn.Linear)]
    assert shapes == [(10, 500), (500, 500), (500, 1)]  # Table 5


def test_block_is_permutation_equivariant_and_mixes_tokens():
    block, x = TokenBlock(C), torch.randn(2, T, C)
    perm = torch.tensor([3, 0, 4, 1, 2])  # moves every token
    torch.testing.assert_close(block(x[:, perm]), block(x)[:, perm])
    changed = x.clone()
    changed[:, 0] += torch.randn(C)
    assert not torch.allclose(block(changed)[:, 1:], block(x)[:, 1:])  # attention mixes tokens
    head = small_head().eval()
    pooled = torch.randn(2, D)
    for a, b in zip(head(x[:, perm], pooled), head(x, pooled)):
        torch.testing.assert_close(a, b)


def test_dropout_only_in_training():
    head, tokens, pooled = small_head(), torch.randn(4, T, C), torch.randn(4, D)
    assert not torch.equal(head(tokens, pooled)[0], head(tokens, pooled)[0])
    head.eval()
    assert torch.equal(head(tokens, pooled)[0], head(tokens, pooled)[0])


@pytest.mark.parametrize("task,rescale", [("cat-cross", "softmax"), ("cat-twin", "sigmoid"), ("bin-cross", "sigmoid"),
                                          ("bin-cross", "softmax")])
def test_head_loss_terms_are_the_objectives(task, rescale):
    settings = TwinTurboLoss(task, rescale, lambda_critic=0.5, lambda_latent=0.2, lambda_augment=0.3)
    model, batch = TwinTurbo(small_head(), settings).eval(), make_batch()
    terms = model.head_loss(batch)
    run = lambda v: model.head(batch[f"{v}_tokens"], batch[f"{v}_pooled"])  # noqa: E731
    (z_l, l_l), (z_p, _), (z_u, l_u), (z_a, _) = run("labelled"), run("paired"), run("unlabelled"), run("augmented")
    sigma = l_u.softmax(1) if rescale == "softmax" else torch.sigmoid(l_u)
    disc = model.discriminator
    expected = {
        "task": TASKS[task](l_l, batch["labels"], rescale=rescale),
        "critic": critic_losses(disc(torch.eye(K)), disc(sigma))["generator"],
        "latent": latent_nce(z_l, z_p, batch["labels"]),
        "augment": latent_nce(z_u, z_a),
    }
    expected["total"] = expected["task"] + 0.5 * expected["critic"] + 0.2 * expected["latent"] + 0.3 * expected["augment"]
    expected["_fakes"] = l_u  # the discriminator stage's input, detached
    assert set(terms) == set(expected) and not terms["_fakes"].requires_grad
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value, msg=name)


def test_zero_weights_skip_terms_and_their_inputs():
    batch = {k: v for k, v in make_batch().items() if k.startswith("labelled") or k == "labels"}
    model = TwinTurbo(small_head(), TwinTurboLoss(lambda_critic=0, lambda_latent=0, lambda_augment=0))
    terms = model.head_loss(batch)
    assert set(terms) == {"task", "total"} and torch.equal(terms["total"], terms["task"])
    assert model.views == ("labelled",)  # the loop loads nothing else
    assert TwinTurbo(small_head(), TwinTurboLoss(lambda_critic=1.0, lambda_latent=0, lambda_augment=0)).views == ("labelled", "unlabelled")
    with pytest.raises(ValueError, match="paired"):
        TwinTurbo(small_head(), TwinTurboLoss(lambda_critic=0, lambda_augment=0)).head_loss(batch)
    with pytest.raises(ValueError, match="unlabelled"):
        TwinTurbo(small_head(), TwinTurboLoss(lambda_latent=0, lambda_augment=0)).head_loss(batch)
    for bad in ({"task": "cross"}, {"rescale": "tanh"}, {"prior": "zipf"}, {"lambda_latent": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TwinTurboLoss(**bad)


def test_generator_step_leaves_the_discriminator_and_critic_step_leaves_the_head():
    model = TwinTurbo(small_head(), TwinTurboLoss(lambda_latent=0, lambda_augment=0, lambda_critic=1.0))
    terms = model.head_loss(make_batch())
    terms["critic"].backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert model.head.projector[0].weight.grad.abs().sum() > 0  # through D into the head
    assert model.head.block.qkv.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.critic_loss(make_batch()).backward()
    assert all(p.grad is None for p in model.head.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.discriminator.parameters())


def test_critic_loss_is_minus_eq_26_with_label_prior():
    model = TwinTurbo(small_head(), TwinTurboLoss(prior="labels", rescale="softmax")).eval()
    batch = make_batch()
    logits = model.head(batch["unlabelled_tokens"], batch["unlabelled_pooled"])[1]
    real = model.discriminator(F.one_hot(batch["labels"], K).float())
    expected = critic_losses(real, model.discriminator(logits.softmax(1)))["discriminator"]
    torch.testing.assert_close(model.critic_loss(batch), expected)


@pytest.mark.parametrize("target", ["augmented", "plain"])
def test_stop_gradient_sides(target):
    settings = TwinTurboLoss(lambda_critic=0, lambda_latent=1.0, lambda_augment=1.0, augment_target=target)
    model = TwinTurbo(TwinTurboHead(None, D, K, latent_dim=32, hidden_dim=16), settings)
    batch = {k: v.requires_grad_(True) if v.is_floating_point() else v for k, v in make_batch(tokens=False).items()}
    model.head_loss(batch)["total"].backward()
    assert batch["paired_pooled"].grad is None and batch["labelled_pooled"].grad.abs().sum() > 0
    online, detached = ("unlabelled", "augmented") if target == "augmented" else ("augmented", "unlabelled")
    assert batch[f"{detached}_pooled"].grad is None and batch[f"{online}_pooled"].grad.abs().sum() > 0


@pytest.mark.parametrize("target_dropout", [False, True])
def test_targets_see_dropout_only_when_asked(target_dropout):
    settings = TwinTurboLoss(lambda_critic=0, lambda_latent=1.0, lambda_augment=1.0, target_dropout=target_dropout)
    model, batch = TwinTurbo(small_head(dropout=0.5), settings).train(), make_batch()
    torch.manual_seed(0)
    first = model.head_loss(batch)
    torch.manual_seed(1)
    z_lab, _ = model.head(batch["labelled_tokens"], batch["labelled_pooled"])  # another dropout mask of the anchors
    with model._targets():
        z_pair, _ = model.head(batch["paired_tokens"], batch["paired_pooled"])
        z_pair_again, _ = model.head(batch["paired_tokens"], batch["paired_pooled"])
    assert torch.equal(z_pair, z_pair_again) != target_dropout  # dropout off: the target is one fixed answer
    assert model.head.projector[-1].training and all(m.training for m in model.modules())  # restored after
    model.eval()
    z_eval, _ = model.head(batch["paired_tokens"], batch["paired_pooled"])
    assert torch.equal(z_pair, z_eval) != target_dropout
    assert torch.isfinite(first["latent"]) and z_lab.requires_grad and not z_pair.requires_grad


def test_latent_negatives_all_is_the_literal_form():
    model, batch = TwinTurbo(small_head(), TwinTurboLoss(lambda_critic=0, lambda_augment=0, latent_negatives="all")).eval(), make_batch()
    z_l, _ = model.head(batch["labelled_tokens"], batch["labelled_pooled"])
    z_p, _ = model.head(batch["paired_tokens"], batch["paired_pooled"])
    torch.testing.assert_close(model.head_loss(batch)["latent"], latent_nce(z_l, z_p))
    with pytest.raises(ValueError, match="latent_negatives"):
        TwinTurboLoss(latent_negatives="some")


def test_predict_normalises_per_rescale():
    tokens, pooled = torch.randn(5, T, C), torch.randn(5, D)
    model = TwinTurbo(small_head(), TwinTurboLoss(rescale="sigmoid")).eval()
    p = torch.sigmoid(model.head(tokens, pooled)[1])
    torch.testing.assert_close(model.predict(tokens, pooled), p / p.sum(1, keepdim=True))
    model = TwinTurbo(small_head(), TwinTurboLoss(rescale="softmax")).eval()
    torch.testing.assert_close(model.predict(tokens, pooled), model.head(tokens, pooled)[1].softmax(1))


def gaussian_problem(n_labelled: int = 10, n_unlabelled: int = 300):
    g = torch.Generator().manual_seed(1)
    means, token_means = 1.0 * torch.randn(3, 16, generator=g), torch.randn(3, 4, generator=g)

    def draw(n):
        y = torch.randint(0, 3, (n,), generator=g) if n > 12 else torch.arange(n) % 3
        tokens = token_means[y, None, :] + torch.randn(n, 3, 4, generator=g)
        return tokens, means[y] + torch.randn(n, 16, generator=g), y

    lab_tok, lab_pool, labels = draw(n_labelled)
    partner = torch.stack([torch.nonzero((labels == labels[i]) & (torch.arange(n_labelled) != i))[0, 0]
                           for i in range(n_labelled)])
    unl_tok, unl_pool, _ = draw(n_unlabelled)
    batch = {"labelled_tokens": lab_tok, "labelled_pooled": lab_pool, "labels": labels,
             "paired_tokens": lab_tok[partner], "paired_pooled": lab_pool[partner],
             "unlabelled_tokens": unl_tok, "unlabelled_pooled": unl_pool}
    return batch, draw(300)


def test_full_loss_learns_three_gaussians():
    batch, (test_tok, test_pool, test_y) = gaussian_problem()
    model = TwinTurbo(TwinTurboHead(4, 16, 3, latent_dim=64, hidden_dim=32),
                      TwinTurboLoss("bin-cross", "sigmoid", lambda_critic=0.1, lambda_latent=0.1, lambda_augment=0.1),
                      disc_width=64)  # Table 5's 500 costs most of the time at this size
    head_opt = torch.optim.Adam(model.head.parameters(), lr=3e-3)
    disc_opt = torch.optim.Adam(model.discriminator.parameters(), lr=3e-3)
    for _ in range(100):
        batch["augmented_tokens"] = batch["unlabelled_tokens"] + 0.1 * torch.randn_like(batch["unlabelled_tokens"])
        batch["augmented_pooled"] = batch["unlabelled_pooled"] + 0.1 * torch.randn_like(batch["unlabelled_pooled"])
        head_opt.zero_grad()
        terms = model.head_loss(batch)
        terms["total"].backward()
        head_opt.step()
        disc_opt.zero_grad()
        model.critic_loss(batch).backward()
        disc_opt.step()
    assert all(torch.isfinite(v).all() for v in terms.values())
    accuracy = (model.eval().predict(test_tok, test_pool).argmax(1) == test_y).float().mean().item()
    assert accuracy > 0.9


def test_fixmatch_mask_and_terms():
    logits_l, y = torch.randn(6, K), torch.arange(6) % K
    weak, strong = 3 * torch.randn(9, K), torch.randn(9, K)
    off = fixmatch_loss(logits_l, y, weak, strong, threshold=1.01)
    assert off["mask_rate"].item() == 0 and off["unsupervised"].item() == 0
    torch.testing.assert_close(off["total"], F.cross_entropy(logits_l, y))
    on = fixmatch_loss(logits_l, y, weak, strong, threshold=0.0)
    assert on["mask_rate"].item() == 1
    torch.testing.assert_close(on["unsupervised"], F.cross_entropy(strong, weak.argmax(1)))
    some = fixmatch_loss(logits_l, y, weak, strong)
    confident = weak.softmax(1).max(1).values >= 0.95
    torch.testing.assert_close(some["mask_rate"], confident.float().mean())
    expected = (F.cross_entropy(strong, weak.argmax(1), reduction="none") * confident).mean()
    torch.testing.assert_close(some["unsupervised"], expected)
    with pytest.raises(ValueError, match="threshold"):
        FixMatchLoss(threshold=float("nan"))


def test_fixmatch_method_on_the_head():
    batch = {k: v.requires_grad_(True) if v.is_floating_point() else v for k, v in make_batch().items()}
    model = FixMatch(small_head(), FixMatchLoss(threshold=1.01)).eval()
    terms = model.head_loss(batch)
    logits_l = model.head(batch["labelled_tokens"], batch["labelled_pooled"])[1]
    torch.testing.assert_close(terms["total"], F.cross_entropy(logits_l, batch["labels"]))
    assert terms["mask_rate"].item() == 0
    FixMatch(small_head(), FixMatchLoss(threshold=0.0)).head_loss(batch)["total"].backward()
    assert batch["unlabelled_pooled"].grad is None and batch["augmented_pooled"].grad.abs().sum() > 0


def test_critic_step_on_the_head_steps_fakes_equals_a_fresh_forward():
    model = TwinTurbo(small_head(), TwinTurboLoss(lambda_critic=1.0)).eval()
    batch = make_batch()
    fakes = model.head_loss(batch)["_fakes"]
    torch.manual_seed(0)  # the uniform prior draws its real samples
    reused = model.critic_loss(batch, fakes=fakes)
    torch.manual_seed(0)
    torch.testing.assert_close(reused, model.critic_loss(batch))
    assert fakes.requires_grad is False
