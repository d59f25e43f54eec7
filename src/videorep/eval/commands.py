"""``videorep eval davis|vip|jhmdb``: dense evaluation by semi-supervised label propagation.

One subcommand per entry of :data:`videorep.eval.runner.BENCHMARKS`: the flags common to all are
added here, each benchmark adds its own, and one handler runs any of them through
:func:`videorep.eval.runner.run_benchmark`. Handlers import the models lazily. Propagation settings come from ``--preset``
(``cropmae``, the default: CropMAE's propagation code, whose top-k / queue / radius / sizes
Co-Settle's Tab. 3c reports; ``dino``; ``crw``; ``dino-paper-params``: videorep's former
``paper`` preset) and any of ``--topk --queue --radius --temperature`` override it. ``--size``
defaults to the preset's input size for the task (else the benchmark's).

Sharding: launched with ``torchrun --standalone --nproc_per_node N -m videorep.cli eval ...`` the
sequences (videos) are split across the N processes and rank 0 merges the results, which equal
the single-process run's (see :mod:`videorep.eval.sharding`; pass ``--deterministic`` to both so
that they use the same thread count). Only rank 0 prints and writes ``results.json``.

Device: ``--device {auto,cpu,cuda,cuda:N}`` (:func:`videorep.utils.device.resolve_device`; under
``torchrun`` ``cuda``/``auto`` give each rank its ``LOCAL_RANK`` GPU) holds the encoder, the
projection, the propagation engine's buffers and the features; ``--batch-frames N`` encodes N
frames per encoder call (default 1 on the CPU, :data:`CUDA_BATCH_FRAMES` on a GPU) while the
propagation queue stays bounded. ``--encoder-dtype auto`` is bf16 on CPUs with native bf16 and
fp32 elsewhere (:mod:`videorep.utils.encoder_dtype`). ``results.json``'s ``settings`` record the
decisions taken (``device`` kind, ``encoder_dtype``, ``batch_frames``). The sharded runs'
collectives carry Python objects only, over a gloo group also when the default group is nccl.

``--resume`` keeps the sequences an interrupted run into the same ``--out`` finished (their
records and files are checked) and evaluates the rest; a second run into a folder that a live run
is writing is refused (see :mod:`videorep.eval.runner`).
"""

from __future__ import annotations

import argparse
import sys

from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.errors import VideorepError
from videorep.eval.presets import DEFAULT_PRESET, PRESETS, preset_size, preset_source
from videorep.eval.runner import BENCHMARKS, load_benchmark
from videorep.eval.runner import split_names as _split_names  # noqa: F401  (used by tests)
from videorep.utils.device import add_device_argument
from videorep.utils.encoder_dtype import DEFAULT_ENCODER_DTYPE, add_encoder_dtype_argument

#: ``--encoder-dtype`` default of ``eval``
#: ``--batch-frames`` default on a GPU (the CPU encodes one frame per call)
CUDA_BATCH_FRAMES = 8


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
    p.add_argument(
        "--fuse-alpha",
        type=float,
        default=None,
        metavar="A",
        help="with --projection: propagate on frozen and projected tokens together, affinity = "
        "(1 - A) * frozen cosine + A * head cosine (0: the frozen result, 1: the head's)",
    )
    p.add_argument("--out", required=True, help="output folder (predictions, results.json)")
    p.add_argument(
        "--size",
        default=None,
        help=f"input HxW before snapping each side to the nearest multiple of the "
        f"patch size (default: the preset's size for this task, else {size})",
    )
    add_encoder_dtype_argument(p, note="; results.json records the dtype used")
    add_device_argument(p)
    p.add_argument(
        "--batch-frames",
        type=int,
        default=None,
        metavar="N",
        help="frames per encoder call (default: 1 on the CPU, where batching gains nothing and "
        f"1 keeps the published numbers; {CUDA_BATCH_FRAMES} on a GPU); the propagation queue "
        "stays bounded, so memory does not grow with the video length",
    )
    p.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help="propagation protocol, each exactly its reference's: "
        + "; ".join(f"{name}: {preset_source(name)}" for name in PRESETS)
        + " (docs/evaluation.md)",
    )
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
    ev = subparsers.add_parser(
        "eval", help="evaluate: label propagation (davis, vip, jhmdb) and video-level tasks"
    )
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


