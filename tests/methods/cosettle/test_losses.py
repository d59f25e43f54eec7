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


# ------------------------------------------------------------------------------------------------
# Random tokens against an independent numpy transcription of the authors' definition
# (shared/notes/method-notes.md): L2-normalised tokens, 2x2 average pooling, rows of
# A = softmax_rows(p_a p_b^T / tau) multiplied IN PATH ORDER, cross-entropy of log(P + 1e-6)
# rows against the identity. Permutation-matrix similarities cannot tell a transposed softmax or
# a reversed walk from the real one (all give 1.8614 in the test above); random tokens can.
# ------------------------------------------------------------------------------------------------


def numpy_cycle_loss(
    tokens: np.ndarray, grid: tuple[int, int], tau: float, pool: int, path: list[int]
) -> tuple[float, float]:
    """Loss and accuracy of the walk along ``path`` over ``tokens`` ``[B, K, N, d]`` (float64)."""
    b, k, _, d = tokens.shape
    h, w = grid
    x = tokens.reshape(b, k, h // pool, pool, w // pool, pool, d).mean(axis=(3, 5))
    x = x.reshape(b, k, -1, d)
    n = x.shape[2]
    losses, hits = [], []
    for v in range(b):
        walk = np.eye(n)
        for src, dst in zip(path[:-1], path[1:]):
            s = x[v, src] @ x[v, dst].T / tau
            e = np.exp(s - s.max(axis=1, keepdims=True))
            walk = walk @ (e / e.sum(axis=1, keepdims=True))  # rows: where patch i walks to
        logits = np.log(walk + 1e-6)
        # cross_entropy(logits, i) = -log_softmax(logits)[i]
        log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        losses.extend(-log_softmax[np.arange(n), np.arange(n)])
        hits.extend(logits.argmax(axis=1) == np.arange(n))
    return float(np.mean(losses)), float(np.mean(hits))


def random_unit_tokens(b: int, k: int, n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((b, k, n, d))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize(
    ("frames", "path"),
    [(2, [0, 1, 2]), (3, [0, 1, 2, 1, 3])],  # 1 -> 2 -> 1~ ; palindrome 1 -> 2 -> 3 -> 2 -> 1~
)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_tokens_pool2_match_the_numpy_walk_in_path_order(frames, path, seed) -> None:
    grid, tau = (4, 6), 0.1
    tokens = random_unit_tokens(2, frames + 1, grid[0] * grid[1], 8, seed)
    expected, expected_acc = numpy_cycle_loss(tokens, grid, tau, pool=2, path=path)
    loss, acc = cycle_loss(torch.from_numpy(tokens), grid, tau=tau, pool=2)
    assert walk_path(frames) == path
    assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert acc.item() == pytest.approx(expected_acc, abs=1e-7)  # accuracy is float32
    # the test tells the real walk from the variants that permutation matrices cannot
    reversed_walk, _ = numpy_cycle_loss(tokens, grid, tau, pool=2, path=path[::-1])
    assert abs(reversed_walk - expected) > 1e-3 or frames == 2
    no_pool, _ = numpy_cycle_loss(tokens, grid, tau, pool=1, path=path)
    assert abs(no_pool - expected) > 1e-2


def test_transposed_softmax_gives_another_loss_on_random_tokens() -> None:
    """Guard for the guard: a column softmax is far from the row softmax on random tokens."""
    grid, tau = (4, 6), 0.1
    x = torch.from_numpy(random_unit_tokens(2, 3, 24, 8, 0))
    pooled = pool_tokens(x, grid, 2)
    walk = None
    for src, dst in ((0, 1), (1, 2)):
        sim = torch.einsum("bnd,bmd->bnm", pooled[:, src], pooled[:, dst]) / tau
        step = torch.softmax(sim, dim=-2)  # the wrong axis
        walk = step if walk is None else walk @ step
    logits = torch.log(walk + 1e-6).reshape(-1, walk.shape[-1])
    target = torch.arange(walk.shape[-1]).repeat(2)
    wrong = F.cross_entropy(logits, target).item()
    right, _ = numpy_cycle_loss(x.numpy(), grid, tau, pool=2, path=[0, 1, 2])
    assert abs(wrong - right) > 1e-2


def test_method_regulariser_is_kl_of_normalised_z_against_p_in_that_order() -> None:
    """CoSettle.losses: reg_loss = KL(softmax(normalize(z)) || softmax(p)), p = project(z)."""
    from videorep.backbones import load_encoder
    from videorep.methods.cosettle import CoSettle, CoSettleConfig

    method = CoSettle(load_encoder("random_vit_tiny16"), CoSettleConfig(reg="kl"))
    torch.nn.init.normal_(method.head.net[0].weight, std=0.2)  # p far from z
    method.head.double()  # float64 end to end: the order test below needs ~1e-9 agreement
    gen = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(2, 3, 16, 192, generator=gen, dtype=torch.float64)
    out = method.losses(z, (4, 4))
    with torch.no_grad():
        p = method.project(z).double().numpy()
    zn = z.double().numpy()
    zn = zn / np.linalg.norm(zn, axis=-1, keepdims=True)

    def softmax(a: np.ndarray) -> np.ndarray:
        e = np.exp(a - a.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    q, r = softmax(zn), softmax(p)
    kl_zp = float((q * (np.log(q) - np.log(r))).sum() / z.shape[0])  # batchmean: / B
    kl_pz = float((r * (np.log(r) - np.log(q))).sum() / z.shape[0])
    assert out["reg_loss"].dtype == torch.float64
    assert out["reg_loss"].item() == pytest.approx(kl_zp, rel=1e-9)
    assert abs(kl_zp - kl_pz) > 1e-5 * kl_zp  # the order matters, far beyond the tolerance
    unnormalised = softmax(z.double().numpy())
    kl_raw = float((unnormalised * (np.log(unnormalised) - np.log(r))).sum() / z.shape[0])
    assert abs(kl_raw - kl_zp) > 1e-5 * kl_zp  # and so does normalising z
