"""`varireal --help` start-up against a bare Python start, and wall time and peak memory of each stage
of the embedded default, measured in one run in a fresh copy of the project.

Usage: .venv/bin/python bench/startup_memory.py [--runs 7]
"""

import argparse
import statistics

from common import Project, machine

STAGES = ["fetch", "prompt", "edit", "score", "mix", "train", "eval"]

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--runs", type=int, default=7, help="start-ups timed; the median is printed")
runs = parser.parse_args().runs

print(machine())
project = Project()
python = statistics.median(project.sh("python", "-c", "pass") for _ in range(runs))
cli = statistics.median(project.sh("varireal", "--help") for _ in range(runs))
print(f"python -c pass:  {python:5.2f} s (median of {runs})")
print(f"varireal --help: {cli:5.2f} s (median of {runs}; target < 0.5 s), {cli / python:.1f}x a bare Python start")

print("| stage | wall time | peak memory |")
print("|---|---|---|")
for stage in STAGES:
    seconds, peak = project.measure("varireal", stage)
    print(f"| {stage} | {seconds:.1f} s | {peak:.0f} MiB |", flush=True)
