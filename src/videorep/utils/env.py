"""Environment variables read as typed values (``torchrun``'s ``RANK``, ``WORLD_SIZE``, ...).

Bottom of the bottom layer: imported by :mod:`videorep.utils.device` and
:mod:`videorep.utils.distributed`, which import each other's decisions only through it.
"""

from __future__ import annotations

import os

from videorep.errors import VideorepError


def env_int(name: str, default: int) -> int:
    """Integer environment variable ``name`` (``default`` when unset or empty)."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise VideorepError(f"environment variable {name}={raw!r}: expected an integer") from None
