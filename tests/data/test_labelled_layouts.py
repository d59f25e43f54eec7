"""Labelled collections: UCF101 / HMDB51 split files, class folders, CSVs, SSv2 JSON, frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import frame_number, pattern, write_video
from PIL import Image

from videorep.data.labelled import (
    clip_starts,
    load_collection,
    read_clips,
    read_uniform,
    sample_indices,
)
from videorep.data.sources import DataWarning
from videorep.errors import VideorepError

CLASSES = ["Jump", "Run", "Walk"]


def _frames_folder(folder: Path, n: int = 12) -> Path:
    folder.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(pattern(k)).save(folder / f"{k + 1:05d}.png")
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 12-frame 25 fps mp4 whose frame k shows the number k."""
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", n=12, gop=4)


def _ucf(tmp_path: Path, clip: Path, splits=(1, 2)) -> Path:
    root = tmp_path / "UCF101"
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
    names = {c: [f"{c}/v_{c}_g0{g}_c01.avi" for g in (1, 2, 3)] for c in CLASSES}
    for c in CLASSES:
        (root / c).mkdir()
        for rel in names[c][:2]:
            (root / rel).write_bytes(clip.read_bytes())
        _frames_folder(root / names[c][2].removesuffix(".avi"), 4)  # a frame folder
    for k in splits:
        test_g = k  # group k is the test group of split k
        train = [r for c in CLASSES for r in names[c] if f"_g0{test_g}_" not in r]
        test = [r for c in CLASSES for r in names[c] if f"_g0{test_g}_" in r]
        (lists / f"trainlist0{k}.txt").write_text(
            "".join(f"{r} {CLASSES.index(r.split('/')[0]) + 1}\n" for r in train)
        )
        (lists / f"testlist0{k}.txt").write_text("".join(f"{r}\n" for r in test))
    return root


def test_ucf_layout_splits_and_labels(tmp_path, clip):
    coll = load_collection(_ucf(tmp_path, clip))
    assert coll.format == "ucf101"
    assert coll.classes == CLASSES
    assert len(coll) == 9
    assert coll.splits == [1, 2]
    train, test = coll.split(1)
    assert (len(train), len(test)) == (6, 3)
    assert sorted(v.name for v in test) == [f"{c}/v_{c}_g01_c01.avi" for c in CLASSES]
    assert test.labels().tolist() == [0, 1, 2]
    assert all(v.class_name == CLASSES[v.label] for v in coll.videos)
    # group 3 is stored as a frame folder without extension
    g3 = next(v for v in coll.videos if "_g03_" in v.name)
    assert g3.is_frames and g3.path.is_dir()
    with pytest.raises(VideorepError, match="no split 3"):
        coll.split(3)


def test_ucf_missing_split_file(tmp_path, clip):
    root = _ucf(tmp_path, clip)
    (root / "ucfTrainTestlist" / "testlist02.txt").unlink()
    with pytest.raises(VideorepError, match=r"testlist02\.txt: missing split file"):
        load_collection(root)


def test_ucf_unknown_class(tmp_path, clip):
    root = _ucf(tmp_path, clip, splits=(1,))
    with open(root / "ucfTrainTestlist" / "trainlist01.txt", "a") as f:
        f.write("Swim/v_Swim_g01_c01.avi 4\n")
    with pytest.raises(VideorepError, match=r"trainlist01\.txt: line 7: unknown class 'Swim'"):
        load_collection(root)


def test_ucf_missing_video_skipped_and_counted(tmp_path, clip):
    root = _ucf(tmp_path, clip, splits=(1,))
    (root / "Run" / "v_Run_g02_c01.avi").unlink()
    with pytest.warns(DataWarning, match="skipped 1 listed video"):
        coll = load_collection(root)
    assert len(coll) == 8
    assert len(coll.skipped) == 1 and coll.skipped[0][0].endswith("v_Run_g02_c01.avi")


