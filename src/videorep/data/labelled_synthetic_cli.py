"""``videorep data labelled-synthetic``: write the generated labelled collection
(:mod:`videorep.data.labelled_synthetic`)."""

from __future__ import annotations

import argparse


def add_labelled_synthetic_command(sub: argparse._SubParsersAction) -> None:
    """Add ``labelled-synthetic`` to the ``videorep data`` sub-commands."""
    from videorep.data.labelled_synthetic import DIRECTIONS, SHAPES

    p = sub.add_parser(
        "labelled-synthetic",
        help="generate a labelled video collection (moving textured shapes, UCF101 layout)",
        description="Moving textured shapes; class = shape x motion direction. Written in the "
        "UCF101 layout (classInd.txt, trainlist01.txt, testlist01.txt, <class>/v_*.mp4) with "
        "chiral_pairs.csv (each class and its time reversal) and, with --segmentation-videos, a "
        "Breakfast-style temporal segmentation set in OUT/segmentation.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="new (or empty) output folder")
    p.add_argument("--shapes", nargs="+", default=["circle", "square", "triangle"], choices=SHAPES)
    p.add_argument("--directions", nargs="+", default=list(DIRECTIONS), choices=list(DIRECTIONS))
    p.add_argument("--train-per-class", type=int, default=5)
    p.add_argument("--test-per-class", type=int, default=3)
    p.add_argument("--frames", type=int, default=16, help="frames per video")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels (even)")
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--segmentation-videos",
        type=int,
        default=0,
        help="also write this many temporal-segmentation videos (0: none)",
    )
    p.add_argument("--segmentation-frames", type=int, default=48)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_labelled_synthetic)


def run_labelled_synthetic(args: argparse.Namespace) -> int:
    from videorep.data.labelled_synthetic import (
        LabelledSyntheticConfig,
        write_labelled_collection,
    )

    cfg = LabelledSyntheticConfig(
        shapes=tuple(args.shapes),
        directions=tuple(args.directions),
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        frames=args.frames,
        size=args.size,
        fps=args.fps,
        seed=args.seed,
        segmentation_videos=args.segmentation_videos,
        segmentation_frames=args.segmentation_frames,
    )
    s = write_labelled_collection(args.out, cfg, progress=not args.no_progress)
    print(
        f"{s['root']}: {len(s['classes'])} classes, {s['train']} train / {s['test']} test videos, "
        f"{len(s['chiral_pairs'])} chiral pairs"
        + (f"; segmentation set {s['segmentation']['root']}" if s["segmentation"] else "")
    )
    return 0
