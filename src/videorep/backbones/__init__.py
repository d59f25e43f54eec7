"""Frozen image encoders: one timm ViT path, a registry of backbones and checkpoint converters."""

from videorep.backbones.encoder import ImageEncoder
from videorep.backbones.loading import load_encoder, read_checkpoint
from videorep.backbones.pos import interpolate_pos_grid, make_pea_fn, pea, rope_coordinate_grid
from videorep.backbones.registry import BACKBONES, BackboneSpec, get_spec

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "ImageEncoder",
    "get_spec",
    "interpolate_pos_grid",
    "load_encoder",
    "make_pea_fn",
    "pea",
    "read_checkpoint",
    "rope_coordinate_grid",
]
