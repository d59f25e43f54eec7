"""Where and why does a Co-Settle head help or hurt label propagation? A per-sequence study.

For every sequence of one or more DAVIS roots (e.g. ``../shared/data/davis-sample`` and
``../shared/data/davis-dev``, the 9-sequence development set) this evaluates the frozen
encoder, each ``--head`` and each head fused with the frozen tokens at each ``--fuse`` alpha
(:class:`videorep.eval.fusion.FusedProjection`) by DAVIS label propagation through the one path
(``videorep.eval.davis.evaluate_sequence``), on one set of encoder passes (``--cache-dir``), and
measures, per sequence and run:

* J&F, J, F, per-frame J over time, and the predicted mask's error split into false-positive
  area (background taken as object) and false-negative area (object lost), each / object area;
* fg/bg separability of the patch tokens (L2-normalised, as propagation sees them), labelled by
  the first-frame mask at feature resolution: the Fisher ratio along the class-mean difference
  on frame 0, and a ridge linear probe fitted on frame 0 and scored (balanced accuracy) on later
  annotated frames;
* the trade-off terms of the Co-Settle supplementary (Eq. 47-55) on the normalised tokens:
  D_intra (position-wise distance of frame pairs (t, t + gap), gap = 0.15 x length as the
  paper's delta, divided by twice the video's radius), the sequence's mean inter-video distance
  to the other sequences' middle frames (Eq. 47, divided by twice R_inter of Eq. 49-50), and the
  cycle accuracy of the palindrome walk over the same pairs (Eq. 55, tau 0.03; all patches and
  first-frame object patches);
* how much the head changes the tokens: mean cosine between g(z) and the centred frozen z.

Writes OUT/study.json (resumable: finished (run, sequence) entries are kept), OUT/per_frame_J.png
and prints the tables. ::

    python examples/devset_study.py --davis-root ../shared/data/davis-sample \
        ../shared/data/davis-dev --cache-dir /work/cache/devset-features \
        --head "demo s0" RUN/projection --fuse 0.5 --out study
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from videorep.backbones import load_encoder
from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.data.davis import list_sequences, load_sequence, read_annotation
from videorep.data.images import load_image, parse_size
from videorep.errors import VideorepError
from videorep.eval.core import FeatureExtractor, index_to_soft
from videorep.eval.davis import evaluate_sequence, read_prediction
from videorep.eval.feature_cache import CachingEncoder
from videorep.eval.fusion import FusedProjection
from videorep.eval.propagation import resolve_config
from videorep.methods.cosettle.heads import load_projection
from videorep.utils.device import add_device_argument, resolve_device
from videorep.utils.encoder_dtype import add_encoder_dtype_argument, apply_encoder_dtype

GAMMA = 0.3  # the paper's scale factor between D_intra and D_inter (supplementary, Eq. 54)
TAU = 0.03  # walk temperature of the cycle accuracy (the training default)
PURE = 0.75  # a patch is object (background) when at least this share of it is (is not) object


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)[:60]


# ---------------------------------------------------------------------------------------------
# instruments on token grids


def fisher_ratio(x: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor) -> float:
    """Fisher ratio of ``x [N, D]`` along the class-mean difference of ``fg``/``bg`` masks [N]."""
    if int(fg.sum()) < 2 or int(bg.sum()) < 2:
        return float("nan")  # too few pure object or background patches at this grid
    d = x[fg].mean(0) - x[bg].mean(0)
    s = x @ (d / d.norm().clamp_min(1e-12))
    return float((s[fg].mean() - s[bg].mean()) ** 2 / (s[fg].var() + s[bg].var()).clamp_min(1e-12))


def fit_probe(x: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, ridge: float = 1.0):
    """Class-balanced ridge regression onto +-1 over ``x [N, D]`` (+ bias): weights ``[D + 1]``."""
    keep = fg | bg
    xs = torch.cat([x[keep], torch.ones(int(keep.sum()), 1, dtype=x.dtype)], dim=1).double()
    y = torch.where(fg[keep], 1.0, -1.0).double()
    w = torch.where(fg[keep], 0.5 / fg.sum(), 0.5 / bg.sum()).double()
    a = xs.t() @ (xs * w[:, None]) + ridge / len(y) * torch.eye(xs.shape[1], dtype=torch.float64)
    return torch.linalg.solve(a, xs.t() @ (w * y))


def probe_accuracy(weights: torch.Tensor, x: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor):
    """Balanced accuracy of the probe on ``x [N, D]`` with ``fg``/``bg`` masks."""
    xs = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1).double()
    pred = xs @ weights > 0
    return 0.5 * (float(pred[fg].float().mean()) + float((~pred[bg]).float().mean()))


def cycle_accuracy(a: torch.Tensor, b: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """Per-patch palindrome-walk success ``[N]`` bool (Eq. 55) for normalised ``a, b [N, D]``."""
    sim = a @ b.t() / tau
    p = torch.softmax(sim, dim=1) @ torch.softmax(sim.t(), dim=1)
    return p.argmax(1) == torch.arange(a.shape[0])


def positionwise(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over patch positions of ``|a(i) - b(i)|`` (Eq. 47/51) for ``[N, D]`` grids."""
    return float((a - b).norm(dim=-1).mean())


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--davis-root", nargs="+", required=True, help="one or more DAVIS roots")
    ap.add_argument("--year", type=int, default=2016)
    ap.add_argument("--split", default="val")
    ap.add_argument("--sequences", nargs="*", default=None, help="restrict to these sequences")
    ap.add_argument("--size", default="476x854")
    ap.add_argument(
        "--preset",
        default="dino-paper-params",
        help="propagation preset (the study used the former paper preset)",
    )
    ap.add_argument("--backbone", default=DEFAULT_BACKBONE)
    ap.add_argument("--cache-dir", default=None, help="feature cache (shared with the sweep)")
    ap.add_argument(
        "--head",
        nargs=2,
        action="append",
        default=[],
        metavar=("LABEL", "DIR"),
        help="a trained projection (folder with config.json + projection.safetensors)",
    )
    ap.add_argument(
        "--fuse", nargs="*", type=float, default=[], help="fusion alphas to evaluate for each head"
    )
    add_encoder_dtype_argument(ap)
    ap.add_argument("--no-instruments", action="store_true", help="only the propagation scores")
    ap.add_argument("--out", required=True)
    add_device_argument(ap)
    args = ap.parse_args()

    # bad paths fail here, each in one line, before any work
    seqs: list[tuple[Path, str]] = []
    for root in args.davis_root:
        names = list_sequences(root, args.year, args.split)
        seqs += [(Path(root), n) for n in names]
    if args.sequences:
        known = {n for _, n in seqs}
        unknown = sorted(set(args.sequences) - known)
        if unknown:
            raise VideorepError(f"sequences {unknown} are in none of {args.davis_root}")
        seqs = [(r, n) for r, n in seqs if n in args.sequences]
    if len({n for _, n in seqs}) != len(seqs):
        raise VideorepError(f"a sequence name appears in more than one of {args.davis_root}")
    for alpha in args.fuse:
        if not 0 <= alpha <= 1:
            raise VideorepError(f"--fuse {alpha}: alphas lie in [0, 1]")
    device = resolve_device(args.device)
    encoder = load_encoder(args.backbone).to(device)
    encoder_dtype = apply_encoder_dtype(encoder, args.encoder_dtype, device)
    heads = {}
    for label, folder in args.head:
        heads[label] = load_projection(folder, expect_dim=encoder.embed_dim).to(device).eval()
    size = parse_size(args.size)
    cached = CachingEncoder(encoder, args.cache_dir)
    prop = resolve_config(args.preset, "davis")
    runs: dict[str, object] = {"frozen": None}
    for label, head in heads.items():
        runs[label] = head
        for alpha in args.fuse:
            runs[f"{label} fused a={alpha:g}"] = FusedProjection(head, alpha)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "study.json"
    store = json.loads(store_path.read_text()) if store_path.is_file() else {}
    settings = {
        "size": args.size,
        "preset": args.preset,
        "backbone": args.backbone,
        "encoder_dtype": encoder_dtype,
    }
    if store.get("settings", settings) != settings:
        raise VideorepError(f"{store_path}: written with {store['settings']}, not {settings}")
    store["settings"] = settings
    store.setdefault("heads", {}).update({k: v for k, v in args.head})
    scores = store.setdefault("scores", {})
    instruments = store.setdefault("instruments", {})

    def save() -> None:
        tmp = store_path.with_name(f".{store_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(store, indent=1))
        os.replace(tmp, store_path)

    frozen_ex = FeatureExtractor(cached, size)
    grid = frozen_ex.grid
    middles: dict[str, torch.Tensor] = {}
    for root, name in seqs:
        seq = load_sequence(root, name, args.year)
        if not seq.scored:
            raise VideorepError(f"{root}/{name}: needs an annotation for every frame")
        for label, projection in runs.items():
            if name in scores.get(label, {}):
                continue
            t0 = time.perf_counter()
            ex = FeatureExtractor(cached, size, projection=projection)
            pred_dir = out / "pred" / slug(label)
            res = evaluate_sequence(seq, ex, ex.grid, prop, pred_dir)
            summ = res["objects"][0]  # DAVIS-2016: one object
            fp, fn = [], []
            for t in range(1, len(seq.frames) - 1):
                gt = read_annotation(seq.annotations[t], args.year)[0] > 0
                pr = read_prediction(pred_dir / name / f"{t:05d}.png") > 0
                area = max(int(gt.sum()), 1)
                fp.append(float((pr & ~gt).sum()) / area)
                fn.append(float((~pr & gt).sum()) / area)
            scores.setdefault(label, {})[name] = {
                "J&F": (summ["J_mean"] + summ["F_mean"]) / 2,
                "J": summ["J_mean"],
                "F": summ["F_mean"],
                "J_frames": res["J_frames"][0],
                "fp_area": float(np.mean(fp)),
                "fn_area": float(np.mean(fn)),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            save()
            print(f"{name:<16} {label:<28} {res_jf(scores[label][name]):6.1f}", file=sys.stderr)
        if args.no_instruments:
            continue
        # instruments on the tokens (cache hits after the frozen run)
        n = len(seq.frames)
        gap = max(1, round(0.15 * n))
        starts = np.linspace(0, n - 1 - gap, num=min(6, n - gap)).round().astype(int).tolist()
        needed = sorted({0, n // 2, *starts, *[s + gap for s in starts], *probe_frames(n)})
        with torch.no_grad():
            z = {
                t: frozen_ex(load_image(seq.frames[t])).reshape(-1, encoder.embed_dim)
                for t in needed
            }
        middles[name] = z[n // 2]
        masks = {}
        for t in sorted({0, *probe_frames(n)}):
            lab, void = read_annotation(seq.annotations[t], args.year)
            frac = index_to_soft((lab > 0).astype(np.uint8), 2, grid, void)[1].reshape(-1)
            masks[t] = (frac >= PURE, frac <= 1 - PURE)
        for label, projection in runs.items():
            if name in instruments.get(label, {}):
                continue
            with torch.no_grad():
                p = {
                    t: F.normalize(
                        (projection(v[None].to(device))[0] if projection else v).float().cpu(),
                        dim=-1,
                    )
                    for t, v in z.items()
                }
            fg0, bg0 = masks[0]
            w = fit_probe(p[0], fg0, bg0)
            later = probe_frames(n)
            pairs = [(s, s + gap) for s in starts]
            cyc = [cycle_accuracy(p[a], p[b]) for a, b in pairs]
            zbar = torch.stack([p[t] for t in needed]).mean(0)
            radius = max(float((p[t] - zbar).norm(dim=-1).mean()) for t in needed)
            d_intra_ori = float(np.mean([positionwise(p[a], p[b]) for a, b in pairs]))
            rec = {
                "fisher_frame0": fisher_ratio(p[0], fg0, bg0),
                "probe_acc_later": float(
                    np.mean([probe_accuracy(w, p[t], *masks[t]) for t in later])
                ),
                "cycle_acc": float(torch.stack(cyc).float().mean()),
                "cycle_acc_fg": float(
                    np.mean(
                        [
                            float(c[masks_fg(masks, a, fg0)].float().mean())
                            for c, (a, _) in zip(cyc, pairs)
                        ]
                    )
                ),
                "D_intra_ori": d_intra_ori,
                "R_intra": radius,
                "D_intra": d_intra_ori / (2 * radius),
                "gap": gap,
            }
            if projection is not None and not isinstance(projection, FusedProjection):
                centred = z[0] - z[0].mean(-1, keepdim=True)
                rec["cos_to_frozen"] = float(F.cosine_similarity(p[0], centred, dim=-1).mean())
            instruments.setdefault(label, {})[name] = rec
            save()
    # inter-video distances between the middle frames (all sequences of this call)
    if not args.no_instruments and len(middles) > 1:
        names = list(middles)
        for label, projection in runs.items():
            with torch.no_grad():
                mids = {
                    k: F.normalize(
                        (projection(v[None].to(device))[0] if projection else v).float().cpu(),
                        dim=-1,
                    )
                    for k, v in middles.items()
                }
            centre = torch.stack(list(mids.values())).mean(0)
            r_inter = max(float((m - centre).norm(dim=-1).mean()) for m in mids.values())
            pair_d = [
                positionwise(mids[u], mids[v]) for i, u in enumerate(names) for v in names[i + 1 :]
            ]
            store.setdefault("inter", {})[label] = {
                "D_inter_ori": float(np.mean(pair_d)),
                "R_inter": r_inter,
                "D_inter": float(np.mean(pair_d)) / (2 * r_inter),
            }
            for u in names:
                mean_d = float(np.mean([positionwise(mids[u], mids[v]) for v in names if v != u]))
                rec = instruments[label][u]
                rec["D_inter_seq"] = mean_d / (2 * r_inter)
                rec["margin"] = rec["D_inter_seq"] - GAMMA * rec["D_intra"]
        save()
    report(store, [n for _, n in seqs], list(runs), out)
    return 0


def probe_frames(n: int) -> list[int]:
    """Later annotated frames the frame-0 probe is scored on: 1/4, 1/2, 3/4 and the last."""
    return sorted({max(1, n // 4), n // 2, (3 * n) // 4, n - 1})


def masks_fg(masks: dict, t: int, fg0: torch.Tensor) -> torch.Tensor:
    """Object patches of frame ``t`` where its mask is known, else of frame 0."""
    return masks[t][0] if t in masks else fg0


def res_jf(entry: dict) -> float:
    return 100 * entry["J&F"]


def report(store: dict, names: list[str], runs: list[str], out: Path) -> None:
    scores, inst = store["scores"], store.get("instruments", {})
    runs = [r for r in runs if r in scores]
    print(
        f"\n{'J&F':<30}"
        + "".join(f"{n[:10]:>11}" for n in names)
        + f"{'mean':>8}{'dmean':>8}{'dmin':>8}"
    )
    base = scores["frozen"]
    for r in runs:
        vals = [jf_of(scores[r], n) for n in names]
        gains = [v - jf_of(base, n) for v, n in zip(vals, names)]
        print(
            f"{r[:30]:<30}"
            + "".join(f"{v:11.1f}" for v in vals)
            + f"{np.mean(vals):8.2f}{np.mean(gains):+8.2f}{min(gains):+8.2f}"
        )
    for key in ("fp_area", "fn_area"):
        print(f"\n{key:<30}" + "".join(f"{n[:10]:>11}" for n in names))
        for r in runs:
            print(f"{r[:30]:<30}" + "".join(f"{scores[r][n][key]:11.3f}" for n in names))
    keys = (
        "fisher_frame0",
        "probe_acc_later",
        "cycle_acc",
        "cycle_acc_fg",
        "D_intra",
        "D_inter_seq",
        "margin",
        "cos_to_frozen",
    )
    for key in keys:
        print(f"\n{key:<30}" + "".join(f"{n[:10]:>11}" for n in names))
        for r in runs:
            row = inst.get(r, {})
            print(
                f"{r[:30]:<30}"
                + "".join(
                    f"{row[n][key]:11.3f}" if n in row and key in row[n] else f"{'-':>11}"
                    for n in names
                )
            )
    plot_frames(scores, names, runs, out / "per_frame_J.png")


def jf_of(run_scores: dict, name: str) -> float:
    return res_jf(run_scores[name])


def plot_frames(scores: dict, names: list[str], runs: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 2.6 * rows), squeeze=False)
    for ax, n in zip(axes.flat, names):
        for r in runs:
            if n in scores[r]:
                j = scores[r][n]["J_frames"]
                ax.plot(range(1, len(j) + 1), j, lw=1, label=r)
        ax.set_title(n)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.supxlabel("frame")
    fig.supylabel("J")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VideorepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
