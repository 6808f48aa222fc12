"""Training across processes and machines: PyTorch's own engine, `torchrun` and
DistributedDataParallel (DDP), gloo on CPU and NCCL on GPU.

How a run is split (W processes, B streams each):

* The training text is cut into W * B contiguous streams, exactly as one process with batch
  W * B would cut it; rank r reads rows r*B .. r*B + B - 1 of every window. The ranks' streams are
  disjoint and together they are the single-process batch.
* DDP averages the gradients over ranks after every backward, so one DDP update over W ranks
  equals one single-process update over the union of their batches (the loss is a mean over
  positions; tests/test_distributed.py checks the weights).
* The learning rate is not scaled: the effective batch is W * B streams and the update is the
  mean over all of them, as a single process with batch W * B would take.
* Only rank 0 writes checkpoints and logs. The carried hidden state is gathered from every rank
  before a checkpoint, so a checkpoint holds the whole W * B state, and resume hands each rank
  its rows back.
* Stop decisions (time limits, Ctrl-C) are rank 0's, broadcast every step, so no rank waits in a
  collective that the others have left.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from unrolled.charlm.text import TokenStreams, Window


@dataclass(frozen=True)
class Group:
    """This process's place in the run: rank, world size, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Group()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> Group:
    """Join the process group torchrun described in the environment (RANK, WORLD_SIZE,
    MASTER_ADDR, ...); a plain process is a group of one."""
    if not launched_by_torchrun():
        return SINGLE
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    return Group(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def device_for(group: Group, device: torch.device) -> torch.device:
    """Each process on a machine takes its own GPU (LOCAL_RANK); on CPU they share it."""
    if device.type == "cuda" and group.active:
        return torch.device("cuda", group.local_rank)
    return device


def teardown(group: Group) -> None:
    """Leave the group together: rank 0 tests and writes after the loop while the others are
    done, and a rank that destroys its group while a peer still holds the connection can abort
    the peer (gloo: "terminate called without an active exception")."""
    if group.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class RankStreams:
    """This rank's B rows of the W * B parallel streams (see `text.TokenStreams`)."""

    def __init__(self, tokens, batch_size: int, seq_len: int, stride: int | None, group: Group):
        self.all = TokenStreams(tokens, batch_size * group.world_size, seq_len, stride)
        self.rows = slice(group.rank * batch_size, (group.rank + 1) * batch_size)
        self.batch_size, self.seq_len, self.stride = batch_size, self.all.seq_len, self.all.stride

    def __len__(self) -> int:
        return len(self.all)

    def window(self, k: int) -> Window:
        w = self.all.window(k)  # (W*B, T): every rank cuts the same windows, then keeps its rows
        return Window(w.index, w.x[self.rows], w.y[self.rows])


def gather_state(state, group: Group):
    """Every rank's carried state (.., B, H) -> the whole run's (.., W*B, H), on every rank."""
    if not group.active or state is None:
        return state
    if isinstance(state, tuple):
        return tuple(gather_state(s, group) for s in state)
    parts = [torch.empty_like(state) for _ in range(group.world_size)]
    dist.all_gather(parts, state.contiguous())
    return torch.cat(parts, dim=1)


def rank_state(state, group: Group, batch_size: int):
    """The whole run's carried state (.., W*B, H) -> this rank's rows (.., B, H)."""
    if not group.active or state is None:
        return state
    if isinstance(state, tuple):
        return tuple(rank_state(s, group, batch_size) for s in state)
    return state[:, group.rank * batch_size:(group.rank + 1) * batch_size].contiguous()


def agree(value: int, group: Group) -> int:
    """Rank 0's value of a small integer (a stop decision), on every rank."""
    if not group.active:
        return value
    t = torch.tensor([value], dtype=torch.int64, device="cuda" if group.backend == "nccl" else "cpu")
    dist.broadcast(t, src=0)
    return int(t.item())
