"""Convergence of MIRA's fixed point and Sinkhorn-Knopp (a reproduction of MIRA's Fig. 2).

For each batch of logits the sum-squared error SSE(n) = ||W_n - W_1000||^2 between the
assignment after n iterations and the 1000-iteration solution is recorded, for
`infomax.assign.mira` (tau_t=0.225, beta=2/3) and `infomax.assign.sinkhorn` (epsilon=0.05),
then averaged over batches. Both assigners return rows summing to one, so the SSEs compare.

Both iterations have a K-vector state from which W_n is a row softmax:
MIRA:     W_n = softmax_j(log p_ij / a - (beta/a) log u_nj), a = 1 - beta (Eq. 4), the u_n coming
          from one `mira(..., iters=1000, return_marginals=True)` call;
Sinkhorn: Q_n = softmax_j(S_ij / eps + b_nj), and `sinkhorn(eps * log Q_n, iters=1)` is exactly
          iteration n+1, so single-iteration library calls are chained and b_n (the column mean
          of log Q_n - S / eps, up to a constant) kept.
On the first batch both are checked against direct library calls with `iters=n`.
SSE is evaluated at every n <= 30 and at log-spaced n beyond, and densely wherever a curve
first crosses the 1e-6 threshold, so the iteration counts reported are exact.

Synthetic logits (`synthetic_logits`), standing in for a trained model's teacher scores:
K prototypes are uniform random unit vectors in R^dim; `used` of them are cluster centres
whose popularity follows Zipf's law (weight of the r-th centre ~ r^-zipf), so a batch covers
a few hundred clusters very unevenly and most prototypes own no sample. Each embedding is
normalise(prototype_c + sigma * g / sqrt(dim)), g ~ N(0, I), with sigma drawn per sample
uniformly from `noise`, so some samples sit close to their prototype (cosine ~0.95) and others
are ambiguous (~0.7). The logits are the cosine similarities embedding . prototype, in [-1, 1].
The default dim=128 matches SwAV/MIRA's projection; a lower dim spreads the off-target
cosines (sd ~ 1/sqrt(dim)), which slows Sinkhorn much more than MIRA (see the dim sweep).
`--logits FILE.safetensors` replaces them by a stored (N, K) tensor (e.g. model outputs):
N <= batch size gives one batch, otherwise random batches of rows are drawn.

    python benchmarks/assign_convergence.py [--batches 3] [--logits scores.safetensors --key NAME]

Trained logits (MIRA's Fig. 2 compares on those): `--trained RUN[,RUN]` takes pretrain runs of mira
and swav (e.g. benchmarks/pretrain_leaderboard.py's runs/leaderboard/mira-0 and swav-0), stores the
scores their assigner sees in training, `--batches` batches of the training batch size (MIRA: the EMA
teacher's prototype scores of the first global crop; SwAV: the model's), as RUN/assigner_logits.safetensors,
and measures MIRA (both initialisations) and Sinkhorn on the same logits of each run, each batch as it
would be assigned in training. Output: results/assign_convergence_trained.{md,json,png}.

    python benchmarks/assign_convergence.py --trained runs/leaderboard/mira-0,runs/leaderboard/swav-0 --batches 50
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from infomax.assign import mira, sinkhorn

TABLE_N = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500)
THRESHOLD = 1e-6
TINY = 1e-300


def synthetic_logits(num_batches, batch_size=512, prototypes=3000, dim=128, used=1000, zipf=1.0,
                     noise=(0.3, 1.0), seed=0):
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


class Trajectory(NamedTuple):
    base: torch.Tensor  # (B, K)
    shifts: torch.Tensor  # (iters, K): row n-1 is the state after n iterations
    reference: torch.Tensor  # (B, K): the assignment after `iters` iterations

    def sse(self, n: int) -> float:
        return float((torch.softmax(self.base + self.shifts[n - 1], dim=1) - self.reference).square().sum())


def mira_trajectory(logits, temperature, beta, iters, check=(), init="mean"):
    ref, u = mira(logits, temperature=temperature, beta=beta, iters=iters, return_marginals=True, init=init)
    a = 1 - beta
    t = Trajectory(torch.log_softmax(logits / temperature, dim=1) / a, -(beta / a) * u[1:].clamp_min(TINY).log(), ref)
    for n in check:
        direct = mira(logits, temperature=temperature, beta=beta, iters=n, init=init)
        torch.testing.assert_close(torch.softmax(t.base + t.shifts[n - 1], dim=1), direct, rtol=1e-9, atol=1e-12)
    return t


def sinkhorn_trajectory(scores, epsilon, iters, check=()):
    base, q, shifts, direct = scores / epsilon, sinkhorn(scores, epsilon, iters=1), [], {}
    base_mean = base.mean(dim=0)
    for n in range(1, iters + 1):
        if n in check:
            direct[n] = q
        log_q = q.clamp_min(TINY).log()
        shifts.append(log_q.mean(dim=0) - base_mean)
        if n < iters:
            q = sinkhorn(epsilon * log_q, epsilon, iters=1)
    for n, q_n in direct.items():
        torch.testing.assert_close(q_n, sinkhorn(scores, epsilon, iters=n), rtol=1e-9, atol=1e-12)
    return Trajectory(base, torch.stack(shifts), q)


class Curve:
    """SSE(n) of several batches' trajectories, evaluated lazily at the n asked for."""

    def __init__(self, trajectories):
        self.trajectories, self.values = trajectories, {}

    def at(self, n):
        if n not in self.values:
            self.values[n] = torch.tensor([t.sse(n) for t in self.trajectories], dtype=torch.float64)
        return self.values[n]

    def first_below(self, points, reduce, threshold=THRESHOLD):
        prev = 0
        for n in points:
            if reduce(self.at(n)) <= threshold:
                return next(m for m in range(prev + 1, n + 1) if reduce(self.at(m)) <= threshold)
            prev = n
        return None

    def summary(self):
        ns = sorted(self.values)
        stack = torch.stack([self.values[n] for n in ns])
        return {"n": ns, "mean": stack.mean(1).tolist(), "min": stack.min(1).values.tolist(),
                "max": stack.max(1).values.tolist()}


