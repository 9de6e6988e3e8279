"""Where the work runs: the device of a stage, this process among those a launcher started, CPU threads.

torch and accelerate are imported only by the functions that need them: a stage that never touches a
tensor (the composite edit, mix) runs alone without loading either.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

# What launchers set: torchrun and `accelerate launch` WORLD_SIZE, mpirun (accelerate's CPU launcher) the
# MPI library's own counts; the names accelerate reads (accelerate.utils.get_cpu_distributed_information).
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
LOCAL_WORLD_SIZE_VARIABLES = ("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE",
                              "MV2_COMM_WORLD_LOCAL_SIZE")


def resolve_device(device: str):
    """A device param (auto | cpu | cuda) as a torch.device; auto is CUDA when torch finds it."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _first_count(names: tuple[str, ...]) -> int:
    for name in names:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def launched_processes() -> int:
    """How many processes the launcher that started this one started, on every machine (1 without one)."""
    return _first_count(WORLD_SIZE_VARIABLES)


def local_processes() -> int:
    """How many of them run on this machine, sharing its CPUs (1 without a launcher)."""
    return _first_count(LOCAL_WORLD_SIZE_VARIABLES)


@dataclass(frozen=True)
class SingleProcess:
    """The process state of a run that no launcher started: no process group, nothing to wait for.
    The same attributes as accelerate's PartialState that the stages use."""

    device: object = None  # None: the stage's own device param decides
    process_index: int = 0
    num_processes: int = 1
    is_main_process: bool = True

    def wait_for_everyone(self) -> None:
        pass

    def destroy_process_group(self) -> None:
        pass


def process_state(device: str, timeout: timedelta | None = None, light: bool = False):
    """This process among those `accelerate launch` started (alone without it), for a stage whose device
    param is device. Processes without a GPU form a group only when accelerate is told they are CPU
    processes, otherwise each thinks it is alone; `accelerate launch --cpu` tells it through
    ACCELERATE_USE_CPU, which accelerate's PartialState itself does not read. timeout: how long the
    processes wait for each other at a barrier (torch.distributed's default otherwise).

    light: a process no launcher started gets a SingleProcess without importing torch (its device is
    None); for a stage whose work may need no tensor at all."""
    if light and launched_processes() == 1:
        return SingleProcess()
    from accelerate import PartialState
    from accelerate.utils import InitProcessGroupKwargs, parse_flag_from_env

    kwargs = InitProcessGroupKwargs(timeout=timeout).to_kwargs() if timeout is not None else {}
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or resolve_device(device).type == "cpu",
                        **kwargs)


def fix_cpu_threads(threads: int, deterministic: bool = False) -> None:
    """A fixed number of CPU threads (a CPU result depends on how a reduction is split among them) and,
    with deterministic, torch's deterministic kernels: same params, same bits on the CPU."""
    import torch

    torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills every new tensor with NaN, a guard against kernels that read memory
        # they never wrote; none of ours does, and the filling took a quarter of a pretraining step.
        torch.utils.deterministic.fill_uninitialized_memory = False


def cpu_count() -> int:
    """The CPUs this process may use (its affinity, which a batch scheduler sets), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes for CPU work (composite edits, rendering). spawn, not fork: the parent may hold threads,
    sockets and a CUDA context (torch.distributed's process group) that a forked child would inherit in
    an unknown state."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_end_with_parent)


def _end_with_parent() -> None:
    """Pool initializer. A parent killed with SIGKILL cannot stop its workers, which would wait for work
    forever (and keep writing to the work folder the next run uses); a thread ends the worker as soon as
    the parent is gone."""
    parent = multiprocessing.parent_process()

    def watch() -> None:
        parent.join()  # returns when the parent's end of a pipe closes, however it died
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
