"""The four V-CL objectives of BOD-VCL, Sec. 3.1, as loss heads on clip embeddings ``[B, V, D]``.

``B`` videos, ``V = rho`` views (clips) of each, ``D`` the embedding dimension (128, Sec. 5.1).
A head holds whatever the objective owns beyond the shared encoder/projector (the BYOL predictor,
the SwAV prototypes, the MoCo negative queue). The decoupled loss of Eq. 22 uses two heads of the
same kind, one on ``Z_A`` and one on ``Z_M``.

What comes from ``lightly`` (1.6):

* V-SimCLR, rho = 2: :class:`lightly.loss.NTXentLoss` (without memory bank), which is exactly
  Eq. 1-2 for two views (mean over the ``2 B`` anchors) and gathers negatives across processes
  with a gradient-carrying all-gather when ``gather_distributed`` is set. For rho > 2 Eq. 1 has
  several positives in the numerator, which NTXentLoss does not do; :func:`multi_positive_info_nce`
  implements that case (it equals NTXentLoss at rho = 2, tested).
* V-BYOL: :class:`lightly.loss.NegativeCosineSimilarity` (Eq. 4 as a loss) and
  :class:`lightly.models.modules.BYOLPredictionHead`.
* V-SwAV: :class:`lightly.loss.SwaVLoss` (swapped prediction with Sinkhorn-Knopp codes,
  :func:`lightly.loss.swav_loss.sinkhorn`) and :class:`lightly.models.modules.SwaVPrototypes`.
* Projection heads, momentum updates and the cosine momentum schedule are used in
  :mod:`videorep.methods.bodvcl.method`.

Not from lightly: the V-MoCo queue. ``NTXentLoss(memory_bank_size=...)`` keeps its bank in a
*non-persistent* buffer (so it would not be in a checkpoint; the trainer resumes from
``state_dict``) and enqueues inside ``forward``, while the shared trainer contract updates queues in
``after_optimizer_step``; it also has one positive per anchor. :class:`MoCoHead` keeps a persistent
queue, enqueues after the optimiser step, and computes Eq. 1 with the keys of the other views as
positives and the queue as negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videorep.errors import VideorepError

FRAMEWORKS = ("simclr", "moco", "byol", "swav")


def _dist_world() -> int:
    return (
        torch.distributed.get_world_size()
        if torch.distributed.is_available() and torch.distributed.is_initialized()
        else 1
    )


def multi_positive_info_nce(z: Tensor, temperature: float) -> Tensor:
    """Eq. 1-2 for ``rho >= 2`` views: ``z`` ``[B, V, D]`` (not normalised) -> scalar.

    For anchor ``(i, j)`` the positives are the other views of video ``i``, the negatives all views
    of the other videos; the numerator sums over the positives (Eq. 1); the mean runs over the
    ``B * V`` anchors (Eq. 2). Similarities are cosine similarities divided by ``temperature``.

    Distributed, the negatives are the views of every rank's videos (gathered with
    :func:`videorep.train.distributed.all_gather_with_grad`) and the mean runs over this rank's
    anchors; the DDP average over ranks is then the global-batch loss and gradient.
    """
    from videorep.train.distributed import all_gather_with_grad
    from videorep.train.distributed import rank as dist_rank

    b, v, _ = z.shape
    flat = F.normalize(z, dim=-1).reshape(b * v, -1)
    everyone = all_gather_with_grad(flat)  # [W * B * V, D]
    offset = dist_rank() * b * v if everyone.shape[0] != flat.shape[0] else 0
    logits = flat @ everyone.T / temperature  # local anchors x global candidates
    video = torch.arange(everyone.shape[0] // v, device=z.device).repeat_interleave(v)
    mine = video[offset : offset + b * v]
    rows = torch.arange(b * v, device=z.device)
    self_mask = torch.zeros(b * v, everyone.shape[0], dtype=torch.bool, device=z.device)
    self_mask[rows, rows + offset] = True
    pos_mask = (mine[:, None] == video[None, :]) & ~self_mask
    logits = logits.masked_fill(self_mask, float("-inf"))
    pos = torch.logsumexp(logits.masked_fill(~pos_mask, float("-inf")), dim=1)
    return (torch.logsumexp(logits, dim=1) - pos).mean()


class SimCLRHead(nn.Module):
    """V-SimCLR (Eq. 1-2): InfoNCE with in-batch negatives over ``rho`` views."""

    def __init__(self, dim: int, temperature: float = 0.1) -> None:
        super().__init__()
        from lightly.loss import NTXentLoss

        self.temperature = temperature
        self.ntxent = NTXentLoss(temperature=temperature, gather_distributed=_dist_world() > 1)

    def forward(self, z: Tensor, target: Tensor | None = None) -> Tensor:
        """``z`` ``[B, V, D]`` -> scalar loss."""
        if z.shape[1] == 2:
            return self.ntxent(z[:, 0], z[:, 1])
        return multi_positive_info_nce(z, self.temperature)


class MoCoHead(nn.Module):
    """V-MoCo (Eq. 1 with a momentum encoder, Eq. 3): keys from the target network, a queue of
    past keys as negatives.

    The queue is a persistent buffer ``[queue_size, D]`` of L2-normalised keys (random unit vectors
    at the start, as in MoCo). Keys seen in :meth:`forward` are kept in ``pending`` and written by
    :meth:`enqueue` after the optimiser step (oldest entries overwritten first).
    """

    def __init__(self, dim: int, queue_size: int = 4096, temperature: float = 0.1) -> None:
        super().__init__()
        if queue_size < 1:
            raise VideorepError(f"queue size must be positive, got {queue_size}")
        self.temperature = temperature
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.pending: list[Tensor] = []

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        """Queries ``q`` ``[B, V, D]`` (online), keys ``k`` ``[B, V, D]`` (target, no grad)."""
        if k is None:
            raise VideorepError("V-MoCo needs target-network keys")
        b, v, _ = q.shape
        qn = F.normalize(q, dim=-1)
        kn = F.normalize(k.detach(), dim=-1)
        pos = torch.einsum("bjd,bkd->bjk", qn, kn) / self.temperature  # [B, V, V]
        off_diag = ~torch.eye(v, dtype=torch.bool, device=q.device)
        pos = pos.masked_fill(~off_diag, float("-inf"))  # positives: other views' keys
        neg = torch.einsum("bjd,nd->bjn", qn, self.queue.clone()) / self.temperature
        log_num = torch.logsumexp(pos, dim=-1)
        log_den = torch.logsumexp(torch.cat([pos, neg], dim=-1), dim=-1)
        if torch.is_grad_enabled():
            self.pending.append(kn.reshape(b * v, -1))
        return (log_den - log_num).mean()

    @torch.no_grad()
    def enqueue(self, keys: Tensor | None = None) -> None:
        """Write ``keys`` ``[N, D]`` (default: the pending keys) into the queue, FIFO."""
        chunks = [keys] if keys is not None else self.pending
        if not chunks:
            return
        self.pending = [] if keys is None else self.pending
        if _dist_world() > 1:
            # Every rank enqueues the keys of all ranks (no gradient needed: keys are detached),
            # micro-batch by micro-batch in rank order, which is the order of the global batch
            # (see MicroBatchSampler): every rank keeps the single-process queue.
            from lightly.models.utils import concat_all_gather

            chunks = [concat_all_gather(c.contiguous()) for c in chunks]
        keys = torch.cat(chunks)
        keys = F.normalize(keys, dim=1)[: self.queue.shape[0]]
        n, size = keys.shape[0], self.queue.shape[0]
        idx = (int(self.queue_ptr) + torch.arange(n, device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((int(self.queue_ptr) + n) % size)


class BYOLHead(nn.Module):
    """V-BYOL (Eq. 4): predictor on the online embedding, negative cosine to the target of the
    other views; negative-free. Predictor: 2-layer MLP, hidden 4096 (Sec. 5.1)."""

    def __init__(self, dim: int, hidden_dim: int = 4096) -> None:
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead

        self.predictor = BYOLPredictionHead(dim, hidden_dim, dim)
        self.criterion = NegativeCosineSimilarity()

    def forward(self, z: Tensor, target: Tensor) -> Tensor:
        """Online ``z`` and target ``[B, V, D]`` -> mean over ordered view pairs ``j != k``."""
        if target is None:
            raise VideorepError("V-BYOL needs target-network embeddings")
        b, v, d = z.shape
        p = self.predictor(z.reshape(b * v, d)).view(b, v, d)
        losses = [
            self.criterion(p[:, j], target[:, k].detach())
            for j in range(v)
            for k in range(v)
            if j != k
        ]
        return torch.stack(losses).mean()


class SwAVHead(nn.Module):
    """V-SwAV: swapped prediction of Sinkhorn-Knopp codes over prototypes (lightly SwaVLoss).

    Embeddings are L2-normalised before the prototypes; prototypes are re-normalised after every
    optimiser step (:meth:`normalize_prototypes`). No feature queue, no multi-crop.
    """

    def __init__(
        self,
        dim: int,
        n_prototypes: int = 1000,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        sinkhorn_epsilon: float = 0.05,
    ) -> None:
        super().__init__()
        from lightly.loss import SwaVLoss
        from lightly.models.modules import SwaVPrototypes

        self.prototypes = SwaVPrototypes(dim, n_prototypes)
        self.criterion = SwaVLoss(
            temperature=temperature,
            sinkhorn_iterations=sinkhorn_iterations,
            sinkhorn_epsilon=sinkhorn_epsilon,
            sinkhorn_gather_distributed=_dist_world() > 1,
        )
        self.normalize_prototypes()

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.normalize()

    def forward(self, z: Tensor, target: Tensor | None = None) -> Tensor:
        """``z`` ``[B, V, D]`` -> scalar; every view is a high-resolution crop."""
        zn = F.normalize(z, dim=-1)
        logits = [self.prototypes(zn[:, j]) for j in range(z.shape[1])]
        return self.criterion(logits, [])


def build_head(
    framework: str,
    dim: int,
    temperature: float = 0.1,
    queue_size: int = 4096,
    predictor_hidden: int = 4096,
    n_prototypes: int = 1000,
) -> nn.Module:
    """One loss head for ``framework`` in :data:`FRAMEWORKS` on ``dim``-d embeddings."""
    if framework == "simclr":
        return SimCLRHead(dim, temperature)
    if framework == "moco":
        return MoCoHead(dim, queue_size, temperature)
    if framework == "byol":
        return BYOLHead(dim, predictor_hidden)
    if framework == "swav":
        return SwAVHead(dim, n_prototypes, temperature)
    raise VideorepError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")


def uses_target_network(framework: str) -> bool:
    """V-MoCo and V-BYOL compute positives with a momentum (target) network (Eq. 3)."""
    return framework in ("moco", "byol")
