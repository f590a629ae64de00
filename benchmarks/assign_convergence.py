"""Convergence of MIRA's fixed point and Sinkhorn-Knopp (a reproduction of MIRA's Fig. 2).

For each batch of logits the sum-squared error SSE(n) = ||W_n - W_1000||^2 between the
assignment after n iterations and the 1000-iteration solution is recorded, for
`infomax.assign.mira` (tau_t=0.225, beta=2/3) and `infomax.assign.sinkhorn` (epsilon=0.05),
then averaged over batches. Both assigners return rows summing to one, so the SSEs compare.

MIRA: one `mira(..., iters=1000, return_marginals=True)` call gives the marginal u_n after
every iteration; W_n = softmax_j(log p_ij / a - (beta/a) log u_nj), a = 1 - beta (Eq. 4), is
what `mira(..., iters=n)` returns. Sinkhorn: the state after n iterations is a row
softmax of S/eps + b_n for a per-prototype vector b_n, so `sinkhorn(eps * log Q_n, iters=1)`
is exactly iteration n+1; the benchmark chains single-iteration library calls and keeps b_n.
Both shortcuts are checked against direct calls with `iters=n` on the first batch.

Synthetic logits (`synthetic_logits`), standing in for a trained model's teacher scores:
K prototypes are uniform random unit vectors in R^dim; `used` of them are cluster centres
whose popularity follows Zipf's law (weight of the r-th centre ~ r^-zipf), so a batch covers
a few hundred clusters very unevenly and most prototypes own no sample. Each embedding is
normalise(prototype_c + sigma * g / sqrt(dim)), g ~ N(0, I), with sigma drawn per sample
uniformly from `noise`, so some samples sit close to their prototype and others are ambiguous.
The logits are the cosine similarities embedding . prototype, in [-1, 1].
`--logits FILE.safetensors` replaces them by a stored (N, K) tensor (e.g. model outputs):
N <= batch size gives one batch, otherwise random batches of rows are drawn.

    python benchmarks/assign_convergence.py [--batches 3] [--logits scores.safetensors]
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from infomax.assign import mira, sinkhorn

TABLE_N = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500)
THRESHOLD = 1e-6
TINY = 1e-300


def synthetic_logits(num_batches, batch_size=512, prototypes=3000, dim=128, used=1000, zipf=1.0,
                     noise=(0.8, 2.0), seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(prototypes, dim, generator=g, dtype=torch.float64), dim=1)
    centres = torch.randperm(prototypes, generator=g)[:used]
    popularity = torch.arange(1, used + 1, dtype=torch.float64) ** -zipf
    batches = []
    for _ in range(num_batches):
        c = centres[torch.multinomial(popularity, batch_size, replacement=True, generator=g)]
        sigma = noise[0] + (noise[1] - noise[0]) * torch.rand(batch_size, 1, generator=g, dtype=torch.float64)
        z = protos[c] + sigma * torch.randn(batch_size, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
        batches.append(F.normalize(z, dim=1) @ protos.T)
    return batches


def file_logits(path, num_batches, batch_size=512, key=None, seed=0):
    from safetensors.torch import load_file

    tensors = load_file(path)
    if key is None:
        if len(tensors) != 1:
            raise SystemExit(f"{path} holds tensors {sorted(tensors)}; choose one with --key.")
        key = next(iter(tensors))
    x = tensors[key].double()
    if x.ndim != 2:
        raise SystemExit(f"{path}:{key} must be (N, K), got shape {tuple(x.shape)}.")
    if x.shape[0] <= batch_size:
        return [x]
    g = torch.Generator().manual_seed(seed)
    return [x[torch.randperm(x.shape[0], generator=g)[:batch_size]] for _ in range(num_batches)]


def sse_curve(base, shifts, reference):
    return torch.stack([(torch.softmax(base + s, dim=1) - reference).square().sum() for s in shifts])


def mira_curve(logits, temperature, beta, iters, check=()):
    ref, u = mira(logits, temperature=temperature, beta=beta, iters=iters, return_marginals=True)
    a = 1 - beta
    base = torch.log_softmax(logits / temperature, dim=1) / a
    shifts = -(beta / a) * u.clamp_min(TINY).log()
    for n in check:
        direct = mira(logits, temperature=temperature, beta=beta, iters=n)
        torch.testing.assert_close(torch.softmax(base + shifts[n], dim=1), direct, rtol=1e-9, atol=1e-12)
    return sse_curve(base, shifts, ref)


def sinkhorn_state(q, base):
    d = q.clamp_min(TINY).log() - base
    return (d - d.mean(dim=1, keepdim=True)).mean(dim=0)


def sinkhorn_curve(scores, epsilon, iters, check=()):
    base = scores / epsilon
    q, shifts, direct = sinkhorn(scores, epsilon, iters=1), [], {}
    for n in range(1, iters + 1):
        if n > 1:
            q = sinkhorn(epsilon * q.clamp_min(TINY).log(), epsilon, iters=1)
        shifts.append(sinkhorn_state(q, base))
        if n in check:
            direct[n] = q
    for n, q_n in direct.items():
        torch.testing.assert_close(q_n, sinkhorn(scores, epsilon, iters=n), rtol=1e-9, atol=1e-12)
    return torch.cat([torch.full((1,), math.nan, dtype=torch.float64), sse_curve(base, shifts, q)])


def iterations_to(curve, threshold=THRESHOLD):
    hit = (curve[1:] <= threshold).nonzero()
    return int(hit[0]) + 1 if len(hit) else None


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, {platform.system()} {platform.release()}"


def summarise(curves):
    stack = torch.stack(curves)
    return {"mean": stack.mean(0), "min": stack.min(0).values, "max": stack.max(0).values}


def fmt_iters(n, iters):
    return str(n) if n is not None else f"> {iters}"


def write_markdown(path, meta, stats, iters):
    names = list(stats)
    rows = [f"| n | " + " | ".join(f"{m} mean SSE" for m in names) + " |", "|---:|" + "---:|" * len(names)]
    for n in TABLE_N:
        if n <= iters:
            rows.append(f"| {n} | " + " | ".join(f"{stats[m]['mean'][n].item():.3e}" for m in names) + " |")
    reach = ["| method | mean curve | worst batch |", "|---|---:|---:|"]
    for m in names:
        reach.append(f"| {m} | {fmt_iters(meta['iterations_to_threshold'][m]['mean'], iters)} "
                     f"| {fmt_iters(meta['iterations_to_threshold'][m]['worst_batch'], iters)} |")
    text = f"""# Assignment convergence: MIRA vs Sinkhorn-Knopp (MIRA paper, Fig. 2)

