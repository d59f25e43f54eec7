"""VIP (Video Instance-level Parsing) human-part data, in the released layout::

    ROOT/Images/<video>/<frame>.jpg
    ROOT/Annotations/Category_ids/<video>/<frame>.png    sparse: every 25th frame is annotated
    ROOT/lists/val_videos.txt                            one video name per line

Annotations are single-channel (grayscale or palette) PNGs of part-class indices 0..19
(0 = background); 255 is ignored. A video's frames are ordered by name; the first frame must be
annotated (it seeds the propagation), and every annotation must name an existing frame of the
same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videorep.data.davis import image_size, read_split
from videorep.data.images import open_image
from videorep.errors import VideorepError

N_CLASSES = 20
IGNORE = 255


@dataclass
class VipVideo:
    """One video: ordered frame paths and ``{frame index: annotation path}``."""

    name: str
    frames: list[Path]
    annotations: dict[int, Path]
    size: tuple[int, int]


def read_part_labels(path: Path, n_classes: int = N_CLASSES) -> np.ndarray:
    """``[H, W]`` uint8 class indices of a VIP annotation (255 = ignore)."""
    with open_image(path, "annotation") as im:
        if im.mode not in ("P", "L"):
            raise VideorepError(f"{path}: expected a single-channel class-index PNG, got {im.mode}")
        im.load()
        arr = np.asarray(im, dtype=np.uint8)
    bad = (arr >= n_classes) & (arr != IGNORE)
    if bad.any():
        raise VideorepError(f"{path}: class index {int(arr[bad].max())} >= {n_classes} classes")
    return arr


def list_videos(root: str | Path, list_file: str | Path | None = None) -> list[str]:
    """Video names from ``list_file`` (default ``ROOT/lists/val_videos.txt``)."""
    root = Path(root)
    if not root.is_dir():
        raise VideorepError(f"{root}: VIP root folder not found")
    path = Path(list_file) if list_file else root / "lists" / "val_videos.txt"
    return read_split(path)


def load_video(root: str | Path, name: str) -> VipVideo:
    """Validate one video's frames and sparse annotations (headers only)."""
    root = Path(root)
    img_dir = root / "Images" / name
    ann_dir = root / "Annotations" / "Category_ids" / name
    if not img_dir.is_dir():
        raise VideorepError(f"{img_dir}: frame folder not found")
    if not ann_dir.is_dir():
        raise VideorepError(f"{ann_dir}: annotation folder not found")
    frames = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not frames:
        raise VideorepError(f"{img_dir}: no frames")
    index = {p.stem: i for i, p in enumerate(frames)}
    anns: dict[int, Path] = {}
    for a in sorted(ann_dir.glob("*.png")):
        if a.stem not in index:
            raise VideorepError(f"{a}: annotation for a frame that does not exist in {img_dir}")
        anns[index[a.stem]] = a
    if 0 not in anns:
        raise VideorepError(
            f"{ann_dir / (frames[0].stem + '.png')}: the first frame must be "
            "annotated (it seeds the propagation)"
        )
    size = image_size(frames[0])
    for i, a in anns.items():
        fs, as_ = image_size(frames[i]), image_size(a)
        if fs != as_:
            raise VideorepError(
                f"{a}: annotation size {as_[1]}x{as_[0]} differs from its frame "
                f"{frames[i].name} ({fs[1]}x{fs[0]})"
            )
    return VipVideo(name, frames, anns, size)
