"""Labelled video collections: UCF101 / HMDB51 layouts, Kinetics-style CSVs, SSv2-style JSON.

API summary (stable; other modules build on it)::

    from videorep.data.labelled import load_collection, Collection, LabelledVideo

    coll = load_collection(root, format="auto", labels=None, split_dir=None)
    coll.videos        # list[LabelledVideo], deterministic order (len(coll), iter(coll))
    coll.classes       # list[str]; LabelledVideo.label indexes it
    coll.splits        # sorted split ids with a train and a test part, e.g. [1, 2, 3] ([] if none)
    coll.skipped       # list[(path, reason)]: listed videos that were missing (counted, 1 warning)
    train, test = coll.split(1)          # two Collections (same classes); "unused" entries dropped
    coll.labels()      # LongTensor [N]
    coll.subset(videos), coll.reversed() # same classes; reversed(): every video played backwards

    v = coll.videos[0]
    v.path, v.label, v.class_name, v.name  # file or frame folder, int label, class, id
    v.roles            # {split_id: "train" | "test" | "unused"}
    v.start, v.end     # seconds of the labelled segment in an untrimmed file (or None)
    v.reverse          # True: frames are read last-to-first (chiral sets)
    v.key()            # str identifying the file and how it is read, for caches

    source = open_video(v)                        # a data.sources.VideoSource (native frames)
    frames = read_uniform(v, n)                   # [n, H, W, 3] uint8, n frames uniformly
    clips = read_clips(v, length, stride, count)  # [count, length, H, W, 3] uint8
    sample_indices(num_frames, n), clip_starts(num_frames, length, stride, count)

Layouts (``format``):

- ``ucf101``: ``root/<class>/<video>.avi`` (or any video extension, or a frame folder
  ``root/<class>/<video>/*.jpg``) with ``classInd.txt`` (``1 ApplyEyeMakeup``) and
  ``trainlist0K.txt`` (``ApplyEyeMakeup/v_..._c01.avi 1``) / ``testlist0K.txt`` (``ApplyEyeMakeup/
  v_..._c01.avi``) in ``split_dir``, ``root`` or a subfolder of ``root`` (``ucfTrainTestlist``).
- ``hmdb51``: ``root/<class>/<video>.avi`` with ``<class>_test_splitK.txt`` files (lines
  ``video.avi 1``: 1 = train, 2 = test, 0 = unused) in ``split_dir``, ``root`` or a subfolder.
  Classes are the split files' class names, sorted.
- ``folders``: ``root/<class>/<video>`` without split files (no splits), or
  ``root/train/<class>/<video>`` + ``root/test/<class>/<video>`` (split 1).
- ``csv``: ``labels`` = one or more CSV files. Kinetics style (header ``label,youtube_id,
  time_start,time_end,split``): the video is found as ``<root>[/<split>]/<label>/<youtube_id>_
  <start:06d>_<end:06d>.<ext>`` (trimmed, the Kinetics downloader's name) or ``.../<youtube_id>.
  <ext>`` (untrimmed: the segment is read); plain style (header ``path,label[,split]`` or no header):
  ``path`` relative to ``root``. ``split`` values ``train`` / ``val`` / ``validate`` / ``test``
  (val and test are the test role); without a split column the file name decides
  (``train.csv`` / ``val.csv`` / ``test.csv``). Classes: the sorted labels of the train rows (all
  rows if none is train); a test label that no train row has is an unknown class.
- ``ssv2``: ``labels`` = Something-Something JSON files (``[{"id": "78687", "template":
  "Holding [something] next to [something]", ...}]``; ``train`` / ``validation`` in the file
  name gives the role), videos ``root/<id>.webm`` (any video extension or a frame folder), class
  indices from ``something-something-v2-labels.json`` (``{"Holding something ...": "12"}``) when
  it is among ``labels`` or next to them, else the sorted templates.

Errors (one :class:`~videorep.errors.VideorepError` naming the file): no such root, an empty root
or class folder, a missing split file (a ``trainlist02.txt`` without its ``testlist02.txt``, an
HMDB class without its ``_test_split2.txt``), an unknown class (a split line or CSV row whose
class is not in ``classInd.txt`` / the train rows), a malformed line. Listed videos that are not
on disk are skipped, counted in :attr:`Collection.skipped` and reported in one
:class:`~videorep.data.sources.DataWarning`; videos that cannot be decoded are found (and skipped
the same way) when frames are read, by :mod:`videorep.eval.video_features`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from videorep.data.files import exists, is_dir, read_lines
from videorep.data.sources import (
    IMAGE_EXTENSIONS,
    FrameFolderSource,
    VideoFileSource,
    VideoSource,
    _natural_key,
    warn,
)
from videorep.data.video import VIDEO_EXTENSIONS
from videorep.errors import VideorepError

FORMATS = ("auto", "ucf101", "hmdb51", "folders", "csv", "ssv2")
ROLES = ("train", "test", "unused")
_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "val": "test",
    "valid": "test",
    "validate": "test",
    "validation": "test",
    "test": "test",
    "testing": "test",
}
_MAX_SHOWN = 5


@dataclass(frozen=True, eq=False)
class LabelledVideo:
    """One labelled video.

    Attributes:
        path: the video file or frame folder.
        label: class index into the collection's ``classes``.
        class_name: ``classes[label]``.
        name: a short id (the path relative to the root, or the CSV/JSON id).
        roles: ``{split_id: "train" | "test" | "unused"}``; empty for a collection without splits.
        start, end: the labelled segment in seconds of an untrimmed file (``None``: whole file).
        reverse: frames are read last-to-first (a time-reversed copy, see
            :meth:`Collection.reversed`).
    """

    path: Path
    label: int
    class_name: str
    name: str
    roles: dict[int, str] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    reverse: bool = False

    @property
    def is_frames(self) -> bool:
        """Whether :attr:`path` is a frame folder."""
        return is_dir(self.path)

    def key(self) -> str:
        """Identifies the file (size, mtime) and how it is read; the feature cache's video key.

        Raises:
            VideorepError: the file or folder vanished.
        """
        try:
            st = self.path.stat()
            if self.is_frames:
                stamps = repr(
                    [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in _images(self)]
                )
                size = hashlib.blake2b(stamps.encode(), digest_size=8).hexdigest()
                mtime = st.st_mtime_ns
            else:
                size, mtime = st.st_size, st.st_mtime_ns
        except OSError as exc:
            raise VideorepError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        seg = "" if self.start is None and self.end is None else f"|{self.start}-{self.end}"
        rev = "|reversed" if self.reverse else ""
        return f"{os.path.abspath(self.path)}|{size}|{mtime}{seg}{rev}"


@dataclass
class Collection:
    """A labelled video collection.

    Attributes:
        videos: the videos, in a deterministic order.
        classes: class names; ``video.label`` indexes this list.
        root: the folder the collection was loaded from.
        format: the layout it was read as (see the module docstring).
        skipped: ``(path, reason)`` of listed videos that were left out (missing files).
        source: the split/label files read, for the results' provenance.
    """

    videos: list[LabelledVideo]
    classes: list[str]
    root: Path
    format: str = "folders"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[LabelledVideo]:
        return iter(self.videos)

    @property
    def splits(self) -> list[int]:
        """Split ids that have both train and test videos, sorted."""
        ids = sorted({k for v in self.videos for k in v.roles})
        return [
            k
            for k in ids
            if any(v.roles.get(k) == "train" for v in self.videos)
            and any(v.roles.get(k) == "test" for v in self.videos)
        ]

    def labels(self) -> torch.Tensor:
        """Labels ``[N]`` (int64)."""
        return torch.tensor([v.label for v in self.videos], dtype=torch.long)

    def subset(self, videos: Iterable[LabelledVideo]) -> Collection:
        """A collection of ``videos`` with the same classes and root."""
        return replace(self, videos=list(videos), skipped=list(self.skipped))

    def split(self, k: int = 1) -> tuple[Collection, Collection]:
        """The train and test parts of official split ``k`` ("unused" videos are dropped).

        Raises:
            VideorepError: the collection has no split ``k`` (the message lists those it has).
        """
        if k not in self.splits:
            have = ", ".join(map(str, self.splits)) or "none"
            raise VideorepError(
                f"{self.root}: no split {k} in this {self.format} collection (splits: {have}; "
                "a split needs its split files with train and test videos)"
            )
        train = [v for v in self.videos if v.roles.get(k) == "train"]
        test = [v for v in self.videos if v.roles.get(k) == "test"]
        return self.subset(train), self.subset(test)

    def reversed(self) -> Collection:
        """The same videos, each read last-to-first (a chiral copy; labels unchanged)."""
        return self.subset(replace(v, reverse=not v.reverse) for v in self.videos)

    def class_counts(self) -> dict[str, int]:
        """Number of videos per class name."""
        counts = dict.fromkeys(self.classes, 0)
        for v in self.videos:
            counts[v.class_name] += 1
        return counts


# --- loading ---------------------------------------------------------------------------------


def load_collection(
    root: str | Path,
    format: str = "auto",
    labels: str | Path | Sequence[str | Path] | None = None,
    split_dir: str | Path | None = None,
) -> Collection:
    """Read a labelled collection (see the module docstring for the layouts).

    Args:
        root: the dataset folder (videos or frame folders under it).
        format: one of :data:`FORMATS`; ``auto`` picks ``csv`` / ``ssv2`` from ``labels``'
            extension, ``ucf101`` when a ``classInd.txt`` is found, ``hmdb51`` when
            ``*_test_split*.txt`` files are, else ``folders``.
        labels: CSV or JSON label files (``csv`` / ``ssv2``).
        split_dir: the folder with the split files (default: ``root`` and its subfolders).

    Raises:
        VideorepError: see the module docstring.
    """
    root = Path(root)
    if format not in FORMATS:
        raise VideorepError(f"unknown collection format {format!r} (known: {', '.join(FORMATS)})")
    if not is_dir(root):
        raise VideorepError(f"{root}: no such dataset folder")
    label_files = _as_paths(labels)
    for f in label_files:
        if not exists(f):
            raise VideorepError(f"{f}: no such label file")
    split_root = Path(split_dir) if split_dir is not None else None
    if split_root is not None and not is_dir(split_root):
        raise VideorepError(f"{split_root}: no such split folder")
    if format == "auto":
        format = _detect(root, label_files, split_root)
    if format in ("csv", "ssv2") and not label_files:
        raise VideorepError(f"format {format} needs label files (--labels FILE.{format[:4]})")
    if format == "ucf101":
        coll = _load_ucf(root, split_root)
    elif format == "hmdb51":
        coll = _load_hmdb(root, split_root)
    elif format == "folders":
        coll = _load_folders(root)
    elif format == "csv":
        coll = _load_csv(root, label_files)
    else:
        coll = _load_ssv2(root, label_files)
    if coll.skipped:
        shown = "; ".join(f"{p} ({why})" for p, why in coll.skipped[:_MAX_SHOWN])
        more = (
            f" and {len(coll.skipped) - _MAX_SHOWN} more" if len(coll.skipped) > _MAX_SHOWN else ""
        )
        warn(f"{root}: skipped {len(coll.skipped)} listed video(s): {shown}{more}")
    if not coll.videos:
        extra = f" ({len(coll.skipped)} listed but missing)" if coll.skipped else ""
        raise VideorepError(f"{root}: no videos found in this {coll.format} collection{extra}")
    return coll


def _as_paths(labels) -> list[Path]:  # noqa: ANN001
    if labels is None:
        return []
    if isinstance(labels, (str, Path)):
        return [Path(labels)]
    return [Path(p) for p in labels]


def _detect(root: Path, label_files: list[Path], split_root: Path | None) -> str:
    if label_files:
        suffixes = {p.suffix.lower() for p in label_files}
        if suffixes <= {".csv", ".txt"}:
            return "csv"
        if suffixes == {".json"}:
            return "ssv2"
        raise VideorepError(
            f"{label_files[0]}: cannot tell the label format from the extension "
            "(.csv: Kinetics-style or path,label; .json: Something-Something); pass --format"
        )
    folders = _split_folders(root, split_root)
    if any((d / "classInd.txt").is_file() for d in folders):
        return "ucf101"
    if any(_hmdb_files(d) for d in folders):
        return "hmdb51"
    return "folders"


def _split_folders(root: Path, split_root: Path | None) -> list[Path]:
    """Where split files are looked for: ``split_dir``, else root and its subfolders."""
    if split_root is not None:
        return [split_root]
    out = [root]
    try:
        subs = sorted(
            (Path(e.path) for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")),
            key=lambda p: _natural_key(p.name),
        )
    except OSError as exc:
        raise VideorepError(f"{root}: unreadable folder ({exc.strerror or exc})") from None
    for sub in subs:
        try:
            if any(n.endswith(".txt") for n in os.listdir(sub)):
                out.append(sub)
        except OSError:
            continue
    return out


def _find_video(base: Path, rel: str) -> Path | None:
    """``base/rel`` as listed, or with another video extension, or as a frame folder."""
    direct = base / rel
    if exists(direct) and (direct.is_file() or _has_images(direct)):
        return direct
    stem = direct.with_suffix("") if direct.suffix.lower() in VIDEO_EXTENSIONS else direct
    if is_dir(stem) and _has_images(stem):
        return stem
    for ext in VIDEO_EXTENSIONS:
        cand = stem.with_name(stem.name + ext)
        if cand.is_file():
            return cand
    return None


def _has_images(folder: Path) -> bool:
    try:
        return any(
            n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
            for n in os.listdir(folder)
        )
    except OSError:
        return False


def _images(video: LabelledVideo) -> list[Path]:
    return sorted(
        (
            p
            for p in video.path.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        ),
        key=lambda p: _natural_key(p.name),
    )


def _entries(folder: Path) -> list[Path]:
    try:
        names = [n for n in os.listdir(folder) if not n.startswith(".")]
    except OSError as exc:
        raise VideorepError(f"{folder}: unreadable folder ({exc.strerror or exc})") from None
    return [folder / n for n in sorted(names, key=_natural_key)]


def _class_videos(folder: Path) -> list[Path]:
    """Video files and frame folders directly in a class folder."""
    out = []
    for p in _entries(folder):
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            out.append(p)
        elif p.is_dir() and _has_images(p):
            out.append(p)
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


# UCF101 ---------------------------------------------------------------------------------------


def _load_ucf(root: Path, split_root: Path | None) -> Collection:
    folders = _split_folders(root, split_root)
    where = next((d for d in folders if (d / "classInd.txt").is_file()), None)
    if where is None:
        raise VideorepError(
            f"{(split_root or root) / 'classInd.txt'}: missing split file (UCF101 needs "
            "classInd.txt with trainlist0K.txt / testlist0K.txt; pass --split-dir)"
        )
    ind_file = where / "classInd.txt"
    classes: list[str] = []
    for n, line in enumerate(read_lines(ind_file, "class index"), 1):
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise VideorepError(f"{ind_file}: line {n}: expected '<index> <class>', got {line!r}")
        if int(parts[0]) != len(classes) + 1:
            raise VideorepError(
                f"{ind_file}: line {n}: class index {parts[0]}, expected {len(classes) + 1}"
            )
        classes.append(parts[1])
    if not classes:
        raise VideorepError(f"{ind_file}: class index is empty")
    index = {c: i for i, c in enumerate(classes)}
    split_ids = set()
    for p in where.iterdir():
        m = re.fullmatch(r"(train|test)list0*(\d+)\.txt", p.name)
        if m:
            split_ids.add(int(m.group(2)))
    if not split_ids:
        raise VideorepError(f"{where}: missing split file trainlist01.txt / testlist01.txt")
    roles: dict[str, dict[int, str]] = {}
    order: list[str] = []
    sources = [str(ind_file)]
    for k in sorted(split_ids):
        for role in ("train", "test"):
            f = where / f"{role}list{k:02d}.txt"
            if not f.is_file():
                raise VideorepError(f"{f}: missing split file (split {k} has only its other list)")
            sources.append(str(f))
            for n, line in enumerate(read_lines(f, "split file"), 1):
                if not line or line.startswith("#"):
                    continue
                parts = line.split()
                rel = parts[0]
                cls = rel.split("/")[0] if "/" in rel else None
                if cls is None or cls not in index:
                    raise VideorepError(
                        f"{f}: line {n}: unknown class {cls or rel!r} (not in {ind_file.name})"
                    )
                if len(parts) > 1:
                    if not parts[1].isdigit() or int(parts[1]) != index[cls] + 1:
                        raise VideorepError(
                            f"{f}: line {n}: label {parts[1]} does not match class {cls} "
                            f"(index {index[cls] + 1} in {ind_file.name})"
                        )
                if rel not in roles:
                    roles[rel] = {}
                    order.append(rel)
                roles[rel][k] = role
    videos, skipped = [], []
    for rel in order:
        path = _find_video(root, rel)
        if path is None:
            skipped.append((str(root / rel), "no such file"))
            continue
        cls = rel.split("/")[0]
        videos.append(LabelledVideo(path, index[cls], cls, rel, roles[rel]))
    return Collection(videos, classes, root, "ucf101", skipped, sources)


# HMDB51 ---------------------------------------------------------------------------------------

_HMDB = re.compile(r"(.+)_test_split(\d+)\.txt")


def _hmdb_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if _HMDB.fullmatch(p.name))
    except OSError:
        return []


def _load_hmdb(root: Path, split_root: Path | None) -> Collection:
    folders = _split_folders(root, split_root)
    where = next((d for d in folders if _hmdb_files(d)), None)
    if where is None:
        raise VideorepError(
            f"{split_root or root}: missing split files (HMDB51 needs <class>_test_split1.txt; "
            "pass --split-dir)"
        )
    files: dict[tuple[str, int], Path] = {}
    for p in _hmdb_files(where):
        m = _HMDB.fullmatch(p.name)
        files[(m.group(1), int(m.group(2)))] = p
    classes = sorted({c for c, _ in files}, key=str)
    split_ids = sorted({k for _, k in files})
    index = {c: i for i, c in enumerate(classes)}
    roles: dict[tuple[str, str], dict[int, str]] = {}
    order: list[tuple[str, str]] = []
    code = {"1": "train", "2": "test", "0": "unused"}
    for k in split_ids:
        for cls in classes:
            f = files.get((cls, k))
            if f is None:
                raise VideorepError(
                    f"{where / f'{cls}_test_split{k}.txt'}: missing split file (other classes "
                    f"have split {k})"
                )
            for n, line in enumerate(read_lines(f, "split file"), 1):
                if not line or line.startswith("#"):
                    continue
                parts = line.split()
                if len(parts) != 2 or parts[1] not in code:
                    raise VideorepError(
                        f"{f}: line {n}: expected '<video> <0|1|2>', got {line[:100]!r}"
                    )
                key = (cls, parts[0])
                if key not in roles:
                    roles[key] = {}
                    order.append(key)
                roles[key][k] = code[parts[1]]
    videos, skipped = [], []
    for cls, name in order:
        if not is_dir(root / cls):
            raise VideorepError(
                f"{root / cls}: no such class folder (class {cls} has split files in {where})"
            )
        path = _find_video(root / cls, name)
        if path is None:
            skipped.append((str(root / cls / name), "no such file"))
            continue
        videos.append(LabelledVideo(path, index[cls], cls, f"{cls}/{name}", roles[(cls, name)]))
    sources = [str(files[key]) for key in sorted(files)]
    return Collection(videos, classes, root, "hmdb51", skipped, sources)


# class folders ------------------------------------------------------------------------------


def _load_folders(root: Path) -> Collection:
    train, test = root / "train", root / "test"
    if is_dir(train) and is_dir(test):
        parts = [(train, "train"), (test, "test")]
    else:
        parts = [(root, None)]
    found: dict[str, list[tuple[Path, str | None]]] = {}
    for base, role in parts:
        class_dirs = [p for p in _entries(base) if p.is_dir()]
        if not class_dirs:
            raise VideorepError(
                f"{base}: empty folder (expected class folders <class>/<video>; "
                "or pass --labels / --format)"
            )
        for d in class_dirs:
            vids = _class_videos(d)
            if not vids:
                raise VideorepError(f"{d}: empty class folder (no video file or frame folder)")
            found.setdefault(d.name, []).extend((v, role) for v in vids)
    classes = sorted(found, key=_natural_key)
    if parts[0][1] is not None:
        train_classes = {p.name for p in _entries(train) if p.is_dir()}
        unknown = sorted(set(classes) - train_classes)
        if unknown:
            raise VideorepError(
                f"{test / unknown[0]}: unknown class {unknown[0]!r} (no such class in {train})"
            )
    videos = []
    for i, cls in enumerate(classes):
        for path, role in found[cls]:
            roles = {1: role} if role else {}
            videos.append(LabelledVideo(path, i, cls, _rel(path, root), roles))
    return Collection(videos, classes, root, "folders", [], [])


# CSV ------------------------------------------------------------------------------------------


def _role_from_name(path: Path) -> str | None:
    words = re.split(r"[^a-z]+", path.stem.lower())
    for w in words:
        if w in _SPLIT_WORDS:
            return _SPLIT_WORDS[w]
    return None


def _role(value: str, where: str) -> str:
    role = _SPLIT_WORDS.get(value.strip().lower())
    if role is None and value.strip().lower() in ("unused", "none", ""):
        return "unused"
    if role is None:
        raise VideorepError(f"{where}: unknown split {value!r} (train, val, validate or test)")
    return role


def _read_csv(path: Path) -> list[list[str]]:
    lines = read_lines(path, "label file")
    return [row for row in csv.reader(lines) if row and any(c.strip() for c in row)]


def _load_csv(root: Path, files: list[Path]) -> Collection:
    rows: list[dict] = []  # {name, label, role, candidates | path, start, end, where}
    for f in files:
        table = _read_csv(f)
        if not table:
            raise VideorepError(f"{f}: label file is empty")
        header = [c.strip().lower() for c in table[0]]
        default_role = _role_from_name(f)
        if "youtube_id" in header and "label" in header:
            cols = {c: header.index(c) for c in header}
            for n, row in enumerate(table[1:], 2):
                where = f"{f}: line {n}"
                if len(row) < len(header):
                    raise VideorepError(
                        f"{where}: {len(row)} columns, the header has {len(header)}"
                    )
                label = row[cols["label"]].strip()
                yid = row[cols["youtube_id"]].strip()
                try:
                    start = float(row[cols["time_start"]]) if "time_start" in cols else None
                    end = float(row[cols["time_end"]]) if "time_end" in cols else None
                except ValueError:
                    raise VideorepError(f"{where}: time_start/time_end must be numbers") from None
                split = row[cols["split"]] if "split" in cols else None
                role = _role(split, where) if split is not None else default_role or "train"
                rows.append(
                    dict(
                        name=yid,
                        label=label,
                        role=role,
                        start=start,
                        end=end,
                        where=where,
                        kinetics=(split, yid),
                    )
                )
        else:
            has_header = "path" in header and "label" in header
            cols = (
                {c: header.index(c) for c in header}
                if has_header
                else {"path": 0, "label": 1, "split": 2}
            )
            body = table[1:] if has_header else table
            for n, row in enumerate(body, 2 if has_header else 1):
                where = f"{f}: line {n}"
                if len(row) < 2 or (not has_header and len(row) > 3):
                    raise VideorepError(
                        f"{where}: expected path,label[,split] (or a Kinetics header "
                        "label,youtube_id,time_start,time_end,split), got "
                        f"{','.join(row)[:100]!r}"
                    )
                split = row[cols["split"]] if "split" in cols and cols["split"] < len(row) else None
                role = _role(split, where) if split is not None else default_role
                rows.append(
                    dict(
                        name=row[cols["path"]].strip(),
                        label=row[cols["label"]].strip(),
                        role=role,
                        start=None,
                        end=None,
                        where=where,
                        kinetics=None,
                    )
                )
    if not rows:
        raise VideorepError(f"{files[0]}: label file has no rows")
    for r in rows:
        if not r["label"]:
            raise VideorepError(f"{r['where']}: empty label")
    train_labels = {r["label"] for r in rows if r["role"] == "train"}
    classes = sorted(train_labels or {r["label"] for r in rows}, key=_natural_key)
    index = {c: i for i, c in enumerate(classes)}
    any_role = any(r["role"] for r in rows)
    videos, skipped = [], []
    for r in rows:
        if r["label"] not in index:
            raise VideorepError(
                f"{r['where']}: unknown class {r['label']!r} (no training row has it)"
            )
        start, end = r["start"], r["end"]
        if r["kinetics"] is not None:
            path, trimmed = _find_kinetics(
                root, r["kinetics"][0], r["label"], r["name"], start, end
            )
            if trimmed:
                start = end = None
        else:
            path = _find_video(root, r["name"])
        if path is None:
            skipped.append((str(root / r["name"]), f"no such file ({r['where']})"))
            continue
        roles = {1: r["role"] or "train"} if any_role else {}
        name = r["name"] if r["kinetics"] is None else f"{r['label']}/{r['name']}"
        videos.append(LabelledVideo(path, index[r["label"]], r["label"], name, roles, start, end))
    return Collection(videos, classes, root, "csv", skipped, [str(f) for f in files])


def _find_kinetics(
    root: Path,
    split: str | None,
    label: str,
    yid: str,
    start,
    end,  # noqa: ANN001
) -> tuple[Path | None, bool]:
    """The video of a Kinetics row: trimmed ``<yid>_<start>_<end>`` or untrimmed ``<yid>``."""
    bases = []
    if split:
        bases += [root / split.strip() / label, root / split.strip()]
    bases += [root / label, root / label.replace(" ", "_"), root]
    names = []
    if start is not None and end is not None:
        names.append((f"{yid}_{int(start):06d}_{int(end):06d}", True))
    names.append((yid, False))
    for base in bases:
        for stem, trimmed in names:
            found = _find_video(base, stem)
            if found is not None:
                return found, trimmed
    return None, False


# Something-Something ------------------------------------------------------------------------


def _template(text: str) -> str:
    return text.replace("[", "").replace("]", "")


def _load_json(path: Path):  # noqa: ANN202
    text = "\n".join(read_lines(path, "label file"))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VideorepError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _load_ssv2(root: Path, files: list[Path]) -> Collection:
    label_map_file = next((f for f in files if f.name.endswith("labels.json")), None)
    if label_map_file is None:
        for f in files:
            cand = f.parent / "something-something-v2-labels.json"
            if cand.is_file():
                label_map_file = cand
                break
    data_files = [f for f in files if f != label_map_file]
    if not data_files:
        raise VideorepError(f"{files[0]}: only a class index given, no list of labelled videos")
    classes: list[str] | None = None
    if label_map_file is not None:
        mapping = _load_json(label_map_file)
        if not isinstance(mapping, dict):
            raise VideorepError(f"{label_map_file}: expected {{template: index}}")
        try:
            pairs = sorted((int(v), _template(k)) for k, v in mapping.items())
        except (TypeError, ValueError):
            raise VideorepError(f"{label_map_file}: class indices must be integers") from None
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise VideorepError(f"{label_map_file}: class indices are not 0..{len(pairs) - 1}")
        classes = [c for _, c in pairs]
    rows = []
    for f in data_files:
        items = _load_json(f)
        if not isinstance(items, list):
            raise VideorepError(f"{f}: expected a list of {{id, template}} objects")
        role = _role_from_name(f) or "train"
        for n, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item:
                raise VideorepError(f"{f}: entry {n}: expected an object with an 'id'")
            if "template" not in item and "label" not in item:
                raise VideorepError(
                    f"{f}: entry {n} (id {item['id']}): no 'template' (an unlabelled test list?)"
                )
            cls = _template(str(item.get("template", item.get("label"))))
            rows.append((str(item["id"]), cls, role, f"{f}: entry {n}"))
    if classes is None:
        classes = sorted({c for _, c, role, _ in rows if role == "train"} or {r[1] for r in rows})
    index = {c: i for i, c in enumerate(classes)}
    videos, skipped = [], []
    for vid, cls, role, where in rows:
        if cls not in index:
            raise VideorepError(f"{where}: unknown class {cls!r}")
        path = _find_video(root, vid)
        if path is None:
            skipped.append((str(root / vid), f"no such file ({where})"))
            continue
        videos.append(LabelledVideo(path, index[cls], cls, vid, {1: role}))
    sources = [str(f) for f in files] + ([str(label_map_file)] if label_map_file else [])
    return Collection(videos, classes, root, "ssv2", skipped, sorted(set(sources)))


# --- reading frames --------------------------------------------------------------------------


def open_video(video: LabelledVideo) -> VideoSource:
    """The video's frames at their native rate (a video file) or its images (a frame folder).

    Raises:
        VideorepError: unreadable file or folder without images.
    """
    if video.is_frames:
        frames = _images(video)
        if not frames:
            raise VideorepError(f"{video.path}: frame folder holds no images")
        return FrameFolderSource(video.path, frames=frames, name=video.name)
    return VideoFileSource(video.path, fps=None, name=video.name)


def _frame_range(video: LabelledVideo, source: VideoSource) -> tuple[int, int]:
    """``[first, last)`` native frame indices of the labelled segment."""
    n = source.num_frames
    if isinstance(source, VideoFileSource) and (video.start is not None or video.end is not None):
        fps = source.info.native_fps
        first = max(0, int(math.ceil((video.start or 0.0) * fps - 1e-6)))
        last = n if video.end is None else min(n, int(math.floor(video.end * fps + 1e-6)) + 1)
        if last <= first:
            raise VideorepError(
                f"{video.path}: segment {video.start}-{video.end}s holds no frame "
                f"({n} frames at {fps:g} fps)"
            )
        return first, last
    return 0, n


def sample_indices(num_frames: int, n: int) -> list[int]:
    """``n`` frame indices spread uniformly over ``num_frames``: the middle of ``n`` equal parts
    (indices repeat when the video is shorter than ``n``)."""
    if num_frames < 1 or n < 1:
        raise VideorepError(f"cannot sample {n} frame(s) from {num_frames}")
    return [min(num_frames - 1, int((i + 0.5) * num_frames / n)) for i in range(n)]


def clip_starts(num_frames: int, length: int, stride: int, count: int) -> list[int]:
    """Start indices of ``count`` clips of ``length`` frames at ``stride``, spread uniformly
    (a clip running past the end repeats the last frame)."""
    span = (length - 1) * stride + 1
    room = max(0, num_frames - span)
    if count == 1:
        return [room // 2]
    return [int(round(i * room / (count - 1))) for i in range(count)]


def _read(video: LabelledVideo, source: VideoSource, offsets: list[int]) -> np.ndarray:
    """Frames at ``offsets`` into the segment; a reversed video returns them last-to-first, so
    it shows exactly the frames of the forward reading, in the opposite order."""
    first, _ = _frame_range(video, source)
    idx = [first + o for o in offsets]
    if video.reverse:
        idx = idx[::-1]
    uniq = sorted(set(idx))
    frames = dict(zip(uniq, source.read(uniq), strict=True))
    shapes = {frames[i].shape for i in uniq}
    if len(shapes) > 1:
        raise VideorepError(f"{video.path}: frames differ in size ({sorted(shapes)[:2]})")
    return np.stack([frames[i] for i in idx])


def read_uniform(video: LabelledVideo, n: int) -> np.ndarray:
    """``n`` frames ``[n, H, W, 3]`` uint8 sampled uniformly over the video (or its segment), in
    playing order (a reversed video: the same frames, last-to-first)."""
    source = open_video(video)
    first, last = _frame_range(video, source)
    return _read(video, source, sample_indices(last - first, n))


def read_clips(video: LabelledVideo, length: int, stride: int, count: int) -> np.ndarray:
    """``count`` clips ``[count, length, H, W, 3]`` uint8 of ``length`` frames ``stride`` apart,
    starts spread uniformly over the video (or its segment). A reversed video gives the forward
    clips in reverse order, each played backwards."""
    if length < 1 or stride < 1 or count < 1:
        raise VideorepError(
            f"clips need length, stride and count >= 1 (got {length}, {stride}, {count})"
        )
    source = open_video(video)
    first, last = _frame_range(video, source)
    n = last - first
    offsets = [
        min(n - 1, s + j * stride)
        for s in clip_starts(n, length, stride, count)
        for j in range(length)
    ]
    arr = _read(video, source, offsets)
    return arr.reshape(count, length, *arr.shape[1:])
