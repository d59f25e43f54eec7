"""Co-Settle method: PEA on the third view, batched encoding, export round trip."""

from __future__ import annotations

import pytest
import torch

from videorep.backbones import load_encoder
from videorep.errors import VideorepError
from videorep.methods.cosettle import CoSettle, CoSettleConfig, load_projection, save_projection


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("random_vit_tiny16")


def frames(b: int = 2, t: int = 2, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(b, t, 3, size, size, generator=g)


def test_pea_changes_only_the_third_view(encoder) -> None:
    x = frames()
    method = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16"))
    z, grid = method.encode(x)
    assert grid == (4, 4) and z.shape == (2, 3, 16, 192)
    plain = encoder(x.flatten(0, 1)).reshape(2, 2, 16, 192)
    torch.testing.assert_close(z[:, :2], plain, atol=1e-5, rtol=1e-5)
    assert (z[:, 2] - z[:, 0]).abs().max() > 1e-2  # PEA moved frame 1's tokens

    off = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16", pea=False))
    z_off, _ = off.encode(x)
    assert torch.equal(z_off[:, 2], z_off[:, 0])


def test_bank_tokens_without_pea_walk_back_to_the_first_frame(encoder) -> None:
    """A bank holds PEA views; a --no-pea run on it must use z_1 itself as the third view."""
    on = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16"), seed=0)
    z, grid = on.encode(frames())
    off = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16", pea=False), seed=0)
    off.head.load_state_dict(on.head.state_dict())
    batch = {"tokens": z, "grid": torch.tensor(grid)}
    expected = off.losses(torch.cat([z[:, :2], z[:, :1]], dim=1), grid)
    got = off.training_step(batch)
    assert got["loss"].item() == pytest.approx(expected["loss"].item(), rel=1e-6)
    assert got["loss"].item() != pytest.approx(on.training_step(batch)["loss"].item(), rel=1e-4)


def test_pea_is_seeded_by_step(encoder) -> None:
    x = frames()
    method = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16"))
    method.before_optimizer_step(5)
    a, _ = method.encode(x)
    method.before_optimizer_step(5)
    b, _ = method.encode(x)
    method.before_optimizer_step(6)
    c, _ = method.encode(x)
    assert torch.equal(a, b)
    assert not torch.equal(a[:, 2], c[:, 2])


def test_multi_frame_walk_and_losses(encoder) -> None:
    method = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16", frames=3))
    out = method.training_step({"frames": frames(t=3)})
    assert set(out) == {"loss", "cycle_loss", "reg_loss", "cycle_acc"}
    expected = out["cycle_loss"] + 3.0 * out["reg_loss"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    out["loss"].backward()
    assert method.head.net[0].weight.grad is not None
    assert all(p.grad is None for p in method.encoder.parameters())


def test_view_bank_tokens_give_the_same_loss(encoder) -> None:
    method = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16"))
    method.before_optimizer_step(0)
    x = frames()
    z, grid = method.encode(x)
    direct = method.losses(z, grid)["loss"]
    banked = method.training_step({"tokens": z, "grid": torch.tensor([list(grid)] * 2)})["loss"]
    assert banked.item() == pytest.approx(direct.item(), rel=1e-6)


def test_projection_export_round_trip(tmp_path, encoder) -> None:
    method = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16"))
    torch.nn.init.normal_(method.head.net[0].weight)
    save_projection(method.head, tmp_path / "proj", extra=method.export_config())
    head = load_projection(tmp_path / "proj", expect_dim=192)
    x = torch.randn(1, 5, 192)
    torch.testing.assert_close(head(x), method.head(x))
    with pytest.raises(VideorepError, match="width 192.*encoder width 384"):
        load_projection(tmp_path / "proj", expect_dim=384)
    with pytest.raises(VideorepError, match="not a projection folder"):
        load_projection(tmp_path)


def test_bad_config_is_refused(encoder) -> None:
    with pytest.raises(VideorepError, match="regulariser"):
        CoSettle(encoder, CoSettleConfig(reg="l1"))
    with pytest.raises(VideorepError, match="frames"):
        CoSettle(encoder, CoSettleConfig(frames=1))
