"""Plant known bugs in a copy of the repository and see which the test suite catches.

Each mutant is one or more small textual substitutions in a file of `infomax/`, made in a
temporary copy of the repository (without .venv and .git; with `--revision REV`, the files
committed at REV instead of this working tree, so other writers' uncommitted edits stay out).
The relevant test files then run there (`pytest -x`) with this interpreter and PYTHONPATH set
to the copy, so the copy's `infomax` is imported, not the editable install of this checkout;
the script checks that before it starts (the import path, and a canary mutant that every
suite must catch). Each mutant runs against two versions of the tests: the files as they were
at the mutant's `before` revision (the suite before the tests written against that group of
mutants) and the files of the copy ("now"). Both versions run once on the unmutated copy
first: a test that fails there is reported and deselected, or its column would mean nothing.
Tests marked slow (SIGKILL / 2-process resume comparisons, ~80 s per run) are left out unless
`--slow`; a mutant's test files are listed new-tests-first, so `-x` stops early when they catch.
A substitution whose text is no longer in the file stops the run naming the mutant (`--check`
tests every mutant's texts against the copy and runs nothing).

    nice -n 10 python benchmarks/mutation_check.py --revision HEAD   # -> benchmarks/results/mutation_check.{md,json}
    nice -n 10 python benchmarks/mutation_check.py --only smi_lambda,knn_k   # prints, writes nothing
    nice -n 10 python benchmarks/mutation_check.py --check          # every mutant's text is found once?
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import torch

from _timing import cpu_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BEFORE = "bb1c0708642b64782bc9aeeb1b0b7684ccd7c223"  # the suite as the review found it
BEFORE_12 = "060e3adb1f8bec3d42dd3c24e5914c0a8b4a8105"  # the suite before the tests of issue 26 point 12
TIMEOUT_S = 600

ROBUSTNESS = "tests/test_objectives_robustness.py"
CLOSED_FORMS = "tests/test_objectives_closed_forms.py"
OBJECTIVE_DEFAULTS = "tests/test_objectives_defaults.py"
OBJECTIVES = (CLOSED_FORMS, ROBUSTNESS, OBJECTIVE_DEFAULTS)

BF16_OUTPUT_CAST = '''def _to_float32(x):
    if isinstance(x, dict):
        return {k: _to_float32(v) for k, v in x.items()}
    return x.float() if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 else x


def full_precision(fn: F) -> F:'''


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    path: str
    substitutions: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]
    note: str = ""
    before: str | None = None  # the revision of the 'before' tests; None: --before (the reviewed suite)


MUTANTS = [
    Mutant("canary", "full_precision returns None (must be caught by every suite)", "infomax/_validate.py",
           (("            return fn(*args, **kwargs)", "            return None"),), (ROBUSTNESS,)),
    Mutant("fp_bf16_maths", "full_precision does its maths in bfloat16: no upcast, result cast to float32",
           "infomax/_validate.py",
           (("        return x.float()\n", "        return x\n"),
            ("            return fn(*args, **kwargs)", "            return _to_float32(fn(*args, **kwargs))"),
            ("def full_precision(fn: F) -> F:", BF16_OUTPUT_CAST)), (ROBUSTNESS,),
           "before: caught only because linalg.svdvals has no bfloat16 kernel (MMCR raises); the other 16 cases passed"),
    Mutant("fp_autocast_on", "full_precision leaves an outer autocast on (bfloat16 matmuls), result cast to float32",
           "infomax/_validate.py",
           (("torch.autocast(device_type=device_type, enabled=False)",
             "torch.autocast(device_type=device_type, enabled=torch.is_autocast_enabled(device_type))"),
            ("            return fn(*args, **kwargs)", "            return _to_float32(fn(*args, **kwargs))"),
            ("def full_precision(fn: F) -> F:", BF16_OUTPUT_CAST)), (ROBUSTNESS,)),
    Mutant("mspacings_m_plus_1", "m-spacings take m+1 spacings (scaled as m)", "infomax/objectives/e2mc.py",
           (("(ordered[m:] - ordered[:-m])", "(ordered[m + 1:] - ordered[:-m - 1])"),), OBJECTIVES,
           "before: caught only at n = 2, where m + 1 = n leaves no spacing (NaN); the closed-form bound accepted it"),
    Mutant("mspacings_m_plus_3", "m-spacings take m+3 spacings (scaled as m)", "infomax/objectives/e2mc.py",
           (("(ordered[m:] - ordered[:-m])", "(ordered[m + 3:] - ordered[:-m - 3])"),), OBJECTIVES,
           "before: caught only at n = 2 (no spacing left, NaN); the closed-form bound accepted it"),
    Mutant("mspacings_cube_root", "default m = n^(1/3) instead of sqrt(n)", "infomax/objectives/e2mc.py",
           (("return max(1, round(math.sqrt(n)))", "return max(1, round(n ** (1 / 3)))"),), OBJECTIVES),
    Mutant("mspacings_m25", "default m = 25 (n - 1 for smaller batches)", "infomax/objectives/e2mc.py",
           (("return max(1, round(math.sqrt(n)))", "return max(1, min(25, n - 1))"),), OBJECTIVES),
    Mutant("mspacings_eps", "spacing floor 1e-3 instead of 1e-7", "infomax/objectives/e2mc.py",
           (("SPACING_EPS = 1e-7", "SPACING_EPS = 1e-3"),), OBJECTIVES),
    Mutant("smi_lambda", "SMI default lambd 3 -> 1", "infomax/objectives/smi.py",
           (("lambd: float = 3.0,", "lambd: float = 1.0,"),), OBJECTIVES),
    Mutant("mira_tau", "MIRA default tau_t 0.225 -> 0.1", "infomax/assign/mira.py",
           (("\n    temperature: float = 0.225,\n", "\n    temperature: float = 0.1,\n"),), ("tests/test_assign.py",)),
    Mutant("knn_k", "weighted kNN default k 20 -> 10", "infomax/eval/knn.py",
           (("    k: int = 20,", "    k: int = 10,"),), ("tests/test_eval_knn_linear.py", "tests/test_eval_run.py")),
    Mutant("knn_T", "weighted kNN default T 0.07 -> 0.1", "infomax/eval/knn.py",
           (("    temperature: float = 0.07,", "    temperature: float = 0.1,"),),
           ("tests/test_eval_knn_linear.py", "tests/test_eval_run.py")),
    Mutant("aug_p_x0.6", "every augmentation probability below 1 scaled by 0.6", "infomax/data/augment.py",
           (("dtype=torch.float64) < p\n", "dtype=torch.float64) < (p if p >= 1 else 0.6 * p)\n"),),
           ("tests/test_views.py",)),
    Mutant("aug_p_x0.6_all", "every augmentation probability scaled by 0.6, 1 included", "infomax/data/augment.py",
           (("dtype=torch.float64) < p\n", "dtype=torch.float64) < 0.6 * p\n"),), ("tests/test_views.py",),
           "before: caught only by the p = 1 flip test"),
    Mutant("swapped_no_detach", "swapped prediction lets gradient into its targets", "infomax/objectives/swapped.py",
           (("-(w.detach() * log_q[v])", "-(w * log_q[v])"),), OBJECTIVES),
    Mutant("info_nce_self_pair", "InfoNCE keeps each view's similarity to itself among the negatives",
           "infomax/objectives/infonce.py",
           (('logits.masked_fill(self_mask, float("-inf"))', "logits"),), OBJECTIVES),
    Mutant("e2mc_sphere_cdf", "E2MC's hypersphere map uses erf(z / 2) for the normal CDF", "infomax/objectives/e2mc.py",
           (("torch.erf(z / math.sqrt(2))", "torch.erf(z / 2)"),), OBJECTIVES),
]


# Issue 26 point 12: the engine, the data order, the monitors, the add-ons and `continue`. Each group's
# files list the new property tests first, then the older files that exercise the same code.
BATCHES = ("tests/test_batches.py", "tests/test_pretrain.py")
ENGINE = ("tests/test_engine_properties.py", "tests/test_pretrain.py", "tests/test_methods_multiview.py")
SET_LR = ("tests/test_engine_properties.py", "tests/test_optim.py", "tests/test_pretrain.py")
MONITORS = ("tests/test_monitors.py", "tests/test_pretrain.py")
ADDONS = ("tests/test_addon_properties.py", "tests/test_continue_properties.py", "tests/test_addons.py", "tests/test_continue.py")
CONTINUE = ("tests/test_continue_properties.py", "tests/test_continue.py")
TEACHER = ("tests/test_engine_properties.py", "tests/test_continue_properties.py", "tests/test_methods_multiview.py",
           "tests/test_pretrain.py")


def _point12(name: str, description: str, path: str, substitutions, tests, note: str = "") -> Mutant:
    return Mutant(name, description, path, tuple(substitutions), tests, note, before=BEFORE_12)


MUTANTS += [
    _point12("batches_same_order", "every epoch in the same row order (the sampler's epoch never set)", "infomax/data/batches.py",
             [("        self.sampler.set_epoch(epoch)\n", "        self.sampler.set_epoch(0)\n")], BATCHES),
    _point12("batches_rank0_rows", "every rank reads rank 0's rows", "infomax/data/batches.py",
             [("rank=rank, shuffle=True", "rank=0, shuffle=True")], BATCHES),
    _point12("batches_unshuffled", "rows in their stored order, never shuffled", "infomax/data/batches.py",
             [("rank=rank, shuffle=True", "rank=rank, shuffle=False")], BATCHES),
    _point12("batches_positions_as_rows", "the sampler's positions used as image rows (the training-row subset ignored)",
             "infomax/data/batches.py",
             [("return self.rows[order[: len(self) * self.batch_size]]", "return order[: len(self) * self.batch_size]")], BATCHES),
    _point12("batches_skip_from_start", "a resumed epoch re-reads its first batches instead of the rest",
             "infomax/data/batches.py", [("self.rows_of(epoch)[skip:]", "self.rows_of(epoch)[:len(self) - skip]")], BATCHES,
             "before: not run with --slow; the slow SIGKILL-resume comparison of test_pretrain (left out) may catch it: under it a resumed run re-reads batches the uninterrupted run reads once"),
    _point12("batches_ranks_share_draws", "every rank draws the same augmentations (generator seeded without the rank)",
             "infomax/data/batches.py", [("manual_seed(seed * 1009 + rank)", "manual_seed(seed * 1009)")], BATCHES),
    _point12("holdout_trains", "the kNN monitor's held-out rows also train", "infomax/engine/pretrain.py",
             [("return np.sort(rest), np.sort(rest[:bank])", "return np.sort(order), np.sort(rest[:bank])")], BATCHES),
    _point12("loop_guard_after_step", "the non-finite guard runs after optimiser.step()", "infomax/engine/loop.py",
             [("            self._check_finite(terms, grad_norm, stage)  # before the step: a bad gradient never reaches the weights\n", ""),
              ("            optimiser.step()\n", "            optimiser.step()\n            self._check_finite(terms, grad_norm, stage)\n")],
             ENGINE),
    _point12("loop_clip_by_value", "clip_grad clips each gradient element instead of the total norm", "infomax/engine/loop.py",
             [("clip_gradients(self.model, optimiser, max_norm=self.clip_grad)",
               "clip_gradients(self.model, optimiser, clip_val=self.clip_grad)")], ENGINE),
    _point12("loop_lr_one_step_ahead", "each step takes the next step's scheduled lr", "infomax/engine/loop.py",
             [("factor = self.schedule.factor(self.step)", "factor = self.schedule.factor(self.step + 1)")], ENGINE),
    _point12("loop_no_zero_grad", "gradients are never zeroed: they accumulate over steps", "infomax/engine/loop.py",
             [("            optimiser.zero_grad(set_to_none=True)\n", "")], ENGINE,
             "before: not run with --slow; the slow SIGKILL-resume comparison of test_pretrain (left out) may catch it: under it a resumed run drops the accumulated gradients that the uninterrupted run keeps"),
    _point12("loop_resume_restarts_epoch", "a run resumed mid-epoch starts that epoch again from its first batch",
             "infomax/engine/loop.py",
             [("epoch, skip = divmod(self.step, per_epoch)", "epoch, skip = self.step // per_epoch, 0")], ENGINE,
             "before: not run with --slow; the slow SIGKILL-resume comparison of test_pretrain (left out) may catch it: under it a resumed run re-reads batches the uninterrupted run reads once"),
    _point12("set_lr_first_group", "the scheduled lr set on the first parameter group only", "infomax/engine/optim.py",
             [("    for group in optimiser.param_groups:\n        group[\"lr\"]", "    for group in optimiser.param_groups[:1]:\n        group[\"lr\"]")],
             SET_LR),
    _point12("set_lr_first_groups_base", "every group's lr from the first group's base lr", "infomax/engine/optim.py",
             [('group["lr"] = group["base_lr"] * factor', 'group["lr"] = optimiser.param_groups[0]["base_lr"] * factor')],
             SET_LR, "equivalent in today's callers (build_optimiser and finetune give every group the same base lr); "
                     "caught because set_lr's contract is per group"),
    _point12("knn_train_mode", "the kNN monitor embeds in train mode", "infomax/engine/monitors.py",
             [("        method.eval()\n", "")], MONITORS),
    _point12("knn_default_k_T", "the kNN monitor drops its k and T (the kNN's defaults 20 and 0.07 instead)",
             "infomax/engine/monitors.py", [("k=self.k, temperature=self.temperature)", ")")], MONITORS),
    _point12("knn_every_off_by_one", "the kNN monitor runs one epoch late", "infomax/engine/monitors.py",
             [("epoch % self.every", "(epoch - 1) % self.every")], MONITORS),
    _point12("spread_not_unit_rows", "the collapse monitor's std is taken of the raw rows, not the unit rows",
             "infomax/engine/monitors.py",
             [("std = F.normalize(z, dim=1).std(dim=0).mean()", "std = z.std(dim=0).mean()")], MONITORS),
    _point12("collapse_inverted", "the collapse warning fires when spread, not when collapsed", "infomax/engine/monitors.py",
             [("if spread < COLLAPSED:", "if spread > COLLAPSED:")], MONITORS),
    _point12("addon_detached", "an add-on joins the loss through its detached value (no gradient)", "infomax/methods/addons.py",
             [("            loss = loss + weighted\n", "            loss = loss + weighted.detach()\n")], ADDONS),
    _point12("addon_every_view", "the add-ons of the two global views applied to every view", "infomax/methods/addons.py",
             [("s, pair = settings, views[:2]", "s, pair = settings, views")], ADDONS),
    _point12("addon_mmcr_global_only", "MMCR on the two global views only", "infomax/methods/addons.py",
             [('{"negative_nuclear_norm": mmcr(views)}', '{"negative_nuclear_norm": mmcr(pair)}')], ADDONS),
    _point12("addon_step_end_dropped", "WithAddOns does not pass on_step_end to its method (an EMA teacher stands still)",
             "infomax/methods/addons.py",
             [("        self.base.on_step_end(step, total_steps)\n", "        pass\n")], ADDONS),
    _point12("continue_teacher_kept", "continue keeps the teacher built before the heads were loaded (its heads random)",
             "infomax/engine/continued.py",
             [("            method.teacher = Teacher(method.student(), method.settings)", "            pass")], CONTINUE),
    _point12("continue_tail_train_mode", "continue's before/after features (--train-from) computed in train mode",
             "infomax/engine/continued.py", [("        self.trainable.eval()\n", "")], CONTINUE),
    _point12("continue_projector_train_mode", "continue's projected before/after features computed in train mode",
             "infomax/engine/continued.py", [("    projector.eval()\n", "")], CONTINUE),
    _point12("features_train_mode", "the feature cache (continue's before/after, evaluation) embeds in train mode",
             "infomax/data/features.py", [("self.encoder.eval().to(self.device)", "self.encoder.to(self.device)")],
             ("tests/test_continue_properties.py", "tests/test_features.py", "tests/test_continue.py")),
    _point12("teacher_momentum_next_step", "the EMA teacher takes the next step's momentum", "infomax/methods/base.py",
             [("cosine_momentum(step, total_steps, self.base, self.final)", "cosine_momentum(step + 1, total_steps, self.base, self.final)")],
             TEACHER),
    _point12("ema_weights_swapped", "the EMA moves by m towards the student instead of 1 - m", "infomax/models/ema.py",
             [("[p.detach() for p in params], 1.0 - momentum)", "[p.detach() for p in params], momentum)")],
             (*TEACHER, "tests/test_models.py")),
    _point12("ema_buffers_kept", "the EMA teacher keeps its own batch-norm statistics instead of the student's",
             "infomax/models/ema.py", [("            target.copy_(source)\n", "            pass\n")], (*TEACHER, "tests/test_models.py")),
    _point12("prototypes_grad_zeroed", "frozen prototypes get a zero gradient instead of none (weight decay and momentum still move them)",
             "infomax/methods/base.py",
             [("            self.prototypes.weight.grad = None", "            self.prototypes.weight.grad.zero_()")], TEACHER),
]


TOP_LEVEL_SKIPPED = {".venv", ".git", ".cache", ".pytest_cache", "runs", "data", "device_data"}


def _skipped(folder: str, names: list[str]) -> set[str]:
    here = pathlib.Path(folder).resolve()
    skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    if here == ROOT:
        skip |= TOP_LEVEL_SKIPPED & set(names)
    if here == ROOT / "benchmarks":
        skip |= {"results"} & set(names)
    return skip


def copy_repository(destination: pathlib.Path, revision: str | None = None) -> pathlib.Path:
    """This working tree (or, with `revision`, the files committed at it) copied to destination/repo."""
    repo = destination / "repo"
    if revision is None:
        shutil.copytree(ROOT, repo, ignore=_skipped, symlinks=True)
    else:
        repo.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    shared = ROOT.parent / "shared"
    if shared.exists():  # tests find real data at ../shared/data
        (destination / "shared").symlink_to(shared)
    return repo


def write_tests_at(revision: str, repo: pathlib.Path, folder: str) -> None:
    """The tests/ tree at `revision` written to repo/folder."""
    target = repo / folder
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", revision, "tests/"],
                           check=True, capture_output=True, text=True).stdout.split()
    for name in names:
        blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:{name}"], check=True, capture_output=True).stdout
        path = target / pathlib.Path(name).relative_to("tests")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)


def environment(repo: pathlib.Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1", INFOMAX_CACHE=str(repo / ".cache"))
    env.pop("PYTHONSTARTUP", None)
    return env


def check_import_redirection(repo: pathlib.Path) -> str:
    out = subprocess.run([sys.executable, "-c", "import infomax; print(infomax.__file__)"], cwd=repo,
                         env=environment(repo), capture_output=True, text=True, check=True).stdout.strip()
    if not pathlib.Path(out).resolve().is_relative_to(repo.resolve()):
        raise SystemExit(f"infomax was imported from {out}, not from the copy {repo}: mutants would not be seen")
    return out


def run_tests(repo: pathlib.Path, folder: str, tests: tuple[str, ...], *, deselect: tuple[str, ...] = (),
              slow: bool = False, first_failure: bool = True) -> dict:
    """Run the test files that exist in repo/folder; {"status": "passed" | "caught" | "timeout" | "n/a", ...}.
    `deselect`: test ids left out (those that fail unmutated); slow-marked tests only with `slow`."""
    files = [f"{folder}/{pathlib.Path(t).name}" for t in tests if (repo / folder / pathlib.Path(t).name).exists()]
    if not files:
        return {"status": "n/a", "files": []}
    command = [sys.executable, "-m", "pytest", *(["-x"] if first_failure else []), "-q", "-p", "no:cacheprovider",
               "-p", "no:xdist", "-rfE", *([] if slow else ["-m", "not slow"]),
               *(f"--deselect={d}" for d in deselect if d.split("::")[0] in files), *files]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=repo, env=environment(repo), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "files": files, "seconds": TIMEOUT_S}
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode in (0, 5):  # 5: every test of the files deselected
        return {"status": "passed", "files": files, "seconds": seconds}
    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", done.stdout, flags=re.M)
    first = failed[0].split("::", 1)[-1] if failed else f"pytest exit {done.returncode}"
    return {"status": "caught", "files": files, "seconds": seconds, "by": first, "failed": failed, "tail": done.stdout[-1500:]}


def apply(repo: pathlib.Path, mutant: Mutant) -> tuple[str, int]:
    """Plant `mutant` in the copy; returns the original text and the line of the first substitution."""
    path = repo / mutant.path
    original = text = path.read_text()
    line = None
    for old, new in mutant.substitutions:
        count = text.count(old)
        if count != 1:
            raise ValueError(f"{mutant.name}: {old!r} occurs {count} times in {mutant.path}; update the mutant")
        if line is None:
            line = text[:text.index(old)].count("\n") + 1 + (old.startswith("\n"))
        text = text.replace(old, new)
    path.write_text(text)
    return original, line


def cell(result: dict) -> str:
    if result["status"] == "caught":
        return f"yes ({result['by']})"
    return {"passed": "**no**", "timeout": "yes (timeout)", "n/a": "n/a"}[result["status"]]


def suites_of(mutants: list[Mutant], default_before: str) -> dict[str, str]:
    """{revision of 'before' tests: its folder in the copy}, plus "now": "tests"."""
    revisions = {m.before or default_before for m in mutants}
    return {**{r: f"tests_before_{r[:7]}" for r in sorted(revisions)}, "now": "tests"}


def unmutated_failures(repo: pathlib.Path, mutants: list[Mutant], suites: dict[str, str], default_before: str,
                       slow: bool) -> dict[str, list[str]]:
    """Each suite's tests (the files its mutants list) that fail on the unmutated copy: they are deselected."""
    failing = {}
    for key, folder in suites.items():
        files = sorted({t for m in mutants if key in ("now", m.before or default_before) for t in m.tests})
        result = run_tests(repo, folder, tuple(files), slow=slow, first_failure=False)
        failing[key] = result.get("failed", []) if result["status"] == "caught" else []
        if result["status"] == "caught" and not failing[key]:
            raise SystemExit(f"the {key} tests cannot run on the unmutated copy:\n{result.get('tail', '')}")
        print(f"[mutants] unmutated, {key} tests: {result['status']}"
              + (f"; deselected as failing unmutated: {failing[key]}" if failing[key] else ""), flush=True)
    return failing


