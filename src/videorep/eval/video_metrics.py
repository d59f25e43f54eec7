"""Video-level metrics on frozen features: retrieval, kNN, linear probes with a weight-decay sweep,
chiral (temporal-order) probes.

* :func:`retrieval_metrics` - Co-Settle supp. D.3.2: leave-one-out retrieval by cosine
  similarity; every video queries all the others. With ``n_j`` positives (same class) for query
  ``j`` and ``r_i`` the rank of its ``i``-th retrieved positive,

  ``mAP = 1/|Q| sum_j 1/n_j sum_i i / r_i`` (Eq. 43),
  ``Recall@K = 1/|Q| sum_j 1{min(P_j) <= K}`` (Eq. 44).

  A query without any positive is left out of both (counted in ``queries_without_positive``).
* :func:`knn_scores` - DINO's weighted kNN: the ``k`` nearest training features by cosine
  similarity vote for their class with weight ``exp(sim / T)`` (``k = 20``, ``T = 0.07``).
* :func:`probe_with_sweep` - a linear probe whose weight decay is chosen on a held-out part of the
  training split (stratified), then refitted on the whole training split. The fitting function is
  passed in (the command layer passes ``methods.bodvcl.probe.linear_probe``, BOD-VCL Eq. 5-7:
  softmax regression by full-batch L-BFGS), so there is one probe implementation.
* :func:`chiral_pairs_accuracy` - one binary probe per chiral class pair on time-concatenated
  features; the mean accuracy over pairs (Co-Settle supp., Chiral SSv2 protocol).
* :func:`topk_accuracy`, :func:`average_precision`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from videorep.errors import VideorepError

ProbeFit = Callable[..., dict[str, float]]
"""``fit(train_x [N, D], train_y [N], test_x [M, D], test_y [M], weight_decay=...) ->
{"top1": ..., "top5": ...}`` (``methods.bodvcl.probe.linear_probe``)."""

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)


def average_precision(relevant: Tensor) -> float:
    """AP of one ranking (Eq. 43's inner sum): ``relevant`` ``[R]`` bool in rank order."""
    rel = relevant.bool()
    n = int(rel.sum())
    if n == 0:
        raise VideorepError("average precision of a ranking without any relevant item")
    ranks = torch.nonzero(rel).flatten().double() + 1  # r_i, 1-based
    i = torch.arange(1, n + 1, dtype=torch.float64, device=ranks.device)
    return float((i / ranks).sum() / n)


def retrieval_metrics(
    features: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5, 10), chunk: int = 1024
) -> dict[str, float]:
    """Leave-one-out cosine retrieval over ``features`` ``[N, D]`` with ``labels`` ``[N]``.

    Returns ``{"mAP", "R@1", "R@5", "R@10", "queries", "queries_without_positive"}`` (mAP and
    recalls as fractions). Ties in similarity are broken by index (a stable sort).
    """
    if features.ndim != 2 or len(features) != len(labels):
        raise VideorepError(
            f"retrieval needs features [N, D] and labels [N], got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    n = len(features)
    if n < 2:
        raise VideorepError(f"retrieval needs at least 2 videos, got {n}")
    x = F.normalize(features.double(), dim=1)
    y = labels.long().to(x.device)
    ap_sum, hits, used, empty = 0.0, dict.fromkeys(ks, 0), 0, 0
    for s in range(0, n, chunk):
        q = torch.arange(s, min(n, s + chunk), device=x.device)
        sim = x[q] @ x.T  # [B, N]
        sim[torch.arange(len(q), device=x.device), q] = -float("inf")  # leave the query out
        order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, : n - 1]
        rel = y[order] == y[q][:, None]  # [B, N-1] in rank order
        npos = rel.sum(1)
        ok = npos > 0
        empty += int((~ok).sum())
        if not ok.any():
            continue
        rel, npos = rel[ok], npos[ok]
        used += len(rel)
        cum = rel.double().cumsum(1)  # i at each positive
        ranks = torch.arange(1, n, device=x.device, dtype=torch.float64)
        ap = (cum / ranks * rel).sum(1) / npos
        ap_sum += float(ap.sum())
        first = rel.double().argmax(1) + 1  # rank of the first positive
        for k in ks:
            hits[k] += int((first <= k).sum())
    if used == 0:
        raise VideorepError("retrieval: no video has another video of its class")
    out = {"mAP": ap_sum / used}
    out.update({f"R@{k}": hits[k] / used for k in ks})
    out.update({"queries": used, "queries_without_positive": empty})
    return out


