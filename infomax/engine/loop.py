"""The one training loop, on Lightning Fabric, for every method. It knows no method by name.

Per optimiser step: the lr factor of the step (engine/optim.py), then for each of the method's
stages `terms = model(batch, stage, carry)`, backward through Fabric (DDP all-reduces the
gradients), `method.on_before_optimiser_step(stage)` (SwAV drops its frozen prototypes' gradient),
optional clipping, that stage's optimiser step; then `method.on_step_end`. `method.on_epoch_start`
runs when an epoch starts or resumes.
A `batches` source gives `len()` batches per epoch through `epoch(epoch, skip)` and keeps its own
random state (`state_dict`). Checkpoints (runs/checkpoint.py: weights, optimiser moments, step,
every rank's RNG and the source's state, one atomic safetensors file) are written every
`checkpoint_every` steps, at each epoch end, at the end, and on SIGINT/SIGTERM/SIGUSR1 (SIGUSR1, SLURM's
warning before the time limit, also requeues the job: runs/slurm.py); a resumed run
repeats the uninterrupted one step for step (with fp32 or bf16; a resume that asks for more epochs
goes on from the lr it stands at: Schedule stretches the rest of the schedule over the new steps). A non-finite loss stops the run before the
optimiser steps, naming the term and the step, so the last checkpoint stays good.
"""
from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .._validate import checks
from ..runs import rundir, slurm
from ..runs.checkpoint import load_extra, load_training_state, rng_state, save_training_state, set_rng_state
from .optim import lr_factor, set_lr

STATE = "state.safetensors"
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


class NonFiniteLoss(FloatingPointError):
    pass


class Interrupted(KeyboardInterrupt):
    pass


@dataclass
class Schedule:
    """The lr factor per step; pretrain builds it from ScheduleConfig (where the defaults live), finetune from its config.

    A run extended on resume (more epochs or steps) keeps the lr it stands at: what was left of its schedule
    after the resume step is stretched in time over the new remaining steps (`stretches`: (resume step,
    total steps before it) per extension), so the cosine goes on from the same lr, only more slowly.
    """

    total_steps: int
    warmup_steps: int
    warmup_start: float
    decay: str
    final_factor: float
    stretches: tuple[tuple[int, int], ...] = ()

    def factor(self, step: int) -> float:
        t, total = float(step), self.total_steps
        for start, before in reversed(self.stretches):
            if t > start:
                t = start + (t - start) * (before - start) / (total - start)
            total = before
        return lr_factor(t, total, self.warmup_steps, self.warmup_start, self.decay, self.final_factor)

    def record(self) -> dict:
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "stretches": [list(s) for s in self.stretches]}

    def resumed(self, saved: dict | None, step: int) -> "Schedule":
        """This schedule for a run resumed at `step` whose checkpoint recorded `saved` (None: a checkpoint from
        before records, taken as it is). A longer run stretches the rest of the saved schedule."""
        if not saved:
            return self
        stretches, warmup = tuple(tuple(s) for s in saved["stretches"]), saved["warmup_steps"]
        before = Schedule(saved["total_steps"], warmup, self.warmup_start, self.decay, self.final_factor, stretches)
        if self.total_steps == before.total_steps or step > self.total_steps:
            return before
        if step >= before.total_steps and self.decay == "cosine" and self.final_factor == 0:
            raise ValueError(f"this run finished its {before.total_steps}-step schedule, its cosine down to lr 0; more steps "
                             "would train at lr 0. Train it further with `infomax continue --init` and this run's folder (a "
                             "new schedule at a fraction of the lr), or start a longer run.")
        return Schedule(self.total_steps, warmup, self.warmup_start, self.decay, self.final_factor,
                        (*stretches, (step, before.total_steps)))


