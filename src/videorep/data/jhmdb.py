"""JHMDB joints, in the released layout::

    ROOT/Rename_Images/<class>/<video>/00001.png ...              1-based, no gaps
    ROOT/joint_positions/<class>/<video>/joint_positions.mat     pos_img [2, 15, T], scale [T]

``pos_img`` holds MATLAB (1-based) pixel coordinates (x, y) of the 15 joints in each of the T
frames; they are returned 0-based as ``[T, 15, 2]``. Videos are listed by a file of
``<class>/<video>`` lines, or found by scanning ``Rename_Images``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videorep.data.davis import image_size, read_split
from videorep.data.files import file_size
from videorep.errors import VideorepError

N_JOINTS = 15


@dataclass
class JhmdbVideo:
    name: str  # "<class>/<video>"
    frames: list[Path]
    joints: np.ndarray  # [T, 15, 2] (x, y), 0-based pixels
    size: tuple[int, int]


def list_videos(root: str | Path, list_file: str | Path | None = None) -> list[str]:
    """``<class>/<video>`` names from ``list_file`` or every folder under ``Rename_Images``."""
    root = Path(root)
    if not root.is_dir():
        raise VideorepError(f"{root}: JHMDB root folder not found")
    if list_file:
        return read_split(Path(list_file))
    base = root / "Rename_Images"
    if not base.is_dir():
        raise VideorepError(f"{base}: frame folder not found")
    names = sorted(
        f"{c.name}/{v.name}"
        for c in base.iterdir()
        if c.is_dir()
        for v in c.iterdir()
        if v.is_dir()
    )
    if not names:
        raise VideorepError(f"{base}: no <class>/<video> folders")
    return names


def load_joints(path: Path) -> np.ndarray:
    """``pos_img`` of a ``joint_positions.mat`` as ``[T, 15, 2]`` 0-based (x, y)."""
    import scipy.io

    if file_size(path, "joint file") == 0:
        raise VideorepError(f"{path}: joint file is empty (0 bytes)")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt files
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise VideorepError(f"{path}: unreadable .mat file ({reason})") from None
    if "pos_img" not in mat:
        raise VideorepError(f"{path}: no 'pos_img' variable")
    pos = np.asarray(mat["pos_img"], dtype=np.float64)
    if pos.ndim != 3 or pos.shape[0] != 2 or pos.shape[1] != N_JOINTS:
        raise VideorepError(f"{path}: pos_img has shape {pos.shape}, expected [2, {N_JOINTS}, T]")
    return np.transpose(pos, (2, 1, 0)) - 1.0


def load_video(root: str | Path, name: str) -> JhmdbVideo:
    """Validate one video: 1-based gap-free frames and one joint set per frame."""
    root = Path(root)
    img_dir = root / "Rename_Images" / name
    if not img_dir.is_dir():
        raise VideorepError(f"{img_dir}: frame folder not found")
    frames = sorted(img_dir.glob("*.png"))
    if not frames:
        raise VideorepError(f"{img_dir}: no .png frames")
    for i, p in enumerate(frames, start=1):
        if not p.stem.isdigit() or int(p.stem) != i:
            raise VideorepError(
                f"{img_dir / f'{i:05d}.png'}: missing frame (numbering gap at {p.name})"
            )
    mat = root / "joint_positions" / name / "joint_positions.mat"
    joints = load_joints(mat)
    if joints.shape[0] != len(frames):
        raise VideorepError(
            f"{mat}: joints for {joints.shape[0]} frames but {img_dir} has {len(frames)} frames"
        )
    return JhmdbVideo(name, frames, joints, image_size(frames[0]))
