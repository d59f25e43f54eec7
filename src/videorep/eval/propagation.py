"""Semi-supervised label propagation over a video, independent of any benchmark.

Given per-frame patch features (any encoder, optionally through a projection) and the first
frame's label map at feature resolution, each later frame takes its labels from a context made of
the first frame plus a queue of the last ``queue`` frames (their features and their *predicted*
soft labels):

* affinity = dot product of L2-normalised features, target patch x source patch;
* only source patches inside a spatial neighbourhood of the target patch are candidates
  (``window="square"``: ``|dy| <= r`` and ``|dx| <= r``, as DINO's script; ``window="disk"``:
  ``dy^2 + dx^2 < r^2``, as CRW's; ``radius <= 0`` disables the restriction);
* the ``topk`` best candidates over *all* context frames are kept, weighted by
  ``exp(aff / temperature)`` renormalised over the kept ones (a softmax over the top-k);
* prediction = weighted sum of the kept sources' labels.

The neighbourhood is never materialised as a dense ``(hw)^2`` mask: the target grid (transposed
so that its longer side runs along the rows) is cut into bands of full-width rows, and each band
is compared only with the source rows its window can reach (``[y0 - r, y1 + r)``, a contiguous
slice of the context buffer, so no copy). Pairs outside the window are set to ``-inf`` through a
boolean mask built from coordinate vectors and cached per band: ``hw * region`` bytes in all,
never ``(hw)^2`` when ``r`` is small against the grid. Working memory is one affinity workspace of
``(1 + queue) * band * region`` floats, allocated once and reused by every band of every frame,
independent of the video length. Context features live in one preallocated ring buffer
``[1 + queue, h, w, D]`` (frame 0 in slot 0): each frame's features are computed once by the
caller, normalised once here, and reused for the next ``queue`` frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from videorep.errors import VideorepError

WINDOWS = ("square", "disk")


@dataclass(frozen=True)
class PropagationConfig:
    """Hyper-parameters of label propagation.

    Attributes:
        topk: number of source patches kept per target patch (over all context frames).
        queue: number of most recent predicted frames kept as context (frame 0 is always kept too).
        radius: neighbourhood radius in patches; ``<= 0`` means unrestricted.
        temperature: softmax temperature applied to the cosine affinities of the kept sources.
        window: ``"square"`` (Chebyshev ``<= radius``) or ``"disk"`` (Euclidean ``< radius``).
    """

    topk: int = 7
    queue: int = 20
    radius: int = 20
    temperature: float = 0.1
    window: str = "square"

    def __post_init__(self) -> None:
        if self.topk < 1:
            raise VideorepError(f"topk {self.topk}: must be at least 1")
        if self.queue < 0:
            raise VideorepError(f"queue {self.queue}: must be >= 0")
        if not self.temperature > 0:
            raise VideorepError(f"temperature {self.temperature}: must be > 0")
        if self.window not in WINDOWS:
            raise VideorepError(f"window {self.window!r}: expected one of {', '.join(WINDOWS)}")

    def to_dict(self) -> dict:
        return asdict(self)


# Paper (seed 000, Tab. 3c): queue 20, neighbourhood 20, temperature 0.1; top-k 7 for DAVIS and
# JHMDB, 10 for VIP. DINO's eval_video_segmentation: 7 last frames, neighbourhood 12, top-k 5.
# CRW: 20 context frames, radius 12 (Euclidean), softmax over the top-k at temperature 0.05.
PRESETS: dict[str, dict[str, PropagationConfig]] = {
    "paper": {
        "davis": PropagationConfig(topk=7, queue=20, radius=20, temperature=0.1),
        "vip": PropagationConfig(topk=10, queue=20, radius=20, temperature=0.1),
        "jhmdb": PropagationConfig(topk=7, queue=20, radius=20, temperature=0.1),
    },
    "dino": {
        task: PropagationConfig(topk=5, queue=7, radius=12, temperature=0.1)
        for task in ("davis", "vip", "jhmdb")
    },
    "crw": {
        task: PropagationConfig(topk=10, queue=20, radius=12, temperature=0.05, window="disk")
        for task in ("davis", "vip", "jhmdb")
    },
}


def resolve_config(preset: str = "paper", task: str = "davis", **overrides) -> PropagationConfig:
    """The preset's configuration for ``task`` with any non-``None`` ``overrides`` applied."""
    if preset not in PRESETS:
        raise VideorepError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
    if task not in PRESETS[preset]:
        raise VideorepError(f"task {task!r}: expected one of {', '.join(PRESETS[preset])}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[preset][task], **changes)


def _band_rows(rows: int, cols: int, radius: int, target_patches: int = 160) -> int:
    """Rows per target band so that a band holds about ``target_patches`` patches."""
    return max(1, min(rows, target_patches // max(1, cols)))


class LabelPropagator:
    """Frame-by-frame label propagation with a first-frame anchor and a FIFO context queue.

    Usage::

        prop = LabelPropagator(config)
        prop.reset(feat0, label0)          # feat0 [h, w, D], label0 [C, h, w]
        for feat in later_features:        # each [h, w, D]
            label = prop.step(feat)        # [C, h, w], appended to the queue

    Features need not be normalised (they are L2-normalised along ``D`` here). Labels may be
    one-hot or soft; predictions are convex combinations of context labels.
    """

    def __init__(self, config: PropagationConfig, band: int | None = None) -> None:
        self.config = config
        self.band = band  # target rows per band (None: automatic)
        self._geometry: dict = {}
        self._feats: torch.Tensor | None = None  # [1 + queue, h, w, D]
        self._feats_t: torch.Tensor | None = None  # [1 + queue, w, h, D] (kept when w > h)
        self._labels: torch.Tensor | None = None  # [1 + queue, h * w, C]
        self._count = 0  # number of valid slots
        self._work: torch.Tensor | None = None  # flat float32 affinity workspace, reused per band
        self._next = 1  # next queue slot to overwrite

    @property
    def grid(self) -> tuple[int, int]:
        if self._feats is None:
            raise RuntimeError("LabelPropagator.reset() has not been called")
        return int(self._feats.shape[1]), int(self._feats.shape[2])

    def reset(self, feat0: torch.Tensor, label0: torch.Tensor) -> None:
        """Start a video: ``feat0 [h, w, D]`` features and ``label0 [C, h, w]`` labels of frame 0."""
        if feat0.dim() != 3 or label0.dim() != 3:
            raise ValueError(
                f"expected feat0 [h, w, D] and label0 [C, h, w], got "
                f"{tuple(feat0.shape)} and {tuple(label0.shape)}"
            )
        h, w, d = feat0.shape
        if tuple(label0.shape[1:]) != (h, w):
            raise ValueError(f"label0 grid {tuple(label0.shape[1:])} != feature grid {(h, w)}")
        c = label0.shape[0]
        slots = 1 + self.config.queue
        if w > h:  # stored transposed only: the bands run along the longer side
            self._feats_t = feat0.new_empty((slots, w, h, d), dtype=torch.float32)
            self._feats = self._feats_t.permute(0, 2, 1, 3)  # a view, [slots, h, w, D]
        else:
            self._feats_t = None
            self._feats = feat0.new_empty((slots, h, w, d), dtype=torch.float32)
        self._labels = feat0.new_empty((slots, h * w, c), dtype=torch.float32)
        self._geometry = {}
        self._work = None
        self._feats[0] = F.normalize(feat0.float(), dim=-1)
        self._labels[0] = label0.float().reshape(c, h * w).t()
        self._count = 1
        self._next = 1

    def _push(self, feat: torch.Tensor, label_flat: torch.Tensor) -> None:
        if self.config.queue == 0:
            return
        slot = self._next
        self._feats[slot] = feat
        self._labels[slot] = label_flat
        self._count = min(self._count + 1, 1 + self.config.queue)
        self._next = 1 + (slot % self.config.queue)

    def predict(self, feat: torch.Tensor) -> torch.Tensor:
        """Labels ``[C, h, w]`` of a frame with features ``[h, w, D]``, without updating the queue."""
        return self._predict(F.normalize(feat.float(), dim=-1)).t().reshape(-1, *self.grid)

    def step(self, feat: torch.Tensor) -> torch.Tensor:
        """Predict the labels ``[C, h, w]`` of the next frame and push it onto the queue."""
        if self._feats is None:
            raise RuntimeError("LabelPropagator.reset() has not been called")
        h, w = self.grid
        if tuple(feat.shape) != tuple(self._feats.shape[1:]):
            raise ValueError(f"features {tuple(feat.shape)} != {tuple(self._feats.shape[1:])}")
        feat = F.normalize(feat.float(), dim=-1)
        pred = self._predict(feat)  # [h*w, C]
        self._push(feat, pred)
        return pred.t().reshape(-1, h, w)

    @torch.no_grad()
    def _predict(self, feat: torch.Tensor) -> torch.Tensor:
        """``feat [h, w, D]`` normalised -> labels ``[h*w, C]``.

        Works on the grid transposed so that its longer side runs along the rows of the
        buffer (both windows are symmetric in x and y). Target bands of ``band`` full-width rows
        are compared with the source rows ``[y0 - r, y1 + r)`` of every context frame: a contiguous
        slice of the buffer, so no copy. Out-of-window pairs are filled with ``-inf`` through a
        boolean mask cached per band (``hw * region`` bytes in all, never ``(hw)^2``).
        """
        cfg = self.config
        n = self._count
        h, w, d = feat.shape
        feats = self._feats[:n]  # [n, h, w, D]
        labels = self._labels[:n].reshape(n * h * w, -1)  # [n*h*w, C]
        transposed = w > h
        if transposed:  # rows = the longer side; buffer kept transposed (see _store)
            feats = self._feats_t[:n]  # [n, w, h, D]
            feat = feat.transpose(0, 1)
        rows, cols = feat.shape[:2]
        r = cfg.radius if cfg.radius > 0 else rows + cols
        band = self.band or _band_rows(rows, cols, r)
        out = feat.new_empty((h * w, labels.shape[1]))
        frame_offset = (torch.arange(n) * (h * w)).view(n, 1, 1)
        full = self._feats.shape[0] * band * cols * min(rows, band + 2 * r) * cols
        for y0 in range(0, rows, band):
            y1 = min(rows, y0 + band)
            ry0, ry1 = max(0, y0 - r), min(rows, y1 + r)
            outside, src_pos, tgt_pos = self._band_geometry(
                rows, cols, y0, y1, ry0, ry1, r, transposed
            )
            tgt = feat[y0:y1].reshape(-1, d)  # [T, D]
            src = feats[:, ry0:ry1].reshape(n, -1, d)  # [n, R, D], a view
            aff = self._workspace(n * tgt.shape[0] * src.shape[1], full).view(n, tgt.shape[0], -1)
            torch.bmm(tgt.expand(n, -1, -1), src.transpose(1, 2), out=aff)  # [n, T, R]
            if outside is not None:
                aff.masked_fill_(outside, float("-inf"))
            k = min(cfg.topk, aff.shape[-1])
            vals, idx = aff.topk(k, dim=-1)  # [n, T, k]
            flat = src_pos[idx] + frame_offset  # [n, T, k] index into [n*h*w]
            t = tgt.shape[0]
            vals = vals.permute(1, 0, 2).reshape(t, n * k)
            flat = flat.permute(1, 0, 2).reshape(t, n * k)
            if n > 1:  # top-k over all context frames from the per-frame top-k
                vals, pos = vals.topk(min(cfg.topk, n * k), dim=-1)  # [T, k]
                flat = flat.gather(1, pos)
            weights = torch.softmax(vals / cfg.temperature, dim=-1)  # [T, k]
            out[tgt_pos] = torch.einsum("tk,tkc->tc", weights, labels[flat])
        return out

    def _workspace(self, size: int, full: int) -> torch.Tensor:
        """A flat float32 buffer of at least ``size`` elements, kept across bands and frames.

        Allocated once at ``full`` elements (the largest band with a full queue) when first
        needed. Every band's affinity ``[n, T, R]`` is written into it (``bmm(out=)``) instead of a fresh
        tensor of a slightly different size per band: one ``n * T * R`` block (17 MB for the
        paper settings at 476x882) lives for the whole video, and the allocator cannot pile up
        freed blocks of assorted sizes (glibc keeps such blocks, which once doubled the engine's
        working memory).
        """
        if self._work is None or self._work.numel() < size:
            self._work = self._feats.new_empty(max(size, full))
        return self._work[:size]

    def _band_geometry(
        self, rows: int, cols: int, y0: int, y1: int, ry0: int, ry1: int, r: int, transposed: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Cached ``(outside [T, R] bool or None, source flat positions [R], target positions [T])``.

        Flat positions index the untransposed ``h * w`` grid.
        """
        key = (rows, cols, y0, y1, ry0, ry1, r, transposed, self.config.window)
        hit = self._geometry.get(key)
        if hit is not None:
            return hit
        ty = torch.arange(y0, y1)
        sy = torch.arange(ry0, ry1)
        xs = torch.arange(cols)
        dy = ty[:, None] - sy[None, :]  # [ty, Ry]
        dx = xs[:, None] - xs[None, :]  # [cols, cols]
        if self.config.window == "square":
            valid = (dy.abs() <= r)[:, None, :, None] & (dx.abs() <= r)[None, :, None, :]
        else:
            valid = (dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2) < r * r
        valid = valid.reshape(len(ty) * cols, len(sy) * cols)
        outside = None if bool(valid.all()) else ~valid  # 1 byte per pair, broadcast over frames

        def flat(yy: torch.Tensor) -> torch.Tensor:
            grid_y = yy[:, None].expand(-1, cols)
            grid_x = xs[None, :].expand(len(yy), -1)
            if transposed:  # (row, col) of the transposed grid = (x, y) of the frame
                return (grid_x * rows + grid_y).reshape(-1)
            return (grid_y * cols + grid_x).reshape(-1)

        hit = (outside, flat(sy), flat(ty))
        self._geometry[key] = hit
        return hit


def propagate(
    features: Iterable[torch.Tensor],
    label0: torch.Tensor,
    config: PropagationConfig,
) -> Iterator[torch.Tensor]:
    """Propagate ``label0 [C, h, w]`` through a stream of features ``[h, w, D]`` (frame 0 first).

    Yields the predicted soft labels ``[C, h, w]`` of frames 1, 2, ... lazily: features are pulled
    one frame at a time, so memory does not grow with the video length.
    """
    it = iter(features)
    try:
        feat0 = next(it)
    except StopIteration:
        return
    prop = LabelPropagator(config)
    prop.reset(feat0, label0)
    for feat in it:
        yield prop.step(feat)


def window_size(config: PropagationConfig) -> int:
    """Number of source positions per context frame in the neighbourhood (unclipped)."""
    r = config.radius
    if r <= 0:
        return -1
    if config.window == "square":
        return (2 * r + 1) ** 2
    return sum(1 for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx < r * r)


__all__ = [
    "PRESETS",
    "LabelPropagator",
    "PropagationConfig",
    "propagate",
    "resolve_config",
    "window_size",
]
