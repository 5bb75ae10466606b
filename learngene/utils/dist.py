"""Process-group helpers that work with and without torch.distributed initialised."""

from __future__ import annotations

import os
from typing import Any

import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    if is_dist():
        return dist.get_rank()
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)) or 0) if launched_externally() else 0


def world_size() -> int:
    if is_dist():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1) or 1) if launched_externally() else 1


def launched_externally() -> bool:
    """torchrun / srun / Lightning's launcher set these for every process."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_rank_zero() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (just ``[obj]`` without a process group)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
