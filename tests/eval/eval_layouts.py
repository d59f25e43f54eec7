"""Synthetic datasets in the released DAVIS / VIP / JHMDB layouts, and a tiny colour encoder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from videorep.eval.core import davis_palette

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class ColourEncoder(torch.nn.Module):
    """A stand-in encoder: each patch's feature is its mean RGB colour (undoing ImageNet norm)."""

    def __init__(self, patch_size: int = 8) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = 3

    def grid(self, height: int, width: int) -> tuple[int, int]:
        assert height % self.patch_size == 0 and width % self.patch_size == 0
        return height // self.patch_size, width // self.patch_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rgb = images * IMAGENET_STD + IMAGENET_MEAN
        pooled = torch.nn.functional.avg_pool2d(rgb, self.patch_size)  # [B, 3, h, w]
        return pooled.flatten(2).transpose(1, 2) + 1e-3


COLOURS = {0: (0, 0, 255), 1: (255, 0, 0), 2: (0, 255, 0)}


def write_palette_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(davis_palette())
    im.save(path)


def make_davis(
    root: Path, n_frames: int = 6, size=(64, 96), year: int = 2017, name: str = "squares"
):
    """A DAVIS-layout sequence: a red (object 1) and a green (object 2) square moving on blue.

    ``year=2016`` writes one object as a binary 0/255 grayscale mask instead.
    """
    H, W = size
    img_dir = root / "JPEGImages" / "480p" / name
    ann_dir = root / "Annotations" / "480p" / name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for t in range(n_frames):
        labels = np.zeros((H, W), np.uint8)
        labels[16:40, 8 + 4 * t : 32 + 4 * t] = 1
        if year == 2017:
            labels[40:60, 60 - 2 * t : 84 - 2 * t] = 2
        rgb = np.zeros((H, W, 3), np.uint8)
        for k, c in COLOURS.items():
            rgb[labels == k] = c
        Image.fromarray(rgb).save(img_dir / f"{t:05d}.jpg", quality=98)
        if year == 2017:
            write_palette_png(ann_dir / f"{t:05d}.png", labels)
        else:
            Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L").save(
                ann_dir / f"{t:05d}.png"
            )
    split = root / "ImageSets" / str(year) / "val.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    names = split.read_text().split() if split.exists() else []
    split.write_text("\n".join([*names, name]) + "\n")
    return root


# A stick figure: 15 JHMDB joints and limbs between them, each limb its own part class/colour.
JOINTS0 = np.array(
    [
        [48, 12], [48, 22], [48, 44], [38, 24], [58, 24], [40, 44], [56, 44], [30, 34],
        [66, 34], [40, 60], [56, 60], [26, 44], [70, 44], [40, 76], [56, 76],
    ],
    dtype=np.float64,
)  # fmt: skip
LIMBS = [(0, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 6), (3, 7), (4, 8), (5, 9), (6, 10),
         (7, 11), (8, 12), (9, 13), (10, 14)]  # fmt: skip


def stick_figure(t: int, size=(96, 112)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame ``t``: ``(rgb [H, W, 3], part labels [H, W] in 0..14, joints [15, 2])``.

    The figure translates right by 2 px per frame and swings its arms.
    """
    H, W = size
    joints = JOINTS0.copy()
    joints[:, 0] += 2 * t
    swing = 4 * math.sin(t / 2)
    joints[[7, 11], 1] += swing
    joints[[8, 12], 1] -= swing
    yy, xx = np.mgrid[:H, :W]
    labels = np.zeros((H, W), np.uint8)
    for part, (a, b) in enumerate(LIMBS, start=1):
        (x0, y0), (x1, y1) = joints[a], joints[b]
        dx, dy = x1 - x0, y1 - y0
        s = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        d = np.hypot(xx - (x0 + s * dx), yy - (y0 + s * dy))
        labels[d <= 4.0] = part
    pal = np.asarray(davis_palette(), np.uint8).reshape(256, 3)
    rgb = pal[labels + 1]  # distinct colours, background too
    return rgb, labels, joints


def make_vip(root: Path, videos=("v1",), n_frames: int = 8, every: int = 3) -> Path:
    """VIP layout: ``Images/<v>/*.jpg``, sparse ``Annotations/Category_ids/<v>/*.png``, list."""
    for v in videos:
        for t in range(n_frames):
            rgb, labels, _ = stick_figure(t)
            stem = f"{1000 + t:06d}"
            (root / "Images" / v).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / "Images" / v / f"{stem}.jpg", quality=98)
            if t % every == 0:
                ann = root / "Annotations" / "Category_ids" / v
                ann.mkdir(parents=True, exist_ok=True)
                Image.fromarray(labels, mode="L").save(ann / f"{stem}.png")
    (root / "lists").mkdir(parents=True, exist_ok=True)
    (root / "lists" / "val_videos.txt").write_text("\n".join(videos) + "\n")
    return root


def make_jhmdb(root: Path, videos=("wave/clip1",), n_frames: int = 6) -> Path:
    """JHMDB layout: ``Rename_Images/<c>/<v>/%05d.png`` and ``joint_positions.mat``."""
    import scipy.io

    for v in videos:
        img_dir = root / "Rename_Images" / v
        img_dir.mkdir(parents=True, exist_ok=True)
        pos = np.zeros((2, 15, n_frames))
        for t in range(n_frames):
            rgb, _, joints = stick_figure(t)
            Image.fromarray(rgb).save(img_dir / f"{t + 1:05d}.png")
            pos[:, :, t] = joints.T + 1.0  # MATLAB 1-based
        mat_dir = root / "joint_positions" / v
        mat_dir.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(
            str(mat_dir / "joint_positions.mat"), {"pos_img": pos, "scale": np.ones(n_frames)}
        )
    return root
