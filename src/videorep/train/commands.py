"""``videorep train <method>``: the command line of the shared trainer."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def add_common_arguments(p: argparse.ArgumentParser, batch_size: int, epochs: float) -> None:
    """Flags every method shares (data, optimisation, checkpoints)."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="PATH",
        help="video files, frame folders (Kinetics or DAVIS layout) or .txt lists",
    )
    g.add_argument("--fps", type=float, default=2.0, help="decoding rate for video files (2)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (0)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--out", required=True, help="run folder (checkpoints, logs, exports)")
    g.add_argument("--epochs", type=float, default=epochs)
    g.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help="micro-batch per process; global batch = batch x accum x processes",
    )
    g.add_argument("--accum", type=int, default=1, help="gradient accumulation steps (1)")
    g.add_argument("--blr", type=float, default=1e-4, help="base lr; lr = blr * global batch / 256")
    g.add_argument("--lr", type=float, default=None, help="absolute lr (overrides --blr)")
    g.add_argument("--warmup-epochs", type=float, default=1.0)
    g.add_argument("--min-lr", type=float, default=0.0)
    g.add_argument("--weight-decay", type=float, default=0.05)
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    g.add_argument("--save-every", type=int, default=100, help="checkpoint every N steps (100)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--deterministic",
        action="store_true",
        help="reproducible run to run on CPU: deterministic kernels, 1 intra-op thread "
        "(slower; see README)",
    )


def train_config_from_args(args: argparse.Namespace):  # noqa: ANN201
    from videorep.train.trainer import TrainConfig

    return TrainConfig(
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        accum=args.accum,
        blr=args.blr,
        lr=args.lr,
        warmup_epochs=args.warmup_epochs,
        min_lr=args.min_lr,
        weight_decay=args.weight_decay,
        max_steps=args.max_steps,
        save_every=args.save_every,
        seed=args.seed,
        workers=args.workers,
        resume=args.resume,
        progress=not args.no_progress,
        deterministic=bool(getattr(args, "deterministic", False)),
    )


def run_distributed(body, *args):  # noqa: ANN001, ANN201
    """Run ``body(*args)`` inside the ``torchrun`` process group (if any), then clean it up."""
    from videorep.train.distributed import cleanup, init_from_env

    init_from_env()
    try:
        return body(*args)
    finally:
        cleanup()


def add_cosettle_arguments(p: argparse.ArgumentParser) -> None:
    """Every knob of Co-Settle (paper defaults)."""
    g = p.add_argument_group("Co-Settle")
    g.add_argument("--backbone", default="dinov2_vits14_imgfocus")
    g.add_argument("--checkpoint", default=None, help="backbone checkpoint (released format)")
    g.add_argument("--head", choices=["linear", "mlp2", "mlp3"], default="linear")
    g.add_argument("--head-init", choices=["trunc_normal", "identity"], default="trunc_normal")
    g.add_argument("--tau", type=float, default=0.03, help="walk temperature (0.03)")
    g.add_argument("--delta", type=float, default=0.15, help="frame gap / video length (0.15)")
    g.add_argument("--pool", type=int, default=2, help="token average-pooling window (2)")
    g.add_argument("--reg", choices=["kl", "mse", "none"], default="kl")
    g.add_argument("--lambda-reg", type=float, default=3.0, help="regulariser weight (3)")
    g.add_argument("--pea-alpha", type=float, default=10.0, help="PEA interpolation ratio (10)")
    g.add_argument("--pea-mode", choices=["random", "center", "edge", "multiple"], default="random")
    g.add_argument("--no-pea", action="store_true", help="disable PEA (shows the shortcut)")
    g.add_argument("--frames", type=int, default=2, help="frames per walk (2 = the paper)")
    g.add_argument("--size", type=int, default=224, help="crop size (224)")
    g.add_argument(
        "--samples-per-video",
        type=int,
        default=0,
        help="samples drawn from each video per epoch; 0 = 1, or as many as needed to fill "
        "one global batch when there are fewer videos",
    )
    g.add_argument(
        "--view-bank",
        type=int,
        default=0,
        metavar="K",
        help="encode K views per video once and train on the stored tokens",
    )
    g.add_argument("--encoder-dtype", choices=["fp32", "bf16"], default="fp32")


