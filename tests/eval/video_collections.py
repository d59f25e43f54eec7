"""Tiny generated labelled video collections for the video-evaluation tests.

Each video is a short mp4 (``size`` x ``size``, 25 fps) of a bright square moving across a
coloured background; the class is the motion direction. ``make_collection`` writes the
``train/<class>/<n>.mp4`` + ``test/<class>/<n>.mp4`` layout (the ``folders`` format, split 1).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def moving_square(direction: str, frames: int, size: int, rng: np.random.Generator):
    """``frames`` RGB frames ``[size, size, 3]`` uint8: a square crossing the frame."""
    dy, dx = DIRECTIONS[direction]
    bg = rng.integers(0, 120, 3)
    side = size // 4
    travel = size - side
    offset = int(rng.integers(0, travel + 1))
    out = []
    for t in range(frames):
        p = int(round(t * travel / max(1, frames - 1)))
        y = p if dy > 0 else travel - p if dy < 0 else offset
        x = p if dx > 0 else travel - p if dx < 0 else offset
        img = np.empty((size, size, 3), np.uint8)
        img[:] = bg
        img[y : y + side, x : x + side] = 255
        out.append(img)
    return out


def write_mp4(path: Path, frames) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=25)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "10"}
    for f in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def make_collection(
    root: Path,
    classes=("right", "left"),
    train: int = 6,
    test: int = 4,
    frames: int = 8,
    size: int = 32,
    seed: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    for part, n in (("train", train), ("test", test)):
        for c in classes:
            for i in range(n):
                write_mp4(root / part / c / f"{c}{i}.mp4", moving_square(c, frames, size, rng))
    return root
