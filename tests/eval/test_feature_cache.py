"""The caching encoder wrapper returns stored tokens for repeated inputs."""

from __future__ import annotations

import torch

from videorep.eval.feature_cache import CachingEncoder


class Counting:
    patch_size, embed_dim, name = 4, 3, "counting"

    def __init__(self) -> None:
        self.calls = 0

    def grid(self, h: int, w: int) -> tuple[int, int]:
        return h // 4, w // 4

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x.mean(dim=1, keepdim=True).flatten(2).transpose(1, 2).repeat(1, 1, 3)


def test_repeated_inputs_hit_the_cache() -> None:
    inner = Counting()
    enc = CachingEncoder(inner)
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    first = enc(a)
    assert torch.equal(enc(a.clone()), first)
    enc(b)
    assert inner.calls == 2 and enc.hits == 1 and enc.misses == 2
    assert enc.grid(8, 12) == (2, 3) and enc.patch_size == 4


def test_disk_cache_is_reused_by_a_new_wrapper_and_tied_to_its_encoder(tmp_path) -> None:  # noqa: ANN001
    import pytest

    from videorep.errors import VideorepError

    inner = Counting()
    a = torch.rand(1, 3, 8, 8)
    first = CachingEncoder(inner, tmp_path)(a)
    second = CachingEncoder(inner, tmp_path)
    assert torch.equal(second(a), first)
    assert inner.calls == 1 and second.hits == 1 and second.misses == 0
    other = Counting()
    other.name = "another"
    with pytest.raises(VideorepError, match="made by encoder 'counting'"):
        CachingEncoder(other, tmp_path)
