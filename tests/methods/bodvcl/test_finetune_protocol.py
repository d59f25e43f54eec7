"""``videorep eval finetune``: the BOD-VCL fine-tuning protocol on generated collections."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from videorep.cli import main
from videorep.data.labelled import load_collection
from videorep.data.labelled_synthetic import LabelledSyntheticConfig, write_labelled_collection
from videorep.errors import VideorepError
from videorep.methods.bodvcl.encoders import build_encoder
from videorep.methods.bodvcl.finetune import (
    FinetuneConfig,
    LabelledClipDataset,
    clip_stack,
    finetune,
    load_bodvcl_encoder,
)
from videorep.methods.bodvcl.method import BODVCL, BODVCLConfig
from videorep.train.checkpoint import FORMAT, atomic_save


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ft") / "coll"
    cfg = LabelledSyntheticConfig(
        shapes=("circle",),
        directions=("right", "down"),
        train_per_class=2,
        test_per_class=1,
        frames=6,
        size=32,
    )
    write_labelled_collection(root, cfg)
    return root


def test_clips_and_dataset(tiny: Path) -> None:
    coll = load_collection(tiny)
    cfg = FinetuneConfig(clip_len=4, stride=1, size=24, test_clips=3, candidates=3)
    x = clip_stack(coll.videos[0], cfg)
    assert x.shape == (3, 4, 3, 24, 24)
    # 6 frames, clips of 4: starts 0, 1, 2 -> the first and last clip differ
    assert not torch.equal(x[0], x[2])
    train, _ = coll.split(1)
    ds = LabelledClipDataset(train.videos, cfg, repeats=2)
    assert len(ds) == 8
    item = ds[5]
    assert item["clips"].shape == (4, 3, 24, 24) and item["label"] == train.videos[1].label
    torch.testing.assert_close(ds[5]["clips"], item["clips"])  # seeded by (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["clips"], item["clips"])


def test_bodvcl_checkpoint_encoder_round_trip(tmp_path: Path) -> None:
    cfg = BODVCLConfig(encoder="tiny3d", koopman_dim=8, proj_hidden_dim=16, image_size=32)
    method = BODVCL(cfg)
    ckpt = {
        "format": FORMAT,
        "method": "bodvcl",
        "method_state": method.checkpoint_state(),
        "config": {"method_config": asdict(cfg)},
    }
    atomic_save(ckpt, tmp_path / "run" / "checkpoint.pt")
    encoder, mc = load_bodvcl_encoder(tmp_path / "run")
    assert mc["encoder"] == "tiny3d"
    for (name, a), (_, b) in zip(
        encoder.state_dict().items(), method.online.encoder.state_dict().items()
    ):
        torch.testing.assert_close(a, b, msg=name)
    atomic_save({**ckpt, "method": "cosettle"}, tmp_path / "other" / "checkpoint.pt")
    with pytest.raises(VideorepError, match="a cosettle checkpoint, not a BOD-VCL run"):
        load_bodvcl_encoder(tmp_path / "other")


def test_finetune_command_writes_results(tiny: Path, tmp_path: Path, capsys, one_thread) -> None:
    out = tmp_path / "ft"
    args = [
        "eval",
        "finetune",
        "--root",
        str(tiny),
        "--encoder",
        "tiny3d",
        "--out",
        str(out),
        "--clip-len",
        "4",
        "--size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--test-clips",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "finetune" and res["classes"] == 2
    assert res["splits"]["1"]["videos"] == 2 and res["splits"]["1"]["steps"] == 2
    assert res["top1"] == res["splits"]["1"]["top1"] and res["chance_top1"] == 50.0
    assert res["settings"]["init"] == "random" and res["provenance"]["device"] == "cpu"
    assert (out / "split1" / "checkpoint.pt").is_file()
    assert (out / "results.csv").read_text().splitlines()[-1].startswith("mean,")
    assert "split 1: top-1" in capsys.readouterr().out
    assert main(args[:-3] + ["--splits", "3"]) == 2
    assert "no split 3" in capsys.readouterr().err


@pytest.mark.slow
def test_finetuning_beats_chance(tmp_path: Path, one_thread) -> None:
    """2 classes (a circle moving right / down), 24 training and 8 test videos per class: a
    randomly initialised tiny3d fine-tuned for 15 epochs (90 steps). Measured: top-1 93.75 %
    (seed 0) and 87.5 % (seed 1) against 50 % chance; the training loss falls from 0.69."""
    root = tmp_path / "coll"
    write_labelled_collection(
        root,
        LabelledSyntheticConfig(
            shapes=("circle",),
            directions=("right", "down"),
            train_per_class=24,
            test_per_class=8,
            frames=8,
            size=32,
        ),
    )
    coll = load_collection(root)
    train, test = coll.split(1)
    torch.manual_seed(0)
    cfg = FinetuneConfig(
        clip_len=8,
        size=32,
        epochs=15,
        lr=2e-3,
        batch_size=8,
        warmup_epochs=1,
        test_clips=1,
        dropout=0.0,
        candidates=1,
    )
    s = finetune(
        build_encoder("tiny3d"), train.videos, test.videos, 2, tmp_path / "run", cfg, progress=False
    )
    assert s["train_loss_last"] < s["train_loss_first"] - 0.15
    assert s["top1"] >= 75.0, s
