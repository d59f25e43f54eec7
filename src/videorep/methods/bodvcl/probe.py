"""Linear probes and the static/dynamic evaluation protocol of BOD-VCL, Sec. 3.1-3.2.

* :func:`linear_probe` - Eq. 5-7: a softmax linear classifier on frozen features, trained by
  full-batch L-BFGS on the cross-entropy (Eq. 6), evaluated by top-1 / top-5 accuracy (Eq. 7).
* :func:`static_clip` - "a single frame ... duplicated to construct a video clip".
* :func:`dynamic_clip` - Ilic et al.'s appearance-free clip: a noise frame warped recursively
  along the clip's optical flow. The paper uses RAFT; RAFT weights cannot be fetched here, so the
  flow is OpenCV's Farneback (``cv2.calcOpticalFlowFarneback``) on grey frames.
* :func:`static_dynamic_probe` - both evaluations for a frozen encoder.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from videorep.errors import VideorepError


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    weight_decay: float = 1e-4,
    iterations: int = 100,
    topk: tuple[int, ...] = (1, 5),
) -> dict[str, float]:
    """Fit a linear softmax classifier (Eq. 5-6) on ``train_x`` ``[N, D]`` and report top-k
    accuracy (Eq. 7) on ``test_x``. Features are standardised with the training statistics.

    Returns ``{"top1": ..., "top5": ...}`` (fractions in [0, 1]; top-k with k >= the number of
    classes is 1.0).
    """
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise VideorepError(
            f"probe features must be [N, D] with equal D, got {tuple(train_x.shape)} "
            f"and {tuple(test_x.shape)}"
        )
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise VideorepError("probe features and labels differ in length")
    x = train_x.detach().double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x = (x - mean) / std
    xt = (test_x.detach().double() - mean) / std
    y = train_y.long()
    n_classes = int(max(int(train_y.max()), int(test_y.max())) + 1)
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        logits = xt @ w + b
        out = {}
        for k in topk:
            kk = min(k, n_classes)
            hit = (logits.topk(kk, dim=1).indices == test_y.long()[:, None]).any(dim=1)
            out[f"top{k}"] = float(hit.double().mean())
    return out


def static_clip(clip: Tensor, index: int | None = None) -> Tensor:
    """One frame of ``clip`` ``[T, C, H, W]`` repeated ``T`` times (default: the middle frame)."""
    if clip.ndim != 4:
        raise VideorepError(f"a clip must be [T, C, H, W], got {tuple(clip.shape)}")
    t = clip.shape[0]
    i = t // 2 if index is None else index
    if not 0 <= i < t:
        raise VideorepError(f"frame index {i} outside a clip of {t} frames")
    return clip[i : i + 1].expand(t, -1, -1, -1).clone()


def _grey_uint8(frame: Tensor) -> np.ndarray:
    arr = frame.detach().float().clamp(0, 1).mul(255).round().byte().cpu().numpy()
    if arr.shape[0] == 3:
        arr = (0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2]).astype(np.uint8)
    else:
        arr = arr[0]
    return np.ascontiguousarray(arr)


def farneback_flow(prev: Tensor, nxt: Tensor) -> np.ndarray:
    """Dense flow ``[H, W, 2]`` (x, y) with ``prev(p) ~= nxt(p + flow(p))`` (OpenCV Farneback)."""
    import cv2

    return cv2.calcOpticalFlowFarneback(
        _grey_uint8(prev), _grey_uint8(nxt), None, 0.5, 3, 15, 3, 5, 1.2, 0
    )


def dynamic_clip(clip: Tensor, seed: int = 0, channels: int = 3) -> Tensor:
    """Appearance-free version of ``clip`` ``[T, C, H, W]`` (values in [0, 1]).

    Frame 0 is uniform noise; frame ``t+1`` is frame ``t`` backward-warped with the flow from
    frame ``t+1`` to frame ``t`` of the original clip (``cv2.remap``, bilinear, border reflect), so
    the noise texture moves as the content moves and carries no appearance.
    """
    import cv2

    if clip.ndim != 4:
        raise VideorepError(f"a clip must be [T, C, H, W], got {tuple(clip.shape)}")
    t, _, h, w = clip.shape
    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, channels), dtype=np.float32)
    out = [noise]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    for i in range(1, t):
        back = farneback_flow(clip[i], clip[i - 1])  # clip[i](p) ~= clip[i-1](p + back(p))
        warped = cv2.remap(
            out[-1],
            grid_x + back[..., 0],
            grid_y + back[..., 1],
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        out.append(warped.reshape(h, w, channels))
    arr = np.stack(out).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(clip.dtype)


@torch.no_grad()
def encode_clips(
    encoder: Callable[[Tensor], Tensor], clips: Tensor, batch_size: int = 16
) -> Tensor:
    """Clip features ``[N, C]``: ``encoder(clips [n, T, 3, H, W]) -> [n, T', C]`` averaged over
    time (or ``[n, C]`` used as is)."""
    feats = []
    for i in range(0, len(clips), batch_size):
        f = encoder(clips[i : i + batch_size])
        feats.append(f.mean(dim=1) if f.ndim == 3 else f)
    return torch.cat(feats)


def static_dynamic_probe(
    encoder: Callable[[Tensor], Tensor],
    train_clips: Tensor,
    train_labels: Tensor,
    test_clips: Tensor,
    test_labels: Tensor,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Sec. 3.2 for a frozen ``encoder`` on clips ``[N, T, 3, H, W]`` in [0, 1].

    Returns ``{"static": {"top1", "top5"}, "dynamic": {"top1", "top5"}}``: linear probes trained
    and tested on the static versions, then on the dynamic (noise-warped) versions.
    """
    results = {}
    for name in ("static", "dynamic"):

        def convert(clips: Tensor, offset: int, name=name) -> Tensor:
            if name == "static":
                return torch.stack([static_clip(c) for c in clips])
            return torch.stack(
                [dynamic_clip(c, seed=seed + offset + i) for i, c in enumerate(clips)]
            )

        tr = encode_clips(encoder, convert(train_clips, 0))
        te = encode_clips(encoder, convert(test_clips, len(train_clips)))
        results[name] = linear_probe(tr, train_labels, te, test_labels)
    return results
