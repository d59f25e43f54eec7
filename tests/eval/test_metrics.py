"""Known-answer tests of the DAVIS / VIP / JHMDB scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from videorep.eval.metrics import (
    boundary_f,
    boundary_radius,
    confusion_matrix,
    davis_summary,
    db_statistics,
    iou_per_class,
    mean_iou,
    pck,
    pck_distances,
    region_similarity,
    seg2bmap,
)


def square(shape, y0, x0, size):
    m = np.zeros(shape, bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def test_identical_masks_give_one():
    m = square((60, 80), 10, 20, 15)
    assert region_similarity(m, m) == 1.0
    assert boundary_f(m, m) == 1.0


def test_disjoint_masks_give_zero():
    a = square((60, 80), 5, 5, 10)
    b = square((60, 80), 40, 60, 10)  # far beyond the 1-pixel tolerance (diag 100 -> r=1)
    assert region_similarity(a, b) == 0.0
    assert boundary_f(a, b) == 0.0


def test_empty_masks():
    z = np.zeros((20, 20), bool)
    m = square((20, 20), 5, 5, 4)
    assert region_similarity(z, z) == 1.0
    assert boundary_f(z, z) == 1.0
    assert region_similarity(m, z) == 0.0
    assert boundary_f(m, z) == 0.0  # precision 1, recall 0 -> F 0


def test_one_pixel_shift_iou_by_hand():
    a = square((40, 40), 10, 10, 10)  # 100 pixels
    b = square((40, 40), 10, 11, 10)  # shifted right by one: overlap 10 x 9
    assert region_similarity(a, b) == pytest.approx(90 / 110)
    c = square((40, 40), 11, 11, 10)  # diagonal shift: overlap 9 x 9
    assert region_similarity(a, c) == pytest.approx(81 / (200 - 81))


def test_seg2bmap_stripe():
    seg = np.zeros((30, 30), bool)
    seg[:, :10] = True
    b = seg2bmap(seg)
    # boundary = column 9 (the last foreground column), every row, and nothing else
    assert b[:, 9].all() and b.sum() == 30


def test_boundary_f_hand_made():
    # 30x30 image: tolerance ceil(0.008 * 42.4) = 1 pixel.
    assert boundary_radius((30, 30)) == 1
    gt = np.zeros((30, 30), bool)
    gt[:, :10] = True  # boundary: column 9, 30 pixels
    one = np.zeros_like(gt)
    one[:, :11] = True  # boundary column 10: every pixel within 1 of column 9
    assert boundary_f(gt, one) == 1.0
    two = np.zeros_like(gt)
    two[:, :12] = True  # boundary column 11: 2 pixels away, no matches
    assert boundary_f(gt, two) == 0.0
    # half and half: rows 0-14 end at column 9, rows 15-29 at column 11.
    mixed = np.zeros_like(gt)
    mixed[:15, :10] = True
    mixed[15:, :12] = True
    # prediction boundary: column 9 rows 0-13 (14 px), row 14 columns 9-11 (3), column 11
    # rows 15-29 (15) = 32 px; within 1 px of column 9: rows 0-13, (14,9), (14,10) -> 16.
    # ground-truth boundary within 1 px of the prediction's: rows 0-15 of column 9 -> 16 of 30.
    p, r = 16 / 32, 16 / 30
    assert seg2bmap(mixed).sum() == 32
    assert boundary_f(gt, mixed) == pytest.approx(2 * p * r / (p + r))


def test_void_pixels_are_excluded():
    gt = square((50, 50), 10, 10, 20)
    pred = gt.copy()
    pred[35:45, 35:45] = True  # a false positive ...
    void = np.zeros_like(gt)
    void[33:47, 33:47] = True  # ... entirely inside void
    assert region_similarity(gt, pred) < 1.0
    assert region_similarity(gt, pred, void) == 1.0
    assert boundary_f(gt, pred, void) == 1.0
    # void also removes ground-truth pixels from the union
    missed = gt.copy()
    missed[10:15, 10:30] = False  # 100 pixels of 400 missed
    assert region_similarity(gt, missed) == pytest.approx(300 / 400)
    void2 = np.zeros_like(gt)
    void2[10:12, 10:30] = True  # 40 of the missed pixels are void
    assert region_similarity(gt, missed, void2) == pytest.approx(300 / 360)


def test_db_statistics_by_hand():
    values = np.arange(10) / 10.0
    mean, recall, decay = db_statistics(values)
    assert mean == pytest.approx(0.45)
    assert recall == pytest.approx(0.4)  # 0.6, 0.7, 0.8, 0.9
    # quarters from round(linspace(1, 10, 5)) - 1 = [0, 2, 5, 7, 9] (ends inclusive):
    # first [0, .1, .2] -> 0.1, last [.7, .8, .9] -> 0.8
    assert decay == pytest.approx(0.1 - 0.8)


def test_multi_object_average_is_per_object():
    objs = [
        {"J_mean": 1.0, "F_mean": 1.0},  # sequence A, one object
        {"J_mean": 0.5, "F_mean": 0.3},  # sequence B, object 1
        {"J_mean": 0.0, "F_mean": 0.1},  # sequence B, object 2
    ]
    for o in objs:
        o.update(J_recall=0, J_decay=0, F_recall=0, F_decay=0)
    s = davis_summary(objs)
    assert s["J_mean"] == pytest.approx(0.5)  # not (1 + 0.25) / 2
    assert s["F_mean"] == pytest.approx(1.4 / 3)
    assert s["JF_mean"] == pytest.approx((0.5 + 1.4 / 3) / 2)


def _blobs(seed, shape=(96, 128)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.uint8)
    for obj in (1, 2):
        cy, cx = rng.uniform(20, shape[0] - 20), rng.uniform(20, shape[1] - 20)
        ry, rx = rng.uniform(8, 25, size=2)
        out[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = obj
    return out


def test_f_against_official_dilation_formula():
    """Same F as dilating with skimage's disk via cv2, as davis2017-evaluation does."""
    cv2 = pytest.importorskip("cv2")
    disk = pytest.importorskip("skimage.morphology").disk
    for seed in range(6):
        gt, pred = _blobs(seed) == 1, _blobs(seed + 100) == 1
        pred |= np.roll(gt, (2, 3), axis=(0, 1))  # some near-miss boundaries
        r = math.ceil(0.008 * math.hypot(*gt.shape))
        bg, bp = seg2bmap(gt), seg2bmap(pred)
        k = disk(r).astype(np.uint8)
        gd = cv2.dilate(bg.astype(np.uint8), k)
        pd = cv2.dilate(bp.astype(np.uint8), k)
        prec = (bp * gd).sum() / bp.sum()
        rec = (bg * pd).sum() / bg.sum()
        expected = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
        assert boundary_f(gt, pred) == pytest.approx(expected, abs=1e-12)


