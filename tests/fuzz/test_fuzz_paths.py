"""Awkward paths for every reader: names over 255 bytes, paths over PATH_MAX, non-UTF-8 names,
deep folders, a folder or a FIFO where a file is expected. A valid file under an odd (but legal)
name loads; anything else is one error naming the path, within the time limit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fuzzlib import CASE_SECONDS, time_limit

from videorep.errors import VideorepError


def readers(s: dict) -> dict:
    from videorep.backbones import load_encoder
    from videorep.data.davis import read_annotation, read_split
    from videorep.data.images import load_image
    from videorep.data.jhmdb import load_joints
    from videorep.data.video import probe_video
    from videorep.data.vip import read_part_labels
    from videorep.train.checkpoint import load_checkpoint

    return {
        "mp4": (s["mp4"], probe_video),
        "webm": (s["webm"], probe_video),
        "jpg": (s["jpg"], load_image),
        "png": (s["png"], load_image),
        "annotation png": (s["annotation"], lambda p: read_annotation(p, 2017)),
        "vip annotation": (s["vip_annotation"], read_part_labels),
        "split .txt": (s["davis_split"], read_split),
        "joints .mat": (s["mat"], load_joints),
        "checkpoint.pt": (s["checkpoint"], load_checkpoint),
        "safetensors": (
            s["encoder_safetensors"],
            lambda p: load_encoder("random_vit_tiny16", checkpoint=p),
        ),
    }


NAMES = sorted(
    ["mp4", "webm", "jpg", "png", "annotation png", "vip annotation", "split .txt"]
    + ["joints .mat", "checkpoint.pt", "safetensors"]
)


def expect_error(fn, path: Path) -> str:  # noqa: ANN001
    with time_limit(CASE_SECONDS), pytest.raises(VideorepError) as err:
        fn(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message, message
    return message


@pytest.mark.parametrize("name", NAMES)
def test_odd_paths(name, seeds, tmp_path) -> None:
    seed, fn = readers(seeds)[name]
    ext = seed.suffix
    # a name longer than 255 bytes (the OS refuses to create it) and a path over PATH_MAX
    expect_error(fn, tmp_path / ("n" * 300 + ext))
    expect_error(fn, tmp_path.joinpath(*["d" * 200] * 25, "x" + ext))
    # a folder, and a FIFO (opening it would block), behind the right extension
    (tmp_path / f"folder{ext}").mkdir()
    expect_error(fn, tmp_path / f"folder{ext}")
    os.mkfifo(tmp_path / f"pipe{ext}")
    expect_error(fn, tmp_path / f"pipe{ext}")
    # a non-UTF-8 name and a deep (legal) path: the valid file loads, a damaged copy is named
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9-\xff" + ext.encode()))
    deep = tmp_path.joinpath(*["deep"] * 60, "f" + ext)
    deep.parent.mkdir(parents=True)
    for path in (odd, deep):
        shutil.copy(seed, path)
        with time_limit(CASE_SECONDS):
            assert fn(path) is not None
        path.write_bytes(b"\xff\xfe\x00\x01 not a " + ext.encode() + b" file \x80" * 40)
        expect_error(fn, path)
