"""``videorep eval finetune``: supervised fine-tuning of a video encoder (BOD-VCL, Sec. 5.3).

Layout: fine-tuning trains, so it runs on the shared trainer (:mod:`videorep.train`), which
evaluation (``videorep.eval``, layer 3) may not import. The protocol therefore lives beside
BOD-VCL (:mod:`videorep.methods.bodvcl.finetune`, layer 3, allowed to use the trainer), and this
module (a ``commands`` module: layer 4, the command line) grafts the ``finetune`` sub-command onto
the ``videorep eval`` group that :mod:`videorep.eval.commands` creates. ``cli.COMMAND_MODULES``
lists it after ``videorep.eval.commands``.
"""

from __future__ import annotations

import argparse
import sys


def _eval_group(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    parser = subparsers.choices.get("eval")
    if parser is None:  # pragma: no cover - eval.commands registers first
        raise RuntimeError("videorep.eval.commands must be registered before the finetune command")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the eval command has no sub-commands")  # pragma: no cover


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``videorep eval finetune``."""
    from videorep.methods.bodvcl.encoders import ENCODERS
    from videorep.utils.device import add_device_argument

    p = _eval_group(subparsers).add_parser(
        "finetune",
        help="fine-tune a video encoder + linear layer with labels (BOD-VCL protocol); top-1",
        description="The whole encoder plus a linear classifier trained with supervision on "
        "each split's training videos (random clips, shared random crop), tested with the "
        "softmax averaged over --test-clips clips per video; top-1/top-5 per split and their "
        "mean. Writes OUT/results.json, OUT/results.csv and one run folder per split "
        "(OUT/split<K>: checkpoint, log.jsonl).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--root", required=True, help="labelled collection (UCF101/HMDB51/CSV/...)")
    p.add_argument("--format", default="auto", help="collection layout (see data/labelled.py)")
    p.add_argument("--labels", nargs="+", default=None, help="label files (csv/ssv2 layouts)")
    p.add_argument("--split-dir", default=None, help="folder of the split files")
    p.add_argument("--out", required=True, help="output folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint", default=None, help="a videorep train bodvcl run (folder or checkpoint.pt)"
    )
    src.add_argument(
        "--encoder", default=None, choices=ENCODERS, help="randomly initialised encoder (scratch)"
    )
    p.add_argument("--splits", type=int, nargs="+", default=None, help="default: every split")
    p.add_argument("--clip-len", type=int, default=8)
    p.add_argument("--stride", type=int, default=1, help="frame stride inside a clip")
    p.add_argument("--size", type=int, default=112, help="frame side fed to the encoder")
    p.add_argument("--candidates", type=int, default=4, help="training clip starts per video")
    p.add_argument("--test-clips", type=int, default=5, help="clips averaged per test video")
    p.add_argument("--flip", action="store_true", help="random horizontal flips in training")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--epochs", type=float, default=30.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--resume", action="store_true", help="continue the runs in OUT/split<K>")
    p.add_argument("--no-progress", action="store_true")
    add_device_argument(p)
    p.set_defaults(func=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    import csv
    import json
    import os
    from pathlib import Path

    from videorep.data.labelled import load_collection
    from videorep.errors import VideorepError
    from videorep.methods.bodvcl.encoders import build_encoder
    from videorep.methods.bodvcl.finetune import FinetuneConfig, finetune, load_bodvcl_encoder
    from videorep.utils.device import resolve_device
    from videorep.utils.provenance import provenance, provenance_line

    device = resolve_device(args.device)
    print(provenance_line(device), file=sys.stderr, flush=True)
    cfg = FinetuneConfig(
        clip_len=args.clip_len,
        stride=args.stride,
        size=args.size,
        candidates=args.candidates,
        test_clips=args.test_clips,
        flip=args.flip,
        dropout=args.dropout,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
        workers=args.workers,
    )
    cfg.validate()
    coll = load_collection(
        args.root, format=args.format, labels=args.labels, split_dir=args.split_dir
    )
    splits = args.splits or coll.splits
    if not splits:
        raise VideorepError(f"{args.root}: the collection has no train/test split to fine-tune on")
    for k in splits:
        if k not in coll.splits:
            raise VideorepError(f"{args.root}: no split {k} (splits: {coll.splits or 'none'})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_split = {}
    source = None
    for k in splits:
        if args.checkpoint:
            encoder, mc = load_bodvcl_encoder(args.checkpoint)
            source = {"checkpoint": args.checkpoint, "encoder": mc["encoder"]}
        else:
            import torch

            torch.manual_seed(args.seed)
            encoder = build_encoder(args.encoder, img_size=args.size)
            source = {"checkpoint": None, "encoder": args.encoder, "init": "random"}
        train, test = coll.split(k)
        scores = finetune(
            encoder,
            train.videos,
            test.videos,
            len(coll.classes),
            out / f"split{k}",
            cfg,
            device=device,
            progress=not args.no_progress,
            resume=args.resume,
        )
        per_split[k] = scores
        print(
            f"split {k}: top-1 {scores['top1']:.2f}  top-5 {scores['top5']:.2f} "
            f"({scores['videos']} test videos)",
            flush=True,
        )
    mean1 = sum(s["top1"] for s in per_split.values()) / len(per_split)
    mean5 = sum(s["top5"] for s in per_split.values()) / len(per_split)
    results = {
        "task": "finetune",
        "top1": mean1,
        "top5": mean5,
        "chance_top1": 100.0 / len(coll.classes),
        "splits": {str(k): v for k, v in per_split.items()},
        "classes": len(coll.classes),
        "skipped_videos": len(coll.skipped),
        "settings": {"root": args.root, "format": args.format, **source, **vars(cfg)},
        "provenance": provenance(device),
    }
    tmp = out / f".results.{os.getpid()}.json"
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out / "results.json")
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["split", "top1", "top5", "test_videos"])
        for k, s in per_split.items():
            w.writerow([k, f"{s['top1']:.4f}", f"{s['top5']:.4f}", s["videos"]])
        w.writerow(["mean", f"{mean1:.4f}", f"{mean5:.4f}", ""])
    print(f"fine-tune: top-1 {mean1:.2f} (mean of {len(per_split)} split(s)); wrote {out}")
    return 0