def sample_points(iters):
    geometric = torch.logspace(math.log10(30), math.log10(iters - 1), 60).round().long().tolist() if iters > 31 else []
    return sorted({*range(1, min(30, iters - 1) + 1), *geometric, *(n for n in TABLE_N if n < iters)})


def measure(batches, args, check=(1, 3, 30), both_inits=False):
    """Curves for MIRA (the paper's u_0 = mean p; with `both_inits` also the authors' code's u_0) and Sinkhorn."""
    check = tuple(n for n in check if n <= args.iters)
    runs = {"MIRA": [], **({"MIRA-code-init": []} if both_inits else {}), "Sinkhorn": []}
    for i, logits in enumerate(batches):
        c = check if i == 0 else ()
        runs["MIRA"].append(mira_trajectory(logits, args.temperature, args.beta, args.iters, c))
        if both_inits:
            runs["MIRA-code-init"].append(mira_trajectory(logits, args.temperature, args.beta, args.iters, c, init="sharpened"))
        runs["Sinkhorn"].append(sinkhorn_trajectory(logits, args.epsilon, args.iters, c))
    curves = {m: Curve(t) for m, t in runs.items()}
    points = sample_points(args.iters)
    reach = {m: {"mean": c.first_below(points, torch.mean), "worst_batch": c.first_below(points, torch.max)}
             for m, c in curves.items()}
    for c in curves.values():
        for n in points:
            c.at(n)
    return {m: c.summary() for m, c in curves.items()}, reach


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, {platform.system()} {platform.release()}"


def fmt_iters(n, iters):
    return str(n) if n is not None else f"> {iters}"


