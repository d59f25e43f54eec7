"""Breakfast-style per-frame action labels (the layout MS-TCN, ASFormer and FACT read).

::

    ROOT/mapping.txt                     "<index> <class>" per line, e.g. "0 SIL"
    ROOT/groundTruth/<video>.txt         one class name per frame, one line per frame
    ROOT/splits/train.split<N>.bundle    "<video>.txt" per line (the videos to train on)
    ROOT/splits/test.split<N>.bundle     "<video>.txt" per line (the videos to test on)
    ROOT/features/<video>.npy            (optional) frame features [D, T] (MS-TCN's I3D files)

Breakfast's protocol for split 1 is "train on splits 2-4, test on split 1": MS-TCN's
``train.split1.bundle`` lists exactly the videos of splits 2-4. Where a folder has only the four
``test.split<N>.bundle`` files, :func:`split_videos` builds the training list as the union of the
other three. Every problem (missing file, unknown class, a feature file whose length differs from
its labels) is one :class:`~videorep.errors.VideorepError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videorep.errors import VideorepError


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise VideorepError(f"{path}: missing {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VideorepError(f"{path}: unreadable {what} ({exc})") from None
    return [line.strip() for line in text.splitlines()]


def read_mapping(path: str | Path) -> list[str]:
    """Class names by index from ``mapping.txt`` (``"<index> <name>"`` lines, indices 0..K-1)."""
    path = Path(path)
    found: dict[int, str] = {}
    for n, line in enumerate(_read_lines(path, "class mapping"), start=1):
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].lstrip("-").isdigit():
            raise VideorepError(f"{path}, line {n}: expected '<index> <class>', got {line!r}")
        index, name = int(parts[0]), parts[1]
        if index in found or name in found.values():
            raise VideorepError(f"{path}, line {n}: index {index} or class {name!r} repeated")
        found[index] = name
    if not found:
        raise VideorepError(f"{path}: no class in the mapping")
    if sorted(found) != list(range(len(found))):
        raise VideorepError(f"{path}: class indices must be 0..{len(found) - 1} without gaps")
    return [found[i] for i in range(len(found))]


def read_frame_labels(path: str | Path, classes: list[str]) -> np.ndarray:
    """Per-frame class indices ``[T]`` (int64) from a ``groundTruth`` file."""
    path = Path(path)
    index = {name: i for i, name in enumerate(classes)}
    lines = _read_lines(path, "ground-truth label file")
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise VideorepError(f"{path}: no frame label")
    out = np.empty(len(lines), dtype=np.int64)
    for t, name in enumerate(lines):
        if name not in index:
            raise VideorepError(
                f"{path}, line {t + 1}: class {name!r} is not in the mapping "
                f"({len(classes)} classes)"
            )
        out[t] = index[name]
    return out


def read_bundle(path: str | Path) -> list[str]:
    """Video names (``.txt`` suffix dropped) listed in a split ``.bundle`` file."""
    path = Path(path)
    names = [n.removesuffix(".txt") for n in _read_lines(path, "split bundle") if n]
    if not names:
        raise VideorepError(f"{path}: empty split bundle")
    return names


def split_videos(root: str | Path, split: int = 1) -> tuple[list[str], list[str]]:
    """``(train, test)`` video names of ``split`` (see the module docstring)."""
    splits = Path(root) / "splits"
    test_file = splits / f"test.split{split}.bundle"
    test = read_bundle(test_file)
    train_file = splits / f"train.split{split}.bundle"
    if train_file.is_file():
        train = read_bundle(train_file)
    else:
        others = sorted(p for p in splits.glob("test.split*.bundle") if p != test_file)
        if not others:
            raise VideorepError(
                f"{splits}: neither train.split{split}.bundle nor other test.split*.bundle files "
                "to train on"
            )
        train = [v for p in others for v in read_bundle(p)]
    both = set(train) & set(test)
    if both:
        raise VideorepError(
            f"{splits}: {len(both)} videos are in both the training and the test list of split "
            f"{split}, e.g. {sorted(both)[0]!r}"
        )
    return train, test


@dataclass
class SegmentationSet:
    """A Breakfast-style folder: class names and the labels of the named videos."""

    root: Path
    classes: list[str]

    @classmethod
    def open(cls, root: str | Path) -> SegmentationSet:
        root = Path(root)
        if not root.is_dir():
            raise VideorepError(f"{root}: no such folder (expected a Breakfast-style root)")
        return cls(root, read_mapping(root / "mapping.txt"))

    def labels(self, video: str) -> np.ndarray:
        """``[T]`` class indices of ``video``."""
        return read_frame_labels(self.root / "groundTruth" / f"{video}.txt", self.classes)

    def features(self, video: str, folder: str | Path | None = None) -> np.ndarray:
        """Frame features ``[D, T]`` (float32) from ``folder/<video>.npy`` (default
        ``ROOT/features``); ``T`` must equal the number of frame labels."""
        folder = Path(folder) if folder is not None else self.root / "features"
        path = folder / f"{video}.npy"
        if not path.is_file():
            raise VideorepError(f"{path}: missing frame features of video {video!r}")
        try:
            feats = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise VideorepError(f"{path}: unreadable feature file ({exc})") from None
        frames = len(self.labels(video))
        if feats.ndim != 2 or feats.shape[1] != frames:
            raise VideorepError(
                f"{path}: features of shape {tuple(feats.shape)} do not match {frames} frame "
                f"labels (expected [D, {frames}])"
            )
        if not np.isfinite(feats).all():
            raise VideorepError(f"{path}: features contain NaN or infinite values")
        return feats.astype(np.float32, copy=False)
