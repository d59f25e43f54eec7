"""Process groups under ``torchrun``: rank, world size, start/stop, and determinism.

The one place training and evaluation ask where a process stands. ``torchrun`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the ``MASTER_ADDR``/``MASTER_PORT`` rendezvous;
:func:`init_from_env` starts the default process group from them, with the backend of the
device the ranks compute on (:func:`videorep.utils.device.backend_for`: ``nccl`` for a GPU, one
per process, ``LOCAL_RANK``; ``gloo`` for the CPU, also ``--device cpu`` on a CUDA machine) and :func:`cleanup` destroys it again if it
was started here. Without those variables nothing is started and every function answers for a
plain single process (rank 0 of world size 1), so the same code path serves both.

Sharded evaluation uses :func:`distributed_context` / :func:`current_context`, which describe
the group as a :class:`DistContext` whose ``group`` carries Python objects (a gloo group, also
when the default backend is nccl). The training collectives that carry gradients live in
:mod:`videorep.train.distributed`.

Bottom layer: imports only torch and :mod:`videorep.errors`.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from videorep.errors import VideorepError
from videorep.utils.env import env_int  # also read from here by older callers

_STARTED_HERE = False
_OBJECT_GROUP: Any = None  # gloo group for object collectives when the default backend is not gloo
_CLEANUP_HOOKS: list[Callable[[], None]] = []


# ----------------------------------------------------------------------------- where we stand


def is_distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes in the default group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group; 0 without one."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialised process group."""
    return rank(), world_size()


def local_rank() -> int:
    """``LOCAL_RANK`` from ``torchrun`` (the process's index on its machine); 0 without it."""
    return env_int("LOCAL_RANK", 0)


def choose_backend(device_spec: str | torch.device | None = "auto") -> str:
    """The process-group backend for ranks computing on ``device_spec`` (``auto``: CUDA when
    present): ``nccl`` for a GPU, ``gloo`` for the CPU."""
    from videorep.utils.device import backend_for, resolve_device

    return backend_for(resolve_device(device_spec))