def write_markdown(path, meta, curves, reach, sweep):
    iters, names = meta["iters"], list(curves)
    table = [f"| n | " + " | ".join(f"{m} mean SSE" for m in names) + " |", "|---:|" + "---:|" * len(names)]
    for n in TABLE_N:
        if n < iters:
            table.append(f"| {n} | " + " | ".join(
                f"{curves[m]['mean'][curves[m]['n'].index(n)]:.3e}" for m in names) + " |")
    hits = ["| method | mean curve | worst batch |", "|---|---:|---:|"]
    hits += [f"| {m} | {fmt_iters(r['mean'], iters)} | {fmt_iters(r['worst_batch'], iters)} |" for m, r in reach.items()]
    lines = [
        "# Assignment convergence: MIRA vs Sinkhorn-Knopp (MIRA paper, Fig. 2)", "",
        f"SSE between the assignment after n iterations and the {iters}-iteration solution, averaged over "
        f"{meta['batches']} batches of {meta['batch_size']} x {meta['prototypes']} logits ({meta['source']}). "
        f"MIRA: tau_t = {meta['mira']['temperature']}, beta = {meta['mira']['beta']:.4f}; "
        f"Sinkhorn-Knopp: epsilon = {meta['sinkhorn']['epsilon']}. "
        f"Produced by `benchmarks/assign_convergence.py`; curves in `{path.stem}.json`, "
        f"plot in `{path.stem}.png` (written by the script, not kept in git).", "", *table, "",
        f"Iterations needed to reach SSE <= {THRESHOLD:g}:", "", *hits, "",
        f"SSE is 0 at n = {iters} by construction; \"> {iters}\" would mean never below the threshold before that. "
        "Values around 1e-28 to 1e-32 are the float64 rounding floor.",
    ]
    if sweep:
        lines += ["", f"Sensitivity to the generator's dimension (1 batch each, reference = {meta['sweep_iters']} "
                  "iterations, iterations to SSE <= 1e-6 and SSE at n = 10):", "",
                  "| dim | MIRA iters | Sinkhorn iters | MIRA SSE(10) | Sinkhorn SSE(10) |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {s['dim']} | {fmt_iters(s['MIRA'], meta['sweep_iters'])} | "
                  f"{fmt_iters(s['Sinkhorn'], meta['sweep_iters'])} | {s['MIRA_sse10']:.1e} | {s['Sinkhorn_sse10']:.1e} |"
                  for s in sweep]
    lines += ["", f"- machine: {meta['machine']}", f"- torch {meta['torch']}, python {meta['python']}",
              f"- date: {meta['date']}", f"- seed: {meta['seed']}; runtime {meta['seconds']:.0f} s", ""]
    path.write_text("\n".join(lines))


