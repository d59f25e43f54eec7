"""Static/dynamic probe protocol (BOD-VCL paper, Sec. 3.2) and the linear probe (Eq. 5-7)."""

import numpy as np
import pytest
import torch

from videorep.errors import VideorepError
from videorep.methods.bodvcl.encoders import build_encoder
from videorep.methods.bodvcl.probe import (
    dynamic_clip,
    linear_probe,
    static_clip,
    static_dynamic_probe,
)


def _textured(h=48, w=48, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.random((h // 4, w // 4)).astype(np.float32)
    return torch.from_numpy(np.kron(img, np.ones((4, 4), dtype=np.float32)))


def test_static_clip_repeats_one_frame():
    clip = torch.rand(6, 3, 8, 8)
    s = static_clip(clip, index=2)
    assert s.shape == clip.shape and all(torch.equal(s[t], clip[2]) for t in range(6))
    with pytest.raises(VideorepError):
        static_clip(clip, index=9)


def test_dynamic_clip_follows_the_motion_and_drops_appearance():
    tex = _textured()
    shift = 2  # pixels per frame to the right
    clip = torch.stack([torch.roll(tex, shifts=shift * t, dims=1) for t in range(4)])
    clip = clip[:, None].expand(-1, 3, -1, -1).contiguous()
    dyn = dynamic_clip(clip, seed=3)
    assert dyn.shape == clip.shape
    # frame 0 is noise, unrelated to the texture
    assert abs(np.corrcoef(dyn[0, 0].flatten(), clip[0, 0].flatten())[0, 1]) < 0.1
    # the noise moves with the content: frame t ~ frame 0 shifted by 2t (inside the border)
    inner = (slice(8, -8), slice(12, -12))
    for t in (1, 2, 3):
        moved = torch.roll(dyn[0, 0], shifts=shift * t, dims=1)[inner].flatten()
        corr = np.corrcoef(dyn[t, 0][inner].flatten(), moved)[0, 1]
        still = np.corrcoef(dyn[t, 0][inner].flatten(), dyn[0, 0][inner].flatten())[0, 1]
        assert corr > 0.8 and corr > still + 0.3, (t, corr, still)


def test_linear_probe_topk():
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(8, 5, generator=g)
    y = torch.arange(8).repeat(40)
    x = centres[y] + torch.randn(len(y), 5, generator=g)
    yt = torch.arange(8).repeat(20)
    xt = centres[yt] + torch.randn(len(yt), 5, generator=g)
    acc = linear_probe(x, y, xt, yt)
    assert acc["top1"] > 0.9 and acc["top5"] >= acc["top1"] and acc["top5"] > 0.99
    noise = linear_probe(torch.randn(320, 5, generator=g), y, torch.randn(160, 5, generator=g), yt)
    assert noise["top1"] < 0.3  # chance is 1/8


def test_static_dynamic_probe_runs_on_an_encoder():
    torch.manual_seed(0)
    enc = build_encoder("tiny3d").eval()
    g = torch.Generator().manual_seed(1)
    clips = torch.rand(8, 4, 3, 16, 16, generator=g)
    labels = torch.arange(2).repeat(4)
    out = static_dynamic_probe(enc, clips, labels, clips, labels)
    assert set(out) == {"static", "dynamic"}
    for v in out.values():
        assert 0.0 <= v["top1"] <= 1.0 and v["top5"] == 1.0  # 2 classes: top-5 is trivial
