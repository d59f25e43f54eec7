"""The generated labelled collection: UCF101 layout read by the loader, motion that matches the
class, chiral pairs that are time reversals, and the Breakfast-style segmentation set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videorep.cli import main
from videorep.data.labelled import load_collection, read_uniform
from videorep.data.labelled_synthetic import (
    LabelledSyntheticConfig,
    shape_mask,
    write_labelled_collection,
)
from videorep.data.segmentation_labels import SegmentationSet, split_videos
from videorep.errors import VideorepError


def centroids(frames: np.ndarray) -> np.ndarray:
    """``[T, 2]`` (y, x) centre of the pixels that differ from the temporal median (the static
    background): where the moving shape is."""
    f = frames.astype(np.float32).mean(-1)
    moving = np.abs(f - np.median(f, axis=0)) > 25
    out = []
    for m in moving:
        ys, xs = np.nonzero(m)
        out.append((ys.mean(), xs.mean()))
    return np.array(out)


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled") / "coll"
    cfg = LabelledSyntheticConfig(
        shapes=("circle", "square"),
        directions=("right", "left", "down"),
        train_per_class=2,
        test_per_class=1,
        frames=8,
        size=48,
        segmentation_videos=4,
        segmentation_frames=24,
    )
    write_labelled_collection(root, cfg)
    return root


def test_loader_reads_the_collection(collection: Path) -> None:
    coll = load_collection(collection)
    assert coll.classes == [
        "circle_right",
        "circle_left",
        "circle_down",
        "square_right",
        "square_left",
        "square_down",
    ]
    assert coll.splits == [1]
    train, test = coll.split(1)
    assert (len(train), len(test)) == (12, 6)
    assert coll.class_counts() == {c: 3 for c in coll.classes}
    assert read_uniform(coll.videos[0], 8).shape == (8, 48, 48, 3)
    pairs = (collection / "chiral_pairs.csv").read_text().splitlines()
    # down's reversal (up) is not generated: no pair for it
    assert pairs == ["class_a,class_b", "circle_right,circle_left", "square_right,square_left"]


def test_motion_matches_the_class_and_reversal_flips_it(collection: Path) -> None:
    coll = load_collection(collection)
    for v in coll.videos:
        c = centroids(read_uniform(v, 8))
        dy, dx = c[-1] - c[0]
        direction = v.class_name.split("_")[1]
        expected = {"right": (0, 1), "left": (0, -1), "down": (1, 0)}[direction]
        # the shape travels 0.45 x 48 = 21.6 px (+-20 %) along its direction, ~0 across
        assert np.sign(round(dy / 8)) == expected[0] and np.sign(round(dx / 8)) == expected[1], (
            v.name,
            dy,
            dx,
        )
        assert abs(dy) + abs(dx) > 8
    right = next(v for v in coll.videos if v.class_name == "circle_right")
    back = next(v for v in coll.reversed().videos if v.name == right.name)
    np.testing.assert_array_equal(read_uniform(back, 8), read_uniform(right, 8)[::-1])
    assert centroids(read_uniform(back, 8))[-1][1] < centroids(read_uniform(back, 8))[0][1]


def test_segmentation_set(collection: Path) -> None:
    seg = SegmentationSet.open(collection / "segmentation")
    assert seg.classes == ["right", "left", "down"]
    train, test = split_videos(seg.root, 1)
    assert (len(train), len(test)) == (3, 1)
    from videorep.data.sources import VideoFileSource

    for name in train + test:
        labels = seg.labels(name)
        assert len(labels) == 24
        assert VideoFileSource(seg.root / "videos" / f"{name}.mp4", fps=None).num_frames == 24
        runs = 1 + int(np.count_nonzero(np.diff(labels)))
        assert 3 <= runs <= 4


def test_shape_masks_have_similar_area() -> None:
    yy, xx = np.mgrid[-40:40, -40:40].astype(float)
    areas = {s: shape_mask(s, yy, xx, 20).sum() for s in ("circle", "square", "triangle")}
    assert areas["circle"] == pytest.approx(np.pi * 400, rel=0.02)
    assert all(500 < a < 1400 for a in areas.values()), areas


def test_command_and_errors(tmp_path: Path, capsys) -> None:
    out = tmp_path / "c"
    args = [
        "data",
        "labelled-synthetic",
        "--out",
        str(out),
        "--shapes",
        "circle",
        "--directions",
        "right",
        "left",
        "--train-per-class",
        "1",
        "--test-per-class",
        "1",
        "--frames",
        "4",
        "--size",
        "32",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "2 classes, 2 train / 2 test videos, 1 chiral pairs" in capsys.readouterr().out
    assert main(args) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    with pytest.raises(VideorepError, match="size must be even"):
        write_labelled_collection(tmp_path / "d", LabelledSyntheticConfig(size=33))
