"""``videorep propagate`` and ``videorep features`` (``videorep.commands``) through the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from videorep.cli import main
from videorep.commands import read_features
from videorep.errors import VideorepError

TINY = ["--backbone", "random_vit_tiny16"]


@pytest.fixture(scope="module")
def clip() -> Path:
    from videorep.data.sources import shipped_videos

    return next(v for v in shipped_videos() if v.name == "carphone_pristine.mp4")  # 176x144


def ellipse_mask(path: Path, width: int = 176, height: int = 144) -> Path:
    """A hand-drawn first-frame mask: a filled ellipse (object 1) and a box (object 2)."""
    yy, xx = np.mgrid[0:height, 0:width]
    mask = np.zeros((height, width), np.uint8)
    mask[((yy - 80) / 40.0) ** 2 + ((xx - 90) / 30.0) ** 2 <= 1] = 1
    mask[5:25, 5:40] = 2
    Image.fromarray(mask, mode="L").save(path)
    return path


def one_error_line(capsys) -> str:  # noqa: ANN001
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("videorep: error: "), captured.err
    return lines[0]


def test_propagate_shipped_clip(tmp_path, capsys, clip):
    mask = ellipse_mask(tmp_path / "first.png")
    out = tmp_path / "out"
    argv = ["propagate", "--video", str(clip), "--mask", str(mask), "--out", str(out)]
    assert main(argv + TINY + ["--size", "64x80", "--fps", "5"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 20  # the clip's frames at 5 fps: 4.0 s -> 20 frames
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(20)]
    values = set()
    for p in pngs:
        with Image.open(p) as im:
            assert im.mode == "P" and im.size == (176, 144)
            values |= set(np.unique(np.asarray(im)).tolist())
    assert values <= {0, 1, 2} and 1 in values
    html = (out / "index.html").read_text()
    assert "carphone_pristine.mp4" in html and "<video" in html
    assert (out / "vis" / "carphone_pristine" / "carphone_pristine.mp4").stat().st_size > 0
    assert "20 masks (2 objects)" in capsys.readouterr().out


def test_propagate_start_frame(tmp_path, clip):
    mask = ellipse_mask(tmp_path / "m.png")
    out = tmp_path / "out"
    argv = ["propagate", "--video", str(clip), "--mask", str(mask), "--out", str(out)]
    assert main(argv + TINY + ["--size", "64x80", "--fps", "5", "--start-frame", "15"]) == 0
    assert [p.name for p in sorted(out.glob("*.png"))] == [f"{t:05d}.png" for t in range(15, 20)]


def test_propagate_equals_eval_davis_bytes(tmp_path, davis_sample):
    """The PNGs of ``propagate`` on a frame folder are ``eval davis``'s, byte for byte."""
    src = davis_sample / "JPEGImages" / "480p" / "blackswan"
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(8):
        os.symlink(src / f"{t:05d}.jpg", frames / f"{t:05d}.jpg")
    mask = davis_sample / "Annotations" / "480p" / "blackswan" / "00000.png"
    common = TINY + ["--size", "112x208", "--preset", "dino-paper-params"]
    ev = ["eval", "davis", "--root", str(davis_sample), "--year", "2016", "--out"]
    ev += [str(tmp_path / "eval"), "--sequences", "blackswan", "--max-frames", "8"]
    assert main(ev + common) == 0
    argv = ["propagate", "--video", str(frames), "--mask", str(mask)]
    assert main(argv + ["--out", str(tmp_path / "prop")] + common) == 0
    foreground = 0
    for t in range(8):
        ours = (tmp_path / "prop" / f"{t:05d}.png").read_bytes()
        theirs = (tmp_path / "eval" / "blackswan" / f"{t:05d}.png").read_bytes()
        assert ours == theirs, f"frame {t}"
        with Image.open(tmp_path / "prop" / f"{t:05d}.png") as im:
            foreground += int((np.asarray(im) == 1).sum())
    assert foreground > 8 * 1000  # the swan is propagated, not an empty map


def test_propagate_errors(tmp_path, capsys, clip):
    argv = ["propagate", "--video", str(clip), "--out", str(tmp_path / "o")] + TINY
    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.ones((100, 100), np.uint8)).save(wrong)
    assert main(argv + ["--mask", str(wrong)]) == 2
    assert "wrong.png: mask size 100x100 differs from the frames' 176x144" in one_error_line(capsys)
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((144, 176), np.uint8)).save(empty)
    assert main(argv + ["--mask", str(empty)]) == 2
    assert "empty.png: empty mask" in one_error_line(capsys)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00garbage" * 100)
    bad = ["propagate", "--video", str(broken), "--mask", str(empty), "--out", str(tmp_path / "x")]
    assert main(bad + TINY) == 2
    assert "broken.mp4" in one_error_line(capsys)
    assert not list((tmp_path / "o").glob("*.png")) and not (tmp_path / "x").exists()


