"""``--checkpoint`` given a Hugging Face model folder (DINOv2 and CLIP layouts): a round trip.

The test builds the timm ViT of a registry entry with seeded random weights, writes its weights
in Hugging Face naming itself (``Dinov2Model`` / ``CLIPModel`` keys, as ``save_pretrained``
lays them out in ``model.safetensors``), loads the folder through ``load_encoder`` and requires
every tensor back bit for bit.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from videorep.backbones import load_encoder
from videorep.backbones.converters import convert_clip, convert_dinov2
from videorep.backbones.loading import _build_vit
from videorep.backbones.registry import get_spec
from videorep.errors import VideorepError


def _timm_state(name: str) -> dict[str, torch.Tensor]:
    vit = _build_vit(get_spec(name))
    with torch.no_grad():  # make every tensor distinct (LayerNorm / LayerScale init is constant)
        g = torch.Generator().manual_seed(1)
        for p in vit.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return {k: v.clone().contiguous() for k, v in vit.state_dict().items()}


def to_hf_dinov2(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm DINOv2 (no registers) -> Hugging Face ``Dinov2Model`` keys."""
    hf = {
        "embeddings.cls_token": sd["cls_token"],
        "embeddings.mask_token": torch.zeros(1, sd["cls_token"].shape[-1]),
        "embeddings.position_embeddings": sd["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "layernorm.weight": sd["norm.weight"],
        "layernorm.bias": sd["norm.bias"],
    }
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        b, layer = f"blocks.{i}.", f"encoder.layer.{i}."
        for part in ("weight", "bias"):
            q, k, v = sd[f"{b}attn.qkv.{part}"].chunk(3, dim=0)
            hf[f"{layer}attention.attention.query.{part}"] = q.clone()
            hf[f"{layer}attention.attention.key.{part}"] = k.clone()
            hf[f"{layer}attention.attention.value.{part}"] = v.clone()
            hf[f"{layer}attention.output.dense.{part}"] = sd[f"{b}attn.proj.{part}"]
            for n in ("norm1", "norm2"):
                hf[f"{layer}{n}.{part}"] = sd[f"{b}{n}.{part}"]
            for n in ("fc1", "fc2"):
                hf[f"{layer}mlp.{n}.{part}"] = sd[f"{b}mlp.{n}.{part}"]
        hf[f"{layer}layer_scale1.lambda1"] = sd[f"{b}ls1.gamma"]
        hf[f"{layer}layer_scale2.lambda1"] = sd[f"{b}ls2.gamma"]
    return hf


def to_hf_clip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm CLIP image tower -> Hugging Face ``CLIPModel`` keys (plus text-side keys)."""
    v = "vision_model."
    d = sd["cls_token"].shape[-1]
    hf = {
        f"{v}embeddings.class_embedding": sd["cls_token"].reshape(d).clone(),
        f"{v}embeddings.patch_embedding.weight": sd["patch_embed.proj.weight"],
        f"{v}embeddings.position_embedding.weight": sd["pos_embed"][0].clone(),
        f"{v}embeddings.position_ids": torch.arange(sd["pos_embed"].shape[1])[None],
        f"{v}pre_layrnorm.weight": sd["norm_pre.weight"],
        f"{v}pre_layrnorm.bias": sd["norm_pre.bias"],
        f"{v}post_layernorm.weight": sd["norm.weight"],
        f"{v}post_layernorm.bias": sd["norm.bias"],
        "visual_projection.weight": torch.zeros(512, d),
        "text_model.embeddings.token_embedding.weight": torch.zeros(10, 512),
        "logit_scale": torch.tensor(4.6),
    }
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        b, layer = f"blocks.{i}.", f"{v}encoder.layers.{i}."
        for part in ("weight", "bias"):
            q, k, val = sd[f"{b}attn.qkv.{part}"].chunk(3, dim=0)
            hf[f"{layer}self_attn.q_proj.{part}"] = q.clone()
            hf[f"{layer}self_attn.k_proj.{part}"] = k.clone()
            hf[f"{layer}self_attn.v_proj.{part}"] = val.clone()
            hf[f"{layer}self_attn.out_proj.{part}"] = sd[f"{b}attn.proj.{part}"]
            hf[f"{layer}layer_norm1.{part}"] = sd[f"{b}norm1.{part}"]
            hf[f"{layer}layer_norm2.{part}"] = sd[f"{b}norm2.{part}"]
            hf[f"{layer}mlp.fc1.{part}"] = sd[f"{b}mlp.fc1.{part}"]
            hf[f"{layer}mlp.fc2.{part}"] = sd[f"{b}mlp.fc2.{part}"]
    return hf


def _assert_same(encoder, expected: dict[str, torch.Tensor]) -> None:  # noqa: ANN001
    got = encoder.vit.state_dict() if hasattr(encoder, "vit") else encoder.state_dict()
    got = {k.removeprefix("vit."): v for k, v in got.items()}
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize(
    ("name", "to_hf", "ignored"),
    [
        ("dinov2_vits14", to_hf_dinov2, ["embeddings.mask_token"]),
        (
            "clip_vitb16",
            to_hf_clip,
            [
                "vision_model.embeddings.position_ids",
                "logit_scale",
                "text_model.embeddings.token_embedding.weight",
                "visual_projection.weight",
            ],
        ),
    ],
)
def test_hf_folder_round_trip_gives_identical_tensors(tmp_path, name, to_hf, ignored) -> None:
    original = _timm_state(name)
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file(to_hf(original), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": name.split("_")[0]}))
    encoder = load_encoder(name, folder)
    _assert_same(encoder, original)
    family = convert_dinov2 if name.startswith("dinov2") else convert_clip
    from safetensors.torch import load_file

    assert sorted(family(load_file(str(folder / "model.safetensors"))).ignored) == sorted(ignored)


def test_sharded_hf_folder_is_merged(tmp_path) -> None:
    original = _timm_state("dinov2_vits14")
    hf = to_hf_dinov2(original)
    keys = sorted(hf)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half]}
    shards["model-00002-of-00002.safetensors"] = keys[half:]
    for shard, names in shards.items():
        save_file({k: hf[k] for k in names}, str(tmp_path / shard))
    weight_map = {k: shard for shard, names in shards.items() for k in names}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _assert_same(load_encoder("dinov2_vits14", tmp_path), original)


def test_a_folder_without_weights_is_one_error(tmp_path) -> None:
    with pytest.raises(VideorepError, match="not a Hugging Face model folder"):
        load_encoder("dinov2_vits14", tmp_path)


def test_a_clip_folder_given_to_dinov2_is_refused(tmp_path) -> None:
    save_file(to_hf_clip(_timm_state("clip_vitb16")), str(tmp_path / "model.safetensors"))
    with pytest.raises(VideorepError, match="not a DINOv2 checkpoint"):
        load_encoder("dinov2_vits14", tmp_path)
