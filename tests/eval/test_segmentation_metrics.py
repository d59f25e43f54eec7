"""Eq. 39-42 on hand-made segmentations; every expected number is worked out in the docstrings."""

from __future__ import annotations

import pytest

from videorep.errors import VideorepError
from videorep.eval.segmentation import (
    edit_score,
    f1_counts,
    f1_from_counts,
    frame_accuracy,
    levenshtein,
    segment_iou,
    segmentation_scores,
    segments,
)

# video 1 (10 frames)
GT1 = list("aaabbbcccc")  # segments a[0,3) b[3,6) c[6,10)
PRED1 = list("abbbbbccaa")  # segments a[0,1) b[1,6) c[6,8) a[8,10)
# video 2 (4 frames)
GT2 = list("aaaa")  # a[0,4)
PRED2 = list("aaba")  # a[0,2) b[2,3) a[3,4)


def test_segments_and_levenshtein() -> None:
    assert segments(PRED1) == [(0, 1, "a"), (1, 6, "b"), (6, 8, "c"), (8, 10, "a")]
    assert segments(list("SaaSbb"), background=["S"]) == [(1, 3, "a"), (4, 6, "b")]
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein([], list("abc")) == 3


def test_iou_eq41() -> None:
    # [1,6) vs [3,6): shared 3 frames, span 5 -> 0.6; disjoint -> 0
    assert segment_iou((1, 6), (3, 6)) == pytest.approx(0.6)
    assert segment_iou((8, 10), (0, 3)) == 0.0


def test_video1_by_hand() -> None:
    """Acc: frames 0, 3-7 right (6 of 10) -> 60.
    Edit: C(pred) = a b c a, C(gt) = a b c: one deletion, max length 4 -> 1 - 1/4 = 75.
    IoUs with the same-class ground truth: a[0,1)/a[0,3) = 1/3, b[1,6)/b[3,6) = 3/5,
    c[6,8)/c[6,10) = 2/4, a[8,10)/a[0,3) = 0.
    k=0.10 and 0.25: a, b, c hit (TP 3), the last a misses (FP 1), FN 0:
    P = 3/4, R = 1, F1 = 2 (3/4) / (7/4) = 6/7 = 85.714...
    k=0.50: a (1/3) misses, b (0.6) and c (0.5, the threshold itself counts) hit: TP 2, FP 2,
    FN 1 (gt a): P = 1/2, R = 2/3, F1 = (2/3) / (7/6) = 4/7 = 57.142...
    """
    assert frame_accuracy(PRED1, GT1) == pytest.approx(60.0)
    assert edit_score(PRED1, GT1) == pytest.approx(75.0)
    assert f1_counts(PRED1, GT1, 0.10) == (3, 1, 0)
    assert f1_counts(PRED1, GT1, 0.25) == (3, 1, 0)
    assert f1_counts(PRED1, GT1, 0.50) == (2, 2, 1)
    assert f1_from_counts(3, 1, 0) == pytest.approx(100 * 6 / 7)
    assert f1_from_counts(2, 2, 1) == pytest.approx(100 * 4 / 7)


def test_video2_unique_matching() -> None:
    """a[0,2) matches gt a[0,4) (IoU 1/2); b has no gt of its class (FP); a[3,4) would match the
    same gt segment (IoU 1/4) but it is taken: FP. TP 1, FP 2, FN 0: P = 1/3, R = 1,
    F1 = (2/3) / (4/3) = 50. Edit: a b a vs a: Lev 2, max 3 -> 100/3. Acc 3/4."""
    assert f1_counts(PRED2, GT2, 0.10) == (1, 2, 0)
    assert f1_counts(PRED2, GT2, 0.50) == (1, 2, 0)
    assert f1_from_counts(1, 2, 0) == pytest.approx(50.0)
    assert edit_score(PRED2, GT2) == pytest.approx(100 / 3)
    assert frame_accuracy(PRED2, GT2) == pytest.approx(75.0)


def test_background_is_left_out_of_edit_and_f1() -> None:
    """gt S a a S b b, pred S a a b b b (S background). Without S: a b vs a b -> Edit 100;
    a[1,3) IoU 1, b[3,6)/b[4,6) IoU 2/3 -> F1@0.5 = 100. With S kept: S a S b vs S a b: Lev 1,
    max 4 -> Edit 75. Acc counts every frame: frame 3 wrong -> 5/6."""
    gt, pred = list("SaaSbb"), list("Saabbb")
    assert edit_score(pred, gt, background=["S"]) == pytest.approx(100.0)
    assert edit_score(pred, gt) == pytest.approx(75.0)
    assert f1_from_counts(*f1_counts(pred, gt, 0.5, background=["S"])) == pytest.approx(100.0)
    assert frame_accuracy(pred, gt) == pytest.approx(500 / 6)


def test_test_set_aggregation_as_ms_tcn() -> None:
    """Acc frame-weighted: (6 + 3) / 14. Edit: mean of 75 and 100/3 = 54.1666...
    F1@0.50 from summed counts (2+1, 2+2, 1+0) = (3, 4, 1): P = 3/7, R = 3/4,
    F1 = 2 (9/28) / (33/28) = 18/33 = 54.5454... (the mean of per-video F1 would be 53.57).
    F1@0.10: (4, 3, 0): P = 4/7, R = 1, F1 = (8/7) / (11/7) = 8/11 = 72.7272..."""
    s = segmentation_scores([PRED1, PRED2], [GT1, GT2])
    assert s.acc == pytest.approx(100 * 9 / 14)
    assert s.edit == pytest.approx((75 + 100 / 3) / 2)
    assert s.f1[0.50] == pytest.approx(100 * 18 / 33)
    assert s.f1[0.10] == pytest.approx(100 * 8 / 11)
    assert (s.videos, s.frames) == (2, 14)
    d = s.as_dict()
    assert set(d) == {"acc", "edit", "f1@0.10", "f1@0.25", "f1@0.50"}


def test_perfect_and_errors() -> None:
    s = segmentation_scores([GT1], [GT1])
    assert (s.acc, s.edit, s.f1[0.5]) == (100.0, 100.0, 100.0)
    with pytest.raises(VideorepError, match="9 frames but the ground truth has 10"):
        frame_accuracy(GT1[:9], GT1)
    with pytest.raises(VideorepError, match="IoU threshold"):
        f1_counts(GT1, GT1, 0.0)
    with pytest.raises(VideorepError, match="no video"):
        segmentation_scores([], [])
