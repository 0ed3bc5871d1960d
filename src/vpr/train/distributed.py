"""Data-parallel training (PyTorch DDP) launched by ``torchrun``: one process per GPU (or CPU share).

``train.processes: N`` (N > 1) makes the train stage re-launch itself as
``python -m torch.distributed.run --standalone --nproc-per-node N stages/train.py``; on several machines run
``torchrun --nnodes M --nproc-per-node N --rdzv-backend c10d --rdzv-endpoint HOST:PORT stages/train.py`` on
each (same checkout, same params, a shared ``models/``), and the stage sees it is already launched.

What makes N processes train like one process on the same global batch:
  * every rank iterates the same sampler (same seed and epoch) and builds only its share of each global
    batch: whole places, ``places_per_batch / N`` of them (vpr.data.loading);
  * the descriptors of the shares are gathered, so the metric loss and its miner see the whole global batch,
    exactly as in one process (pairs across ranks included);
  * gradients are all-reduced by DistributedDataParallel; the gather passes each rank's own descriptors
    through with their gradient scaled by N, so DDP's *average* equals the one-process gradient;
  * BatchNorm statistics are taken over the global batch (``train.sync_batchnorm``): torch's SyncBatchNorm on
    CUDA; on CPU, where torch's refuses to run, ``GlobalBatchNorm`` all-reduces the sums itself.
Only rank 0 validates (the others receive its metrics), logs and writes checkpoints; every rank resumes
from the same ``last.pt``.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vpr.train.autograd import scale_gradient


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True inside a process started by torchrun (or another launcher that sets the env:// variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(script: str, processes: int, args=()) -> int:
    """Run ``script`` under torchrun with ``processes`` processes on this machine; its exit status."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        script,
        *args,
    ]
    return subprocess.call(
        command,
        env={**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))},
    )


def init(device: str) -> tuple[Ranks, str]:
    """Join the process group started by torchrun: NCCL on CUDA, gloo on CPU. Returns (ranks, device)."""
    ranks = Ranks(
        int(os.environ["RANK"]),
        int(os.environ["WORLD_SIZE"]),
        int(os.environ.get("LOCAL_RANK", 0)),
        int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
    )
    if device == "cuda":
        torch.cuda.set_device(ranks.local_rank)  # "cuda" now means this rank's GPU
    # validation runs on rank 0 only while the others wait: allow for a long one
    dist.init_process_group(
        "nccl" if device == "cuda" else "gloo", timeout=datetime.timedelta(hours=3)
    )
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks.local_world))
    return ranks, device


def barrier() -> None:
    """Wait for every rank (no-op without DDP): e.g. all have read last.pt before rank 0 writes it again."""
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, all ranks together. Drop the DDP-wrapped model first: a DDP Reducer freed
    after its process group is gone joins gloo threads whose peer has exited, and the process hangs."""
    if dist.is_initialized():
        import gc

        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatch(nn.Module):
    """Wraps the DDP model: ``forward(local images)`` returns the descriptors of the whole global batch (rank
    order = global batch order), this rank's part carrying its gradient (times the world size: DDP averages)."""

    def __init__(self, ddp_model: DistributedDataParallel, world: int):
        super().__init__()
        self.ddp, self.world = ddp_model, world

    def forward(self, images, return_features: bool = False):
        out = self.ddp(images, return_features=return_features)
        local, features = out if return_features else (out, None)
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local.detach().contiguous())
        parts[dist.get_rank()] = scale_gradient(local, float(self.world))
        descriptors = torch.cat(parts)
        # the feature maps stay this rank's own: no loss term that reads them runs under DDP (see recipe.py)
        return (descriptors, features) if return_features else descriptors

    def __getattr__(
        self, name
    ):  # extra loss terms may read model attributes (descriptor_dim, backbone, ...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.ddp.module, name)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with statistics over the global batch, for gloo (CPU) where torch's SyncBatchNorm refuses to
    run: per-channel sums are all-reduced (autograd-aware), two passes for an accurate variance."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x):
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.numel() / x.shape[1] * dist.get_world_size()  # every rank holds an equal share
        mean = _AllReduceSum.apply(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.pow(2).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(
                    var.detach() * (count / max(count - 1, 1)), alpha=m
                )
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every BatchNorm of ``module``, keeping its very parameter and buffer objects (the optimizer
        already holds the parameters; the state-dict keys stay the same)."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            new = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
            )
            for name, value in list(module.named_parameters(recurse=False)) + list(
                module.named_buffers(recurse=False)
            ):
                setattr(new, name, value)
            new.train(module.training)
            return new
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module


def wrap(model: nn.Module, ranks: Ranks, device: str, sync_batchnorm: bool = True) -> nn.Module:
    """The module the objective calls under DDP: global-batch descriptors from a DDP-wrapped ``model``
    (``model`` itself stays the plain network: validation and checkpoints use it)."""
    if sync_batchnorm:
        if device == "cuda":
            converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            converted = GlobalBatchNorm.convert(model)
        assert converted is model, "the top-level module must not itself be a BatchNorm"
    ddp = DistributedDataParallel(
        model, device_ids=[ranks.local_rank] if device == "cuda" else None
    )
    return GlobalBatch(ddp, ranks.world)


def rank0_only(validate, ranks: Ranks):
    """``validate(model) -> metrics`` run by rank 0; the other ranks receive its metrics (every rank then
    takes the same best-epoch, schedule and early-stopping decisions)."""

    def run(model):
        box = [validate(model) if ranks.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    return run
