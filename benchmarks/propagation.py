"""Label propagation: the windowed, feature-caching engine against a straightforward reference.

Reference (as early public scripts did it): for every target frame, re-encode every context frame
(first frame + queue), compute the dense affinity target x all context patches, multiply
``exp(aff / T)`` by a dense ``[n_ctx, hw, hw]`` neighbourhood mask built once per video with
Python loops, then apply the engine's top-k selection rule (module docstring of
``videorep.eval.propagation``: affinity quantised to 2**-20, ties to the earlier context frame,
then the lower ``y * w + x``) on that dense matrix its own way (``reference_rule``: candidates
near each target's k-th largest value, float64 affinities in numpy, ``np.lexsort`` of the key)
and sum the kept labels with softmax weights. The engine computes each frame's features once,
keeps them in a ``(1 + queue) x h x w x D`` ring buffer and compares bands of target patches only
with the rows their window reaches. Both normalise features with ``normalize_features`` (part of
the rule: the encoder's ``[h, w, D]`` output is a strided view, and ``F.normalize`` rounds it
differently from a contiguous copy).

Setup (the issue's): a 480x880 input (snapped to the patch grid: 476x882, grid 34x63), paper
defaults (top-k 7, queue 20, radius 20, T 0.1), at least 24 frames so that the queue of 20 fills.
Both methods use the same *stand-in encoder* with the real geometry - a fixed random strided
convolution, patch 14, D 384 - so that the reference's per-context re-encoding is affordable and
neither peak is dominated by a ViT's own memory (``--encoder real`` uses dinov2_vits14_imgfocus).

Each method runs in its own spawned child process, and so does a *baseline* child that loads the
same frames and encoder and runs one forward: peak memory is each process's VmHWM (peak RSS),
reported absolute and above the baseline's. Throughput excludes the one encoder forward per
target frame that both need; the reference's re-encoding of context frames is counted (columns
``re-enc s``), and ratios without it (propagation only) and without the reference's one-off loop
mask build are printed too. The output masks (full-resolution index maps) must be identical;
with the selection rule the soft labels are bit-identical too.

    .venv/bin/python benchmarks/propagation.py [--frames 30] [--threads 1] [--encoder standin]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "davis-sample"
INPUT_SIZE = (480, 880)
MIN_FRAMES = 24


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``; reset by exec, unlike ``ru_maxrss``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_standin_encoder():
    """A fixed random strided convolution with ViT-S/14 geometry: ``[B,3,H,W] -> [B, hw, 384]``."""
    import torch

    class StandInEncoder(torch.nn.Module):
        """Patch 14, D 384, grid ``(H // 14, W // 14)``; weights seeded (identical in every child)."""

        def __init__(self) -> None:
            super().__init__()
            self.patch_size, self.embed_dim, self.name = 14, 384, "stand-in conv14 D384"
            gen = torch.Generator().manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 384, 14, 14)
            with torch.no_grad():
                self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen) / 24.0)
                self.conv.bias.copy_(torch.randn(384, generator=gen) * 0.1)
            self.eval()

        def grid(self, h: int, w: int) -> tuple[int, int]:
            return h // 14, w // 14

        @torch.no_grad()
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).flatten(2).transpose(1, 2)

    return StandInEncoder()


def load_setup(args):
    """``(extractor, frames [H, W, 3] uint8 list, label0 [2, h, w])``, identical in every child."""
    import torch

    from videorep.data.davis import read_annotation
    from videorep.data.images import load_image
    from videorep.eval.core import FeatureExtractor, index_to_soft

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.encoder == "real":
        from videorep.backbones import load_encoder

        encoder = load_encoder("dinov2_vits14_imgfocus")
    else:
        encoder = make_standin_encoder()
    ex = FeatureExtractor(encoder, INPUT_SIZE)
    seq = DATA.resolve() / "JPEGImages" / "480p" / args.sequence
    frames = [load_image(p) for p in sorted(seq.glob("*.jpg"))[: args.frames]]
    ann = DATA.resolve() / "Annotations" / "480p" / args.sequence / "00000.png"
    labels, void = read_annotation(ann, 2016)
    label0 = index_to_soft(labels, 2, ex.grid, void)
    return ex, frames, label0