def test_hmdb_layout_roles(tmp_path, clip):
    root = tmp_path / "hmdb"
    splits = root / "splits"
    splits.mkdir(parents=True)
    for c in ("wave", "clap"):
        (root / c).mkdir()
        for i in range(3):
            (root / c / f"{c}_{i}.avi").write_bytes(clip.read_bytes())
        # split 1: 0 train, 1 test, 2 unused
        (splits / f"{c}_test_split1.txt").write_text(f"{c}_0.avi 1\n{c}_1.avi 2\n{c}_2.avi 0\n")
    coll = load_collection(root)
    assert coll.format == "hmdb51"
    assert coll.classes == ["clap", "wave"]
    train, test = coll.split(1)
    assert sorted(v.name for v in train) == ["clap/clap_0.avi", "wave/wave_0.avi"]
    assert sorted(v.name for v in test) == ["clap/clap_1.avi", "wave/wave_1.avi"]
    assert len(coll) == 6  # the unused ones stay in the collection, not in a split
    (splits / "wave_test_split2.txt").write_text("wave_0.avi 2\n")
    with pytest.raises(VideorepError, match=r"clap_test_split2\.txt: missing split file"):
        load_collection(root)


def test_class_folders_train_test_and_empty(tmp_path, clip):
    root = tmp_path / "folders"
    for part in ("train", "test"):
        for c in ("a", "b"):
            (root / part / c).mkdir(parents=True)
            (root / part / c / "x.mp4").write_bytes(clip.read_bytes())
    coll = load_collection(root)
    assert coll.format == "folders" and coll.classes == ["a", "b"] and coll.splits == [1]
    train, test = coll.split(1)
    assert [v.class_name for v in test] == ["a", "b"]
    (root / "test" / "c").mkdir()
    with pytest.raises(VideorepError, match=r"test/c: empty class folder"):
        load_collection(root)
    (root / "test" / "c" / "y.mp4").write_bytes(clip.read_bytes())
    with pytest.raises(VideorepError, match="unknown class 'c'"):
        load_collection(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideorepError, match="empty folder"):
        load_collection(empty)
    with pytest.raises(VideorepError, match="no such dataset folder"):
        load_collection(tmp_path / "absent")


def test_kinetics_csv(tmp_path, clip):
    root = tmp_path / "k400"
    (root / "train" / "abseiling").mkdir(parents=True)
    (root / "train" / "abseiling" / "aaa_000010_000020.mp4").write_bytes(clip.read_bytes())
    (root / "val" / "zumba").mkdir(parents=True)
    (root / "val" / "zumba" / "bbb_000000_000010.mp4").write_bytes(clip.read_bytes())
    (root / "train" / "zumba").mkdir(parents=True)
    (root / "train" / "zumba" / "ccc.mp4").write_bytes(clip.read_bytes())  # untrimmed
    csv = tmp_path / "k.csv"
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,aaa,10,20,train\n"
        "zumba,ccc,0.2,0.3,train\n"
        "zumba,bbb,0,10,val\n"
        "zumba,missing,0,10,val\n"
    )
    with pytest.warns(DataWarning, match="skipped 1"):
        coll = load_collection(root, labels=csv)
    assert coll.format == "csv" and coll.classes == ["abseiling", "zumba"]
    assert [v.roles for v in coll.videos] == [{1: "train"}, {1: "train"}, {1: "test"}]
    trimmed, untrimmed = coll.videos[0], coll.videos[1]
    assert trimmed.start is None and (untrimmed.start, untrimmed.end) == (0.2, 0.3)
    # untrimmed: only frames 5..7 (0.2 s - 0.3 s at 25 fps) are read
    frames = read_uniform(untrimmed, 3)
    assert [frame_number(f) for f in frames] == [5, 6, 7]
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\nzumba,bbb,0,10,val\n"
        "abseiling,aaa,10,20,train\nyoga,aaa,10,20,test\n"
    )
    with pytest.raises(VideorepError, match=r"k\.csv: line 2: unknown class 'zumba'"):
        load_collection(root, labels=csv)


