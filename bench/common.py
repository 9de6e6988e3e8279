"""Helpers for the bench scripts: a throw-away copy of the project where DVC can run freely."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
        start = time.perf_counter()
        result = subprocess.run(args, cwd=self.root, env=self.env, capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return time.perf_counter() - start
