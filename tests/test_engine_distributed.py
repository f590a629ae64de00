"""Engine steps on two gloo ranks of B samples each equal the same steps on one rank with the 2B samples.

A gradient silently scaled by 1/world_size (a non-differentiable all-reduce or gather in a loss:
lightly #1528, #1977) fails this. SimCLR, Barlow Twins and VICReg gather across ranks, so the
reference is their loss on the whole batch; SMI communicates nothing in its loss by design, so its
reference is the mean of its loss on the two halves (what DDP's gradient averaging computes).
SwAV's and MIRA's pseudo-labels (Sinkhorn and the MIRA fixed point, all-reduced inside) on the two
ranks equal those of the whole batch on one. HyDeS gathers every rank's views for its global entropy.

Every method runs `Loop.fit` for four steps over two epochs on two global crops and two smaller local
ones, so the state that lives across steps acts: BYOL's and MIRA's EMA teachers give the targets of
the later steps, and the "stateful" variants add prototypes frozen in the first epoch (they move in
the second), MIRA's annealed beta and SwAV's queue. Two ranks equal one with the queue too, when each
rank keeps its own past: Sinkhorn treats its rows alike in any order (each row is normalised alone, each
column over every row of every rank), and one rank's queue of QUEUE rows, fed the whole batch, holds
step for step exactly the rows of the two ranks' queues of QUEUE/2 (a whole number of batches), so the
codes agree. A queue broadcast from rank 0 (a DDP buffer) holds rank 0's rows twice and rank 1's never.
`test_each_rank_queues_its_own_past_and_the_loss_is_swavs_by_hand` checks the same run against SwAV
written out by hand, with an explicit queue per rank.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _distributed_workers import LR, QUEUE, STATEFUL, engine_runs, tiny_method

METHODS = ["simclr", "barlow_twins", "vicreg", "smi", "byol", "simsiam", "swav", "mira", "hydes", "lejepa"]
CASES = [(name, "plain") for name in METHODS] + [(name, "stateful") for name in STATEFUL]
STEPS, PER_EPOCH, BATCH = 4, 2, 16  # BATCH: the global batch, 8 rows a rank
# Barlow Twins standardises each feature and VICReg's terms are centred or differences, so both are blind to
# one shift of every embedding: the projector's output bias has no gradient (exactly, in float64)
SHIFT_FREE = {"barlow_twins": {"projector.4.bias"}, "vicreg": {"projector.4.bias"}}


def make_steps():
    g = torch.Generator().manual_seed(1)
    return [[torch.rand(BATCH, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2)]
            + [torch.rand(BATCH, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(2)] for _ in range(STEPS)]


def reference_run(name, variant, steps):
    """The loop's steps on one process with the whole batch: (method after them, loss per step, last targets)."""
    method = tiny_method(name, variant)
    optimiser = torch.optim.SGD(method.stage_parameters("main"), lr=LR)
    losses, terms = [], {}
    for i, views in enumerate(steps):
        if i % PER_EPOCH == 0:
            method.on_epoch_start(i // PER_EPOCH)
        if method.communicates:
            terms = method({"views": views})
            loss = terms["loss"]
        else:
            loss = sum(method({"views": [v.chunk(2)[r] for v in views]})["loss"] for r in (0, 1)) / 2
        optimiser.zero_grad()
        loss.backward()
        method.on_before_optimiser_step("main")
        optimiser.step()
        method.on_step_end(i, len(steps))
        losses.append(loss.item())
    return method, losses, terms.get("_targets")


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    import json

    from lightning.fabric import Fabric

    from infomax.runs.checkpoint import load_extra
    from infomax.runs.rundir import load_tensors

    steps = make_steps()
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")
    out = tmp_path_factory.mktemp("loop")
    fabric.launch(engine_runs, CASES, steps, PER_EPOCH, out)  # one launch for all (process start-up is the cost)
    runs = {}
    for name, variant in CASES:
        run = out / f"{name}-{variant}"
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        state, extra = load_tensors(run / "state.safetensors"), load_extra(run / "state.safetensors")
        runs[name, variant] = {
            "losses": [r["loss"] for r in records if "loss" in r],
            "weights": {k[len("model/method/"):]: v for k, v in state.items() if k.startswith("model/method/")},
            "ranks": [{k[len(f"rank{r}/method/"):]: v for k, v in extra.items() if k.startswith(f"rank{r}/method/")} for r in (0, 1)],
            **({"targets": torch.from_numpy(np.load(run / "targets.npy"))} if (run / "targets.npy").exists() else {})}
    return steps, runs


def rank_share(queue: torch.Tensor, rank: int) -> torch.Tensor:
    """Rank `rank`'s rows of a one-rank queue fed whole batches: of each batch in it, that rank's half."""
    half = BATCH // 2
    return torch.cat([queue[:, start + rank * half:start + (rank + 1) * half] for start in range(0, queue.shape[1], BATCH)], dim=1)


@pytest.mark.parametrize("name, variant", CASES)
def test_two_ranks_equal_one_rank_with_the_whole_batch(name, variant, two_rank_runs):
    steps, runs = two_rank_runs
    run = runs[name, variant]
    method, losses, targets = reference_run(name, variant, steps)
    np.testing.assert_allclose(run["losses"], losses, rtol=1e-9, atol=1e-12)
    start = tiny_method(name, variant).state_dict()
    trained = {n for n, p in method.named_parameters() if p.requires_grad}
    assert set(run["weights"]) == set(method.state_dict())
    still = {k for k in trained if torch.equal(method.state_dict()[k], start[k])}
    assert still <= SHIFT_FREE.get(name, set()), f"{still} did not move: the steps are vacuous"
    for key, value in method.state_dict().items():
        torch.testing.assert_close(run["weights"][key], value, atol=1e-9, rtol=1e-9, msg=f"{name}: {key}")
    if targets is not None:
        torch.testing.assert_close(run["targets"], targets.detach(), atol=1e-9, rtol=1e-9)
    else:
        assert "targets" not in run
    mine = method.rank_state()
    assert run["ranks"][0].keys() == run["ranks"][1].keys() == mine.keys()
    if "queue" in mine:
        assert int(mine["queued"]) >= QUEUE  # full, and used in the later steps
        for r in (0, 1):
            torch.testing.assert_close(run["ranks"][r]["queue"], rank_share(mine["queue"], r), atol=1e-9, rtol=1e-9)


def sinkhorn_by_hand(scores: torch.Tensor, epsilon: float, iters: int) -> torch.Tensor:
    """SwAV's distributed_sinkhorn (its repository, main_swav.py), every rank's rows at once, float64."""
    q = torch.exp(scores.double() / epsilon).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True) * k
        q /= q.sum(dim=0, keepdim=True) * b
    return (q * b).T.to(scores.dtype)


