"""The one place that picks where torch runs (cuda when present, else cpu)."""

from __future__ import annotations

import dagster as dg

from recsys.runtime import TorchRuntime


class ComputeResource(dg.ConfigurableResource):
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on cuda)
    # One intra-op thread: while profiling PI2I and two-tower training on this loaded 2-core box,
    # two torch threads ran 4-6x slower than one (an observation, not a bench/ result); raise on
    # dedicated hosts.
    threads: int = 1
    seed: int = 0

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def runtime(self, log=None) -> TorchRuntime:
        """A TorchRuntime for recsys code; ``log`` (e.g. context.log.info) receives progress lines."""
        import torch

        device = self.resolved_device()
        torch.set_num_threads(max(1, self.threads))
        if log is None:
            return TorchRuntime(device=device, precision=self.precision, threads=self.threads, seed=self.seed)
        return TorchRuntime(device=device, precision=self.precision, threads=self.threads, seed=self.seed, log=log)

    def describe(self) -> dict:
        import torch

        device = self.resolved_device()
        name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
        return {"device": device, "device_name": name, "precision": self.precision, "threads": self.threads, "seed": self.seed}
