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