def swapped_by_hand(codes, scores, temperature):
    """-mean over (code crop t, other crop v) of mean_i sum_k q_t log softmax(s_v / T) (SwAV Eq. 1-2)."""
    pairs = [(t, v) for t in range(len(codes)) for v in range(len(scores)) if v != t]
    return sum(-(codes[t] * torch.log_softmax(scores[v] / temperature, dim=1)).sum(1).mean() for t, v in pairs) / len(pairs)


def test_each_rank_queues_its_own_past_and_the_loss_is_swavs_by_hand(two_rank_runs):
    """The 2-rank stateful SwAV run replayed by hand: each rank's queue its own past unit projections of the
    two global crops (newest first), joining that rank's batch in Sinkhorn once full; prototypes frozen in
    the first epoch; DDP's gradient the mean of the ranks' losses."""
    steps, runs = two_rank_runs
    run, method = runs["swav", "stateful"], tiny_method("swav", "stateful")
    s, length = method.settings, QUEUE // 2
    optimiser = torch.optim.SGD(method.stage_parameters("main"), lr=LR)
    queues, losses = [torch.zeros(2, 0, 10, dtype=torch.float64) for _ in (0, 1)], []
    for i, views in enumerate(steps):
        z = [[F.normalize(method.projector(method.encoder(v.chunk(2)[r]).pooled), dim=1) for v in views] for r in (0, 1)]
        prototypes = F.normalize(method.prototypes.weight, dim=1)
        scores = [[v @ prototypes.T for v in z[r]] for r in (0, 1)]
        full = queues[0].shape[1] == length
        codes = [[], []]
        for crop in (0, 1):
            rows = [torch.cat([z[r][crop], queues[r][crop]]) if full else z[r][crop] for r in (0, 1)]
            q = sinkhorn_by_hand(torch.cat(rows).detach() @ prototypes.detach().T, s.epsilon, s.sinkhorn_iters)
            for r, part in enumerate(q.split([len(x) for x in rows])):
                codes[r].append(part[:BATCH // 2])
        loss = sum(swapped_by_hand(codes[r], scores[r], s.temperature) for r in (0, 1)) / 2
        optimiser.zero_grad()
        loss.backward()
        if i // PER_EPOCH < s.freeze_prototypes_epochs:
            method.prototypes.weight.grad = None
        optimiser.step()
        losses.append(loss.item())
        queues = [torch.cat([torch.stack([v.detach() for v in z[r][:2]]), queues[r]], dim=1)[:, :length] for r in (0, 1)]
    np.testing.assert_allclose(run["losses"], losses, rtol=1e-9, atol=1e-12)
    for r in (0, 1):
        torch.testing.assert_close(run["ranks"][r]["queue"], queues[r], atol=1e-9, rtol=1e-9)
        assert int(run["ranks"][r]["queued"]) == STEPS * BATCH // 2
    assert (queues[0] - queues[1]).abs().max() > 1e-2  # the ranks saw different images: their queues differ, far beyond the tolerance


def test_the_teachers_follow_their_students():
    for name in ("byol", "mira"):
        method = tiny_method(name)
        trained, _, _ = reference_run(name, "plain", make_steps()[:1])
        moved = [k for k, v in trained.state_dict().items() if k.startswith("teacher.") and not torch.equal(v, method.state_dict()[k])]
        assert moved, f"{name}: the EMA update moved nothing"
