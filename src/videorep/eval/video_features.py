"""Video features for the labelled-collection evaluations, with a disk cache shared between them.

Two kinds of encoder:

* :class:`FrameFeatureEncoder` - an image encoder (``videorep.backbones``) with an optional
  Co-Settle head, applied to ``N`` frames sampled uniformly over each video: frame feature = mean
  of the (projected) patch tokens. Features ``[1, N, D]`` per video.
* :class:`ClipFeatureEncoder` - a video encoder (e.g. a BOD-VCL encoder, built by the command
  layer and passed in as an ``nn.Module``) mapping ImageNet-normalised clips
  ``[K, L, 3, S, S]`` to ``[K, T', C]``, applied to ``K`` clips of ``L`` frames ``s`` apart spread
  over each video. Features ``[K, T', C]`` per video.

:func:`extract_features` returns a :class:`FeatureSet` holding the per-video features
``[V, K, T, D]``; :meth:`FeatureSet.pooled` gives the video vector: ``mean`` over clips and time
``[V, D]``, or ``concat`` (time-concatenation, averaged over clips) ``[V, T * D]``.

Cache. A folder ``<cache>/<config digest>/`` per setting: the digest covers the encoder identity
(its name and a digest of its checkpoint), the head (a digest of its weights), the sampling, the
input size and the clip transform (``static`` / ``dynamic`` versions). Inside, one entry per
video named by a digest of :meth:`~videorep.data.labelled.LabelledVideo.key` (path, size, mtime,
segment, reversal), in the entry format of :mod:`videorep.eval.feature_cache` (safetensors,
written atomically: a killed run keeps the videos it finished, and the next run resumes).
``config.json`` records the setting in readable form. A video that cannot be decoded gets a
``.failed`` entry with the reason, is skipped with one warning and counted
(:attr:`FeatureSet.failed`); a changed file gets a new key and is encoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from videorep.data.images import normalize, resize, to_tensor
from videorep.data.labelled import Collection, LabelledVideo, read_clips, read_uniform
from videorep.data.sources import DataWarning
from videorep.errors import VideorepError
from videorep.eval.feature_cache import _read_entry, _write_entry
from videorep.utils.progress import progress_bar

ClipTransform = Callable[[torch.Tensor, int], torch.Tensor]
"""``(clip [T, 3, H, W] in [0, 1], seed) -> clip [T, 3, H, W] in [0, 1]`` (static / dynamic)."""


def default_cache_dir() -> Path:
    """``$VIDEOREP_CACHE/video-features`` (default ``~/.cache/videorep/video-features``)."""
    base = Path(os.environ.get("VIDEOREP_CACHE", Path.home() / ".cache" / "videorep"))
    return base / "video-features"


def file_digest(path: str | Path | None) -> str:
    """blake2b digest (16 hex) of a file's bytes, or of each file in a folder; ``"none"``."""
    if path is None:
        return "none"
    path = Path(path)
    h = hashlib.blake2b(digest_size=8)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        try:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            raise VideorepError(f"{f}: cannot read ({exc.strerror or exc})") from None
    return h.hexdigest()


def module_digest(module: nn.Module | None) -> str:
    """blake2b digest (16 hex) of a module's state dict (names, shapes, values); ``"none"``."""
    if module is None:
        return "none"
    h = hashlib.blake2b(digest_size=8)
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Sampling:
    """How frames are taken from a video.

    Attributes:
        frames: frame encoders: number of frames sampled uniformly (segment middles).
        clip_len, stride, clips: video encoders: ``clips`` clips of ``clip_len`` frames
            ``stride`` native frames apart (used when the encoder's ``kind`` is ``"clips"``).
        size: input height and width (frame encoders snap them to the patch grid).
    """

    frames: int = 8
    clip_len: int = 8
    stride: int = 2
    clips: int = 1
    size: int = 112

    def __post_init__(self) -> None:
        for name in ("frames", "clip_len", "stride", "clips", "size"):
            if int(getattr(self, name)) < 1:
                raise VideorepError(f"sampling {name}={getattr(self, name)}: must be >= 1")


def _built(model):  # noqa: ANN001, ANN202
    return model if isinstance(model, nn.Module) or not callable(model) else model()


