"""Atomic checkpoint files: a kill or a full disk while writing never damages the last good one."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from videorep.errors import VideorepError

FORMAT = "videorep-checkpoint-v1"


def atomic_save(obj: object, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    On failure (disk full, permission) the temporary file is removed, ``path`` is untouched and
    a :class:`VideorepError` says so. A process killed while writing (SIGKILL) leaves only its
    temporary file, which the next successful save removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise VideorepError(
            f"could not write checkpoint {path} ({exc.strerror or exc}); "
            "the previous checkpoint is intact"
        ) from None


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint written by :func:`atomic_save`, with clear errors."""
    path = Path(path)
    try:
        found = path.is_file()
    except OSError:  # a name longer than the OS allows
        found = False
    if not found:
        raise VideorepError(f"{path}: no checkpoint to resume from")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]  # one line: torch's messages span several
        raise VideorepError(
            f"{path}: unreadable checkpoint ({type(exc).__name__}: {reason})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise VideorepError(f"{path}: not a videorep training checkpoint")
    return ckpt
