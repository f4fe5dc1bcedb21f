"""One process or many: the training run's place in a `torchrun` launch.

`torchrun --nproc-per-node N -m vdatrain fit RECIPE` starts N copies; each reads
RANK, WORLD_SIZE and LOCAL_RANK from the environment, joins the process group
(NCCL on GPUs, gloo on CPU) and trains a DDP replica on its share of every batch.
A plain `vdatrain fit` is the one-process case of the same code.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """The process that writes logs, checkpoints and evaluations."""
        return self.rank == 0

    def check_batch(self, batch_size: int, key: str = "train.batch_size") -> None:
        """A global batch must split evenly over the processes; else one line naming the recipe key."""
        if batch_size % self.world:
            from vdatrain.recipe import RecipeError

            divisors = ", ".join(str(k) for k in range(1, batch_size + 1) if batch_size % k == 0)
            raise RecipeError(f"{key}: {batch_size} does not split over {self.world} processes (the recipe's batch "
                              f"is the global one); run {divisors} processes, or set a larger global batch with "
                              f"--set {key}=N (scale optim.lr with it), or run recipes or seeds side by side, one "
                              f"per GPU, with `vdatrain sweep`")

    def deal(self, items: list) -> list:
        """This process's share of work items that need not split evenly (evaluation images): every
        world-th item from this rank on."""
        return items[self.rank::self.world]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `tensor` over every process (a copy, on `tensor`'s device); exact for integers."""
        if self.world == 1:
            return tensor
        out = tensor.to(self.device, copy=True)  # NCCL reduces device tensors only
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(tensor.device)

    def everyone(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's `tensor` (equal shapes), concatenated along dim 0 in rank order: the global batch of
        per-process shares (the tensor itself in a single process). No gradient flows through it."""
        if self.world == 1:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def mine(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's share (dim 0) of a tensor of the global batch (`everyone`'s inverse)."""
        n = len(tensor) // self.world
        return tensor[self.rank * n:(self.rank + 1) * n]

    def gather(self, obj) -> list:
        """`obj` from every process, in rank order (a one-element list in a single process)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def process_device() -> torch.device:
    """This process's device: its torchrun LOCAL_RANK's GPU (cuda:0 alone), else the CPU."""
    return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")


def configure_device(train) -> None:
    """The GPU settings a recipe's `train` section asks for: TF32 for matrix multiplies and convolutions
    (`tf32`; the reference's torch 1.7.1 had both on by default, which Ampere GPUs honour), cuDNN's search for
    the fastest algorithm of each fixed input shape (`cudnn_benchmark`, on in the reference's configs). Nothing
    changes on a CPU."""
    torch.backends.cuda.matmul.allow_tf32 = train.tf32
    torch.backends.cudnn.allow_tf32 = train.tf32
    torch.backends.cudnn.benchmark = train.cudnn_benchmark


def setup(timeout_min: float | None = None) -> Dist:
    """Join the torchrun process group when launched by torchrun; else a single process. `timeout_min`: how long
    a collective may wait for the slowest process (train.dist_timeout_min) before the job is stopped."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    device = process_device()
    if world == 1:
        return Dist(device=device)
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = {"timeout": datetime.timedelta(minutes=timeout_min)} if timeout_min else {}
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None, **timeout)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """DDP replica on several processes (BatchNorm synchronised across GPUs, so the statistics are
    those of the global batch as in a one-GPU run; gloo has no SyncBatchNorm, so on CPU each replica
    normalises its own share); the model itself otherwise."""
    if d.world == 1:
        return model
    if d.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[d.device] if d.device.type == "cuda" else None)


def average_gradients(module: torch.nn.Module, d: Dist) -> None:
    """Average `module`'s gradients over the processes, as DDP does for the model: for the optimisers of
    method parts (the video discriminator), so their replicas stay identical. Nothing on one process."""
    if d.world > 1:
        for p in module.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= d.world


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def replicas_in_sync(model: torch.nn.Module, d: Dist) -> bool:
    """Whether every process holds bit-identical parameters (checked at each checkpoint)."""
    if d.world == 1:
        return True
    with torch.no_grad():
        mine = torch.stack([p.detach().double().sum() for p in unwrap(model).parameters()]).cpu()
    return all(torch.equal(mine, other) for other in d.gather(mine))
