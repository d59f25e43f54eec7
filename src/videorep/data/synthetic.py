"""A small DAVIS-format video-object-segmentation set, generated with exact masks.

Each sequence has a textured background that pans (camera motion) and 1-3 textured objects that
move along smooth paths, rotate, and deform (their outline is a star-shaped curve whose radius
wobbles over time). Objects are drawn back to front, so a nearer object occludes a farther one
and the farther object's mask loses the covered pixels. The texture is attached to each object
(it moves and rotates with it), which is what label propagation must follow.

Written in the DAVIS-2017 layout: ``JPEGImages/480p/<seq>/NNNNN.jpg``,
``Annotations/480p/<seq>/NNNNN.png`` (palette PNGs, 0 = background, k = object k) and
``ImageSets/2017/val.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from videorep.data.davis import davis_palette


def _texture(rng: np.random.Generator, size: int, scale: float, colours: int = 3) -> np.ndarray:
    """A smooth random colour texture ``[size, size, 3]`` in [0, 1] (sum of blurred noise)."""
    from scipy.ndimage import gaussian_filter

    out = np.zeros((size, size, 3))
    for octave, weight in ((scale, 1.0), (scale / 2, 0.45), (scale / 4, 0.15)):
        noise = rng.standard_normal((size, size, 3))
        out += weight * gaussian_filter(noise, sigma=(octave, octave, 0), mode="wrap")
    out -= out.mean(axis=(0, 1))
    out /= 2.5 * out.std(axis=(0, 1)) + 1e-8
    base = rng.uniform(0.2, 0.8, size=(colours, 3))
    pattern = np.clip(out[..., 0:1] + 0.5, 0, 1)
    mix = pattern * base[0] + (1 - pattern) * base[1]
    return np.clip(mix + 0.35 * out, 0, 1)


def _sample(texture: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a wrapping texture at float coordinates."""
    size = texture.shape[0]
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = y0 % size, x0 % size
    y1, x1 = (y0 + 1) % size, (x0 + 1) % size
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def render_sequence(
    rng: np.random.Generator, frames: int, height: int, width: int, objects: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames ``[H, W, 3]`` uint8 and label maps ``[H, W]`` uint8 (0 = background)."""
    bg = _texture(rng, 512, scale=rng.uniform(14, 28))
    pan = rng.uniform(-3.0, 3.0, size=2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    specs = []
    for k in range(objects):
        radius = rng.uniform(0.12, 0.2) * min(height, width)
        start = np.array([rng.uniform(0.3, 0.7) * height, rng.uniform(0.2, 0.8) * width])
        velocity = rng.uniform(-1, 1, size=2) * np.array([height, width]) / (2.5 * frames)
        specs.append(
            {
                "texture": _texture(rng, 256, scale=rng.uniform(4, 9)),
                "radius": radius,
                "start": start,
                "velocity": velocity,
                "curve": rng.uniform(0.5, 1.5) * np.array([height, width]) / (6.0 * frames),
                "spin": rng.uniform(-0.05, 0.05),
                "lobes": int(rng.integers(2, 5)),
                "wobble": rng.uniform(0.1, 0.25),
                "phase": rng.uniform(0, 2 * np.pi),
                "depth": k,
            }
        )
    images, labels = [], []
    for t in range(frames):
        image = _sample(bg, yy + pan[0] * t, xx + pan[1] * t)
        label = np.zeros((height, width), dtype=np.uint8)
        for k, s in sorted(enumerate(specs), key=lambda item: item[1]["depth"]):
            centre = s["start"] + s["velocity"] * t + s["curve"] * np.sin(t / 4.0 + k)
            centre = np.clip(centre, [0.1 * height, 0.1 * width], [0.9 * height, 0.9 * width])
            angle = s["spin"] * t
            dy, dx = yy - centre[0], xx - centre[1]
            r = np.hypot(dy, dx)
            theta = np.arctan2(dy, dx) - angle
            wobble = 1 + s["wobble"] * np.sin(s["lobes"] * theta + s["phase"] + 0.15 * t)
            inside = r <= s["radius"] * wobble
            cos, sin = np.cos(-angle), np.sin(-angle)
            ty = cos * dy - sin * dx
            tx = sin * dy + cos * dx
            colour = _sample(s["texture"], ty[inside] + 128, tx[inside] + 128)
            image[inside] = colour
            label[inside] = k + 1
        images.append(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
        labels.append(label)
    return images, labels


def write_davis_set(
    root: str | Path,
    sequences: int = 3,
    frames: int = 24,
    height: int = 240,
    width: int = 432,
    seed: int = 0,
) -> list[str]:
    """Write a synthetic DAVIS-2017-format set under ``root``; returns the sequence names."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = []
    palette = davis_palette()
    for i in range(sequences):
        name = f"synthetic-{i:02d}"
        images, labels = render_sequence(rng, frames, height, width, objects=1 + i % 3)
        img_dir = root / "JPEGImages" / "480p" / name
        ann_dir = root / "Annotations" / "480p" / name
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for t, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(img_dir / f"{t:05d}.jpg", quality=95)
            png = Image.fromarray(label, mode="P")
            png.putpalette(palette)
            png.save(ann_dir / f"{t:05d}.png")
        names.append(name)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("".join(n + "\n" for n in names))
    return names
