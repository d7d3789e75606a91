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
