"""VIP human-part propagation: mIoU over part classes on the annotated frames.

The first frame's part map (20 classes, 255 ignored) is propagated through every frame of the
video; predictions of the annotated frames after the first (VIP annotates every 25th frame) are
upsampled to the frame size, arg-maxed, written as indexed PNGs to ``OUT/<video>/<frame>.png`` and
accumulated into one confusion matrix. mIoU = mean over classes (present in the ground truth or
the prediction of the scored frames) of TP / (TP + FP + FN), summed over all videos; per-video
mIoU is reported too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from videorep.data.vip import N_CLASSES, VipVideo, list_videos, load_video, read_part_labels
from videorep.eval.core import index_to_soft, propagate_frames, soft_to_index, write_indexed_png
from videorep.eval.metrics import confusion_matrix, iou_per_class, mean_iou
from videorep.eval.propagation import PropagationConfig
from videorep.eval.sharding import DistContext, current_context, quiet, run_table


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
    soft0 = index_to_soft(np.where(void0, 0, labels0), n_classes, grid, void0)
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
        pred = soft_to_index(soft, current["rgb"].shape[:2])
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


def run_vip(
    root: str | Path,
    extractor,
    config: PropagationConfig,
    out: str | Path,
    list_file: str | Path | None = None,
    videos: list[str] | None = None,
    visualize: bool = False,
    settings: dict | None = None,
    log: Callable[[str], None] = print,
    dist: DistContext | None = None,
) -> dict:
    """Evaluate on VIP; writes PNGs and ``OUT/results.json``; returns the report.

    Videos are split across the ranks of ``dist`` (default: the initialised ``torch.distributed``
    group, else one process); rank 0 merges the per-video results in list order - the dataset
    mIoU comes from the sum of the per-video confusion matrices, so it is the same however the
    videos were split - prints the table and writes ``results.json``.
    """
    out = Path(out)
    dist = dist if dist is not None else current_context()
    say = log if dist.is_main else quiet
    names = list_videos(root, list_file)
    if videos:
        names = [n for n in names if n in videos]
    vids = [load_video(root, n) for n in names]
    factory = None
    if visualize:
        from videorep.eval.visualize import SequenceVisualizer

        def factory(name: str):
            return SequenceVisualizer(out, name)

    def work(v: VipVideo) -> dict:
        return evaluate_video(v, extractor, extractor.grid, config, out, visualizer_factory=factory)

    def row_text(r: dict) -> str:
        return (
            f"{r['sequence']:<24} {r['n_frames']:>6} {r['scored_frames']:>6} {100 * r['mIoU']:6.1f}"
        )

    results, timing = run_table(
        vids,
        work,
        dist,
        log,
        f"{'video':<24} {'frames':>6} {'scored':>6} {'mIoU':>6}",
        row_text,
        names,
        costs=[len(v.frames) for v in vids],
    )
    summary = summarize(results)
    if summary:
        say(f"{'all (summed confusion)':<24} {'':>6} {'':>6} {100 * summary['mIoU']:6.1f}")
    report = dict(summary)
    report["per_sequence"] = [{k: v for k, v in r.items() if k != "vis"} for r in results]
    report["settings"] = dict(settings or {}) | {
        "videos": names,
        "propagation": config.to_dict(),
        "input_size": list(extractor.input_size),
        "grid": list(extractor.grid),
    }
    report["timing"] = timing
    if not dist.is_main:
        return report
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    if visualize:
        from videorep.eval.visualize import write_index_html

        rows = [
            {
                "sequence": r["sequence"],
                "frames": r["n_frames"],
                "mIoU": r["mIoU"],
                "vis": r.get("vis"),
            }
            for r in results
        ]
        write_index_html(out, "VIP", ["frames", "mIoU"], rows)
    return report