class FrameFeatureEncoder:
    """An image encoder (+ optional Co-Settle head) on each sampled frame.

    Args:
        encoder: ``[B, 3, H, W] -> [B, h*w, D]`` tokens with ``patch_size`` and ``grid`` (a
            ``videorep.backbones.ImageEncoder``), or a function building it: then it is built
            only when a video has to be encoded (a run served by the cache never builds it).
        identity: names the encoder and its weights for the cache (e.g. ``"vit_small:<digest>"``);
            the head's digest is added here.
        projection: optional head ``[B, N, D] -> [B, N, D']`` (``methods.cosettle.heads``).
        patch_size: the encoder's patch size (needed when ``encoder`` is a builder).
    """

    kind = "frames"

    def __init__(
        self,
        encoder: nn.Module | Callable[[], nn.Module],
        identity: str,
        projection: nn.Module | None = None,
        patch_size: int | None = None,
    ) -> None:
        self._encoder = encoder
        self.projection = projection
        self.identity = f"{identity}|head={module_digest(projection)}"
        self.patch_size = patch_size
        self.calls = 0

    @property
    def encoder(self) -> nn.Module:
        self._encoder = _built(self._encoder)
        return self._encoder

    def to(self, device: torch.device) -> FrameFeatureEncoder:
        self.encoder.to(device).eval()
        if self.projection is not None:
            self.projection.to(device).eval()
        return self

    def input_size(self, size: int) -> tuple[int, int]:
        from videorep.data.images import snap_to_patch

        patch = self.patch_size or int(self.encoder.patch_size)
        return snap_to_patch((size, size), patch)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised -> ``[B, D]`` (mean of patch tokens after the head)."""
        self.calls += 1
        tokens = self.encoder(images)
        if self.projection is not None:
            tokens = self.projection(tokens)
        return tokens.float().mean(dim=1)


class ClipFeatureEncoder:
    """A video encoder ``[K, L, 3, S, S] -> [K, T', C]`` (or ``[K, C]``) on clips.

    Args:
        model: the encoder (e.g. a BOD-VCL ``FrameNet.encoder``), ImageNet-normalised input, or
            a function building it when first needed.
        identity: names the encoder and its weights for the cache.
    """

    kind = "clips"

    def __init__(self, model: nn.Module | Callable[[], nn.Module], identity: str) -> None:
        self._model = model
        self.identity = identity
        self.calls = 0

    @property
    def model(self) -> nn.Module:
        self._model = _built(self._model)
        return self._model

    def to(self, device: torch.device) -> ClipFeatureEncoder:
        self.model.to(device).eval()
        return self

    def input_size(self, size: int) -> tuple[int, int]:
        return (size, size)

    @torch.no_grad()
    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        """``[K, L, 3, S, S]`` -> ``[K, T', C]``."""
        self.calls += 1
        out = self.model(clips).float()
        return out[:, None] if out.ndim == 2 else out


@dataclass
class FeatureSet:
    """Features of the readable videos of a collection.

    Attributes:
        features: ``[V, K, T, D]`` (``K`` clips of ``T`` steps; ``K = 1`` for frame encoders).
        labels: ``[V]`` int64.
        videos: the videos, aligned with ``features``.
        failed: ``(path, reason)`` of videos that could not be read (skipped).
        encoded: videos encoded in this call; ``cached``: videos read from the cache.
        seconds: wall time of the call; ``encoder_calls``: encoder forward passes made.
    """

    features: torch.Tensor
    labels: torch.Tensor
    videos: list[LabelledVideo]
    failed: list[tuple[str, str]] = field(default_factory=list)
    encoded: int = 0
    cached: int = 0
    seconds: float = 0.0
    encoder_calls: int = 0
    cache_dir: str | None = None

    def pooled(self, mode: str = "mean") -> torch.Tensor:
        """Video vectors: ``mean`` ``[V, D]`` or ``concat`` ``[V, T * D]`` (mean over clips)."""
        if mode == "mean":
            return self.features.mean(dim=(1, 2))
        if mode == "concat":
            return self.features.flatten(2).mean(dim=1)
        raise VideorepError(f"unknown pooling {mode!r} (mean or concat)")

    def summary(self) -> dict:
        return {
            "videos": len(self.videos),
            "failed": len(self.failed),
            "encoded": self.encoded,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "encoder_calls": self.encoder_calls,
        }


def cache_folder(
    cache_dir: str | Path,
    encoder: FrameFeatureEncoder | ClipFeatureEncoder,
    sampling: Sampling,
    transform_name: str = "none",
) -> tuple[Path, dict]:
    """``<cache_dir>/<digest>`` for this setting, and the setting as a dict."""
    config = {
        "encoder": encoder.identity,
        "kind": encoder.kind,
        "transform": transform_name,
        "sampling": asdict(sampling)
        if encoder.kind == "clips"
        else {"frames": sampling.frames, "size": sampling.size},
        "format": 1,
    }
    text = json.dumps(config, sort_keys=True)
    digest = hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
    return Path(cache_dir) / digest, config


def _entry_name(video: LabelledVideo) -> str:
    return hashlib.blake2b(video.key().encode(), digest_size=16).hexdigest()


def _prepare(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 -> ``[T, 3, h, w]`` float in [0, 1] at ``size``."""
    return resize(torch.stack([to_tensor(f) for f in frames]), size)


def extract_features(
    collection: Collection | Sequence[LabelledVideo],
    encoder: FrameFeatureEncoder | ClipFeatureEncoder,
    sampling: Sampling,
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    transform: ClipTransform | None = None,
    transform_name: str = "none",
    progress: bool = True,
    desc: str = "features",
) -> FeatureSet:
    """Features of every readable video (see the module docstring).

    Args:
        collection: the videos.
        encoder: a :class:`FrameFeatureEncoder` or :class:`ClipFeatureEncoder`.
        sampling: frames / clips to take.
        cache_dir: cache root (``None``: no cache).
        device: where the encoder runs.
        batch_size: frames (frame encoders) or clips (video encoders) per encoder call.
        transform: optional per-clip transform in [0, 1] space before normalisation (the
            static / dynamic versions); ``transform_name`` keys it in the cache.

    Returns:
        A :class:`FeatureSet`; videos that cannot be decoded are skipped (one warning each).

    Raises:
        VideorepError: no video of the collection could be read, a damaged cache entry.
    """
    if transform is not None and transform_name == "none":
        raise VideorepError("a clip transform needs a name (it keys the feature cache)")
    videos = list(collection)
    start = time.perf_counter()
    device = torch.device(device)
    moved = False  # the encoder is built and moved only when a video has to be encoded
    calls0 = encoder.calls
    folder = None
    if cache_dir is not None:
        folder, config = cache_folder(cache_dir, encoder, sampling, transform_name)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = folder / "config.json"
        if not cfg.is_file():
            tmp = cfg.with_name(f".config.json.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, cfg)
    size = encoder.input_size(sampling.size)
    results: dict[int, torch.Tensor] = {}
    failed: dict[int, str] = {}
    todo: list[int] = []
    names = [None] * len(videos)
    for i, v in enumerate(videos):
        try:
            names[i] = _entry_name(v)
        except VideorepError as exc:
            failed[i] = str(exc)
            continue
        if folder is not None:
            entry = folder / f"{names[i]}.safetensors"
            bad = folder / f"{names[i]}.failed"
            if entry.is_file():
                t = _read_entry(entry, *_expected(encoder, sampling))
                results[i] = t
                continue
            if bad.is_file():
                failed[i] = bad.read_text(encoding="utf-8", errors="replace").strip()
                continue
        todo.append(i)
    cached = len(results)
    bar = progress_bar(len(todo), desc=desc, disable=not progress) if todo else None
    pending: list[tuple[int, torch.Tensor]] = []  # (video, [K or T, 3, h, w] input)
    pending_items = 0
    limit = max(1, batch_size)

    def flush() -> None:
        nonlocal pending, pending_items
        if not pending:
            return
        nonlocal moved
        if not moved:
            encoder.to(device)
            moved = True
        x = torch.cat([p for _, p in pending]).to(device)
        x = normalize(x)
        out = encoder(x).cpu()
        pos = 0
        for i, p in pending:
            n = len(p)
            feats = out[pos : pos + n]
            pos += n
            feats = feats[None] if encoder.kind == "frames" else feats  # [1, T, D] / [K, T', C]
            results[i] = feats.contiguous()
            if folder is not None:
                _write_entry(folder / f"{names[i]}.safetensors", results[i])
            if bar is not None:
                bar.update(1)
        pending, pending_items = [], 0

    for i in todo:
        v = videos[i]
        try:
            if encoder.kind == "frames":
                arr = read_uniform(v, sampling.frames)
                x = _prepare(arr, size)
                if transform is not None:
                    x = transform(x, _seed(names[i]))
            else:
                arr = read_clips(v, sampling.clip_len, sampling.stride, sampling.clips)
                clips = [_prepare(c, size) for c in arr]
                if transform is not None:
                    clips = [transform(c, _seed(names[i]) + k) for k, c in enumerate(clips)]
                x = torch.stack(clips)
        except VideorepError as exc:
            reason = str(exc)
            failed[i] = reason
            warnings.warn(f"{reason} (video skipped)", DataWarning, stacklevel=2)
            if folder is not None:
                _write_text(folder / f"{names[i]}.failed", reason)
            if bar is not None:
                bar.update(1)
            continue
        pending.append((i, x))
        pending_items += len(x)
        if pending_items >= limit:
            flush()
    flush()
    if bar is not None:
        bar.close()
    keep = sorted(results)
    if not keep:
        raise VideorepError(
            f"no video could be read ({len(failed)} failed; first: "
            f"{next(iter(failed.values()), 'none')})"
        )
    shapes = {tuple(results[i].shape[1:]) for i in keep}
    if len(shapes) > 1:
        raise VideorepError(
            f"video features differ in shape across videos: {sorted(shapes)[:3]} (a stale "
            f"cache entry in {folder}?)"
        )
    return FeatureSet(
        features=torch.stack([results[i] for i in keep]),
        labels=torch.tensor([videos[i].label for i in keep], dtype=torch.long),
        videos=[videos[i] for i in keep],
        failed=[(str(videos[i].path), failed[i]) for i in sorted(failed)],
        encoded=len(keep) - cached,
        cached=cached,
        seconds=time.perf_counter() - start,
        encoder_calls=encoder.calls - calls0,
        cache_dir=None if folder is None else str(folder),
    )


def _expected(encoder, sampling: Sampling) -> tuple[int, None]:  # noqa: ANN001
    """(first dimension, feature dim) of the cache entries; the dim is checked when stacking."""
    return (1 if encoder.kind == "frames" else sampling.clips), None


def _seed(name: str) -> int:
    return int(name[:8], 16)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
