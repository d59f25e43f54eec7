"""Fixtures shared by the training tests: small generated frame folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_frame_folders(root: Path, videos: int = 8, frames: int = 8, size: int = 48) -> Path:
    """``videos`` folders of ``frames`` PNGs each: a bright blob moving over smooth noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for v in range(videos):
        folder = root / f"video{v}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
        background = np.asarray(Image.fromarray(base).resize((size, size), Image.BICUBIC))
        cy, cx, vy, vx = rng.uniform(10, 38, 2).tolist() + rng.uniform(-3, 3, 2).tolist()
        for t in range(frames):
            blob = np.exp(-((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2) / 40.0)
            img = background * (1 - blob[..., None]) + 255 * blob[..., None] * [1, 0.5, 0]
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{t:05d}.png")
    return root


@pytest.fixture(scope="session")
def frame_folders(tmp_path_factory) -> Path:
    """8 generated frame folders of 8 PNG frames (48 x 48)."""
    return write_frame_folders(tmp_path_factory.mktemp("frames") / "frames")