def cosettle_configs(args: argparse.Namespace) -> tuple:
    """(CoSettleConfig, data settings dict) from parsed flags."""
    from videorep.methods.cosettle import CoSettleConfig

    method = CoSettleConfig(
        backbone=args.backbone,
        checkpoint=args.checkpoint,
        head=args.head,
        head_init=args.head_init,
        tau=args.tau,
        pool=args.pool,
        reg=args.reg,
        lambda_reg=args.lambda_reg,
        pea=not args.no_pea,
        pea_alpha=args.pea_alpha,
        pea_mode=args.pea_mode,
        frames=args.frames,
        encoder_dtype=args.encoder_dtype,
    )
    data = {
        "paths": [str(p) for p in args.data],
        "fps": args.fps,
        "delta": args.delta,
        "size": args.size,
        "frames": args.frames,
        "samples_per_video": args.samples_per_video,
        "view_bank": args.view_bank,
    }
    return method, data


def train_cosettle(method_config, data: dict, train_config, encoder=None):  # noqa: ANN001, ANN201
    """Build data, encoder and method from configs and run the trainer.

    Returns ``(method, history)``. ``encoder`` may be passed to reuse a loaded one.
    """
    from videorep.backbones import load_encoder
    from videorep.data.pairs import FramePairDataset
    from videorep.data.sources import discover_sources
    from videorep.methods.cosettle import CoSettle
    from videorep.methods.cosettle.viewbank import ViewBankDataset, build_view_bank
    from videorep.train.trainer import Trainer, dist_info

    if encoder is None:
        encoder = load_encoder(method_config.backbone, method_config.checkpoint)
    sources = discover_sources(data["paths"], fps=data["fps"])
    repeats = int(data.get("samples_per_video") or 0)
    if repeats <= 0:
        global_batch = train_config.batch_size * train_config.accum * dist_info()[1]
        repeats = max(1, -(-global_batch // len(sources)))
        if repeats > 1 and train_config.progress and dist_info()[0] == 0:
            print(
                f"videorep: {len(sources)} videos < global batch {global_batch}: drawing "
                f"{repeats} samples per video per epoch (--samples-per-video)",
                file=sys.stderr,
            )
    pairs = FramePairDataset(
        sources,
        delta=data["delta"],
        frames=data["frames"],
        size=data["size"],
        seed=train_config.seed,
        repeats=repeats,
    )
    method = CoSettle(encoder, method_config, seed=train_config.seed)
    run_config = {"method_config": asdict(method_config), "data": data}
    dataset = pairs
    if data.get("view_bank"):
        identity = {"method": asdict(method_config), "data": data, "seed": train_config.seed}
        for key in ("lambda_reg", "reg", "tau", "pool", "head", "head_init"):
            identity["method"].pop(key, None)  # head-side settings do not change the tokens
        folder = build_view_bank(
            pairs,
            method,
            data["view_bank"],
            Path(train_config.out) / "view_bank",
            identity,
            progress=train_config.progress,
        )
        dataset = ViewBankDataset(folder)
    trainer = Trainer(method, dataset, train_config, run_config=run_config)
    history = trainer.fit()
    return method, history


def _run_cosettle(args: argparse.Namespace) -> int:
    return run_distributed(_cosettle_main, args)


def _cosettle_main(args: argparse.Namespace) -> int:
    from videorep.train.trainer import dist_info

    method_config, data = cosettle_configs(args)
    method_config.validate()
    train_config = train_config_from_args(args)
    if train_config.deterministic:
        from videorep.train.distributed import set_deterministic

        set_deterministic()
    _, history = train_cosettle(method_config, data, train_config)
    if history and dist_info()[0] == 0:
        first, last = history[0], history[-1]
        print(
            json.dumps(
                {
                    "steps": last["step"],
                    "loss": [round(first["loss"], 4), round(last["loss"], 4)],
                    "cycle_acc": [round(first["cycle_acc"], 4), round(last["cycle_acc"], 4)],
                    "projection": str(Path(args.out) / "projection"),
                }
            )
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a method (cosettle, bodvcl)")
    methods = p.add_subparsers(dest="method", metavar="METHOD")
    methods.required = True
    c = methods.add_parser(
        "cosettle",
        help="Co-Settle projection on a frozen image encoder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_arguments(c, batch_size=512, epochs=5.0)
    add_cosettle_arguments(c)
    c.set_defaults(func=_run_cosettle)
    try:
        from videorep.methods.bodvcl.cli import register_train
    except ModuleNotFoundError:
        return
    register_train(methods, add_common_arguments, train_config_from_args)
