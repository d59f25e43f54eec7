"""The four V-CL objectives against direct formulas (BOD-VCL paper, Eq. 1-4; SwAV)."""

import math

import torch
import torch.nn.functional as F

from videorep.methods.bodvcl.frameworks import (
    BYOLHead,
    MoCoHead,
    SimCLRHead,
    SwAVHead,
    multi_positive_info_nce,
)


def _eq1_loop(z, tau):
    """Eq. 1-2 written out with Python loops."""
    b, v, _ = z.shape
    total = 0.0
    for i in range(b):
        for j in range(v):
            a = z[i, j]
            pos = sum(
                math.exp(F.cosine_similarity(a, z[i, k], dim=0).item() / tau)
                for k in range(v)
                if k != j
            )
            allv = sum(
                math.exp(F.cosine_similarity(a, z[m, k], dim=0).item() / tau)
                for m in range(b)
                for k in range(v)
                if (m, k) != (i, j)
            )
            total += -math.log(pos / allv)
    return total / (b * v)


def test_simclr_matches_eq1_for_two_and_three_views():
    g = torch.Generator().manual_seed(0)
    z2 = torch.randn(5, 2, 7, generator=g)
    head = SimCLRHead(7, temperature=0.1)
    assert abs(head(z2).item() - _eq1_loop(z2, 0.1)) < 1e-4  # lightly NTXentLoss path
    assert abs(multi_positive_info_nce(z2, 0.1).item() - head(z2).item()) < 1e-5
    z3 = torch.randn(4, 3, 6, generator=g)
    assert abs(head(z3).item() - _eq1_loop(z3, 0.1)) < 1e-4


def test_moco_loss_queue_and_enqueue():
    g = torch.Generator().manual_seed(1)
    head = MoCoHead(4, queue_size=6, temperature=0.2)
    queue = head.queue.clone()
    q = torch.randn(3, 2, 4, generator=g, requires_grad=True)
    k = torch.randn(3, 2, 4, generator=g)
    loss = head(q, k)
    # direct formula: anchor (i, j), positive = key of the other view, negatives = queue
    total = 0.0
    for i in range(3):
        for j in range(2):
            qn = F.normalize(q[i, j], dim=0)
            pos = torch.exp(qn @ F.normalize(k[i, 1 - j], dim=0) / 0.2)
            neg = torch.exp(queue @ qn / 0.2).sum()
            total += -torch.log(pos / (pos + neg)).item()
    assert abs(loss.item() - total / 6) < 1e-5
    loss.backward()
    assert q.grad is not None and torch.equal(head.queue, queue)  # queue untouched in forward
    head.enqueue()  # 6 keys -> fills the queue exactly, FIFO from pointer 0
    assert torch.allclose(head.queue, F.normalize(k.reshape(6, 4), dim=1))
    assert int(head.queue_ptr) == 0 and head.pending == []
    new = torch.randn(4, 4, generator=g)
    head.enqueue(new)  # wraps: slots 0..3 overwritten, pointer 4
    assert torch.allclose(head.queue[:4], F.normalize(new, dim=1))
    assert torch.allclose(head.queue[4:], F.normalize(k.reshape(6, 4), dim=1)[4:])
    assert int(head.queue_ptr) == 4
    assert "queue" in head.state_dict()  # persistent: survives checkpoints


def test_byol_is_negative_cosine_of_prediction_to_other_view_target():
    g = torch.Generator().manual_seed(2)
    head = BYOLHead(6, hidden_dim=8).eval()
    z = torch.randn(4, 2, 6, generator=g)
    t = torch.randn(4, 2, 6, generator=g)
    p = head.predictor(z.reshape(8, 6)).view(4, 2, 6)
    direct = -0.5 * (
        F.cosine_similarity(p[:, 0], t[:, 1]).mean() + F.cosine_similarity(p[:, 1], t[:, 0]).mean()
    )
    assert torch.allclose(head(z, t), direct, atol=1e-6)


def test_swav_sinkhorn_doubly_stochastic_and_loss():
    from lightly.loss.swav_loss import sinkhorn

    g = torch.Generator().manual_seed(3)
    scores = F.normalize(torch.randn(12, 5, generator=g), dim=1)  # 12 samples, 5 prototypes
    q = sinkhorn(scores, iterations=200, epsilon=0.05)
    assert torch.allclose(q.sum(1), torch.ones(12), atol=1e-5)  # each sample: a distribution
    assert torch.allclose(q.sum(0), torch.full((5,), 12 / 5), atol=1e-3)  # equal partition
    head = SwAVHead(6, n_prototypes=5, temperature=0.1)
    z = torch.randn(12, 2, 6, generator=g)
    zn = F.normalize(z, dim=-1)
    logits = [head.prototypes(zn[:, j]) for j in range(2)]
    codes = [sinkhorn(lg.detach(), iterations=3, epsilon=0.05) for lg in logits]
    direct = 0.5 * sum(
        -(codes[i] * F.log_softmax(logits[1 - i] / 0.1, dim=1)).sum(1).mean() for i in range(2)
    )
    assert torch.allclose(head(z).reshape(()), direct, atol=1e-5)
    w = head.prototypes.heads[0].weight
    assert torch.allclose(w.norm(dim=1), torch.ones(5), atol=1e-6)
