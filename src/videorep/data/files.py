"""Checks shared by the file readers: a path that can be opened, and UTF-8 list files.

Every problem is one :class:`~videorep.errors.VideorepError` whose message starts with the path:
a name longer than the file system allows (over 255 bytes per component or 4096 in all on
Linux), a folder where a file is expected, an unreadable file, a list that is not UTF-8 text or
holds control characters (a binary file behind a ``.txt`` name).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from videorep.errors import VideorepError

MAX_NAME_BYTES = 255
"""Longest file or folder name (one path component) in bytes, as on ext4, xfs and btrfs."""


def path_problem(path: Path) -> str | None:
    """Why ``path`` cannot name a file here (too long, NUL byte), or ``None``."""
    text = str(path)
    if "\x00" in text:
        return "path contains a NUL byte"
    for part in path.parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            return f"a name in the path is longer than {MAX_NAME_BYTES} bytes"
    return None


def file_size(path: str | Path, what: str = "file") -> int:
    """Size in bytes of the regular file ``path``.

    Raises:
        VideorepError: missing, a folder or other non-file, a name too long, not readable.
    """
    path = Path(path)
    problem = path_problem(path)
    if problem:
        raise VideorepError(f"{path}: no such {what} ({problem})")
    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise VideorepError(f"{path}: no such {what}") from None
        raise VideorepError(f"{path}: cannot open {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideorepError(f"{path}: is a folder, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise VideorepError(f"{path}: not a regular file (a pipe or device?), expected a {what}")
    if not os.access(path, os.R_OK):
        raise VideorepError(f"{path}: {what} is not readable (permission denied)")
    return int(st.st_size)


def exists(path: Path) -> bool:
    """``path.exists()`` that answers ``False`` for names the OS refuses (too long, NUL)."""
    if path_problem(path):
        return False
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def is_dir(path: Path) -> bool:
    """``path.is_dir()`` that answers ``False`` for names the OS refuses."""
    if path_problem(path):
        return False
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def read_lines(path: str | Path, what: str = "list file") -> list[str]:
    """The stripped lines of a UTF-8 text file (a byte-order mark is allowed).

    Raises:
        VideorepError: unreadable, not UTF-8 text, or a line with control characters (NUL,
            escape sequences: a binary file behind a ``.txt`` name). The message names the file
            and the line number.
    """
    path = Path(path)
    file_size(path, what)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VideorepError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise VideorepError(
            f"{path}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})"
        ) from None
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        bad = next((c for c in line if ord(c) < 32 and c != "\t" or ord(c) == 127), None)
        if bad is not None:
            raise VideorepError(
                f"{path}: line {number} of the {what} contains the control character "
                f"{bad!r} (a binary file?)"
            )
    return [line.strip() for line in lines]
