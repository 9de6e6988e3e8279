"""The data stages write the same bytes whatever kernels the CPU makes the libraries choose.

The committed dvc.lock is only reproducible on another machine if no pixel depends on the CPU. The
libraries pick kernels by CPU at run time: OpenBLAS by core type (a matrix product rounds differently
on SkylakeX and Haswell kernels), numpy by SIMD level (float32 sin, cos, arctan2 and power), glibc's
libm by FMA support. Forcing the oldest choices x86-64 offers on this one machine stands in for an
older CPU: fetch, prompt, edit and mix must write the same bytes as with the native choices.
"""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from check_repro import forced_kernels  # what `tools/check_repro.py --kernels oldest` forces
from test_determinism import files

STAGES = ["fetch", "prompt", "edit", "mix"]


def start_data_stages(folder: Path, params: Path, kernels: dict[str, str]) -> subprocess.Popen:
    """fetch, prompt, edit and mix in a new process (the kernels are chosen when libraries load)."""
    folder.mkdir()
    (folder / "params.yaml").write_bytes(params.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in forced_kernels("oldest")} | kernels
    script = "import sys; from varireal_pipeline.cli import app\nfor stage in sys.argv[1:]: app([stage], standalone_mode=False)"
    with open(folder / "stages.log", "w") as log:  # a file, not a pipe: the other run never waits on it
        return subprocess.Popen([sys.executable, "-c", script, *STAGES], cwd=folder, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def data_files(folder: Path, process: subprocess.Popen) -> dict[str, bytes]:
    process.wait(timeout=600)
    assert process.returncode == 0, (folder / "stages.log").read_text()[-2000:]
    return files(folder / "data")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="forces x86-64 kernels (OpenBLAS core types, numpy SIMD levels)")
def test_data_stages_write_the_same_bytes_under_the_oldest_kernels(project, tmp_path):
    # Big enough that a kernel-dependent rounding shows in whole pixels: 960 edits of 128 px images.
    # (With luminance as `image @ LUMA`, 6 of them differ between OpenBLAS kernels.)
    params = project(dataset={"shots": 8, "image_size": 128}, edit={"per_image": 2})
    runs = {name: start_data_stages(tmp_path / name, params, kernels)  # side by side on the two cores
            for name, kernels in {"native": {}, "oldest": forced_kernels("oldest")}.items()}
    native, oldest = (data_files(tmp_path / name, process) for name, process in runs.items())

    assert sum(name.startswith("synthetic/images/") for name in native) == 10 * 8 * 3 * 2 * 2
    assert native.keys() == oldest.keys()
    differing = [name for name in native if native[name] != oldest[name]]
    assert not differing, f"{len(differing)} files depend on the CPU's kernels, e.g. {differing[:3]}"