def device() -> torch.device:
    """The device of this process: its GPU under nccl, else the CPU."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----------------------------------------------------------------------------- start and stop


def init_from_env(
    timeout_s: float = 1800.0, device: str | torch.device | None = "auto"
) -> tuple[int, int]:
    """Start the default process group from ``torchrun``'s environment; ``(rank, world_size)``.

    Idempotent: an already initialised group is reused (and left to its owner). Without
    ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing is started and ``(0, 1)`` is returned.
    ``device`` is the command's ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``): it is
    resolved with :func:`videorep.utils.device.resolve_device` (each rank takes the GPU
    ``LOCAL_RANK``, modulo the GPU count) and the backend is the one of that device
    (:func:`videorep.utils.device.backend_for`): ``--device cpu`` on a CUDA machine is gloo.
    Bad values, a missing rendezvous or a torch build without ``torch.distributed`` are one
    :class:`VideorepError`.
    """
    global _STARTED_HERE
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = env_int("WORLD_SIZE", 1)
    rank_ = env_int("RANK", 0)
    local = local_rank()
    if world < 1 or not 0 <= rank_ < world:
        raise VideorepError(f"RANK={rank_}, WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    if world == 1:
        return 0, 1
    if not dist.is_available():
        raise VideorepError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise VideorepError(
                f"WORLD_SIZE={world} but {var} is not set: launch multi-process runs with "
                f"torchrun (e.g. torchrun --standalone --nproc_per_node {world} -m videorep.cli "
                f"...)"
            )
    from videorep.utils.device import backend_for, resolve_device

    chosen = resolve_device(device, local_rank=local, world_size=world)
    backend = backend_for(chosen)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    dist.init_process_group(
        backend=backend, rank=rank_, world_size=world, timeout=timedelta(seconds=timeout_s)
    )
    _STARTED_HERE = True
    return rank_, world


def on_cleanup(hook: Callable[[], None]) -> None:
    """Call ``hook()`` whenever :func:`cleanup` runs (to forget groups derived from the default)."""
    if hook not in _CLEANUP_HOOKS:
        _CLEANUP_HOOKS.append(hook)


def cleanup() -> None:
    """Destroy the process group if :func:`init_from_env` started it; forget derived groups.

    A garbage collection runs first: a finished run leaves its DistributedDataParallel wrapper in
    a reference cycle with its method, and that wrapper's reducer holds the process groups. Left
    to the interpreter's exit, the groups' gloo threads would outlive ``destroy_process_group``
    and be torn down during finalization, which can abort the process (SIGABRT, "terminate
    called without an active exception").
    """
    global _STARTED_HERE, _OBJECT_GROUP
    if _STARTED_HERE and dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
    _STARTED_HERE = False
    _OBJECT_GROUP = None
    for hook in _CLEANUP_HOOKS:
        hook()


# ----------------------------------------------------------------------------- sharded evaluation


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly trivial) group of evaluation processes.

    Attributes:
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: number of processes sharing the evaluation (1: no sharding).
        group: the process group used for object collectives (``None``: the default group).
    """

    rank: int = 0
    world_size: int = 1
    group: Any = None

    @property
    def is_main(self) -> bool:
        """Rank 0 prints the table and writes ``results.json``."""
        return self.rank == 0


def _object_group() -> Any:
    """``None`` (the default group) if it is gloo, else a cached gloo group over all ranks."""
    global _OBJECT_GROUP
    if dist.get_backend() == "gloo":
        return None
    if _OBJECT_GROUP is None:
        _OBJECT_GROUP = dist.new_group(backend="gloo")
    return _OBJECT_GROUP


def current_context() -> DistContext:
    """The context of an already initialised default process group, else world size 1.

    Library callers (a training loop evaluating under ``torchrun``) get sharding for free when
    they have set up ``torch.distributed``; nothing is initialised here. Must be called on every
    rank (it may create the gloo group for objects, a collective call).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(dist.get_rank(), dist.get_world_size(), _object_group())


@contextmanager
def distributed_context(device: str | torch.device | None = "auto") -> Iterator[DistContext]:
    """Context of this process for a command-line run; initialises ``torch.distributed``.

    With ``WORLD_SIZE`` unset or 1 nothing is initialised and the context is world size 1. A
    group that already exists is used as it is; otherwise :func:`init_from_env` starts one and
    it is destroyed on exit. ``device`` (the command's ``--device``) picks the backend, as in
    :func:`init_from_env`.
    """
    world = env_int("WORLD_SIZE", 1)
    if world == 1:
        env_int("RANK", 0)  # still validated
        yield DistContext()
        return
    existed = dist.is_available() and dist.is_initialized()
    init_from_env(device=device)
    try:
        yield current_context()
    finally:
        if not existed:
            cleanup()


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """``obj`` of rank 0, on every rank of ``ctx`` (picklable; world size 1 returns ``obj``)."""
    if ctx.world_size == 1:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, group=ctx.group)
    return box[0]


# ----------------------------------------------------------------------------- determinism


def set_deterministic(threads: int | None = 1) -> dict:
    """Reproducible arithmetic run to run: deterministic kernels and a fixed thread count.

    ``torch.use_deterministic_algorithms(True)`` (ops without a deterministic kernel raise
    instead of varying), ``CUBLAS_WORKSPACE_CONFIG`` for CUDA GEMMs, no cuDNN autotuning, and
    ``torch.set_num_threads(threads)`` (``None`` leaves it): the intra-op thread count changes
    how reductions are split and so their rounding. Returns ``{"deterministic": True,
    "threads": n}`` for the run's settings record.
    """
    if threads is not None and threads < 1:
        raise VideorepError(f"--threads {threads}: must be at least 1")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    if threads is not None:
        torch.set_num_threads(threads)
    return {"deterministic": True, "threads": torch.get_num_threads()}
