"""CUDA against the CPU (issue 13): encoder tokens, one Co-Settle step, DAVIS-sample J&F.

Marked ``cuda``: excluded from the default and ``slow`` runs, skipped without a GPU. Run with
``pytest -m cuda`` or ``make gpu-check`` on a machine with one (the project's CI has none).
Float32 comparisons turn TF32 off (``--no-tf32``): TF32 matmuls keep 10 mantissa bits.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Dataset

from videorep.backbones import load_encoder
from videorep.backbones.registry import DEFAULT_BACKBONE
from videorep.methods.cosettle import CoSettle, CoSettleConfig
from videorep.train.trainer import TrainConfig, Trainer
from videorep.utils.device import set_matmul_tf32

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(autouse=True)
def exact_fp32():
    """Float32 means float32 here: no TF32 during the test, restored after."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    set_matmul_tf32(False)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``[n, 3, size, size]`` ImageNet-normalised-like images: upsampled noise (natural-ish)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 3, size // 16, size // 16, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic")


def test_encoder_tokens_cuda_equal_cpu_fp32() -> None:
    """The offline DINOv2 ViT-S/14: patch tokens on CUDA vs CPU, cosine > 0.9999 per token."""
    encoder = load_encoder(DEFAULT_BACKBONE)
    images = smooth_images(2, 224)
    cpu = encoder(images)
    gpu = encoder.to("cuda")(images.to("cuda")).cpu()
    assert gpu.shape == cpu.shape == (2, 256, encoder.embed_dim)
    cosine = torch.nn.functional.cosine_similarity(cpu, gpu, dim=-1)
    assert cosine.min().item() > 0.9999, cosine.min().item()


class Pairs(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        x = smooth_images(1, 112, seed=i)
        return {"frames": torch.cat([x, 0.8 * torch.roll(x, 14, -1) + 0.2 * x])}


def one_step_loss(device: str, tmp_path) -> float:
    encoder = load_encoder(DEFAULT_BACKBONE)
    method = CoSettle(encoder, CoSettleConfig(backbone=DEFAULT_BACKBONE))
    cfg = TrainConfig(
        out=str(tmp_path / device),
        batch_size=4,
        epochs=1,
        max_steps=1,
        lr=1e-3,
        progress=False,
        device=device,
        tf32=False,
    )
    trainer = Trainer(method, Pairs(), cfg, run_config={"method_config": {}})
    assert next(method.head.parameters()).device.type == device
    return trainer.fit()[0]["loss"]


def test_cosettle_step_loss_cuda_equals_cpu_fp32(tmp_path) -> None:
    """One Co-Settle training step (DINOv2 ViT-S/14, PEA, KL): relative loss difference < 1e-3."""
    cpu = one_step_loss("cpu", tmp_path)
    gpu = one_step_loss("cuda", tmp_path)
    assert abs(gpu - cpu) / abs(cpu) < 1e-3, (cpu, gpu)


def davis_jf(root, out, device: str) -> float:
    from videorep.cli import main

    args = ["eval", "davis", "--root", str(root), "--year", "2016", "--out", str(out)]
    # 30 frames per sequence keep the CPU reference to about a minute on a GPU host's CPUs
    assert main([*args, "--max-frames", "30", "--device", device]) == 0
    return json.loads((out / "results.json").read_text())["JF_mean"]


def test_davis_sample_jf_cuda_within_0_2_of_cpu(davis_sample, tmp_path) -> None:
    """``videorep eval davis --device cuda`` vs ``--device cpu`` on davis-sample (3 sequences,
    first 30 frames, default preset and size): J&F within 0.2 points."""
    cpu = davis_jf(davis_sample, tmp_path / "cpu", "cpu")
    gpu = davis_jf(davis_sample, tmp_path / "cuda", "cuda")
    assert abs(gpu - cpu) * 100 < 0.2, (cpu, gpu)
