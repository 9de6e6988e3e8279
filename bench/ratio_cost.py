"""Pipeline wall times on the embedded default, measured in one run in a fresh copy of the project:

1. the first `dvc repro` (fresh clone, empty MLflow store; the world-CLIP's pretraining included), target
   < 9 minutes on 2 cores for `make repro` with its install;
2. a full `dvc repro -f` against `dvc exp run -S mix.infeasible_ratio=0.5`, target ratio <= 0.40,
   because neither `edit` nor `pretrain` re-runs for a new ratio.

Usage: .venv/bin/python bench/ratio_cost.py
"""

from common import Project, machine

print(machine())
project = Project()
first = project.sh("dvc", "repro")
full = project.sh("dvc", "repro", "-f")
new_ratio = project.sh("dvc", "exp", "run", "-S", "mix.infeasible_ratio=0.5")
print(f"first dvc repro (fresh copy):            {first:6.1f} s  (make repro, install included: target < 540 s)")
print(f"full dvc repro -f:                       {full:6.1f} s")
print(f"dvc exp run -S mix.infeasible_ratio=0.5: {new_ratio:6.1f} s")
print(f"new ratio / full repro: {new_ratio / full:.2f}  (target <= 0.40)")