def _outputs(softs, size) -> dict:
    """Soft labels ``[T, C, h, w]``, their argmax cells and the full-resolution index maps.

    Called after the peak memory has been read (the index maps are not part of either method).
    """
    import numpy as np
    import torch

    from videorep.eval.core import soft_to_index

    soft = torch.stack(softs)
    return {
        "soft": soft.numpy(),
        "cells": soft.argmax(1).numpy(),
        "maps": np.stack([soft_to_index(s, size) for s in softs]),
    }


def run_baseline(args, q) -> None:
    """Loads what both methods share (frames, encoder, labels) and runs one forward."""
    import torch  # noqa: F401

    import videorep.eval.propagation  # noqa: F401

    ex, frames, label0 = load_setup(args)
    ex(frames[0])
    q.put({"peak_rss": peak_rss_mb(), "grid": ex.grid, "input": ex.input_size})


def run_engine(args, q) -> None:
    from videorep.eval.propagation import LabelPropagator, resolve_config

    ex, frames, label0 = load_setup(args)
    cfg = resolve_config("dino-paper-params", "davis")
    prop = LabelPropagator(cfg)
    enc_time = prop_time = 0.0
    softs = []
    for t, rgb in enumerate(frames):
        t0 = time.perf_counter()
        feat = ex(rgb)  # the shared forward
        t1 = time.perf_counter()
        enc_time += t1 - t0
        if t == 0:
            prop.reset(feat, label0)
            continue
        soft = prop.step(feat)
        prop_time += time.perf_counter() - t1
        softs.append(soft)
    peak = peak_rss_mb()
    ring = prop._feats.numel() * prop._feats.element_size()  # noqa: SLF001
    geometry = sum(
        mask.numel() * mask.element_size()
        for mask, *_ in prop._geometry.values()  # noqa: SLF001
        if mask is not None
    )
    q.put(
        {
            "enc": enc_time,
            "prop": prop_time,
            "extra_enc": 0.0,
            "mask_build": 0.0,
            "peak_rss": peak,
            "ring_mb": ring / 2**20,
            "ring_shape": tuple(prop._feats.shape),  # noqa: SLF001
            "geometry_mb": geometry / 2**20,
            **_outputs(softs, frames[0].shape[:2]),
        }
    )


def restrict_neighborhood_loops(h: int, w: int, r: int):
    """The dense ``[hw, hw]`` window mask built with Python loops (as early scripts did)."""
    import torch

    mask = torch.zeros(h, w, h, w)
    for i in range(h):
        for j in range(w):
            for p in range(2 * r + 1):
                for q in range(2 * r + 1):
                    y, x = i - r + p, j - r + q
                    if 0 <= y < h and 0 <= x < w:
                        mask[i, j, y, x] = 1
    return mask.reshape(h * w, h * w)


def reference_rule(aff, tgt, src, segs, cfg):
    """The engine's top-k rule (``videorep.eval.propagation``), from the dense matrix.

    ``aff [n*hw_src, hw_tgt]`` holds ``exp(affinity / T)`` of the float32 matmul, 0 outside the
    window; its rows run over the context frames chronologically, then ``y * w + x``, so a row
    index orders candidates exactly as the rule's tie-break does. Candidates within twice the
    engine's margin of each target's k-th largest float32 affinity (a superset of the rule's
    top-k), their affinities recomputed in float64 (numpy), the rule's key sorted with
    ``np.lexsort``; weights softmax(a / T) of the kept ones, labels summed in float64.
    """
    import numpy as np
    import torch

    from videorep.eval.propagation import AFFINITY_QUANTUM_BITS

    k = cfg.topk
    d = src.shape[1]
    gamma = d * 2.0**-24 / (1 - d * 2.0**-24)  # float32 dot product error bound, unit vectors
    slack = math.exp(-2 * (2.0**-AFFINITY_QUANTUM_BITS + 2 * gamma) / cfg.temperature)
    kth = torch.topk(aff, dim=0, k=k).values[-1]  # [hw_tgt]
    src_i, tgt_i = ((aff >= kth * slack) & (aff > 0)).nonzero(as_tuple=True)
    src_i, tgt_i = src_i.numpy(), tgt_i.numpy()
    src64, tgt64 = src.double().numpy(), tgt.double().numpy()
    a = np.concatenate(
        [
            np.einsum("pd,pd->p", tgt64[tgt_i[s : s + 4096]], src64[src_i[s : s + 4096]])
            for s in range(0, len(src_i), 4096)
        ]
    )
    q = np.floor(a * 2.0**AFFINITY_QUANTUM_BITS)
    order = np.lexsort((src_i, -q, tgt_i))  # target, then quantised affinity desc, then row
    t_sorted = tgt_i[order]
    rank = np.arange(len(order)) - np.searchsorted(t_sorted, t_sorted, side="left")
    keep = order[rank < k]
    hw = aff.shape[1]
    assert len(keep) == hw * k, "every target has at least k candidates in its window"
    sel_a = torch.from_numpy(a[keep].reshape(hw, k))
    sel_src = torch.from_numpy(src_i[keep].reshape(hw, k))
    weights = torch.softmax(sel_a / cfg.temperature, dim=1)
    return torch.einsum("tk,tkc->tc", weights, segs[sel_src].double()).float()


