"""Reading images as RGB and turning them into encoder input.

Any image PIL can read is accepted: grayscale, palette, RGBA (composited on black), CMYK and 16-bit
images are converted to 8-bit RGB rather than rejected. Unreadable files raise one
:class:`~videorep.errors.VideorepError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from videorep.errors import VideorepError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pil_to_rgb(image: Image.Image, name: str = "image") -> np.ndarray:
    """Convert any PIL image to an ``[H, W, 3]`` uint8 RGB array."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 65535.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            if mode == "I" and hi <= 65535 and lo >= 0:
                arr = arr / (65535.0 if hi > 255 else 255.0)
            else:
                arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        gray = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = image.convert("RGB")
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise VideorepError(f"{name}: could not convert image of mode {mode} to RGB")
    return np.ascontiguousarray(arr)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an ``[H, W, 3]`` uint8 RGB array.

    Raises:
        VideorepError: the file is missing, empty, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise VideorepError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise VideorepError(f"{path}: image file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()
            return pil_to_rgb(image, str(path))
    except UnidentifiedImageError:
        raise VideorepError(f"{path}: not a readable image (unknown format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise VideorepError(f"{path}: unreadable or truncated image ({exc})") from None


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, H, W]`` float in [0, 1]."""
    arr = np.ascontiguousarray(rgb)
    if not arr.flags.writeable:  # decoded frames and memory maps can be read-only
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalise ``[..., 3, H, W]`` images in [0, 1]."""
    mean = images.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (images - mean) / std


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of ``[B, 3, H, W]`` or ``[3, H, W]`` float images to ``size = (H, W)``.

    Antialiased when shrinking, as PIL's resize is; values are clamped to [0, 1].
    """
    squeeze = images.dim() == 3
    x = images[None] if squeeze else images
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp_(0.0, 1.0)
    return x[0] if squeeze else x


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (or a single ``"S"`` for a square) into ``(H, W)``."""
    try:
        parts = [int(p) for p in text.lower().replace("*", "x").split("x")]
    except ValueError:
        raise VideorepError(f"size {text!r}: expected HxW, e.g. 480x880") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise VideorepError(f"size {text!r}: expected two positive integers HxW, e.g. 480x880")
    return parts[0], parts[1]


def snap_to_patch(size: tuple[int, int], patch: int) -> tuple[int, int]:
    """Round each side to the nearest multiple of ``patch`` (at least one patch).

    This is the resize rule used by evaluation: ``480x880`` stays ``480x880`` for patch 16 and
    becomes ``476x882`` for patch 14.
    """
    return tuple(max(patch, int(round(s / patch)) * patch) for s in size)  # type: ignore[return-value]
