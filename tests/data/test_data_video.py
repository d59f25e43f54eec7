"""videorep.data.video: probing and frame-exact seeking with PyAV."""

from __future__ import annotations

import math
import shutil

import av
import numpy as np
import pytest
from conftest import frame_number, pattern, write_video

from videorep.data.sources import shipped_videos
from videorep.data.video import count_samples, probe_video, read_frames
from videorep.errors import VideorepError


@pytest.mark.parametrize("kind", ["mp4", "webm", "mkv", "avi"])
def test_probe_generated(videos, kind):
    info = probe_video(videos[kind])
    assert info.method == "metadata"
    assert info.duration == pytest.approx(4.0)
    assert info.native_fps == pytest.approx(25.0)
    assert info.last_frame_time == pytest.approx(3.96)
    assert info.native_frames == 100
    # sample times 0, 0.5, ..., 3.5 are <= 3.96: 8 samples at 2 fps
    assert info.num_frames == 8
    assert probe_video(videos[kind], fps=None).num_frames == 100
    assert probe_video(videos[kind], fps=10).num_frames == 40
    assert (info.width, info.height, info.rotation) == (96, 64, 0)


@pytest.mark.parametrize("kind", ["mp4", "webm", "mkv", "avi"])
def test_read_frames_returns_exact_frame(videos, kind):
    path = videos[kind]
    wanted = [57, 3, 99, 0, 50, 51, 12, 13, 11, 57, 88]  # unsorted, with a repeat
    frames = read_frames(path, [k / 25 for k in wanted])
    assert [frame_number(f) for f in frames] == wanted
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in frames)
    # the first frame with timestamp >= t: 10 ms after frame k is frame k + 1
    frames = read_frames(path, [k / 25 + 0.01 for k in range(0, 99, 7)])
    assert [frame_number(f) for f in frames] == list(range(1, 100, 7))
    # the 2 fps samples are frames 0, 12.5 -> 13, 25, ...
    info = probe_video(path)
    frames = read_frames(path, info.times(range(info.num_frames)))
    assert [frame_number(f) for f in frames] == [math.ceil(12.5 * i) for i in range(8)]


def test_read_past_end_names_file(videos):
    with pytest.raises(VideorepError, match=r"counter\.mp4: no frame at 4\.500s"):
        read_frames(videos["mp4"], [1.0, 4.5])
    assert read_frames(videos["mp4"], []) == []


def test_rotation_side_data_is_applied(videos, tmp_path):
    info = probe_video(videos["rotated"])
    assert info.rotation == 90
    assert (info.width, info.height) == (64, 96)
    upright = read_frames(videos["mp4"], [1.0, 2.0])
    rotated = read_frames(videos["rotated"], [1.0, 2.0])
    for a, b in zip(upright, rotated):
        assert b.shape == (96, 64, 3)
        # same encoder input, so the decoded pixels match once rotated counter-clockwise
        assert np.abs(np.rot90(a).astype(int) - b).max() <= 2
    clockwise = write_video(tmp_path / "cw.mp4", n=30, rotation=-90)
    assert probe_video(clockwise).rotation == -90
    (c,) = read_frames(clockwise, [0.4])
    assert np.abs(np.rot90(pattern(10), -1).astype(int) - c).max() <= 8


def test_variable_frame_rate(videos):
    # frames at 0, 40, 80, 300, 340, 1000, 1040, 1080, 2000, 2500 ms
    info = probe_video(videos["vfr"])
    assert info.last_frame_time == pytest.approx(2.5)
    assert info.num_frames == 6  # 0, 0.5, ..., 2.5 s
    frames = read_frames(videos["vfr"], info.times(range(6)))
    assert [frame_number(f) for f in frames] == [0, 5, 5, 8, 8, 9]


def test_shipped_videos_probe_and_read():
    paths = {p.name: p for p in shipped_videos()}
    assert set(paths) == {
        "bigbuckbunny.mp4",
        "bikes.mp4",
        "carphone_distorted.mp4",
        "carphone_pristine.mp4",
    }
    expected = {  # duration (s), native fps, frames at 2 fps
        "bigbuckbunny.mp4": (5.28, 25.0, 11),
        "bikes.mp4": (10.0, 25.0, 20),
        "carphone_pristine.mp4": (4.004, 30000 / 1001, 8),
    }
    for name, (duration, fps, n) in expected.items():
        info = probe_video(paths[name])
        assert info.duration == pytest.approx(duration)
        assert info.native_fps == pytest.approx(fps)
        assert info.num_frames == n == count_samples(duration - 1 / fps, 2.0)
        assert n == math.floor(2.0 * (duration - 1 / fps)) + 1
    # read_frames at the 2 fps times == the same frames from a full decode
    path = paths["carphone_pristine.mp4"]
    info = probe_video(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        full = [
            (float(f.pts * stream.time_base), f.to_ndarray(format="rgb24"))
            for f in container.decode(stream)
        ]
    assert len(full) == 120
    got = read_frames(path, info.times(range(info.num_frames)))
    for t, frame in zip(info.times(range(info.num_frames)), got):
        ref = next(img for ts, img in full if ts >= t - 1e-3)
        np.testing.assert_array_equal(frame, ref)
    assert got[0].shape == (144, 176, 3)


@pytest.mark.parametrize(
    "key, message",
    [
        ("empty", r"empty\.mp4: video file is empty \(0 bytes\)"),
        ("garbage", r"garbage\.mkv: not a readable video"),
        ("audio", r"audio_only\.mp4: no video stream \(streams: audio\)"),
        ("truncated_mp4", r"truncated_mp4\.mp4: not a readable video"),
        ("truncated_faststart", r"truncated_faststart\.mp4: truncated"),
        (
            "truncated_mkv",
            r"truncated_mkv\.mkv: truncated: metadata says the last frame is at 3\.96s",
        ),
    ],
)
def test_bad_videos_raise_naming_file(videos, key, message):
    with pytest.raises(VideorepError, match=message):
        probe_video(videos[key])


def test_missing_file(tmp_path):
    with pytest.raises(VideorepError, match=r"nope\.mp4: no such video file"):
        probe_video(tmp_path / "nope.mp4")


def test_truncated_read_names_file(videos):
    # reading past the decodable end of a truncated file is an error, not a wrong frame
    with pytest.raises(VideorepError, match=r"truncated_mkv\.mkv: no frame at 3\.500s"):
        read_frames(videos["truncated_mkv"], [0.0, 3.5])


def test_non_ascii_path(videos, tmp_path):
    target = tmp_path / "vidéos 日本" / "clip ü.mp4"
    target.parent.mkdir()
    shutil.copy(videos["mp4"], target)
    assert probe_video(target).num_frames == 8
    assert frame_number(read_frames(target, [2.0])[0]) == 50


def test_missing_duration_falls_back_to_packet_scan(tmp_path):
    # a "live" WebM has no duration in its header
    path = write_video(tmp_path / "live.webm", codec="libvpx-vp9", options={"live": "1"})
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    info = probe_video(path)
    assert info.method == "packet scan"
    assert (info.native_frames, info.num_frames) == (100, 8)
    assert info.last_frame_time == pytest.approx(3.96)
    assert info.duration == pytest.approx(4.0)
    frames = read_frames(path, info.times(range(8)))
    assert [frame_number(f) for f in frames] == [math.ceil(12.5 * i) for i in range(8)]
