"""The Breakfast-style label reader: layout, split protocol and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videorep.data.segmentation_labels import (
    SegmentationSet,
    read_bundle,
    read_mapping,
    split_videos,
)
from videorep.errors import VideorepError


def make_root(tmp_path: Path, train_bundle: bool = True) -> Path:
    root = tmp_path / "breakfast"
    (root / "groundTruth").mkdir(parents=True)
    (root / "splits").mkdir()
    (root / "features").mkdir()
    (root / "mapping.txt").write_text("0 SIL\n1 pour_milk\n2 stir\n")
    videos = {
        f"P{i:02d}_cereals": ["SIL", "pour_milk", "pour_milk", "stir", "SIL"] for i in range(4)
    }
    for name, labels in videos.items():
        (root / "groundTruth" / f"{name}.txt").write_text("\n".join(labels) + "\n")
        np.save(root / "features" / f"{name}.npy", np.zeros((7, len(labels)), np.float32))
    for k in range(1, 5):
        (root / "splits" / f"test.split{k}.bundle").write_text(f"P{k - 1:02d}_cereals.txt\n")
    if train_bundle:
        (root / "splits" / "train.split1.bundle").write_text(
            "P01_cereals.txt\nP02_cereals.txt\nP03_cereals.txt\n"
        )
    return root


def test_reads_layout(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ds = SegmentationSet.open(root)
    assert ds.classes == ["SIL", "pour_milk", "stir"]
    np.testing.assert_array_equal(ds.labels("P00_cereals"), [0, 1, 1, 2, 0])
    assert ds.features("P00_cereals").shape == (7, 5)
    assert split_videos(root, 1) == (["P01_cereals", "P02_cereals", "P03_cereals"], ["P00_cereals"])


def test_split1_without_train_bundle_is_splits_2_to_4(tmp_path: Path) -> None:
    root = make_root(tmp_path, train_bundle=False)
    train, test = split_videos(root, 1)
    assert test == ["P00_cereals"]
    assert train == ["P01_cereals", "P02_cereals", "P03_cereals"]


def test_errors_name_the_file(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ds = SegmentationSet.open(root)
    (root / "groundTruth" / "P00_cereals.txt").write_text("SIL\nfry_egg\n")
    with pytest.raises(VideorepError, match=r"P00_cereals.txt, line 2: class 'fry_egg'"):
        ds.labels("P00_cereals")
    with pytest.raises(VideorepError, match=r"P01_cereals.npy: features of shape \(7, 5\) do not"):
        np.save(root / "features" / "P01_cereals.npy", np.zeros((7, 5), np.float32))
        (root / "groundTruth" / "P01_cereals.txt").write_text("SIL\n" * 6)
        ds.features("P01_cereals")
    with pytest.raises(VideorepError, match="missing frame features"):
        ds.features("P09_cereals")
    with pytest.raises(VideorepError, match="test.split7.bundle: missing split bundle"):
        split_videos(root, 7)
    (root / "mapping.txt").write_text("0 SIL\n2 stir\n")
    with pytest.raises(VideorepError, match="without gaps"):
        read_mapping(root / "mapping.txt")
    (root / "mapping.txt").write_text("SIL\n")
    with pytest.raises(VideorepError, match="line 1: expected"):
        read_mapping(root / "mapping.txt")
    (root / "splits" / "empty.bundle").write_text("\n")
    with pytest.raises(VideorepError, match="empty split bundle"):
        read_bundle(root / "splits" / "empty.bundle")
    (root / "splits" / "train.split1.bundle").write_text("P00_cereals.txt\n")
    with pytest.raises(VideorepError, match="in both the training and the test list"):
        split_videos(root, 1)
    with pytest.raises(VideorepError, match="no such folder"):
        SegmentationSet.open(tmp_path / "nothing")