def check_texts(repo: pathlib.Path, mutants: list[Mutant]) -> None:
    for mutant in mutants:
        original, _ = apply(repo, mutant)
        (repo / mutant.path).write_text(original)
    print(f"[mutants] every substitution of the {len(mutants)} mutants is found exactly once")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' tests of mutants that name none "
                                                         "(default: the reviewed suite)")
    parser.add_argument("--revision", help="copy the files committed at this revision, not the working tree")
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--slow", action="store_true", help="also run the tests marked slow")
    parser.add_argument("--check", action="store_true", help="only check that every mutant's texts are found once")
    args = parser.parse_args()
    mutants = MUTANTS if not args.only else [m for m in MUTANTS if m.name in args.only.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="infomax-mutants-") as tmp:
        repo = copy_repository(pathlib.Path(tmp), args.revision)
        if args.check:
            check_texts(repo, mutants)
            return
        suites = suites_of(mutants, args.before)
        for revision, folder in suites.items():
            if revision != "now":
                write_tests_at(revision, repo, folder)
        imported = check_import_redirection(repo)
        print(f"[mutants] copy at {repo} ({args.revision or 'working tree'}); infomax imported from {imported}", flush=True)
        failing = unmutated_failures(repo, mutants, suites, args.before, args.slow)
        rows = []
        for mutant in mutants:
            original, line = apply(repo, mutant)
            before = mutant.before or args.before
            try:
                results = {key: run_tests(repo, suites[rev], mutant.tests, deselect=tuple(failing[rev]), slow=args.slow)
                           for key, rev in (("before", before), ("now", "now"))}
            finally:
                (repo / mutant.path).write_text(original)
            rows.append({"mutant": mutant.name, "description": mutant.description, "note": mutant.note,
                         "where": f"{mutant.path}:{line}", "before_revision": before,
                         "tests": list(mutant.tests), **{k: {kk: v for kk, v in r.items() if kk not in ("tail", "failed")}
                                                         for k, r in results.items()}})
            print(f"[mutants] {mutant.name:28s} before: {cell(results['before']):60s} now: {cell(results['now'])}", flush=True)
    canary = [r for r in rows if r["mutant"] == "canary"]
    if canary and any(canary[0][k]["status"] != "caught" for k in ("before", "now")):
        raise SystemExit("the canary survived: the tests did not see the copy's infomax")
    if not args.only:
        write_results(rows, args, failing, time.perf_counter() - started)


