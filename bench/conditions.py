"""Top-1 of the embedded default per condition over 3 training seeds (the README's table).

Each cell is `dvc exp run` in a throw-away copy of the project; the synthetic pool is shared.
Usage: .venv/bin/python bench/conditions.py
"""

import json
import statistics

from common import Project

# Every cell sets every varied key: `dvc exp run -S` leaves its values in the workspace's params.
CONDITIONS = {
    "real-only": ["mix.synthetic_per_class=0", "mix.infeasible_ratio=0"],
    "feasible": ["mix.synthetic_per_class=40", "mix.infeasible_ratio=0"],
    "infeasible": ["mix.synthetic_per_class=40", "mix.infeasible_ratio=1"],
    "mixed (0.5)": ["mix.synthetic_per_class=40", "mix.infeasible_ratio=0.5"],
}
SEEDS = [0, 1, 2]

project = Project()
project.sh("dvc", "repro")
print("| condition | top-1 per seed | mean ± std |")
print("|---|---|---|")
for name, overrides in CONDITIONS.items():
    scores = []
    for seed in SEEDS:
        sets = [arg for o in overrides + [f"train.seed={seed}"] for arg in ("-S", o)]
        project.sh("dvc", "exp", "run", *sets)
        scores.append(json.loads((project.root / "metrics/eval.json").read_text())["top1"])
    assert json.loads((project.root / "metrics/eval.json").read_text())["condition"] == name.split(" ")[0]
    cells = ", ".join(f"{100 * s:.1f}" for s in scores)
    print(f"| {name} | {cells} | {100 * statistics.mean(scores):.1f} ± {100 * statistics.stdev(scores):.1f} |",
          flush=True)
