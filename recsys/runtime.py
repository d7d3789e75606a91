"""How torch code learns where and how to run.

``resources/compute.py`` (the Dagster ComputeResource) builds a TorchRuntime once per run and passes
it into every recsys function that trains or infers with torch; nothing in recsys picks a device on
its own.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def _print(msg: str) -> None:
    print(msg, flush=True)


@dataclass(frozen=True)
class TorchRuntime:
    device: str = "cpu"  # "cpu", "cuda", "cuda:0"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on cuda only)
    threads: int = 2
    seed: int = 0
    log: Callable[[str], None] = field(default=_print, compare=False)

    def torch_device(self):
        import torch

        return torch.device(self.device)

    def seed_everything(self, offset: int = 0) -> None:
        import torch

        s = self.seed + offset
        random.seed(s)
        np.random.seed(s % (2**32))
        torch.manual_seed(s)
        torch.set_num_threads(max(1, self.threads))

    def generator(self, offset: int = 0):
        import torch

        g = torch.Generator(device="cpu")
        g.manual_seed(self.seed + offset)
        return g

    def autocast(self):
        import torch

        if self.device.startswith("cuda") and self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type="cuda", dtype=dtype)
        return contextlib.nullcontext()


# ---------------------------------------------------------------------------- cost budgets
# Neural training is bounded by a fixed number of examples per epoch, not by the size of the log:
# every epoch draws a fresh seeded sample, and per-epoch validation scores a fixed seeded subset.


def epoch_sample(n: int, budget: int | None, generator) -> np.ndarray:
    """One epoch's examples: a fresh random order of ``range(n)``, cut to ``budget`` (all ``n`` when
    ``budget`` is None/0 or ``n <= budget``). ``generator`` is a numpy ``Generator`` or a (CPU) torch
    ``Generator``; the draw is the one the caller made before budgets existed (``rng.permutation(n)``
    or ``torch.randperm(n, generator=g)``), so a log within the budget trains exactly as before."""
    if isinstance(generator, np.random.Generator):
        order = generator.permutation(n)
    else:
        import torch

        order = torch.randperm(n, generator=generator).numpy()
    return order if not budget or n <= budget else order[: int(budget)]


def capped_subset(n: int, cap: int | None, seed: int) -> np.ndarray:
    """Sorted positions of a seeded uniform sample of at most ``cap`` of ``range(n)`` (all when fewer):
    the fixed validation subset scored after every epoch."""
    if not cap or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 0x5A11]).choice(n, size=int(cap), replace=False))
