"""Bad inputs give one clear VideorepError naming the offending file or value."""

from __future__ import annotations

import os

import pytest
import torch

from videorep.backbones import get_spec, load_encoder, read_checkpoint
from videorep.data.images import load_image, parse_size
from videorep.errors import VideorepError


def test_size_not_a_patch_multiple(tiny_encoder):
    with pytest.raises(
        VideorepError, match=r"480x850 is not a multiple of the patch size 16.*480x848"
    ):
        tiny_encoder.grid(480, 850)
    assert tiny_encoder.grid(480, 848) == (30, 53)
    with pytest.raises(VideorepError, match="100x100"):
        tiny_encoder(torch.zeros(1, 3, 100, 100))


def test_wrong_image_tensor_shape(tiny_encoder):
    with pytest.raises(VideorepError, match=r"\[1, 4, 32, 32\]"):
        tiny_encoder(torch.zeros(1, 4, 32, 32))


def test_unknown_backbone_with_hint():
    with pytest.raises(VideorepError) as info:
        get_spec("dinov2_vit14")
    msg = str(info.value)
    assert "'dinov2_vit14'" in msg and "did you mean" in msg and "dinov2_vits14" in msg
    with pytest.raises(VideorepError, match=r"unknown backbone 'resnet50' \(known: "):
        load_encoder("resnet50")


def test_bad_size_strings():
    with pytest.raises(VideorepError, match="'480by880'"):
        parse_size("480by880")
    with pytest.raises(VideorepError, match="'0x10'"):
        parse_size("0x10")
    assert parse_size("476x854") == (476, 854) and parse_size("224") == (224, 224)


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(VideorepError) as info:
        load_encoder("random_vit_tiny16", checkpoint=path)
    assert str(path) in str(info.value) and "not a readable checkpoint" in str(info.value)


def test_truncated_checkpoint(tmp_path, tiny_encoder):
    good = tmp_path / "good.pth"
    torch.save(tiny_encoder.vit.state_dict(), good)
    assert isinstance(read_checkpoint(good), dict)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideorepError) as info:
        load_encoder("random_vit_tiny16", checkpoint=cut)
    assert str(cut) in str(info.value) and "truncated or corrupt" in str(info.value)


def test_truncated_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(1000)}, str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(VideorepError, match="w.safetensors: corrupt or truncated"):
        read_checkpoint(path)


def test_missing_and_empty_checkpoint(tmp_path):
    with pytest.raises(VideorepError, match="nope.pth: no such checkpoint file"):
        load_encoder("random_vit_tiny16", checkpoint=tmp_path / "nope.pth")
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(VideorepError, match=r"empty.pth: checkpoint file is empty \(0 bytes\)"):
        load_encoder("random_vit_tiny16", checkpoint=empty)


def test_checkpoint_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(VideorepError, match="list.pth.*checkpoint is a list, not a state dict"):
        load_encoder("dino_vits8", checkpoint=path)


def test_unreadable_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a JPEG")
    with pytest.raises(VideorepError, match="notes.jpg: not a readable image"):
        load_image(path)


def test_truncated_image(tmp_path, davis_frame):
    path = tmp_path / "cut.jpg"
    path.write_bytes(davis_frame.read_bytes()[:5000])
    with pytest.raises(VideorepError, match="cut.jpg: unreadable or truncated image"):
        load_image(path)


def test_zero_byte_and_missing_image(tmp_path):
    empty = tmp_path / "zero.png"
    empty.touch()
    with pytest.raises(VideorepError, match=r"zero.png: image file is empty \(0 bytes\)"):
        load_image(empty)
    with pytest.raises(VideorepError, match="absent.png: no such image file"):
        load_image(tmp_path / "absent.png")


def test_backbone_without_weight_source():
    with pytest.raises(VideorepError, match="ibot_vitb16: no automatic weights source.*checkpoint"):
        load_encoder("ibot_vitb16")
