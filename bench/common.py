"""Helpers for the bench scripts: a throw-away copy of the project where DVC can run freely, and a
one-line description of the machine the figures come from."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    """CPU model, usable cores, memory and GPU, as the README's Performance section quotes them."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    gpu = subprocess.run(["sh", "-c", "nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null"],
                         capture_output=True, text=True).stdout.strip().replace("\n", ", ")
    return (f"machine: {cpu}, {len(os.sched_getaffinity(0))} cores, {memory / 2**20:.0f} GiB, "
            f"GPU: {gpu or 'none'}; python {platform.python_version()}")


class Project:
    """A fresh git + DVC copy of the committed project files in a temporary folder."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="varireal-bench-"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"
        files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
        for name in files:
            if name.startswith(".dvc/") or name == "dvc.lock" or name.startswith("metrics/"):
                continue  # a fresh run: no lock file, no metrics from the last one
            target = self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((REPO / name).read_bytes())
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                    ["git", "add", "-A"], ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "b"]):
            self.sh(*cmd)

    def sh(self, *args: str) -> float:
        """Run a command in the copy; returns its wall time in seconds."""
        return self.measure(*args)[0]

    def measure(self, *args: str) -> tuple[float, float]:
        """Run a command in the copy; returns its wall time in seconds and its peak resident memory in
        MiB (the largest of the process and its children, from the kernel's accounting at exit)."""
        start = time.perf_counter()
        with open(self.root / ".bench.log", "w+") as log:
            process = subprocess.Popen(args, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - start
            if os.waitstatus_to_exitcode(status):
                log.seek(0)
                sys.exit(f"{' '.join(args)} failed:\n{log.read()[-6000:]}")
        return seconds, usage.ru_maxrss / 1024

    def params(self, **sections) -> str:
        """A params file in the copy: params.yaml with some keys of some sections changed."""
        params = yaml.safe_load((self.root / "params.yaml").read_text())
        for section, values in sections.items():
            params[section].update(values)
        path = self.root / f"params-{len(list(self.root.glob('params-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return path.name

    def metrics(self, stage: str) -> dict:
        return json.loads((self.root / "metrics" / f"{stage}.json").read_text())
