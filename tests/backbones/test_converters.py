"""Checkpoint converters: every family's released key layout round-trips into the timm ViT.

Each test writes a synthetic checkpoint in the family's own layout (random tensors of the right
shapes, derived from the timm model of the registry entry), loads it through ``load_encoder`` and
checks that every timm parameter received exactly the intended source tensor and that
``Converted.ignored`` is exactly the set of keys the family deliberately drops.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import pytest
import torch

from videorep.backbones import load_encoder, read_checkpoint
from videorep.backbones.converters import CONVERTERS, Converted
from videorep.backbones.loading import _build_vit
from videorep.backbones.registry import BACKBONES
from videorep.errors import VideorepError

_BUF = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0))


def fake(shape: tuple[int, ...] | torch.Size, tag: int) -> torch.Tensor:
    """A pseudo-random tensor: a view of one shared random buffer at an offset set by ``tag``.

    Views cost nothing to make and ``torch.save`` writes the shared buffer once, so even ViT-B
    checkpoints stay small on disk; different tags give different values.
    """
    n = 1
    for s in shape:
        n *= int(s)
    start = (tag * 7919) % (_BUF.numel() - n)
    return _BUF[start : start + n].view(tuple(shape))


@functools.cache
def timm_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the registry entry's timm ViT (built on the meta device: no init)."""
    with torch.device("meta"):
        vit = _build_vit(BACKBONES[name])
    return {k: tuple(v.shape) for k, v in vit.state_dict().items()}


def timm_ref(name: str, tag: int = 1) -> dict[str, torch.Tensor]:
    """Random timm-keyed weights for the registry entry ``name``."""
    return {k: fake(s, tag * 1000 + i) for i, (k, s) in enumerate(timm_shapes(name).items())}


def _depth(ref: dict[str, torch.Tensor]) -> int:
    return 1 + max(int(k.split(".")[1]) for k in ref if k.startswith("blocks."))


def roundtrip(
    name: str, ckpt: object, expected: dict[str, torch.Tensor], ignored: list[str], path: Path
) -> tuple[Converted, torch.nn.Module]:
    """Save ``ckpt``, convert it, load it by name; check keys, ignored keys and every tensor."""
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.clone() for k, v in ckpt.items()}, str(path))  # no shared storage
    else:
        torch.save(ckpt, path)
    spec = BACKBONES[name]
    converted = CONVERTERS[spec.family](ckpt)  # in memory: the file is read once, below
    assert sorted(converted.ignored) == sorted(ignored)
    assert len(converted.ignored) == len(set(converted.ignored))
    assert set(converted.state_dict) == set(expected)
    encoder = load_encoder(name, checkpoint=path)
    loaded = encoder.vit.state_dict()
    assert set(loaded) == set(expected)
    wrong = [k for k, v in expected.items() if not torch.equal(loaded[k], v)]
    assert not wrong, f"tensors not round-tripped: {wrong[:5]}"
    return converted, encoder


def _head(prefix: str, tag: int) -> dict[str, torch.Tensor]:
    """A DINO-style projection head (small sizes: only the key names matter)."""
    shapes = {
        "mlp.0.weight": (64, 768),
        "mlp.0.bias": (64,),
        "mlp.2.weight": (64, 64),
        "mlp.2.bias": (64,),
        "mlp.4.weight": (32, 64),
        "mlp.4.bias": (32,),
        "last_layer.weight_g": (100, 1),
        "last_layer.weight_v": (100, 32),
    }
    return {f"{prefix}{k}": fake(s, tag + i) for i, (k, s) in enumerate(shapes.items())}


# --- DINO / iBOT -------------------------------------------------------------------------------


def test_dino_vitb16_full_checkpoint_takes_teacher_backbone(tmp_path):
    ref = timm_ref("dino_vitb16")
    head = _head("head.", 50_000)
    teacher = {f"backbone.{k}": v for k, v in ref.items()} | head
    student = {  # DDP-wrapped online network, other values: must not be picked
        "module.backbone.cls_token": fake(ref["cls_token"].shape, 7),
        "module.backbone.pos_embed": fake(ref["pos_embed"].shape, 8),
        "module.backbone.blocks.0.attn.qkv.weight": fake((2304, 768), 9),
    } | _head("module.head.", 60_000)
    ckpt = {
        "student": student,
        "teacher": teacher,
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 400,
        "args": argparse.Namespace(arch="vit_base", patch_size=16),
        "dino_loss": {"center": torch.zeros(1, 100)},
    }
    _, encoder = roundtrip("dino_vitb16", ckpt, ref, sorted(head), tmp_path / "full.pth")
    assert encoder.pos_interpolation == "bicubic_offset"


