"""``videorep backbones`` and ``videorep features`` through ``videorep.cli.main``."""

from __future__ import annotations

import numpy as np
import pytest

from videorep.cli import main


def test_backbones_lists_the_offline_encoder(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("dinov2_vits14_imgfocus "))
    fields = line.split()
    assert fields[1:4] == ["hf_dinov2", "14", "384"]
    assert "offline" in line
    clip = next(ln for ln in out.splitlines() if ln.startswith("clip_vitb16 "))
    assert clip.split()[2:4] == ["16", "768"] and "ViT-B-16.pt" not in clip.split()[1]
    assert "--checkpoint FILE" in next(
        ln for ln in out.splitlines() if ln.startswith("ijepa_vitb16")
    )


def test_features_writes_tokens(tmp_path, capsys, davis_frame, use_imgfocus_cache):
    out = tmp_path / "f.npy"
    argv = ["features", "--backbone", "dinov2_vits14_imgfocus", "--image", str(davis_frame)]
    assert main(argv + ["--size", "476x854", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "34 61 384"
    feats = np.load(out)
    assert feats.shape == (34 * 61, 384) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    # tokens leave through the final LayerNorm: per-token spread is O(1), not constant
    assert 0.3 < float(feats.std(axis=1).mean()) < 10


def test_features_with_checkpoint_and_default_size(tmp_path, capsys, davis_frame, tiny_encoder):
    import torch

    ckpt = tmp_path / "tiny.pth"
    torch.save(tiny_encoder.vit.state_dict(), ckpt)
    out = tmp_path / "tiny.npy"
    argv = ["features", "--backbone", "random_vit_tiny16", "--image", str(davis_frame)]
    assert main(argv + ["--checkpoint", str(ckpt), "--out", str(out)]) == 0
    # 480x854 rounded to patch-16 multiples: 480x848 -> 30 x 53 tokens
    assert capsys.readouterr().out.strip() == "30 53 192"
    assert np.load(out).shape == (30 * 53, 192)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--size", "480x854"], "480x854 is not a multiple of the patch size 14"),
        (["--size", "big"], "size 'big'"),
        (["--backbone", "dinov3_vits16"], "unknown backbone 'dinov3_vits16'"),
        (["--image", "/nonexistent/frame.jpg"], "/nonexistent/frame.jpg: no such image file"),
        (["--out", "/nonexistent/dir/f.npy"], "/nonexistent/dir does not exist"),
        (["--checkpoint", "/nonexistent/w.pth"], "/nonexistent/w.pth: no such checkpoint file"),
    ],
)
def test_features_errors_are_one_line_exit_2(
    tmp_path, capsys, davis_frame, use_imgfocus_cache, args, expected
):
    argv = {
        "--backbone": "dinov2_vits14_imgfocus",
        "--image": str(davis_frame),
        "--size": "476x854",
        "--out": str(tmp_path / "f.npy"),
    }
    extra = dict(zip(args[::2], args[1::2]))
    argv |= extra
    flat = ["features"] + [x for kv in argv.items() for x in kv]
    assert main(flat) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("videorep: error: ")
    assert expected in lines[0]
    assert not (tmp_path / "f.npy").exists()
