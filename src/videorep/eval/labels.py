"""First-frame labels to the feature grid and predictions back to the frame, as each preset does.

The propagation engine works on soft labels ``[C, h, w]`` at the feature grid; how an index map
becomes such labels and how a prediction becomes an index map again is part of each reference
protocol (``PropagationConfig.label_down`` / ``label_up``):

* ``label_down="area"``: one-hot at the frame's size, area average to the grid (videorep's own).
* ``label_down="nearest"``: the index map resized straight to the grid with PIL's nearest filter,
  then one-hot (DINO ``eval_video_segmentation.py`` ``read_seg``).
* ``label_down="bilinear"``: the index map resized to the encoder input size with the nearest rule
  of ``cv2.INTER_NEAREST`` (source index ``floor(x * src / dst)``), one-hot, bilinear
  (half-pixel centres, no antialiasing, as ``cv2.INTER_LINEAR``) down to the grid (CRW /
  CropMAE ``data/vos.py``).
* ``label_up="frame"``: bilinear up to the frame's size, argmax (videorep's own).
* ``label_up="input"``: bilinear up to the input size, argmax, cv2-rule nearest to the frame's
  size (CRW / CropMAE ``dump_predictions`` then ``convert_davis``).
* ``label_up="input-normmask"``: bilinear up to the input size (DINO: ``scale_factor`` = patch
  size, the same sampling grid), per-channel min-max ``norm_mask``, argmax, PIL nearest to the
  frame's size (DINO).

Void pixels (``void`` mask) carry no label in every mode (their one-hot row is zero). cv2 is not
a dependency: its two resizes are reproduced with torch (bilinear: the same half-pixel formula,
float32 differences below 1e-4) and with numpy index arithmetic (nearest: exactly cv2's rule).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from videorep.eval.propagation import PropagationConfig


def cv2_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` -> ``[h, w]`` by ``cv2.INTER_NEAREST``'s rule: source ``floor(x * (1 / (w / W)))``."""
    src_h, src_w = array.shape[:2]
    h, w = size

    def index(dst: int, src: int) -> np.ndarray:
        scale = 1.0 / (dst / src)
        return np.minimum(np.floor(np.arange(dst) * scale).astype(np.int64), src - 1)

    return array[index(h, src_h)][:, index(w, src_w)]


def pil_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` uint8 -> ``[h, w]`` with PIL's ``Image.resize(..., NEAREST)`` (pixel centres)."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize(size[::-1], 0))


def _onehot(labels: np.ndarray, n_classes: int, void: np.ndarray | None) -> torch.Tensor:
    lab = torch.from_numpy(np.ascontiguousarray(labels)).long()
    if int(lab.max()) >= n_classes:
        raise ValueError(f"label {int(lab.max())} >= n_classes {n_classes}")
    onehot = F.one_hot(lab, n_classes).permute(2, 0, 1).float()  # [C, H, W]
    if void is not None:
        onehot *= torch.from_numpy(~np.asarray(void).astype(bool)).float()
    return onehot


def labels_to_grid(
    labels: np.ndarray,
    n_classes: int,
    grid: tuple[int, int],
    config: PropagationConfig,
    input_size: tuple[int, int] | None = None,
    void: np.ndarray | None = None,
) -> torch.Tensor:
    """``[H, W]`` index map -> ``[C, h, w]`` soft labels by ``config.label_down`` (module doc).

    ``input_size``: the encoder's input ``(H', W')`` (``"bilinear"`` mode; default the frame's).
    """
    mode = config.label_down
    if mode == "area":
        onehot = _onehot(labels, n_classes, void)
        return F.interpolate(onehot[None], size=tuple(grid), mode="area")[0]
    if mode == "nearest":
        small = pil_nearest(labels.astype(np.uint8), grid)
        small_void = None if void is None else pil_nearest(void.astype(np.uint8), grid)
        return _onehot(small, n_classes, small_void)
    size = tuple(input_size) if input_size is not None else tuple(labels.shape)
    big = cv2_nearest(labels, size)
    big_void = None if void is None else cv2_nearest(np.asarray(void), size)
    onehot = _onehot(big, n_classes, big_void)
    return F.interpolate(onehot[None], size=tuple(grid), mode="bilinear", align_corners=False)[0]


def norm_mask(soft: torch.Tensor) -> torch.Tensor:
    """DINO's ``norm_mask``: each channel of ``[C, H, W]`` with a positive maximum is shifted to
    minimum 0 and divided by its new maximum (in place; returned)."""
    for c in range(soft.shape[0]):
        ch = soft[c]
        if ch.max() > 0:
            ch = ch - ch.min()
            soft[c] = ch / ch.max()
    return soft


def grid_to_labels(
    soft: torch.Tensor,
    size: tuple[int, int],
    config: PropagationConfig,
    input_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """``[C, h, w]`` soft labels -> ``[H, W]`` uint8 index map at the frame ``size`` by
    ``config.label_up`` (module doc); ``input_size`` defaults to ``size``."""
    mode = config.label_up
    target = tuple(size) if mode == "frame" or input_size is None else tuple(input_size)
    up = F.interpolate(soft[None].float(), size=target, mode="bilinear", align_corners=False)[0]
    if mode == "input-normmask":
        up = norm_mask(up)
    index = up.argmax(0).cpu().numpy().astype(np.uint8)
    if target == tuple(size):
        return index
    if mode == "input":
        return cv2_nearest(index, size)
    return pil_nearest(index, size)


__all__ = ["cv2_nearest", "grid_to_labels", "labels_to_grid", "norm_mask", "pil_nearest"]
