"""What produced a result: versions, git commit, device and command line.

Every ``results.json`` and every saved run config records :func:`provenance`, and commands print
:func:`provenance_line` at start-up, as DINO's scripts print the git commit and the arguments.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout videorep runs from (``+dirty`` if modified), or ``None``.

    ``None`` for an installed wheel, where the package does not sit in a git work tree.
    """
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", None))


def provenance(device: Any = None) -> dict[str, Any]:
    """Versions (videorep, torch, timm, Python), git commit, device and command line."""
    from videorep import __version__

    return {
        "videorep": __version__,
        "git_commit": git_commit(),
        "torch": _version("torch"),
        "timm": _version("timm"),
        "python": platform.python_version(),
        "device": None if device is None else str(device),
        "command": list(sys.argv),
    }


def provenance_line(device: Any = None) -> str:
    """One line for the start of a run's log."""
    p = provenance(device)
    return (
        f"videorep {p['videorep']} (git {p['git_commit'] or 'n/a'}), torch {p['torch']}, "
        f"timm {p['timm']}, device {p['device'] or 'cpu'}"
    )