def test_dino_vits8_pretrain(tmp_path):
    ref = timm_ref("dino_vits8")
    assert ref["pos_embed"].shape == (1, 1 + 28 * 28, 384)
    _, encoder = roundtrip("dino_vits8", dict(ref), ref, [], tmp_path / "s8.pth")
    assert encoder.patch_size == 8 and encoder.stored_grid == (28, 28)


def test_ibot_teacher_checkpoint(tmp_path):
    ref = timm_ref("ibot_vitb16")
    # checkpoint_teacher.pth: {"state_dict": backbone keys}, loaded strictly by iBOT's vit_base
    roundtrip("ibot_vitb16", {"state_dict": ref}, ref, [], tmp_path / "checkpoint_teacher.pth")


# --- DINOv2 ------------------------------------------------------------------------------------


def test_dinov2_original_layout(tmp_path):
    ref = timm_ref("dinov2_vits14")
    ckpt = dict(ref) | {"mask_token": fake((1, 384), 3)}
    roundtrip("dinov2_vits14", ckpt, ref, ["mask_token"], tmp_path / "dinov2_vits14_pretrain.pth")


def test_dinov2_registers_original_layout(tmp_path):
    ref = timm_ref("dinov2_vits14_reg")
    cls_pos = fake((1, 1, 384), 11)
    ckpt = {k: v for k, v in ref.items() if k not in ("reg_token", "pos_embed")}
    ckpt |= {
        "register_tokens": ref["reg_token"],
        "pos_embed": torch.cat([cls_pos, ref["pos_embed"]], dim=1),  # [1, 1 + 37*37, 384]
        "mask_token": fake((1, 384), 12),
    }
    expected = dict(ref) | {"cls_token": ckpt["cls_token"] + cls_pos}  # CLS position folded in
    _, encoder = roundtrip("dinov2_vits14_reg", ckpt, expected, ["mask_token"], tmp_path / "r.pth")
    assert encoder.num_prefix_tokens == 5 and encoder.vit.no_embed_class


