"""Training samples: Co-Settle frame pairs (or short walks) and contrastive multi-view clips.

Both datasets share one sampling scheme:

- **Determinism.** Every random choice of item ``i`` in epoch ``e`` comes from a
  ``torch.Generator`` seeded from ``(seed, e, i)`` only, never from global RNG, so a resumed run
  (``dataset.set_epoch(e)``) replays exactly the same samples, with any number of workers.
  Draw order: the frame positions of every view, then per view the crop (torchvision
  ``RandomResizedCrop.get_params`` semantics) and the flip.
- **Augmentation** (:func:`augment`): one RandomResizedCrop and one horizontal-flip decision shared
  by all frames of a view, bicubic antialiased resize to ``size x size``, ImageNet normalisation.
- **Bad input.** Sources too short for the requested frames are dropped at construction with one
  :class:`~videorep.data.sources.DataWarning` each (``VideorepError`` if none is left). If reading
  an item fails mid-epoch, one warning names the file (once per source and process) and a
  deterministic substitute item (next source, randomness from ``(seed, e, i, attempt)``) is
  returned instead, so an epoch never crashes on one broken file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from videorep.data.images import normalize, resize, to_tensor
from videorep.data.sources import VideoSource, warn
from videorep.errors import VideorepError

MAX_SUBSTITUTIONS = 16


def make_generator(*keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by a hash of integer ``keys`` (e.g. seed, epoch, index)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in keys])
    seed = int(state.generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)
    return torch.Generator().manual_seed(seed)


def _uniform(low: float, high: float, gen: torch.Generator) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=gen).item())


def _randint(high: int, gen: torch.Generator) -> int:
    """Uniform integer in ``[0, high)``."""
    return int(torch.randint(0, high, (1,), generator=gen).item())


def crop_params(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    gen: torch.Generator,
    tries: int = 10,
) -> tuple[int, int, int, int]:
    """RandomResizedCrop box ``(top, left, h, w)`` for an image of ``height x width``.

    Same rule and same sequence of draws as torchvision's ``RandomResizedCrop.get_params`` (up to
    ``tries`` (10) tries of area fraction in ``scale`` and log-uniform aspect ratio in ``ratio``,
    then a central crop clamped to ``ratio``), but drawing from ``gen``. ``tries=1`` is the
    single-try crop of BYOL-style pipelines (one draw; if it does not fit, the fallback: the
    whole frame for a square one).
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(tries):
        target_area = area * _uniform(scale[0], scale[1], gen)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], gen))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = _randint(height - h + 1, gen)
            left = _randint(width - w + 1, gen)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def augment(
    frames: Sequence[np.ndarray],
    gen: torch.Generator,
    size: int = 224,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
    squash: int | None = None,
    tries: int = 10,
) -> torch.Tensor:
    """One shared crop + flip for all ``frames``, resized and ImageNet-normalised.

    Args:
        frames: ``T`` arrays ``[H, W, 3]`` uint8; frames whose size differs from the first are
            resized to it first.
        gen: source of the crop and flip draws (crop first, then one flip draw if ``flip``).
        squash: resize every frame to ``squash x squash`` first (aspect ratio not kept), as the
            Co-Settle authors' pipeline does (``--crop authors``); ``None``: crop from the frame
            at its own resolution (``--crop full-res``).
        tries: crop draws before the fallback (:func:`crop_params`).

    Returns:
        ``[T, 3, size, size]`` float32, ImageNet-normalised.
    """
    if squash is not None:
        frames = [resize(to_tensor(np.array(f)), (squash, squash)) for f in frames]
        frames = [(f.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy() for f in frames]
    height, width = frames[0].shape[:2]
    top, left, h, w = crop_params(height, width, scale, ratio, gen, tries)
    do_flip = flip and _uniform(0.0, 1.0, gen) < 0.5
    crops = []
    for frame in frames:
        if frame.shape[:2] != (height, width):
            frame = resize(to_tensor(np.array(frame)), (height, width))
            crops.append(frame[:, top : top + h, left : left + w])
        else:  # crop before converting: copies (and converts) only the crop
            crops.append(to_tensor(np.array(frame[top : top + h, left : left + w])))
    out = resize(torch.stack(crops), (size, size))
    if do_flip:
        out = out.flip(-1)
    return normalize(out).contiguous()


class _SampledDataset(Dataset):
    """Shared machinery: source filtering, per-item generators, failure substitution."""

    def __init__(
        self,
        sources: Sequence[VideoSource],
        size: int,
        scale: tuple[float, float],
        ratio: tuple[float, float],
        flip: bool,
        seed: int,
        repeats: int = 1,
        squash: int | None = None,
        tries: int = 10,
    ) -> None:
        self.squash = squash
        self.tries = int(tries)
        if int(repeats) < 1:
            raise VideorepError(f"repeats {repeats}: must be >= 1 (items per source per epoch)")
        self.repeats = int(repeats)
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip = bool(flip)
        self.seed = int(seed)
        self.epoch = 0
        self.sources: list[VideoSource] = []
        self.source_ids: list[int] = []
        for k, source in enumerate(sources):
            need = self._min_frames(source.num_frames)
            if source.num_frames < need:
                warn(
                    f"{source.path}: skipped: {source.num_frames} frame(s), "
                    f"{self._requirement(source.num_frames)} needs {need}"
                )
                continue
            self.sources.append(source)
            self.source_ids.append(k)
        if not self.sources:
            raise VideorepError(
                f"none of the {len(sources)} sources is long enough for {type(self).__name__} "
                f"({self._requirement(None)}); see the warnings"
            )
        self._warned: set[int] = set()

    # subclasses: how many frames a source needs and which frames (views x frames) to read
    def _min_frames(self, n: int) -> int:
        raise NotImplementedError

    def _requirement(self, n: int | None) -> str:
        raise NotImplementedError

    def _sample(self, n: int, gen: torch.Generator) -> list[list[int]]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.repeats * len(self.sources)

    def _load(self, index: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """``(position in self.sources, frames [V, T, 3, S, S], indices [V, T])`` for ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        for attempt in range(MAX_SUBSTITUTIONS + 1):
            pos = (index + attempt) % len(self.sources)
            keys = (self.seed, self.epoch, index) + ((attempt,) if attempt else ())
            gen = make_generator(*keys)
            source = self.sources[pos]
            views = self._sample(source.num_frames, gen)
            wanted = sorted({i for view in views for i in view})
            try:
                images = dict(zip(wanted, source.read(wanted)))
            except Exception as exc:  # noqa: BLE001 - any broken file must not stop an epoch
                if pos not in self._warned:
                    self._warned.add(pos)
                    reason = str(exc) if isinstance(exc, VideorepError) else repr(exc)
                    if not reason.startswith(str(source.path)):
                        reason = f"{source.path}: {reason}"
                    warn(f"{reason}; substituting another item (warned once per source)")
                continue
            out = torch.stack(
                [
                    augment(
                        [images[i] for i in view],
                        gen,
                        self.size,
                        self.scale,
                        self.ratio,
                        self.flip,
                        self.squash,
                        self.tries,
                    )
                    for view in views
                ]
            )
            return pos, out, torch.tensor(views, dtype=torch.long)
        raise VideorepError(
            f"item {index}: {MAX_SUBSTITUTIONS + 1} sources in a row failed to read, starting "
            f"at {self.sources[index % len(self.sources)].path}; see the warnings"
        )


class FramePairDataset(_SampledDataset):
    """Co-Settle training pairs: two frames ``delta`` of the video length apart.

    Frame gap ``g = max(1, round(delta * n))`` for a source of ``n`` frames; the first frame
    ``t1`` is uniform in ``[0, n - 1 - (frames - 1) * g]`` and frame ``k`` is ``t1 + k * g``
    (``frames > 2`` gives a multi-frame walk with consecutive gaps of ``g``). Sources with fewer
    than ``(frames - 1) * g + 1`` frames are skipped with a warning. ``repeats`` items per source
    and epoch: item ``i`` reads source ``i % len(self.sources)``, each item with its own draws.

    Item: ``{"frames": float [frames, 3, size, size], "source": int, "indices": long [frames],
    "index": int}`` where ``source`` indexes the ``sources`` given to the constructor.
    """

    def __init__(
        self,
        sources: Sequence[VideoSource],
        delta: float = 0.15,
        frames: int = 2,
        size: int = 224,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        seed: int = 0,
        repeats: int = 1,
        squash: int | None = None,
        tries: int = 10,
    ) -> None:
        if not 0 < delta < 1:
            raise VideorepError(f"delta {delta}: must be in (0, 1) (a fraction of video length)")
        if frames < 2:
            raise VideorepError(f"frames {frames}: need at least 2 frames per item")
        self.delta = float(delta)
        self.frames = int(frames)
        super().__init__(sources, size, scale, ratio, flip, seed, repeats, squash, tries)

    def gap(self, num_frames: int) -> int:
        """Frame gap for a source of ``num_frames`` frames."""
        return max(1, int(round(self.delta * num_frames)))

    def _min_frames(self, n: int) -> int:
        return (self.frames - 1) * self.gap(n) + 1

    def _requirement(self, n: int | None) -> str:
        gap = f"gap {self.gap(n)}" if n is not None else f"delta={self.delta:g}"
        return f"{self.frames} frames with {gap}"

    def _sample(self, n: int, gen: torch.Generator) -> list[list[int]]:
        gap = self.gap(n)
        t1 = _randint(n - (self.frames - 1) * gap, gen)
        return [[t1 + k * gap for k in range(self.frames)]]

    def __getitem__(self, index: int) -> dict:
        pos, frames, indices = self._load(int(index))
        return {
            "frames": frames[0],
            "source": self.source_ids[pos],
            "indices": indices[0],
            "index": int(index),
        }


class ClipDataset(_SampledDataset):
    """Multi-view clips for video contrastive learning (e.g. BOD-VCL).

    Each of ``views`` views takes ``clip_len`` frames ``stride`` source frames apart (in the
    source's frame units: at ``fps=f`` discovery, ``stride / f`` seconds) from its own uniformly
    drawn start, with its own crop and flip shared by its frames. Sources with fewer than
    ``(clip_len - 1) * stride + 1`` frames are skipped with a warning. ``repeats`` items per
    source and epoch, as in :class:`FramePairDataset`.

    Item: ``{"frames": float [views, clip_len, 3, size, size], "source": int,
    "indices": long [views, clip_len], "index": int}``.
    """

    def __init__(
        self,
        sources: Sequence[VideoSource],
        clip_len: int = 8,
        stride: int = 8,
        views: int = 2,
        size: int = 112,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        seed: int = 0,
        repeats: int = 1,
    ) -> None:
        if clip_len < 1 or stride < 1 or views < 1:
            raise VideorepError(
                f"clip_len={clip_len}, stride={stride}, views={views}: all must be >= 1"
            )
        self.clip_len = int(clip_len)
        self.stride = int(stride)
        self.views = int(views)
        super().__init__(sources, size, scale, ratio, flip, seed, repeats)

    def _min_frames(self, n: int) -> int:
        return (self.clip_len - 1) * self.stride + 1

    def _requirement(self, n: int | None) -> str:
        return f"a clip of {self.clip_len} frames at stride {self.stride}"

    def _sample(self, n: int, gen: torch.Generator) -> list[list[int]]:
        span = (self.clip_len - 1) * self.stride
        out = []
        for _ in range(self.views):
            start = _randint(n - span, gen)
            out.append([start + k * self.stride for k in range(self.clip_len)])
        return out

    def __getitem__(self, index: int) -> dict:
        pos, frames, indices = self._load(int(index))
        return {
            "frames": frames,
            "source": self.source_ids[pos],
            "indices": indices,
            "index": int(index),
        }