SSE between the assignment after n iterations and the {iters}-iteration solution, averaged over
{meta['batches']} batches of {meta['batch_size']} x {meta['prototypes']} logits ({meta['source']}).
MIRA: tau_t = {meta['mira']['temperature']}, beta = {meta['mira']['beta']:.4f}. Sinkhorn-Knopp: epsilon = {meta['sinkhorn']['epsilon']}.
Generated by `benchmarks/assign_convergence.py`; curves in `assign_convergence.json`, plot in `assign_convergence.png`.

{chr(10).join(rows)}

Iterations needed to reach SSE <= {THRESHOLD:g}:

{chr(10).join(reach)}

SSE is measured against iteration {iters}, so it is 0 there by construction; "> {iters}" means never below the threshold before that.

- machine: {meta['machine']}
- torch {meta['torch']}, python {meta['python']}
- date: {meta['date']}
- seed: {meta['seed']}; runtime {meta['seconds']:.0f} s
"""
    path.write_text(text)


def plot(path, stats, meta):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iters = meta["iters"]
    n = torch.arange(iters)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, s), colour in zip(stats.items(), ("tab:blue", "tab:orange")):
        label = f"{name} ({meta[name.lower()]['label']})"
        ax.plot(n[1:], s["mean"][1:iters], color=colour, label=label)
        ax.fill_between(n[1:], s["min"][1:iters], s["max"][1:iters], color=colour, alpha=0.2, linewidth=0)
    ax.axhline(THRESHOLD, color="grey", linestyle=":", linewidth=1, label=f"SSE = {THRESHOLD:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("iterations n")
    ax.set_ylabel(f"SSE to the {iters}-iteration solution")
    ax.set_title(f"Assignment convergence, B={meta['batch_size']}, K={meta['prototypes']} "
                 f"(mean, min-max band over {meta['batches']} batches)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--prototypes", type=int, default=3000)
    parser.add_argument("--iters", type=int, default=1000, help="iterations of the reference solution")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.225)
    parser.add_argument("--beta", type=float, default=2 / 3)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--logits", type=Path, help="safetensors file with an (N, K) tensor of scores")
    parser.add_argument("--key", help="tensor name inside --logits")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "assign_convergence")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    start = time.time()
    if args.logits:
        batches = file_logits(args.logits, args.batches, args.batch_size, args.key, args.seed)
        source = f"from {args.logits.name}"
    else:
        batches = synthetic_logits(args.batches, args.batch_size, args.prototypes, seed=args.seed)
        source = "synthetic clustered cosine similarities, see the script's docstring"
    check = tuple(n for n in (1, 3, 30) if n <= args.iters)
    curves = {"MIRA": [], "Sinkhorn": []}
    for i, logits in enumerate(batches):
        curves["MIRA"].append(mira_curve(logits, args.temperature, args.beta, args.iters, check if i == 0 else ()))
        curves["Sinkhorn"].append(sinkhorn_curve(logits, args.epsilon, args.iters, check if i == 0 else ()))
        print(f"batch {i + 1}/{len(batches)}: {time.time() - start:.0f} s", flush=True)
    stats = {m: summarise(c) for m, c in curves.items()}

    meta = {
        "batches": len(batches), "batch_size": batches[0].shape[0], "prototypes": batches[0].shape[1],
        "iters": args.iters, "seed": args.seed, "source": source,
        "mira": {"temperature": args.temperature, "beta": args.beta, "label": f"tau_t={args.temperature}, beta={args.beta:.3g}"},
        "sinkhorn": {"epsilon": args.epsilon, "label": f"epsilon={args.epsilon}"},
        "threshold": THRESHOLD,
        "iterations_to_threshold": {
            m: {"mean": iterations_to(s["mean"]), "worst_batch": iterations_to(s["max"])} for m, s in stats.items()
        },
        "machine": machine(), "torch": torch.__version__, "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.time() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    curves_json = {
        m: {k: [None if math.isnan(v) else v for v in t.tolist()] for k, t in s.items()} for m, s in stats.items()
    }
    Path(f"{args.out}.json").write_text(json.dumps({"meta": meta, "n": list(range(args.iters + 1)), "sse": curves_json}))
    write_markdown(Path(f"{args.out}.md"), meta, stats, args.iters)
    plot(Path(f"{args.out}.png"), stats, meta)
    print(Path(f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