def hf_layout(ref: dict[str, torch.Tensor], registers: torch.Tensor | None = None) -> dict:
    """timm DINOv2 weights written in Hugging Face ``Dinov2Model`` naming."""
    d = ref["cls_token"].shape[-1]
    pos = ref["pos_embed"]
    sd = {
        "embeddings.cls_token": ref["cls_token"],
        "embeddings.mask_token": fake((1, d), 13),
        "embeddings.position_embeddings": pos,
        "embeddings.patch_embeddings.projection.weight": ref["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": ref["patch_embed.proj.bias"],
        "layernorm.weight": ref["norm.weight"],
        "layernorm.bias": ref["norm.bias"],
    }
    if registers is not None:
        sd["embeddings.register_tokens"] = registers
    for i in range(_depth(ref)):
        b, layer = f"blocks.{i}.", f"encoder.layer.{i}."
        for part in ("weight", "bias"):
            q, k, v = ref[f"{b}attn.qkv.{part}"].chunk(3, dim=0)
            sd[f"{layer}attention.attention.query.{part}"] = q.clone()
            sd[f"{layer}attention.attention.key.{part}"] = k.clone()
            sd[f"{layer}attention.attention.value.{part}"] = v.clone()
            sd[f"{layer}attention.output.dense.{part}"] = ref[f"{b}attn.proj.{part}"]
            for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                sd[f"{layer}{n}.{part}"] = ref[f"{b}{n}.{part}"]
        sd[f"{layer}layer_scale1.lambda1"] = ref[f"{b}ls1.gamma"]
        sd[f"{layer}layer_scale2.lambda1"] = ref[f"{b}ls2.gamma"]
    return sd


def test_dinov2_hugging_face_layout(tmp_path):
    ref = timm_ref("dinov2_vits14_imgfocus")
    hf = hf_layout(ref)
    path = tmp_path / "model.safetensors"  # HF ships safetensors
    _, encoder = roundtrip("dinov2_vits14_imgfocus", hf, ref, ["embeddings.mask_token"], path)
    qkv = encoder.vit.blocks[3].attn.qkv
    # fused in q, k, v order (timm's split order), whatever order the source stored them in
    assert torch.equal(qkv.weight[:384], hf["encoder.layer.3.attention.attention.query.weight"])
    assert torch.equal(qkv.weight[384:768], hf["encoder.layer.3.attention.attention.key.weight"])
    assert torch.equal(qkv.bias[768:], hf["encoder.layer.3.attention.attention.value.bias"])
    assert torch.equal(encoder.vit.blocks[3].ls2.gamma, hf["encoder.layer.3.layer_scale2.lambda1"])
    # the same file through the original-layout family (its converter detects HF naming)
    encoder2 = load_encoder("dinov2_vits14", checkpoint=path)
    assert torch.equal(encoder2.vit.blocks[3].attn.qkv.weight, qkv.weight)


def test_dinov2_hugging_face_registers_with_prefix(tmp_path):
    ref = timm_ref("dinov2_vits14_reg")
    cls_pos = fake((1, 1, 384), 21)
    hf_ref = dict(ref) | {"pos_embed": torch.cat([cls_pos, ref["pos_embed"]], dim=1)}
    hf = {f"dinov2.{k}": v for k, v in hf_layout(hf_ref, registers=ref["reg_token"]).items()}
    expected = dict(ref) | {"cls_token": ref["cls_token"] + cls_pos}
    roundtrip("dinov2_vits14_reg", hf, expected, ["embeddings.mask_token"], tmp_path / "hf.pth")


# --- MAE, MoCo v3, I-JEPA, BLIP, CLIP -------------------------------------------------------------


def test_mae_full_checkpoint_drops_decoder(tmp_path):
    ref = timm_ref("mae_vitb16")
    decoder = {
        "mask_token": fake((1, 1, 512), 31),
        "decoder_embed.weight": fake((512, 768), 32),
        "decoder_embed.bias": fake((512,), 33),
        "decoder_pos_embed": fake((1, 197, 512), 34),
        "decoder_blocks.0.norm1.weight": fake((512,), 35),
        "decoder_blocks.0.attn.qkv.weight": fake((1536, 512), 36),
        "decoder_blocks.0.mlp.fc2.bias": fake((512,), 37),
        "decoder_norm.weight": fake((512,), 38),
        "decoder_pred.weight": fake((768, 512), 39),
        "decoder_pred.bias": fake((768,), 40),
    }
    ckpt = {
        "model": dict(ref) | decoder,
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 799,
        "scaler": {"scale": 65536.0},
        "args": argparse.Namespace(model="mae_vit_base_patch16"),
    }
    roundtrip("mae_vitb16", ckpt, ref, sorted(decoder), tmp_path / "mae_visualize_vit_base.pth")


def _bn(prefix: str, n: int, tag: int, affine: bool = True) -> dict[str, torch.Tensor]:
    out = {f"{prefix}running_mean": fake((n,), tag), f"{prefix}running_var": fake((n,), tag + 1)}
    out[f"{prefix}num_batches_tracked"] = torch.tensor(1000)
    if affine:
        out |= {f"{prefix}weight": fake((n,), tag + 2), f"{prefix}bias": fake((n,), tag + 3)}
    return out


@pytest.mark.parametrize(
    ("name", "chosen", "other"),
    [
        ("mocov3_vitb16", "momentum_encoder", "base_encoder"),  # the EMA copy (the spec)
        ("mocov3_vitb16_base", "base_encoder", "momentum_encoder"),  # MoCo v3's lincls choice
    ],
)
def test_mocov3_takes_the_chosen_encoder(tmp_path, name, chosen, other):
    ref = timm_ref(name)
    full = {f"module.{chosen}.{k}": v for k, v in ref.items()}
    head = {
        f"module.{chosen}.head.0.weight": fake((64, 768), 41),
        **_bn(f"module.{chosen}.head.1.", 64, 42),
        f"module.{chosen}.head.3.weight": fake((32, 64), 46),
        **_bn(f"module.{chosen}.head.4.", 32, 47, affine=False),
    }
    copy = {  # the other encoder: other values, must not be picked
        f"module.{other}.cls_token": fake((1, 1, 768), 51),
        f"module.{other}.pos_embed": fake((1, 197, 768), 52),
        f"module.{other}.blocks.0.attn.qkv.weight": fake((2304, 768), 53),
        f"module.{other}.head.0.weight": fake((64, 768), 54),
    }
    predictor = {
        "module.predictor.0.weight": fake((64, 32), 61),
        **_bn("module.predictor.1.", 64, 62),
        "module.predictor.3.weight": fake((32, 64), 66),
    }
    ckpt = {
        "epoch": 300,
        "arch": "vit_base",
        "state_dict": full | head | copy | predictor,
        "optimizer": {"state": {}, "param_groups": []},
    }
    ignored = [k[len("module.") :] for k in (head | copy | predictor)]
    roundtrip(name, ckpt, ref, ignored, tmp_path / "vit-b-300ep.pth.tar")


def test_ijepa_takes_target_encoder(tmp_path):
    ref = timm_ref("ijepa_vitb16")
    assert "cls_token" not in ref and ref["pos_embed"].shape == (1, 196, 768)
    assert "norm.weight" in ref  # the final norm acts on every token (not a pooled fc_norm)
    ckpt = {
        "encoder": {  # context encoder: other values, must not be picked
            "module.pos_embed": fake((1, 196, 768), 71),
            "module.blocks.0.attn.qkv.weight": fake((2304, 768), 72),
        },
        "predictor": {
            "module.predictor_embed.weight": fake((384, 768), 73),
            "module.mask_token": fake((1, 1, 384), 74),
            "module.predictor_pos_embed": fake((1, 196, 384), 75),
            "module.predictor_blocks.0.norm1.weight": fake((384,), 76),
            "module.predictor_norm.weight": fake((384,), 77),
            "module.predictor_proj.weight": fake((768, 384), 78),
        },
        "target_encoder": {f"module.{k}": v for k, v in ref.items()},
        "opt": {"state": {}, "param_groups": []},
        "scaler": None,
        "epoch": 300,
        "loss": 0.25,
        "batch_size": 2048,
        "world_size": 16,
        "lr": 0.001,
    }
    ignored = [f"{k}.*" for k in ckpt if k != "target_encoder"]
    _, encoder = roundtrip("ijepa_vitb16", ckpt, ref, ignored, tmp_path / "IN1K-vit.b.16.pth.tar")
    assert encoder.num_prefix_tokens == 0
    with torch.inference_mode():
        tokens = encoder(torch.randn(1, 3, 32, 48))
    assert tokens.shape == (1, 6, 768)
    # the final LayerNorm acts on every patch token; no pooled-only fc_norm
    assert isinstance(encoder.vit.norm, torch.nn.LayerNorm)
    assert isinstance(encoder.vit.fc_norm, torch.nn.Identity)


def test_blip_takes_visual_encoder(tmp_path):
    ref = timm_ref("blip_vitb16")
    visual = {f"visual_encoder.{k}": v for k, v in ref.items()}
    other = {
        "visual_encoder_m.cls_token": fake((1, 1, 768), 81),  # momentum copy
        "visual_encoder_m.blocks.0.attn.qkv.weight": fake((2304, 768), 82),
        "text_encoder.embeddings.word_embeddings.weight": fake((100, 768), 83),
        "text_encoder.encoder.layer.0.crossattention.self.query.weight": fake((768, 768), 84),
        "text_decoder.cls.predictions.bias": fake((100,), 85),
        "vision_proj.weight": fake((256, 768), 86),
        "text_proj.weight": fake((256, 768), 87),
        "itm_head.weight": fake((2, 768), 88),
        "vision_proj_m.weight": fake((256, 768), 89),
        "text_encoder_m.embeddings.word_embeddings.weight": fake((100, 768), 90),
        "image_queue": fake((256, 16), 91),
        "text_queue": fake((256, 16), 92),
        "ptr_queue": torch.zeros(1, dtype=torch.long),
        "temp": torch.tensor(0.07),
    }
    ckpt = {"model": visual | other, "config": {"vit": "base"}, "epoch": 19}
    _, encoder = roundtrip("blip_vitb16", ckpt, ref, sorted(other), tmp_path / "model_base.pth")
    assert encoder.mean != (0.485, 0.456, 0.406)  # BLIP uses CLIP statistics


def clip_layout(ref: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """timm CLIP ViT weights in OpenAI CLIP naming, plus a (small) text tower."""
    sd = {
        "visual.class_embedding": ref["cls_token"].reshape(-1),
        "visual.positional_embedding": ref["pos_embed"][0],
        "visual.conv1.weight": ref["patch_embed.proj.weight"],
        "visual.ln_pre.weight": ref["norm_pre.weight"],
        "visual.ln_pre.bias": ref["norm_pre.bias"],
        "visual.ln_post.weight": ref["norm.weight"],
        "visual.ln_post.bias": ref["norm.bias"],
        "visual.proj": fake((768, 512), 101),
    }
    for i in range(_depth(ref)):
        b, r = f"blocks.{i}.", f"visual.transformer.resblocks.{i}."
        sd[f"{r}attn.in_proj_weight"] = ref[f"{b}attn.qkv.weight"]
        sd[f"{r}attn.in_proj_bias"] = ref[f"{b}attn.qkv.bias"]
        for part in ("weight", "bias"):
            sd[f"{r}attn.out_proj.{part}"] = ref[f"{b}attn.proj.{part}"]
            sd[f"{r}ln_1.{part}"] = ref[f"{b}norm1.{part}"]
            sd[f"{r}ln_2.{part}"] = ref[f"{b}norm2.{part}"]
            sd[f"{r}mlp.c_fc.{part}"] = ref[f"{b}mlp.fc1.{part}"]
            sd[f"{r}mlp.c_proj.{part}"] = ref[f"{b}mlp.fc2.{part}"]
    text = {
        "positional_embedding": fake((77, 512), 102),
        "text_projection": fake((512, 512), 103),
        "logit_scale": torch.tensor(4.6052),
        "token_embedding.weight": fake((1000, 512), 104),
        "transformer.resblocks.0.attn.in_proj_weight": fake((1536, 512), 105),
        "transformer.resblocks.0.ln_1.weight": fake((512,), 106),
        "ln_final.weight": fake((512,), 107),
        "ln_final.bias": fake((512,), 108),
        "input_resolution": torch.tensor(224),  # TorchScript archives carry these three
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }
    return sd | text, sorted(text) + ["visual.proj"]


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], list[str]]:
    ref = timm_ref("clip_vitb16")
    sd, ignored = clip_layout(ref)
    path = tmp_path_factory.mktemp("clip") / "ViT-B-16.pt"
    torch.save(sd, path)
    return path, ref, ignored


