"""Kinetics-400 training lists: the layouts the video-SSL code bases (and the Co-Settle authors'
loader, which follows them) read, resolved to video files for :mod:`videorep.data.sources`.

A Kinetics root given to ``--data`` is read in this order:

1. a list file at the root (:data:`LIST_NAMES`, first found), one video per line:

   * ``path label`` (space- or tab-separated; VideoMAE / MAE-ST ``train.csv``, mmaction2
     ``kinetics400_train_list_videos.txt``) or ``path,label``; ``path`` alone is accepted;
   * the official annotation CSV (header ``label,youtube_id,time_start,time_end,split``), whose
     rows name ``<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (spaces in the label kept, as
     the official downloader names the class folders);

   relative paths are taken from the root (or, failing that, from the list's own folder);
2. otherwise the plain tree ``class/video.mp4`` (or ``class/video/*.jpg`` frame folders), walked
   by :func:`videorep.data.sources.discover_sources` as any folder.

A missing list file or one without a single entry is one :class:`VideorepError`; listed videos
that are missing are skipped with one warning each (Kinetics downloads always miss a few), and
if none is left the error names the list.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from videorep.errors import VideorepError

#: list files looked for at a Kinetics root, in this order
LIST_NAMES = (
    "train.csv",
    "train.txt",
    "train_list.txt",
    "kinetics400_train_list_videos.txt",
    "annotations/train.csv",
)
OFFICIAL_HEADER = ("label", "youtube_id", "time_start", "time_end")


@dataclass(frozen=True)
class ListEntry:
    """One line of a Kinetics list: the video, its class index or name (``None``: not given),
    and the line number (for messages)."""

    path: Path
    label: str | None
    line: int


def find_list(root: Path) -> Path | None:
    """The first of :data:`LIST_NAMES` present under ``root`` (``None``: a plain tree)."""
    for name in LIST_NAMES:
        candidate = Path(root) / name
        if candidate.is_file():
            return candidate
    return None


def read_list(list_file: str | Path, root: str | Path | None = None) -> list[ListEntry]:
    """Every entry of a Kinetics list file (see the module docstring), paths resolved.

    Relative paths are joined to ``root`` (default: the list's folder; with ``root`` given and the
    video not there, the list's folder is tried too). Whether the videos exist is not checked here.
    Raises :class:`VideorepError` for a missing or unreadable list, one without a single entry,
    or an official-CSV row without four fields or with non-numeric times.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise VideorepError(f"{list_file}: Kinetics list file not found")
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise VideorepError(f"{list_file}: unreadable Kinetics list ({exc})") from None
    lines = text.splitlines()
    bases = [Path(root)] if root is not None else []
    bases.append(list_file.parent)
    first = next((line for line in lines if line.strip()), "")
    header = tuple(c.strip() for c in first.split(","))
    if header[: len(OFFICIAL_HEADER)] == OFFICIAL_HEADER:
        entries = _official_rows(list_file, lines)
    else:
        entries = [_path_label(n, line) for n, line in enumerate(lines, 1)]
        entries = [e for e in entries if e is not None]
    if not entries:
        raise VideorepError(f"{list_file}: the Kinetics list holds no videos")
    return [ListEntry(_resolve(e.path, bases), e.label, e.line) for e in entries]


def _path_label(n: int, line: str) -> ListEntry | None:
    """``path label`` / ``path,label`` / ``path`` of one line (``None``: blank or comment)."""
    entry = line.strip()
    if not entry or entry.startswith("#"):
        return None
    path, label = split_label(entry)
    return ListEntry(Path(path), label, n)


def split_label(entry: str) -> tuple[str, str | None]:
    """``"a/b.mp4 12"`` or ``"a/b.mp4,12"`` -> ``("a/b.mp4", "12")``; a line without a trailing
    integer label is all path."""
    for sep in (None, ","):
        parts = entry.rsplit(sep, 1)
        if len(parts) == 2 and parts[1].strip().isdigit() and parts[0].strip():
            return parts[0].strip(), parts[1].strip()
    return entry, None


def _official_rows(list_file: Path, lines: list[str]) -> list[ListEntry]:
    rows = csv.reader(lines)
    next(rows)
    out = []
    for n, row in enumerate(rows, 2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 4:
            raise VideorepError(
                f"{list_file}, line {n}: expected label,youtube_id,time_start,time_end, got "
                f"{','.join(row)[:200]!r}"
            )
        label, yid = row[0].strip(), row[1].strip()
        try:
            start, end = int(float(row[2])), int(float(row[3]))
        except ValueError:
            raise VideorepError(
                f"{list_file}, line {n}: time_start/time_end {row[2]!r}/{row[3]!r} are not numbers"
            ) from None
        out.append(ListEntry(Path(label) / f"{yid}_{start:06d}_{end:06d}.mp4", label, n))
    return out


def _resolve(path: Path, bases: list[Path]) -> Path:
    path = path.expanduser()
    if path.is_absolute():
        return path
    for base in bases:
        if (base / path).exists():
            return base / path
    return bases[0] / path