def topk_accuracy(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``top{k}``: fraction of rows of ``scores`` ``[M, C]`` whose label is among the k best."""
    out = {}
    for k in ks:
        kk = min(k, scores.shape[1])
        hit = (scores.topk(kk, dim=1).indices == labels.long()[:, None]).any(dim=1)
        out[f"top{k}"] = float(hit.double().mean())
    return out


def knn_scores(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> Tensor:
    """DINO's weighted kNN votes ``[M, C]``: the ``k`` most cosine-similar training features
    vote for their class with weight ``exp(sim / temperature)``."""
    if len(train_x) == 0:
        raise VideorepError("kNN needs training features")
    a = F.normalize(train_x.float(), dim=1)
    b = F.normalize(test_x.float(), dim=1)
    k = min(k, len(a))
    y = train_y.long().to(a.device)
    out = []
    for s in range(0, len(b), chunk):
        sim = b[s : s + chunk] @ a.T
        top, idx = sim.topk(k, dim=1)
        w = (top / temperature).exp()
        votes = torch.zeros(len(top), num_classes, dtype=w.dtype, device=w.device)
        votes.scatter_add_(1, y[idx], w)
        out.append(votes)
    return torch.cat(out)


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> dict[str, float]:
    """Top-1 / top-5 of :func:`knn_scores`."""
    return topk_accuracy(
        knn_scores(train_x, train_y, test_x, num_classes, k, temperature), test_y.to(train_x.device)
    )


def stratified_holdout(labels: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Indices ``(fit, held_out)``: about ``fraction`` of each class with >= 2 videos held out
    (at least one, never all)."""
    gen = torch.Generator().manual_seed(seed)
    fit, held = [], []
    y = labels.cpu()
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        m = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(fraction * len(idx))))
        held.append(idx[:m])
        fit.append(idx[m:])
    return torch.cat(fit).sort().values, torch.cat(held).sort().values


def probe_with_sweep(
    fit: ProbeFit,
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    holdout: float = 0.2,
    seed: int = 0,
) -> dict:
    """Choose the weight decay by held-out top-1 (ties: the smaller decay), refit on all of
    ``train_x`` and report test top-1 / top-5.

    Returns ``{"top1", "top5", "weight_decay", "holdout_top1": {wd: acc}}``.
    """
    wds = sorted(float(w) for w in weight_decays)
    if not wds:
        raise VideorepError("the weight-decay sweep needs at least one value")
    sweep: dict[str, float] = {}
    best = wds[0]
    if len(wds) > 1:
        fit_idx, held_idx = stratified_holdout(train_y, holdout, seed)
        if len(held_idx) and len(fit_idx):
            best_acc = -1.0
            for wd in wds:
                acc = fit(
                    train_x[fit_idx],
                    train_y[fit_idx],
                    train_x[held_idx],
                    train_y[held_idx],
                    weight_decay=wd,
                )["top1"]
                sweep[f"{wd:g}"] = acc
                if acc > best_acc:
                    best, best_acc = wd, acc
    result = dict(fit(train_x, train_y, test_x, test_y, weight_decay=best))
    result["weight_decay"] = best
    result["holdout_top1"] = sweep
    return result


def chiral_pairs_accuracy(
    fit: ProbeFit,
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    pairs: Sequence[tuple[int, int]],
    weight_decay: float = 1e-4,
) -> dict:
    """One binary probe per class pair ``(a, b)``: trained on the training videos of classes
    ``a`` (label 0) and ``b`` (label 1), tested on their test videos.

    Returns ``{"accuracy": mean over pairs, "pairs": [{"a", "b", "accuracy", "train", "test"}]}``.
    """
    rows = []
    for a, b in pairs:
        tr = (train_y == a) | (train_y == b)
        te = (test_y == a) | (test_y == b)
        if not (train_y[tr] == a).any() or not (train_y[tr] == b).any():
            raise VideorepError(f"chiral pair ({a}, {b}): a class has no training video")
        if not te.any():
            raise VideorepError(f"chiral pair ({a}, {b}): no test video")
        acc = fit(
            train_x[tr],
            (train_y[tr] == b).long(),
            test_x[te],
            (test_y[te] == b).long(),
            weight_decay=weight_decay,
        )["top1"]
        rows.append(
            {"a": a, "b": b, "accuracy": acc, "train": int(tr.sum()), "test": int(te.sum())}
        )
    if not rows:
        raise VideorepError("no chiral pair to evaluate")
    return {"accuracy": sum(r["accuracy"] for r in rows) / len(rows), "pairs": rows}
