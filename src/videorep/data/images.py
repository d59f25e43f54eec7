"""Reading images as RGB and turning them into encoder input.

Any image PIL can read is accepted: grayscale, palette, RGBA (composited on black), CMYK and 16-bit
images are converted to 8-bit RGB rather than rejected. Unreadable files raise one
:class:`~videorep.errors.VideorepError` naming the file.

Decompression bombs: an image whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels
(50 megapixels: above 8K UHD, 7680 x 4320 = 33 MP) is refused from its header, before any pixel
is decoded or allocated. PIL's own limit (``Image.MAX_IMAGE_PIXELS``, 89 MP with a warning,
179 MP an error) is left as it is; this check is stricter and gives one clear message.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from videorep.data.files import file_size
from videorep.errors import VideorepError

MAX_IMAGE_PIXELS = 50_000_000
"""Largest image (and video frame) accepted, in pixels; larger declared sizes are refused."""

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


def check_pixels(path: str | Path, width: int, height: int, what: str = "image") -> None:
    """Refuse a declared size above :data:`MAX_IMAGE_PIXELS` (or a non-positive one)."""
    if width <= 0 or height <= 0:
        raise VideorepError(f"{path}: {what} declares an empty size {width}x{height}")
    if width * height > MAX_IMAGE_PIXELS:
        raise VideorepError(
            f"{path}: {what} declares {width}x{height} = {width * height:,} pixels, more than "
            f"the limit of {MAX_IMAGE_PIXELS:,} (a decompression bomb or a corrupt header?)"
        )


@contextmanager
def open_image(path: str | Path, what: str = "image") -> Iterator[Image.Image]:
    """``Image.open`` with the checks every reader needs; PIL's errors become one
    :class:`VideorepError` naming the file.

    The header is read and its size checked against :data:`MAX_IMAGE_PIXELS`; pixels are decoded
    only when the caller calls ``load()`` (or converts), inside the ``with`` block.
    """
    path = Path(path)
    if file_size(path, f"{what} file") == 0:
        raise VideorepError(f"{path}: {what} file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # the size is checked below, more strictly than PIL's DecompressionBombWarning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_pixels(path, image.size[0], image.size[1], what)
                yield image
    except VideorepError:
        raise
    except UnidentifiedImageError:
        raise VideorepError(f"{path}: not a readable {what} (unknown format)") from None
    except Image.DecompressionBombError as exc:
        raise VideorepError(f"{path}: {what} too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise VideorepError(f"{path}: unreadable or truncated {what} ({reason})") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an ``[H, W, 3]`` uint8 RGB array.

    Raises:
        VideorepError: the file is missing, empty, truncated, not an image, or declares more
            than :data:`MAX_IMAGE_PIXELS` pixels.
    """
    with open_image(path) as image:
        image.load()
        return pil_to_rgb(image, str(path))


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
