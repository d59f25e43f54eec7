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
