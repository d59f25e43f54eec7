"""``load_image`` converts every common PIL mode to 8-bit RGB instead of rejecting it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videorep.data.images import load_image


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_grayscale(tmp_path):
    arr = np.array([[0, 128], [200, 255]], dtype=np.uint8)
    rgb = load_image(_save(Image.fromarray(arr, "L"), tmp_path / "g.png"))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb == arr[..., None]).all()


def test_rgba_is_composited_on_black(tmp_path):
    arr = np.zeros((1, 3, 4), dtype=np.uint8)
    arr[0, 0] = (200, 100, 50, 255)  # opaque
    arr[0, 1] = (200, 100, 50, 0)  # transparent
    arr[0, 2] = (200, 100, 50, 128)  # half
    rgb = load_image(_save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png"))
    assert rgb[0, 0].tolist() == [200, 100, 50]
    assert rgb[0, 1].tolist() == [0, 0, 0]
    assert np.abs(rgb[0, 2].astype(int) - [100, 50, 25]).max() <= 1


def test_16bit_png(tmp_path):
    arr = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    image = Image.fromarray(arr)
    assert image.mode.startswith("I;16")
    path = _save(image, tmp_path / "d16.png")
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")  # PIL may reopen 16-bit PNGs as 'I'
    rgb = load_image(path)
    assert rgb.shape == (2, 2, 3)
    assert rgb[0, 1].tolist() == [255, 255, 255]  # 65535 -> 255
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[1, 0, 0] == 128 and rgb[1, 1, 0] == 1  # 32768 -> 128, 257 -> 1


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    rgb = load_image(_save(cmyk, tmp_path / "c.jpg", quality=100))
    assert rgb.shape == (8, 8, 3)
    r, g, b = rgb[4, 4].astype(int)
    assert r > 240 and g < 15 and b < 15


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 200, 150, 100] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    rgb = load_image(_save(p, tmp_path / "p.png"))
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[0, 1].tolist() == [200, 150, 100]
    rgb_t = load_image(_save(p, tmp_path / "pt.png", transparency=0))
    assert rgb_t[0, 0].tolist() == [0, 0, 0]  # transparent index composited on black
    assert rgb_t[0, 1].tolist() == [200, 150, 100]


@pytest.mark.parametrize("mode", ["1", "LA", "I", "F"])
def test_other_modes_give_rgb(tmp_path, mode):
    image = Image.new(mode, (3, 2))
    ext = "tiff" if mode in ("I", "F") else "png"
    rgb = load_image(_save(image, tmp_path / f"x.{ext}"))
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