def test_against_vos_benchmark_evaluator():
    """vos-benchmark (PyPI) re-implements J and F; per-frame values agree with ours."""
    pytest.importorskip("skimage")
    evaluator_mod = pytest.importorskip("vos_benchmark.evaluator")
    ev = evaluator_mod.Evaluator()
    ours_j, ours_f = {1: [], 2: []}, {1: [], 2: []}
    for seed in range(5):
        gt, pred = _blobs(seed), _blobs(seed + 7)
        pred[_blobs(seed) == 1] = 1  # object 1 close to right, object 2 mostly wrong
        ev.feed_frame(pred, gt)
        for obj in (1, 2):
            ours_j[obj].append(region_similarity(gt == obj, pred == obj))
            ours_f[obj].append(boundary_f(gt == obj, pred == obj))
    iou, bf = ev.conclude()
    for obj in (1, 2):
        assert iou[obj] == pytest.approx(100 * np.mean(ours_j[obj]), abs=1e-9)
        assert bf[obj] == pytest.approx(100 * np.mean(ours_f[obj]), abs=1e-9)


def test_miou_by_hand():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 2, 0]])
    conf = confusion_matrix(gt, pred, 3)
    assert conf.sum() == 10  # the two 255 pixels are ignored
    ious = iou_per_class(conf)
    # class 0: tp 3, fp 1 (pred 0 at (2,1)), fn 1 ((0,1)) -> 3/5; class 1: tp 4, fp 1 -> 4/5;
    # class 2: tp 1, fn 1 -> 1/2
    assert ious == pytest.approx([3 / 5, 4 / 5, 1 / 2])
    assert mean_iou(conf) == pytest.approx((3 / 5 + 4 / 5 + 1 / 2) / 3)
    assert np.isnan(iou_per_class(confusion_matrix(gt, pred, 4))[3])  # absent class -> NaN


def test_pck_by_hand():
    gt = np.zeros((1, 15, 2))
    gt[0, :, 0] = np.linspace(0, 30, 15)  # bbox 30 x 40 -> diagonal 50 -> size 0.6 * 50 = 30
    gt[0, :, 1] = np.linspace(0, 40, 15)
    pred = gt.copy()
    pred[0, :5, 0] += 2.0  # error 2 / 30 = 0.067 -> correct at 0.1
    pred[0, 5:10, 0] += 4.5  # 0.15 -> wrong at 0.1, correct at 0.2
    pred[0, 10:, 1] += 9.0  # 0.3 -> wrong at both
    d = pck_distances(pred, gt)
    assert d[0, 0] == pytest.approx(2 / 30)
    assert pck(d, 0.1) == pytest.approx(5 / 15)
    assert pck(d, 0.2) == pytest.approx(10 / 15)