def test_plain_csv_and_split_from_name(tmp_path, clip):
    root = tmp_path / "plain"
    root.mkdir()
    for i in range(4):
        (root / f"v{i}.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "train.csv").write_text("v0.mp4,left\nv1.mp4,right\n")
    (tmp_path / "test.csv").write_text("path,label\nv2.mp4,right\nv3.mp4,left\n")
    coll = load_collection(root, labels=[tmp_path / "train.csv", tmp_path / "test.csv"])
    train, test = coll.split(1)
    assert [v.label for v in train] == [0, 1] and [v.label for v in test] == [1, 0]
    (tmp_path / "bad.csv").write_text("v0.mp4\n")
    with pytest.raises(VideorepError, match=r"bad\.csv: line 1: expected path,label"):
        load_collection(root, labels=tmp_path / "bad.csv")


def test_ssv2_json(tmp_path, clip):
    root = tmp_path / "ssv2"
    root.mkdir()
    for i in (1, 2, 3):
        (root / f"{i}.webm").write_bytes(clip.read_bytes())
    (tmp_path / "something-something-v2-labels.json").write_text(
        json.dumps({"Pushing something left": "1", "Pushing something right": "0"})
    )
    (tmp_path / "something-something-v2-train.json").write_text(
        json.dumps(
            [
                {"id": "1", "template": "Pushing [something] left"},
                {"id": "2", "template": "Pushing [something] right"},
            ]
        )
    )
    (tmp_path / "something-something-v2-validation.json").write_text(
        json.dumps([{"id": "3", "template": "Pushing [something] left"}])
    )
    coll = load_collection(
        root,
        labels=[
            tmp_path / "something-something-v2-train.json",
            tmp_path / "something-something-v2-validation.json",
        ],
    )
    assert coll.format == "ssv2"
    assert coll.classes == ["Pushing something right", "Pushing something left"]
    train, test = coll.split(1)
    assert train.labels().tolist() == [1, 0] and test.labels().tolist() == [1]


def test_sampling_indices_hand_computed():
    assert sample_indices(10, 5) == [1, 3, 5, 7, 9]
    assert sample_indices(3, 6) == [0, 0, 1, 1, 2, 2]
    assert clip_starts(20, 4, 2, 3) == [0, 6, 13]  # span 7, room 13
    assert clip_starts(20, 4, 2, 1) == [6]
    assert clip_starts(3, 4, 2, 2) == [0, 0]


def test_read_uniform_clips_and_reverse(tmp_path, clip):
    folder = _frames_folder(tmp_path / "c" / "vid", 12)
    (tmp_path / "c" / "vid.mp4").write_bytes(clip.read_bytes())
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "other.mp4").write_bytes(clip.read_bytes())
    coll = load_collection(tmp_path)
    assert len(coll) == 3
    for v in coll.videos:
        frames = read_uniform(v, 4)
        assert frames.shape == (4, 64, 96, 3) and frames.dtype == np.uint8
        assert [frame_number(f) for f in frames] == [1, 4, 7, 10]
        clips = read_clips(v, 3, 2, 2)
        assert clips.shape[:2] == (2, 3)
        assert [[frame_number(f) for f in c] for c in clips] == [[0, 2, 4], [7, 9, 11]]
    rev = coll.reversed()
    assert all(v.reverse for v in rev.videos) and rev.labels().tolist() == coll.labels().tolist()
    back = read_uniform(rev.videos[0], 4)
    assert [frame_number(f) for f in back] == [10, 7, 4, 1]
    assert rev.videos[0].key() != coll.videos[0].key()
    assert coll.videos[0].key() == load_collection(tmp_path).videos[0].key()
    assert folder.is_dir()