def write_results(rows: list[dict], args, failing: dict[str, list[str]], seconds: float) -> None:
    RESULTS.mkdir(exist_ok=True)
    facts = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
             "torch": torch.__version__, "python": sys.version.split()[0]}
    survivors = {k: [r["mutant"] for r in rows if r[k]["status"] == "passed"] for k in ("before", "now")}
    revisions = sorted({r["before_revision"] for r in rows}, key=lambda rev: rev != args.before)
    (RESULTS / "mutation_check.json").write_text(json.dumps(
        {"machine": facts, "revision": args.revision or "working tree", "before": revisions, "slow_tests": args.slow,
         "deselected_as_failing_unmutated": failing, "rows": rows, "survivors": survivors, "seconds": round(seconds)}, indent=1))
    command = "nice -n 10 python benchmarks/mutation_check.py" + (f" --revision {args.revision}" if args.revision else "") \
        + (" --slow" if args.slow else "")
    described = {args.before: "the suite the first review examined", BEFORE_12: "the suite before the tests of issue 26 point 12"}
    lines = [
        "# Mutation check",
        "",
        f"`{command}`: each mutant is planted in a temporary copy of the repository "
        f"({'the files committed at `' + args.revision + '`' if args.revision else 'this working tree'}) and the listed",
        "test files run there (`pytest -x`, the copy's `infomax` on PYTHONPATH, checked by import path and by the canary).",
        "*Before*: the tests at the mutant's *before* revision ("
        + "; ".join(f"`{r[:7]}`: {described.get(r, 'given')}" for r in revisions) + "); *now*: the copy's tests.",
        "Both run unmutated first; a test that fails there is deselected and named below. A cell names the first",
        "test that failed." + ("" if args.slow else " Tests marked slow (the SIGKILL and 2-process resume comparisons) are "
                                                     "left out (`--slow` runs them)."),
        "",
        "| mutant | what | where | tests run | before at | caught before? | caught now? |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tests = ", ".join(pathlib.Path(t).stem.removeprefix("test_") for t in r["tests"])
        lines.append(f"| {r['mutant']} | {r['description']} | `{r['where']}` | {tests} | `{r['before_revision'][:7]}` "
                     f"| {cell(r['before'])} | {cell(r['now'])} |")
    notes = [f"- {r['mutant']}: {r['note']}." for r in rows if r["note"]]
    lines += ["", "Notes:", *notes] if notes else []
    deselected = [f"- {key if key == 'now' else key[:7]}: {', '.join(ids)}" for key, ids in failing.items() if ids]
    lines += ["", "Deselected as failing on the unmutated copy:", *deselected] if deselected else []
    for revision in revisions:
        group = [r for r in rows if r["before_revision"] == revision and r["mutant"] != "canary"]
        caught = {k: sum(r[k]["status"] != "passed" for r in group) for k in ("before", "now")}
        lines += ["", f"Mutants whose before is `{revision[:7]}` ({described.get(revision, 'given')}): {len(group)}; caught by "
                      f"the tests before: {caught['before']}, now: {caught['now']}."]
    lines += [
        "",
        f"Survivors before: {', '.join(survivors['before']) or 'none'}. Survivors now: {', '.join(survivors['now']) or 'none'}.",
        "",
        f"Machine: {facts['cpu']}, {facts['cpu_cores']} cores, load average {facts['load_average_1min']} at the end; "
        f"torch {facts['torch']}, Python {facts['python']}. Took {seconds:.0f} s.",
    ]
    (RESULTS / "mutation_check.md").write_text("\n".join(lines) + "\n")
    print(f"[mutants] wrote {RESULTS / 'mutation_check.md'}")


if __name__ == "__main__":
    main()
