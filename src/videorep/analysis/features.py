"""Patch tokens of whole videos for the analyses: frames as ``cal_metric.py`` prepares them.

``T`` frames spread evenly over each video (all of them when it has fewer), each resized so its
short side is 256 (bilinear, as torchvision's ``Resize(256)``) and centre-cropped to 224, then
ImageNet-normalised; the frozen encoder gives ``[T, N, D]`` patch tokens (final norm, no CLS),
computed once per video and kept on the CPU, so several heads are compared on the same encoder
passes (:func:`project_videos`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from videorep.analysis.tradeoff import sample_frame_indices
from videorep.data.images import normalize, to_tensor
from videorep.errors import VideorepError
from videorep.utils.progress import progress_bar

RESIZE = 256
CROP = 224


def resize_center_crop(rgb: np.ndarray, resize: int = RESIZE, crop: int = CROP) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, crop, crop]`` ImageNet-normalised (Resize + CenterCrop)."""
    image = Image.fromarray(np.ascontiguousarray(rgb))
    w, h = image.size
    if w <= h:
        size = (resize, max(1, int(resize * h / w)))
    else:
        size = (max(1, int(resize * w / h)), resize)
    image = image.resize(size, Image.BILINEAR)
    w, h = image.size
    if min(w, h) < crop:
        raise VideorepError(f"resize {resize} is smaller than the crop {crop}")
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    return normalize(to_tensor(np.asarray(image)))


@dataclass
class VideoTokens:
    """Tokens ``[T, N, D]`` of one video and where they came from."""

    name: str
    tokens: torch.Tensor
    indices: list[int]
    num_frames: int


@torch.no_grad()
def encode_videos(
    encoder: torch.nn.Module,
    sources: Sequence,  # videorep.data.sources.VideoSource
    frames: int = 40,
    resize: int = RESIZE,
    crop: int = CROP,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[list[VideoTokens], tuple[int, int]]:
    """Encode ``frames`` frames of every source; returns ``(videos, grid)``.

    ``encoder`` maps ``[B, 3, H, W]`` to ``[B, N, D]`` (a :class:`videorep.backbones.ImageEncoder`)
    and must already be on ``device``. Tokens come back as float32 on the CPU.
    """
    grid = tuple(encoder.grid(crop, crop))
    plans = [(s, sample_frame_indices(s.num_frames, frames)) for s in sources]
    bar = progress_bar(sum(len(i) for _, i in plans), desc="encode") if progress else None
    out = []
    try:
        for source, indices in plans:
            chunks = []
            for start in range(0, len(indices), batch_size):
                idx = indices[start : start + batch_size]
                x = torch.stack([resize_center_crop(f, resize, crop) for f in source.read(idx)])
                chunks.append(encoder(x.to(device)).float().cpu())
                if bar is not None:
                    bar.update(len(idx))
            out.append(VideoTokens(source.name, torch.cat(chunks), indices, source.num_frames))
    finally:
        if bar is not None:
            bar.close()
    return out, grid


def cached_encode_videos(
    cache: str | Path | None,
    key: dict,
    encoder: torch.nn.Module,
    sources: Sequence,
    frames: int = 40,
    resize: int = RESIZE,
    crop: int = CROP,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[list[VideoTokens], tuple[int, int]]:
    """:func:`encode_videos`, stored in ``cache`` (a folder) under a hash of ``key`` (backbone,
    checkpoint, ...) and of the videos and frame settings, and reused when present."""
    if cache is None:
        return encode_videos(
            encoder, sources, frames, resize, crop, device=device, progress=progress
        )
    ident = {
        **key,
        "videos": [str(s.path) for s in sources],
        "counts": [int(s.num_frames) for s in sources],
        "frames": frames,
        "resize": resize,
        "crop": crop,
        # fp32 and bf16 tokens never share an entry (--encoder-dtype)
        "dtype": str(getattr(encoder, "autocast_dtype", None) or torch.float32),
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
    path = Path(cache) / f"tokens-{digest[:16]}.pt"
    if path.is_file():
        data = torch.load(path, weights_only=False)
        if data.get("ident") == ident:
            return [VideoTokens(**v) for v in data["videos"]], tuple(data["grid"])
    videos, grid = encode_videos(
        encoder, sources, frames, resize, crop, device=device, progress=progress
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"ident": ident, "grid": list(grid), "videos": [asdict(v) for v in videos]}, tmp)
    os.replace(tmp, path)
    return videos, grid


@torch.no_grad()
def project_videos(
    videos: Sequence[VideoTokens],
    head: torch.nn.Module | None,
    device: torch.device | str = "cpu",
    batch_frames: int = 64,
) -> list[torch.Tensor]:
    """The tokens ``[T, N, D']`` of each video after ``head`` (``None``: the encoder's own).

    The head's output is used as it is (its final LayerNorm, no L2 normalisation), as the
    authors' ``eval_metric`` path does.
    """
    if head is None:
        return [v.tokens for v in videos]
    head = head.to(device).eval()
    out = []
    for v in videos:
        parts = [
            head(v.tokens[i : i + batch_frames].to(device)).float().cpu()
            for i in range(0, v.tokens.shape[0], batch_frames)
        ]
        out.append(torch.cat(parts))
    return out
