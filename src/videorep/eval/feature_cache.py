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
    hash of the input tensor's bytes and shape, of the encoder's weights (another checkpoint of
    the same backbone never shares an entry) and of its compute dtype (``autocast_dtype``, read at
    each call: fp32 and bf16 tokens never share an entry). The cache holds CPU tensors
    ``[B, N, D]`` (a video's tokens do not pile up in GPU memory); hits are returned on the
    input's device, as the encoder would return them.

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
        self.weights = weights_fingerprint(encoder)
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

    def parameters(self):  # noqa: ANN201
        """The wrapped encoder's parameters (their device is where inputs go)."""
        return self.encoder.parameters()

    def key(self, images: torch.Tensor) -> str:
        """The entry name of ``images [B, 3, H, W]`` for this encoder at its current dtype."""
        data = images.detach().contiguous().cpu().numpy().tobytes()
        shape = "x".join(str(s) for s in images.shape)
        dtype = str(getattr(self.encoder, "autocast_dtype", None) or torch.float32)
        h = hashlib.blake2b(data, digest_size=16)
        h.update(f"|{self.weights}|{dtype}".encode())
        return h.hexdigest() + "_" + shape

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> tokens ``[B, N, D]`` on ``images``' device (stored or computed)."""
        key = self.key(images)
        tokens = self.cache.get(key)
        if tokens is None and self.directory is not None:
            path = self.directory / f"{key}.safetensors"
            if path.is_file():
                tokens = _read_entry(path, images.shape[0], self.embed_dim)
                self.cache[key] = tokens
        if tokens is None:
            self.misses += 1
            out = self.encoder(images)
            tokens = out.detach().cpu()
            self.cache[key] = tokens
            if self.directory is not None:
                _write_entry(self.directory / f"{key}.safetensors", tokens)
            return out
        self.hits += 1
        return tokens.to(images.device, non_blocking=images.device.type == "cuda")


def weights_fingerprint(module: object) -> str:
    """A short hash of ``module``'s parameters and buffers (names, shapes, dtypes, values).

    Two checkpoints of one backbone give different fingerprints; ``""`` for a plain callable.
    """
    state = getattr(module, "state_dict", None)
    if not callable(state):
        return ""
    h = hashlib.blake2b(digest_size=8)
    for name, value in state().items():
        if not isinstance(value, torch.Tensor):
            continue
        h.update(f"{name}:{tuple(value.shape)}:{value.dtype};".encode())
        h.update(value.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
