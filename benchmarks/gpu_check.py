"""GPU check: measured speed of training and evaluation on one CUDA GPU, as fractions of its peak.

Prints, for one GPU, in one run (ratios within one run are what to compare):

* the peak matmul rate measured here: fp32 (TF32 off), TF32 and bf16 ``torch.mm`` TFLOP/s;
* Co-Settle training samples/s (2 frames + the PEA pass at 224x224, the paper's sample) in fp32
  (TF32 allowed, the training default) and bf16 autocast, for the offline DINOv2 ViT-S/14 and a
  timm ViT-B/16 (random weights: speed does not depend on them), with the achieved TFLOP/s as a
  fraction of the same run's peak for that precision (analytic FLOP counts below);
* DAVIS evaluation frames/s at 480p (480x854 input, encoder + label propagation through the
  project's engine, paper preset) in fp32 and bf16, as a fraction of peak;
* the peak GPU memory of each row.

    make gpu-check                      # pytest -m cuda, then this script
    .venv/bin/python benchmarks/gpu_check.py [--batch 64] [--steps 10] [--frames 40] [--json F]

Without CUDA it exits with status 2 and one line saying so. The FLOP helpers are plain functions
of the shapes (tested on the CPU in tests/train/test_gpu_check_flops.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import torch

# ----------------------------------------------------------------------------- FLOP counts


def vit_flops(
    depth: int, dim: int, mlp_hidden: int, patch: int, grid: tuple[int, int], prefix: int = 1
) -> float:
    """Forward FLOPs of a ViT on one image (a multiply-add is 2 FLOPs).

    Patch embedding ``2 * hw * (3 p^2) * D``; per block on ``N = hw + prefix`` tokens: qkv
    ``2 N D 3D``, attention scores and weighted sum ``2 * 2 N^2 D``, output projection
    ``2 N D^2``, MLP ``2 * 2 N D H``. Norms, softmax and GELU are left out (< 1%).
    """
    h, w = grid
    n = h * w + prefix
    patch_embed = 2 * h * w * (3 * patch * patch) * dim
    per_block = 2 * n * dim * 3 * dim + 2 * (2 * n * n * dim) + 2 * n * dim * dim
    per_block += 2 * 2 * n * dim * mlp_hidden
    return float(patch_embed + depth * per_block)


def encoder_flops(encoder, height: int, width: int) -> float:  # noqa: ANN001
    """:func:`vit_flops` of a :class:`videorep.backbones.ImageEncoder` at ``height x width``."""
    vit = encoder.vit
    return vit_flops(
        depth=len(vit.blocks),
        dim=encoder.embed_dim,
        mlp_hidden=vit.blocks[0].mlp.fc1.out_features,
        patch=encoder.patch_size,
        grid=encoder.grid(height, width),
        prefix=encoder.num_prefix_tokens,
    )


def cosettle_sample_flops(image_flops: float, tokens: int, dim: int, frames: int = 2) -> float:
    """FLOPs of one Co-Settle training sample: the frozen encoder's ``frames + 1`` forward
    passes (no backward: it is frozen) plus the linear head (``2 N D^2`` forward, twice that
    backward) on each of the ``frames + 1`` token sets. The walk (``N^2 D`` per transition at
    the pooled grid) is below 2% and left out."""
    passes = frames + 1
    head = 3 * 2 * tokens * dim * dim
    return float(passes * (image_flops + head))


def propagation_flops(tokens: int, dim: int, queue: int) -> float:
    """FLOPs of label propagation for one frame: cosine affinities of the ``N`` target patches
    to the ``N`` patches of each of ``queue + 1`` context frames (frame 0 and the queue),
    ``2 N (queue+1) N D``; the top-k and label mixing are left out. An upper bound when a
    neighbourhood radius restricts the affinities."""
    return float(2 * tokens * (queue + 1) * tokens * dim)


def fraction_of_peak(flops_per_item: float, items_per_s: float, peak_tflops: float) -> float:
    """Achieved rate ``flops_per_item * items_per_s`` as a fraction of ``peak_tflops``."""
    if peak_tflops <= 0:
        raise ValueError(f"peak {peak_tflops} TFLOP/s: must be positive")
    return flops_per_item * items_per_s / (peak_tflops * 1e12)


# ----------------------------------------------------------------------------- measurements


def timed_cuda(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup``, GPU work included."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def mm_peak_tflops(dtype: torch.dtype, tf32: bool, size: int = 8192, repeats: int = 10) -> float:
    """Best ``torch.mm`` TFLOP/s of two ``size x size`` matrices of ``dtype`` on the GPU."""
    from videorep.utils.device import set_matmul_tf32

    set_matmul_tf32(tf32)
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    seconds = timed_cuda(lambda: torch.mm(a, b), repeats)
    return 2 * size**3 / seconds / 1e12


def cosettle_row(encoder, name: str, precision: str, batch: int, steps: int, peak: float) -> dict:  # noqa: ANN001
    """Training samples/s of Co-Settle steps (forward, backward, AdamW) on the GPU."""
    from videorep.methods.cosettle import CoSettle, CoSettleConfig
    from videorep.train.trainer import PRECISION_DTYPES

    torch.cuda.reset_peak_memory_stats()
    method = CoSettle(encoder, CoSettleConfig(backbone=name)).to("cuda")
    method.configure_precision(PRECISION_DTYPES[precision])
    opt = torch.optim.AdamW(method.head.parameters(), lr=1e-4)
    size = 224
    frames = torch.randn(batch, 2, 3, size, size, device="cuda")

    def step() -> None:
        method.optimizer_step([{"frames": frames}], opt, 1.0)

    seconds = timed_cuda(step, steps)
    per_sample = cosettle_sample_flops(
        encoder_flops(encoder, size, size), encoder.grid(size, size)[0] ** 2, encoder.embed_dim
    )
    rate = batch / seconds
    return {
        "what": f"train cosettle {name}",
        "precision": precision,
        "per_s": rate,
        "unit": "samples/s",
        "tflops": per_sample * rate / 1e12,
        "of_peak": fraction_of_peak(per_sample, rate, peak),
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def davis_row(encoder, name: str, precision: str, n_frames: int, peak: float) -> dict:  # noqa: ANN001
    """DAVIS-style evaluation frames/s at 480p: the eval engine on ``n_frames`` synthetic frames."""
    import numpy as np

    from videorep.eval.core import FeatureExtractor, propagate_masks
    from videorep.eval.presets import DEFAULT_PRESET
    from videorep.eval.propagation import resolve_config

    torch.cuda.reset_peak_memory_stats()
    encoder = encoder.to("cuda")
    encoder.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    extractor = FeatureExtractor(encoder, (480, 854))
    config = resolve_config(DEFAULT_PRESET, "davis")
    rng = np.random.default_rng(0)
    video = [rng.integers(0, 255, (480, 854, 3), dtype=np.uint8) for _ in range(n_frames)]
    labels0 = np.zeros((480, 854), dtype=np.uint8)
    labels0[100:300, 200:500] = 1
    labels0[320:420, 600:800] = 2

    def run() -> None:
        for _ in propagate_masks(video, labels0, 3, extractor, extractor.grid, config, (480, 854)):
            pass

    seconds = timed_cuda(run, repeats=3, warmup=1)
    encoder.autocast_dtype = None
    h, w = extractor.grid
    per_frame = encoder_flops(encoder, *extractor.input_size)
    per_frame += propagation_flops(h * w, encoder.embed_dim, config.queue)
    rate = n_frames / seconds
    return {
        "what": f"eval davis 480p {name}",
        "precision": precision,
        "per_s": rate,
        "unit": "frames/s",
        "tflops": per_frame * rate / 1e12,
        "of_peak": fraction_of_peak(per_frame, rate, peak),
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64, help="training micro-batch (64)")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per row (10)")
    ap.add_argument("--frames", type=int, default=40, help="frames of the 480p video (40)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}); run it on a machine with one",
            file=sys.stderr,
        )
        return 2
    from videorep.backbones import load_encoder
    from videorep.backbones.registry import DEFAULT_BACKBONE
    from videorep.utils.device import set_matmul_tf32

    gpu = torch.cuda.get_device_name(0)
    print(f"GPU: {gpu}; torch {torch.__version__}")
    peaks = {
        "fp32": mm_peak_tflops(torch.float32, tf32=False),
        "tf32": mm_peak_tflops(torch.float32, tf32=True),
        "bf16": mm_peak_tflops(torch.bfloat16, tf32=True),
    }
    print("peak torch.mm TFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()))
    set_matmul_tf32(True)  # the training default (--tf32)
    models = {
        "dinov2_vits14_imgfocus": lambda: load_encoder(DEFAULT_BACKBONE),
        "vit_b16 (random)": lambda: load_encoder("dino_vitb16", "random"),
    }
    rows = []
    for name, build in models.items():
        backbone = DEFAULT_BACKBONE if "imgfocus" in name else "dino_vitb16"
        for precision, peak_key in (("fp32", "tf32"), ("bf16", "bf16")):
            encoder = build()
            rows.append(
                cosettle_row(encoder, backbone, precision, args.batch, args.steps, peaks[peak_key])
            )
            rows[-1]["what"] = f"train cosettle {name}"
            rows.append(davis_row(encoder, backbone, precision, args.frames, peaks[peak_key]))
            rows[-1]["what"] = f"eval davis 480p {name}"
            del encoder
            torch.cuda.empty_cache()
    print(f"{'what':40s} {'prec':5s} {'rate':>14s} {'TFLOP/s':>8s} {'of peak':>8s} {'mem GiB':>8s}")
    for r in rows:
        rate = f"{r['per_s']:.1f} {r['unit']}"
        print(
            f"{r['what']:40s} {r['precision']:5s} {rate:>14s} {r['tflops']:8.2f} "
            f"{r['of_peak']:8.3f} {r['peak_mem_gib']:8.2f}"
        )
    print(
        "fp32 rows: TF32 allowed (the default), fraction of the TF32 peak; FLOPs: analytic counts"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"gpu": gpu, "torch": torch.__version__, "peaks": peaks, "rows": rows}, fh, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
