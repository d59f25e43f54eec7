"""JHMDB pose propagation: PCK@0.1 / PCK@0.2.

The 15 joints of the first frame become 15 Gaussian heat maps at feature resolution (the grid the
encoder gives for the input size, never hard-coded; ``sigma`` in feature cells), which are
propagated like any soft labels. Each later frame's joints are decoded as the arg-max cell of each
channel, mapped back to the cell centre in original pixels. Normalisation as CRW/UVC: a joint is
correct when its error is at most ``alpha * 0.6 * diagonal of the ground-truth joints' bounding
box`` in that frame; PCK is the per-joint fraction of correct frames averaged over the 15 joints,
over all frames but the first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videorep.data.jhmdb import JhmdbVideo, list_videos, load_video
from videorep.eval.core import propagate_frames
from videorep.eval.metrics import pck, pck_distances
from videorep.eval.propagation import PropagationConfig
from videorep.eval.runner import Benchmark, Item, run_benchmark

THRESHOLDS = (0.1, 0.2)
PCK_NORMALISATION = "0.6 * diagonal of the ground-truth joints' bounding box (CRW/UVC)"


def joints_to_heatmaps(
    joints: np.ndarray, image_size: tuple[int, int], grid: tuple[int, int], sigma: float = 1.0
) -> torch.Tensor:
    """``[J, 2]`` (x, y) pixels -> ``[J, h, w]`` Gaussian heat maps (peak 1) at feature resolution.

    A pixel coordinate maps to the grid by ``(x + 0.5) * w / W - 0.5`` (cell centres).
    """
    (H, W), (h, w) = image_size, grid
    fx = (joints[:, 0] + 0.5) * w / W - 0.5
    fy = (joints[:, 1] + 0.5) * h / H - 0.5
    ys = torch.arange(h, dtype=torch.float32)[None, :, None]
    xs = torch.arange(w, dtype=torch.float32)[None, None, :]
    cx = torch.as_tensor(fx, dtype=torch.float32)[:, None, None]
    cy = torch.as_tensor(fy, dtype=torch.float32)[:, None, None]
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


def heatmaps_to_joints(maps: torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
    """``[J, h, w]`` -> ``[J, 2]`` (x, y) pixels: arg-max cell of each channel, at its centre."""
    j, h, w = maps.shape
    idx = maps.reshape(j, -1).argmax(1).cpu()
    iy, ix = (idx // w).numpy(), (idx % w).numpy()
    H, W = image_size
    return np.stack([(ix + 0.5) * W / w - 0.5, (iy + 0.5) * H / h - 0.5], axis=1)


def evaluate_video(
    video: JhmdbVideo,
    extract,
    grid: tuple[int, int],
    config: PropagationConfig,
    sigma: float = 1.0,
    visualizer_factory: Callable[[str], object] | None = None,
) -> dict:
    """Propagate one video's joints; returns normalised errors ``[T-1, 15]`` and its PCKs."""
    maps0 = joints_to_heatmaps(video.joints[0], video.size, grid, sigma)
    preds = [video.joints[0]]
    vis = visualizer_factory(video.name.replace("/", "__")) if visualizer_factory else None
    current: dict = {}

    def on_frame(t: int, rgb: np.ndarray) -> None:
        current["rgb"] = rgb
        if vis is not None and t == 0:
            m = joint_map(video.joints[0], rgb.shape[:2])
            vis.add(0, rgb, m, m)

    start = time.perf_counter()
    for t, soft in propagate_frames(video.frames, maps0, extract, config, on_frame):
        pj = heatmaps_to_joints(soft, video.size)
        preds.append(pj)
        if vis is not None:
            shape = current["rgb"].shape[:2]
            vis.add(t, current["rgb"], joint_map(video.joints[t], shape), joint_map(pj, shape))
    pred = np.stack(preds)  # [T, 15, 2]
    dist = pck_distances(pred[1:], video.joints[1:])
    result = {
        "sequence": video.name,
        "n_frames": len(video.frames),
        "pred_joints": pred.tolist(),
        "normalised_errors": dist.tolist(),
        "seconds": time.perf_counter() - start,
    }
    for thr in THRESHOLDS:
        result[f"PCK@{thr}"] = pck(dist, thr)
    if vis is not None:
        result["vis"] = vis.close()
    return result


