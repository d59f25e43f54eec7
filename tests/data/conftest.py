"""Fixtures for the data tests: small generated videos whose frames encode their own number."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

WIDTH, HEIGHT = 96, 64


def pattern(k: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Frame ``k``: eight vertical bars, bar ``b`` white iff bit ``b`` of ``k`` is set."""
    img = np.zeros((height, width, 3), np.uint8)
    for b in range(8):
        if (k >> b) & 1:
            img[:, b * width // 8 : (b + 1) * width // 8] = 255
    return img


def frame_number(img: np.ndarray) -> int:
    """Inverse of :func:`pattern` (robust to lossy coding): read the bars on the middle row."""
    height, width = img.shape[:2]
    row = img[height // 2].astype(float)
    return sum(1 << b for b in range(8) if row[b * width // 8 + width // 16].mean() > 128)


def write_video(
    path: Path,
    n: int = 100,
    rate: int = 25,
    codec: str = "libx264",
    gop: int = 12,
    rotation: int | None = None,
    pts_ms: list[int] | None = None,
    frame=pattern,
    options: dict | None = None,
) -> Path:
    """Write ``n`` frames ``frame(k)``; ``pts_ms`` gives variable timestamps in milliseconds."""
    container = av.open(str(path), "w", options=options or {})
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = WIDTH, HEIGHT
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = gop
    if pts_ms is not None:
        stream.codec_context.time_base = Fraction(1, 1000)
    if rotation is not None:
        stream.set_display_rotation(rotation)
    for k in range(n if pts_ms is None else len(pts_ms)):
        vf = av.VideoFrame.from_ndarray(frame(k), format="rgb24")
        if pts_ms is not None:
            vf.pts, vf.time_base = pts_ms[k], Fraction(1, 1000)
        for packet in stream.encode(vf):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def write_audio_only(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=16000)
    for i in range(10):
        af = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        af.sample_rate, af.pts = 16000, i * 1024
        for packet in stream.encode(af):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="session")
def davis_480p(davis_sample: Path) -> Path:
    """The DAVIS sample's 480p frame folders (skips/fails as tests/conftest.py says if absent)."""
    return davis_sample / "JPEGImages" / "480p"


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Generated 4 s, 25 fps, 100-frame videos (keyframe every 12 frames) and broken files."""
    d = tmp_path_factory.mktemp("videos")
    out = {
        "mp4": write_video(d / "counter.mp4"),
        "webm": write_video(d / "counter.webm", codec="libvpx-vp9"),
        "mkv": write_video(d / "counter.mkv"),
        "avi": write_video(d / "counter.avi", codec="mpeg4"),
        "rotated": write_video(d / "rotated.mp4", rotation=90),
        "faststart": write_video(d / "faststart.mp4", options={"movflags": "faststart"}),
        "vfr": write_video(
            d / "vfr.mkv", pts_ms=[0, 40, 80, 300, 340, 1000, 1040, 1080, 2000, 2500]
        ),
        "short": write_video(d / "short.mp4", n=10),  # 0.4 s: one sample at 2 fps
        "audio": write_audio_only(d / "audio_only.mp4"),
    }
    (d / "empty.mp4").write_bytes(b"")
    out["empty"] = d / "empty.mp4"
    (d / "garbage.mkv").write_bytes(b"not a video at all " * 50)
    out["garbage"] = d / "garbage.mkv"
    for key in ("mp4", "faststart", "mkv"):
        data = out[key].read_bytes()
        name = f"truncated_{key}{out[key].suffix}"
        (d / name).write_bytes(data[: len(data) // 2])
        out[f"truncated_{key}"] = d / name
    return out
