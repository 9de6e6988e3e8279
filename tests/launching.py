"""`accelerate launch --cpu --num_processes N -m varireal <stage>` in the current folder, as the tests
start several processes on the CPU.

With --cpu accelerate starts the N processes through MPI (`--mpirun_hostfile`); without a hostfile
it runs one (huggingface/accelerate#2741). The test extras install mpich, whose mpirun accelerate
finds on PATH. Each launch gets a free loopback port, so launches can overlap.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(stage: str, processes: int, extra_env: dict | None = None, **popen) -> subprocess.Popen:
    hostfile = Path("hostfile").resolve()
    hostfile.write_text(f"localhost:{processes}\n")
    command = [BIN / "accelerate", "launch", "--cpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--mpirun_hostfile", str(hostfile),
               "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()), "-m", "varireal", stage]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "", **(extra_env or {})}
    return subprocess.Popen(command, env=env, **popen)
