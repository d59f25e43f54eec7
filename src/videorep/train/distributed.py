"""Multi-process training under ``torchrun``, the gradient-correct collectives, and determinism.

Launch::

    torchrun --nproc-per-node 2 -m videorep.cli train cosettle --data ... --out runs/x

:func:`init_from_env` reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (set by ``torchrun``) and
starts the default process group: ``nccl`` when CUDA is available, ``gloo`` otherwise (CPU).
Without those variables it does nothing and the run is a plain single process (world size 1 of
the same code path).

How a distributed step equals a single-process step on the same global batch
-----------------------------------------------------------------------------
* **Data**: :class:`videorep.train.trainer.MicroBatchSampler` gives micro-batch ``a`` of rank
  ``r`` the ``r``-th slice of the single-process micro-batch ``a``, so the union over ranks of
  every micro-batch is the same set of samples whatever the number of processes.
* **Gradients**: every loss is a mean over its rank's samples; DDP averages the gradients over
  the ranks, so with equal per-rank batches the average is the gradient of the global mean.
* **Cross-sample terms** need collectives that carry gradients:

  - :func:`all_gather_with_grad` (``torch.distributed.nn.functional.all_gather``): forward
    concatenates every rank's tensor; backward sends each rank the *sum over ranks* of the
    gradients arriving at its slice (an all-to-all plus a sum on gloo, a reduce-scatter on nccl).
    Rank ``r`` therefore back-propagates ``d(sum_r' L_r') / d z_r`` into its own encoder; DDP's
    average over ranks turns ``(1/W) sum_r d(sum_r' L_r')/dz_r dz_r/dtheta`` into exactly
    ``d((1/W) sum_r' L_r')/dtheta``, the gradient of the global-batch loss. A plain
    ``dist.all_gather`` has no backward: negatives from other ranks would be constants and the
    gradient through them lost. lightly's ``NTXentLoss(gather_distributed=True)`` uses its own
    ``GatherLayer`` with the same semantics (backward: all-reduce of the gradients, own slice).
  - :class:`GlobalBatchNorm`: batch statistics summed with the differentiable all-reduce (the
    same sum-of-gradients backward), so BatchNorm normalises over the global batch on CPU too
    (``torch.nn.SyncBatchNorm`` is GPU-only).
  - Queues (V-MoCo) enqueue the keys of all ranks with a plain ``concat_all_gather`` (no
    gradient is needed there) so every rank keeps the same queue.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

from videorep.errors import VideorepError

_STARTED_HERE = False


def is_distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def choose_backend() -> str:
    """``nccl`` when CUDA is available (one GPU per process), else ``gloo``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env(timeout_s: float = 1800.0) -> tuple[int, int]:
    """Start the process group from ``torchrun``'s environment; ``(rank, world_size)``.

    Idempotent: an already initialised group is reused. Without ``WORLD_SIZE`` (or with
    ``WORLD_SIZE=1``) nothing is started and ``(0, 1)`` is returned. On CUDA, each process uses
    the GPU ``LOCAL_RANK``.
    """
    global _STARTED_HERE
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank_ = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise VideorepError(
            f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}"
        ) from None
    if world <= 1:
        return 0, 1
    if not dist.is_available():
        raise VideorepError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = choose_backend()
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    _STARTED_HERE = True
    return rank_, world


def cleanup() -> None:
    """Destroy the process group if :func:`init_from_env` started it."""
    global _STARTED_HERE, _SIDE_GROUP
    if _STARTED_HERE and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _STARTED_HERE = False
    _SIDE_GROUP = None


def device() -> torch.device:
    """The device of this process: its GPU under nccl, else the CPU."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` ``[n, ...]`` of every rank along dim 0 -> ``[W * n, ...]`` (rank order).

    Gradient-correct (see the module docstring): the backward returns to each rank the sum over
    ranks of the gradients of its slice. Every rank must pass the same shape. World size 1
    returns ``x``.
    """
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


_SIDE_GROUP = None


def _side_group():  # noqa: ANN202
    """A second process group for collectives issued inside autograd (BatchNorm statistics), so
    they never interleave with DDP's asynchronous gradient all-reduces on the default group."""
    global _SIDE_GROUP
    if _SIDE_GROUP is None:
        _SIDE_GROUP = dist.new_group(backend=dist.get_backend())
    return _SIDE_GROUP


def all_reduce_sum_with_grad(x: Tensor) -> Tensor:
    """Differentiable sum of ``x`` over ranks (backward: the sum of the ranks' gradients)."""
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x, group=_side_group())


@torch.no_grad()
def all_reduce_mean_(tensors: Sequence[Tensor]) -> None:
    """Average ``tensors`` over ranks in place (no gradient); one collective for all of them."""
    if not is_distributed() or not tensors:
        return
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t).to(t.dtype))
        offset += n


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all ranks, on any device (CPU included).

    Training: per-channel sums (then centred squares) are summed over ranks with the
    differentiable all-reduce, so mean and biased variance are those of the concatenated global
    batch and gradients flow to every rank's inputs; running statistics use the unbiased global
    variance, as ``nn.BatchNorm*d`` does. Evaluation uses the running statistics. Works with
    inputs ``[N, C]``, ``[N, C, L]``, ``[N, C, D, H, W]``, ... (channels in dim 1).
    """

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002
        if input.dim() < 2:
            raise VideorepError(f"GlobalBatchNorm expects [N, C, ...], got {tuple(input.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training or self.running_mean is None) or not is_distributed():
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=x.dtype, device=x.device)
        stats = all_reduce_sum_with_grad(torch.cat([x.sum(dims), count.reshape(1)]))
        total = stats[-1]
        mean = stats[:-1] / total
        centred = x - mean.view(shape)
        var = all_reduce_sum_with_grad(centred.pow(2).sum(dims)) / total
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum
                if m is None:
                    m = 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * total / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: nn.Module) -> int:
    """Replace every BatchNorm of ``module`` in place by a global-batch one; returns the count.

    CUDA modules become :class:`torch.nn.SyncBatchNorm`, others :class:`GlobalBatchNorm` (the
    class of each module is swapped), so parameters and buffers stay the same tensor objects
    (an optimiser built before stays valid) and the state-dict keys do not change. No-op at
    world size 1.
    """
    if not is_distributed():
        return 0
    replaced = 0
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, (GlobalBatchNorm, nn.SyncBatchNorm)
        ):
            if any(p.is_cuda for p in child.parameters(recurse=False)):
                child.__class__ = nn.SyncBatchNorm
                child.process_group = None
            else:
                child.__class__ = GlobalBatchNorm
            replaced += 1
    return replaced


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
