"""Label propagation: the windowed, feature-caching engine against a straightforward reference.

Reference (as early public scripts did it): for every target frame, re-encode every context frame
(first frame + queue), compute the dense affinity target x all context patches, multiply
``exp(aff / T)`` by a dense ``[n_ctx, hw, hw]`` neighbourhood mask built once per video with
Python loops, keep values >= the k-th largest per target, renormalise, and multiply the dense
label matrix. The engine (``videorep.eval.propagation``) computes each frame's features once and
compares bands of target patches only with the rows their window reaches.

Both run on the same frames of a 480x880 sequence (davis-sample blackswan resized; snapped to
the patch grid) in separate child processes, so each peak RSS is its own. Throughput excludes the
one encoder forward per target frame that both need; the reference's re-encoding of context frames
is counted, and a propagation-only ratio (all encoder time excluded) is printed as well. The output
masks must be identical.

    .venv/bin/python benchmarks/propagation.py [--frames 8] [--backbone dinov2_vits14_imgfocus]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "davis-sample"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_setup(args):
    import torch

    from videorep.data.davis import read_annotation
    from videorep.data.images import load_image
    from videorep.eval.core import FeatureExtractor, index_to_soft

    torch.manual_seed(0)
    try:
        from videorep.backbones import load_encoder

        encoder = load_encoder(args.backbone, None if args.backbone_weights == "own" else "random")
    except Exception as exc:  # pragma: no cover - benchmark fallback
        print(f"(encoder {args.backbone} unavailable: {exc}); using a random patch embedding")
        encoder = PatchEmbed()
    ex = FeatureExtractor(encoder, (480, 880))
    seq = DATA.resolve() / "JPEGImages" / "480p" / args.sequence
    frames = [load_image(p) for p in sorted(seq.glob("*.jpg"))[: args.frames]]
    ann = DATA.resolve() / "Annotations" / "480p" / args.sequence / "00000.png"
    labels, void = read_annotation(ann, 2016)
    label0 = index_to_soft(labels, 2, ex.grid, void)
    return ex, frames, label0


class PatchEmbed:
    """Fallback stand-in encoder (random 14x14 patch embedding, D 384)."""

    def __init__(self):
        import torch

        self.patch_size, self.embed_dim = 14, 384
        self.conv = torch.nn.Conv2d(3, 384, 14, 14)

    def grid(self, h, w):
        return h // 14, w // 14

    def __call__(self, x):
        return self.conv(x).flatten(2).transpose(1, 2)


def run_engine(args, q):
    import torch

    from videorep.eval.propagation import LabelPropagator, resolve_config

    torch.set_num_threads(args.threads)
    ex, frames, label0 = load_setup(args)
    base = rss_mb()
    cfg = resolve_config("paper", "davis")
    prop = LabelPropagator(cfg)
    enc_time = prop_time = 0.0
    masks = []
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
        masks.append(soft.argmax(0))
    q.put(
        {
            "enc": enc_time,
            "prop": prop_time,
            "extra_enc": 0.0,
            "base_rss": base,
            "peak_rss": rss_mb(),
            "masks": torch.stack(masks).numpy(),
        }
    )


def restrict_neighborhood_loops(h, w, r):
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


def run_reference(args, q):
    import torch
    import torch.nn.functional as F

    from videorep.eval.propagation import resolve_config

    torch.set_num_threads(args.threads)
    ex, frames, label0 = load_setup(args)
    base = rss_mb()
    cfg = resolve_config("paper", "davis")
    h, w = ex.grid
    enc_time = prop_time = extra_enc = 0.0
    t0 = time.perf_counter()
    mask = restrict_neighborhood_loops(h, w, cfg.radius)
    prop_time += time.perf_counter() - t0
    seg_hist = [label0]  # soft labels of frames 0..t-1
    masks = []
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
        src = F.normalize(torch.stack(ctx_feats), dim=-1).transpose(1, 2)  # [n, D, hw]
        tgt = F.normalize(feat_t, dim=-1).unsqueeze(0).repeat(n, 1, 1)  # [n, hw, D]
        aff = torch.exp(torch.bmm(tgt, src) / cfg.temperature)  # [n, hw_tgt, hw_src]
        aff = aff * mask.unsqueeze(0).repeat(n, 1, 1)
        aff = aff.transpose(2, 1).reshape(-1, h * w)  # [n*hw_src, hw_tgt]
        kth = torch.topk(aff, dim=0, k=cfg.topk).values.min(dim=0).values
        aff[aff < kth] = 0
        aff = aff / aff.sum(dim=0, keepdim=True)
        segs = torch.stack([seg_hist[i] for i in ctx_ids])  # [n, C, h, w]
        segs = segs.reshape(n, segs.shape[1], -1).transpose(2, 1).reshape(-1, segs.shape[1]).T
        pred = (segs @ aff).reshape(-1, h, w)
        seg_hist.append(pred)
        prop_time += time.perf_counter() - t2
        masks.append(pred.argmax(0))
    q.put(
        {
            "enc": enc_time,
            "prop": prop_time,
            "extra_enc": extra_enc,
            "base_rss": base,
            "peak_rss": rss_mb(),
            "masks": torch.stack(masks).numpy(),
        }
    )


def child(target, args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--sequence", default="blackswan")
    ap.add_argument("--backbone", default="dinov2_vits14_imgfocus")
    ap.add_argument("--backbone-weights", default="own", choices=["own", "random"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not DATA.resolve().is_dir():
        print(f"davis-sample not found at {DATA.resolve()}", file=sys.stderr)
        return 1
    results = {}
    for name, fn in (("engine", run_engine), ("reference", run_reference)):
        results[name] = child(fn, args)
    e, r = results["engine"], results["reference"]
    n = args.frames - 1
    same = bool((e["masks"] == r["masks"]).all())
    diff = int((e["masks"] != r["masks"]).sum())
    print(f"{n} propagated frames of {args.sequence} at 480x880 (snapped), paper defaults")
    print(
        f"{'':<11} {'enc s/frame':>11} {'prop s':>8} {'re-enc s':>9} {'frames/s*':>10} "
        f"{'prop-only f/s':>13} {'peak RSS MB':>11} {'above base':>10}"
    )
    for name, x in results.items():
        fps = n / (x["prop"] + x["extra_enc"])
        fps_prop = n / x["prop"]
        print(
            f"{name:<11} {x['enc'] / n:11.2f} {x['prop']:8.2f} {x['extra_enc']:9.2f} {fps:10.3f} "
            f"{fps_prop:13.3f} {x['peak_rss']:11.0f} {x['peak_rss'] - x['base_rss']:10.0f}"
        )
    ratio = (r["prop"] + r["extra_enc"]) / (e["prop"] + e["extra_enc"])
    print("* frames/s excluding the shared encoder forward of each target frame")
    print(f"speed-up (frames/s*): {ratio:.1f}x   propagation-only: {r['prop'] / e['prop']:.1f}x")
    print(
        f"peak RSS: engine/reference {e['peak_rss'] / r['peak_rss']:.2f}; above the common "
        f"baseline {(e['peak_rss'] - e['base_rss']) / max(1.0, r['peak_rss'] - r['base_rss']):.2f}"
    )
    print(f"identical output masks: {same} ({diff} differing patches)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
