"""``videorep eval segmentation``: temporal action segmentation on a Breakfast-style folder.

Frame features come either from ``.npy`` files (``[D, T]`` per video, MS-TCN's layout; default
``ROOT/features``) or from the videos themselves (``--videos DIR``: ``DIR/<video>.mp4|.avi`` or a
frame folder ``DIR/<video>/``, every native frame): an image encoder (``--backbone``, optional
Co-Settle ``--projection``) encodes each frame and its patch tokens are averaged (``[D]`` per
frame). Extracted features are written to ``OUT/features`` (with ``features.json`` naming the
encoder) and reused by a later run into the same ``--out`` with the same encoder settings.

The head (:class:`~videorep.eval.segmentation.SingleStageTCN`) is trained on the training videos
of ``--split`` (Breakfast split 1: splits 2-4) and scored on its test videos with
:func:`~videorep.eval.segmentation.segmentation_scores`. Writes ``OUT/results.json`` (scores,
settings, training losses, provenance), ``OUT/results.csv`` and ``OUT/predictions/<video>.txt``
(one predicted class per frame, the ground-truth format).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from videorep.errors import VideorepError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


def add_segmentation_command(sub: argparse._SubParsersAction) -> None:
    """Add ``segmentation`` to the ``videorep eval`` sub-commands."""
    from videorep.utils.device import add_device_argument

    p = sub.add_parser(
        "segmentation",
        help="temporal action segmentation (Breakfast layout): Acc, Edit, F1@k of a TCN head",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", required=True, help="Breakfast-style folder (mapping.txt, ...)")
    p.add_argument("--out", required=True, help="output folder (results.json, predictions)")
    p.add_argument("--split", type=int, default=1, help="test split (1: train on splits 2-4)")
    p.add_argument("--features", default=None, help="folder of <video>.npy [D, T] features")
    p.add_argument("--videos", default=None, help="extract frame features from these videos")
    p.add_argument("--backbone", default=None, help="image encoder for --videos (default dinov2)")
    p.add_argument("--checkpoint", default=None, help="encoder checkpoint")
    p.add_argument("--projection", default=None, metavar="DIR", help="Co-Settle head directory")
    p.add_argument("--size", default="224", help="encoder input HxW for --videos")
    p.add_argument("--batch", type=int, default=16, help="frames per encoder call")
    p.add_argument(
        "--background",
        action="append",
        default=[],
        metavar="CLASS",
        help="class left out of Edit and F1 (repeatable), e.g. SIL; none by default",
    )
    p.add_argument("--epochs", type=int, default=50, help="head training epochs (MS-TCN: 50)")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (MS-TCN)")
    p.add_argument("--width", type=int, default=64, help="TCN channels (MS-TCN: 64)")
    p.add_argument("--layers", type=int, default=10, help="dilated layers (MS-TCN: 10)")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--videos-per-step", type=int, default=1, help="videos per step (MS-TCN: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    add_device_argument(p)
    p.set_defaults(func=run_segmentation)


def _video_path(folder: Path, name: str) -> Path:
    if (folder / name).is_dir():
        return folder / name
    for suffix in VIDEO_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    raise VideorepError(f"{folder}: no video file or frame folder for {name!r}")


def extract_frame_features(
    names: list[str], videos: Path, out: Path, args: argparse.Namespace, device
) -> Path:  # noqa: ANN001
    """Write ``out/<name>.npy`` ``[D, T]`` (mean patch token of every frame); returns ``out``."""
    import numpy as np
    import torch

    from videorep.backbones import load_encoder
    from videorep.backbones.registry import DEFAULT_BACKBONE
    from videorep.data.images import parse_size
    from videorep.data.sources import FrameFolderSource, VideoFileSource
    from videorep.eval.core import FeatureExtractor
    from videorep.utils.progress import progress_bar

    tag = {
        "backbone": args.backbone or DEFAULT_BACKBONE,
        "checkpoint": args.checkpoint,
        "projection": args.projection,
        "size": args.size,
        "pooling": "mean of patch tokens per frame",
    }
    out.mkdir(parents=True, exist_ok=True)
    tag_file = out / "features.json"
    if tag_file.is_file():
        old = json.loads(tag_file.read_text())
        if old != tag:
            raise VideorepError(
                f"{out}: holds features of another encoder ({old}); use a new --out"
            )
    else:
        tag_file.write_text(json.dumps(tag, indent=1) + "\n")
    todo = [n for n in names if not (out / f"{n}.npy").is_file()]
    if not todo:
        return out
    encoder = load_encoder(tag["backbone"], args.checkpoint).to(device).eval()
    projection = None
    if args.projection:
        from videorep.methods.cosettle.heads import load_projection

        projection = load_projection(args.projection, expect_dim=encoder.embed_dim)
        projection.to(device).eval()
    extractor = FeatureExtractor(encoder, parse_size(args.size), projection)
    bar = progress_bar(len(todo), desc="frame features", disable=args.no_progress)
    for name in todo:
        path = _video_path(videos, name)
        source = FrameFolderSource(path) if path.is_dir() else VideoFileSource(path, fps=None)
        feats = []
        with torch.no_grad():
            for start in range(0, source.num_frames, args.batch):
                idx = list(range(start, min(start + args.batch, source.num_frames)))
                feats.append(extractor.batch(source.read(idx)).mean(dim=(1, 2)).cpu())
        arr = torch.cat(feats).T.contiguous().numpy().astype(np.float32)  # [D, T]
        tmp = out / f".{name}.{os.getpid()}.npy"
        np.save(tmp, arr)
        os.replace(tmp, out / f"{name}.npy")
        bar.update(1)
    bar.close()
    return out


def run_segmentation(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from videorep.data.segmentation_labels import SegmentationSet, split_videos
    from videorep.eval.segmentation import TCNConfig, fit_tcn, predict_tcn, segmentation_scores
    from videorep.utils.device import resolve_device
    from videorep.utils.provenance import provenance, provenance_line

    for flag in ("epochs", "width", "layers", "batch", "videos_per_step"):
        if getattr(args, flag) < 1:
            raise VideorepError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.features and args.videos:
        raise VideorepError("give --features or --videos, not both")
    device = resolve_device(args.device)
    print(provenance_line(device), file=sys.stderr, flush=True)
    out = Path(args.out)
    data = SegmentationSet.open(args.root)
    train, test = split_videos(data.root, args.split)
    unknown = [b for b in args.background if b not in data.classes]
    if unknown:
        raise VideorepError(f"--background {unknown[0]!r} is not a class of {data.root}")
    features = Path(args.features) if args.features else None
    if args.videos:
        features = extract_frame_features(
            train + test, Path(args.videos), out / "features", args, device
        )

    def load(names: list[str]):
        xs = [torch.from_numpy(data.features(n, features)) for n in names]
        ys = [torch.from_numpy(data.labels(n)) for n in names]
        return xs, ys

    train_x, train_y = load(train)
    test_x, test_y = load(test)
    dims = {int(x.shape[0]) for x in train_x + test_x}
    if len(dims) != 1:
        raise VideorepError(f"frame features of different dimensions {sorted(dims)}")
    cfg = TCNConfig(
        width=args.width,
        layers=args.layers,
        dropout=args.dropout,
        epochs=args.epochs,
        lr=args.lr,
        batch=args.videos_per_step,
        seed=args.seed,
    )
    model, history = fit_tcn(
        train_x, train_y, len(data.classes), cfg, device=device, progress=not args.no_progress
    )
    preds = predict_tcn(model, test_x)
    bg = [data.classes.index(b) for b in args.background]
    scores = segmentation_scores(preds, [y.numpy() for y in test_y], background=bg)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    for name, pred in zip(test, preds):
        text = "\n".join(data.classes[int(i)] for i in np.asarray(pred)) + "\n"
        (out / "predictions" / f"{name}.txt").write_text(text)
    results = {
        "task": "segmentation",
        "scores": scores.as_dict(),
        "counts": {
            "train_videos": len(train),
            "test_videos": scores.videos,
            "test_frames": scores.frames,
            "classes": len(data.classes),
            "feature_dim": dims.pop(),
        },
        "train_loss": history,
        "settings": {
            "root": str(data.root),
            "split": args.split,
            "features": str(features) if features else str(data.root / "features"),
            "videos": args.videos,
            "backbone": args.backbone,
            "checkpoint": args.checkpoint,
            "projection": args.projection,
            "size": args.size,
            "background": args.background,
            "head": asdict(cfg),
        },
        "provenance": provenance(device),
    }
    tmp = out / f".results.{os.getpid()}.json"
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out / "results.json")
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["metric", "value"])
        for k, v in scores.as_dict().items():
            w.writerow([k, f"{v:.4f}"])
    line = "  ".join(f"{k} {v:.2f}" for k, v in scores.as_dict().items())
    print(f"segmentation split {args.split}: {line} ({scores.videos} test videos)")
    print(f"wrote {out / 'results.json'}")
    return 0
