"""DAVIS, VIP and JHMDB loaders on generated data in the released layouts, and their errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from videorep.data import davis, jhmdb, vip
from videorep.errors import VideorepError

# the generators of tests/eval/eval_layouts.py, loaded by path
_spec = importlib.util.spec_from_file_location(
    "_eval_layouts", Path(__file__).parents[1] / "eval" / "eval_layouts.py"
)
layouts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layouts)


def test_davis_loader(tmp_path):
    root = layouts.make_davis(tmp_path, n_frames=4)
    assert davis.list_sequences(root, 2017, "val") == ["squares"]
    seq = davis.load_sequence(root, "squares", 2017)
    assert seq.n_objects == 2 and seq.size == (64, 96) and seq.scored
    with pytest.raises(VideorepError, match="split file not found"):
        davis.list_sequences(root, 2017, "test-dev")
    with pytest.raises(VideorepError, match="year 2018"):
        davis.list_sequences(root, 2018, "val")


def test_vip_loader(tmp_path):
    root = layouts.make_vip(tmp_path, videos=("v1",), n_frames=7, every=3)
    assert vip.list_videos(root) == ["v1"]
    v = vip.load_video(root, "v1")
    assert len(v.frames) == 7 and sorted(v.annotations) == [0, 3, 6]
    labels = vip.read_part_labels(v.annotations[3])
    assert labels.shape == (96, 112) and 0 < labels.max() < vip.N_CLASSES


def test_vip_errors(tmp_path):
    root = layouts.make_vip(tmp_path, videos=("v1",), n_frames=4, every=3)
    ann = root / "Annotations" / "Category_ids" / "v1"
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(ann / "001003.png")
    with pytest.raises(VideorepError, match=r"001003\.png: annotation size 10x10 differs"):
        vip.load_video(root, "v1")
    Image.fromarray(np.zeros((96, 112), np.uint8), mode="L").save(ann / "009999.png")
    with pytest.raises(VideorepError, match=r"009999\.png: annotation for a frame that does not"):
        vip.load_video(root, "v1")
    (ann / "009999.png").unlink()
    (ann / "001000.png").unlink()
    with pytest.raises(VideorepError, match=r"001000\.png: the first frame must be annotated"):
        vip.load_video(root, "v1")
    bad = np.full((96, 112), 40, np.uint8)
    Image.fromarray(bad, mode="L").save(ann / "001000.png")
    with pytest.raises(VideorepError, match=r"001000\.png: class index 40 >= 20"):
        vip.read_part_labels(ann / "001000.png")
    (root / "lists" / "val_videos.txt").write_text("")
    with pytest.raises(VideorepError, match=r"val_videos\.txt: split file is empty"):
        vip.list_videos(root)


def test_jhmdb_loader(tmp_path):
    root = layouts.make_jhmdb(tmp_path, videos=("wave/a",), n_frames=4)
    assert jhmdb.list_videos(root) == ["wave/a"]
    v = jhmdb.load_video(root, "wave/a")
    assert v.joints.shape == (4, 15, 2) and v.size == (96, 112)
    np.testing.assert_allclose(v.joints[2], layouts.stick_figure(2)[2])  # 1-based -> 0-based


def test_jhmdb_errors(tmp_path):
    root = layouts.make_jhmdb(tmp_path, videos=("wave/a",), n_frames=4)
    mat = root / "joint_positions" / "wave" / "a" / "joint_positions.mat"
    scipy.io.savemat(str(mat), {"pos_img": np.zeros((2, 15, 3))})
    with pytest.raises(VideorepError, match="joints for 3 frames but .* has 4 frames"):
        jhmdb.load_video(root, "wave/a")
    scipy.io.savemat(str(mat), {"pos_img": np.zeros((2, 14, 4))})
    with pytest.raises(VideorepError, match=r"pos_img has shape \(2, 14, 4\)"):
        jhmdb.load_video(root, "wave/a")
    (root / "Rename_Images" / "wave" / "a" / "00002.png").unlink()
    with pytest.raises(VideorepError, match=r"00002\.png: missing frame"):
        jhmdb.load_video(root, "wave/a")
