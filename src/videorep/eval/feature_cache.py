"""Memoised encoder outputs, so several heads can be evaluated on one set of encoder passes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch


class CachingEncoder:
    """Wraps an encoder; identical input batches return the stored tokens.

    Evaluating the frozen encoder and then one or more trained projections over the same frames
    (the demo's before/after table, a recipe sweep) pays the encoder once per frame. The key is a
    hash of the input tensor's bytes plus its shape; the cache holds CPU tensors ``[B, N, D]``.

    With ``directory`` the tokens are also written there (one ``.safetensors`` file per key,
    written atomically) and read back by later processes, so a sweep can be re-run without
    re-encoding. Entries are never unpickled: a damaged or foreign entry is one
    :class:`VideorepError` naming the file.
    The directory is tied to one encoder: its name is recorded in ``encoder.txt`` and a cache
    made by another encoder is refused.
    """

    def __init__(self, encoder, directory: str | os.PathLike | None = None) -> None:  # noqa: ANN001
        self.encoder = encoder
        self.patch_size = encoder.patch_size
        self.embed_dim = encoder.embed_dim
        self.name = getattr(encoder, "name", "encoder")
        self.cache: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            from videorep.errors import VideorepError

            self.directory.mkdir(parents=True, exist_ok=True)
            tag = self.directory / "encoder.txt"
            try:
                made_by = tag.read_text(encoding="utf-8").strip() if tag.is_file() else self.name
            except (OSError, UnicodeDecodeError) as exc:
                raise VideorepError(
                    f"{tag}: unreadable feature-cache tag ({exc}); use another directory"
                ) from None
            if made_by != self.name:
                raise VideorepError(
                    f"{self.directory}: feature cache was made by encoder "
                    f"{made_by[:100]!r}, not {self.name!r}; use another directory"
                )
            tag.write_text(self.name + "\n")

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return self.encoder.grid(height, width)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        data = images.detach().contiguous().cpu().numpy().tobytes()
        shape = "x".join(str(s) for s in images.shape)
        key = hashlib.blake2b(data, digest_size=16).hexdigest() + "_" + shape
        tokens = self.cache.get(key)
        if tokens is None and self.directory is not None:
            path = self.directory / f"{key}.safetensors"
            if path.is_file():
                tokens = _read_entry(path, images.shape[0], self.embed_dim)
                self.cache[key] = tokens
        if tokens is None:
            self.misses += 1
            tokens = self.encoder(images)
            self.cache[key] = tokens
            if self.directory is not None:
                _write_entry(self.directory / f"{key}.safetensors", tokens)
        else:
            self.hits += 1
        return tokens


def _read_entry(path: Path, batch: int | None, dim: int | None) -> torch.Tensor:
    """The ``[B, N, D]`` tokens of one cache entry (safetensors: no code runs while reading).

    A damaged or foreign file, or one whose shape does not fit the request, is one error naming
    it (``None``: that size is not checked; the video-feature cache uses this reader too).
    """
    from safetensors.torch import load_file

    from videorep.errors import VideorepError

    try:
        tokens = load_file(str(path))["tokens"]
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise VideorepError(
            f"{path}: not a readable feature-cache entry ({reason}); delete it to recompute"
        ) from None
    if (
        tokens.dim() != 3
        or (batch is not None and tokens.shape[0] != batch)
        or (dim is not None and tokens.shape[2] != dim)
        or not tokens.is_floating_point()
    ):
        raise VideorepError(
            f"{path}: feature-cache entry holds {list(tokens.shape)} {tokens.dtype}, expected "
            f"[{batch}, N, {dim}] floats; delete it to recompute"
        )
    return tokens


def _write_entry(path: Path, tokens: torch.Tensor) -> None:
    """Write ``tokens`` to ``path`` atomically (temporary file in the same folder, rename)."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({"tokens": tokens.detach().cpu().contiguous()}, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
