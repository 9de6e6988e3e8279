"""What a new-ratio experiment spends on start-up rather than work, measured in one run in a fresh copy
of the project.

`dvc exp run -S mix.infeasible_ratio=0.5` re-runs mix, train and eval. Its fixed cost, the same in
every run whatever the data, is each stage's interpreter start and imports (every import, also those
inside functions, from `python -X importtime`), opening the MLflow store, and DVC's bookkeeping around
the stages (the experiment's wall time minus the stages' own). Each stage is then run again alone, with
the experiment's params, to split its wall time into start-up and work. Target: fixed cost at most a
quarter of the experiment's wall time.

Usage: .venv/bin/python bench/startup.py
"""

import os
import statistics
import subprocess

from common import Project, machine

STAGES = ["mix", "train", "eval"]  # what a new ratio re-runs


def import_seconds(log: str) -> float:
    """Every import the process made, from its `-X importtime` lines: the top-level ones' cumulative times."""
    total = 0
    for line in log.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.split("|")
            if name.startswith(" ") and not name.startswith("  "):
                total += int(cumulative)
    return total / 1e6


def store_seconds(project: Project) -> float:
    """Opening the MLflow store of the eval runs (schema check, experiment lookup), its imports already done."""
    script = ("import time; from varireal_pipeline import tracking; import mlflow; start = time.perf_counter(); "
              "tracking.prepare_store('sqlite:///mlflow.db'); print(time.perf_counter() - start)")
    out = subprocess.run(["python", "-c", script], cwd=project.root, env=project.env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.split()[-1])


print(machine())
project = Project()
project.sh("dvc", "repro")
project.sh("varireal", "store")  # as README advises before sweeps: the store exists, as in every run but the first
experiment = project.sh("dvc", "exp", "run", "-S", "mix.infeasible_ratio=0.5")  # leaves its params in the workspace

python = statistics.median(project.sh("python", "-c", "pass") for _ in range(5))
print("| stage | wall time | interpreter start | imports | work |")
print("|---|---|---|---|---|")
stage_walls, fixed = 0.0, 0.0
for stage in STAGES:
    project.env["PYTHONPROFILEIMPORTTIME"] = "1"
    seconds = project.sh("varireal", stage)
    del project.env["PYTHONPROFILEIMPORTTIME"]
    imports = import_seconds((project.root / ".bench.log").read_text())
    stage_walls += seconds
    fixed += python + imports
    print(f"| {stage} | {seconds:.1f} s | {python:.2f} s | {imports:.1f} s | {seconds - python - imports:.1f} s |",
          flush=True)
store = store_seconds(project)
dvc = max(experiment - stage_walls, 0.0)
fixed += store + dvc
print(f"MLflow store opening (part of eval's work above): {store:.2f} s")
print(f"DVC bookkeeping: {dvc:.1f} s (the experiment's {experiment:.1f} s minus the stages' {stage_walls:.1f} s)")
print(f"fixed cost: {fixed:.1f} s of {experiment:.1f} s = {fixed / experiment:.2f}  (target <= 0.25)")