def joint_map(joints: np.ndarray, size: tuple[int, int], radius: int = 4) -> np.ndarray:
    """``[H, W]`` index map with a small disk of index ``j + 1`` at each joint (for overlays)."""
    H, W = size
    out = np.zeros((H, W), np.uint8)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    for j, (x, y) in enumerate(np.round(joints).astype(int)):
        ys, xs = y + yy[disk], x + xx[disk]
        ok = (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
        out[ys[ok], xs[ok]] = j + 1
    return out


def summarize(results: Sequence[dict]) -> dict:
    """PCK over all frames of all videos (per-joint fractions, averaged over joints)."""
    if not results:
        return {}
    dist = np.concatenate([np.asarray(r["normalised_errors"]).reshape(-1, 15) for r in results])
    return {f"PCK@{thr}": pck(dist, thr) for thr in THRESHOLDS}


@dataclass
class JhmdbBenchmark(Benchmark):
    """JHMDB videos of ``root`` (all, or those of ``list_file``): PCK of propagated joints."""

    name = "jhmdb"
    help = "JHMDB pose propagation (PCK@0.1, PCK@0.2)"
    default_size = "320x320"
    header = f"{'video':<32} {'frames':>6} {'PCK@.1':>7} {'PCK@.2':>7}"
    index_columns = ("frames", "PCK@0.1", "PCK@0.2")

    root: str | Path
    extractor: Any
    config: PropagationConfig
    list_file: str | Path | None = None
    sigma: float = 1.0

    @classmethod
    def add_arguments(cls, p) -> None:  # noqa: ANN001
        p.add_argument("--list", default=None, help="file of <class>/<video> lines (default: all)")
        p.add_argument("--sigma", type=float, default=1.0, help="heat-map sigma in feature cells")

    @classmethod
    def from_args(cls, args, extractor, config: PropagationConfig) -> JhmdbBenchmark:  # noqa: ANN001
        return cls(args.root, extractor, config, args.list, args.sigma)

    def items(self) -> list[Item]:
        vids = [load_video(self.root, n) for n in list_videos(self.root, self.list_file)]
        return [Item(v.name, len(v.frames), v) for v in vids]

    def evaluate(self, item: Item, out: Path, visualizer) -> dict:  # noqa: ANN001
        ex = self.extractor
        return evaluate_video(item.data, ex, ex.grid, self.config, self.sigma, visualizer)

    def row(self, r: dict) -> str:
        return (
            f"{r['sequence']:<32} {r['n_frames']:>6} {100 * r['PCK@0.1']:7.1f} "
            f"{100 * r['PCK@0.2']:7.1f}"
        )

    summarize = staticmethod(summarize)  # the module's function: results -> dataset metrics

    def summary_row(self, summary: dict) -> str:
        return (
            f"{'all':<32} {'':>6} {100 * summary['PCK@0.1']:7.1f} {100 * summary['PCK@0.2']:7.1f}"
        )

    def settings(self, names: list[str]) -> dict:
        extra = {"sigma": self.sigma, "pck_normalisation": PCK_NORMALISATION}
        return {"videos": names} | self.model_settings() | extra


BENCHMARK = JhmdbBenchmark


def run_jhmdb(
    root: str | Path,
    extractor,
    config: PropagationConfig,
    out: str | Path,
    list_file: str | Path | None = None,
    sigma: float = 1.0,
    **run: Any,
) -> dict:
    """Evaluate on JHMDB; writes ``OUT/results.json`` (with predicted joints); returns the report.

    :class:`JhmdbBenchmark` through :func:`~videorep.eval.runner.run_benchmark` (``run``: its
    keyword arguments ``visualize``, ``settings``, ``resume``, ``log``, ``dist``): rank 0 merges
    the per-video errors in list order, and PCK is computed over their concatenation, as in a
    single process.
    """
    return run_benchmark(JhmdbBenchmark(root, extractor, config, list_file, sigma), out, **run)
