"""Batches that shrink when the GPU runs out of memory, instead of losing a long run to one big batch."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from varireal.errors import StageError


def is_cuda_out_of_memory(error: BaseException) -> bool:
    # Only code that imported torch can raise torch's error; looking it up in sys.modules keeps torch
    # out of stages that never use it (the composite editor).
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


class HalvingBatches:
    """Runs work over items batch_size at a time. A CUDA out-of-memory error halves the batch size (for
    the rest of the run) and retries the same items; the first halving prints one line. work must give
    one result per item whatever the batch, so results do not depend on the batch size."""

    def __init__(self, batch_size: int, stage: str):
        self.batch_size, self.stage = batch_size, stage
        self.halvings = 0

    def __call__(self, work: Callable[[Sequence], list], items: Sequence) -> list[Any]:
        results: list[Any] = []
        start = 0
        while start < len(items):
            chunk = items[start:start + self.batch_size]
            try:
                results += work(chunk)
                start += len(chunk)
                continue
            except Exception as error:
                if not is_cuda_out_of_memory(error):
                    raise
            # Out of the except block: the error's traceback, and the GPU tensors its frames hold, are freed.
            self._halve(len(chunk))
        return results

    def _halve(self, failed: int) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the failed batch's blocks, so the smaller one can have them
        if failed == 1:
            raise StageError(f"CUDA out of memory with a batch of 1; free GPU memory, use a smaller model or "
                             f"resolution, or run {self.stage} on another device")
        self.batch_size = failed // 2
        self.halvings += 1
        if self.halvings == 1:
            print(f"{self.stage}: CUDA out of memory at batch {failed}; continuing with {self.batch_size}",
                  file=sys.stderr, flush=True)
