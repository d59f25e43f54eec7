"""Parity checks against the official davis2017-evaluation semi-supervised scorer.

Known answers are derived by hand from the official algorithm's definition (not its code):

* GT annotations: pixels equal to 255 are set to 0 (background) when the annotations are read,
  and the semi-supervised path passes no void mask to J or F. Void pixels are therefore scored
  as plain background (a prediction covering them is a false positive), not left out.
* F: boundary pixels of a ``s x s`` square away from the image border form a ring of
  ``4 * s`` pixels; the tolerance is ``ceil(0.008 * diagonal)`` and the dilation uses the disk
  ``x^2 + y^2 <= r^2``.
* Decay: bin edges ``round(linspace(1, n, 5) + 1e-10) - 1`` with inclusive right ends (the bins
  overlap); not ``np.array_split``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from videorep.data.davis import davis_palette, load_sequence
from videorep.eval.davis import score_sequence
from videorep.eval.metrics import boundary_f, boundary_radius, db_statistics, seg2bmap

H, W = 64, 64  # diagonal 90.5 -> tolerance ceil(0.724) = 1 pixel


def _png(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(davis_palette())
    im.save(path)


def _sequence_with_void(root):
    """3 frames, one object (20x20 square at 10..30), a 10x10 void block at 40..50 in frame 1."""
    name = "voidseq"
    for t in range(3):
        lab = np.zeros((H, W), np.uint8)
        lab[10:30, 10:30] = 1
        if t == 1:
            lab[40:50, 40:50] = 255
        _png(root / "Annotations" / "480p" / name / f"{t:05d}.png", lab)
        img_dir = root / "JPEGImages" / "480p" / name
        img_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(img_dir / f"{t:05d}.jpg")
    split = root / "ImageSets" / "2017" / "val.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text(name + "\n")
    return name


def test_gt_void_pixels_are_background_in_semi_supervised_scoring(tmp_path):
    """The official semi-supervised scorer scores void pixels as background (our default);
    ``void="exclude"`` leaves them out, and the same prediction is then perfect."""
    root = tmp_path / "DAVIS"
    name = _sequence_with_void(root)
    seq = load_sequence(root, name, 2017)
    pred_dir = tmp_path / "pred"
    for t in range(3):
        pred = np.zeros((H, W), np.uint8)
        pred[10:30, 10:30] = 1
        if t == 1:
            pred[40:50, 40:50] = 1  # the prediction also covers the void block
        _png(pred_dir / f"{t:05d}.png", pred)
    res = score_sequence(seq, pred_dir)
    # Only frame 1 is scored. Official: void -> background, so
    #   J = 400 / (400 + 100) = 0.8
    #   F: GT ring 80 px, predicted rings 80 + 40 px, far apart -> P = 80/120, R = 1, F = 0.8
    assert res["J_frames"][0] == [pytest.approx(0.8)]
    assert res["F_frames"][0] == [pytest.approx(0.8)]
    assert res["objects"][0]["J_mean"] == pytest.approx(0.8)
    excluded = score_sequence(seq, pred_dir, void="exclude")
    assert excluded["J_frames"][0] == [1.0] and excluded["F_frames"][0] == [1.0]


def test_square_boundary_ring_and_radius():
    m = np.zeros((H, W), bool)
    m[10:30, 10:30] = True
    assert int(seg2bmap(m).sum()) == 80
    assert boundary_radius((480, 854)) == 8.0
    assert boundary_radius((H, W)) == 1.0


def test_edt_dilation_equals_disk_footprint_dilation():
    """Our EDT-based match equals dilation with the disk footprint x^2 + y^2 <= r^2."""
    rng = np.random.default_rng(0)
    gt = ndimage.gaussian_filter(rng.random((120, 160)), 4) > 0.5
    pred = ndimage.gaussian_filter(rng.random((120, 160)), 4) > 0.5
    r = int(boundary_radius(gt.shape))  # ceil(0.008 * 200) = 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = xx**2 + yy**2 <= r**2
    gb, pb = seg2bmap(gt), seg2bmap(pred)
    assert pb.sum() > 100 and gb.sum() > 100
    prec = (pb & ndimage.binary_dilation(gb, disk)).sum() / pb.sum()
    rec = (gb & ndimage.binary_dilation(pb, disk)).sum() / gb.sum()
    assert boundary_f(gt, pred) == pytest.approx(2 * prec * rec / (prec + rec))


def test_decay_uses_overlapping_rounded_bins():
    # n = 6: edges 0, 1, 3, 4, 5 -> first bin [v0, v1], last bin [v4, v5]
    mean, recall, decay = db_statistics([1, 1, 1, 1, 0.5, 0])
    assert decay == pytest.approx(1 - 0.25)  # np.array_split would give 1.0
    assert recall == pytest.approx(4 / 6)
    assert mean == pytest.approx(4.5 / 6)
