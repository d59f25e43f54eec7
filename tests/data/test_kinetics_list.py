"""Kinetics-400 training lists: ``path label`` lines, the official annotation CSV, plain
``class/video.mp4`` trees, and clear errors for a missing or empty list."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import write_video

from videorep.data.kinetics import find_list, read_list, split_label
from videorep.data.sources import DataWarning, discover_sources
from videorep.errors import VideorepError


def _tree(root: Path) -> list[Path]:
    """A tiny Kinetics tree: two classes, three 2-second mp4 clips (official file names)."""
    videos = [
        root / "videos" / "abseiling" / "aaaaaaaaaaa_000010_000020.mp4",
        root / "videos" / "abseiling" / "bbbbbbbbbbb_000002_000012.mp4",
        root / "videos" / "air drumming" / "ccccccccccc_000000_000010.mp4",
    ]
    for v in videos:
        v.parent.mkdir(parents=True, exist_ok=True)
        write_video(v, n=20, rate=10)
    return videos


def test_path_label_list_at_the_root_is_read_instead_of_a_walk(tmp_path):
    videos = _tree(tmp_path)
    (tmp_path / "videos" / "stray.mp4").write_bytes(b"")  # not listed: never looked at
    lines = ["videos/abseiling/aaaaaaaaaaa_000010_000020.mp4 0"]
    lines += ["", "# comment", f"{videos[2]}\t1"]  # absolute path, tab
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    assert find_list(tmp_path) == tmp_path / "train.csv"
    entries = read_list(tmp_path / "train.csv", tmp_path)
    assert [(e.path, e.label, e.line) for e in entries] == [
        (videos[0], "0", 1),
        (videos[2], "1", 4),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        sources = discover_sources(tmp_path, fps=2.0)
    assert [s.path for s in sources] == [videos[0], videos[2]]
    assert [s.num_frames for s in sources] == [4, 4]  # 2 s at 2 fps
    assert sources[0].read([3])[0].shape == (64, 96, 3)


def test_official_annotation_csv_names_label_folders(tmp_path):
    videos = _tree(tmp_path)
    csv = tmp_path / "annotations" / "train.csv"
    csv.parent.mkdir()
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,bbbbbbbbbbb,2,12,train\n"
        '"air drumming",ccccccccccc,0,10,train\n'
    )
    entries = read_list(csv, tmp_path / "videos")
    assert [e.path for e in entries] == [videos[1], videos[2]]
    assert [e.label for e in entries] == ["abseiling", "air drumming"]


def test_plain_class_video_tree_without_a_list(tmp_path):
    videos = _tree(tmp_path)
    assert find_list(tmp_path) is None
    sources = discover_sources(tmp_path / "videos", fps=2.0)
    assert sorted(s.path for s in sources) == sorted(videos)


def test_missing_list_and_empty_list_are_clear_errors(tmp_path):
    with pytest.raises(VideorepError, match=r"train\.csv: Kinetics list file not found"):
        read_list(tmp_path / "train.csv")
    (tmp_path / "train.csv").write_text("# only a comment\n\n")
    with pytest.raises(VideorepError, match=r"train\.csv: the Kinetics list holds no videos"):
        discover_sources(tmp_path)


def test_missing_listed_video_is_skipped_with_its_line_then_an_error_if_none_left(tmp_path):
    videos = _tree(tmp_path)
    (tmp_path / "train.txt").write_text("videos/abseiling/gone.mp4 0\n" + f"{videos[0]} 0\n")
    with pytest.warns(DataWarning, match=r"gone\.mp4: skipped: no such file .*train\.txt, line 1"):
        sources = discover_sources(tmp_path)
    assert [s.path for s in sources] == [videos[0]]
    (tmp_path / "train.txt").write_text("videos/abseiling/gone.mp4 0\n")
    with pytest.warns(DataWarning), pytest.raises(VideorepError, match="no usable training video"):
        discover_sources(tmp_path)


def test_split_label():
    assert split_label("a/b c.mp4 12") == ("a/b c.mp4", "12")
    assert split_label("a/b.mp4,3") == ("a/b.mp4", "3")
    assert split_label("a/b c.mp4") == ("a/b c.mp4", None)
    assert split_label("a/10") == ("a/10", None)
