"""Colour distortion for BOD-VCL clips, one draw per clip shared by all its frames.

The paper (Sec. 3.1): spatial augmentations "consistently apply transformations such as cropping,
color distortion, and random horizontal flipping to each frame in the sampled subset"; it follows
the pre-training procedure of Feichtenhofer et al. 2021 (its ref. [1]), whose colour distortion
is the MoCo v2 / SimCLR one: with probability 0.8 a colour jitter (brightness, contrast,
saturation 0.4, hue 0.1, in random order), then grey-scale with probability 0.2. Crop and flip
are already done per view by :class:`videorep.data.pairs.ClipDataset`; this module adds the colour
part on the batch (so it runs on the training device), with the parameters drawn once per clip.

Inputs are ImageNet-normalised frames (the clip dataset's output); they are un-normalised to
``[0, 1]``, distorted with :mod:`torchvision.transforms.v2.functional`, and normalised again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ColorDistortion:
    """Parameters (MoCo v2 / SimCLR video defaults; see the module docstring)."""

    p_jitter: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p_gray: float = 0.2


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def color_distort(
    clips: Tensor,
    gen: torch.Generator,
    params: ColorDistortion = ColorDistortion(),
    normalized: bool = True,
) -> Tensor:
    """Colour-distort every clip with its own random draw, the same for all its frames.

    Args:
        clips: ImageNet-normalised clips ``[N, T, 3, H, W]``.
        gen: CPU generator the draws come from (seeded per step for exact resume).
        params: jitter strengths and probabilities.
        normalized: inputs (and outputs) are ImageNet-normalised; False: plain ``[0, 1]``.

    Returns:
        ``[N, T, 3, H, W]``, in the input's normalisation, same dtype and device.
    """
    from torchvision.transforms.v2 import functional as F

    shape = (1, 1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=clips.dtype, device=clips.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=clips.dtype, device=clips.device).view(shape)
    if not normalized:
        mean, std = torch.zeros_like(mean), torch.ones_like(std)
    x = (clips * std + mean).clamp(0.0, 1.0)
    out = []
    for clip in x:  # [T, 3, H, W]: one draw per clip
        if float(torch.rand((), generator=gen)) < params.p_jitter:
            for op in torch.randperm(4, generator=gen).tolist():
                if op == 0 and params.brightness > 0:
                    f = _u(gen, 1 - params.brightness, 1 + params.brightness)
                    clip = F.adjust_brightness(clip, f)
                elif op == 1 and params.contrast > 0:
                    clip = F.adjust_contrast(
                        clip, _u(gen, 1 - params.contrast, 1 + params.contrast)
                    )
                elif op == 2 and params.saturation > 0:
                    f = _u(gen, 1 - params.saturation, 1 + params.saturation)
                    clip = F.adjust_saturation(clip, f)
                elif op == 3 and params.hue > 0:
                    clip = F.adjust_hue(clip, _u(gen, -params.hue, params.hue))
        if float(torch.rand((), generator=gen)) < params.p_gray:
            clip = F.rgb_to_grayscale(clip, num_output_channels=3)
        out.append(clip)
    return (torch.stack(out) - mean) / std
