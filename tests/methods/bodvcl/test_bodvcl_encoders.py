"""Every encoder returns per-frame features [B, T, C] before temporal pooling."""

import pytest
import torch

from videorep.errors import VideorepError
from videorep.methods.bodvcl.encoders import build_encoder, output_length


@pytest.mark.parametrize(
    "name,dim", [("r3d_18", 512), ("r2plus1d_18", 512), ("mc3_18", 512), ("s3d", 1024)]
)
def test_torchvision_encoders_keep_time(name, dim):
    enc = build_encoder(name).eval()
    with torch.no_grad():
        out = enc(torch.randn(1, 4, 3, 32, 32))
    assert out.shape == (1, 4, dim) and enc.out_dim == dim


def test_native_temporal_resolution_is_reported():
    enc = build_encoder("r3d_18", keep_time=False)
    assert output_length(enc, 8, size=32) == 1 and enc.temporal_stride == 8


@pytest.mark.slow
def test_slow_r50_keeps_time():
    enc = build_encoder("slow_r50").eval()
    with torch.no_grad():
        assert enc(torch.randn(1, 4, 3, 32, 32)).shape == (1, 4, 2048)


def test_vit_per_frame_and_tiny3d():
    vit = build_encoder("vit_tiny", img_size=32).eval()
    with torch.no_grad():
        clips = torch.randn(2, 3, 3, 32, 32)
        out = vit(clips)
        assert out.shape == (2, 3, 192)
        # frames are encoded independently: frame 1 of video 0 alone gives the same feature
        single = vit(clips[:1, 1:2])
        assert torch.allclose(out[0, 1], single[0, 0], atol=1e-5)
    assert build_encoder("tiny3d")(torch.randn(2, 5, 3, 16, 16)).shape == (2, 5, 32)
    with pytest.raises(VideorepError):
        build_encoder("resnet50")
    with pytest.raises(VideorepError):
        vit(torch.randn(2, 3, 32, 32))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_slow_r50_is_the_slowfast_slow_pathway():
    """32.45 M parameters with a 400-class head: pytorchvideo's model zoo number for slow_r50
    (its ``create_resnet``); temporal kernels only in res4-res5, no temporal stride."""
    from videorep.methods.bodvcl.encoders import slow_r50

    with torch.device("meta"):  # shapes only: cheap
        net = slow_r50()
        out = net(torch.empty(2, 3, 8, 64, 64))
    assert abs(_count(net) + 2048 * 400 + 400 - 32.45e6) < 0.01 * 32.45e6
    assert out.shape == (2, 2048, 8, 2, 2)
    temporal = [m.kernel_size[0] for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert temporal.count(3) == 6 + 3  # the first conv of each res4 / res5 bottleneck
    assert all(m.stride[0] == 1 for m in net.modules() if isinstance(m, torch.nn.Conv3d))


def test_s3d_g_adds_feature_gating():
    """S3D-G = torchvision's S3D + self-gating after Conv2d_2c and on all 4 branches of the 9
    Inception blocks: 37 gates, 9.1 M parameters (the paper's Table 3 row; S3D alone 7.9 M)."""
    from videorep.methods.bodvcl.encoders import SelfGating, s3d_g

    with torch.device("meta"):
        net = s3d_g()
        out = net(torch.empty(1, 3, 8, 64, 64))
    assert sum(isinstance(m, SelfGating) for m in net.modules()) == 37
    assert abs(_count(net) - 9.1e6) < 0.01 * 9.1e6
    assert out.shape[:2] == (1, 1024)
    gate = SelfGating(2)  # zero weights and bias: sigmoid(0) = 0.5 scales every channel
    torch.nn.init.zeros_(gate.fc.weight)
    torch.nn.init.zeros_(gate.fc.bias)
    x = torch.randn(1, 2, 2, 3, 3)
    assert torch.allclose(gate(x), 0.5 * x)
    assert build_encoder("s3d_g").out_dim == 1024


def test_divided_space_time_vit():
    """ViT-B/16 with divided attention: 121.26 M parameters + a 400-class head = 121.57 M,
    within 1 % of TimeSformer's 121.4 M; a tiny one keeps T and mixes frames over time."""
    from videorep.methods.bodvcl.encoders import DividedSTViT

    with torch.device("meta"):
        vit_b = DividedSTViT()
    assert abs(_count(vit_b) + 768 * 400 + 400 - 121.4e6) < 0.01 * 121.4e6
    torch.manual_seed(0)
    vit = DividedSTViT(img_size=32, dim=32, depth=2, heads=2, max_frames=4).eval()
    for block in vit.blocks:  # TimeSformer zero-inits temporal_fc; give it weights to test mixing
        torch.nn.init.normal_(block.temporal_fc.weight, std=0.1)
    clips = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out = vit(clips)
        changed = clips.clone()
        changed[:, 2] += 1.0
        out2 = vit(changed)
    assert out.shape == (2, 3, 32)
    assert (out2[:, 0] - out[:, 0]).abs().max() > 1e-3  # frame 0 sees frame 2 (time attention)
    with pytest.raises(VideorepError, match="time embeddings"):
        vit(torch.randn(1, 5, 3, 32, 32))
