"""Does a clean checkout reproduce what is committed? `make check-repro` (README "Reproducibility").

Clones HEAD into a temporary folder, runs `dvc repro` there and holds the result against the committed
dvc.lock and metrics:
- data stages (fetch, prompt, edit, mix): every output byte for byte, on any CPU;
- model stages (pretrain, score, train, eval): torch's float kernels are chosen per CPU and round differently,
  so on another kind of CPU their bytes may differ; their metrics must then agree within TOLERANCES.
  Where the bytes match too (the CPU kind that made the lock), it says so.

    python tools/check_repro.py [--kernels native|avx2|oldest] [--keep]

--kernels runs the clone's pipeline under forced library kernels, standing in for another CPU on this one:
avx2 as on a CPU without AVX-512, oldest as on the oldest x86-64. Exit status 1, with one line per
output, when anything differs beyond what the README allows.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DATA_STAGES = ("fetch", "prompt", "edit", "mix")
PIPELINE = ("fetch", "prompt", "edit", "pretrain", "score", "mix", "train", "eval")  # dvc.yaml's order, for the report

# Largest absolute difference allowed in a model stage's metric file, by file and top-level key; the
# rest of a file must match exactly (counts, names). Measured across kernels on one machine (README):
# top-1 and per-class accuracy identical, losses and scores within 2e-6.
TOLERANCES = {
    "metrics/eval.json": {"top1": 0.01, "per_class": 0.02},  # 1 point of top-1; 3 of a class's 150 images
    "metrics/train.json": {"final_loss": 1e-3, "mean_loss_last_10pct": 1e-3},
    "metrics/train_loss.csv": {"loss": 1e-3},
    "metrics/scores.json": {"auroc_feasibility": 1e-3, "mean": 1e-3},
    # 410 contrastive steps from random weights, on an Intel Xeon under AVX2 kernels against the lock made
    # on an AMD EPYC: losses within 3e-6, zero-shot and retrieval top-1 identical. The same room as training.
    "metrics/pretrain.json": {"final_loss": 1e-3, "zero_shot_top1_heldout": 0.01, "retrieval_top1_heldout": 0.01},
    "metrics/pretrain_loss.csv": {"loss": 1e-3},
}


def forced_kernels(kernels: str) -> dict[str, str]:
    """Environment that makes numpy, OpenBLAS, libm and torch choose the kernels of an older x86-64 CPU."""
    if kernels == "native":
        return {}
    from numpy._core import _multiarray_umath as numpy_cpu

    found = [name for name in numpy_cpu.__cpu_dispatch__ if numpy_cpu.__cpu_features__.get(name)]
    no_avx512 = "-AVX512F,-AVX512DQ,-AVX512BW,-AVX512VL"
    if kernels == "avx2":
        return {
            "OPENBLAS_CORETYPE": "Haswell",
            "NPY_DISABLE_CPU_FEATURES": " ".join(n for n in found if n.startswith(("AVX512", "X86_V4"))),
            "GLIBC_TUNABLES": f"glibc.cpu.hwcaps={no_avx512}",
            "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
        }
    return {  # oldest
        "OPENBLAS_CORETYPE": "Prescott",  # SSE3 kernels, no FMA
        "NPY_DISABLE_CPU_FEATURES": " ".join(found),  # numpy's baseline loops only
        "GLIBC_TUNABLES": f"glibc.cpu.hwcaps=-AVX2,-FMA,{no_avx512}",  # libm's plain code
        "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "DNNL_MAX_CPU_ISA": "SSE41",
    }


def outputs(lock: dict) -> dict[str, tuple[str, str]]:
    """Output path -> (stage, md5) of a parsed dvc.lock."""
    return {out["path"]: (stage, out["md5"]) for stage, entry in lock["stages"].items() for out in entry.get("outs", [])}


def json_leaves(value, prefix=()) -> dict[tuple, object]:
    """Leaves of a JSON value by their key path."""
    if isinstance(value, dict):
        return {path: leaf for key, item in value.items() for path, leaf in json_leaves(item, prefix + (key,)).items()}
    return {prefix: value}


def metric_leaves(path: str, text: str) -> dict[tuple, object]:
    """Values of a metric file by key path: (key, ...) for JSON, (column, step) for the loss CSV."""
    if path.endswith(".csv"):
        return {(column, row["step"]): float(value) for row in csv.DictReader(io.StringIO(text))
                for column, value in row.items() if column != "step"}
    return json_leaves(json.loads(text))


def compare_metric(path: str, committed: str, reproduced: str) -> tuple[bool, str]:
    """Whether a model stage's metric file agrees within TOLERANCES, and the largest difference seen."""
    tolerance = TOLERANCES.get(path, {})
    old, new = metric_leaves(path, committed), metric_leaves(path, reproduced)
    if old.keys() != new.keys():
        return False, f"other entries: {sorted(set(old) ^ set(new))[:3]}"
    largest, worst = 0.0, ""
    for key, value in old.items():
        allowed = tolerance.get(key[0], 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not allowed:
            if new[key] != value:
                return False, f"{'.'.join(map(str, key))}: {value} -> {new[key]} (must be equal)"
            continue
        difference = abs(new[key] - value)
        if difference > allowed:
            return False, f"{'.'.join(map(str, key))}: {value} -> {new[key]}, more than {allowed:g}"
        if difference > largest:
            largest, worst = difference, ".".join(map(str, key))
    return True, f"largest difference {largest:.2g} ({worst})" if worst else "values equal"


def check(committed_lock: dict, reproduced_lock: dict, committed_files: dict[str, str],
          reproduced_files: dict[str, str]) -> tuple[bool, list[str]]:
    """Judge a reproduction: data outputs byte for byte, model outputs by their metrics. Returns (ok, lines)."""
    old, new = outputs(committed_lock), outputs(reproduced_lock)
    ok, lines = True, []
    for path, (stage, md5) in sorted(old.items(), key=lambda item: PIPELINE.index(item[1][0])):
        if path not in new:
            ok = False
            lines.append(f"FAIL  {stage:7} {path}: not produced")
        elif new[path][1] == md5:
            lines.append(f"ok    {stage:7} {path}: identical")
        elif stage in DATA_STAGES:
            ok = False
            lines.append(f"FAIL  {stage:7} {path}: other bytes ({md5} -> {new[path][1]}); a data stage must not differ")
        elif path in TOLERANCES:
            agrees, detail = compare_metric(path, committed_files[path], reproduced_files[path])
            ok &= agrees
            lines.append(f"{'ok' if agrees else 'FAIL':5} {stage:7} {path}: other bytes, {detail}")
        else:
            lines.append(f"ok    {stage:7} {path}: other bytes (a model output; its metrics are compared)")
    return ok, lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", choices=["native", "avx2", "oldest"], default="native")
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="varireal-check-repro-"))
    clone = folder / "clone"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")} | forced_kernels(args.kernels)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the installed `dvc`, `varireal`
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
    committed_lock = yaml.safe_load((clone / "dvc.lock").read_text())
    committed_files = {path: (clone / path).read_text() for path in TOLERANCES if (clone / path).is_file()}

    print(f"check-repro: {commit} in {clone}, kernels: {args.kernels}", flush=True)
    start = time.perf_counter()
    with open(folder / "repro.log", "w") as log:
        status = subprocess.run(["dvc", "repro"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if status:
        print(f"check-repro: dvc repro failed (exit {status}); its output: {folder / 'repro.log'}")
        return 1
    print(f"check-repro: dvc repro took {time.perf_counter() - start:.0f} s", flush=True)

    reproduced_files = {path: (clone / path).read_text() for path in committed_files}
    ok, lines = check(committed_lock, yaml.safe_load((clone / "dvc.lock").read_text()), committed_files, reproduced_files)
    print("\n".join(lines))
    print("check-repro: " + ("ok: data stages byte for byte, model stages as the README allows" if ok else "FAILED"))
    if ok and not args.keep:
        shutil.rmtree(folder)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
