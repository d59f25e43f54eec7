"""VIP human-part propagation: mIoU over part classes on the annotated frames.

The first frame's part map (20 classes, 255 ignored) is propagated through every frame of the
video; predictions of the annotated frames after the first (VIP annotates every 25th frame) are
upsampled to the frame size, arg-maxed, written as indexed PNGs to ``OUT/<video>/<frame>.png`` and
accumulated into one confusion matrix. mIoU = mean over classes (present in the ground truth or
the prediction of the scored frames) of TP / (TP + FP + FN), summed over all videos; per-video
mIoU is reported too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videorep.data.vip import N_CLASSES, VipVideo, list_videos, load_video, read_part_labels
from videorep.eval.core import propagate_frames, write_indexed_png
from videorep.eval.labels import grid_to_labels, labels_to_grid
from videorep.eval.metrics import confusion_matrix, iou_per_class, mean_iou
from videorep.eval.propagation import PropagationConfig
from videorep.eval.runner import Benchmark, Item, run_benchmark, split_names


def evaluate_video(
    video: VipVideo,
    extract,
    grid: tuple[int, int],
    config: PropagationConfig,
    out: Path,
    n_classes: int = N_CLASSES,
    visualizer_factory: Callable[[str], object] | None = None,
) -> dict:
    """Propagate one video, write predictions of annotated frames and return its confusion matrix."""
    labels0 = read_part_labels(video.annotations[0], n_classes)
    void0 = labels0 == 255
    input_size = getattr(extract, "input_size", None)  # the encoder's input (label modes)
    input_size = None if input_size is None else tuple(input_size)
    soft0 = labels_to_grid(np.where(void0, 0, labels0), n_classes, grid, config, input_size, void0)
    conf = np.zeros((n_classes, n_classes), np.int64)
    vis = visualizer_factory(video.name) if visualizer_factory else None
    current: dict = {}

    def on_frame(t: int, rgb: np.ndarray) -> None:
        current["rgb"] = rgb

    start = time.perf_counter()
    scored = 0
    for t, soft in propagate_frames(video.frames, soft0, extract, config, on_frame):
        ann = video.annotations.get(t)
        if ann is None and vis is None:
            continue
        pred = grid_to_labels(soft, current["rgb"].shape[:2], config, input_size)
        gt = None
        if ann is not None:
            gt = read_part_labels(ann, n_classes)
            conf += confusion_matrix(gt, pred, n_classes)
            write_indexed_png(Path(out) / video.name / f"{video.frames[t].stem}.png", pred)
            scored += 1
        if vis is not None:
            vis.add(t, current["rgb"], gt, pred)
    result = {
        "sequence": video.name,
        "n_frames": len(video.frames),
        "scored_frames": scored,
        "confusion": conf.tolist(),
        "mIoU": mean_iou(conf) if scored else float("nan"),
        "seconds": time.perf_counter() - start,
    }
    if vis is not None:
        result["vis"] = vis.close()
    return result


def summarize(results: Sequence[dict]) -> dict:
    """mIoU of the summed confusion matrices (merging shards is a sum)."""
    if not results:
        return {}
    conf = np.sum([np.asarray(r["confusion"]) for r in results], axis=0)
    return {
        "mIoU": mean_iou(conf),
        "IoU_per_class": [None if np.isnan(v) else float(v) for v in iou_per_class(conf)],
    }


@dataclass
class VipBenchmark(Benchmark):
    """VIP videos of ``root`` (from ``list_file``, optionally a subset): mIoU of the part maps."""

    name = "vip"
    help = "VIP human-part propagation (mIoU)"
    default_size = "480x880"
    header = f"{'video':<24} {'frames':>6} {'scored':>6} {'mIoU':>6}"
    index_columns = ("frames", "mIoU")

    root: str | Path
    extractor: Any
    config: PropagationConfig
    list_file: str | Path | None = None
    videos: list[str] | None = None

    @classmethod
    def add_arguments(cls, p) -> None:  # noqa: ANN001
        p.add_argument(
            "--list", default=None, help="video list (default ROOT/lists/val_videos.txt)"
        )
        p.add_argument("--videos", default=None, help="comma-separated subset of the list")

    @classmethod
    def from_args(cls, args, extractor, config: PropagationConfig) -> VipBenchmark:  # noqa: ANN001
        return cls(args.root, extractor, config, args.list, split_names(args.videos))

    def items(self) -> list[Item]:
        names = list_videos(self.root, self.list_file)
        if self.videos:
            names = [n for n in names if n in self.videos]
        return [Item(v.name, len(v.frames), v) for v in (load_video(self.root, n) for n in names)]

    def evaluate(self, item: Item, out: Path, visualizer) -> dict:  # noqa: ANN001
        ex = self.extractor
        return evaluate_video(
            item.data, ex, ex.grid, self.config, out, visualizer_factory=visualizer
        )

    def outputs(self, item: Item) -> list[str]:
        v: VipVideo = item.data
        scored = sorted(t for t in v.annotations if 0 < t < len(v.frames))
        return [f"{v.name}/{v.frames[t].stem}.png" for t in scored]

    def row(self, r: dict) -> str:
        return (
            f"{r['sequence']:<24} {r['n_frames']:>6} {r['scored_frames']:>6} {100 * r['mIoU']:6.1f}"
        )

    summarize = staticmethod(summarize)  # the module's function: results -> dataset metrics

    def summary_row(self, summary: dict) -> str:
        return f"{'all (summed confusion)':<24} {'':>6} {'':>6} {100 * summary['mIoU']:6.1f}"

    def settings(self, names: list[str]) -> dict:
        return {"videos": names} | self.model_settings()


BENCHMARK = VipBenchmark


def run_vip(
    root: str | Path,
    extractor,
    config: PropagationConfig,
    out: str | Path,
    list_file: str | Path | None = None,
    videos: list[str] | None = None,
    **run: Any,
) -> dict:
    """Evaluate on VIP; writes PNGs and ``OUT/results.json``; returns the report.

    :class:`VipBenchmark` through :func:`~videorep.eval.runner.run_benchmark` (``run``: its
    keyword arguments ``visualize``, ``settings``, ``resume``, ``log``, ``dist``). The dataset
    mIoU comes from the sum of the per-video confusion matrices, so it is the same however the
    videos were split across ranks.
    """
    return run_benchmark(VipBenchmark(root, extractor, config, list_file, videos), out, **run)