def test_propagate_half_size_mask_is_resized(tmp_path, capsys, clip):
    half = tmp_path / "half.png"
    ellipse_mask(half, 88, 72)
    out = tmp_path / "out"
    argv = ["propagate", "--video", str(clip), "--mask", str(half), "--out", str(out)]
    with pytest.warns(UserWarning, match="half.png: mask size 88x72 resized"):
        assert main(argv + TINY + ["--size", "32x48", "--fps", "2"]) == 0
    with Image.open(out / "00000.png") as im:
        assert im.size == (176, 144)


def test_features_inputs_and_metadata(tmp_path, capsys, clip, frame_folders):
    out = tmp_path / "feats"
    argv = ["features", "--input", str(clip), str(frame_folders / "video1"), "--out", str(out)]
    assert main(argv + TINY + ["--size", "64x80", "--fps", "4", "--cls", "--batch", "3"]) == 0
    tensors, meta = read_features(out / "carphone_pristine.safetensors")
    assert tensors["tokens"].shape == (16, 4, 5, 192) and tensors["cls"].shape == (16, 192)
    assert meta["grid"] == [4, 5] and meta["size"] == [64, 80] and meta["frame_size"] == [144, 176]
    assert meta["frame_indices"] == list(range(16))
    assert meta["timestamps"] == pytest.approx([i / 4 for i in range(16)])
    assert meta["backbone"] == "random_vit_tiny16" and meta["layer"] is None
    assert meta["projection"] is None and meta["input"] == str(clip)
    tensors, meta = read_features(out / "video1.safetensors")
    assert tensors["tokens"].shape == (8, 4, 5, 192) and meta["timestamps"] is None
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("carphone_pristine.safetensors: 16 4 5 192")
    # the stored tokens are the API's
    import videorep

    enc = videorep.load_encoder("random_vit_tiny16")
    api = videorep.extract_features(enc, frame_folders / "video1", size=(64, 80), batch=3)
    assert torch.equal(tensors["tokens"], api.tokens)


def test_features_layer_equals_hook(tmp_path, frame_folders):
    import videorep

    folder = frame_folders / "video2"
    out = tmp_path / "one.safetensors"
    argv = ["features", "--input", str(folder), "--out", str(out), "--layer", "3", "--cls"]
    assert main(argv + TINY + ["--size", "48x48", "--batch", "8"]) == 0
    tensors, meta = read_features(out)
    assert meta["layer"] == 3
    enc = videorep.load_encoder("random_vit_tiny16")
    seen = []
    hook = enc.vit.blocks[3].register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        ref = videorep.extract_features(enc, folder, size=(48, 48), batch=8)
    finally:
        hook.remove()
    block = seen[0].float()  # [8, 1 + 9, 192]: CLS, then 3x3 patches (bf16 under auto on bf16 CPUs)
    torch.testing.assert_close(tensors["tokens"].reshape(8, 9, 192), block[:, 1:])
    torch.testing.assert_close(tensors["cls"], block[:, 0])
    assert not torch.allclose(tensors["tokens"], ref.tokens)  # not the last layer's tokens


def test_features_image_npy_still_works(tmp_path, capsys, davis_sample):
    img = davis_sample / "JPEGImages" / "480p" / "blackswan" / "00000.jpg"
    out = tmp_path / "f.npy"
    argv = ["features", "--image", str(img), "--out", str(out), "--size", "64x96"]
    assert main(argv + TINY) == 0
    assert capsys.readouterr().out.strip() == "4 6 192"
    assert np.load(out).shape == (24, 192)


def test_features_errors(tmp_path, capsys, frame_folders):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00garbage" * 100)
    out = tmp_path / "feats"
    argv = ["features", "--input", str(frame_folders / "video3"), str(broken), "--out", str(out)]
    assert main(argv + TINY) == 2
    assert "broken.mp4" in one_error_line(capsys)
    assert not out.exists()  # every input is checked before anything is written
    argv = ["features", "--input", str(frame_folders / "video3"), "--out", str(out)]
    assert main(argv + TINY + ["--layer", "12"]) == 2
    assert "--layer 12: random_vit_tiny16 has blocks 0..11" in one_error_line(capsys)
    assert main(argv + TINY + ["--device", "bogus"]) == 2
    assert "--device 'bogus'" in one_error_line(capsys)
    two = [str(frame_folders / "video3"), str(frame_folders / "video4")]
    assert main(["features", "--input", *two, "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "one output file for 2 inputs" in one_error_line(capsys)
    (tmp_path / "note.safetensors").write_bytes(b"{}")
    with pytest.raises(VideorepError, match="note.safetensors: not a videorep features file"):
        read_features(tmp_path / "note.safetensors")
