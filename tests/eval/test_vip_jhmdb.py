"""VIP and JHMDB evaluation end to end on generated stick-figure datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_layouts import ColourEncoder, make_jhmdb, make_vip, stick_figure

from videorep.eval.core import FeatureExtractor
from videorep.eval.jhmdb import heatmaps_to_joints, joints_to_heatmaps, run_jhmdb
from videorep.eval.metrics import pck, pck_distances
from videorep.eval.propagation import PropagationConfig, resolve_config
from videorep.eval.vip import run_vip


def test_vip_end_to_end(tmp_path):
    root = make_vip(tmp_path / "VIP", videos=("v1", "v2"), n_frames=7, every=3)
    ex = FeatureExtractor(ColourEncoder(patch_size=4), (96, 112))
    out = tmp_path / "out"
    rep = run_vip(root, ex, resolve_config("dino-paper-params", "vip"), out, log=lambda s: None)
    per = rep["per_sequence"]
    assert [r["scored_frames"] for r in per] == [2, 2]  # frames 3 and 6 (frame 0 seeds)
    assert sorted(p.name for p in (out / "v1").glob("*.png")) == ["001003.png", "001006.png"]
    # the summed confusion matrix covers exactly the scored pixels
    assert np.asarray(per[0]["confusion"]).sum() == 2 * 96 * 112
    assert 0.3 < rep["mIoU"] <= 1.0
    assert json.loads((out / "results.json").read_text())["settings"]["propagation"]["topk"] == 10


def test_heatmap_roundtrip_at_feature_resolution():
    joints = np.array([[3.5, 3.5], [27.5, 11.5], [100.0, 50.0]])
    maps = joints_to_heatmaps(joints, (64, 128), (8, 16), sigma=1.0)
    assert maps.shape == (3, 8, 16)
    back = heatmaps_to_joints(maps, (64, 128))
    np.testing.assert_allclose(back[:2], joints[:2])  # cell centres map back exactly
    assert np.abs(back[2] - joints[2]).max() <= 4.0  # otherwise within half a cell


def test_jhmdb_end_to_end(tmp_path):
    root = make_jhmdb(tmp_path / "JHMDB", videos=("wave/a", "walk/b"), n_frames=5)
    ex = FeatureExtractor(ColourEncoder(patch_size=4), (96, 112))
    assert ex.grid == (24, 28)  # derived from the encoder's patch size
    out = tmp_path / "out"
    rep = run_jhmdb(root, ex, PropagationConfig(7, 20, 20, 0.1), out, log=lambda s: None)
    r0 = rep["per_sequence"][0]
    assert r0["sequence"] == "walk/b" and len(r0["normalised_errors"]) == 4
    # results.json numbers are the PCK of the saved predictions against the generated joints
    gt = np.stack([stick_figure(t)[2] for t in range(5)])
    pred = np.asarray(r0["pred_joints"])
    np.testing.assert_allclose(pred[0], gt[0])
    d = pck_distances(pred[1:], gt[1:])
    assert r0["PCK@0.2"] == pytest.approx(pck(d, 0.2))
    assert rep["PCK@0.1"] <= rep["PCK@0.2"]
    assert rep["PCK@0.2"] > 0.5  # the coloured limbs carry the joints along
