"""``hubconf.py``: the torch.hub entry gives the offline encoder's tokens through a trained head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from videorep.backbones import load_encoder
from videorep.errors import VideorepError
from videorep.methods.cosettle.heads import ProjectionHead, load_projection, save_projection

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    head = ProjectionHead(384, "mlp2")
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    folder = tmp_path_factory.mktemp("run") / "projection"
    save_projection(head, folder)
    return folder


def test_hub_loads_the_entry_with_a_head(head_dir) -> None:
    model = torch.hub.load(
        str(ROOT), "dinov2_vits14_imgfocus", source="local", projection=str(head_dir)
    )
    images = torch.randn(2, 3, 56, 84, generator=torch.Generator().manual_seed(0))
    out = model(images)
    assert out.shape == (2, 4 * 6, 384) and model.grid(56, 84) == (4, 6)
    encoder = load_encoder("dinov2_vits14_imgfocus")
    head = load_projection(head_dir, expect_dim=384).eval()
    with torch.no_grad():
        tokens = encoder(images)
        expected = head(tokens)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert not torch.allclose(out, tokens, atol=1e-2)  # the head changed the features
    assert not any(p.requires_grad for p in model.parameters())


def test_without_a_head_it_is_the_frozen_encoder() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf_under_test", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    model = hubconf.dinov2_vits14_imgfocus()
    images = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = load_encoder("dinov2_vits14_imgfocus")(images)
    torch.testing.assert_close(model(images), expected, rtol=0, atol=0)
    with pytest.raises(VideorepError, match="not a projection folder"):
        hubconf.dinov2_vits14_imgfocus(projection=str(ROOT / "docs"))
