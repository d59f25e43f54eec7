"""The device decisions (``videorep.utils.device``) for CPU and for CUDA inputs, on any machine."""

from __future__ import annotations

import pytest
import torch

from videorep.errors import VideorepError
from videorep.utils.device import (
    autocast,
    autocast_device_type,
    backend_for,
    cpu_has_native_bf16,
    ddp_device_ids,
    pin_memory_for,
    resolve_device,
    to_device,
)

NO_GPU = dict(cuda_available=False, device_count=0, local_rank=0, world_size=1)


def gpus(n: int, local_rank: int = 0, world_size: int = 1) -> dict:
    return dict(cuda_available=True, device_count=n, local_rank=local_rank, world_size=world_size)


def test_auto_picks_cuda_when_present_else_cpu():
    assert resolve_device("auto", **NO_GPU) == torch.device("cpu")
    assert resolve_device(None, **NO_GPU) == torch.device("cpu")
    assert resolve_device("auto", **gpus(4)) == torch.device("cuda", 0)


def test_cuda_is_this_ranks_gpu_under_torchrun():
    assert resolve_device("cuda", **gpus(4, local_rank=3, world_size=8)) == torch.device("cuda", 3)
    assert resolve_device("auto", **gpus(4, local_rank=2, world_size=8)) == torch.device("cuda", 2)
    # More local ranks than GPUs wrap around (LOCAL_RANK modulo the GPU count).
    assert resolve_device("cuda", **gpus(2, local_rank=3, world_size=4)) == torch.device("cuda", 1)


def test_explicit_gpu_index_and_cpu_override():
    assert resolve_device("cuda:1", **gpus(2)) == torch.device("cuda", 1)
    assert resolve_device("CPU", **gpus(2)) == torch.device("cpu")
    assert resolve_device(torch.device("cpu"), **gpus(2)) == torch.device("cpu")


@pytest.mark.parametrize(
    ("spec", "facts", "needle"),
    [
        ("cuda", NO_GPU, "CUDA is not available"),
        ("cuda:0", NO_GPU, "CUDA is not available"),
        ("cuda:2", gpus(2), "has 2 GPU"),
        ("cuda:0", gpus(2, world_size=2), "own GPU"),
        ("tpu", NO_GPU, "expected auto"),
        ("cuda:x", gpus(1), "expected auto"),
    ],
)
def test_bad_device_is_one_clear_error(spec, facts, needle):
    with pytest.raises(VideorepError, match=needle):
        resolve_device(spec, **facts)


def test_derived_decisions_for_cpu_and_cuda():
    cpu, gpu, gpu3 = torch.device("cpu"), torch.device("cuda", 0), torch.device("cuda", 3)
    assert ddp_device_ids(cpu) is None
    assert ddp_device_ids(gpu3) == [3]
    assert ddp_device_ids(torch.device("cuda")) == [0]
    assert backend_for(cpu) == "gloo" and backend_for(gpu) == "nccl"
    assert pin_memory_for(cpu) is False and pin_memory_for(gpu) is True
    assert autocast_device_type(gpu3) == "cuda" and autocast_device_type("cpu") == "cpu"
    assert autocast_device_type(torch.zeros(1)) == "cpu"


def test_autocast_follows_the_tensor_device_and_dtype():
    a = torch.randn(4, 8)
    with autocast(a, torch.bfloat16):
        assert (a @ a.T).dtype == torch.bfloat16
    with autocast(a, None):
        assert (a @ a.T).dtype == torch.float32
    with pytest.raises(VideorepError, match="CUDA only"):
        autocast(a, torch.float16)


def test_native_bf16_is_read_from_cpu_flags():
    assert cpu_has_native_bf16("flags : fpu sse avx512f avx512_bf16") is True
    assert cpu_has_native_bf16("flags : fpu sse amx_bf16 amx_tile") is True
    assert cpu_has_native_bf16("flags : fpu sse avx512f") is False


def test_to_device_moves_nested_batches():
    batch = {"x": torch.ones(2), "pair": (torch.zeros(1), 3), "names": ["a"]}
    out = to_device(batch, torch.device("cpu"))
    assert out["x"].device.type == "cpu" and out["pair"][1] == 3 and out["names"] == ["a"]
    assert torch.equal(out["pair"][0], torch.zeros(1))
