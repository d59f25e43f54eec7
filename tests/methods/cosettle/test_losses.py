"""Co-Settle objectives on hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videorep.methods.cosettle.heads import ProjectionHead, count_parameters
from videorep.methods.cosettle.losses import (
    cycle_loss,
    kl_regularizer,
    mse_regularizer,
    pool_tokens,
    walk_path,
)


def one_hot_tokens(order: list[int], n: int) -> torch.Tensor:
    """Tokens ``[n, n]`` whose i-th token is the unit vector e_{order[i]}."""
    return torch.eye(n)[order]


def test_identical_frames_walk_back_with_accuracy_one() -> None:
    torch.manual_seed(0)
    p = F.normalize(torch.randn(2, 16, 8), dim=-1)
    tokens = torch.stack([p, p, p], dim=1)  # p1 = p2 = p1~ (PEA off, static video)
    loss, acc = cycle_loss(tokens, (4, 4), tau=0.03, pool=1)
    assert acc.item() == 1.0
    assert loss.item() < 0.05


def test_known_permutation_gives_hand_computed_loss() -> None:
    n, tau = 4, 0.5
    sigma = [1, 2, 3, 0]  # p1~ is p1 with its tokens cyclically shifted
    p1 = one_hot_tokens([0, 1, 2, 3], n)
    p2 = one_hot_tokens([0, 1, 2, 3], n)
    p1t = one_hot_tokens(sigma, n)
    tokens = torch.stack([p1, p2, p1t])[None]
    loss, acc = cycle_loss(tokens, (2, 2), tau=tau, pool=1)

    # By hand: a softmax row over one-hot dot products has e^{1/tau} at the match, 1 elsewhere.
    e = math.exp(1 / tau)
    match, other = e / (e + n - 1), 1 / (e + n - 1)
    a12 = np.full((n, n), other)
    np.fill_diagonal(a12, match)
    a21 = np.full((n, n), other)
    for j, s in enumerate(sigma):  # p2_i . p1~_j = 1 iff i == sigma[j]
        a21[s, j] = match
    walk = a12 @ a21
    expected = 0.0
    for i in range(n):
        row = walk[i] + 1e-6
        expected += -math.log(row[i] / row.sum())
    expected /= n
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # every patch walks back to sigma^-1(i) != i: accuracy 0
    assert acc.item() == 0.0


def test_walk_path_is_the_paper_walk_and_a_palindrome() -> None:
    assert walk_path(2) == [0, 1, 2]  # p1 -> p2 -> p1~
    assert walk_path(3) == [0, 1, 2, 1, 3]
    assert walk_path(4) == [0, 1, 2, 3, 2, 1, 4]


def test_pool_tokens_averages_2x2_windows() -> None:
    grid = torch.arange(16.0).reshape(1, 1, 16, 1)  # 4x4 grid, values = position
    pooled = pool_tokens(grid, (4, 4), 2)
    assert pooled.shape == (1, 1, 4, 1)
    assert pooled.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


def test_kl_regularizer_matches_direct_formula() -> None:
    torch.manual_seed(1)
    z = F.normalize(torch.randn(3, 3, 5, 6), dim=-1)
    p = F.normalize(torch.randn(3, 3, 5, 6), dim=-1)
    q = torch.softmax(z, dim=-1)
    r = torch.softmax(p, dim=-1)
    direct = (q * (q.log() - r.log())).sum() / z.shape[0]
    assert kl_regularizer(z, p).item() == pytest.approx(direct.item(), rel=1e-6)
    assert kl_regularizer(z, z).item() == pytest.approx(0.0, abs=1e-7)
    assert mse_regularizer(z, p).item() == pytest.approx(((z - p) ** 2).mean().item(), rel=1e-6)


@pytest.mark.parametrize(
    ("kind", "count"),
    [
        ("linear", 768 * 768 + 768 + 2 * 768),  # 592,128: Linear(bias) + LayerNorm
        ("mlp2", 2 * (768 * 768 + 768) + 2 * 768),
        ("mlp3", 3 * (768 * 768 + 768) + 2 * 768),
    ],
)
def test_head_parameter_counts(kind: str, count: int) -> None:
    head = ProjectionHead(768, kind)
    assert count_parameters(head) == count
    assert count_parameters(ProjectionHead(768, "linear")) == 592_128


def test_head_structure_follows_the_released_adapter() -> None:
    names = [type(m).__name__ for m in ProjectionHead(8, "linear").net]
    assert names == ["Linear", "Tanh", "LayerNorm"]
    names = [type(m).__name__ for m in ProjectionHead(8, "mlp2").net]
    assert names == ["Linear", "Tanh", "Linear", "LayerNorm"]
    names = [type(m).__name__ for m in ProjectionHead(8, "mlp3").net]
    assert names == ["Linear", "Tanh", "Linear", "Tanh", "Linear", "LayerNorm"]
    head = ProjectionHead(8, "linear", init="identity")
    assert torch.equal(head.net[0].weight, 0.05 * torch.eye(8))
    # the identity-initialised head starts at the frozen features: LN(tanh(0.05 z)) ~ LN(z)
    z = 2.3 * torch.randn(50, 8)
    expected = torch.nn.functional.layer_norm(z, (8,))
    cos = torch.nn.functional.cosine_similarity(head(z), expected, dim=-1)
    assert cos.min() > 0.99