def run_reference(args, q) -> None:
    import torch

    from videorep.eval.propagation import normalize_features, resolve_config

    ex, frames, label0 = load_setup(args)
    cfg = resolve_config("dino-paper-params", "davis")
    h, w = ex.grid
    enc_time = prop_time = extra_enc = 0.0
    t0 = time.perf_counter()
    mask = restrict_neighborhood_loops(h, w, cfg.radius)
    mask_build = time.perf_counter() - t0
    seg_hist = [label0]  # soft labels of frames 0..t-1
    softs = []
    for t in range(1, len(frames)):
        t0 = time.perf_counter()
        feat_t = ex(frames[t]).reshape(h * w, -1)  # the shared forward
        t1 = time.perf_counter()
        enc_time += t1 - t0
        ctx_ids = [0] + list(range(max(1, t - cfg.queue), t))
        ctx_feats = [ex(frames[i]).reshape(h * w, -1) for i in ctx_ids]  # re-encoded every time
        t2 = time.perf_counter()
        extra_enc += t2 - t1
        n = len(ctx_ids)
        src = normalize_features(torch.stack(ctx_feats))  # [n, hw, D], context chronological
        tgt = normalize_features(feat_t)  # [hw, D]
        aff = torch.exp(
            torch.bmm(tgt.unsqueeze(0).repeat(n, 1, 1), src.transpose(1, 2)) / cfg.temperature
        )  # [n, hw_tgt, hw_src]
        aff = aff * mask.unsqueeze(0).repeat(n, 1, 1)
        aff = aff.transpose(2, 1).reshape(-1, h * w)  # [n*hw_src, hw_tgt]
        segs = torch.stack([seg_hist[i] for i in ctx_ids])  # [n, C, h, w]
        segs = segs.reshape(n, segs.shape[1], -1).transpose(2, 1).reshape(-1, segs.shape[1])
        pred = reference_rule(aff, tgt, src.reshape(n * h * w, -1), segs, cfg)  # [hw, C]
        pred = pred.T.reshape(-1, h, w)
        seg_hist.append(pred)
        prop_time += time.perf_counter() - t2
        softs.append(pred)
        del src, tgt, aff, ctx_feats
    peak = peak_rss_mb()
    q.put(
        {
            "enc": enc_time,
            "prop": prop_time,
            "extra_enc": extra_enc,
            "mask_build": mask_build,
            "peak_rss": peak,
            **_outputs(softs, frames[0].shape[:2]),
        }
    )


