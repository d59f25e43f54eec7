"""``videorep eval segmentation`` end to end on a generated Breakfast-style folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videorep.cli import main


def write_breakfast(root: Path, videos: int = 8, dim: int = 6, seed: int = 0) -> None:
    """Videos of 'SIL' + 2-3 action segments; a frame's feature is its class mean plus noise."""
    rng = np.random.default_rng(seed)
    classes = ["SIL", "take_bowl", "pour_milk", "stir"]
    means = np.random.default_rng(99).normal(0, 2, (len(classes), dim))
    (root / "groundTruth").mkdir(parents=True)
    (root / "features").mkdir()
    (root / "splits").mkdir()
    (root / "mapping.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes)))
    names = []
    for v in range(videos):
        ys = [0] * int(rng.integers(3, 6))
        for c in rng.permutation([1, 2, 3])[: int(rng.integers(2, 4))]:
            ys += [int(c)] * int(rng.integers(5, 10))
        ys += [0] * 3
        y = np.array(ys)
        x = means[y].T + 0.4 * rng.normal(size=(dim, len(y)))
        name = f"P{v:02d}_cereals"
        (root / "groundTruth" / f"{name}.txt").write_text("".join(classes[i] + "\n" for i in y))
        np.save(root / "features" / f"{name}.npy", x.astype(np.float32))
        names.append(name)
    quarter = videos // 4
    for k in range(4):
        part = names[k * quarter : (k + 1) * quarter]
        (root / "splits" / f"test.split{k + 1}.bundle").write_text(
            "".join(n + ".txt\n" for n in part)
        )


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_segmentation_command(tmp_path: Path, capsys, one_thread) -> None:
    root = tmp_path / "bf"
    write_breakfast(root)
    out = tmp_path / "out"
    args = [
        "eval",
        "segmentation",
        "--root",
        str(root),
        "--out",
        str(out),
        "--epochs",
        "25",
        "--lr",
        "1e-2",
        "--width",
        "16",
        "--layers",
        "3",
        "--dropout",
        "0.1",
        "--videos-per-step",
        "3",
        "--background",
        "SIL",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["counts"]["train_videos"] == 6 and res["counts"]["test_videos"] == 2
    assert res["scores"]["acc"] > 90.0
    assert res["train_loss"][-1] < res["train_loss"][0]
    assert res["provenance"]["device"] == "cpu"
    assert (out / "results.csv").read_text().startswith("metric,value")
    pred = (out / "predictions" / "P00_cereals.txt").read_text().split()
    assert len(pred) == len((root / "groundTruth" / "P00_cereals.txt").read_text().split())
    assert "acc" in capsys.readouterr().out


def test_segmentation_command_errors(tmp_path: Path, capsys) -> None:
    root = tmp_path / "bf"
    write_breakfast(root)
    base = ["eval", "segmentation", "--root", str(root), "--out", str(tmp_path / "o")]
    assert main(base + ["--background", "BREAK"]) == 2
    assert "--background 'BREAK' is not a class" in capsys.readouterr().err
    np.save(root / "features" / "P03_cereals.npy", np.zeros((6, 2), np.float32))
    assert main(base + ["--epochs", "1"]) == 2
    assert "P03_cereals.npy: features of shape (6, 2) do not match" in capsys.readouterr().err


def test_segmentation_from_videos_with_an_image_encoder(tmp_path: Path, capsys, one_thread) -> None:
    """--videos: the generated set's videos are encoded frame by frame (a random ViT-Tiny), the
    features cached in OUT/features and reused by a second run; another encoder is refused."""
    from videorep.data.labelled_synthetic import LabelledSyntheticConfig, write_labelled_collection

    cfg = LabelledSyntheticConfig(
        shapes=("circle",),
        directions=("right", "down"),
        train_per_class=1,
        test_per_class=1,
        frames=4,
        size=32,
        segmentation_videos=4,
        segmentation_frames=24,
    )
    write_labelled_collection(tmp_path / "c", cfg)
    seg = tmp_path / "c" / "segmentation"
    out = tmp_path / "o"
    args = [
        "eval",
        "segmentation",
        "--root",
        str(seg),
        "--videos",
        str(seg / "videos"),
        "--backbone",
        "random_vit_tiny16",
        "--size",
        "32",
        "--epochs",
        "2",
        "--width",
        "8",
        "--layers",
        "2",
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    feats = sorted((out / "features").glob("*.npy"))
    assert len(feats) == 4 and np.load(feats[0]).shape == (192, 24)
    stamp = feats[0].stat().st_mtime_ns
    assert main(args) == 0
    assert feats[0].stat().st_mtime_ns == stamp  # read back, not recomputed
    res = json.loads((out / "results.json").read_text())
    assert res["counts"] == {
        "train_videos": 3,
        "test_videos": 1,
        "test_frames": 24,
        "classes": 2,
        "feature_dim": 192,
    }
    capsys.readouterr()
    assert main(args[:-7] + ["--size", "48", "--out", str(out), "--device", "cpu"]) == 2
    assert "holds features of another encoder" in capsys.readouterr().err
