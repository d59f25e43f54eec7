"""videorep.data.sources: discovery of videos and frame folders, bad-input handling."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from conftest import frame_number, pattern
from PIL import Image

from videorep.data.sources import (
    DataWarning,
    FrameFolderSource,
    VideoFileSource,
    discover_sources,
    shipped_videos,
)
from videorep.errors import VideorepError


def discover(*args, **kwargs):
    """discover_sources, returning (sources, list of warning messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sources = discover_sources(*args, **kwargs)
    return sources, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def save_frames(folder, n, start=0, fmt="{:05d}.jpg", size=(96, 64)):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(start, start + n):
        img = pattern(k, size[1], size[0])
        Image.fromarray(img).save(folder / fmt.format(k), quality=95)
    return folder


def test_davis_sample(davis_480p):
    for root in (davis_480p, davis_480p.parent.parent):  # 480p or the DAVIS root
        sources, warned = discover(root)
        assert warned == []
        assert [(s.name.split("/")[-1], s.num_frames) for s in sources] == [
            ("blackswan", 50),
            ("car-shadow", 40),
            ("libby", 49),
        ]
        assert all(isinstance(s, FrameFolderSource) for s in sources)
    last, first = sources[0].read([49, 0])
    assert last.shape == first.shape == (480, 854, 3) and last.dtype == np.uint8
    assert sources[0].frames[49].name == "00049.jpg"
    assert not np.array_equal(last, first)


def test_shipped_videos_discovery():
    sources, warned = discover(shipped_videos())
    assert warned == []
    assert [(s.name, s.num_frames) for s in sources] == [
        ("bigbuckbunny.mp4", 11),
        ("bikes.mp4", 20),
        ("carphone_distorted.mp4", 8),
        ("carphone_pristine.mp4", 8),
    ]
    # at the native rate
    native, _ = discover(shipped_videos()[1], fps=None)
    assert native[0].num_frames == 250


def test_kinetics_frames_layout_and_natural_order(tmp_path):
    root = tmp_path / "k400"
    save_frames(root / "abseiling" / "vid_a", 5)
    save_frames(root / "zumba" / "vid_b", 3, start=7)  # numbering gap is fine
    # natural order: 2 before 10 (string order would put 10 first)
    save_frames(root / "zumba" / "vid_c", 3, fmt="{}.png", start=0)
    Image.fromarray(pattern(10)).save(root / "zumba" / "vid_c" / "10.png")
    Image.fromarray(pattern(2)).save(root / "zumba" / "vid_c" / "2.png")
    sources, warned = discover(root)
    assert warned == []
    assert [(s.name, s.num_frames) for s in sources] == [
        ("abseiling/vid_a", 5),
        ("zumba/vid_b", 3),
        ("zumba/vid_c", 4),
    ]
    assert [frame_number(f) for f in sources[1].read([0, 2])] == [7, 9]
    assert [p.name for p in sources[2].frames] == ["0.png", "1.png", "2.png", "10.png"]
    assert frame_number(sources[2].read([3])[0]) == 10


def test_folder_of_videos_and_list_file(videos, tmp_path):
    folder = tmp_path / "vids"
    folder.mkdir()
    for key in ("mp4", "webm", "mkv"):
        shutil.copy(videos[key], folder / videos[key].name)
    sources, warned = discover(folder)
    assert warned == []
    assert [s.name for s in sources] == ["counter.mkv", "counter.mp4", "counter.webm"]
    assert all(isinstance(s, VideoFileSource) and s.num_frames == 8 for s in sources)
    assert [frame_number(f) for f in sources[1].read([7, 1])] == [88, 13]

    frames = save_frames(tmp_path / "lists" / "frames" / "seq", 4)
    listing = tmp_path / "lists" / "train.txt"
    listing.write_text(
        "# training videos\n"
        "../vids/counter.mp4\n"
        "\n"
        f"{frames}\n"
        "frames/seq\n"  # same folder again, relative: deduplicated
        "missing/clip.mp4\n",
        encoding="utf-8",
    )
    sources, warned = discover(listing)
    assert [(type(s).__name__, s.num_frames) for s in sources] == [
        ("VideoFileSource", 8),
        ("FrameFolderSource", 4),
    ]
    assert len(warned) == 1
    assert "missing/clip.mp4: skipped: no such file or directory (listed in" in warned[0]
    assert str(listing) in warned[0]


def test_bad_entries_warn_once_each_naming_the_file(videos, tmp_path):
    root = tmp_path / "mixed"
    save_frames(root / "good", 3)
    save_frames(root / "single", 1)
    root.mkdir(exist_ok=True)
    for key in ("empty", "audio", "garbage", "truncated_mp4", "short", "mp4"):
        shutil.copy(videos[key], root / videos[key].name)
    sources, warned = discover(root)
    assert sorted(s.name for s in sources) == ["counter.mp4", "good"]
    assert len(warned) == 6
    expect = {
        "empty.mp4": "video file is empty (0 bytes)",
        "audio_only.mp4": "no video stream",
        "garbage.mkv": "not a readable video",
        "truncated_mp4.mp4": "not a readable video",
        "short.mp4": "only 1 frame(s) at 2 fps, 0.40s long; need at least 2 frames",
        "single": "only 1 frame image(s); need at least 2 frames",
    }
    for name, reason in expect.items():
        hits = [w for w in warned if str(root / name) in w]
        assert len(hits) == 1, (name, warned)
        assert reason in hits[0]


def test_nothing_usable_is_an_error(videos, tmp_path):
    root = tmp_path / "bad"
    save_frames(root / "one", 1)
    shutil.copy(videos["empty"], root / "empty.mp4")
    with pytest.warns(DataWarning), pytest.raises(VideorepError) as err:
        discover_sources([root, tmp_path / "nowhere"])
    text = str(err.value)
    assert "no usable training video or frame folder" in text
    assert str(root) in text and str(tmp_path / "nowhere") in text
    with pytest.warns(DataWarning, match="one: skipped"), pytest.raises(VideorepError):
        discover_sources(tmp_path / "bad" / "one", min_frames=5)


def test_image_modes_and_odd_sizes(tmp_path):
    folder = tmp_path / "modes"
    folder.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (77, 101, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    Image.fromarray(gray, "L").save(folder / "00000.png")
    sixteen = Image.fromarray(gray.astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    sixteen.save(folder / "00001.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "00002.jpg", quality=100)
    Image.fromarray(rgb).save(folder / "00003.png")
    (source,) = discover(folder)[0]
    frames = source.read([0, 1, 2, 3])
    assert all(f.shape == (77, 101, 3) and f.dtype == np.uint8 for f in frames)
    np.testing.assert_array_equal(frames[0], np.repeat(gray[..., None], 3, 2))
    np.testing.assert_array_equal(frames[1], frames[0])  # 16-bit scaled to 8 bits exactly
    assert np.abs(frames[2].astype(int) - rgb).mean() < 8  # CMYK JPEG, lossy
    np.testing.assert_array_equal(frames[3], rgb)


def test_non_ascii_paths(videos, tmp_path):
    root = tmp_path / "données vidéo"
    save_frames(root / "séquence_猫", 3)
    shutil.copy(videos["mp4"], root / "клип.mp4")
    sources, warned = discover(root)
    assert warned == []
    assert [(s.name, s.num_frames) for s in sources] == [("séquence_猫", 3), ("клип.mp4", 8)]
    assert frame_number(sources[1].read([2])[0]) == 25
    with pytest.raises(VideorepError, match="клип.mp4: frame index 8 out of range"):
        sources[1].read([8])
