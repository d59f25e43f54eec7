"""``videorep eval retrieval | linear-probe | chiral | static-dynamic`` end to end on a generated
collection of moving squares (tiny random ViT at 32 px)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from video_collections import make_collection

from videorep.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_collection(tmp_path_factory.mktemp("moving") / "coll", train=3, test=2)


def _base(root, out, cache):
    return [
        "--root", str(root), "--backbone", "random_vit_tiny16", "--size", "32", "--frames", "4",
        "--out", str(out), "--cache", str(cache), "--device", "cpu",
    ]  # fmt: skip


def test_retrieval_twice_second_run_from_cache(root, tmp_path, capsys, monkeypatch):
    args = ["eval", "retrieval", *_base(root, tmp_path / "r1", tmp_path / "cache")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "features: 4 videos (4 encoded, 0 from the cache, 0 unreadable)" in first
    res = json.loads((tmp_path / "r1" / "results.json").read_text())
    m = res["metrics"]
    assert set(m) >= {"mAP", "R@1", "R@5", "R@10"} and 0 <= m["mAP"] <= 1
    assert m["queries"] == 4  # the test part of split 1
    assert res["features"][0]["encoded"] == 4 and res["provenance"]["device"] == "cpu"
    assert res["settings"]["backbone"] == "random_vit_tiny16"
    rows = list(csv.DictReader(open(tmp_path / "r1" / "results.csv")))
    assert {r["metric"] for r in rows} >= {"mAP", "R@1"}
    args[args.index(str(tmp_path / "r1"))] = str(tmp_path / "r2")

    def no_encoder(*a, **k):
        raise AssertionError("the encoder was built although every video is cached")

    monkeypatch.setattr("videorep.backbones.load_encoder", no_encoder)
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "features: 4 videos (0 encoded, 4 from the cache, 0 unreadable)" in second
    assert "0 encoder calls" in second
    res2 = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert res2["metrics"] == m


def test_linear_probe_command(root, tmp_path, capsys):
    args = ["eval", "linear-probe", *_base(root, tmp_path / "p", tmp_path / "cache")]
    assert main([*args, "--weight-decays", "1e-4", "1e-2", "--knn-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "split 1: linear top-1" in out and "mean over 1 split(s)" in out
    res = json.loads((tmp_path / "p" / "results.json").read_text())
    assert set(res["metrics"]["mean"]) == {"top1", "top5", "knn_top1", "knn_top5"}
    assert res["metrics"]["splits"][0]["train"] == 6 and res["metrics"]["splits"][0]["test"] == 4


def test_chiral_command_by_reversal(root, tmp_path, capsys):
    args = ["eval", "chiral", *_base(root, tmp_path / "c", tmp_path / "cache")]
    assert main(args) == 0
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    assert res["metrics"]["pairs"] == 2 and res["metrics"]["generated_by_reversal"]
    assert res["metrics"]["accuracy_mean_pooled"] == pytest.approx(0.5)
    assert res["metrics"]["accuracy"] == 1.0
    # pairs from a CSV: right vs left (different videos, so not exactly at chance)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("class_a,class_b\nright,left\n")
    assert main([*args, "--pairs", str(pairs)]) == 0
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    assert res["metrics"]["pairs"] == 1 and not res["metrics"]["generated_by_reversal"]
    pairs.write_text("right,sideways\n")
    assert main([*args, "--pairs", str(pairs)]) == 2
    assert "pairs.csv: line 1: unknown class 'sideways'" in capsys.readouterr().err


def test_static_dynamic_command(root, tmp_path, capsys):
    pytest.importorskip("cv2")
    args = ["eval", "static-dynamic", *_base(root, tmp_path / "s", tmp_path / "cache")]
    assert main([*args, "--weight-decays", "1e-3"]) == 0
    out = capsys.readouterr().out
    for name in ("original", "static", "dynamic"):
        assert f"{name}: linear top-1" in out
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert set(res["metrics"]) == {"original", "static", "dynamic"}
    assert len(res["features"]) == 3
    # the versions are cached separately; a second run encodes nothing
    assert main([*args, "--weight-decays", "1e-3"]) == 0
    res2 = json.loads((tmp_path / "s" / "results.json").read_text())
    assert [f["encoder_calls"] for f in res2["features"]] == [0, 0, 0]
    assert res2["metrics"] == res["metrics"]


def test_video_encoder_and_errors(root, tmp_path, capsys):
    args = ["eval", "retrieval", *_base(root, tmp_path / "v", "none")]
    assert (
        main([*args, "--video-encoder", "random:tiny3d", "--clip-len", "4", "--stride", "1"]) == 0
    )
    res = json.loads((tmp_path / "v" / "results.json").read_text())
    assert res["features"][0]["cache"] is None and res["metrics"]["queries"] == 4
    capsys.readouterr()
    bad = ["eval", "linear-probe", *_base(root / "train", tmp_path / "x", "none")]
    assert main(bad) == 2
    assert "linear-probe needs train/test splits" in capsys.readouterr().err
    assert main(["eval", "retrieval", *_base(tmp_path / "absent", tmp_path / "x", "none")]) == 2
    assert "no such dataset folder" in capsys.readouterr().err


def test_bodvcl_checkpoint_as_video_encoder(root, tmp_path):
    from videorep.data.labelled import load_collection
    from videorep.eval.video_commands import build_video_encoder
    from videorep.eval.video_features import ClipFeatureEncoder, Sampling, extract_features
    from videorep.methods.bodvcl import build_bodvcl
    from videorep.train.checkpoint import FORMAT, atomic_save

    torch.manual_seed(3)
    config = {"encoder": "tiny3d", "framework": "simclr", "koopman_dim": 16}
    method = build_bodvcl(config)
    ckpt = tmp_path / "bodvcl.pt"
    atomic_save(
        {"format": FORMAT, "method": "bodvcl", "method_state": method.checkpoint_state(),
         "config": {"method": "bodvcl", "method_config": config}},  # as the trainer writes it
        ckpt,
    )  # fmt: skip
    args = ["eval", "retrieval", *_base(root, tmp_path / "b", "none"), "--clip-len", "4"]
    assert main([*args, "--stride", "1", "--video-encoder", str(ckpt)]) == 0
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    # the features are those of the checkpoint's encoder
    from videorep.cli import build_parser

    parsed = build_parser().parse_args([*args, "--video-encoder", str(ckpt)])
    enc = build_video_encoder(parsed)
    assert enc.identity.startswith("bodvcl:")
    sampling = Sampling(clip_len=4, stride=1, size=32)
    coll = load_collection(root)
    mine = extract_features(coll, enc, sampling, progress=False)
    ref = extract_features(coll, ClipFeatureEncoder(method.online.encoder, "ref"), sampling,
                           progress=False)  # fmt: skip
    assert torch.allclose(mine.features, ref.features, atol=1e-5)
    assert res["metrics"]["queries"] == 4
    atomic_save({"format": FORMAT, "method": "cosettle", "method_state": {}}, ckpt)
    assert main([*args, "--video-encoder", str(ckpt)]) == 2


def test_linear_probe_averages_official_splits(root, tmp_path, capsys):
    # a UCF101-style index over the same videos, with two official splits
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 left\n2 right\n")
    vids = [f"{c}/{c}{i}.mp4" for c in ("left", "right") for i in range(3)]
    for k in (1, 2):
        test = [v for v in vids if v.endswith(f"{k - 1}.mp4")]
        train = [v for v in vids if v not in test]
        label = {"left": 1, "right": 2}
        (lists / f"trainlist0{k}.txt").write_text(
            "".join(f"{v} {label[v.split('/')[0]]}\n" for v in train)
        )
        (lists / f"testlist0{k}.txt").write_text("".join(f"{v}\n" for v in test))
    base = _base(root / "train", tmp_path / "u", tmp_path / "cache")
    args = ["eval", "linear-probe", *base, "--split-dir", str(lists), "--knn-k", "3"]
    assert main([*args, "--weight-decays", "1e-3"]) == 0
    out = capsys.readouterr().out
    assert "split 1:" in out and "split 2:" in out and "mean over 2 split(s)" in out
    res = json.loads((tmp_path / "u" / "results.json").read_text())
    splits = res["metrics"]["splits"]
    assert [(s["split"], s["train"], s["test"]) for s in splits] == [(1, 4, 2), (2, 4, 2)]
    for key in ("top1", "knn_top1"):
        mean = (splits[0][key] + splits[1][key]) / 2
        assert res["metrics"]["mean"][key] == pytest.approx(mean)
    assert res["collection"]["format"] == "ucf101" and res["collection"]["splits"] == [1, 2]