class Loop:
    """`Loop(fabric, model, optimisers, batches, schedule, run, out).fit(resume)`.

    `model` is the method as `fabric.setup` returned it; `optimisers` maps each stage to its
    (set-up) optimiser; `run` is a RunConfig; `monitors` are callables `(loop, epoch) -> dict`
    run after every epoch on every rank (their metrics are logged); a monitor with `learn(loop, batch,
    features, lr_factor)` (the online linear probe) also learns after every step from the detached backbone
    features of the step's first view, and its `state_dict` joins the checkpoint; `watch` callables
    `(loop, terms) -> dict` run on logged steps.
    """

    def __init__(self, fabric, model, optimisers: dict, batches, schedule: Schedule, run, out: Path,
                 monitors: tuple[Callable, ...] = (), watch: tuple[Callable, ...] = (), name: str = "train",
                 clip_grad: float | None = None):
        self.fabric, self.model, self.optimisers, self.batches = fabric, model, optimisers, batches
        self.method = getattr(model, "module", model)
        self.schedule, self.run, self.out, self.name = schedule, run, Path(out), name
        self.monitors, self.watch, self.clip_grad = monitors, watch, clip_grad
        self.probes = tuple(m for m in monitors if hasattr(m, "learn"))
        self._segment_start: float | None = None
        self._bar = None
        self.step, self.seconds, self.last_terms = 0, 0.0, {}
        self._stop: int | None = None
        self._waited, self._since = 0.0, time.perf_counter()
        self._restored = False
        missing = [s for s in self.method.stages if s not in optimisers]
        if missing:
            raise ValueError(f"no optimiser for the method's stage(s) {missing}.")

    # ------------------------------------------------------------ one step

    def train_step(self, batch) -> dict[str, torch.Tensor]:
        factor = self.schedule.factor(self.step)
        logging = (self.step + 1) % self.run.log_every == 0 or self.step + 1 == self.schedule.total_steps
        carry, record, last, features = None, {}, {}, None
        self.model.train()
        for stage in self.method.stages:
            optimiser = self.optimisers[stage]
            lr = set_lr(optimiser, factor)
            with checks(False):  # one finiteness check per stage below, not one host sync per term
                terms = self.model(batch, stage, carry)
            optimiser.zero_grad(set_to_none=True)
            self.fabric.backward(terms["loss"])
            embeddings = terms.pop("_embeddings", None)  # the add-ons' inputs, graph and all: not kept past the backward
            if features is None and embeddings and "backbone" in embeddings:
                features = embeddings["backbone"][0].detach()
            self.method.on_before_optimiser_step(stage)
            if self.clip_grad:
                self.fabric.clip_gradients(self.model, optimiser, max_norm=self.clip_grad)
            grad_norm = _grad_norm(optimiser)
            self._check_finite(terms, grad_norm, stage)  # before the step: a bad gradient never reaches the weights
            if logging:
                record[self._key(stage, "grad_norm")] = grad_norm
                record[self._key(stage, "lr")] = lr
            optimiser.step()
            record.update({self._key(stage, "loss" if k == "loss" else f"loss/{k}"): v.detach()
                           for k, v in terms.items() if not k.startswith("_")})
            last.update({self._key(stage, k): v for k, v in terms.items()})
            carry = terms
        self.method.on_step_end(self.step, self.schedule.total_steps)
        for probe in self.probes if features is not None else ():
            probe.learn(self, batch, features, factor)
            if logging:
                record["linear/loss"] = probe.loss
        self.step += 1
        self.last_terms = last  # every stage's terms, named as in the log
        if logging:
            self._log(record, carry)
        return carry

    def _key(self, stage: str, name: str) -> str:
        """Metric names: the first stage's plain ("loss", "loss/task"), later stages' prefixed ("discriminator/loss")."""
        return name if stage == self.method.stages[0] else f"{stage}/{name}"

    def _check_finite(self, terms: dict, grad_norm: torch.Tensor, stage: str) -> None:
        """Stop (on every rank alike) when the loss or the gradient is not finite, naming the terms and the step."""
        bad = torch.stack([~torch.isfinite(terms["loss"].detach()), ~torch.isfinite(grad_norm)]).float()
        if self.fabric.world_size > 1:
            bad = self.fabric.all_reduce(bad, reduce_op="sum")
        if float(bad.sum()) > 0:
            named = [k for k, v in terms.items() if not k.startswith("_") and not torch.isfinite(v.detach()).all()]
            what = f"the loss is not finite (terms {named})" if named else (
                "the gradient is not finite" if float(bad[1]) > 0 else "the loss is not finite on another rank")
            kept = f"the last checkpoint, {self.out / STATE}, is from before it" if (self.out / STATE).exists() else "no checkpoint was written yet"
            raise NonFiniteLoss(f"step {self.step + 1}, stage {stage}: {what}; {kept}. Lower the lr (optim.lr), "
                                "raise the warm-up, or clip gradients (optim.clip_grad).")

    def _log(self, record: dict, terms: dict) -> None:
        now = time.perf_counter()
        record["data_wait"] = self._waited / max(now - self._since, 1e-9)
        self._waited, self._since = 0.0, now
        record.update(getattr(self.batches, "log_values", dict)())
        for watch in self.watch:
            record.update(watch(self, terms))
        values = self._mean_over_ranks({k: float(v) for k, v in record.items()})
        epoch = self.step / max(len(self.batches), 1)
        self.emit({"step": self.step, "epoch": round(epoch, 4), **values})

    def _mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of what each rank saw (a collective: every rank calls it with the same keys)."""
        if self.fabric.world_size == 1 or not values:
            return values
        keys = sorted(values)
        mean = self.fabric.all_reduce(torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.fabric.device),
                                      reduce_op="mean")
        return dict(zip(keys, mean.tolist()))

    def last_values(self) -> dict[str, float]:
        """The last step's terms, named as in the log, as the mean over ranks that metrics.jsonl logs."""
        return self._mean_over_ranks({k: float(v.detach()) for k, v in self.last_terms.items() if not k.startswith("_")})

    def emit(self, record: dict) -> None:
        """Write one metrics record (rank 0): metrics.jsonl, TensorBoard, the progress line."""
        if self.fabric.global_rank != 0:
            return
        rundir.log_metrics(self.out, record)
        self.fabric.log_dict({k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}, step=record["step"])
        self._progress(record)

    # ------------------------------------------------------------ epochs, checkpoints, signals

    def fit(self, resume: bool = False) -> dict:
        """Train to the schedule's end; with `resume`, from the checkpoint (`restore` first, unless called already)."""
        if resume and not self._restored:
            self.restore()
        if resume and self.fabric.global_rank == 0:  # lines logged after the checkpoint (all of them when none) go
            rundir.truncate_log(self.out, self.step)
        per_epoch = len(self.batches)
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        started = self._segment_start = self._since = time.perf_counter()
        self._started, self._shown, self._first_step = started, None, self.step
        if self.fabric.global_rank == 0 and self.run.progress:
            print(f"[{self.name}] {'resumed at' if self.step else 'starting'} step {self.step} of {self.schedule.total_steps} "
                  f"({per_epoch} per epoch), checkpoints in {self.out}", file=sys.stderr, flush=True)
        self._open_bar()
        try:
            while self.step < self.schedule.total_steps:
                epoch, skip = divmod(self.step, per_epoch)
                self.method.on_epoch_start(epoch)  # also mid-epoch after a resume: the method learns which epoch it is in
                batches = iter(self.batches.epoch(epoch, skip))
                while (batch := self._next(batches)) is not None:
                    self.train_step(batch)
                    if self._bar is not None:
                        self._bar.update(1)
                    self._after_step()
                    if self.step >= self.schedule.total_steps:
                        break
                if self.step % per_epoch == 0:
                    self._end_epoch(epoch)
        finally:
            for s, handler in previous.items():  # SIGUSR1 stays ignored: a late one must not kill the saved run
                signal.signal(s, signal.SIG_IGN if s == getattr(signal, "SIGUSR1", None) and handler == signal.SIG_DFL else handler)
            self.seconds += time.perf_counter() - started
            self._segment_start = None
            if self._bar is not None:
                self._bar.close()
        self.save()
        return {"steps": self.step, "seconds": self.seconds}

    def _next(self, batches):
        """The next batch, its wait counted: `data_wait` is the fraction of time between logged steps spent here."""
        start = time.perf_counter()
        batch = next(batches, None)
        self._waited += time.perf_counter() - start
        return batch

    def _after_step(self) -> None:
        usr1 = getattr(signal, "SIGUSR1", None)
        code = 0.0 if self._stop is None else 2.0 if self._stop == usr1 else 1.0
        if self.fabric.world_size > 1:  # every rank stops at the same step, and requeues if any rank saw SIGUSR1
            code = float(self.fabric.all_reduce(torch.tensor([code], device=self.fabric.device), reduce_op="max"))
        if code:
            self.save()
            if code == 2.0:  # SLURM's warning before the time limit
                message = slurm.requeue() if self.fabric.global_rank == 0 else "SIGUSR1: rank 0 requeues the job."
                raise Interrupted(f"stopped at step {self.step}. {message}")
            raise Interrupted(f"stopped by signal at step {self.step}; the checkpoint is saved: rerun with --resume.")
        if self.step % self.run.checkpoint_every == 0:
            self.save()

    def _end_epoch(self, epoch: int) -> None:
        self.save()  # before the monitors: a monitor that fails never costs the epoch
        for monitor in self.monitors:
            try:
                record = monitor(self, epoch + 1)
            except Exception as error:  # noqa: BLE001 - a monitor only watches; training goes on without it
                self.monitors = tuple(m for m in self.monitors if m is not monitor)
                print(f"[{self.name}] warning: the {type(monitor).__name__} failed after epoch {epoch + 1} ({error}); "
                      "it is off for the rest of the run, and training goes on.", file=sys.stderr, flush=True)
                continue
            if record:
                self.emit({"step": self.step, "epoch": epoch + 1, **record})

    def _on_signal(self, signum, frame) -> None:
        if self._stop is not None:  # a second Ctrl-C stops at once; the last checkpoint stands
            raise KeyboardInterrupt
        self._stop = signum
        print(f"\n[{self.name}] {signal.Signals(signum).name}: saving a checkpoint after this step "
              "(again to stop at once)", file=sys.stderr, flush=True)

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """Every rank's RNG, source state and the method's per-rank state (SwAV's queue: `Steps.rank_state`),
        gathered so rank 0 can write them all."""
        local = {**rng_state(), **{f"batches/{k}": v for k, v in self.batches.state_dict().items()},
                 **{f"method/{k}": v for k, v in self.method.rank_state().items()},
                 **{f"probe{i}/{k}": v for i, probe in enumerate(self.probes) for k, v in probe.state_dict().items()}}
        if self.fabric.world_size == 1:
            return {f"rank0/{k}": v for k, v in local.items()}
        gathered = {}
        for key, value in sorted(local.items()):
            stacked = self.fabric.all_gather(value.to(self.fabric.device)).cpu()
            gathered.update({f"rank{r}/{key}": stacked[r].to(value.dtype) for r in range(self.fabric.world_size)})
        return gathered

    def save(self) -> None:
        extra = self._state_tensors()
        if self.fabric.global_rank == 0:
            running = time.perf_counter() - self._segment_start if self._segment_start is not None else 0.0
            counters = {"step": self.step, "seconds": self.seconds + running, "world_size": self.fabric.world_size,
                        "precision": _plain(self.fabric.strategy.precision.state_dict()),  # 16-mixed: the loss scale
                        "schedule": self.schedule.record()}
            save_training_state(self.out / STATE, {"method": self.method}, self.optimisers, counters, extra)
        self.fabric.barrier()

    def restore(self) -> None:
        """Load the checkpoint, when there is one, and check it fits the schedule; writes nothing, so a refused
        resume leaves the run as it was."""
        self._restored = True
        if not (self.out / STATE).exists():  # killed before its first checkpoint: it starts over
            return
        try:
            counters = load_training_state(self.out / STATE, {"method": self.method}, self.optimisers)
        except Exception as error:  # noqa: BLE001 - safetensors, JSON and shape errors alike: the file is damaged
            raise ValueError(f"{self.out / STATE} cannot be read ({type(error).__name__}: {error}); the run cannot resume "
                             "from it. Restore a copy, or start again with --overwrite.") from None
        if counters.get("world_size", 1) != self.fabric.world_size:
            raise ValueError(f"{self.out} was trained on {counters['world_size']} processes; resume it with "
                             f"--devices {counters['world_size']} (got {self.fabric.world_size}).")
        self.step, self.seconds = counters["step"], counters.get("seconds", 0.0)
        if counters.get("precision"):
            self.fabric.strategy.precision.load_state_dict(counters["precision"])
        extra = load_extra(self.out / STATE)
        prefix = f"rank{self.fabric.global_rank}/"
        mine = {k[len(prefix):]: v for k, v in extra.items() if k.startswith(prefix)}
        set_rng_state({k: v for k, v in mine.items() if not k.startswith(("batches/", "method/", "probe"))})
        for i, probe in enumerate(self.probes):
            probe.load_state_dict({k[len(f"probe{i}/"):]: v for k, v in mine.items() if k.startswith(f"probe{i}/")})
        self.batches.load_state_dict({k[len("batches/"):]: v for k, v in mine.items() if k.startswith("batches/")})
        self.method.load_rank_state({k[len("method/"):]: v for k, v in mine.items() if k.startswith("method/")})
        if self.step > self.schedule.total_steps:
            raise ValueError(f"this run is at step {self.step}, past the {self.schedule.total_steps} steps asked; "
                             "ask for more epochs or steps, not fewer.")
        self.schedule = self.schedule.resumed(counters.get("schedule"), self.step)

    # ------------------------------------------------------------ watching

    def _open_bar(self) -> None:
        """A tqdm bar (rate, ETA) on a terminal; elsewhere `_progress` prints a plain line every 30 s."""
        if self.fabric.global_rank == 0 and self.run.progress and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.schedule.total_steps, initial=self.step, desc=self.name, unit="step", dynamic_ncols=True)

    def _progress(self, record: dict) -> None:
        if not self.run.progress or "loss" not in record:
            return
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{record['loss']:.4f}", data_wait=f"{record.get('data_wait', 0):.0%}", refresh=False)
            return
        now = time.perf_counter()
        if self._shown is not None and now - self._shown < 30 and self.step != self.schedule.total_steps:
            return  # the first logged step is shown at once, then one line every 30 s
        rate = (self.step - self._first_step) / max(now - self._started, 1e-9)
        eta = (self.schedule.total_steps - self.step) / max(rate, 1e-9)
        print(f"[{self.name}] step {self.step}/{self.schedule.total_steps}, loss {record['loss']:.4f}, "
              f"{rate:.2f} steps/s, data wait {record.get('data_wait', 0):.0%}, ETA {_clock(eta)}", file=sys.stderr, flush=True)
        self._shown = now


def _plain(state: dict) -> dict:
    """A precision plugin's state (floats, ints, 0-d tensors) as JSON values."""
    return {k: (v.item() if torch.is_tensor(v) else v) for k, v in state.items()}


def _grad_norm(optimiser) -> torch.Tensor:
    grads = [p.grad for g in optimiser.param_groups for p in g["params"] if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else torch.zeros(())


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"
