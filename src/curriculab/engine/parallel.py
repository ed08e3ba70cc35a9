"""The training loop's view of DistributedDataParallel (launched by curriculab.distributed): shard each global
batch, scale the loss, sum the epoch's counts over ranks. Without a process group every hook is the identity."""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist


class Single:
    """One process: every hook is the identity, so the loop runs exactly the ops it runs without DDP."""

    rank, world, main = 0, 1, True

    def wrap(self, model):
        return model

    def shard(self, batches):
        return batches

    def mean(self, per: torch.Tensor) -> torch.Tensor:
        return per.mean() if per.ndim else per

    def count(self, n: int):
        return n

    def total(self, sums: torch.Tensor, seen: int):
        return sums, seen

    def batch_size(self, n: int) -> int:
        return n

    def union(self, rows: torch.Tensor, size: int) -> torch.Tensor:
        return rows

    def average_(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def selection(self, sel: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
        return sel


class Group(Single):
    """This process's rank in an initialised process group."""

    def __init__(self):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.main = self.rank == 0
        self.n = 0  # size of the current global batch

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        dev = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    def shard(self, batches):
        """This rank's contiguous slice of every global batch (any Batch dataclass: each field sliced)."""
        for b in batches:
            self.n = len(b.index)
            lo, hi = self.n * self.rank // self.world, self.n * (self.rank + 1) // self.world
            yield dataclasses.replace(b, **{f.name: getattr(b, f.name)[lo:hi] for f in dataclasses.fields(b)})

    def mean(self, per: torch.Tensor) -> torch.Tensor:
        """Σ_slice ℓ · N/B: DDP's average over N ranks is then the mean over the global batch of B."""
        return per.sum() * (self.world / self.n) if per.ndim else per

    def count(self, n: int):
        return self.n / self.world  # loss · count = this slice's Σ ℓ

    def total(self, sums: torch.Tensor, seen: int):
        both = torch.cat([sums, sums.new_tensor([float(seen)])])
        dist.all_reduce(both)
        return both[:-1], int(both[-1].item())

    def batch_size(self, n: int) -> int:
        return self.n  # the global batch's, not this slice's

    def union(self, rows: torch.Tensor, size: int) -> torch.Tensor:
        """The rows (of a vector of `size`) that any rank's slice holds, each once, in order."""
        mask = torch.zeros(size, dtype=torch.int32, device=rows.device)
        mask[rows] = 1
        dist.all_reduce(mask, op=dist.ReduceOp.MAX)
        return mask.nonzero().squeeze(1)

    def average_(self, t: torch.Tensor) -> torch.Tensor:
        """In place, the mean of `t` over the ranks (as DDP averages the model's gradients)."""
        dist.all_reduce(t)
        return t.div_(self.world)

    def selection(self, sel: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
        """Rank 0's selection of positions in 0..n-1 (sorted; None: all) on every rank."""
        mask = torch.zeros(n + 1, dtype=torch.uint8, device=device)
        if self.main:
            mask[n if sel is None else sel] = 1
        dist.broadcast(mask, 0)
        return None if bool(mask[n]) else mask[:n].nonzero().squeeze(1)


def group() -> Single:
    """This process's place: a rank of the torchrun group, or the one process."""
    return Group() if dist.is_available() and dist.is_initialized() else Single()
