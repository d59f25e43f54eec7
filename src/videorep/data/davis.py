"""DAVIS video object segmentation data: sequence lists, frames and annotations.

Layout (both DAVIS-2016 and DAVIS-2017)::

    ROOT/JPEGImages/480p/<seq>/00000.jpg ...
    ROOT/Annotations/480p/<seq>/00000.png ...
    ROOT/ImageSets/<year>/<split>.txt        one sequence name per line

Annotation forms:

* ``year=2017``: palette (or grayscale) PNGs whose values are object indices, 0 = background,
  255 = void (scored as background by default, as the official semi-supervised scorer does;
  ``--void exclude`` leaves it out: see ``videorep.eval.davis.score_sequence``). Objects are
  1..max index of the first frame, as the official toolkit counts them.
* ``year=2016``: binary masks, 0 = background, anything else (255 in the release, 1 in the
  DAVIS-2017 copies) = the single object 1.

A sequence's frames must be numbered 00000, 00001, ... without gaps. Its annotations must either
match the frames one to one (scored) or be the first frame only (propagated, not scored). Every
problem raises one :class:`~videorep.errors.VideorepError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from videorep.data.files import exists, is_dir, path_problem, read_lines
from videorep.data.images import open_image
from videorep.errors import VideorepError

YEARS = (2016, 2017)
VOID = 255


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS / PASCAL VOC annotations (index 1 = (128, 0, 0))."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


@dataclass
class DavisSequence:
    """One sequence: frame and annotation paths (annotations: all frames, or frame 0 only)."""

    name: str
    frames: list[Path]
    annotations: list[Path]
    year: int
    size: tuple[int, int] = (0, 0)  # (H, W) of the frames
    n_objects: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return len(self.annotations) == len(self.frames) and len(self.frames) >= 3


def read_split(path: Path) -> list[str]:
    """Sequence names of a split file (one per line, blank lines ignored).

    Raises:
        VideorepError: missing, not UTF-8 text, a line with control characters, a name that
            cannot be a folder name (absolute, ``..``, longer than the OS allows), or no names.
    """
    path = Path(path)
    if path_problem(path) is None and not exists(path):
        raise VideorepError(f"{path}: split file not found")
    names = [line for line in read_lines(path, "split file") if line]
    for number, name in enumerate(names, start=1):
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or path_problem(Path(name)):
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise VideorepError(
                f"{path}: entry {number} {shown!r} is not a sequence name (absolute, '..' or "
                "a name longer than the file system allows)"
            )
    if not names:
        raise VideorepError(f"{path}: split file is empty (no sequence names)")
    return names


def list_sequences(
    root: str | Path, year: int = 2017, split: str = "val", sequences: list[str] | None = None
) -> list[str]:
    """Names from ``ROOT/ImageSets/<year>/<split>.txt``, optionally restricted to ``sequences``."""
    root = Path(root)
    if year not in YEARS:
        raise VideorepError(f"year {year}: expected one of {', '.join(map(str, YEARS))}")
    if not is_dir(root):
        raise VideorepError(f"{root}: DAVIS root folder not found")
    names = read_split(root / "ImageSets" / str(year) / f"{split}.txt")
    if sequences:
        unknown = [s for s in sequences if s not in names]
        if unknown:
            raise VideorepError(
                f"sequences {', '.join(unknown)}: not in {root / 'ImageSets' / str(year) / f'{split}.txt'}"
            )
        names = [s for s in names if s in sequences]
    return names


def _numbered(folder: Path, suffix: str, what: str) -> list[Path]:
    if not is_dir(folder):
        raise VideorepError(f"{folder}: {what} folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix)
    if not files:
        raise VideorepError(f"{folder}: no {suffix} {what} files")
    for i, p in enumerate(files):
        if not p.stem.isdigit():
            raise VideorepError(f"{p}: {what} file name is not a frame number")
        if int(p.stem) != i:
            missing = folder / f"{i:05d}{suffix}"
            raise VideorepError(
                f"{missing}: missing {what} (numbering gap: found {p.name} after "
                f"{files[i - 1].name if i else 'nothing'})"
            )
    return files


def image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header (sizes over ``MAX_IMAGE_PIXELS`` refused)."""
    with open_image(path) as im:
        return im.size[1], im.size[0]


def read_annotation(path: Path, year: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels [H, W] uint8 object indices, void [H, W] bool)`` of one annotation PNG."""
    with open_image(path, "annotation") as im:
        im.load()
        if im.mode in ("P", "L", "1"):
            arr = np.asarray(im if im.mode != "1" else im.convert("L"), dtype=np.uint8)
        elif im.mode in ("RGB", "RGBA"):
            rgb = np.asarray(im.convert("RGB"))
            if not (np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])):
                raise VideorepError(
                    f"{path}: colour annotation without a palette; expected an indexed (P) or "
                    "grayscale PNG"
                )
            arr = rgb[..., 0].copy()
        else:
            raise VideorepError(f"{path}: unsupported annotation mode {im.mode}")
    if year == 2016:
        return (arr > 0).astype(np.uint8), np.zeros(arr.shape, bool)
    void = arr == VOID
    labels = np.where(void, 0, arr).astype(np.uint8)
    return labels, void


def load_sequence(
    root: str | Path,
    name: str,
    year: int = 2017,
    resolution: str = "480p",
    check_objects: bool = True,
) -> DavisSequence:
    """Validate and describe one sequence (frames are not decoded; annotations only if checked).

    Raises:
        VideorepError: missing folders, numbering gaps, annotations missing for some frames, an
            annotation whose size differs from its frame, no object in the first frame, or (with
            ``check_objects``) an object index that first appears after frame 0.
    """
    root = Path(root)
    frames = _numbered(root / "JPEGImages" / resolution / name, ".jpg", "frame")
    anns = _numbered(root / "Annotations" / resolution / name, ".png", "annotation")
    if len(anns) > len(frames):
        raise VideorepError(
            f"{anns[len(frames)]}: annotation without a frame "
            f"({len(anns)} annotations for {len(frames)} frames)"
        )
    if 1 < len(anns) < len(frames):
        missing = root / "Annotations" / resolution / name / f"{len(anns):05d}.png"
        raise VideorepError(
            f"{missing}: missing annotation ({len(anns)} annotations for "
            f"{len(frames)} frames; give all frames or only the first)"
        )
    size = image_size(frames[0])
    for f, a in zip(frames, anns):
        fs, as_ = image_size(f), image_size(a)
        if fs != size:
            raise VideorepError(
                f"{f}: frame size {fs[1]}x{fs[0]} differs from the first frame's "
                f"{size[1]}x{size[0]}"
            )
        if as_ != fs:
            raise VideorepError(
                f"{a}: annotation size {as_[1]}x{as_[0]} differs from its frame "
                f"{f.name} ({fs[1]}x{fs[0]})"
            )
    labels0, _ = read_annotation(anns[0], year)
    n_objects = int(labels0.max())
    if n_objects == 0:
        hint = " (a DAVIS-2016 binary 0/255 mask? use --year 2016)" if year == 2017 else ""
        raise VideorepError(f"{anns[0]}: no object in the first frame's annotation{hint}")
    seq = DavisSequence(name, frames, anns, year, size, n_objects)
    if check_objects:
        for a in anns[1:]:
            labels, _ = read_annotation(a, year)
            top = int(labels.max())
            if top > n_objects:
                raise VideorepError(
                    f"{a}: object index {top} does not appear in the first frame {anns[0].name} "
                    f"(objects 1..{n_objects}); semi-supervised evaluation needs every object "
                    "annotated in the first frame"
                )
    return seq
