"""Temporal action segmentation: metrics (Co-Settle supplementary, D.3.2, Eq. 39-42) and a small
MS-TCN-style head trained on frozen frame features.

Metrics, as MS-TCN's ``eval.py`` (Farha & Gall, CVPR 2019) computes them, which is what the
Breakfast numbers of the segmentation literature (FACT included) are:

* :func:`frame_accuracy` (Eq. 40): the fraction of frames whose predicted label is right; over a
  test set, correct frames summed over all videos / all frames (a frame-weighted mean).
* :func:`edit_score` (Eq. 39): ``1 - Lev(C(pred), C(gt)) / max(|C(pred)|, |C(gt)|)`` where
  ``C`` collapses runs of equal labels into one symbol (the segment sequence) and ``Lev`` is the
  Levenshtein distance (insert, delete, substitute: cost 1 each); over a test set, the mean
  over videos.
* :func:`f1_counts` / F1@k (Eq. 41-42): predicted segments are matched in temporal order to the
  ground-truth segment *of the same class* with the highest IoU; a match with ``IoU >= k`` to a
  ground-truth segment not already matched is a true positive, every other prediction a false
  positive, and every ground-truth segment left unmatched a false negative. Over a test set the
  counts are summed and ``F1 = 2PR / (P + R)`` is computed once from the totals (as MS-TCN).

Segments are half-open frame ranges ``[start, end)``; with that convention Eq. 41's
``min(e) - max(s)`` is the number of shared frames and ``max(e) - min(s)`` the union whenever the
two overlap (for disjoint segments the intersection is clipped to 0, so the IoU is 0 either way).
Every score is returned in percent (0-100), as the papers report them. Labels listed in
``background`` (e.g. Breakfast's ``SIL`` when asked) are dropped from the segment sequences
before Edit and F1, as MS-TCN's ``bg_class`` does; accuracy always counts every frame.

The head (:class:`SingleStageTCN`, MS-TCN's single stage): a 1x1 convolution to ``width``
channels, ``layers`` dilated residual blocks (dilation ``2**i``, kernel 3, ReLU, 1x1 conv,
dropout, residual), a 1x1 convolution to the classes; trained (:func:`fit_tcn`) with
cross-entropy plus MS-TCN's smoothing loss (``0.15 * mean(clamp((log p_t - log p_{t-1})^2,
max=16))``, the log-probabilities of the previous frame detached), Adam, one video per step
(MS-TCN's default; ``batch`` pads and masks several).
The fit is a probe's fit (a few parameters on frozen, precomputed features, as the linear probe),
not a training run of a method: it does not go through :mod:`videorep.train`, which evaluation
never imports.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videorep.errors import VideorepError

OVERLAPS = (0.10, 0.25, 0.50)


# ----------------------------------------------------------------------------- metrics
def _as_list(labels: Sequence[Hashable] | np.ndarray | Tensor) -> list:
    if isinstance(labels, Tensor):
        labels = labels.detach().cpu().numpy()
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            raise VideorepError(
                f"frame labels must be one-dimensional [T], got shape {labels.shape}"
            )
        return labels.tolist()
    return list(labels)


def segments(
    labels: Sequence[Hashable] | np.ndarray | Tensor, background: Sequence[Hashable] = ()
) -> list[tuple[int, int, Hashable]]:
    """Runs of equal labels as ``(start, end, label)`` with ``end`` exclusive, in time order.

    ``labels`` is ``[T]``; runs whose label is in ``background`` are left out (their frames are
    still counted in the positions of the others). ``[a, a, b, a] -> [(0, 2, a), (2, 3, b),
    (3, 4, a)]``.
    """
    seq = _as_list(labels)
    bg = set(background)
    out = []
    start = 0
    for t in range(1, len(seq) + 1):
        if t == len(seq) or seq[t] != seq[start]:
            if seq[start] not in bg:
                out.append((start, t, seq[start]))
            start = t
    return out


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Edit distance between two sequences (insertion, deletion, substitution: cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def _check_pair(pred: list, gt: list) -> None:
    if len(pred) != len(gt):
        raise VideorepError(
            f"prediction has {len(pred)} frames but the ground truth has {len(gt)}; "
            "they must have one label per frame each"
        )


def frame_accuracy(pred: Sequence[Hashable], gt: Sequence[Hashable]) -> float:
    """Eq. 40: percentage of frames with ``pred[t] == gt[t]`` (both ``[T]``, ``T > 0``)."""
    p, g = _as_list(pred), _as_list(gt)
    _check_pair(p, g)
    if not g:
        raise VideorepError("frame accuracy of an empty video is undefined")
    return 100.0 * sum(a == b for a, b in zip(p, g)) / len(g)


def edit_score(
    pred: Sequence[Hashable], gt: Sequence[Hashable], background: Sequence[Hashable] = ()
) -> float:
    """Eq. 39 in percent: ``100 * (1 - Lev(C(pred), C(gt)) / max(|C(pred)|, |C(gt)|))``.

    ``C`` is the segment-label sequence (:func:`segments` without ``background``). Two videos
    with no foreground segment at all score 100.
    """
    p = [s[2] for s in segments(pred, background)]
    g = [s[2] for s in segments(gt, background)]
    longest = max(len(p), len(g))
    if longest == 0:
        return 100.0
    return 100.0 * (1.0 - levenshtein(p, g) / longest)


def segment_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Eq. 41 for half-open ``(start, end)`` frame ranges."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def f1_counts(
    pred: Sequence[Hashable],
    gt: Sequence[Hashable],
    overlap: float,
    background: Sequence[Hashable] = (),
) -> tuple[int, int, int]:
    """``(TP, FP, FN)`` of one video at IoU threshold ``overlap`` (see the module docstring)."""
    if not 0.0 < overlap <= 1.0:
        raise VideorepError(f"IoU threshold must be in (0, 1], got {overlap}")
    p_list, g_list = _as_list(pred), _as_list(gt)
    _check_pair(p_list, g_list)
    p_segs = segments(p_list, background)
    g_segs = segments(g_list, background)
    hit = [False] * len(g_segs)
    tp = fp = 0
    for ps, pe, pc in p_segs:
        best, best_iou = -1, -1.0
        for j, (gs, ge, gc) in enumerate(g_segs):
            if gc != pc:
                continue
            iou = segment_iou((ps, pe), (gs, ge))
            if iou > best_iou:
                best, best_iou = j, iou
        if best >= 0 and best_iou >= overlap and not hit[best]:
            tp += 1
            hit[best] = True
        else:
            fp += 1
    return tp, fp, len(g_segs) - sum(hit)


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """Eq. 42 in percent; 0 when there is no true positive."""
    if tp == 0:
        return 0.0
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return 100.0 * 2 * precision * recall / (precision + recall)


@dataclass
class SegmentationScores:
    """Scores of a test set, in percent: ``acc`` (frame-weighted), ``edit`` (mean over videos),
    ``f1`` ({threshold: F1 from summed counts}); ``videos`` and ``frames`` counted."""

    acc: float
    edit: float
    f1: dict[float, float] = field(default_factory=dict)
    videos: int = 0
    frames: int = 0

    def as_dict(self) -> dict[str, float]:
        out = {"acc": self.acc, "edit": self.edit}
        out.update({f"f1@{k:.2f}": v for k, v in self.f1.items()})
        return out


def segmentation_scores(
    preds: Sequence[Sequence[Hashable]],
    gts: Sequence[Sequence[Hashable]],
    overlaps: Sequence[float] = OVERLAPS,
    background: Sequence[Hashable] = (),
) -> SegmentationScores:
    """Acc, Edit and F1@k over a test set of videos (each ``pred``/``gt`` is ``[T_i]``)."""
    if len(preds) != len(gts):
        raise VideorepError(f"{len(preds)} predictions for {len(gts)} ground-truth videos")
    if not gts:
        raise VideorepError("no video to score")
    correct = frames = 0
    edits = []
    counts = {k: [0, 0, 0] for k in overlaps}
    for p, g in zip(preds, gts):
        p, g = _as_list(p), _as_list(g)
        _check_pair(p, g)
        correct += sum(a == b for a, b in zip(p, g))
        frames += len(g)
        edits.append(edit_score(p, g, background))
        for k in overlaps:
            for i, c in enumerate(f1_counts(p, g, k, background)):
                counts[k][i] += c
    if frames == 0:
        raise VideorepError("the test videos have no frame")
    return SegmentationScores(
        acc=100.0 * correct / frames,
        edit=float(np.mean(edits)),
        f1={k: f1_from_counts(*counts[k]) for k in overlaps},
        videos=len(gts),
        frames=frames,
    )


# ----------------------------------------------------------------------------- the head
class DilatedResidual(nn.Module):
    """``x + dropout(conv1x1(relu(dilated_conv3(x))))`` on ``[B, C, T]`` (length kept)."""

    def __init__(self, dilation: int, channels: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.dropout(self.mix(F.relu(self.conv(x))))


class SingleStageTCN(nn.Module):
    """MS-TCN's single stage: ``[B, D, T]`` frame features -> ``[B, K, T]`` class logits.

    The receptive field is ``2**(layers + 1) - 1`` frames (2047 for MS-TCN's 10 layers).
    """

    def __init__(
        self, in_dim: int, classes: int, width: int = 64, layers: int = 10, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.inp = nn.Conv1d(in_dim, width, 1)
        self.blocks = nn.ModuleList(DilatedResidual(2**i, width, dropout) for i in range(layers))
        self.out = nn.Conv1d(width, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


def smoothing_loss(logits: Tensor, mask: Tensor | None = None, clamp: float = 16.0) -> Tensor:
    """MS-TCN's truncated MSE over neighbouring frames of ``[B, K, T]`` logits (``T >= 2``).

    ``mask`` ``[B, T]`` (1 = real frame, 0 = padding) restricts it to pairs of real frames.
    """
    logp = F.log_softmax(logits, dim=1)
    diff = torch.clamp((logp[:, :, 1:] - logp.detach()[:, :, :-1]) ** 2, min=0, max=clamp)
    if mask is None:
        return diff.mean()
    pair = (mask[:, 1:] * mask[:, :-1]).unsqueeze(1).to(diff.dtype)  # [B, 1, T-1]
    return (diff * pair).sum() / (pair.sum() * diff.shape[1]).clamp(min=1)


@dataclass
class TCNConfig:
    """Settings of the head and its fit (MS-TCN defaults except ``epochs``)."""

    width: int = 64
    layers: int = 10
    dropout: float = 0.5
    epochs: int = 50
    lr: float = 5e-4
    smooth: float = 0.15
    batch: int = 1
    seed: int = 0


def fit_tcn(
    features: Sequence[Tensor],
    labels: Sequence[Tensor],
    classes: int,
    config: TCNConfig | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[SingleStageTCN, list[float]]:
    """Train a :class:`SingleStageTCN` on ``features[i]`` ``[D, T_i]`` with ``labels[i]``
    ``[T_i]`` (class indices); ``config.batch`` videos per step (MS-TCN: 1; longer ones
    zero-padded and masked out of both losses), videos shuffled each epoch.

    Returns the model (in eval mode) and the mean training loss of each epoch.
    """
    cfg = config or TCNConfig()
    if not features:
        raise VideorepError("no training video for the segmentation head")
    dims = {int(f.shape[0]) for f in features}
    if len(dims) != 1:
        raise VideorepError(f"training features have different dimensions {sorted(dims)}")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = SingleStageTCN(dims.pop(), classes, cfg.width, cfg.layers, cfg.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[float] = []
    bar = None
    if progress:
        from videorep.utils.progress import progress_bar

        bar = progress_bar(cfg.epochs, desc="segmentation head")
    model.train()
    for _ in range(cfg.epochs):
        total = 0.0
        order = torch.randperm(len(features), generator=gen).tolist()
        for start in range(0, len(order), cfg.batch):
            x, y, mask = _pad(
                [features[i] for i in order[start : start + cfg.batch]],
                [labels[i] for i in order[start : start + cfg.batch]],
                device,
            )
            logits = model(x)
            loss = F.cross_entropy(logits, y, ignore_index=-100)
            if logits.shape[-1] > 1 and cfg.smooth:
                loss = loss + cfg.smooth * smoothing_loss(logits, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * x.shape[0]
        history.append(total / len(features))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    return model, history


def _pad(
    feats: list[Tensor], labels: list[Tensor], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Zero-padded ``[B, D, T_max]`` features, ``[B, T_max]`` labels (-100 = padding, ignored by
    the cross-entropy) and ``[B, T_max]`` mask, on ``device``."""
    t_max = max(int(f.shape[1]) for f in feats)
    x = torch.zeros(len(feats), feats[0].shape[0], t_max, device=device)
    y = torch.full((len(feats), t_max), -100, dtype=torch.long, device=device)
    mask = torch.zeros(len(feats), t_max, device=device)
    for i, (f, lab) in enumerate(zip(feats, labels)):
        if int(f.shape[1]) != len(lab):
            raise VideorepError(f"video {i}: {f.shape[1]} feature frames but {len(lab)} labels")
        t = int(f.shape[1])
        x[i, :, :t] = f.to(device=device, dtype=torch.float32)
        y[i, :t] = lab.to(device=device, dtype=torch.long)
        mask[i, :t] = 1
    return x, y, mask


@torch.no_grad()
def predict_tcn(model: SingleStageTCN, features: Sequence[Tensor]) -> list[np.ndarray]:
    """Per-frame class indices ``[T_i]`` for each ``[D, T_i]`` feature sequence."""
    device = next(model.parameters()).device
    model.eval()
    return [
        model(f.to(device=device, dtype=torch.float32).unsqueeze(0))[0].argmax(0).cpu().numpy()
        for f in features
    ]
