"""Plant known bugs in a copy of the repository and see which the test suite catches.

Each mutant is one or more small textual substitutions in a file of `infomax/`, made in a
temporary copy of the repository (without .venv and .git). The relevant test files then run
there (`pytest -x`) with this interpreter and PYTHONPATH set to the copy, so the copy's
`infomax` is imported, not the editable install of this checkout; the script checks that
before it starts (the import path, and a canary mutant that every suite must catch). Each
mutant runs against two versions of the tests: the files as they were at `--before` (the
suite the review in the issue examined) and the files of this working tree. Both versions
must pass on the unmutated copy first, or their column means nothing.

    nice -n 10 python benchmarks/mutation_check.py            # -> benchmarks/results/mutation_check.{md,json}
    nice -n 10 python benchmarks/mutation_check.py --only smi_lambda,knn_k   # prints, writes nothing
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


TOP_LEVEL_SKIPPED = {".venv", ".git", ".cache", ".pytest_cache", "runs", "data", "device_data"}


def _skipped(folder: str, names: list[str]) -> set[str]:
    here = pathlib.Path(folder).resolve()
    skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    if here == ROOT:
        skip |= TOP_LEVEL_SKIPPED & set(names)
    if here == ROOT / "benchmarks":
        skip |= {"results"} & set(names)
    return skip


def copy_repository(destination: pathlib.Path) -> pathlib.Path:
    repo = destination / "repo"
    shutil.copytree(ROOT, repo, ignore=_skipped, symlinks=True)
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


def run_tests(repo: pathlib.Path, folder: str, tests: tuple[str, ...]) -> dict:
    """Run the test files that exist in repo/folder; {"status": "passed" | "caught" | "timeout" | "n/a", ...}."""
    files = [f"{folder}/{pathlib.Path(t).name}" for t in tests if (repo / folder / pathlib.Path(t).name).exists()]
    if not files:
        return {"status": "n/a", "files": []}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", *files]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=repo, env=environment(repo), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "files": files, "seconds": TIMEOUT_S}
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode == 0:
        return {"status": "passed", "files": files, "seconds": seconds}
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, flags=re.M)
    first = failed[0].split("::", 1)[-1] if failed else f"pytest exit {done.returncode}"
    return {"status": "caught", "files": files, "seconds": seconds, "by": first, "tail": done.stdout[-1500:]}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' tests (default: the reviewed suite)")
    parser.add_argument("--only", help="comma-separated mutant names")
    args = parser.parse_args()
    mutants = MUTANTS if not args.only else [m for m in MUTANTS if m.name in args.only.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="infomax-mutants-") as tmp:
        repo = copy_repository(pathlib.Path(tmp))
        write_tests_at(args.before, repo, "tests_before")
        imported = check_import_redirection(repo)
        print(f"[mutants] copy at {repo}; infomax imported from {imported}", flush=True)
        suites = {"before": "tests_before", "now": "tests"}
        baseline = {}
        for key, folder in suites.items():  # the unmutated copy must pass, or a 'caught' means nothing
            files = sorted({t for m in mutants for t in m.tests})
            baseline[key] = run_tests(repo, folder, tuple(files))
            print(f"[mutants] unmutated, {key} tests: {baseline[key]['status']}", flush=True)
            if baseline[key]["status"] != "passed":
                raise SystemExit(f"the {key} tests fail on the unmutated copy:\n{baseline[key].get('tail', '')}")
        rows = []
        for mutant in mutants:
            original, line = apply(repo, mutant)
            try:
                results = {key: run_tests(repo, folder, mutant.tests) for key, folder in suites.items()}
            finally:
                (repo / mutant.path).write_text(original)
            rows.append({"mutant": mutant.name, "description": mutant.description, "note": mutant.note,
                         "where": f"{mutant.path}:{line}",
                         "tests": list(mutant.tests), **{k: {kk: v for kk, v in r.items() if kk != "tail"}
                                                         for k, r in results.items()}})
            print(f"[mutants] {mutant.name:22s} before: {cell(results['before']):60s} now: {cell(results['now'])}", flush=True)
    canary = [r for r in rows if r["mutant"] == "canary"]
    if canary and any(canary[0][k]["status"] != "caught" for k in suites):
        raise SystemExit("the canary survived: the tests did not see the copy's infomax")
    if not args.only:
        write_results(rows, args.before, time.perf_counter() - started)


def write_results(rows: list[dict], before: str, seconds: float) -> None:
    RESULTS.mkdir(exist_ok=True)
    facts = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
             "torch": torch.__version__, "python": sys.version.split()[0]}
    survivors = {k: [r["mutant"] for r in rows if r[k]["status"] == "passed"] for k in ("before", "now")}
    (RESULTS / "mutation_check.json").write_text(json.dumps({"machine": facts, "before": before, "rows": rows,
                                                             "survivors": survivors, "seconds": round(seconds)}, indent=1))
    lines = [
        "# Mutation check",
        "",
        "`nice -n 10 python benchmarks/mutation_check.py`: each mutant is planted in a temporary copy of the",
        "repository and the listed test files run there (`pytest -x`, the copy's `infomax` on PYTHONPATH,",
        "checked by import path and by the canary). *Before*: the tests at "
        f"`{before[:7]}` (the suite the review examined); *now*: this working tree's tests.",
        "Both pass on the unmutated copy. A cell names the first test that failed.",
        "",
        "| mutant | what | where | tests run | caught before? | caught now? |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        tests = ", ".join(pathlib.Path(t).stem.removeprefix("test_") for t in r["tests"])
        lines.append(f"| {r['mutant']} | {r['description']} | `{r['where']}` | {tests} | {cell(r['before'])} | {cell(r['now'])} |")
    notes = [f"- {r['mutant']}: {r['note']}." for r in rows if r["note"]]
    lines += ["", "Notes:", *notes] if notes else []
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
