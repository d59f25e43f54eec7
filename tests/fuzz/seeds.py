"""Small valid files of every type videorep reads, written by the project's own writers.

``make_seeds(root)`` runs one tiny Co-Settle training (``random_vit_tiny16``, 32 px, 2 steps,
``--view-bank 2``) for a real ``checkpoint.pt``, ``projection/`` (safetensors + config.json) and
view bank, fills a real feature-cache directory, and writes videos (PyAV), frames (PIL), DAVIS /
VIP / JHMDB layouts and list files.
"""

from __future__ import annotations

import contextlib
import io
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from eval_layouts import make_davis, make_jhmdb, make_vip  # noqa: E402

FRAME_H, FRAME_W = 48, 64


def frame(k: int, h: int = FRAME_H, w: int = FRAME_W) -> np.ndarray:
    """A moving gradient with a bright square (compresses to a few hundred bytes)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 4 + k * 8) % 256, (yy * 5) % 256, np.full_like(xx, 90)], -1)
    img[10:20, 4 + 3 * k : 14 + 3 * k] = 255
    return img.astype(np.uint8)


def write_video(path: Path, codec: str, n: int = 16, rate: int = 8, **options) -> Path:
    """``n`` frames at ``rate`` fps (2 s at the defaults: 4 samples at 2 fps)."""
    container = av.open(str(path), "w", options=options)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = FRAME_W, FRAME_H, "yuv420p"
    stream.codec_context.gop_size = 4
    stream.codec_context.time_base = Fraction(1, rate)
    for k in range(n):
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame(k), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def tiny_train(data: Path, out: Path) -> None:
    from videorep.cli import main

    args = ["train", "cosettle", "--data", str(data), "--out", str(out)]
    args += ["--backbone", "random_vit_tiny16", "--size", "32", "--pool", "1"]
    args += ["--batch-size", "2", "--lr", "1e-3", "--no-progress", "--max-steps", "2"]
    args += ["--view-bank", "2", "--save-every", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0


def make_seeds(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    s: dict[str, Path] = {}
    # videos
    s["mp4"] = write_video(root / "clip.mp4", "libx264", movflags="faststart")
    s["webm"] = write_video(root / "clip.webm", "libvpx")
    # frames
    frames = root / "frames"
    for v in range(2):
        folder = frames / f"video{v}"
        folder.mkdir(parents=True)
        for t in range(4):
            Image.fromarray(frame(t + v)).save(folder / f"{t:05d}.jpg", quality=90)
            Image.fromarray(frame(t + v)).save(folder / f"{t:05d}.png")
    s["frames"] = frames
    s["jpg"] = frames / "video0" / "00000.jpg"
    s["png"] = frames / "video0" / "00000.png"
    # DAVIS / VIP / JHMDB layouts (annotation PNGs, split and list files, joints)
    s["davis"] = make_davis(root / "DAVIS", n_frames=4, size=(32, 48))
    s["annotation"] = s["davis"] / "Annotations" / "480p" / "squares" / "00000.png"
    s["davis_split"] = s["davis"] / "ImageSets" / "2017" / "val.txt"
    s["vip"] = make_vip(root / "VIP", videos=("v1",), n_frames=4, every=3)
    s["vip_annotation"] = s["vip"] / "Annotations" / "Category_ids" / "v1" / "001000.png"
    s["vip_list"] = s["vip"] / "lists" / "val_videos.txt"
    s["jhmdb"] = make_jhmdb(root / "JHMDB", videos=("wave/a",), n_frames=3)
    s["jhmdb_list"] = root / "jhmdb_list.txt"
    s["jhmdb_list"].write_text("wave/a\n")
    s["mat"] = s["jhmdb"] / "joint_positions" / "wave" / "a" / "joint_positions.mat"
    # a training list
    s["sources_list"] = frames / "train.txt"
    s["sources_list"].write_text("# two frame folders\nvideo0\nvideo1\n")
    # a real run: checkpoint.pt, projection/, view_bank/
    run = root / "run"
    tiny_train(frames, run)
    s["run"] = run
    s["checkpoint"] = run / "checkpoint.pt"
    s["projection"] = run / "projection"
    s["view_bank"] = run / "view_bank"
    # encoder weights in the two formats --checkpoint reads
    from safetensors.torch import save_file

    from videorep.backbones import load_encoder

    encoder = load_encoder("random_vit_tiny16")
    state = {k: v.contiguous() for k, v in encoder.vit.state_dict().items()}
    s["encoder_safetensors"] = root / "encoder.safetensors"
    save_file(state, str(s["encoder_safetensors"]))
    s["encoder_pth"] = root / "encoder.pth"
    torch.save({"model": state}, s["encoder_pth"])
    # a feature-cache directory with one entry
    from videorep.eval.feature_cache import CachingEncoder

    cache = CachingEncoder(encoder, root / "feature-cache")
    images = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
    cache(images)
    s["feature_cache"] = root / "feature-cache"
    s["feature_cache_entry"] = next(s["feature_cache"].glob("*.safetensors"))
    s["cache_images"] = images  # type: ignore[assignment]
    s["encoder"] = encoder  # type: ignore[assignment]
    return s
