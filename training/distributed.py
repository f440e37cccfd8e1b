"""Where training runs: the device (``--device auto|cpu|cuda``) and, under ``torchrun``,
the data-parallel process group (``torch.distributed``; gloo on the CPU, NCCL on CUDA).

``import training.distributed`` is cheap; torch is imported by the functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["DEVICES", "DeviceError", "Distributed", "join_group", "local_batch", "rank_seed",
           "resolve_device", "setup", "world_size_from_env"]

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """The requested device cannot be used here (the message says why)."""


def cuda_missing_reason() -> str | None:
    """Why CUDA cannot be used here, or ``None`` when it can."""
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    return "no CUDA device is visible"


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``; ``cuda`` without
    CUDA raises :class:`DeviceError`."""
    if name not in DEVICES:
        raise DeviceError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cpu":
        return "cpu"
    reason = cuda_missing_reason()
    if name == "cuda" and reason is not None:
        raise DeviceError(f"--device cuda: CUDA is not available ({reason}); use --device "
                          "cpu or auto")
    return "cpu" if reason is not None else "cuda"


def world_size_from_env() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise DeviceError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: the device it trains on, its rank, the world size."""

    device: str  # "cpu", "cuda" or "cuda:<local rank>"
    kind: str  # "cpu" or "cuda", as --device resolved
    rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    def finish(self) -> None:
        """Wait for every rank (rank 0 has written the bundle), then leave the group."""
        import torch.distributed as dist

        if self.world_size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def abort(self) -> None:
        """Leave the group without waiting (after an error; torchrun stops the others)."""
        import torch.distributed as dist

        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str = "auto") -> Distributed:
    """Resolve ``device``; when launched by torchrun (``WORLD_SIZE`` > 1) join the process
    group (once) and pin this rank to GPU ``LOCAL_RANK`` on CUDA."""
    kind = resolve_device(device)
    if kind == "cuda":  # deterministic cuBLAS (read when CUDA first runs a matmul)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    world = world_size_from_env()
    if world <= 1:
        return Distributed(device=kind, kind=kind)
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise DeviceError(f"WORLD_SIZE={world} but this torch has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = kind
    if kind == "cuda":
        if local >= torch.cuda.device_count():
            raise DeviceError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA "
                              "device(s) visible: use --nproc-per-node <= the GPU count")
        dev = f"cuda:{local}"
        torch.cuda.set_device(local)
    rank, world = join_group(dev)
    return Distributed(device=dev, kind=kind, rank=rank, world_size=world,
                       backend=str(dist.get_backend()))


def join_group(device: str) -> tuple[int, int]:
    """``(rank, world size)``: of the ``torch.distributed`` default group, which a process
    launched by torchrun (``WORLD_SIZE`` > 1) joins here if it has not yet (gloo for a CPU
    ``device``, NCCL for CUDA); ``(0, 1)`` in a single process."""
    import torch.distributed as dist

    if not dist.is_available():
        if world_size_from_env() > 1:
            raise DeviceError("WORLD_SIZE > 1 but this torch has no torch.distributed")
        return 0, 1
    if not dist.is_initialized():
        if world_size_from_env() <= 1:
            return 0, 1
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size()


def local_batch(idx, rank: int, world_size: int):
    """This rank's part of a global batch of sample indices: positions ``rank::world``
    (disjoint, together the whole batch; sizes differ by at most one)."""
    return idx[rank::world_size]


def rank_seed(seed: int, rank: int) -> int:
    """A seed for rank ``rank``'s augmentation stream, independent of the other ranks'."""
    return int(np.random.SeedSequence([seed, 0x5EED, rank]).generate_state(1, np.uint64)[0]
               % (2**63))
