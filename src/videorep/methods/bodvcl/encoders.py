"""Video encoders that return per-frame features ``[B, T, C]`` (BOD-VCL needs ``f(x_t)`` per frame).

Every encoder takes clips ``[N, T, 3, H, W]`` (frames first, the layout of the clip dataset) and
returns ``[N, T', C]`` features pooled over space only (BOD-VCL, App. "Temporal distinctiveness":
"global average pooling over spatial dimensions while preserving the temporal dimension").

Temporal resolution. r3d_18 and s3d halve time several times (T/8). With ``keep_time=True``
(default) every temporal stride of the 3D CNNs is set to 1 (and a temporal pooling kernel that
would then shrink the clip is set to 1), so ``T' == T``: one feature per input frame, as the
Koopman estimate of Eq. 18 needs. With ``keep_time=False`` the nets are left as torchvision
builds them and ``T'`` is their native temporal resolution (``ceil(T / 8)`` for r3d_18, s3d and
r2plus1d_18; mc3_18 and slow_r50 never downsample time); the Koopman module needs ``T' >= 2``.
``Encoder.temporal_stride`` reports the factor.

All networks are built without pretrained weights (no network access here).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from videorep.errors import VideorepError

ENCODERS = (
    "r3d_18",
    "r2plus1d_18",
    "mc3_18",
    "s3d",
    "s3d_g",
    "slow_r50",
    "vit_b_divided",
    "vit_tiny",
    "vit_small",
    "tiny3d",
)


class Encoder(nn.Module):
    """Base: ``forward(clips [N, T, 3, H, W]) -> [N, T', out_dim]``."""

    out_dim: int
    temporal_stride: int = 1

    def _check(self, clips: Tensor) -> None:
        if clips.ndim != 5 or clips.shape[2] != 3:
            raise VideorepError(
                f"encoder input must be clips [N, T, 3, H, W], got {tuple(clips.shape)}"
            )


def _remove_temporal_stride(net: nn.Module) -> None:
    """Set every temporal stride to 1 so that the output keeps one step per input frame."""
    for mod in net.modules():
        if isinstance(mod, nn.Conv3d) and mod.stride[0] != 1:
            mod.stride = (1, *mod.stride[1:])
        elif isinstance(mod, (nn.MaxPool3d, nn.AvgPool3d)):
            k = _triple(mod.kernel_size)
            s = _triple(mod.stride)
            p = _triple(mod.padding)
            if s[0] != 1:
                if k[0] != 2 * p[0] + 1:  # would no longer preserve T with stride 1
                    k, p = (1, *k[1:]), (0, *p[1:])
                mod.kernel_size, mod.stride, mod.padding = k, (1, *s[1:]), p


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


class _SlowBottleneck(nn.Module):
    """Bottleneck of the Slow pathway: ``Tx1x1`` (T = 3 in res4-res5, else 1) -> ``1x3x3``
    (spatial stride here) -> ``1x1x1``, BatchNorm + ReLU after each, identity or a projection
    shortcut (``1x1x1`` conv with the spatial stride + BN); ``[N, C, T, H, W]``."""

    def __init__(self, cin: int, inner: int, cout: int, stride: int, temporal: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(
            cin, inner, (temporal, 1, 1), padding=(temporal // 2, 0, 0), bias=False
        )
        self.norm_a = nn.BatchNorm3d(inner)
        self.conv_b = nn.Conv3d(
            inner, inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.norm_b = nn.BatchNorm3d(inner)
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(cout),
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.norm_a(self.conv_a(x)))
        y = self.relu(self.norm_b(self.conv_b(y)))
        y = self.norm_c(self.conv_c(y))
        return self.relu(y + (x if self.shortcut is None else self.shortcut(x)))


def slow_r50() -> nn.Module:
    """The Slow pathway of SlowFast, ResNet-50 depth ("Slow-R50", the paper's default, ref. [68]).

    Built from torch modules after Table 1 of *SlowFast Networks for Video Recognition*
    (Feichtenhofer et al., ICCV 2019), Slow pathway, as in pytorchvideo's ``create_resnet``
    (``pytorchvideo.models.resnet``, model ``slow_r50``): stem ``1x7x7`` conv, 64, stride
    ``(1, 2, 2)`` + ``1x3x3`` max-pool stride ``(1, 2, 2)``; res2-res5 with ``[3, 4, 6, 3]``
    bottlenecks of widths 64/128/256/512 (x4 out), temporal kernel 3 in the *first* (``1x1``)
    conv of the res4 and res5 bottlenecks only (1 in res2-res3), spatial stride 2 in the ``3x3``
    conv of the first block of res3-res5, no temporal stride or pooling anywhere. Without the
    classifier: 31.64 M parameters; with pytorchvideo's 400-class head (``2048 x 400 + 400``)
    32.45 M, the number in pytorchvideo's model zoo (``tests/methods/bodvcl/test_bodvcl_encoders.py``
    checks it). Output ``[N, 2048, T, H/32, W/32]``.
    """
    stem = nn.Sequential(
        nn.Conv3d(3, 64, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
    )
    stages: list[nn.Module] = [stem]
    cin = 64
    for inner, depth, stride, temporal in (
        (64, 3, 1, 1),
        (128, 4, 2, 1),
        (256, 6, 2, 3),
        (512, 3, 2, 3),
    ):
        blocks = []
        for i in range(depth):
            blocks.append(_SlowBottleneck(cin, inner, 4 * inner, stride if i == 0 else 1, temporal))
            cin = 4 * inner
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages)


class SelfGating(nn.Module):
    """S3D-G feature gating (Xie et al., *Rethinking Spatiotemporal Feature Learning*, ECCV 2018,
    Eq. 1 / the ``self_gating`` of its reference ``s3dg.py``): ``y = sigmoid(W pool(x) + b) * x``
    with ``pool`` the space-time average, one weight per channel pair; ``[N, C, T, H, W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        w = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * w[:, :, None, None, None]


def s3d_g() -> nn.Module:
    """S3D-G: torchvision's S3D (``torchvision.models.video.s3d``, which has no gating) with the
    S3D-G self-gating added by composition where the reference ``s3dg.py`` puts it: after the
    ``Conv2d_2c_3x3`` separable conv (``features[3]``) and on the output of every branch of every
    separable Inception block (``gating_startat='Conv2d_2c_3x3'``). Returns the feature stack
    (``[N, 1024, T/8, H/32, W/32]``).
    """
    from torchvision.models.video import s3d
    from torchvision.models.video.s3d import SepInceptionBlock3D

    features = s3d(weights=None).features
    features[3] = nn.Sequential(features[3], SelfGating(192))
    for block in features:
        if isinstance(block, SepInceptionBlock3D):
            for name in ("branch0", "branch1", "branch2", "branch3"):
                branch = getattr(block, name)
                out = [m for m in branch.modules() if isinstance(m, nn.BatchNorm3d)][-1]
                setattr(block, name, nn.Sequential(branch, SelfGating(out.num_features)))
    return features


class TorchvisionVideoEncoder(Encoder):
    """3D CNNs (r3d_18, r2plus1d_18, mc3_18, s3d, s3d_g from torchvision; slow_r50 above), pooled
    over space."""

    def __init__(self, name: str, keep_time: bool = True) -> None:
        super().__init__()
        from torchvision.models import video as tvv

        if name == "slow_r50":
            self.body = slow_r50()
            self.out_dim, native = 2048, 1
        elif name in ("s3d", "s3d_g"):
            self.body = s3d_g() if name == "s3d_g" else tvv.s3d(weights=None).features
            self.out_dim, native = 1024, 8
        else:
            net = getattr(tvv, name)(weights=None)
            self.body = nn.Sequential(net.stem, net.layer1, net.layer2, net.layer3, net.layer4)
            self.out_dim, native = 512, (1 if name == "mc3_18" else 8)
        if keep_time:
            _remove_temporal_stride(self.body)
            native = 1
        self.temporal_stride = native
        self.name = name

    def forward(self, clips: Tensor) -> Tensor:
        """``[N, T, 3, H, W] -> [N, T', C]`` (space average-pooled, time kept)."""
        self._check(clips)
        x = self.body(clips.transpose(1, 2))  # [N, C, T', h, w]
        return x.mean(dim=(-1, -2)).transpose(1, 2)


class FrameViTEncoder(Encoder):
    """A timm ViT applied to every frame; patch tokens (after the final norm) are averaged.

    ``vit_tiny`` = ``vit_tiny_patch16_224`` (192-d), ``vit_small`` = ``vit_small_patch16_224``
    (384-d), both randomly initialised, ``img_size`` set to the clip resolution.
    """

    def __init__(self, name: str, img_size: int = 224) -> None:
        super().__init__()
        import timm

        arch = {"vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224"}[name]
        self.vit = timm.create_model(arch, pretrained=False, num_classes=0, img_size=img_size)
        self.out_dim = int(self.vit.num_features)
        self.n_prefix = int(getattr(self.vit, "num_prefix_tokens", 1))

    def forward(self, clips: Tensor) -> Tensor:
        """``[N, T, 3, H, W] -> [N, T, C]`` (mean of patch tokens per frame)."""
        self._check(clips)
        n, t = clips.shape[:2]
        tokens = self.vit.forward_features(clips.flatten(0, 1))  # [N*T, P, C]
        return tokens[:, self.n_prefix :].mean(dim=1).view(n, t, -1)


class DividedSpaceTimeBlock(nn.Module):
    """TimeSformer's divided space-time block (Bertasius et al., *Is Space-Time Attention All You
    Need for Video Understanding?*, ICML 2021, Fig. 1 "Divided Space-Time"), composed of timm's
    ``Attention`` and ``Mlp``: temporal attention among the tokens of one patch position across
    frames (+ a linear ``temporal_fc``, zero-initialised as in TimeSformer), then spatial attention
    among the tokens of one frame with the class token, then the MLP; pre-norm residuals.

    ``forward(x [N, 1 + T*P, D], t) -> [N, 1 + T*P, D]`` (tokens frame-major after the class token).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        from timm.layers import Mlp
        from timm.models.vision_transformer import Attention

        self.norm_t = nn.LayerNorm(dim, eps=1e-6)
        self.attn_t = Attention(dim, heads, qkv_bias=True)
        self.temporal_fc = nn.Linear(dim, dim)
        nn.init.zeros_(self.temporal_fc.weight)
        nn.init.zeros_(self.temporal_fc.bias)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, t: int) -> Tensor:
        cls, tok = x[:, :1], x[:, 1:]
        n, tp, d = tok.shape
        p = tp // t
        xt = tok.reshape(n, t, p, d).transpose(1, 2).reshape(n * p, t, d)  # [N*P, T, D]
        res = self.temporal_fc(self.attn_t(self.norm_t(xt)))
        tok = tok + res.reshape(n, p, t, d).transpose(1, 2).reshape(n, tp, d)
        xs = torch.cat([cls.repeat_interleave(t, dim=0), tok.reshape(n * t, p, d)], dim=1)
        ys = self.attn(self.norm1(xs))  # [N*T, 1 + P, D]
        cls = cls + ys[:, :1].reshape(n, t, d).mean(dim=1, keepdim=True)
        x = torch.cat([cls, tok + ys[:, 1:].reshape(n, tp, d)], dim=1)
        return x + self.mlp(self.norm2(x))


class DividedSTViT(Encoder):
    """Video ViT with divided space-time attention (TimeSformer-style; ``vit_b_divided`` =
    ViT-B/16: width 768, depth 12, 12 heads), built from timm pieces (``PatchEmbed`` per frame,
    :class:`DividedSpaceTimeBlock`), randomly initialised (trunc-normal 0.02 embeddings).
    Per-frame output: the final-norm patch tokens of each frame averaged, ``[N, T, D]``.

    ViT-B divided has 121.3 M parameters (TimeSformer's 121.4 M includes its 400-class head); the
    paper's ViT-B rows list 87 M, the count of a joint-attention ViT-B (VideoMAE-style), so the
    paper's ViT-B may have been joint attention; the issue asked for divided attention.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch: int = 16,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        max_frames: int = 16,
    ) -> None:
        super().__init__()
        from timm.layers import PatchEmbed

        self.patch_embed = PatchEmbed(img_size, patch, 3, dim)
        n_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n_patches, dim))
        self.time_embed = nn.Parameter(torch.zeros(1, max_frames, dim))
        for param in (self.cls_token, self.pos_embed, self.time_embed):
            nn.init.trunc_normal_(param, std=0.02)
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_dim = dim
        self.max_frames = max_frames

    def forward(self, clips: Tensor) -> Tensor:
        """``[N, T, 3, H, W] -> [N, T, D]``."""
        self._check(clips)
        n, t = clips.shape[:2]
        if t > self.max_frames:
            raise VideorepError(
                f"clip of {t} frames; this ViT has {self.max_frames} time embeddings"
            )
        tok = self.patch_embed(clips.flatten(0, 1)) + self.pos_embed[:, 1:]  # [N*T, P, D]
        p, d = tok.shape[1:]
        tok = tok.view(n, t, p, d) + self.time_embed[:, :t, None]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1)
        x = torch.cat([cls, tok.reshape(n, t * p, d)], dim=1)
        for block in self.blocks:
            x = block(x, t)
        x = self.norm(x)
        return x[:, 1:].reshape(n, t, p, d).mean(dim=2)


class Tiny3DEncoder(Encoder):
    """A small 3D CNN (3 conv blocks, no temporal stride) for tests and CPU experiments.

    The convolutions have no bias: the BatchNorm after each removes it, its gradient is zero
    up to rounding, and Adam would turn that rounding noise into steps of size ``lr``.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv3d(3, w, (3, 3, 3), stride=(1, 2, 2), padding=1),
            nn.BatchNorm3d(w),
            nn.ReLU(inplace=True),
            nn.Conv3d(w, 2 * w, (3, 3, 3), stride=(1, 2, 2), padding=1),
            nn.BatchNorm3d(2 * w),
            nn.ReLU(inplace=True),
            nn.Conv3d(2 * w, 2 * w, (3, 3, 3), stride=(1, 2, 2), padding=1),
            nn.BatchNorm3d(2 * w),
            nn.ReLU(inplace=True),
        )
        for conv in self.body[::3]:  # drawn, then dropped: the seeded weights stay as before
            conv.bias = None
        self.out_dim = 2 * w

    def forward(self, clips: Tensor) -> Tensor:
        self._check(clips)
        return self.body(clips.transpose(1, 2)).mean(dim=(-1, -2)).transpose(1, 2)


def build_encoder(name: str, keep_time: bool = True, img_size: int = 224) -> Encoder:
    """Build a per-frame video encoder by name (one of :data:`ENCODERS`), without weights.

    Args:
        name: encoder name.
        keep_time: remove temporal strides of the 3D CNNs (see module docstring).
        img_size: frame size for the ViT encoders (must be a multiple of 16).
    """
    if name in ("r3d_18", "r2plus1d_18", "mc3_18", "s3d", "s3d_g", "slow_r50"):
        return TorchvisionVideoEncoder(name, keep_time=keep_time)
    if name in ("vit_tiny", "vit_small"):
        if img_size % 16:
            raise VideorepError(f"ViT encoders need a frame size divisible by 16, got {img_size}")
        return FrameViTEncoder(name, img_size=img_size)
    if name == "vit_b_divided":
        if img_size % 16:
            raise VideorepError(f"ViT encoders need a frame size divisible by 16, got {img_size}")
        return DividedSTViT(img_size=img_size)
    if name == "tiny3d":
        return Tiny3DEncoder()
    raise VideorepError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")


@torch.no_grad()
def output_length(encoder: Encoder, frames: int, size: int = 64) -> int:
    """Number of temporal steps ``T'`` the encoder returns for ``frames`` input frames."""
    was = encoder.training
    encoder.eval()
    out = encoder(torch.zeros(1, frames, 3, size, size))
    encoder.train(was)
    return int(out.shape[1])
