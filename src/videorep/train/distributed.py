"""Multi-process training under ``torchrun``: the gradient-correct collectives.

Launch::

    torchrun --nproc-per-node 2 -m videorep.cli train cosettle --data ... --out runs/x

Rank, world size, starting the process group (:func:`init_from_env`, :func:`cleanup`) and
:func:`set_deterministic` come from :mod:`videorep.utils.distributed`, shared with evaluation,
and are re-exported here. This module keeps what only training needs.

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

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from videorep.errors import VideorepError

# The generic pieces live in videorep.utils.distributed (shared with evaluation); they are
# re-exported here for the training code that imports them from this module.
from videorep.utils.distributed import (
    choose_backend,
    cleanup,
    device,
    init_from_env,
    is_distributed,
    local_rank,
    on_cleanup,
    rank,
    set_deterministic,
    world_size,
)

__all__ = [
    "GlobalBatchNorm",
    "all_gather_with_grad",
    "all_reduce_mean_",
    "all_reduce_sum_with_grad",
    "choose_backend",
    "cleanup",
    "convert_batchnorm",
    "device",
    "init_from_env",
    "is_distributed",
    "local_rank",
    "rank",
    "set_deterministic",
    "world_size",
]


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


def _forget_side_group() -> None:
    global _SIDE_GROUP
    _SIDE_GROUP = None


on_cleanup(_forget_side_group)  # the side group dies with the default group


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
