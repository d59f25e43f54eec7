"""``videorep eval davis|vip|jhmdb``: dense evaluation by semi-supervised label propagation.

One subcommand per entry of :data:`videorep.eval.runner.BENCHMARKS`: the flags common to all are
added here, each benchmark adds its own, and one handler runs any of them through
:func:`videorep.eval.runner.run_benchmark`. Handlers import the models lazily. Propagation settings come from ``--preset``
(``paper``: the Co-Settle evaluation, per task; ``dino``; ``crw``) and any of ``--topk --queue
--radius --temperature`` override it.

Sharding: launched with ``torchrun --standalone --nproc_per_node N -m videorep.cli eval ...`` the
sequences (videos) are split across the N processes and rank 0 merges the results, which equal
the single-process run's (see :mod:`videorep.eval.sharding`; pass ``--deterministic`` to both so
that they use the same thread count). Only rank 0 prints and writes ``results.json``.

``--resume`` keeps the sequences an interrupted run into the same ``--out`` finished (their
records and files are checked) and evaluates the rest; a second run into a folder that a live run
is writing is refused (see :mod:`videorep.eval.runner`).
"""

from __future__ import annotations

import argparse
import sys

from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.errors import VideorepError
from videorep.eval.runner import BENCHMARKS, load_benchmark
from videorep.eval.runner import split_names as _split_names  # noqa: F401  (used by tests)


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
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the sequences a previous run into --out finished (checked) and do the rest",
    )
    p.add_argument(
        "--tensorboard",
        nargs="?",
        const=True,
        default=None,
        metavar="DIR",
        help="log the summary metrics as TensorBoard scalars eval/<benchmark>/<metric> to DIR "
        "(default: OUT/tensorboard)",
    )


def register(subparsers) -> None:
    ev = subparsers.add_parser("eval", help="dense evaluation by label propagation")
    sub = ev.add_subparsers(dest="eval_command", metavar="BENCHMARK")
    sub.required = True

    for name in BENCHMARKS:
        bench = load_benchmark(name)
        p = sub.add_parser(name, help=bench.help)
        _common(p, bench.default_size)
        bench.add_arguments(p)
        p.set_defaults(func=run_eval_command, benchmark=name)
    from videorep.eval.video_commands import register_video_commands  # video-level benchmarks

    register_video_commands(sub)

    from videorep.eval.segmentation_cli import add_segmentation_command

    add_segmentation_command(sub)


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

        projection = load_projection(args.projection, expect_dim=encoder.embed_dim)
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
        from videorep.utils.distributed import set_deterministic

        set_deterministic(args.threads or 1)
    elif getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise VideorepError(f"--threads {args.threads}: must be at least 1")
        torch.set_num_threads(args.threads)


def run_eval_command(args: argparse.Namespace) -> int:
    """Run the benchmark ``args.benchmark`` as the parsed command line says."""
    from videorep.eval.runner import run_benchmark
    from videorep.utils.distributed import distributed_context
    from videorep.utils.provenance import provenance_line

    bench_cls = load_benchmark(args.benchmark)
    _setup_runtime(args)
    config = _config(args, bench_cls.name)
    extractor = build_extractor(args)
    bench = bench_cls.from_args(args, extractor, config)
    with distributed_context() as dist:
        if dist.is_main:
            print(provenance_line(bench.device()), file=sys.stderr, flush=True)
        run_benchmark(
            bench,
            args.out,
            settings=_settings(args),
            visualize=args.visualize,
            resume=args.resume,
            dist=dist,
            tensorboard=args.tensorboard,
        )
    return 0
