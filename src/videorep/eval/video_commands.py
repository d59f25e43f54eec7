"""``videorep eval retrieval | linear-probe | chiral | static-dynamic``: video-level evaluation of
frozen encoders on labelled collections (see docs/video-evaluation.md).

Every command reads a labelled collection (:mod:`videorep.data.labelled`), computes (or reads
from the shared disk cache) the video features (:mod:`videorep.eval.video_features`) of an image
encoder with an optional Co-Settle head (``--backbone/--checkpoint/--projection``, as ``eval
davis``) or of a video encoder (``--video-encoder``: a BOD-VCL checkpoint of ``videorep train
bodvcl``, or ``random:<name>`` for a randomly initialised baseline), computes its metrics
(:mod:`videorep.eval.video_metrics`) and writes ``results.json`` and ``results.csv`` into
``--out`` with the settings, the collection, the feature pass (videos encoded and read from the
cache, seconds) and the provenance. The linear probe is ``methods.bodvcl.probe.linear_probe`` (the
one probe implementation); ``static-dynamic`` builds its clips with ``methods.bodvcl.probe``'s
``static_clip`` / ``dynamic_clip``. This module is layer 4 (command line) and may import both.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

import torch

from videorep.errors import VideorepError

COMMANDS = ("retrieval", "linear-probe", "chiral", "static-dynamic")


# --- flags -----------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    from videorep.backbones.registry import DEFAULT_BACKBONE
    from videorep.data.labelled import FORMATS
    from videorep.utils.device import add_device_argument

    g = p.add_argument_group("collection")
    g.add_argument("--root", required=True, help="dataset folder (videos or frame folders)")
    g.add_argument("--format", default="auto", choices=FORMATS, help="layout (default: detect)")
    g.add_argument("--labels", nargs="+", default=None, metavar="FILE", help="CSV / JSON labels")
    g.add_argument("--split-dir", default=None, help="folder of the split files (UCF/HMDB)")
    e = p.add_argument_group("encoder")
    e.add_argument("--backbone", default=DEFAULT_BACKBONE, help="image encoder name")
    e.add_argument("--checkpoint", default=None, help="image encoder checkpoint")
    e.add_argument("--projection", default=None, metavar="DIR", help="Co-Settle head directory")
    e.add_argument(
        "--video-encoder",
        default=None,
        metavar="CKPT",
        help="a video encoder instead of the image encoder: a `videorep train bodvcl` "
        "checkpoint, or random:NAME (random init, e.g. random:tiny3d)",
    )
    s = p.add_argument_group("sampling")
    s.add_argument("--frames", type=int, default=8, help="frames per video (image encoder)")
    s.add_argument("--clip-len", type=int, default=8, help="frames per clip (video encoder)")
    s.add_argument("--stride", type=int, default=2, help="native frames between clip frames")
    s.add_argument("--clips", type=int, default=1, help="clips per video (video encoder)")
    s.add_argument("--size", type=int, default=112, help="input side in pixels")
    p.add_argument("--out", required=True, help="output folder (results.json, results.csv)")
    p.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="feature cache (default $VIDEOREP_CACHE/video-features); 'none' disables it",
    )
    p.add_argument("--batch-size", type=int, default=32, help="frames or clips per encoder call")
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    add_device_argument(p)


def register_video_commands(sub) -> None:  # noqa: ANN001
    """Add the video-level subcommands to the ``eval`` subparsers."""
    p = sub.add_parser("retrieval", help="zero-shot leave-one-out video retrieval (mAP, R@K)")
    _common(p)
    p.add_argument("--pool", choices=["mean", "concat"], default="mean")
    p.add_argument(
        "--subset",
        choices=["test", "train", "all"],
        default="test",
        help="videos to retrieve among: the test part of --split (default; all videos when "
        "the collection has no splits), its train part, or all",
    )
    p.add_argument("--split", type=int, default=1)
    p.set_defaults(func=run_retrieval)

    p = sub.add_parser("linear-probe", help="linear probe and kNN on frozen video features")
    _common(p)
    p.add_argument("--pool", choices=["mean", "concat"], default="mean")
    p.add_argument(
        "--split", type=int, nargs="+", default=None, help="splits (default: all, averaged)"
    )
    p.add_argument("--weight-decays", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1])
    p.add_argument("--holdout", type=float, default=0.2, help="held-out part for the sweep")
    p.add_argument("--knn-k", type=int, default=20)
    p.add_argument("--knn-temperature", type=float, default=0.07)
    p.set_defaults(func=run_linear_probe)

    p = sub.add_parser("chiral", help="temporal-order discrimination: a probe per chiral pair")
    _common(p)
    p.add_argument(
        "--pairs",
        default=None,
        metavar="CSV",
        help="class pairs class_a,class_b (default: every class against its time reversal)",
    )
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.set_defaults(func=run_chiral)

    p = sub.add_parser(
        "static-dynamic", help="BOD-VCL's static / dynamic protocol: linear probe on each version"
    )
    _common(p)
    p.add_argument("--pool", choices=["mean", "concat"], default="mean")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--weight-decays", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1])
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0, help="noise seed of the dynamic version")
    p.set_defaults(func=run_static_dynamic)


# --- shared pieces -----------------------------------------------------------------------------


def _collection(args: argparse.Namespace):
    from videorep.data.labelled import load_collection

    return load_collection(args.root, args.format, args.labels, args.split_dir)


def build_video_encoder(args: argparse.Namespace):
    """The encoder named by the flags: a ``ClipFeatureEncoder`` (``--video-encoder``) or a
    ``FrameFeatureEncoder`` (``--backbone/--checkpoint/--projection``)."""
    from videorep.eval.video_features import (
        ClipFeatureEncoder,
        FrameFeatureEncoder,
        file_digest,
    )

    if args.video_encoder:
        spec = args.video_encoder
        if spec.startswith("random:"):
            from videorep.methods.bodvcl.encoders import ENCODERS

            name = spec.split(":", 1)[1]
            if name not in ENCODERS:
                raise VideorepError(
                    f"--video-encoder {spec}: unknown encoder (random:{', random:'.join(ENCODERS)})"
                )
            return ClipFeatureEncoder(
                lambda: _random_video_encoder(name, args.size),
                f"random:{name}:seed0:size{args.size}",
            )
        return ClipFeatureEncoder(lambda: _bodvcl_encoder(spec), f"bodvcl:{file_digest(spec)}")
    from videorep.backbones.registry import get_spec

    spec = get_spec(args.backbone)
    projection = None
    if args.projection:
        from videorep.methods.cosettle.heads import load_projection

        projection = load_projection(args.projection, expect_dim=spec.embed_dim)
    identity = f"{args.backbone}:{file_digest(args.checkpoint)}"

    def build():  # noqa: ANN202
        from videorep.backbones import load_encoder

        return load_encoder(args.backbone, args.checkpoint)

    return FrameFeatureEncoder(build, identity, projection, patch_size=spec.patch_size)


def _random_video_encoder(name: str, size: int) -> torch.nn.Module:
    from videorep.methods.bodvcl.encoders import build_encoder

    torch.manual_seed(0)
    return build_encoder(name, img_size=size)


def _bodvcl_encoder(path: str) -> torch.nn.Module:
    """The per-frame encoder of a ``videorep train bodvcl`` checkpoint (built from the run's own
    method config; one loader, shared with ``eval finetune``)."""
    from videorep.methods.bodvcl.finetune import load_bodvcl_encoder

    return load_bodvcl_encoder(path)[0]


def _sampling(args: argparse.Namespace):
    from videorep.eval.video_features import Sampling

    return Sampling(
        frames=args.frames,
        clip_len=args.clip_len,
        stride=args.stride,
        clips=args.clips,
        size=args.size,
    )


def _cache(args: argparse.Namespace):
    from videorep.eval.video_features import default_cache_dir

    if args.cache is None:
        return default_cache_dir()
    return None if args.cache.lower() == "none" else Path(args.cache)


def _features(args, encoder, videos, device, transform=None, name="none", desc="features"):  # noqa: ANN001, ANN202
    from videorep.eval.video_features import extract_features

    feats = extract_features(
        videos,
        encoder,
        _sampling(args),
        cache_dir=_cache(args),
        device=device,
        batch_size=args.batch_size,
        transform=transform,
        transform_name=name,
        desc=desc,
    )
    print(
        f"{desc}: {len(feats.videos)} videos ({feats.encoded} encoded, {feats.cached} from the "
        f"cache, {len(feats.failed)} unreadable"
        + (f", {feats.derived} reversed from their forward features" if feats.derived else "")
        + f") in {feats.seconds:.2f} s, "
        f"{feats.encoder_calls} encoder calls",
        flush=True,
    )
    return feats


def _rows(feats, videos) -> torch.Tensor:  # noqa: ANN001
    """Row index into ``feats`` of each of ``videos`` (those that were readable)."""
    where = {id(v): i for i, v in enumerate(feats.videos)}
    return torch.tensor([where[id(v)] for v in videos if id(v) in where], dtype=torch.long)


def _start(args: argparse.Namespace) -> torch.device:
    from videorep.utils.device import resolve_device
    from videorep.utils.provenance import provenance_line

    device = resolve_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise VideorepError(f"--threads {args.threads}: must be at least 1")
        torch.set_num_threads(args.threads)
    print(provenance_line(device), file=sys.stderr, flush=True)
    return device


def _settings(args: argparse.Namespace) -> dict:
    skip = {"func", "command", "eval_command"}
    return {k: v for k, v in sorted(vars(args).items()) if k not in skip}


def _write(args, device, command, coll, feature_sets, metrics, rows) -> dict:  # noqa: ANN001
    """results.json (settings, collection, feature passes, metrics, provenance) + results.csv."""
    from videorep.eval.core import atomic_write_bytes
    from videorep.utils.provenance import provenance

    out = Path(args.out)
    failed = sorted({p for f in feature_sets for p, _ in f.failed})
    record = {
        "command": f"eval {command}",
        "settings": _settings(args),
        "collection": {
            "root": str(coll.root),
            "format": coll.format,
            "videos": len(coll),
            "classes": len(coll.classes),
            "splits": coll.splits,
            "skipped_missing": len(coll.skipped),
            "unreadable": len(failed),
            "unreadable_files": failed[:100],
            "sources": coll.source,
        },
        "features": [f.summary() | {"cache": f.cache_dir} for f in feature_sets],
        "metrics": metrics,
        "provenance": provenance(device),
    }
    atomic_write_bytes(out / "results.json", (json.dumps(record, indent=1) + "\n").encode())
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_bytes(out / "results.csv", buf.getvalue().encode())
    print(f"wrote {out / 'results.json'} and {out / 'results.csv'}", flush=True)
    return record


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


# --- commands ----------------------------------------------------------------------------------


def run_retrieval(args: argparse.Namespace) -> int:
    from videorep.eval.video_metrics import retrieval_metrics

    device = _start(args)
    coll = _collection(args)
    videos = coll
    if args.subset != "all" and coll.splits:
        train, test = coll.split(args.split)
        videos = test if args.subset == "test" else train
    encoder = build_video_encoder(args)
    feats = _features(args, encoder, videos, device)
    m = retrieval_metrics(feats.pooled(args.pool), feats.labels)
    print(
        f"retrieval over {m['queries']} queries: mAP {_pct(m['mAP'])}  R@1 {_pct(m['R@1'])}  "
        f"R@5 {_pct(m['R@5'])}  R@10 {_pct(m['R@10'])}"
    )
    rows = [{"metric": k, "value": v} for k, v in m.items()]
    _write(args, device, "retrieval", coll, [feats], m, rows)
    return 0


def run_linear_probe(args: argparse.Namespace) -> int:
    from videorep.eval.video_metrics import knn_accuracy, probe_with_sweep
    from videorep.methods.bodvcl.probe import linear_probe

    device = _start(args)
    coll = _collection(args)
    splits = args.split or coll.splits
    if not splits:
        raise VideorepError(
            f"{coll.root}: linear-probe needs train/test splits; this {coll.format} collection "
            "has none (give split files, train/ and test/ folders or a split column)"
        )
    parts = {k: coll.split(k) for k in splits}
    used = {id(v): v for tr, te in parts.values() for v in [*tr, *te]}
    needed = [v for v in coll if id(v) in used]
    encoder = build_video_encoder(args)
    feats = _features(args, encoder, needed, device)
    x = feats.pooled(args.pool)
    rows = []
    for k, (tr, te) in parts.items():
        a, b = _rows(feats, tr), _rows(feats, te)
        if len(a) == 0 or len(b) == 0:
            raise VideorepError(f"split {k}: no readable train or test video")
        probe = probe_with_sweep(
            linear_probe,
            x[a],
            feats.labels[a],
            x[b],
            feats.labels[b],
            args.weight_decays,
            args.holdout,
        )
        knn = knn_accuracy(
            x[a].to(device),
            feats.labels[a],
            x[b].to(device),
            feats.labels[b],
            len(coll.classes),
            args.knn_k,
            args.knn_temperature,
        )
        rows.append(
            {
                "split": k,
                "train": len(a),
                "test": len(b),
                "top1": probe["top1"],
                "top5": probe["top5"],
                "weight_decay": probe["weight_decay"],
                "knn_top1": knn["top1"],
                "knn_top5": knn["top5"],
            }
        )
        print(
            f"split {k}: linear top-1 {_pct(probe['top1'])} top-5 {_pct(probe['top5'])} "
            f"(wd {probe['weight_decay']:g})  kNN top-1 {_pct(knn['top1'])} "
            f"top-5 {_pct(knn['top5'])}"
        )
    mean = {
        key: sum(r[key] for r in rows) / len(rows)
        for key in ("top1", "top5", "knn_top1", "knn_top5")
    }
    print(
        f"mean over {len(rows)} split(s): linear top-1 {_pct(mean['top1'])} top-5 "
        f"{_pct(mean['top5'])}  kNN top-1 {_pct(mean['knn_top1'])} top-5 {_pct(mean['knn_top5'])}"
    )
    rows.append({"split": "mean", "train": "", "test": "", **mean, "weight_decay": ""})
    _write(args, device, "linear-probe", coll, [feats], {"mean": mean, "splits": rows[:-1]}, rows)
    return 0


def chiral_collection(coll):  # noqa: ANN001, ANN201
    """``(collection, pairs)``: every video of ``coll`` plus its time reversal; class ``c`` and
    ``c (reversed)`` form a chiral pair (class indices ``i`` and ``C + i``)."""
    from dataclasses import replace

    n = len(coll.classes)
    classes = list(coll.classes) + [f"{c} (reversed)" for c in coll.classes]
    videos = list(coll.videos) + [
        replace(v, reverse=not v.reverse, label=v.label + n, class_name=classes[v.label + n])
        for v in coll.videos
    ]
    out = replace(coll, videos=videos, classes=classes)
    return out, [(i, n + i) for i in range(n)]


def _read_pairs(path: str, classes: list[str]) -> list[tuple[int, int]]:
    from videorep.data.files import read_lines

    index = {c: i for i, c in enumerate(classes)}
    pairs = []
    for n, line in enumerate(read_lines(path, "pair file"), 1):
        if not line or line.startswith("#"):
            continue
        row = next(csv.reader([line]))
        if len(row) != 2:
            raise VideorepError(f"{path}: line {n}: expected class_a,class_b, got {line[:100]!r}")
        a, b = (c.strip() for c in row)
        if not pairs and a not in index and b not in index and a.lower().startswith("class"):
            continue  # a header line class_a,class_b
        for c in (a, b):
            if c not in index:
                raise VideorepError(f"{path}: line {n}: unknown class {c!r}")
        pairs.append((index[a], index[b]))
    if not pairs:
        raise VideorepError(f"{path}: no class pairs")
    return pairs


def run_chiral(args: argparse.Namespace) -> int:
    from videorep.eval.video_metrics import chiral_pairs_accuracy
    from videorep.methods.bodvcl.probe import linear_probe

    device = _start(args)
    coll = _collection(args)
    if args.pairs:
        pairs = _read_pairs(args.pairs, coll.classes)
        chiral = coll
    else:
        chiral, pairs = chiral_collection(coll)
    if args.split not in chiral.splits:
        chiral.split(args.split)  # raises the clear error
    tr, te = chiral.split(args.split)
    wanted = {c for p in pairs for c in p}
    needed = [v for v in [*tr, *te] if v.label in wanted]
    encoder = build_video_encoder(args)
    feats = _features(args, encoder, needed, device)
    a, b = _rows(feats, tr), _rows(feats, te)
    results, rows = {}, []
    for pool in ("concat", "mean"):
        x = feats.pooled(pool)
        r = chiral_pairs_accuracy(
            linear_probe,
            x[a],
            feats.labels[a],
            x[b],
            feats.labels[b],
            pairs,
            weight_decay=args.weight_decay,
        )
        results[pool] = r
        for p in r["pairs"]:
            rows.append(
                {
                    "pool": pool,
                    "class_a": chiral.classes[p["a"]],
                    "class_b": chiral.classes[p["b"]],
                    "accuracy": p["accuracy"],
                    "train": p["train"],
                    "test": p["test"],
                }
            )
        rows.append(
            {"pool": pool, "class_a": "mean", "class_b": "", "accuracy": r["accuracy"]}
            | {"train": "", "test": ""}
        )
    print(
        f"chiral accuracy over {len(pairs)} pair(s): time-concatenated {_pct(results['concat']['accuracy'])}"
        f"  (mean-pooled control {_pct(results['mean']['accuracy'])}; chance 50.00)"
    )
    metrics = {
        "accuracy": results["concat"]["accuracy"],
        "accuracy_mean_pooled": results["mean"]["accuracy"],
        "pairs": len(pairs),
        "generated_by_reversal": not args.pairs,
    }
    _write(args, device, "chiral", chiral, [feats], metrics, rows)
    return 0


def run_static_dynamic(args: argparse.Namespace) -> int:
    from videorep.eval.video_metrics import probe_with_sweep
    from videorep.methods.bodvcl.probe import dynamic_clip, linear_probe, static_clip

    device = _start(args)
    coll = _collection(args)
    tr, te = coll.split(args.split)
    videos = [*tr, *te]
    encoder = build_video_encoder(args)
    seed = args.seed
    versions = {
        "original": (None, "none"),
        "static": (lambda clip, s: static_clip(clip), "static"),
        "dynamic": (
            lambda clip, s: dynamic_clip(clip, seed=seed + s),
            f"dynamic-farneback-seed{seed}",
        ),
    }
    metrics, rows, sets = {}, [], []
    for name, (transform, key) in versions.items():
        t0 = time.perf_counter()
        feats = _features(args, encoder, videos, device, transform, key, desc=name)
        sets.append(feats)
        x = feats.pooled(args.pool)
        a, b = _rows(feats, tr), _rows(feats, te)
        r = probe_with_sweep(
            linear_probe,
            x[a],
            feats.labels[a],
            x[b],
            feats.labels[b],
            args.weight_decays,
            args.holdout,
        )
        metrics[name] = {"top1": r["top1"], "top5": r["top5"], "weight_decay": r["weight_decay"]}
        rows.append({"version": name, **metrics[name], "seconds": time.perf_counter() - t0})
        print(f"{name}: linear top-1 {_pct(r['top1'])} top-5 {_pct(r['top5'])}")
    _write(args, device, "static-dynamic", coll, sets, metrics, rows)
    return 0
