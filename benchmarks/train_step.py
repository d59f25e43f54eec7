"""Co-Settle training throughput: this project's step vs a reference step, in one run.

Reference = the authors' way: three separate encoder passes (z1, z2, z1~ with PEA), eager
attention (timm's non-fused path), then the head and the loss. Ours = one batched encoder call
of 3B images (PEA through the per-image positional grid) with fused scaled-dot-product
attention. Both use the same PEA crop, so in fp32 the losses must agree (checked to 1e-5).
Also measured: ours with the encoder under bf16 autocast (loss change reported), and the
view-bank step (head only, encoder paid once per stored view).

    .venv/bin/python benchmarks/train_step.py [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from videorep.backbones import load_encoder
from videorep.backbones.pos import pea
from videorep.methods.cosettle import CoSettle, CoSettleConfig

EPS = 1e-6


def reference_step(method: CoSettle, eager_encoder, frames: torch.Tensor, seed: int) -> float:
    """One step written the straightforward way (three passes, eager attention)."""
    cfg = method.config
    gen = torch.Generator().manual_seed(seed)
    x1, x2 = frames[:, 0], frames[:, 1]
    with torch.no_grad():
        z1 = eager_encoder(x1)
        z2 = eager_encoder(x2)
        z1t = eager_encoder(x1, pos_embed_fn=lambda g: pea(g, cfg.pea_alpha, "random", gen))
    p = F.normalize(torch.stack([method.head(z1), method.head(z2), method.head(z1t)], 1), dim=-1)
    b, k, n, d = p.shape
    h, w = eager_encoder.grid(frames.shape[-2], frames.shape[-1])
    q = F.avg_pool2d(p.reshape(b * k, h, w, d).permute(0, 3, 1, 2), 2, 2)
    q = q.flatten(2).transpose(1, 2).reshape(b, k, -1, d)
    a12 = torch.softmax(q[:, 0] @ q[:, 1].transpose(1, 2) / cfg.tau, -1)
    a21 = torch.softmax(q[:, 1] @ q[:, 2].transpose(1, 2) / cfg.tau, -1)
    logits = torch.log(a12 @ a21 + EPS).flatten(0, 1)
    target = torch.arange(q.shape[2]).repeat(b)
    l_cyc = F.cross_entropy(logits, target)
    z = F.normalize(torch.stack([z1, z2, z1t], 1), dim=-1)
    l_reg = F.kl_div(F.log_softmax(p, -1), F.softmax(z, -1), reduction="batchmean")
    loss = l_cyc + cfg.lambda_reg * l_reg
    loss.backward()
    return float(loss.detach())


def our_step(method: CoSettle, frames: torch.Tensor, seed: int) -> float:
    method.pea_generator.manual_seed(seed)
    loss = method.training_step({"frames": frames})["loss"]
    loss.backward()
    return float(loss.detach())


def timed(fn, repeats: int) -> tuple[float, float]:  # noqa: ANN001
    times, value = [], None
    for r in range(repeats + 1):
        t = time.perf_counter()
        value = fn(r)
        if r:  # the first call warms up
            times.append(time.perf_counter() - t)
    return statistics.median(times), value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    encoder = load_encoder("dinov2_vits14_imgfocus")
    eager = copy.deepcopy(encoder)
    for block in eager.vit.blocks:
        block.attn.fused_attn = False
    method = CoSettle(encoder, CoSettleConfig())
    frames = torch.randn(args.batch, 2, 3, 224, 224)
    b = args.batch

    t_ref, loss_ref = timed(lambda r: reference_step(method, eager, frames, 123), args.repeats)
    method.head.zero_grad()
    t_ours, loss_ours = timed(lambda r: our_step(method, frames, 123), args.repeats)
    method.encoder.autocast_dtype = torch.bfloat16
    t_bf16, loss_bf16 = timed(lambda r: our_step(method, frames, 123), args.repeats)
    method.encoder.autocast_dtype = None
    z, grid = method.encode(frames)
    tokens = {"tokens": z.half().float(), "grid": torch.tensor([list(grid)] * b)}
    t_bank, loss_bank = timed(
        lambda r: float(method.training_step(tokens)["loss"].backward() or 0), args.repeats
    )

    print(f"batch {b} at 224x224, dinov2_vits14_imgfocus, {torch.get_num_threads()} threads")
    print(f"reference step (3 passes, eager attention): {b / t_ref:6.2f} samples/s")
    print(
        f"ours, fp32 (1 batched pass, fused attn):    {b / t_ours:6.2f} samples/s  "
        f"= {t_ref / t_ours:.2f}x reference"
    )
    print(
        f"ours, bf16 encoder:                         {b / t_bf16:6.2f} samples/s  "
        f"= {t_ref / t_bf16:.2f}x reference"
    )
    print(
        f"view-bank step (head only):                 {b / t_bank:8.1f} samples/s  "
        f"= {t_ref / t_bank:.0f}x reference"
    )
    print(
        f"loss: reference {loss_ref:.7f}  ours fp32 {loss_ours:.7f}  "
        f"|diff| {abs(loss_ref - loss_ours):.2e} (must be < 1e-5)"
    )
    print(
        f"loss: bf16 encoder {loss_bf16:.7f}  relative change "
        f"{abs(loss_bf16 - loss_ours) / abs(loss_ours):.2e} (target < 1%)"
    )
    assert abs(loss_ref - loss_ours) < 1e-5, "fp32 loss does not match the reference"


if __name__ == "__main__":
    main()
