"""Atomic checkpoint files: a kill or a full disk while writing never damages the last good one.

Checkpoints hold only tensors and plain values (dict, list, tuple, str, int, float, bool, None) and
are read with ``torch.load(weights_only=True)``: a file in a run folder can never run code when
it is resumed. The RNG states of numpy and ``random`` are stored in that form by
:func:`rng_state` and restored by :func:`set_rng_state`.
"""

from __future__ import annotations

import os
import pickle
import random
import signal
from pathlib import Path

import numpy as np
import torch

from videorep.errors import VideorepError

FORMAT = "videorep-checkpoint-v1"

KILL_HOOK = "VIDEOREP_TEST_KILL_IN_SAVE"
"""Test hook: ``after-temp-write`` (or ``after-temp-write:K``, the K-th save of this process) makes
the process SIGKILL itself after the temporary file is written and synced, before ``os.replace``:
a deterministic mid-write kill for the resume tests."""
_saves = 0


def rng_state() -> dict:
    """The torch, numpy and ``random`` RNG states as tensors and plain values (weights-only safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": [int(version), list(internal), gauss_next],
    }


def set_rng_state(state: dict) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())  # a checkpoint mapped to a GPU: back to host
    npy = state["numpy"]
    keys = npy["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(
        (npy["name"], keys, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"]))
    )
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss_next))


def _kill_hook() -> None:
    global _saves
    hook = os.environ.get(KILL_HOOK, "")
    if not hook.startswith("after-temp-write"):
        return
    _saves += 1
    _, _, nth = hook.partition(":")
    if _saves == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)  # die between writing the temp file and renaming


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
        _kill_hook()
        os.replace(tmp, path)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise VideorepError(
            f"could not write checkpoint {path} ({exc.strerror or exc}); "
            "the previous checkpoint is intact"
        ) from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint written by :func:`atomic_save`, with clear errors.

    Tensors are loaded onto ``map_location`` (the trainer passes the run's device, so resuming a
    GPU run's checkpoint on the CPU, or the other way round, works).

    The file is read with ``weights_only=True``: a pickled object other than tensors and plain
    values is refused (its code never runs) with one error naming the file.
    """
    path = Path(path)
    try:
        found = path.is_file()
    except OSError:  # a name longer than the OS allows
        found = False
    if not found:
        raise VideorepError(f"{path}: no checkpoint to resume from")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise VideorepError(
            f"{path}: not a videorep training checkpoint (it holds Python objects other than "
            "tensors and plain values, which are never unpickled; a file from an older videorep "
            "or from elsewhere: use a new --out)"
        ) from None
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300]  # one line: torch's messages span several
        raise VideorepError(
            f"{path}: unreadable checkpoint ({type(exc).__name__}: {reason})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise VideorepError(f"{path}: not a videorep training checkpoint")
    return ckpt
