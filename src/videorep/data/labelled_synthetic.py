"""A generated labelled video collection: moving textured shapes, class = shape x direction.

Every video shows one textured shape (circle, square, triangle, ...) moving in a straight line
(right, left, down, up) over a static textured background; the class is ``<shape>_<direction>``.
Nuisances drawn per video: both textures (:func:`videorep.data.synthetic._texture`, the generator
of the synthetic DAVIS set), the shape's size, speed (+-20 %), its path's offset across the
motion and a small rotation of the texture. Telling ``circle_right`` from ``circle_left`` needs the
order of the frames: the two classes are each other's time reversal, so the collection carries its
own chiral pairs (``chiral_pairs.csv``).

Written in the UCF101 layout that :func:`videorep.data.labelled.load_collection` reads::

    OUT/classInd.txt                    "1 circle_right" ...
    OUT/trainlist01.txt                 "circle_right/v_circle_right_g00.mp4 1"
    OUT/testlist01.txt                  "circle_right/v_circle_right_g06.mp4"
    OUT/<class>/v_<class>_gNN.mp4       H.264, ``frames`` frames of ``size`` x ``size``
    OUT/chiral_pairs.csv                "class_a,class_b" rows: a class and its time reversal
    OUT/collection.json                 the settings

With ``segmentation_videos > 0`` a Breakfast-style temporal-segmentation set is written to
``OUT/segmentation`` as well (see :mod:`videorep.data.segmentation_labels`): each video's shape
changes direction 2-3 times; the frame label is the direction it moves in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from videorep.data.synthetic import _sample, _texture
from videorep.errors import VideorepError

SHAPES = ("circle", "square", "triangle", "diamond")
DIRECTIONS = {"right": (0.0, 1.0), "left": (0.0, -1.0), "down": (1.0, 0.0), "up": (-1.0, 0.0)}
REVERSE = {"right": "left", "left": "right", "down": "up", "up": "down"}


@dataclass
class LabelledSyntheticConfig:
    """Settings of the generated collection."""

    shapes: tuple[str, ...] = ("circle", "square", "triangle")
    directions: tuple[str, ...] = ("right", "left", "down", "up")
    train_per_class: int = 5
    test_per_class: int = 3
    frames: int = 16
    size: int = 64
    fps: int = 8
    seed: int = 0
    segmentation_videos: int = 0
    segmentation_frames: int = 48

    def validate(self) -> None:
        for s in self.shapes:
            if s not in SHAPES:
                raise VideorepError(f"unknown shape {s!r}; choose from {', '.join(SHAPES)}")
        for d in self.directions:
            if d not in DIRECTIONS:
                raise VideorepError(f"unknown direction {d!r}; choose from {', '.join(DIRECTIONS)}")
        if len(set(self.shapes)) != len(self.shapes) or len(set(self.directions)) != len(
            self.directions
        ):
            raise VideorepError("shapes and directions must not repeat")
        if self.train_per_class < 1 or self.test_per_class < 1:
            raise VideorepError("need at least one training and one test video per class")
        if self.frames < 2:
            raise VideorepError(f"need at least 2 frames per video, got {self.frames}")
        if self.size < 16 or self.size % 2:
            raise VideorepError(f"size must be even and at least 16, got {self.size}")
        if self.segmentation_videos and self.segmentation_videos < 4:
            raise VideorepError("the segmentation set needs at least 4 videos (4 splits)")
        if self.segmentation_videos and self.segmentation_frames < 24:
            raise VideorepError("segmentation videos need at least 24 frames")

    @property
    def classes(self) -> list[str]:
        return [f"{s}_{d}" for s in self.shapes for d in self.directions]


def shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    """Soft coverage in [0, 1] of ``shape`` centred at offset ``(dy, dx)`` (pixels), size
    ``radius``; edges anti-aliased over one pixel."""
    if shape == "circle":
        dist = np.hypot(dy, dx) - radius
    elif shape == "square":
        dist = np.maximum(np.abs(dy), np.abs(dx)) - 0.85 * radius
    elif shape == "diamond":
        dist = (np.abs(dy) + np.abs(dx)) / np.sqrt(2) - 0.8 * radius
    elif shape == "triangle":  # pointing up: three half-planes at 120 degrees
        r = 0.6 * radius
        d1 = dy - r
        d2 = -0.5 * dy + 0.866 * dx - r
        d3 = -0.5 * dy - 0.866 * dx - r
        dist = np.maximum(np.maximum(d1, d2), d3)
    else:
        raise VideorepError(f"unknown shape {shape!r}")
    return np.clip(0.5 - dist, 0.0, 1.0)


def render_video(
    rng: np.random.Generator, shape: str, path: list[tuple[float, float]], size: int
) -> np.ndarray:
    """Frames ``[T, size, size, 3]`` uint8: ``shape`` at the centres ``path`` (one per frame)."""
    side = max(64, 2 * size)  # textures wrap; twice the frame keeps the wrap out of sight
    bg = _texture(rng, side, scale=rng.uniform(10, 20))
    fg = _texture(rng, 64, scale=rng.uniform(3, 6))
    # keep the object visible: push its colours away from the background's mean
    fg = np.clip(fg + np.sign(fg.mean() - bg.mean() + 1e-3) * 0.2, 0, 1)
    radius = rng.uniform(0.14, 0.2) * size
    angle = rng.uniform(-0.3, 0.3)
    off = rng.uniform(0, side, size=2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    background = _sample(bg, yy + off[0], xx + off[1])
    cos, sin = np.cos(angle), np.sin(angle)
    frames = []
    for cy, cx in path:
        dy, dx = yy - cy, xx - cx
        alpha = shape_mask(shape, dy, dx, radius)[..., None]
        colour = _sample(fg, cos * dy - sin * dx + 32, sin * dy + cos * dx + 32)
        image = background * (1 - alpha) + colour * alpha
        frames.append(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
    return np.stack(frames)


def straight_path(
    rng: np.random.Generator, direction: str, frames: int, size: int
) -> list[tuple[float, float]]:
    """Centres of a constant-velocity path across the middle of the frame (travel 0.45 size
    +-20 %, offset across the motion up to 0.15 size)."""
    vy, vx = DIRECTIONS[direction]
    travel = 0.45 * size * rng.uniform(0.8, 1.2)
    across = rng.uniform(-0.15, 0.15) * size
    c = size / 2
    start = np.array([c - vy * travel / 2 + vx * across, c - vx * travel / 2 + vy * across])
    step = np.array([vy, vx]) * travel / (frames - 1)
    return [tuple(start + t * step) for t in range(frames)]


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """H.264 (near-lossless, CRF 12; MPEG-4 where this PyAV lacks libx264) ``[T, H, W, 3]``."""
    import av

    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with av.open(str(tmp), mode="w") as container:
        try:
            stream = container.add_stream("libx264", rate=fps)
            stream.options = {"crf": "12"}
        except Exception:  # codec missing from this PyAV build
            stream = container.add_stream("mpeg4", rate=fps)
            stream.bit_rate = 4_000_000
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)


def write_labelled_collection(
    out: str | Path, config: LabelledSyntheticConfig | None = None, progress: bool = False
) -> dict:
    """Write the collection (and, if asked, the segmentation set) under ``out``; returns a
    summary ``{"root", "classes", "train", "test", "chiral_pairs", "segmentation"}``."""
    cfg = config or LabelledSyntheticConfig()
    cfg.validate()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise VideorepError(f"{out}: exists and is not empty; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    classes = cfg.classes
    train_lines, test_lines = [], []
    per_class = cfg.train_per_class + cfg.test_per_class
    bar = None
    if progress:
        from videorep.utils.progress import progress_bar

        bar = progress_bar(len(classes) * per_class + cfg.segmentation_videos, desc="videos")
    for k, name in enumerate(classes):
        shape, direction = name.rsplit("_", 1)
        (out / name).mkdir()
        for g in range(per_class):
            frames = render_video(
                rng, shape, straight_path(rng, direction, cfg.frames, cfg.size), cfg.size
            )
            rel = f"{name}/v_{name}_g{g:02d}.mp4"
            write_mp4(out / rel, frames, cfg.fps)
            if g < cfg.train_per_class:
                train_lines.append(f"{rel} {k + 1}")
            else:
                test_lines.append(rel)
            if bar is not None:
                bar.update(1)
    (out / "classInd.txt").write_text("".join(f"{k + 1} {c}\n" for k, c in enumerate(classes)))
    (out / "trainlist01.txt").write_text("\n".join(train_lines) + "\n")
    (out / "testlist01.txt").write_text("\n".join(test_lines) + "\n")
    pairs = []
    for s in cfg.shapes:
        for d in cfg.directions:
            r = REVERSE[d]
            if r in cfg.directions and (f"{s}_{r}", f"{s}_{d}") not in pairs:
                pairs.append((f"{s}_{d}", f"{s}_{r}"))
    (out / "chiral_pairs.csv").write_text(
        "class_a,class_b\n" + "".join(f"{a},{b}\n" for a, b in pairs)
    )
    seg = None
    if cfg.segmentation_videos:
        seg = write_segmentation_set(out / "segmentation", cfg, rng, bar)
    if bar is not None:
        bar.close()
    summary = {
        "root": str(out),
        "classes": classes,
        "train": len(train_lines),
        "test": len(test_lines),
        "chiral_pairs": pairs,
        "segmentation": seg,
        "settings": asdict(cfg),
    }
    (out / "collection.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def write_segmentation_set(
    root: Path, cfg: LabelledSyntheticConfig, rng: np.random.Generator, bar=None
) -> dict:  # noqa: ANN001
    """Breakfast-style set: videos whose shape turns 2-3 times; frame label = its direction.

    Layout: ``root/videos/<name>.mp4``, ``root/groundTruth/<name>.txt``, ``root/mapping.txt``,
    ``root/splits/test.split{1..4}.bundle`` (videos dealt round-robin to the four splits).
    """
    directions = list(cfg.directions)
    for sub in ("videos", "groundTruth", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "mapping.txt").write_text("".join(f"{i} {d}\n" for i, d in enumerate(directions)))
    size, total = cfg.size, cfg.segmentation_frames
    splits: list[list[str]] = [[], [], [], []]
    for v in range(cfg.segmentation_videos):
        shape = cfg.shapes[v % len(cfg.shapes)]
        n_seg = int(rng.integers(3, 5))
        cuts = np.sort(rng.choice(np.arange(6, total - 5), size=n_seg - 1, replace=False))
        while np.any(np.diff(np.concatenate([[0], cuts, [total]])) < 6):
            cuts = np.sort(rng.choice(np.arange(6, total - 5), size=n_seg - 1, replace=False))
        lengths = [int(n) for n in np.diff(np.concatenate([[0], cuts, [total]]))]
        # constant speed; each segment's direction is drawn among those with room for the whole
        # segment inside the box (one always exists on each axis), never the previous one
        lo, hi = 0.15 * size, 0.85 * size
        speed = min(0.025 * size, 0.33 * size / max(lengths))
        pos = np.array([size / 2, size / 2]) + rng.uniform(-0.1, 0.1, 2) * size
        labels: list[str] = []
        path = []
        previous = None
        for length in lengths:
            travel = speed * length
            fits = [
                d
                for d in directions
                if np.all(pos + np.array(DIRECTIONS[d]) * travel >= lo)
                and np.all(pos + np.array(DIRECTIONS[d]) * travel <= hi)
            ]
            choices = [d for d in fits if d != previous] or fits or directions
            previous = choices[int(rng.integers(len(choices)))]
            for _ in range(length):
                pos = pos + np.array(DIRECTIONS[previous]) * speed
                path.append((float(pos[0]), float(pos[1])))
            labels += [previous] * length
        name = f"seg{v:03d}_{shape}"
        write_mp4(root / "videos" / f"{name}.mp4", render_video(rng, shape, path, size), cfg.fps)
        (root / "groundTruth" / f"{name}.txt").write_text("\n".join(labels) + "\n")
        splits[v % 4].append(name)
        if bar is not None:
            bar.update(1)
    for k, names in enumerate(splits, start=1):
        (root / "splits" / f"test.split{k}.bundle").write_text("".join(f"{n}.txt\n" for n in names))
    return {"root": str(root), "videos": cfg.segmentation_videos, "classes": directions}
