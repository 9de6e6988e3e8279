"""Cost of a new infeasible ratio against a full `dvc repro -f`, measured in one run.

Target: <= 0.40, because `edit` (the expensive stage) must never re-run for a new ratio.
Usage: .venv/bin/python bench/ratio_cost.py
"""

import os
import platform

from common import Project

project = Project()
project.sh("dvc", "repro")  # warm the OS file cache and the MLflow store, so both timings below see the same state
full = project.sh("dvc", "repro", "-f")
new_ratio = project.sh("dvc", "exp", "run", "-S", "mix.infeasible_ratio=0.5")
print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
print(f"full dvc repro -f:                       {full:6.1f} s")
print(f"dvc exp run -S mix.infeasible_ratio=0.5: {new_ratio:6.1f} s")
print(f"ratio: {new_ratio / full:.2f} (target <= 0.40)")
