"""The encoder's CPU speed under thread counts, bf16 autocast and ``torch.compile``.

For each intra-op thread count (``--threads``, default 1 and all cores) the fp32 ``torch.mm``
peak is measured at that thread count, then the encoder is timed in eager fp32, eager bf16
autocast, and (unless ``--no-compile``) ``torch.compile``-d in fp32 and bf16. Each line prints
images/s, the achieved GFLOP/s (analytic ViT FLOP count, :func:`encoder.vit_flops`) and its ratio
to the same thread count's fp32 mm peak; the ratio exceeds 1 when bf16 beats the fp32 peak.
Timings on a shared host drift: compare the ratios within one run.

    .venv/bin/python benchmarks/encoder_cpu_speed.py [--size 224] [--batch 8] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from encoder import mm_peak, time_encoder, vit_flops

from videorep.backbones import load_encoder
from videorep.utils.device import cpu_has_native_bf16


def run(encoder, x: torch.Tensor, dtype: torch.dtype | None, compiled: bool, repeats: int):  # noqa: ANN001, ANN201
    """Best seconds of one forward of ``x`` (compile and warm-up excluded) and the compile time."""
    encoder.autocast_dtype = dtype
    model = encoder
    compile_s = 0.0
    if compiled:
        torch._dynamo.reset()
        model = torch.compile(encoder)
        start = time.perf_counter()
        with torch.inference_mode():
            model(x)
        compile_s = time.perf_counter() - start
    seconds, _ = time_encoder(model, x, repeats)
    encoder.autocast_dtype = None
    return seconds, compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="dinov2_vits14_imgfocus")
    parser.add_argument("--size", type=int, default=224, help="square input side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()

    encoder = load_encoder(args.backbone)
    side = args.size - args.size % encoder.patch_size
    x = torch.randn(args.batch, 3, side, side, generator=torch.Generator().manual_seed(0))
    flops = vit_flops(encoder, side, side) * args.batch
    print(
        f"{args.backbone} {side}x{side} batch {args.batch}: {flops / args.batch / 1e9:.1f} "
        f"GFLOP/image; torch {torch.__version__}; native bf16 CPU: {cpu_has_native_bf16()}"
    )
    variants = [("eager fp32", None, False), ("eager bf16", torch.bfloat16, False)]
    if not args.no_compile:
        variants += [("compile fp32", None, True), ("compile bf16", torch.bfloat16, True)]
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = mm_peak()
        print(f"threads {threads}: torch.mm fp32 peak {peak:.1f} GFLOP/s")
        for name, dtype, compiled in variants:
            try:
                seconds, compile_s = run(encoder, x, dtype, compiled, args.repeats)
            except Exception as exc:  # e.g. no C++ compiler for inductor
                print(f"  {name:<13} failed: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            gflops = flops / seconds / 1e9
            extra = f" (compile {compile_s:.0f} s)" if compiled else ""
            print(
                f"  {name:<13} {args.batch / seconds:7.2f} images/s  {gflops:7.1f} GFLOP/s "
                f"= {gflops / peak:.2f} x mm peak{extra}"
            )


if __name__ == "__main__":
    main()
