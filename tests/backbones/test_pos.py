"""Positional-grid interpolation and PEA (positional-encoding augmentation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videorep.backbones.pos import (
    POS_INTERPOLATIONS,
    interpolate_pos_grid,
    make_pea_fn,
    pea,
    rope_coordinate_grid,
)
from videorep.errors import VideorepError


@pytest.fixture(scope="module")
def grid() -> torch.Tensor:
    """A random 14x14 absolute positional grid with D = 32."""
    return torch.randn(1, 32, 14, 14, generator=torch.Generator().manual_seed(0))


# --- interpolation ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", POS_INTERPOLATIONS)
def test_same_size_is_exact_identity(grid, method):
    out = interpolate_pos_grid(grid, (14, 14), method)
    assert torch.equal(out, grid)


def test_bicubic_is_plain_interpolate_without_antialias(grid):
    for size in [(34, 61), (7, 9), (16, 16)]:
        expected = F.interpolate(
            grid, size=size, mode="bicubic", align_corners=False, antialias=False
        )
        out = interpolate_pos_grid(grid, size, "bicubic")
        assert out.shape == (1, 32, *size)
        assert torch.equal(out, expected)


def test_bicubic_antialias_differs_when_shrinking(grid):
    big = interpolate_pos_grid(grid, (37, 37))
    aa = interpolate_pos_grid(big, (16, 16), "bicubic_antialias")
    expected = F.interpolate(
        big, size=(16, 16), mode="bicubic", align_corners=False, antialias=True
    )
    assert torch.equal(aa, expected)
    assert (aa - interpolate_pos_grid(big, (16, 16), "bicubic")).abs().max() > 1e-2


def test_bicubic_offset_is_dinos_rule(grid):
    h, w = 34, 61
    out = interpolate_pos_grid(grid, (h, w), "bicubic_offset")
    assert out.shape == (1, 32, h, w)
    plain = interpolate_pos_grid(grid, (h, w), "bicubic")
    assert (out - plain).abs().max() > 1e-3  # different sampling positions
    # DINO's interpolate_pos_encoding: scale_factor = (h0 + 0.1) / sqrt(N) per side
    dino = F.interpolate(grid, scale_factor=((h + 0.1) / 14, (w + 0.1) / 14), mode="bicubic")
    assert dino.shape[-2:] == (h, w)
    assert torch.allclose(out, dino, atol=1e-6)


def test_interpolation_keeps_dtype_and_rejects_unknown_method(grid):
    assert interpolate_pos_grid(grid.double(), (20, 20)).dtype == torch.float64
    with pytest.raises(VideorepError, match="'nearest'"):
        interpolate_pos_grid(grid, (20, 20), "nearest")


def test_encoder_pos_grid_at_stored_size_is_the_stored_embedding(tiny_encoder):
    vit = tiny_encoder.vit
    stored = vit.pos_embed[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    assert torch.equal(tiny_encoder.pos_grid(14, 14), stored)
    assert tiny_encoder.pos_grid(30, 20).shape == (1, 192, 30, 20)


# --- PEA -------------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _find_window(up: torch.Tensor, crop: torch.Tensor) -> tuple[int, int]:
    """Offset of ``crop`` inside ``up`` (exact match), or fail."""
    h, w = crop.shape[-2:]
    for t in range(up.shape[-2] - h + 1):
        for x in range(up.shape[-1] - w + 1):
            if torch.equal(up[..., t : t + h, x : x + w], crop):
                return t, x
    raise AssertionError("PEA output is not a window of the upsampled grid")


def test_pea_shape_and_window(grid):
    out = pea(grid, alpha=10, mode="random", generator=_gen(0))
    assert out.shape == grid.shape
    up = interpolate_pos_grid(grid, (154, 154))  # int(11 * 14)
    t, x = _find_window(up, out)
    assert 0 <= t <= 140 and 0 <= x <= 140


def test_pea_is_deterministic_under_a_generator(grid):
    a = pea(grid, alpha=10, generator=_gen(123))
    b = pea(grid, alpha=10, generator=_gen(123))
    assert torch.equal(a, b)
    others = [pea(grid, alpha=10, generator=_gen(s)) for s in range(1, 6)]
    assert sum(not torch.equal(a, o) for o in others) >= 4  # 141^2 offsets: collisions are rare


def test_pea_center_alpha0_is_identity(grid):
    assert torch.equal(pea(grid, alpha=0.0, mode="center"), grid)


def test_pea_center_alpha1_is_the_central_window(grid):
    out = pea(grid, alpha=1.0, mode="center")
    up = interpolate_pos_grid(grid, (28, 28))
    assert torch.equal(out, up[..., 7:21, 7:21])


def test_pea_edge_touches_a_corner(grid):
    up = interpolate_pos_grid(grid, (42, 42))  # alpha = 2
    corners = set()
    for seed in range(12):
        t, x = _find_window(up, pea(grid, alpha=2.0, mode="edge", generator=_gen(seed)))
        assert t in (0, 28) and x in (0, 28)
        corners.add((t, x))
    assert len(corners) >= 3


def test_pea_multiple_gives_one_crop_per_sample(grid):
    out = pea(grid, alpha=10, mode="multiple", generator=_gen(0), batch=5)
    assert out.shape == (5, 32, 14, 14)
    distinct = {tuple(o.flatten()[:4].tolist()) for o in out}
    assert len(distinct) >= 4


def test_pea_rejects_bad_arguments(grid):
    with pytest.raises(VideorepError, match="'diagonal'"):
        pea(grid, mode="diagonal")
    with pytest.raises(VideorepError, match="-1"):
        pea(grid, alpha=-1)
    with pytest.raises(VideorepError, match=r"\[2, 32, 14, 14\]"):
        pea(grid.expand(2, -1, -1, -1))


def test_pea_on_rope_coordinates():
    coords = rope_coordinate_grid(14, 14)
    assert coords.shape == (1, 2, 14, 14)
    step = 2.0 / 14
    assert torch.allclose(coords[0, 1, 0, :2], torch.tensor([-1 + step / 2, -1 + 1.5 * step]))
    out = pea(coords, alpha=10, generator=_gen(0))
    assert out.shape == (1, 2, 14, 14)
    # A centre crop at alpha = 1 samples the (linear) coordinates at half the spacing. PyTorch's
    # bicubic kernel (a = -0.75) does not reproduce linear functions exactly: the spacing
    # alternates 0.058 / 0.085 around the ideal 0.0714, so the grid is only approximately linear.
    centre = pea(coords, alpha=1.0, mode="center")
    ys, xs = centre[0, 0], centre[0, 1]
    ideal = (torch.arange(14, dtype=torch.float32) - 6.5) * step / 2
    assert torch.allclose(xs, ideal.expand(14, 14), atol=0.1 * step / 2)
    assert torch.allclose(ys, ideal[:, None].expand(14, 14), atol=0.1 * step / 2)
    assert bool((xs.diff(dim=1) > 0.75 * step / 2).all())  # still strictly increasing
    assert bool((xs.diff(dim=1) < 1.25 * step / 2).all())
    assert torch.allclose(xs.diff(dim=0), torch.zeros(13, 14), atol=1e-6)  # x constant down rows
    slope = torch.linalg.lstsq(
        torch.stack([torch.arange(14.0), torch.ones(14)], 1), xs[0, :, None]
    ).solution[0, 0]
    assert float(slope) == pytest.approx(step / 2, rel=0.01)
    assert abs(float(xs.mean())) < 1e-5 and abs(float(ys.mean())) < 1e-5  # still centred


def test_rope_grid_unnormalised_is_patch_centres():
    coords = rope_coordinate_grid(3, 4, normalize=False)
    assert coords[0, 0, :, 0].tolist() == [0.5, 1.5, 2.5]
    assert coords[0, 1, 0].tolist() == [0.5, 1.5, 2.5, 3.5]


# --- the encoder hook --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def test_identity_hook_leaves_tokens_unchanged(tiny_encoder, images):
    with torch.inference_mode():
        plain = tiny_encoder(images)
        same = tiny_encoder(images, pos_embed_fn=lambda g: g)
    assert plain.shape == (2, 196, 192)
    assert torch.equal(plain, same)


def test_pea_hook_changes_tokens(tiny_encoder, images):
    with torch.inference_mode():
        plain = tiny_encoder(images)
        aug = tiny_encoder(images, pos_embed_fn=make_pea_fn(alpha=10, generator=_gen(0)))
    assert aug.shape == plain.shape
    cos = F.cosine_similarity(aug, plain, dim=-1)
    assert float((aug - plain).abs().max()) > 1e-2
    assert float(cos.mean()) < 0.9999


def test_pea_multiple_hook_differs_per_sample(tiny_encoder):
    same = torch.randn(1, 3, 224, 224, generator=_gen(2)).expand(2, -1, -1, -1)
    with torch.inference_mode():
        out = tiny_encoder(same, pos_embed_fn=make_pea_fn(10, "multiple", _gen(0), batch=2))
    assert float((out[0] - out[1]).abs().max()) > 1e-2


def test_hook_with_wrong_shape_is_rejected(tiny_encoder, images):
    with pytest.raises(VideorepError, match="pos_embed_fn returned shape"):
        tiny_encoder(images, pos_embed_fn=lambda g: g[:, :, :7])