def test_clip_visual_tower(clip_checkpoint, tmp_path):
    path, ref, ignored = clip_checkpoint
    sd = read_checkpoint(path)
    _, encoder = roundtrip("clip_vitb16", sd, ref, ignored, tmp_path / "clip.pt")
    vit = encoder.vit
    assert torch.equal(
        vit.blocks[5].attn.qkv.weight, sd["visual.transformer.resblocks.5.attn.in_proj_weight"]
    )
    assert torch.equal(vit.cls_token[0, 0], sd["visual.class_embedding"])
    assert vit.patch_embed.proj.bias is None  # CLIP's conv1 has no bias
    assert encoder.pos_interpolation == "bicubic_antialias"


# --- wrong checkpoints ---------------------------------------------------------------------------


def test_clip_checkpoint_for_dino_names_missing_keys(clip_checkpoint):
    path = clip_checkpoint[0]
    with pytest.raises(VideorepError) as info:
        load_encoder("dino_vitb16", checkpoint=path)
    msg = str(info.value)
    assert str(path) in msg and "dino_vitb16" in msg and "not a DINO/iBOT checkpoint" in msg
    assert "'cls_token'" in msg and "'blocks.0.attn.qkv.weight'" in msg
    assert "\n" not in msg


def test_dino_small_checkpoint_for_vitb_names_mismatching_shapes(tmp_path):
    path = tmp_path / "dino_deitsmall8_pretrain.pth"
    torch.save(timm_ref("dino_vits8"), path)
    with pytest.raises(VideorepError) as info:
        load_encoder("dino_vitb16", checkpoint=path)
    msg = str(info.value)
    assert str(path) in msg and "tensor shapes do not match" in msg
    assert "cls_token: checkpoint [1, 1, 384] vs model [1, 1, 768]" in msg


def test_missing_and_unknown_keys_are_named(tmp_path):
    ref = timm_ref("dino_vits8")
    broken = {k: v for k, v in ref.items() if k != "norm.weight"}
    broken["blocks.0.attn.rel_pos"] = fake((3, 3), 5)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(VideorepError, match=r"missing \['norm.weight'\].*'blocks.0.attn.rel_pos'"):
        load_encoder("dino_vits8", checkpoint=path)


def test_unknown_extra_keys_in_a_family_layout_are_refused(tmp_path):
    ref = timm_ref("dinov2_vits14")
    path = tmp_path / "odd.pth"
    torch.save(dict(ref) | {"some_adapter.weight": fake((4, 4), 6)}, path)
    with pytest.raises(VideorepError, match="some_adapter.weight"):
        load_encoder("dinov2_vits14", checkpoint=path)
