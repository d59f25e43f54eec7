"""The evaluation core shared by DAVIS, VIP and JHMDB.

* :class:`FeatureExtractor` - one frame ``[H, W, 3]`` uint8 -> features ``[h, w, D]``: resize to
  the input size snapped to the patch grid (``snap_to_patch``: each side rounded to the nearest
  multiple of the patch size, so ``480x880`` is ``476x882`` for patch 14), ImageNet-normalise,
  encode, optionally project. The grid ``(h, w)`` comes from the encoder, never hard-coded.
* :func:`propagate_frames` - the one propagation loop: frames are read lazily one at a time,
  encoded once, and handed to :class:`~videorep.eval.propagation.LabelPropagator`, whose ring
  buffer caches them for the queue. Memory does not grow with the video length.
* Label helpers: index map -> soft labels at feature resolution (area average of the one-hot map,
  void pixels carry no label), soft labels -> full-resolution index map (bilinear upsampling of
  the soft labels, then argmax), and the indexed-PNG writer with the DAVIS palette.
* :func:`atomic_write_bytes` - every output file (PNG, JSON) goes through a temporary file and
  ``os.replace``, so a kill or a full disk never leaves a truncated file under its final name.

Per-sequence work is a pure function of the sequence (see ``davis.evaluate_sequence`` and
friends), so a sharded run can give each rank a subset of sequences and merge the results.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from videorep.data.davis import davis_palette
from videorep.data.images import load_image, normalize, resize, snap_to_patch, to_tensor
from videorep.errors import VideorepError
from videorep.eval.propagation import LabelPropagator, PropagationConfig

Projection = Callable[[torch.Tensor], torch.Tensor]


class FeatureExtractor:
    """Frames -> L2-normalisable patch features ``[h, w, D]`` through an encoder and projection.

    Args:
        encoder: maps ``[B, 3, H, W]`` ImageNet-normalised images to ``[B, h*w, D]`` tokens and has
            ``patch_size`` and ``grid(H, W)`` (see ``videorep.backbones.ImageEncoder``).
        size: requested input ``(H, W)``; snapped to the patch grid.
        projection: optional ``[B, N, D] -> [B, N, D']`` map applied to the tokens.
        batch_frames: frames per encoder call when :func:`propagate_frames` encodes a video
            (``--batch-frames``; the features stay on the encoder's device).
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        size: tuple[int, int],
        projection: Projection | None = None,
        batch_frames: int = 1,
    ) -> None:
        if batch_frames < 1:
            raise VideorepError(f"--batch-frames {batch_frames}: must be at least 1")
        self.encoder = encoder
        self.projection = projection
        self.batch_frames = int(batch_frames)
        self.patch_size = int(encoder.patch_size)
        self.input_size = snap_to_patch(tuple(size), self.patch_size)
        self.grid = tuple(encoder.grid(*self.input_size))

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        """``[H0, W0, 3]`` uint8 -> ``[h, w, D]`` float32 features."""
        return self.batch([rgb])[0]

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """``B`` frames ``[H0, W0, 3]`` uint8 -> ``[B, 3, H, W]`` encoder input on its device.

        Each frame is resized (bicubic, antialiased) to ``input_size`` and ImageNet-normalised.
        """
        x = torch.stack([normalize(resize(to_tensor(rgb), self.input_size)) for rgb in frames])
        device = self.device
        if device.type == "cuda":  # asynchronous copy from pinned host memory
            return x.pin_memory().to(device, non_blocking=True)
        return x.to(device)

    @property
    def device(self) -> torch.device:
        """Where the encoder runs, and where the features it returns live."""
        return _device_of(self.encoder)

    @torch.no_grad()
    def batch(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """``B`` frames ``[H0, W0, 3]`` uint8 -> ``[B, h, w, D]`` float32 features, one encoder call.

        Each frame is resized on its own (frames may differ in size), then the batch is encoded
        at once on the encoder's device; one frame gives exactly what ``__call__`` gives.
        """
        tokens = self.encoder(self.preprocess(frames))
        if self.projection is not None:
            tokens = self.projection(tokens)
        h, w = self.grid
        if tokens.shape[1] != h * w:
            raise VideorepError(
                f"encoder returned {tokens.shape[1]} tokens for a {h}x{w} grid at "
                f"{self.input_size[0]}x{self.input_size[1]}"
            )
        return tokens.float().reshape(len(frames), h, w, -1)


def _device_of(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (CPU for a module without any)."""
    params = getattr(module, "parameters", None)
    param = next(params(), None) if params is not None else None
    return param.device if param is not None else torch.device("cpu")


def propagate_frames(
    frames: Iterable[Path | str] | Iterable[np.ndarray] | Iterable[torch.Tensor],
    label0: torch.Tensor,
    extract: Callable[[np.ndarray], torch.Tensor],
    config: PropagationConfig,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Propagate ``label0 [C, h, w]`` through a video, yielding ``(t, soft labels [C, h, w])``.

    ``frames`` are image paths (read lazily with ``load_image``), ``[H, W, 3]`` uint8 arrays, or
    anything else ``extract`` accepts (e.g. precomputed features with an identity ``extract``);
    ``extract`` maps a frame to features ``[h, w, D]``. Frame 0 is consumed as the anchor and not
    yielded. ``on_frame(t, rgb)`` sees every decoded frame (e.g. for visualisation).

    When ``extract`` has ``batch`` and ``batch_frames > 1`` (a :class:`FeatureExtractor` built
    with ``batch_frames``), frames are decoded and encoded ``batch_frames`` at a time (one
    encoder call, ``[B, h, w, D]``) and then propagated one by one: memory holds one batch of
    frames and features besides the propagator's fixed ring buffer, whatever the video length.
    The propagator's buffers live on the features' device (the encoder's); the soft labels
    yielded are on that device too.
    """
    prop = LabelPropagator(config)
    for t, rgb, feat in _encoded(frames, extract):
        if on_frame is not None:  # just before frame t's prediction, also when batching
            on_frame(t, rgb)
        if t == 0:
            if tuple(feat.shape[:2]) != tuple(label0.shape[1:]):
                raise VideorepError(
                    f"first-frame labels are {tuple(label0.shape[1:])} but the features are "
                    f"{tuple(feat.shape[:2])}"
                )
            prop.reset(feat, label0.to(feat.device))
            continue
        yield t, prop.step(feat)


def _encoded(frames: Iterable, extract: Callable) -> Iterator[tuple[int, object, torch.Tensor]]:
    """``(t, frame, features [h, w, D])`` of each frame, ``extract.batch_frames`` per encoder
    call when ``extract`` can batch (else one ``extract(frame)`` per frame)."""
    batch_frames = int(getattr(extract, "batch_frames", 1) or 1)
    batch = getattr(extract, "batch", None) if batch_frames > 1 else None
    pending: list[tuple[int, object]] = []

    def flush() -> Iterator[tuple[int, object, torch.Tensor]]:
        feats = batch([rgb for _, rgb in pending])  # [B, h, w, D]
        for (t, rgb), feat in zip(pending, feats):
            yield t, rgb, feat
        pending.clear()

    for t, item in enumerate(frames):
        rgb = load_image(item) if isinstance(item, (str, Path)) else item
        if batch is None:
            yield t, rgb, extract(rgb)
            continue
        pending.append((t, rgb))
        if len(pending) == batch_frames:
            yield from flush()
    if pending:
        yield from flush()


def propagate_masks(
    frames: Iterable[Path | str] | Iterable[np.ndarray] | Iterable[torch.Tensor],
    labels0: np.ndarray,
    n_classes: int,
    extract: Callable[..., torch.Tensor],
    grid: tuple[int, int],
    config: PropagationConfig,
    size: tuple[int, int],
    void0: np.ndarray | None = None,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
    input_size: tuple[int, int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Propagate a first-frame index map through ``frames``: yields ``(t, [H, W] uint8)``, t >= 1.

    The path every label-propagation user takes (``eval davis``, ``videorep propagate``,
    ``videorep.propagate``): ``labels0 [H, W]`` (object indices ``0..n_classes-1``, ``void0``
    pixels carrying no label) -> soft labels ``[n_classes, *grid]`` (:func:`index_to_soft`) ->
    :func:`propagate_frames` -> each prediction upsampled to ``size = (H, W)`` and arg-maxed
    (:func:`soft_to_index`). ``extract`` maps one item of ``frames`` to features ``[h, w, D]``.
    The label conversions follow ``config.label_down`` / ``label_up``
    (:mod:`videorep.eval.labels`; ``input_size``: the encoder's input ``(H', W')``).
    """
    from videorep.eval.labels import grid_to_labels, labels_to_grid

    soft0 = labels_to_grid(labels0, n_classes, grid, config, input_size, void0)
    for t, soft in propagate_frames(frames, soft0, extract, config, on_frame):
        yield t, grid_to_labels(soft, size, config, input_size)


def index_to_soft(
    labels: np.ndarray, n_classes: int, grid: tuple[int, int], void: np.ndarray | None = None
) -> torch.Tensor:
    """``[H, W]`` index map -> ``[C, h, w]`` soft labels (area average of the one-hot map).

    Void pixels contribute to no channel, so a patch that is half void carries half the mass.
    """
    lab = torch.from_numpy(np.ascontiguousarray(labels)).long()
    if int(lab.max()) >= n_classes:
        raise ValueError(f"label {int(lab.max())} >= n_classes {n_classes}")
    onehot = F.one_hot(lab, n_classes).permute(2, 0, 1).float()  # [C, H, W]
    if void is not None:
        onehot *= torch.from_numpy(~void.astype(bool)).float()
    return F.interpolate(onehot[None], size=tuple(grid), mode="area")[0]


def soft_to_full(soft: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[C, h, w]`` -> ``[C, H, W]`` by bilinear upsampling (``align_corners=False``)."""
    return F.interpolate(
        soft[None].float(), size=tuple(size), mode="bilinear", align_corners=False
    )[0]


def soft_to_index(soft: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``[C, h, w]`` soft labels -> ``[H, W]`` uint8 index map at full resolution (argmax)."""
    return soft_to_full(soft, size).argmax(0).cpu().numpy().astype(np.uint8)


_PALETTE = davis_palette()


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A kill leaves either the previous file or the new one, never a truncated one. An ``OSError``
    (no space left, read-only or missing folder) removes the temporary file, leaves the previous
    ``path`` as it was, and becomes one :class:`VideorepError` naming ``path``. ``fsync``: flush
    to disk before the rename (for small records that must survive a crash of the machine).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise VideorepError(
            f"{path}: cannot write ({exc.strerror or exc}); any previous version is left as it was"
        ) from None


def write_indexed_png(path: Path, index_map: np.ndarray) -> None:
    """Write an ``[H, W]`` uint8 index map as a palette PNG with the DAVIS palette (atomically)."""
    im = Image.fromarray(np.ascontiguousarray(index_map.astype(np.uint8)), mode="P")
    im.putpalette(_PALETTE)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())


def palette_rgb(index_map: np.ndarray) -> np.ndarray:
    """``[H, W]`` index map -> ``[H, W, 3]`` uint8 colours of the DAVIS palette."""
    pal = np.asarray(_PALETTE, dtype=np.uint8).reshape(256, 3)
    return pal[index_map.astype(np.uint8)]
