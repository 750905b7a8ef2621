"""Several evaluation workers: the rank a launcher (torchrun, accelerate launch) gave this process, isolating it as
a single-process evaluation, starting N workers through torchrun, and which checkpoints and shares each one takes."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

_LAUNCHER_ENV = ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                 "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_USE_AGENT_STORE",
                 "TORCH_NCCL_ASYNC_ERROR_HANDLING")


def launcher_rank() -> tuple[int, int, int]:
    """``(rank, world size, local rank)`` set by torchrun or accelerate launch; ``(0, 1, 0)`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))


def isolate_worker(local_rank: int) -> None:
    """Make a launched rank an independent single-process evaluation: pin one GPU (``local_rank`` modulo the
    visible ones) where there are any, and drop the launcher's rendezvous variables so the engine sets itself up
    alone (``RANK`` and ``WORLD_SIZE`` stay: they only name this worker, e.g. for messages printed once)."""
    import torch

    gpus = torch.cuda.device_count()  # NVML: CUDA is not initialised yet, so the pin below still applies
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[local_rank % gpus]
    for key in _LAUNCHER_ENV:
        os.environ.pop(key, None)


def spawn_workers(n: int, argv: Sequence[str]) -> int:
    """Run this same ``r1-aqa`` command as ``n`` ranks under torchrun (standalone, this machine); its exit status.
    Unless ``OMP_NUM_THREADS`` is set, the workers share the CPU cores equally."""
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
               "-m", "r1_aqa.cli", *argv]
    print(f"starting {n} workers: torchrun --standalone --nproc-per-node={n} -m r1_aqa.cli {' '.join(argv)}",
          file=sys.stderr)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // n))
    return subprocess.call(command, env={**os.environ, "OMP_NUM_THREADS": threads})


def worker_units(checkpoints: int, workers: int) -> list[list[tuple[int, int, int]]]:
    """What each worker evaluates: ``[(checkpoint index, shard, shards)]`` per worker.

    With at least as many checkpoints as workers, worker w takes whole checkpoints w, w + workers, ...; otherwise
    worker w takes shard w // checkpoints of checkpoint w % checkpoints, which is split between the workers it has.
    Every worker loads as few engines as possible and every item belongs to exactly one share.
    """
    if checkpoints >= workers:
        return [[(c, 0, 1) for c in range(w, checkpoints, workers)] for w in range(workers)]
    sizes = [len(range(c, workers, checkpoints)) for c in range(checkpoints)]
    return [[(w % checkpoints, w // checkpoints, sizes[w % checkpoints])] for w in range(workers)]


@dataclass(frozen=True)
class Share:
    """The part of an output one worker predicts: share ``shard`` of ``shards`` (every ``shards``-th item) among
    ``workers`` processes; ``also``: other outputs its reports need (the silence run); ``position``: the line of its
    progress bar."""

    shard: int = 0
    shards: int = 1
    workers: int = 1
    also: tuple[Path, ...] = ()
    position: int = 0
