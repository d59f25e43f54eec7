"""DAVIS J&F of the frozen encoder and of a trained head under every propagation preset.

Each preset runs at its own input size (``PRESET_SIZES``; ``--extra PRESET@HxW`` adds runs at
another size). Encoder passes are cached per size (``--cache-dir``), so the frozen and head runs
of one size share them; the encoder's time per frame is measured once per size (the first,
uncached pass) and each run's time per frame is propagation (+ head) only.

    PYTHONPATH=src python examples/propagation_presets.py --davis-root ../shared/data/davis-sample \
        --projection demo-out/train/projection --out presets-out [--threads 1]

Writes ``OUT/<preset>@<size>/<frozen|head>/`` (the usual ``results.json`` and PNGs) and
``OUT/summary.json`` (per sequence J&F, seconds per frame).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from videorep.backbones import load_encoder
from videorep.data.davis import list_sequences, load_sequence
from videorep.data.images import load_image, parse_size
from videorep.eval.core import FeatureExtractor
from videorep.eval.davis import run_davis, sequence_row
from videorep.eval.feature_cache import CachingEncoder
from videorep.eval.propagation import PRESETS, preset_size, resolve_config
from videorep.methods.cosettle import load_projection


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--davis-root", required=True)
    p.add_argument("--year", type=int, default=2016)
    p.add_argument("--projection", default=None, help="trained head folder (adds head runs)")
    p.add_argument("--out", required=True)
    p.add_argument("--presets", nargs="*", default=list(PRESETS))
    p.add_argument("--extra", nargs="*", default=[], help="more runs as PRESET@HxW")
    p.add_argument("--cache-dir", default=None, help="feature cache (default OUT/features)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--size", default=None, help="run every preset at this HxW instead of its own")
    p.add_argument("--max-frames", type=int, default=None, help="first N frames of each sequence")
    p.add_argument("--sequences", default=None, help="comma-separated subset of the split")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    encoder = load_encoder("dinov2_vits14_imgfocus")
    head = None
    if args.projection:
        head = load_projection(args.projection, expect_dim=encoder.embed_dim)
    runs = [(name, args.size or preset_size(name, "davis") or "480x880") for name in args.presets]
    runs += [tuple(x.split("@")) for x in args.extra]
    by_size: dict[str, list[str]] = {}  # grouped by the input size after snapping
    snapped = {
        size: "x".join(map(str, FeatureExtractor(encoder, parse_size(size)).input_size))
        for _, size in runs
    }
    for name, size in runs:
        by_size.setdefault(snapped[size], []).append(name)
    subset = args.sequences.split(",") if args.sequences else None
    names = list_sequences(args.davis_root, args.year, "val", subset)
    seqs = [load_sequence(args.davis_root, n, args.year) for n in names]
    for seq in seqs:
        seq.frames = seq.frames[: args.max_frames]
    summary: dict = {"encoder": {}, "runs": {}}
    cache_root = Path(args.cache_dir) if args.cache_dir else out / "features"
    for size, presets in by_size.items():
        cached = CachingEncoder(encoder, cache_root / size)
        probe = FeatureExtractor(cached, parse_size(size))
        t0, misses0 = time.perf_counter(), cached.misses
        for seq in seqs:  # the encoder pass, timed once per size
            for frame in seq.frames:
                probe(load_image(frame))
        computed = cached.misses - misses0
        summary["encoder"][size] = {
            "input": list(probe.input_size),
            "frames_encoded": computed,
            "seconds_per_frame": (time.perf_counter() - t0) / computed if computed else None,
        }
        for name in presets:
            for label, proj in (("frozen", None), ("head", head)):
                if label == "head" and proj is None:
                    continue
                key = f"{name}@{size}"
                ex = FeatureExtractor(cached, parse_size(size), proj)
                rep = run_davis(
                    args.davis_root,
                    args.year,
                    "val",
                    ex,
                    resolve_config(name, "davis"),
                    out / key / label,
                    settings={"preset": name, "size": size, "run": label},
                    max_frames=args.max_frames,
                    sequences=subset,
                    resume=True,  # a finished run into the same folder is kept
                    log=lambda m: print(m, file=sys.stderr),
                )
                seconds = {t["sequence"]: t["seconds"] for t in rep["timing"]["per_sequence"]}
                rows = {}
                for r in rep["per_sequence"]:
                    row = sequence_row(r)
                    rows[r["sequence"]] = {
                        "J&F": row["J&F"],
                        "J": row["J"],
                        "F": row["F"],
                        "frames": r["n_frames"],
                        "seconds_per_frame": seconds[r["sequence"]] / max(1, r["n_frames"] - 1),
                    }
                summary["runs"].setdefault(key, {})[label] = {
                    "JF_mean": rep["JF_mean"],
                    "per_sequence": rows,
                }
                print(f"{key} {label}: J&F {100 * rep['JF_mean']:.2f}", flush=True)
                (out / "summary.json").write_text(json.dumps(summary, indent=2))
        cached.cache.clear()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
