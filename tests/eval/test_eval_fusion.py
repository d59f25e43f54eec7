"""Evaluation-time fusion of frozen and projected tokens (``--fuse-alpha``)."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from eval_layouts import make_davis

from videorep.errors import VideorepError
from videorep.eval.core import FeatureExtractor
from videorep.eval.davis import run_davis
from videorep.eval.fusion import FusedProjection, fuse
from videorep.eval.propagation import PropagationConfig


def _shear(tokens: torch.Tensor) -> torch.Tensor:
    """A fixed 'head' g([x, y]) = [x + y, y] on 2-d tokens."""
    return torch.stack([tokens[..., 0] + tokens[..., 1], tokens[..., 1]], dim=-1)


def test_fused_affinity_is_the_hand_computed_blend() -> None:
    # a = [2, 0], b = [0, 3]: frozen cosine 0; g(a) = [2, 0], g(b) = [3, 3]: head cosine 1/sqrt 2
    z = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])  # [1, 2, 2]
    f = FusedProjection(_shear, 0.25)(z)
    assert f.shape == (1, 2, 4)
    s3, s1 = math.sqrt(0.75), 0.5
    expected = torch.tensor([[[s3, 0.0, s1, 0.0], [0.0, s3, s1 / math.sqrt(2), s1 / math.sqrt(2)]]])
    assert torch.allclose(f, expected, atol=1e-7)
    assert torch.allclose(f.norm(dim=-1), torch.ones(1, 2))
    # the affinity: 0.75 * 0 + 0.25 * (1 / sqrt 2)
    assert float(f[0, 0] @ f[0, 1]) == pytest.approx(0.25 / math.sqrt(2), abs=1e-7)


def test_alpha_ends_give_the_frozen_and_the_head_tokens_exactly() -> None:
    z = torch.randn(2, 5, 2)
    assert FusedProjection(_shear, 0.0)(z) is z
    assert torch.equal(FusedProjection(_shear, 1.0)(z), _shear(z))
    assert fuse(_shear, None) is _shear


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_bad_alpha_is_one_clear_error(alpha: float) -> None:
    with pytest.raises(VideorepError, match="alpha"):
        FusedProjection(_shear, alpha)


def test_fuse_without_a_projection_is_refused() -> None:
    with pytest.raises(VideorepError, match="--projection"):
        fuse(None, 0.5)


def _scramble(tokens: torch.Tensor) -> torch.Tensor:
    """A harmful 'head': every token becomes nearly the same vector, with a little noise."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(tokens.shape, generator=g) * 0.01
    return torch.ones_like(tokens) + noise


def test_fusion_through_label_propagation(tmp_path, colour_encoder) -> None:
    """alpha 0 = the frozen run, alpha 1 = the head's run, through the one propagation path."""
    root = make_davis(tmp_path / "DAVIS", n_frames=6, year=2016)
    cfg = PropagationConfig(topk=5, queue=3, radius=4)

    def jf(projection, name: str) -> float:  # noqa: ANN001
        ex = FeatureExtractor(colour_encoder, (64, 96), projection=projection)
        rep = run_davis(root, 2016, "val", ex, cfg, tmp_path / name, log=lambda s: None)
        return rep["JF_mean"], rep["per_sequence"][0]["J_frames"]

    frozen, head = jf(None, "frozen"), jf(_scramble, "head")
    # measured: frozen 0.755, scrambled head 0.108 (colours track the square; the head cannot)
    assert frozen[0] > 0.7 and head[0] < 0.2
    assert jf(FusedProjection(_scramble, 0.0), "a0") == frozen
    assert jf(FusedProjection(_scramble, 1.0), "a1") == head
    # a small share of the scrambled affinity (nearly constant) leaves the top-k as it was
    assert jf(FusedProjection(_scramble, 0.2), "a02")[0] == pytest.approx(frozen[0], abs=0.02)


def test_eval_flag_wraps_the_projection(tmp_path) -> None:
    from videorep.eval import commands
    from videorep.methods.cosettle.heads import ProjectionHead, save_projection

    save_projection(ProjectionHead(192, init="identity"), tmp_path / "proj")
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    base = ["eval", "davis", "--root", "R", "--out", "O", "--backbone", "random_vit_tiny16"]
    args = parser.parse_args([*base, "--projection", str(tmp_path / "proj"), "--fuse-alpha", "0.3"])
    ex = commands.build_extractor(args)
    assert isinstance(ex.projection, FusedProjection) and ex.projection.alpha == 0.3
    assert commands._settings(args)["fuse_alpha"] == 0.3
    with pytest.raises(VideorepError, match="--projection"):
        commands.build_extractor(parser.parse_args([*base, "--fuse-alpha", "0.3"]))
