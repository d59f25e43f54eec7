"""The authors' training options: per-family head init, the squash-then-crop, input statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from videorep.backbones import load_encoder
from videorep.backbones.encoder import ImageEncoder
from videorep.backbones.registry import CLIP_MEAN, CLIP_STD
from videorep.data.pairs import augment, crop_params, make_generator
from videorep.errors import VideorepError
from videorep.methods.cosettle import CoSettleConfig
from videorep.methods.cosettle.config import CoSettleDataConfig
from videorep.methods.cosettle.heads import ProjectionHead, resolve_init
from videorep.methods.cosettle.method import CoSettle

D = 768


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: small ops only lose to thread synchronisation on a busy host."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _weight(init: str) -> torch.Tensor:
    torch.manual_seed(0)
    head = ProjectionHead(D, "linear", init)
    return head.net[0].weight.detach(), head.net[0].bias.detach()


def test_xavier_uniform_statistics():
    """MAE / MoCo v3: U(-a, a), a = sqrt(6 / (768 + 768)) = 0.0625, std a / sqrt(3) = 0.0361."""
    w, b = _weight("xavier_uniform")
    bound = math.sqrt(6 / (2 * D))
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    assert torch.count_nonzero(b) == 0


def test_torch_default_statistics():
    """CLIP: nn.Linear's own init, U(-1/sqrt(768), 1/sqrt(768)) = +-0.0361 for weights and bias."""
    w, b = _weight("torch_default")
    bound = 1 / math.sqrt(D)
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.01)  # 0.0208
    assert b.abs().max() <= bound and b.std().item() == pytest.approx(0.0208, rel=0.15)


def test_trunc_normal_and_identity_statistics():
    w, b = _weight("trunc_normal")
    assert w.std().item() == pytest.approx(0.02, rel=0.01) and torch.count_nonzero(b) == 0
    w, b = _weight("identity")
    assert torch.equal(w, 0.05 * torch.eye(D)) and torch.count_nonzero(b) == 0


def test_auto_init_follows_the_family():
    assert resolve_init("auto", "mae") == "xavier_uniform"
    assert resolve_init("auto", "mocov3") == "xavier_uniform"
    assert resolve_init("auto", "clip") == "torch_default"
    for family in ("dino", "dinov2", "ibot", "blip", "ijepa", None):
        assert resolve_init("auto", family) == "trunc_normal"
    assert resolve_init("identity", "mae") == "identity"
    with pytest.raises(VideorepError, match="'auto' is resolved"):
        ProjectionHead(8, "linear", "auto")


def test_method_resolves_auto_from_the_encoder_name():
    vit = load_encoder("random_vit_tiny16").vit
    mae = ImageEncoder(vit, name="mae_vitb16")
    method = CoSettle(mae, CoSettleConfig(backbone="mae_vitb16"))
    assert method.head.init == "xavier_uniform"
    assert CoSettle(mae, CoSettleConfig(head_init="identity")).head.init == "identity"
    method = CoSettle(ImageEncoder(vit, name="clip_vitb16"), CoSettleConfig())
    assert method.head.init == "torch_default"


def test_input_norm_authors_feeds_imagenet_statistics_to_clip():
    vit = load_encoder("random_vit_tiny16").vit
    x = torch.randn(1, 3, 32, 32)
    plain = ImageEncoder(vit, name="plain")(x)
    clip = ImageEncoder(vit, name="clip_vitb16", mean=CLIP_MEAN, std=CLIP_STD)
    renormalised = clip(x)
    assert not torch.allclose(renormalised, plain)
    CoSettle(clip, CoSettleConfig(encoder_dtype="fp32"))  # default input_norm="authors"
    assert clip.family_norm is False and torch.equal(clip(x), plain)
    CoSettle(clip, CoSettleConfig(input_norm="family", encoder_dtype="fp32"))
    assert clip.family_norm is True and torch.equal(clip(x), renormalised)


def _fit_probability(scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), n=4000) -> float:
    """P(a single crop draw fits a square): area fraction s, log-uniform ratio r,
    fits iff s * r <= 1 and s / r <= 1 (numerical integration over log r)."""
    logs = np.linspace(math.log(ratio[0]), math.log(ratio[1]), n)
    r = np.exp(logs)
    s_max = np.minimum(1 / r, r)
    p = np.clip((s_max - scale[0]) / (scale[1] - scale[0]), 0, 1)
    return float(p.mean())


def test_single_try_crop_on_a_square_falls_back_to_the_whole_frame():
    # closed form: log r ~ U(-a, a), a = ln(4/3); P(fit | r) = 2 exp(-|log r|) - 1, so
    # P(fit) = 2 (1 - 3/4) / a - 1 = 0.7380
    p_fit = _fit_probability()
    assert p_fit == pytest.approx(0.5 / math.log(4 / 3) - 1, abs=1e-3)
    fits = 0
    n = 1500
    for seed in range(n):
        top, left, h, w = crop_params(224, 224, (0.5, 1.0), (3 / 4, 4 / 3), make_generator(seed), 1)
        if (h, w) == (224, 224):
            assert (top, left) == (0, 0)
        else:
            fits += 1
            assert 0.5 * 224 * 224 * 0.98 <= h * w <= 224 * 224  # the area draw (rounding)
            assert 0.74 <= w / h <= 1.35
    sigma = math.sqrt(p_fit * (1 - p_fit) / n)
    assert abs(fits / n - p_fit) < 4 * sigma


def test_authors_crop_squashes_first():
    """A 480x854 frame, left third black: squashed to 224x224 the black part stays a third of
    the width (aspect ratio not kept); the output is 224x224 whatever the draw."""
    frame = np.full((480, 854, 3), 255, np.uint8)
    frame[:, : 854 // 3] = 0
    outs, fallbacks = [], 0
    for seed in range(16):
        gen = make_generator(seed)
        out = augment([frame, frame], gen, 224, squash=224, tries=1, flip=False)
        assert out.shape == (2, 3, 224, 224)
        outs.append(out)
        gen = make_generator(seed)
        box = crop_params(224, 224, (0.5, 1.0), (3 / 4, 4 / 3), gen, 1)
        if box == (0, 0, 224, 224):  # the fallback: the whole squashed frame
            fallbacks += 1
            dark = (out[0, 0] < 0).float().mean(0)  # per column, normalised black < 0
            assert dark[:74].min() == 1 and dark[76:].max() == 0  # 224 / 3 = 74.7
    assert fallbacks >= 1  # seeds 0-15 include draws that do not fit (26% each)


def test_crop_setting_is_validated():
    assert CoSettleDataConfig(paths=["x"]).crop == "authors"
    with pytest.raises(VideorepError, match="--crop 'square'"):
        CoSettleDataConfig(paths=["x"], crop="square").validate()
