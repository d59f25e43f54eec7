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
    "slow_r50",
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


class _SpatialStrideConv3d(nn.Conv3d):
    """3x3x3 convolution that strides in space only (torchvision conv-builder interface)."""

    def __init__(
        self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1
    ) -> None:
        super().__init__(
            in_planes, out_planes, (3, 3, 3), stride=(1, stride, stride), padding=1, bias=False
        )

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return 1, stride, stride


class _SlowStem(nn.Sequential):
    """Slow pathway stem: 1x7x7 conv stride (1, 2, 2), BN, ReLU, 1x3x3 max-pool stride (1, 2, 2)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 64, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )


def slow_r50() -> nn.Module:
    """Slow-R50-style 3D ResNet-50 from torchvision parts (Bottleneck, [3, 4, 6, 3]).

    As in SlowFast's Slow pathway: no temporal downsampling anywhere, 2D (1x3x3) convolutions in
    res2-res3 and temporal (3x3x3) convolutions in res4-res5. Difference to the original: the
    temporal kernel sits in the bottleneck's middle 3x3 conv (torchvision's Bottleneck layout)
    instead of its first 1x1 conv, so the net has ~46M instead of ~32M parameters.
    """
    from torchvision.models.video.resnet import Bottleneck, Conv3DNoTemporal, VideoResNet

    return VideoResNet(
        block=Bottleneck,
        conv_makers=[
            Conv3DNoTemporal,
            Conv3DNoTemporal,
            _SpatialStrideConv3d,
            _SpatialStrideConv3d,
        ],
        layers=[3, 4, 6, 3],
        stem=_SlowStem,
    )


class TorchvisionVideoEncoder(Encoder):
    """torchvision video nets (r3d_18, r2plus1d_18, mc3_18, s3d) and slow_r50, pooled over space."""

    def __init__(self, name: str, keep_time: bool = True) -> None:
        super().__init__()
        from torchvision.models import video as tvv

        if name == "slow_r50":
            net = slow_r50()
            native = 1
        elif name == "s3d":
            net = tvv.s3d(weights=None)
            native = 8
        else:
            net = getattr(tvv, name)(weights=None)
            native = 1 if name == "mc3_18" else 8
        if name == "s3d":
            self.body = net.features
            self.out_dim = 1024
        else:
            self.body = nn.Sequential(net.stem, net.layer1, net.layer2, net.layer3, net.layer4)
            self.out_dim = 2048 if name == "slow_r50" else 512
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
    if name in ("r3d_18", "r2plus1d_18", "mc3_18", "s3d", "slow_r50"):
        return TorchvisionVideoEncoder(name, keep_time=keep_time)
    if name in ("vit_tiny", "vit_small"):
        if img_size % 16:
            raise VideorepError(f"ViT encoders need a frame size divisible by 16, got {img_size}")
        return FrameViTEncoder(name, img_size=img_size)
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