def plot(path, curves, meta):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-33
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, c), colour in zip(curves.items(), ("tab:blue", "tab:orange")):
        clip = lambda v: [max(x, floor) for x in v]  # noqa: E731
        ax.plot(c["n"], clip(c["mean"]), color=colour, label=f"{name} ({meta[name.lower()]['label']})")
        ax.fill_between(c["n"], clip(c["min"]), clip(c["max"]), color=colour, alpha=0.2, linewidth=0)
    ax.axhspan(floor, 1e-26, color="0.92", zorder=0, label="float64 rounding floor")
    ax.axhline(THRESHOLD, color="grey", linestyle=":", linewidth=1, label=f"SSE = {THRESHOLD:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("iterations n")
    ax.set_ylabel(f"SSE to the {meta['iters']}-iteration solution")
    ax.set_title(f"MIRA vs Sinkhorn-Knopp convergence, B={meta['batch_size']}, K={meta['prototypes']}\n"
                 f"mean and min-max over {meta['batches']} batches ({meta['source_short']})", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def assigner_logits(run: Path, num_batches: int, seed: int = 0) -> torch.Tensor:
    """(num_batches * B, K) scores of a trained mira or swav run, as its assigner saw them in training."""
    from safetensors.torch import save_file

    from infomax import config as C
    from infomax import methods
    from infomax.data.dataset import load_dataset
    from infomax.data.views import get_view_set, make_views
    from infomax.engine.pretrain import build_method
    from infomax.runs.rundir import load_tensors

    path = run / "assigner_logits.safetensors"
    if path.exists():
        return load_tensors(path)["logits"]
    config = C.load(run / "config.yaml")
    if config.method_name not in ("mira", "swav"):
        raise SystemExit(f"{run} trains {config.method_name}; --trained takes mira and swav runs.")
    method = build_method(config, world=1)
    state = load_tensors(run / "state.safetensors")
    method.load_state_dict({k[len("model/method/"):]: v for k, v in state.items() if k.startswith("model/method/")})
    method = getattr(method, "base", method)  # a run made with --add: the assigner lives in the wrapped method
    train = load_dataset(config.data.dataset, "train", config.data.data_root)
    recipe = get_view_set(config.data.views or methods.METHODS[config.method_name].default_views, config.data.resolution,
                        **config.data.view_options)[:1]
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(train.labels), generator=g)[: num_batches * config.optim.batch_size].view(num_batches, -1)
    parts = method.teacher if config.method_name == "mira" else method.student()
    out = []
    with torch.no_grad():  # train mode, as in training: batch norm on batch statistics
        for index in rows:
            view = make_views(torch.from_numpy(train.images[index.sort().values.numpy()]), recipe, g)
            out.append(method.scores(parts, view)[1][0].double())
    logits = torch.cat(out)
    save_file({"logits": logits.contiguous()}, str(path), metadata={"batch_size": str(config.optim.batch_size)})
    return logits


def trained(args) -> None:
    start, record = time.time(), {}
    for run in map(Path, args.trained.split(",")):
        logits = assigner_logits(run, args.batches, args.seed)
        from infomax import config as C

        b = C.load(run / "config.yaml").optim.batch_size
        batches = list(logits.split(b))
        curves, reach = measure(batches, args, both_inits=True)
        record[run.name] = {"curves": curves, "reach": reach, "batches": len(batches), "batch_size": b, "prototypes": logits.shape[1]}
        print(f"{run.name}: {reach} ({time.time() - start:.0f} s)", flush=True)
    meta = {"iters": args.iters, "threshold": THRESHOLD, "mira": {"temperature": args.temperature, "beta": args.beta},
            "sinkhorn": {"epsilon": args.epsilon}, "machine": machine(), "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seconds": time.time() - start}
    stem = Path(__file__).parent / "results" / "assign_convergence_trained"
    Path(f"{stem}.json").write_text(json.dumps({"meta": meta, "runs": record}, indent=1))
    write_trained(Path(f"{stem}.md"), meta, record)
    plot_trained(Path(f"{stem}.png"), meta, record)
    print(Path(f"{stem}.md").read_text())


NAMES = {"MIRA": "MIRA, paper's u0 = mean p", "MIRA-code-init": "MIRA, authors' code's u0", "Sinkhorn": "Sinkhorn-Knopp"}


def write_trained(path: Path, meta: dict, record: dict) -> None:
    iters = meta["iters"]
    lines = ["# Assignment convergence on trained logits: MIRA vs Sinkhorn-Knopp (MIRA paper, Fig. 2)", "",
             f"SSE between the assignment after n iterations and the {iters}-iteration solution, on the scores each trained "
             "run's assigner sees in training (MIRA: its EMA teacher's prototype scores of a global crop; SwAV: its own), "
             "one batch of the training batch size at a time, averaged over batches. Both assigners run on the same "
             f"logits of each run. MIRA: tau_t = {meta['mira']['temperature']}, beta = {meta['mira']['beta']:.4f}; "
             f"Sinkhorn-Knopp: epsilon = {meta['sinkhorn']['epsilon']}. The runs are benchmarks/pretrain_leaderboard.py's "
             "(CPU recipes on CIFAR-10). Rerun: `python benchmarks/assign_convergence.py --trained "
             "runs/leaderboard/mira-0,runs/leaderboard/swav-0 --batches 50`.", ""]
    for name, r in record.items():
        lines += [f"## Logits of {name} ({r['batches']} batches of {r['batch_size']} x {r['prototypes']})", "",
                  "| assigner | iterations to SSE <= 1e-6 (mean curve) | worst batch | SSE(1) | SSE(3) | SSE(10) | SSE(30) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for key, c in r["curves"].items():
            at = lambda n: c["mean"][c["n"].index(n)]  # noqa: E731
            lines.append(f"| {NAMES[key]} | {fmt_iters(r['reach'][key]['mean'], iters)} | "
                         f"{fmt_iters(r['reach'][key]['worst_batch'], iters)} | {at(1):.2e} | {at(3):.2e} | {at(10):.2e} | {at(30):.2e} |")
        lines.append("")
    lines += [f"- machine: {meta['machine']}, torch {meta['torch']}, {meta['date']}, {meta['seconds']:.0f} s", ""]
    path.write_text("\n".join(lines))


def plot_trained(path: Path, meta: dict, record: dict) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(record), 4.2), layout="constrained")
    axes = fig.subplots(1, len(record), squeeze=False)[0]
    for ax, (name, r) in zip(axes, record.items()):
        for (key, c), colour in zip(r["curves"].items(), ("tab:blue", "tab:green", "tab:orange")):
            clip = [max(v, 1e-33) for v in c["mean"]]
            ax.plot(c["n"], clip, color=colour, label=NAMES[key])
            ax.fill_between(c["n"], [max(v, 1e-33) for v in c["min"]], [max(v, 1e-33) for v in c["max"]], color=colour, alpha=0.15, lw=0)
        ax.axhline(THRESHOLD, color="grey", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="iterations n", ylabel=f"SSE to the {meta['iters']}-iteration solution",
               title=f"logits of {name} ({r['batches']} batches)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--prototypes", type=int, default=3000)
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension of the synthetic generator")
    parser.add_argument("--iters", type=int, default=1000, help="iterations of the reference solution")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.225)
    parser.add_argument("--beta", type=float, default=2 / 3)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--sweep-dims", default="64,32", help="extra generator dims, 1 batch each ('' for none)")
    parser.add_argument("--sweep-iters", type=int, default=200)
    parser.add_argument("--logits", type=Path, help="safetensors file with an (N, K) tensor of scores")
    parser.add_argument("--key", help="tensor name inside --logits")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "assign_convergence")
    parser.add_argument("--trained", help="comma-separated mira/swav pretrain run directories (see the docstring)")
    args = parser.parse_args(argv)
    if args.trained:
        return trained(args)

    start = time.time()
    if args.logits:
        batches = file_logits(args.logits, args.batches, args.batch_size, args.key, args.seed)
        source = short = f"logits from {args.logits.name}"
    else:
        batches = synthetic_logits(args.batches, args.batch_size, args.prototypes, args.dim, seed=args.seed)
        source = f"synthetic clustered cosine similarities, dim {args.dim}, generator in the script's docstring"
        short = f"synthetic clustered cosines, dim {args.dim}"
    curves, reach = measure(batches, args)
    print(f"main study: {time.time() - start:.0f} s", flush=True)

    sweep = []
    if not args.logits:
        sweep_args = argparse.Namespace(**{**vars(args), "iters": args.sweep_iters})
        for dim in [int(d) for d in args.sweep_dims.split(",") if d]:
            logits = synthetic_logits(1, args.batch_size, args.prototypes, dim, seed=args.seed)
            c, r = measure(logits, sweep_args, check=())
            sweep.append({"dim": dim, **{m: r[m]["mean"] for m in r},
                          **{f"{m}_sse10": c[m]["mean"][c[m]["n"].index(10)] for m in c}})
            print(f"sweep dim {dim}: {time.time() - start:.0f} s", flush=True)

    meta = {
        "batches": len(batches), "batch_size": batches[0].shape[0], "prototypes": batches[0].shape[1],
        "iters": args.iters, "sweep_iters": args.sweep_iters, "seed": args.seed,
        "source": source, "source_short": short,
        "mira": {"temperature": args.temperature, "beta": args.beta,
                 "label": f"tau_t={args.temperature}, beta={args.beta:.3g}"},
        "sinkhorn": {"epsilon": args.epsilon, "label": f"epsilon={args.epsilon}"},
        "threshold": THRESHOLD, "iterations_to_threshold": reach, "dim_sweep": sweep,
        "machine": machine(), "torch": torch.__version__, "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.time() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps({"meta": meta, "sse": curves}, indent=1))
    write_markdown(Path(f"{args.out}.md"), meta, curves, reach, sweep)
    plot(Path(f"{args.out}.png"), curves, meta)
    print(Path(f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
