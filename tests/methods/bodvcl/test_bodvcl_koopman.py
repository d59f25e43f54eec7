"""Koopman estimate, L_pred and the static/dynamic split (BOD-VCL paper, Eq. 18-21)."""

import math

import pytest
import torch

from videorep.errors import VideorepError
from videorep.methods.bodvcl.koopman import (
    decompose_literal,
    koopman_operator,
    koopman_split,
    prediction_loss,
    snapshot_matrices,
)


def _linear_system(eigs, m, t, seed=0, batch=1):
    """Features x_{t+1} = K x_t (rows [B, T, M]) for a real K with the given eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.zeros(m, m, dtype=torch.float64)
    i = 0
    for lam in eigs:
        if isinstance(lam, complex):
            r, th = abs(lam), math.atan2(lam.imag, lam.real)
            blocks[i : i + 2, i : i + 2] = r * torch.tensor(
                [[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64
            )
            i += 2
        else:
            blocks[i, i] = lam
            i += 1
    assert i == m
    q = torch.randn(m, m, generator=g, dtype=torch.float64) + 2 * torch.eye(m, dtype=torch.float64)
    k = q @ blocks @ torch.linalg.inv(q)
    x = torch.randn(batch, m, generator=g, dtype=torch.float64)
    frames = [x]
    for _ in range(t - 1):
        frames.append(frames[-1] @ k.T)
    return torch.stack(frames, dim=1), k


EIGS = [1.0, 0.95, 1.05, 0.5, -0.4, complex(0.7, 0.6), complex(0.995, 0.05)]


def _all_eigs():
    out = []
    for lam in EIGS:
        if isinstance(lam, complex):
            out += [lam, lam.conjugate()]
        else:
            out.append(complex(lam))
    return out


def test_recovers_known_operator_and_split():
    feats, k_true = _linear_system(EIGS, m=9, t=40, batch=3)
    k = koopman_operator(feats, rtol=1e-12)
    assert (k - k_true).abs().max().item() < 1e-5
    split = koopman_split(feats, xi=0.1, rtol=1e-12)
    expected = sorted(_all_eigs(), key=lambda z: (z.real, z.imag))
    for b in range(3):
        got = sorted(split.eigenvalues[b].tolist(), key=lambda z: (z.real, z.imag))
        assert max(abs(a - e) for a, e in zip(got, expected)) < 1e-6
        static = {
            complex(round(z.real, 6), round(z.imag, 6))
            for z, s in zip(split.eigenvalues[b].tolist(), split.static_mask[b].tolist())
            if s
        }
        want = {complex(round(z.real, 6), round(z.imag, 6)) for z in expected if abs(z - 1) < 0.1}
        assert static == want  # 1.0, 0.95, 1.05 and the pair 0.995 +- 0.05j
        assert int(split.n_static[b]) == 5
    assert not split.defective.any()


def test_split_matches_literal_eq21_with_full_eigendecomposition():
    """The reduced computation equals Phi Lambda_inv Phi^-1 etc. on the full [M, M] K."""
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(4, 8, 12, generator=g, dtype=torch.float64)
    feats = feats + torch.linspace(0, 1, 8, dtype=torch.float64)[None, :, None]
    split = koopman_split(feats, xi=0.5, rtol=1e-12)
    for b in range(4):
        z_a, z_m, lam = decompose_literal(feats[b], xi=0.5, rtol=1e-12)
        assert torch.allclose(split.z_static[b], z_a, atol=1e-8)
        assert torch.allclose(split.z_dynamic[b], z_m, atol=1e-8)
    # eigenvalue mode: T_A + T_M = K, so Z_A + Z_M = K z
    k = koopman_operator(feats, rtol=1e-12)
    kz = (k @ feats.mean(1).unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(split.z_static + split.z_dynamic, kz, atol=1e-9)
    # projector mode: Z = Z_A + Z_M (App. F, Eq. 35)
    proj = koopman_split(feats, xi=0.5, mode="projector", rtol=1e-12)
    assert torch.allclose(proj.z_static + proj.z_dynamic, feats.mean(1), atol=1e-9)


def test_constant_video_is_all_static():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(3, 1, 32, generator=g)
    feats = base.repeat(1, 8, 1)
    for mode in ("eigenvalue", "projector"):
        split = koopman_split(feats, mode=mode)
        assert torch.allclose(split.z_static, base[:, 0], atol=1e-5)
        assert split.z_dynamic.abs().max().item() < 1e-5
        assert split.n_static.tolist() == [1, 1, 1]


def test_degenerate_cases():
    g = torch.Generator().manual_seed(3)
    # no static eigenvalue: an oscillation with eigenvalues -0.5 and 0.5 (far from 1)
    feats, _ = _linear_system([-0.5, 0.5, complex(0.0, 0.8)], m=4, t=12)
    split = koopman_split(feats.float())
    assert int(split.n_static[0]) == 0
    assert split.z_static.abs().max().item() == 0.0
    assert split.z_dynamic.abs().max().item() > 1e-3
    # all static: eigenvalues 1 and 0.97 only
    feats, _ = _linear_system([1.0, 0.97], m=2, t=10)
    split = koopman_split(feats)
    assert int(split.n_static[0]) == 2
    assert split.z_dynamic.abs().max().item() < 1e-10
    # defective: exact Jordan block at 1 (features drifting linearly), in float64
    a, b = torch.randn(2, 6, generator=g, dtype=torch.float64)
    drift = torch.stack([a + t * b for t in range(8)])[None]
    split = koopman_split(drift, rtol=1e-12)
    assert bool(split.defective[0])
    assert torch.isfinite(split.z_static).all() and torch.isfinite(split.z_dynamic).all()
    # rank-deficient frames (repeats) stay finite, and so do gradients
    x = torch.randn(2, 4, 16, generator=g).repeat_interleave(2, dim=1).requires_grad_(True)
    split = koopman_split(x)
    (split.z_static.sum() + split.z_dynamic.pow(2).sum() + prediction_loss(x)).backward()
    assert torch.isfinite(x.grad).all()


def test_gradcheck_with_repeated_eigenvalues():
    """A constant video: K has one eigenvalue 1 and M-1 zero eigenvalues (ties inside the dynamic
    cluster); the cluster-aware backward is still exact."""
    base = torch.randn(1, 1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    x = base.repeat(2, 5, 1).requires_grad_(True)
    for mode in ("eigenvalue", "projector"):
        fa = lambda f, m=mode: koopman_split(f, mode=m).z_static  # noqa: E731
        fm = lambda f, m=mode: koopman_split(f, mode=m).z_dynamic  # noqa: E731
        assert torch.autograd.gradcheck(fa, (x,))
        assert torch.autograd.gradcheck(fm, (x,))


def test_gradcheck_koopman_and_pred_loss():
    g = torch.Generator().manual_seed(4)
    for shape in ((2, 4, 3), (2, 3, 5)):  # T - 1 >= M and T - 1 < M
        x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda f: koopman_operator(f, rtol=1e-10), (x,))
        assert torch.autograd.gradcheck(lambda f: prediction_loss(f, nu=0.1, rtol=1e-10), (x,))


@pytest.mark.parametrize("mode", ["eigenvalue", "projector"])
def test_gradcheck_split_with_static_and_dynamic_eigenvalues(mode):
    feats, _ = _linear_system([1.0, 0.96, 0.3], m=3, t=6, batch=2, seed=10)
    g = torch.Generator().manual_seed(6)
    x = (feats + 0.002 * torch.randn(feats.shape, generator=g, dtype=torch.float64)).requires_grad_(
        True
    )
    split = koopman_split(x, xi=0.2, mode=mode, rtol=1e-10)
    assert split.n_static.tolist() == [2, 2]
    fa = lambda f: koopman_split(f, xi=0.2, mode=mode, rtol=1e-10).z_static  # noqa: E731
    fm = lambda f: koopman_split(f, xi=0.2, mode=mode, rtol=1e-10).z_dynamic  # noqa: E731
    assert torch.autograd.gradcheck(fa, (x,))
    assert torch.autograd.gradcheck(fm, (x,))


def test_pred_loss_value_and_snapshots():
    x = torch.arange(2 * 4 * 3, dtype=torch.float64).view(2, 4, 3).sin()
    f_b, f_f = snapshot_matrices(x)
    assert f_b.shape == (2, 3, 3) and torch.equal(f_f[0, :, 0], x[0, 1])
    k = koopman_operator(x)
    mse = (f_f - k @ f_b).pow(2).mean()
    ortho = (
        sum(((k[i].T @ k[i] - torch.eye(3, dtype=torch.float64)) ** 2).sum() for i in range(2)) / 2
    )
    assert torch.allclose(prediction_loss(x, nu=1e-2), mse + 1e-2 * ortho)


def test_input_errors():
    with pytest.raises(VideorepError, match="T=1"):
        koopman_operator(torch.randn(2, 1, 4))
    with pytest.raises(VideorepError, match=r"\[B, T, M\]"):
        koopman_split(torch.randn(4, 4))
    with pytest.raises(VideorepError, match="xi"):
        koopman_split(torch.randn(2, 4, 4), xi=1.5)
