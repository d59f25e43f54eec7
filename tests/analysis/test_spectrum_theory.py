"""The spectral check: covariances, the soft threshold of Theorem 1, Theorem 2's margin."""

from __future__ import annotations

import math

import pytest
import torch

from videorep.analysis.spectrum import (
    fit_soft_threshold,
    head_linear_map,
    inter_covariance,
    intra_covariance,
    soft_threshold,
    spearman,
    spectrum_analysis,
    theorem2_delta,
)

SIGMA = torch.tensor([3.0, 2.4, 1.5, 1.0, 0.5, 0.1], dtype=torch.float64)
LAMBDA = 1.0
#: tolerance on each eigenvalue of the trained map (sampling error of Sigma_hat from 20k pairs)
MU_TOL = 0.05


def test_soft_threshold_and_theorem2_by_hand() -> None:
    mu = soft_threshold(SIGMA, LAMBDA)
    expected = [0, 0, math.sqrt(0.25), math.sqrt(0.5), math.sqrt(0.75), math.sqrt(0.95)]
    assert mu.tolist() == pytest.approx(expected)
    # tau = mean sigma = 8.5 / 6; terms over sigma <= 2: (tau - s)(1 - s/2)
    tau = 8.5 / 6
    want = sum((tau - s) * (1 - s / 2) for s in (1.5, 1.0, 0.5, 0.1))
    assert theorem2_delta(SIGMA, LAMBDA) == pytest.approx(want)
    # below tau / 2 every kept term is positive (the theorem's condition lambda < tau / 2)
    assert theorem2_delta(SIGMA, 0.3) > 0


def test_fit_recovers_lambda_and_scale_of_an_exact_soft_threshold() -> None:
    mu = 0.37 * soft_threshold(SIGMA, LAMBDA)
    lam, scale, r2 = fit_soft_threshold(SIGMA, mu, steps=2000)
    assert lam == pytest.approx(LAMBDA, rel=0.02)
    assert scale == pytest.approx(0.37, rel=0.02)
    assert r2 > 0.999


def test_spearman_by_hand() -> None:
    assert spearman(torch.tensor([1.0, 2, 3]), torch.tensor([10.0, 20, 30])) == pytest.approx(1)
    assert spearman(torch.tensor([1.0, 2, 3]), torch.tensor([3.0, 2, 1])) == pytest.approx(-1)
    # ranks (0, 1, 2, 3) vs (0.5, 0.5, 2, 3): rho = 0.9487
    got = spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([5.0, 5, 6, 7]))
    assert got == pytest.approx(3 / math.sqrt(10), abs=1e-4)


def test_covariances_of_constant_videos_by_hand() -> None:
    # two videos, constant over time: no intra-video variation; means (1, 0) and (0, 2)
    a = torch.tensor([1.0, 0.0]).expand(3, 4, 2)
    b = torch.tensor([0.0, 2.0]).expand(3, 4, 2)
    assert intra_covariance([a, b]).abs().max() == 0
    inter = inter_covariance([a, b])
    assert torch.allclose(inter, torch.tensor([[1.0, -2.0], [-2.0, 4.0]], dtype=torch.float64))


def _random_rotation(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    return q.double()


def test_linear_head_trained_by_the_surrogate_loss_recovers_the_soft_threshold() -> None:
    """Features with a known Sigma; W trained on Eq. 4 follows Theorem 1 within MU_TOL."""
    d = SIGMA.numel()
    u = _random_rotation(d, 0)
    gen = torch.Generator().manual_seed(1)
    n = 20_000
    delta = (torch.randn(n, d, generator=gen, dtype=torch.float64) * SIGMA.sqrt()) @ u.T
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    # video k: frame 0 = x, frame 1 = x - delta (temporally corresponding "patches")
    videos = [torch.stack([x[k::4], x[k::4] - delta[k::4]]).float() + 0.5 * k for k in range(4)]
    sigma_hat = intra_covariance([v.double() for v in videos])
    w = torch.eye(d, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(3000):  # Eq. 4: 1/2 tr(W Sigma W^T) + lambda/2 ||W W^T - I||^2
        opt.zero_grad()
        loss = 0.5 * torch.trace(w @ sigma_hat @ w.T)
        loss = loss + LAMBDA / 2 * ((w @ w.T - torch.eye(d, dtype=torch.float64)) ** 2).sum()
        loss.backward()
        opt.step()
    head = torch.nn.Linear(d, d)
    with torch.no_grad():
        head.weight.copy_(w.detach().float())
        head.bias.zero_()
    assert torch.allclose(head_linear_map(head, mode="weight"), w.detach(), atol=1e-6)
    result = spectrum_analysis(videos, head, pairs="adjacent", map_mode="weight")
    assert result["sigma"] == pytest.approx(SIGMA.tolist(), rel=0.05)
    truth = soft_threshold(torch.tensor(result["sigma"]), LAMBDA)
    assert max(abs(a - b) for a, b in zip(result["mu"], truth.tolist())) < MU_TOL
    assert result["lambda"] == pytest.approx(LAMBDA, rel=0.1)
    assert result["scale"] == pytest.approx(1.0, abs=0.05)
    assert result["spearman"] > 0.9
    assert result["above_threshold"] == 2
    checks = result["assumptions"]
    assert checks["asymmetry ||W - W^T|| / ||W|| (symmetric: 0)"] < 1e-3
    # the Jacobian of a purely linear head is its weight
    jac = head_linear_map(head, x[:8].float(), mode="jacobian")
    assert torch.allclose(jac, head.weight.detach().double(), atol=1e-5)