def resolve_runtime(args: argparse.Namespace) -> argparse.Namespace:
    """Turn ``--device``, ``--encoder-dtype`` and ``--batch-frames`` into their decisions, once.

    Sets ``args.device_resolved`` (a :class:`torch.device`; under ``torchrun`` ``cuda`` is this
    rank's ``LOCAL_RANK`` GPU), ``args.encoder_dtype_resolved`` (``fp32`` / ``bf16``: ``auto``
    decided for that device) and ``args.batch_frames_resolved``. Bad values are one
    :class:`VideorepError`. Idempotent.
    """
    from videorep.utils.device import resolve_device
    from videorep.utils.encoder_dtype import resolve_encoder_dtype

    if getattr(args, "device_resolved", None) is None:
        args.device_resolved = resolve_device(getattr(args, "device", "auto"))
    device = args.device_resolved
    spec = getattr(args, "encoder_dtype", DEFAULT_ENCODER_DTYPE)
    args.encoder_dtype_resolved = resolve_encoder_dtype(spec, device)
    n = getattr(args, "batch_frames", None)
    if n is None:
        n = CUDA_BATCH_FRAMES if device.type == "cuda" else 1
    if n < 1:
        raise VideorepError(f"--batch-frames {n}: must be at least 1")
    args.batch_frames_resolved = int(n)
    return args


def build_extractor(args: argparse.Namespace):
    """Encoder (+ optional projection) on ``--device``, wrapped as a :class:`FeatureExtractor`."""
    from videorep.backbones import load_encoder
    from videorep.data.images import parse_size
    from videorep.eval.core import FeatureExtractor
    from videorep.utils.encoder_dtype import torch_dtype

    if getattr(args, "size", None) is None:
        _resolve_size(args, load_benchmark(getattr(args, "benchmark", "davis")).default_size)
    resolve_runtime(args)
    device = args.device_resolved
    size = parse_size(args.size)
    encoder = load_encoder(args.backbone, args.checkpoint).to(device)
    encoder.autocast_dtype = torch_dtype(args.encoder_dtype_resolved)
    projection = None
    if args.projection:
        from videorep.methods.cosettle.heads import load_projection

        projection = load_projection(args.projection, expect_dim=encoder.embed_dim)
        projection.eval().to(device)
        # feed the encoder as the head was trained (CLIP / BLIP: ImageNet or family statistics)
        encoder.family_norm = projection.input_norm != "authors"
    from videorep.eval.fusion import fuse

    projection = fuse(projection, getattr(args, "fuse_alpha", None))
    return FeatureExtractor(encoder, size, projection, args.batch_frames_resolved)


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
    keep = ("root", "backbone", "checkpoint", "projection", "size", "preset")
    out = {k: getattr(args, k) for k in keep}
    resolve_runtime(args)
    # the decisions taken, not the flags: "auto" is recorded as the dtype it chose; the device
    # as its kind (every rank of a sharded run has its own GPU index)
    out["encoder_dtype"] = args.encoder_dtype_resolved
    out["device"] = args.device_resolved.type
    out["batch_frames"] = args.batch_frames_resolved
    if getattr(args, "fuse_alpha", None) is not None:
        out["fuse_alpha"] = args.fuse_alpha
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


def _resolve_size(args: argparse.Namespace, default: str) -> None:
    """``--size`` unset: the preset's input size for the benchmark, else ``default``."""
    if getattr(args, "size", None) is None:
        args.size = preset_size(args.preset, args.benchmark) or default


def run_eval_command(args: argparse.Namespace) -> int:
    """Run the benchmark ``args.benchmark`` as the parsed command line says."""
    from videorep.eval.runner import run_benchmark
    from videorep.utils.distributed import distributed_context
    from videorep.utils.provenance import provenance_line

    bench_cls = load_benchmark(args.benchmark)
    _resolve_size(args, bench_cls.default_size)
    _setup_runtime(args)
    resolve_runtime(args)
    config = _config(args, bench_cls.name)
    extractor = build_extractor(args)
    bench = bench_cls.from_args(args, extractor, config)
    with distributed_context(device=args.device_resolved) as dist:
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
