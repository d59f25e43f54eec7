"""Evaluation-time fusion of frozen and projected tokens (``--fuse-alpha``).

A trained head changes the patch tokens; on some videos that helps label propagation and on
others it hurts (docs/results/2026-12-03-devset-study.md). :class:`FusedProjection` keeps both:
for encoder tokens ``z`` and a projection ``g`` it returns

    f(z) = [ sqrt(1 - alpha) * z / |z| ,  sqrt(alpha) * g(z) / |g(z)| ]        [B, N, 2D]

so that the cosine affinity that propagation computes between two fused tokens is exactly the
blend of the two affinities,

    <f(a), f(b)> = (1 - alpha) * cos(a, b) + alpha * cos(g(a), g(b)),

and |f| = 1. ``alpha = 0`` returns ``z`` itself and ``alpha = 1`` returns ``g(z)`` itself, so
both ends reproduce the frozen and the head's results bit for bit. It is a projection like any
other (``FeatureExtractor(encoder, size, projection=FusedProjection(head, alpha))``): the one
propagation path is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from videorep.errors import VideorepError


def check_alpha(alpha: float, name: str = "fusion alpha") -> float:
    """``alpha`` as a float in ``[0, 1]``; else one error naming ``name`` (e.g. a flag)."""
    value = float(alpha)
    if not 0.0 <= value <= 1.0:  # NaN fails both comparisons
        raise VideorepError(f"{name} {value:g}: must lie in [0, 1]")
    return value


class FusedProjection(torch.nn.Module):
    """``[B, N, D] -> [B, N, 2D]`` concatenation of normalised frozen and projected tokens.

    Args:
        projection: the head ``g``: ``[B, N, D] -> [B, N, D']``.
        alpha: weight of the head's affinity, in ``[0, 1]`` (0: frozen tokens, 1: the head's).
    """

    def __init__(self, projection: Callable[[torch.Tensor], torch.Tensor], alpha: float) -> None:
        super().__init__()
        self.projection = projection
        self.alpha = check_alpha(alpha)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.alpha == 0.0:
            return tokens
        projected = self.projection(tokens)
        if self.alpha == 1.0:
            return projected
        frozen = F.normalize(tokens.float(), dim=-1) * math.sqrt(1.0 - self.alpha)
        head = F.normalize(projected.float(), dim=-1) * math.sqrt(self.alpha)
        return torch.cat([frozen, head], dim=-1)


def fuse(
    projection: Callable[[torch.Tensor], torch.Tensor] | None, alpha: float | None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``projection`` fused with the frozen tokens at ``alpha`` (``None``: unchanged)."""
    if alpha is None:
        return projection
    if projection is None:
        raise VideorepError("--fuse-alpha needs a --projection to fuse with the frozen tokens")
    return FusedProjection(projection, alpha)
