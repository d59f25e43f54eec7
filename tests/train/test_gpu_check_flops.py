"""The CPU-checkable parts of benchmarks/gpu_check.py: FLOP counts, fractions, no-GPU exit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from videorep.backbones import load_encoder

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", PATH)
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_vit_flops_by_hand() -> None:
    # N = 1 + 1 tokens, D = 2, H = 4, p = 1: patch 2*1*3*2 = 12; block: qkv 2*2*2*6 = 48,
    # attention 2*(2*4*2) = 32, projection 2*2*4 = 16, MLP 2*2*2*2*4 = 64 -> 160
    assert gpu_check.vit_flops(1, 2, 4, 1, (1, 1), prefix=1) == 12 + 160
    assert gpu_check.vit_flops(3, 2, 4, 1, (1, 1), prefix=1) == 12 + 3 * 160


def test_vit_b16_and_ti16_at_224_match_their_published_counts() -> None:
    """ViT-B/16 is 17.6 GMACs at 224 (DeiT/timm tables), ViT-Ti/16 1.3 GMACs; a MAC is 2 FLOPs."""
    b16 = gpu_check.vit_flops(12, 768, 3072, 16, (14, 14), prefix=1)
    assert b16 / 2e9 == pytest.approx(17.6, rel=0.01)
    ti16 = gpu_check.encoder_flops(load_encoder("random_vit_tiny16"), 224, 224)
    assert ti16 / 2e9 == pytest.approx(1.26, rel=0.01)


def test_encoder_flops_equal_torch_flop_counter() -> None:
    """The analytic count equals what torch's FlopCounterMode counts (matmuls, convolution,
    attention) for a real forward of the tiny ViT at 64x96."""
    encoder = load_encoder("random_vit_tiny16")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        encoder(torch.zeros(2, 3, 64, 96))
    counted = counter.get_total_flops() / 2
    ops = {str(op) for op in counter.get_flop_counts()["Global"]}
    if not any("attention" in op for op in ops):  # the CPU's fused attention is not counted
        counted += 12 * 4 * 25**2 * 192  # depth x (QK^T + AV) = 4 N^2 D, N = 4*6 + 1, D = 192
    assert gpu_check.encoder_flops(encoder, 64, 96) == pytest.approx(counted, rel=1e-6)


def test_cosettle_propagation_and_fraction_by_hand() -> None:
    # 3 passes x (100 encoder + head 3 * 2*2*9 = 108)
    assert gpu_check.cosettle_sample_flops(100.0, tokens=2, dim=3) == 3 * (100 + 108)
    assert gpu_check.cosettle_sample_flops(100.0, tokens=2, dim=3, frames=3) == 4 * 208
    assert gpu_check.propagation_flops(tokens=4, dim=3, queue=2) == 2 * 4 * 3 * 4 * 3
    assert gpu_check.fraction_of_peak(1e12, 2.0, 4.0) == 0.5
    with pytest.raises(ValueError):
        gpu_check.fraction_of_peak(1.0, 1.0, 0.0)


def test_exits_2_with_one_line_without_cuda(monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_check: no CUDA GPU here") and err.count("\n") == 1
