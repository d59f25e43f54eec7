"""``videorep eval davis|vip|jhmdb``: dense evaluation by semi-supervised label propagation.

Handlers import torch and the models lazily. Propagation settings come from ``--preset``
(``paper``: the Co-Settle evaluation, per task; ``dino``; ``crw``) and any of ``--topk --queue
--radius --temperature`` override it.

Sharding: launched with ``torchrun --standalone --nproc_per_node N -m videorep.cli eval ...`` the
sequences (videos) are split across the N processes and rank 0 merges the results, which equal
the single-process run's (see :mod:`videorep.eval.sharding`; pass ``--deterministic`` to both so
that they use the same thread count). Only rank 0 prints and writes ``results.json``.
"""

from __future__ import annotations

import argparse

from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.errors import VideorepError


def _common(p: argparse.ArgumentParser, size: str) -> None:
    p.add_argument("--root", required=True, help="dataset root folder")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="encoder name (videorep backbones)")
    p.add_argument("--checkpoint", default=None, help="encoder checkpoint (default: its own)")
    p.add_argument(
        "--projection",
        default=None,
        metavar="DIR",
        help="trained projection head directory (applied to the patch tokens)",
    )
    p.add_argument("--out", required=True, help="output folder (predictions, results.json)")
    p.add_argument(
        "--size",
        default=size,
        help=f"input HxW before snapping each side to the nearest multiple of the "
        f"patch size (default {size})",
    )
    p.add_argument(
        "--encoder-dtype",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: run the encoder under CPU/GPU bfloat16 autocast (propagation stays fp32)",
    )
    p.add_argument("--preset", default="paper", choices=["paper", "dino", "crw"])
    p.add_argument("--topk", type=int, default=None)
    p.add_argument("--queue", type=int, default=None)
    p.add_argument("--radius", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument(
        "--visualize",
        action="store_true",
        help="write overlay strips, an MP4 per sequence and index.html",
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="torch.use_deterministic_algorithms(True) and a fixed thread count (--threads, "
        "default 1), so that runs - sharded or not - give bit-identical results",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )


def register(subparsers) -> None:
    ev = subparsers.add_parser("eval", help="dense evaluation by label propagation")
    sub = ev.add_subparsers(dest="eval_command", metavar="BENCHMARK")
    sub.required = True

    d = sub.add_parser("davis", help="DAVIS-2016/2017 video object segmentation (J&F)")
    _common(d, "480x880")
    d.add_argument("--year", type=int, default=2017, choices=[2016, 2017])
    d.add_argument("--split", default="val")
    d.add_argument("--sequences", default=None, help="comma-separated subset of the split")
    d.add_argument("--max-frames", type=int, default=None, help="truncate sequences (quick checks)")
    d.add_argument(
        "--void",
        default="background",
        choices=["background", "exclude"],
        help="annotation pixels of value 255: scored as background, as the official "
        "davis2017-evaluation semi-supervised scorer does (default), or left out of J and F",
    )
    d.set_defaults(func=run_davis_command)

    v = sub.add_parser("vip", help="VIP human-part propagation (mIoU)")
    _common(v, "480x880")
    v.add_argument("--list", default=None, help="video list (default ROOT/lists/val_videos.txt)")
    v.add_argument("--videos", default=None, help="comma-separated subset of the list")
    v.set_defaults(func=run_vip_command)

    j = sub.add_parser("jhmdb", help="JHMDB pose propagation (PCK@0.1, PCK@0.2)")
    _common(j, "320x320")
    j.add_argument("--list", default=None, help="file of <class>/<video> lines (default: all)")
    j.add_argument("--sigma", type=float, default=1.0, help="heat-map sigma in feature cells")
    j.set_defaults(func=run_jhmdb_command)


def build_extractor(args: argparse.Namespace):
    """Encoder (+ optional projection) wrapped as a :class:`FeatureExtractor`."""
    from videorep.backbones import load_encoder
    from videorep.data.images import parse_size
    from videorep.eval.core import FeatureExtractor

    encoder = load_encoder(args.backbone, args.checkpoint)
    if getattr(args, "encoder_dtype", "fp32") == "bf16":
        import torch

        encoder.autocast_dtype = torch.bfloat16
    projection = None
    if args.projection:
        from videorep.methods.cosettle.heads import load_projection

        projection = load_projection(args.projection)
        projection.eval()
    return FeatureExtractor(encoder, parse_size(args.size), projection)


def _config(args: argparse.Namespace, task: str):
    from videorep.eval.propagation import resolve_config

    return resolve_config(
        args.preset,
        task,
        topk=args.topk,
        queue=args.queue,
        radius=args.radius,
        temperature=args.temperature,
    )


def _settings(args: argparse.Namespace) -> dict:
    keep = ("root", "backbone", "checkpoint", "projection", "size", "preset", "encoder_dtype")
    out = {k: getattr(args, k) for k in keep}
    if getattr(args, "deterministic", False):
        out["deterministic"] = True
        out["threads"] = args.threads or 1
    return out


def _setup_runtime(args: argparse.Namespace) -> None:
    """Apply ``--deterministic`` / ``--threads`` before any model is built."""
    import torch

    if getattr(args, "deterministic", False):
        from videorep.train.distributed import set_deterministic

        set_deterministic(args.threads or 1)
    elif getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise VideorepError(f"--threads {args.threads}: must be at least 1")
        torch.set_num_threads(args.threads)


def _split_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise VideorepError(f"{text!r}: empty name list")
    return names


def run_davis_command(args: argparse.Namespace) -> int:
    from videorep.eval.davis import run_davis
    from videorep.eval.sharding import distributed_context

    _setup_runtime(args)
    config = _config(args, "davis")
    extractor = build_extractor(args)
    with distributed_context() as dist:
        run_davis(
            args.root,
            args.year,
            args.split,
            extractor,
            config,
            args.out,
            sequences=_split_names(args.sequences),
            visualize=args.visualize,
            settings=_settings(args),
            max_frames=args.max_frames,
            dist=dist,
            void=args.void,
        )
    return 0


def run_vip_command(args: argparse.Namespace) -> int:
    from videorep.eval.sharding import distributed_context
    from videorep.eval.vip import run_vip

    _setup_runtime(args)
    config = _config(args, "vip")
    extractor = build_extractor(args)
    with distributed_context() as dist:
        run_vip(
            args.root,
            extractor,
            config,
            args.out,
            list_file=args.list,
            videos=_split_names(args.videos),
            visualize=args.visualize,
            settings=_settings(args),
            dist=dist,
        )
    return 0


def run_jhmdb_command(args: argparse.Namespace) -> int:
    from videorep.eval.jhmdb import run_jhmdb
    from videorep.eval.sharding import distributed_context

    _setup_runtime(args)
    config = _config(args, "jhmdb")
    extractor = build_extractor(args)
    with distributed_context() as dist:
        run_jhmdb(
            args.root,
            extractor,
            config,
            args.out,
            list_file=args.list,
            sigma=args.sigma,
            visualize=args.visualize,
            settings=_settings(args) | {"sigma": args.sigma},
            dist=dist,
        )
    return 0
