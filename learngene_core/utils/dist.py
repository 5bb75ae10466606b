"""Process-group helpers that work with and without torch.distributed initialised."""

from __future__ import annotations

import os
from typing import Any

import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank: from the process group once it exists, before that from the launcher's environment
    (torchrun sets RANK, SLURM sets SLURM_PROCID, Lightning's own launcher sets NODE_RANK and LOCAL_RANK)."""
    if is_dist():
        return dist.get_rank()
    if not launched_externally():
        return 0
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", 1)) > 1:
        return int(env["SLURM_PROCID"])
    local_world = int(
        env.get("LOCAL_WORLD_SIZE", int(env["WORLD_SIZE"]) // max(1, int(env.get("NUM_NODES", 1))))
    )
    return int(env.get("NODE_RANK", 0)) * local_world + int(env["LOCAL_RANK"])


def world_size() -> int:
    if is_dist():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1) or 1) if launched_externally() else 1


def launched_externally() -> bool:
    """torchrun / srun / Lightning's launcher set these for every process."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def started_by_external_launcher() -> bool:
    """torchrun (sets RANK) or srun with several tasks; not Lightning's own launcher, whose children join
    the process group inside their first ``Trainer.fit``, in step with the parent."""
    env = os.environ
    return launched_externally() and ("RANK" in env or int(env.get("SLURM_NTASKS", 1)) > 1)


def ensure_process_group(backend: str) -> None:
    """Join an external launcher's process group up front, so stages that run before (or without) a DDP
    Trainer, such as stage 3's task sharding after a finished stage 1, see every process."""
    if is_dist() or world_size() <= 1 or not dist.is_available() or not started_by_external_launcher():
        return
    os.environ.setdefault("RANK", str(rank()))
    if backend == "nccl":
        import torch

        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)


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
    """``obj`` as rank ``src`` has it, on every rank (just ``obj`` without a process group)."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
