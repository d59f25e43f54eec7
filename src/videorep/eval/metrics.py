"""Scores for dense propagation: DAVIS J/F with its statistics, VIP mIoU, JHMDB PCK.

The DAVIS functions follow the official davis2017-evaluation formulas:

* J (``region_similarity``): ``|P & G| / |P | G|`` (over the pixels outside an optional ``void``
  mask; the DAVIS scorer passes none by default, as the official one), 1 when the union is empty.
* F (``boundary_f``): boundaries from ``seg2bmap`` (1-pixel wide, offset half a pixel towards the
  origin), of the masks with void pixels removed; a boundary pixel matches when the other
  boundary lies within a disk of radius ``ceil(0.008 * image diagonal)`` pixels (``x^2 + y^2 <=
  r^2``, the ``skimage.morphology.disk`` the official code dilates with). The dilation is
  computed exactly through a Euclidean distance transform instead of ``cv2.dilate``.
  Precision/recall conventions for empty boundaries are the official ones.
* ``db_statistics``: mean, recall (fraction of frames > 0.5) and decay (mean of the first quarter
  of frames minus mean of the last quarter, quarters from ``round(linspace(1, n, 5)) - 1`` with
  overlapping bin ends), NaN-aware. (The official code stores the bin edges as uint8, which wraps
  for sequences over 255 frames; here they are plain integers.)
* Per object, the statistics run over all frames but the first and the last; dataset J&F mean =
  (mean of per-object J means + mean of per-object F means) / 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

BOUNDARY_TOLERANCE = 0.008


def region_similarity(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """Jaccard index of two ``[H, W]`` binary masks, ignoring ``void`` pixels (1 if both empty)."""
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: {gt.shape} vs {pred.shape}")
    gt = gt.astype(bool)
    pred = pred.astype(bool)
    keep = np.ones_like(gt) if void is None else ~void.astype(bool)
    inter = np.count_nonzero(gt & pred & keep)
    union = np.count_nonzero((gt | pred) & keep)
    return 1.0 if union == 0 else inter / union


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """``[H, W]`` mask -> ``[H, W]`` bool boundary map, 1 pixel wide, shifted half a pixel up-left.

    A pixel is a boundary pixel when it differs from its east, south or south-east neighbour; on
    the last row only the east neighbour counts, on the last column only the south one, and the
    bottom-right pixel is never a boundary pixel.
    """
    seg = seg.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def boundary_radius(shape: Sequence[int], bound_th: float = BOUNDARY_TOLERANCE) -> float:
    """Tolerance in pixels: ``bound_th`` itself if >= 1, else ``ceil(bound_th * diagonal)``."""
    if bound_th >= 1:
        return float(bound_th)
    return float(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def _within(bmap: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within Euclidean distance ``radius`` of a True pixel of ``bmap`` (disk dilation)."""
    dist = ndimage.distance_transform_edt(~bmap)
    return dist <= radius


def boundary_f(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = BOUNDARY_TOLERANCE,
) -> float:
    """Boundary F-measure of two ``[H, W]`` binary masks (official DAVIS definition)."""
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: {gt.shape} vs {pred.shape}")
    keep = np.ones(gt.shape, bool) if void is None else ~void.astype(bool)
    radius = boundary_radius(gt.shape, bound_th)
    fg_b = seg2bmap(pred.astype(bool) & keep)
    gt_b = seg2bmap(gt.astype(bool) & keep)
    n_fg = int(np.count_nonzero(fg_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.count_nonzero(fg_b & _within(gt_b, radius)) / n_fg
        recall = np.count_nonzero(gt_b & _within(fg_b, radius)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def db_statistics(per_frame: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, recall, decay)`` of per-frame values, as the DAVIS toolkit computes them."""
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    with np.errstate(invalid="ignore"), _quiet():
        mean = float(np.nanmean(values))
        recall = float(np.nanmean(values > 0.5))
        ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
        bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


class _quiet:
    """Silence numpy's 'mean of empty slice' warnings inside ``with``."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


def frame_scores(
    gt: np.ndarray, pred: np.ndarray, n_objects: int, void: np.ndarray | None = None
) -> tuple[list[float], list[float]]:
    """Per-object ``(J, F)`` of one frame: ``gt``/``pred`` are ``[H, W]`` object-index maps."""
    js, fs = [], []
    for obj in range(1, n_objects + 1):
        g = gt == obj
        p = pred == obj
        js.append(region_similarity(g, p, void))
        fs.append(boundary_f(g, p, void))
    return js, fs


def summarize_objects(j_frames: np.ndarray, f_frames: np.ndarray) -> dict:
    """Per-object statistics from ``[n_objects, n_frames]`` J and F (frames already trimmed)."""
    objects = []
    for j_row, f_row in zip(j_frames, f_frames):
        jm, jr, jd = db_statistics(j_row)
        fm, fr, fd = db_statistics(f_row)
        objects.append(
            {
                "J_mean": jm, "J_recall": jr, "J_decay": jd,
                "F_mean": fm, "F_recall": fr, "F_decay": fd,
            }
        )  # fmt: skip
    return {"objects": objects}


def davis_summary(per_object: Sequence[dict]) -> dict:
    """Dataset statistics from per-object dicts (as ``summarize_objects`` makes), official rule."""
    if not per_object:
        return {}
    out = {}
    for key in ("J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay"):
        out[key] = float(np.mean([o[key] for o in per_object]))
    out["JF_mean"] = (out["J_mean"] + out["F_mean"]) / 2.0
    return out


def confusion_matrix(
    gt: np.ndarray, pred: np.ndarray, n_classes: int, ignore: int = 255
) -> np.ndarray:
    """``[n_classes, n_classes]`` counts (rows: ground truth, columns: prediction), ``ignore`` skipped."""
    keep = gt != ignore
    g = gt[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if g.size and (g.max() >= n_classes or p.max() >= n_classes):
        raise ValueError(f"labels must be < {n_classes}")
    return np.bincount(g * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU from a confusion matrix; NaN for classes absent from both maps."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean over classes present in the ground truth or the prediction."""
    ious = iou_per_class(conf)
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


PCK_BOX_FACTOR = 0.6


def pck_reference_sizes(gt: np.ndarray) -> np.ndarray:
    """Per-frame person size for PCK: ``0.6 * diagonal`` of the joints' bounding box (CRW/UVC).

    ``gt`` is ``[T, J, 2]`` joint coordinates (x, y) in pixels; returns ``[T]``.
    """
    lo = gt.min(axis=1)
    hi = gt.max(axis=1)
    return PCK_BOX_FACTOR * np.linalg.norm(hi - lo, axis=-1)


def pck_distances(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``[T, J]`` joint errors divided by the frame's person size (``pck_reference_sizes``)."""
    dist = np.linalg.norm(pred - gt, axis=-1)
    size = pck_reference_sizes(gt)
    with np.errstate(divide="ignore", invalid="ignore"):
        return dist / size[:, None]


def pck(normalised: np.ndarray, threshold: float) -> float:
    """PCK from ``[N, J]`` normalised distances: per-joint fraction ``<= threshold``, mean over joints."""
    if normalised.size == 0:
        return float("nan")
    return float(np.mean(np.mean(normalised <= threshold, axis=0)))
