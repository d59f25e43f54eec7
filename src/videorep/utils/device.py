"""Device decisions, as pure functions: which device, which autocast, which DDP ids, pinning.

Every command that computes takes ``--device {auto,cpu,cuda,cuda:N}`` (:func:`add_device_argument`)
and turns it into a :class:`torch.device` with :func:`resolve_device` once, at start-up. Everything
else (the DDP ``device_ids``, the autocast device type, ``pin_memory``, the process-group backend)
is derived from that one device by the functions below, which take the facts they depend on (CUDA
present, GPU count, ``LOCAL_RANK``) as arguments, so they are tested for CUDA inputs on a machine
without a GPU.

Rules:

* ``auto`` is ``cuda`` when CUDA is available, else ``cpu``.
* ``cuda`` is the GPU ``LOCAL_RANK % device_count`` (GPU 0 outside ``torchrun``): under
  ``torchrun`` every rank takes its own GPU.
* ``cuda:N`` is GPU ``N``; under ``torchrun`` with more than one process it is refused (each rank
  needs its own GPU: use ``cuda`` or ``auto``).
* ``cpu`` is the CPU even where CUDA is present; its process group is gloo.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import torch

from videorep.errors import VideorepError

DEVICE_CHOICES_HELP = "auto (CUDA when present, else CPU), cpu, cuda (this rank's GPU) or cuda:N"

_CUDA_N = re.compile(r"^cuda:(\d+)$")


def resolve_device(
    spec: str | torch.device | None = "auto",
    *,
    cuda_available: bool | None = None,
    device_count: int | None = None,
    local_rank: int | None = None,
    world_size: int | None = None,
) -> torch.device:
    """The device named by ``spec`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) for this process.

    ``cuda_available``, ``device_count``, ``local_rank`` and ``world_size`` default to the
    facts of this process (``torch.cuda`` and ``torchrun``'s ``LOCAL_RANK`` / ``WORLD_SIZE``);
    tests pass them to check the CUDA decisions on a CPU. A bad name, CUDA asked for where there
    is none, or a GPU index out of range is one :class:`VideorepError`.
    """
    from videorep.utils.env import env_int

    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if device_count is None:
        device_count = torch.cuda.device_count() if cuda_available else 0
    if local_rank is None:
        local_rank = env_int("LOCAL_RANK", 0)
    if world_size is None:
        world_size = env_int("WORLD_SIZE", 1)
    if spec == "auto":
        spec = "cuda" if cuda_available and device_count > 0 else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    match = _CUDA_N.match(spec)
    if spec != "cuda" and match is None:
        raise VideorepError(f"--device {spec!r}: expected {DEVICE_CHOICES_HELP}")
    if not cuda_available or device_count < 1:
        raise VideorepError(
            f"--device {spec}: CUDA is not available in this torch build or on this machine "
            f"(torch {torch.__version__}); use --device cpu or auto"
        )
    if match is None:
        return torch.device("cuda", local_rank % device_count)
    index = int(match.group(1))
    if index >= device_count:
        raise VideorepError(
            f"--device {spec}: this machine has {device_count} GPU(s) (cuda:0..cuda:{device_count - 1})"
        )
    if world_size > 1:
        raise VideorepError(
            f"--device {spec} under torchrun with {world_size} processes: every rank needs its "
            f"own GPU; use --device cuda (rank r takes GPU LOCAL_RANK) or auto"
        )
    return torch.device("cuda", index)


def autocast_device_type(where: torch.device | torch.Tensor | str) -> str:
    """The ``device_type`` string for :func:`torch.autocast`: ``cuda`` or ``cpu``, taken from
    the device (or the device of a tensor) that the computation runs on."""
    if isinstance(where, torch.Tensor):
        where = where.device
    kind = torch.device(where).type
    return "cuda" if kind == "cuda" else "cpu"


def autocast(where: torch.device | torch.Tensor | str, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` on the device of ``where`` to ``dtype``; a no-op context for ``None``
    (float32). fp16 autocast on the CPU is refused (PyTorch runs it, slowly and without
    a scaler); use bf16 there."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    kind = autocast_device_type(where)
    if kind == "cpu" and dtype == torch.float16:
        raise VideorepError("float16 autocast runs on CUDA only; use bf16 on the CPU")
    return torch.autocast(kind, dtype=dtype)


def ddp_device_ids(device: torch.device) -> list[int] | None:
    """``device_ids`` for ``DistributedDataParallel``: ``[index]`` for a GPU, ``None`` on the
    CPU (DDP refuses ids for a CPU module)."""
    device = torch.device(device)
    if device.type == "cuda":
        return [device.index if device.index is not None else 0]
    return None


def backend_for(device: torch.device) -> str:
    """Process-group backend for ranks computing on ``device``: nccl for GPUs, gloo for CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def pin_memory_for(device: torch.device) -> bool:
    """Whether DataLoaders should pin host memory: only when batches go to a GPU."""
    return torch.device(device).type == "cuda"


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` (a tensor, or dicts / lists / tuples of them) moved to ``device``.

    Transfers to a GPU are ``non_blocking`` (asynchronous from pinned memory); other values are
    returned unchanged.
    """
    device = torch.device(device)
    non_blocking = device.type == "cuda"
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        items = [to_device(v, device) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    return obj


def set_matmul_tf32(allow: bool) -> None:
    """Allow (or forbid) TF32 tensor cores for float32 matmuls and convolutions on CUDA."""
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def cpu_has_native_bf16(flags: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), read from
    ``/proc/cpuinfo`` (or from ``flags``, for tests). False where it cannot be read."""
    if flags is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                flags = fh.read()
        except OSError:
            return False
    words = set(flags.split())
    return bool(words & {"avx512_bf16", "amx_bf16"})


def describe(device: torch.device) -> str:
    """A one-line description for logs and provenance, e.g. ``cuda:0 (NVIDIA H100)``."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def add_device_argument(parser: Any, default: str = "auto") -> None:
    """Add ``--device`` to an argparse parser (the same flag on every computing command)."""
    parser.add_argument("--device", default=default, metavar="DEVICE", help=DEVICE_CHOICES_HELP)


@contextlib.contextmanager
def synchronized(device: torch.device) -> Iterator[None]:
    """Wait for queued GPU work before and after the block (for timings); no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