def child(target, args) -> dict:
    """Run ``target(args, queue)`` in a fresh spawned interpreter (its own peak RSS)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(args, q))
    p.start()
    out = q.get()
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"{target.__name__} failed with exit code {p.exitcode}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=30, help=f"frames (>= {MIN_FRAMES})")
    ap.add_argument("--sequence", default="blackswan")
    ap.add_argument("--encoder", default="standin", choices=["standin", "real"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads in every child")
    args = ap.parse_args(argv)
    if not DATA.resolve().is_dir():
        print(f"davis-sample not found at {DATA.resolve()}", file=sys.stderr)
        return 1
    if args.frames < MIN_FRAMES:
        print(
            f"--frames {args.frames}: need >= {MIN_FRAMES} so that the queue fills", file=sys.stderr
        )
        return 1
    base = child(run_baseline, args)
    e = child(run_engine, args)
    r = child(run_reference, args)
    n = args.frames - 1
    (h, w), (H, W) = base["grid"], base["input"]
    enc = "dinov2_vits14_imgfocus" if args.encoder == "real" else "stand-in (fixed random conv)"
    print(
        f"{n} propagated frames of {args.sequence}, input {INPUT_SIZE[0]}x{INPUT_SIZE[1]} -> "
        f"{H}x{W}, grid {h}x{w}, D 384, paper defaults (top-k 7, queue 20, radius 20), "
        f"{args.threads} thread(s)"
    )
    print(f"encoder for both methods: {enc}, patch 14, D 384; the queue fills from frame 21 on")
    print(
        f"{'':<10} {'enc s/frm':>9} {'prop s':>8} {'mask s':>7} {'re-enc s':>8} {'frames/s*':>9} "
        f"{'prop f/s':>8} {'peak MB':>8} {'above base':>10}"
    )
    for name, x in (("engine", e), ("reference", r)):
        fps = n / (x["prop"] + x["mask_build"] + x["extra_enc"])
        print(
            f"{name:<10} {x['enc'] / n:9.3f} {x['prop']:8.2f} {x['mask_build']:7.2f} "
            f"{x['extra_enc']:8.2f} {fps:9.2f} {n / x['prop']:8.2f} {x['peak_rss']:8.0f} "
            f"{x['peak_rss'] - base['peak_rss']:10.0f}"
        )
    print(
        f"{'baseline':<10} {'':>9} {'':>8} {'':>7} {'':>8} {'':>9} {'':>8} {base['peak_rss']:8.0f}"
    )
    print(
        "* frames/s excluding the shared encoder forward of each target frame (the reference's "
        "loop mask and re-encoding included); prop f/s: propagation arithmetic only"
    )
    total_e = e["prop"] + e["extra_enc"] + e["mask_build"]
    total_r = r["prop"] + r["extra_enc"] + r["mask_build"]
    print(
        f"speed-up: frames/s* {total_r / total_e:.1f}x; without the reference's mask build "
        f"{(r['prop'] + r['extra_enc']) / e['prop']:.1f}x; propagation only "
        f"{r['prop'] / e['prop']:.1f}x   (target >= 5x)"
    )
    above_e = e["peak_rss"] - base["peak_rss"]
    above_r = r["peak_rss"] - base["peak_rss"]
    print(
        f"peak memory engine/reference: above the baseline {above_e:.0f}/{above_r:.0f} MB = "
        f"{above_e / max(1.0, above_r):.3f}; absolute {e['peak_rss'] / r['peak_rss']:.3f}"
        f"   (target <= 0.25)"
    )
    print(
        f"engine ring buffer {list(e['ring_shape'])} float32 = {e['ring_mb']:.1f} MB "
        f"(= (1 + queue) x h x w x D x 4 B = {21 * h * w * 384 * 4 / 2**20:.1f} MB); "
        f"window masks cached {e['geometry_mb']:.1f} MB"
    )
    return report_masks(e, r, n)


def report_masks(e: dict, r: dict, n: int) -> int:
    """Compare the two methods' outputs; 0 only if every output mask is identical.

    Where they differ, the printout says how: the first propagated frame (no predicted labels in
    the context yet) shows differences that do not come from the queue; later frames can differ
    more once a different choice of sources is carried forward by the queue. Both methods follow
    the same exact selection rule and sum in float64, so the soft labels are expected to be
    bit-identical.
    """
    import numpy as np

    cells = int((e["cells"] != r["cells"]).sum())
    diff = e["maps"] != r["maps"]
    frames_diff = int(diff.any(axis=(1, 2)).sum())
    same = cells == 0 and frames_diff == 0
    soft_gap = np.abs(e["soft"] - r["soft"])
    print(
        f"identical output masks: {same} (feature-resolution argmax: {cells} differing cells of "
        f"{e['cells'].size}; full-resolution index maps: {int(diff.sum())} differing pixels of "
        f"{diff.size} in {frames_diff} of {n} frames)"
    )
    print(
        f"  soft labels: max |difference| {float(soft_gap[0].max()):.1e} on the first propagated "
        f"frame, {float(soft_gap.max()):.1e} over all frames; cells differing by "
        f"> 1e-4: {int((soft_gap.max(axis=1) > 1e-4).sum())} of {e['cells'].size}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
