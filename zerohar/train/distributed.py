"""`torchrun` support: this process's place in the job, the process group, and the gathers the losses need.

Without torchrun (no `WORLD_SIZE` in the environment) everything here is a no-op for rank 0 of 1.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup_distributed() -> Dist:
    """Join the process group that `torchrun` describes in the environment (gloo on CPU, nccl on CUDA).

    Returns:
        This process's :class:`Dist` (rank 0 of 1 without torchrun).
    """
    import torch.distributed as td

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not td.is_initialized():
        # The group lives as long as the process: a caller may train several stages in a row (the benchmark
        # does), and collectives of a destroyed and re-created default group fail.
        td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_group)
    return Dist(rank, world, device)


def _destroy_group() -> None:
    import torch.distributed as td

    if td.is_initialized():
        td.destroy_process_group()


def all_gather_with_grad(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Concatenate `t` (same shape on every process) over processes along dim 0, keeping the autograd graph.

    Each process then computes the loss of the whole global batch. The backward of the gather sums the
    gradients of every process's copy of the loss into the slice it owns, and DDP averages parameter
    gradients over processes: the two factors of N cancel, so the update equals the single-process one.
    """
    if not dist.enabled:
        return t
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t), dim=0)


def barrier(dist: Dist) -> None:
    """Wait for every process (a no-op in a single-process job)."""
    if dist.enabled:
        import torch.distributed as td

        td.barrier()


def broadcast_object(obj, dist: Dist):
    """The main process's `obj` on every process (a no-op in a single-process job).

    Decisions that depend on measurements (validation metrics, elapsed time) are the main process's, so that
    every process stops at the same step.
    """
    if not dist.enabled:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]
