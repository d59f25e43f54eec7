"""Co-Settle objectives: the cycle-consistency walk and the separability regulariser.

Shapes: ``B`` videos, ``K`` token sets per video (views/frames), ``N = h*w`` tokens, ``d``
channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def pool_tokens(tokens: torch.Tensor, grid: tuple[int, int], pool: int = 2) -> torch.Tensor:
    """Average-pool a token grid ``[B, K, h*w, d]`` with a ``pool x pool`` window and stride.

    Returns ``[B, K, (h//pool)*(w//pool), d]``; ``pool = 1`` returns the input.
    """
    if pool == 1:
        return tokens
    b, k, n, d = tokens.shape
    h, w = grid
    x = tokens.reshape(b * k, h, w, d).permute(0, 3, 1, 2)
    x = F.avg_pool2d(x, kernel_size=pool, stride=pool)
    return x.flatten(2).transpose(1, 2).reshape(b, k, -1, d)


def walk_path(num_frames: int) -> list[int]:
    """Indices of the walk over token sets ``[f_1 .. f_T, f_1~]`` (index ``T`` is ``f_1~``).

    Two frames: ``1 -> 2 -> 1~``, the paper's walk. More frames: the palindrome
    ``1 -> 2 -> ... -> T -> ... -> 2 -> 1~``.
    """
    forward = list(range(num_frames))
    return forward + forward[-2:0:-1] + [num_frames]


def cycle_loss(
    tokens: torch.Tensor,
    grid: tuple[int, int],
    tau: float = 0.03,
    pool: int = 2,
    path: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cycle-consistency loss and accuracy of the walk along ``path``.

    Args:
        tokens: ``[B, K, N, d]`` L2-normalised projected tokens; by default ``K = 3`` holding
            ``p1, p2, p1~``.
        grid: token grid ``(h, w)`` with ``h * w = N``.
        tau: softmax temperature (0.03).
        pool: average-pooling window (2: 14x14 -> 7x7).
        path: token-set indices of the walk (default ``walk_path(K - 1)``).

    The transition from set ``a`` to ``b`` is ``A = softmax_rows(p_a p_b^T / tau)``; the walk's
    ``P`` is the product along the path. The loss is the cross-entropy of ``log(P + 1e-6)`` rows
    against the identity (as the authors compute it), the accuracy ``mean(argmax_j P_ij == i)``.

    Returns:
        ``(loss, accuracy)`` scalars.
    """
    x = pool_tokens(tokens, grid, pool)
    b, k, n, _ = x.shape
    path = walk_path(k - 1) if path is None else path
    walk = None
    for src, dst in zip(path[:-1], path[1:]):
        step = torch.softmax(torch.einsum("bnd,bmd->bnm", x[:, src], x[:, dst]) / tau, dim=-1)
        walk = step if walk is None else walk @ step
    logits = torch.log(walk + EPS).reshape(b * n, n)
    target = torch.arange(n, device=tokens.device).repeat(b)
    loss = F.cross_entropy(logits, target)
    acc = (logits.argmax(dim=-1) == target).float().mean()
    return loss, acc


def kl_regularizer(original: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(z) || softmax(p))`` over the feature dimension, ``batchmean`` reduction.

    Args:
        original: ``[B, K, N, d]`` L2-normalised encoder tokens ``z``.
        projected: ``[B, K, N, d]`` L2-normalised projected tokens ``p``.

    Returns the sum over everything divided by ``B`` (torch's ``batchmean``), as in the authors'
    code.
    """
    return F.kl_div(
        F.log_softmax(projected, dim=-1), F.softmax(original, dim=-1), reduction="batchmean"
    )


def mse_regularizer(original: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``[B, K, N, d]`` token sets."""
    return F.mse_loss(projected, original)


REGULARIZERS = {"kl": kl_regularizer, "mse": mse_regularizer, "none": None}
