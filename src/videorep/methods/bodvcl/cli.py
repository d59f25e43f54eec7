"""``videorep train bodvcl``: BOD-VCL on the shared trainer and clip dataset."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import asdict


def register_train(
    methods: argparse._SubParsersAction,
    add_common_arguments: Callable[..., None],
    train_config_from_args: Callable[[argparse.Namespace], object],
) -> None:
    """Add ``bodvcl`` under ``videorep train`` (called by :mod:`videorep.train.commands`)."""
    from videorep.methods.bodvcl.method import add_train_arguments

    p = methods.add_parser(
        "bodvcl",
        help="BOD-VCL: Koopman-decoupled video contrastive learning (seed 003)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_arguments(p, batch_size=8, epochs=200.0)
    add_train_arguments(p)

    def run(args: argparse.Namespace) -> int:
        from videorep.train.commands import run_distributed

        run_distributed(train_bodvcl, args, train_config_from_args(args))
        return 0

    p.set_defaults(func=run)


def train_bodvcl(args: argparse.Namespace, train_config):  # noqa: ANN001, ANN201
    """Build the clip dataset (``videorep.data.pairs.ClipDataset``) and the method; fit."""
    import torch

    from videorep.data.pairs import ClipDataset
    from videorep.data.sources import discover_sources
    from videorep.methods.bodvcl.method import BODVCLConfig, build_bodvcl, config_from_args
    from videorep.train.trainer import Trainer, dist_info

    if train_config.deterministic:
        from videorep.train.distributed import set_deterministic

        set_deterministic()
    cfg = config_from_args(args)
    torch.manual_seed(train_config.seed)  # initial weights and MoCo queue: same on every rank
    method = build_bodvcl(cfg)
    dtype = getattr(args, "dtype", "float32")
    method.to(getattr(torch, dtype))  # clips are cast to it in BODVCL._clips
    sources = discover_sources(args.data, fps=args.fps)
    global_batch = train_config.batch_size * train_config.accum * dist_info()[1]
    repeats = max(1, -(-global_batch // max(1, len(sources))))
    if repeats > 1 and train_config.progress and dist_info()[0] == 0:
        print(f"videorep: drawing {repeats} clips per video per epoch", file=sys.stderr)
    dataset = ClipDataset(
        sources,
        clip_len=method.config.clip_len,
        stride=method.config.stride,
        views=method.config.views,
        size=method.config.image_size,
        seed=train_config.seed,
        repeats=repeats,
    )
    run_config = {
        "method_config": asdict(BODVCLConfig(**asdict(method.config))),
        "data": {"paths": list(args.data), "fps": args.fps},
        "dtype": dtype,
    }
    trainer = Trainer(method, dataset, train_config, run_config=run_config)
    return method, trainer.fit()
