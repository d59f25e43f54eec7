"""The trade-off metrics (Eq. 47-55) against hand-computed cases and a direct loop implementation."""

from __future__ import annotations

import math

import pytest
import torch

from videorep.analysis.tradeoff import (
    PAPER_GAMMA,
    TradeoffMetrics,
    cycle_accuracy,
    cycle_pair_indices,
    frame_pairs,
    gamma_from,
    inter_video_distance,
    intra_video_distance,
    margin,
    sample_frame_indices,
    tradeoff_metrics,
)
from videorep.errors import VideorepError


def direct_paper_metrics(videos, pairs_mode):
    """Eq. 47-53 written as plain loops over videos, pairs, frames and patches."""
    m = len(videos)
    mids = [v[v.shape[0] // 2] for v in videos]
    n = mids[0].shape[0]

    def d(x, y):
        return sum(float(torch.linalg.norm(x[i] - y[i])) for i in range(n)) / n

    pair_d = [d(mids[u], mids[v]) for u in range(m) for v in range(u + 1, m)]
    inter_ori = sum(pair_d) / len(pair_d)
    centre = [sum(mids[k][i] for k in range(m)) / m for i in range(n)]
    r = [
        sum(float(torch.linalg.norm(mids[u][i] - centre[i])) for i in range(n)) / n
        for u in range(m)
    ]
    d_inter = inter_ori / (2 * max(r))
    intra = []
    intra_ori = []
    for v in videos:
        pairs = frame_pairs(v.shape[0], pairs_mode)
        ori = sum(d(v[a], v[b]) for a, b in pairs) / len(pairs)
        used = sorted({t for p in pairs for t in p})
        zbar = [sum(v[t][i] for t in used) / len(used) for i in range(n)]
        radius = max(
            sum(float(torch.linalg.norm(v[t][i] - zbar[i])) for i in range(n)) / n for t in used
        )
        intra.append(ori / (2 * radius))
        intra_ori.append(ori)
    return d_inter, inter_ori, sum(intra) / m, sum(intra_ori) / m


@pytest.mark.parametrize("pairs_mode", ["authors", "adjacent", "all", "middle"])
def test_paper_protocol_matches_the_direct_loops(pairs_mode: str) -> None:
    g = torch.Generator().manual_seed(0)
    videos = [torch.randn(t, 4, 3, generator=g, dtype=torch.float64) for t in (9, 10, 12)]
    got = tradeoff_metrics(videos, (2, 2), pairs=pairs_mode, pool=1)
    d_inter, inter_ori, d_intra, intra_ori = direct_paper_metrics(videos, pairs_mode)
    assert got.d_inter == pytest.approx(d_inter, rel=1e-9)
    assert got.d_inter_ori == pytest.approx(inter_ori, rel=1e-9)
    assert got.d_intra == pytest.approx(d_intra, rel=1e-9)
    assert got.d_intra_ori == pytest.approx(intra_ori, rel=1e-9)


def test_identical_frames_give_zero_intra_distance_and_full_cycle_accuracy() -> None:
    g = torch.Generator().manual_seed(1)
    frame = torch.randn(16, 8, generator=g)  # 4x4 grid of distinct tokens
    video = frame.expand(10, -1, -1).clone()
    other = torch.randn(10, 16, 8, generator=g)
    result = tradeoff_metrics([video, other], (4, 4), pool=1, l2=True)
    assert result.per_video[0]["d_intra"] == 0.0
    assert result.per_video[0]["d_intra_ori"] == 0.0
    assert result.per_video[0]["cycle_acc"] == 1.0
    # equal-norm tokens (LayerNorm-like): the raw dot-product walk of the script goes home too
    unit = torch.nn.functional.normalize(frame, dim=-1) * 3.0
    assert cycle_accuracy(unit.expand(10, -1, -1), (4, 4), pool=2) == 1.0


def test_two_constant_videos_by_hand() -> None:
    # video 1: every token (3, 0); video 2: every token (0, 4). ||p - q|| = 5.
    p = torch.tensor([3.0, 0.0]).expand(6, 4, 2)
    q = torch.tensor([0.0, 4.0]).expand(6, 4, 2)
    for protocol in ("paper", "script"):
        r = tradeoff_metrics([p, q], (2, 2), protocol=protocol, pool=1)
        assert r.d_inter_ori == pytest.approx(5.0)
        assert r.r_inter == pytest.approx(2.5)  # centre (1.5, 2), each video 2.5 away
        assert r.d_inter == pytest.approx(1.0, abs=1e-6)  # 5 / (2 * 2.5)
        assert r.d_intra == 0.0 and r.d_intra_ori == 0.0
    # three constant videos on a line: 0, 1, 3 (D = 1). d = 1, 3, 2 -> D_ori = 2;
    # centre 4/3, distances 4/3, 1/3, 5/3 -> R = 5/3, D_inter = 2 / (10/3) = 0.6
    vids = [torch.full((5, 4, 1), x) for x in (0.0, 1.0, 3.0)]
    r = tradeoff_metrics(vids, (2, 2), pool=1)
    assert r.d_inter_ori == pytest.approx(2.0)
    assert r.d_inter == pytest.approx(0.6, abs=1e-6)
    # per video: mean distance to the others / (2R): (1+3)/2, (1+2)/2, (3+2)/2 over 10/3
    assert r.per_video[0]["d_inter"] == pytest.approx(0.6, abs=1e-6)
    assert r.per_video[1]["d_inter"] == pytest.approx(0.45, abs=1e-6)
    assert r.per_video[2]["d_inter"] == pytest.approx(0.75, abs=1e-6)


def test_intra_distance_by_hand() -> None:
    # one patch, one channel, frames 0, 1, 4, all pairs: distances 1, 4, 3 -> 8/3;
    # mean 5/3, distances to it 5/3, 2/3, 7/3 -> R = 7/3; D_intra = (8/3) / (14/3) = 4/7
    video = torch.tensor([0.0, 1.0, 4.0]).reshape(3, 1, 1)
    r = intra_video_distance(video, frame_pairs(3, "all"))
    assert r.ori == pytest.approx(8 / 3)
    assert r.radius == pytest.approx(7 / 3)
    assert r.normalized == pytest.approx(4 / 7, abs=1e-7)


def test_script_protocol_matches_patches_by_nearest_neighbour() -> None:
    # frame 1 holds frame 0's two patches swapped: same index 10 apart, nearest match 0
    video = torch.tensor([[[0.0], [10.0]], [[10.0], [0.0]]])
    assert intra_video_distance(video, [(0, 1)], "paper").ori == pytest.approx(10.0)
    assert intra_video_distance(video, [(0, 1)], "script").ori == pytest.approx(0.0)
    # script radius: one centre (5) for all patches of all frames -> 5
    assert intra_video_distance(video, [(0, 1)], "script").radius == pytest.approx(5.0)


def test_script_inter_samples_eight_patches() -> None:
    g = torch.Generator().manual_seed(2)
    mids = torch.randn(3, 20, 4, generator=g)
    a = inter_video_distance(mids, "script")
    b = inter_video_distance(mids, "script")
    assert a == b  # fixed seed (42), as in the script
    keep = torch.randperm(20, generator=torch.Generator().manual_seed(42))[:8]
    sub = mids[:, keep].double()
    d01 = (sub[0] - sub[1]).norm(dim=-1).mean()
    d02 = (sub[0] - sub[2]).norm(dim=-1).mean()
    d12 = (sub[1] - sub[2]).norm(dim=-1).mean()
    assert a.ori == pytest.approx(float(d01 + d02 + d12) / 3)


def test_cycle_accuracy_of_a_constant_frame_is_one_over_n() -> None:
    # frame b constant: every walk a -> b -> a lands on the same patch, so 1 of N goes home
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 6, generator=g)
    b = torch.ones(4, 6)
    video = torch.stack([a, b])
    assert cycle_accuracy(video, (2, 2), pairs=[(0, 1)], pool=1, l2=True) == 0.25
    # a permutation of the patches of b does not change the walk
    perm = torch.stack([a, a[torch.tensor([2, 0, 3, 1])]])
    assert cycle_accuracy(perm, (2, 2), pairs=[(0, 1)], pool=1, l2=True) == 1.0


def test_frame_pairs_and_sampling() -> None:
    assert frame_pairs(40, "authors") == [(t, t + 1) for t in range(3, 36)]  # frames 3..36
    assert len(frame_pairs(40, "authors")) == 33  # T - 7, as in cal_metric.py
    assert frame_pairs(5, "authors") == frame_pairs(5, "adjacent")
    assert frame_pairs(4, "middle") == [(2, 0), (2, 1), (2, 3)]
    assert len(frame_pairs(5, "all")) == 10
    assert cycle_pair_indices(40) == [(10, 16), (14, 20), (18, 24), (22, 28), (26, 32)]
    assert sample_frame_indices(10, 40) == list(range(10))
    idx = sample_frame_indices(100, 40)
    assert len(idx) == 40 and idx[0] == 0 and idx[-1] == 99
    with pytest.raises(VideorepError):
        frame_pairs(10, "bogus")
    with pytest.raises(VideorepError):
        tradeoff_metrics([torch.zeros(3, 4, 2)], (2, 2))


def test_margin_reproduces_table_10() -> None:
    # Tab. 10 (DINO): D_inter, D_intra, D with gamma = 0.3, to the table's 4 decimals
    rows = [
        (0.5756, 0.2144, 0.5112),
        (0.6241, 0.2404, 0.5520),
        (0.6142, 0.2370, 0.5431),
        (0.6246, 0.2316, 0.5551),
    ]
    for inter, intra, d in rows:
        assert margin(inter, intra, PAPER_GAMMA) == pytest.approx(d, abs=1.5e-4)


def test_gamma_is_the_ratio_of_mean_unnormalised_distances() -> None:
    def result(inter_ori: float, intra_ori: float) -> TradeoffMetrics:
        return TradeoffMetrics(0.5, 0.2, 0.9, inter_ori, intra_ori, 1.0, 2, "paper", "authors")

    assert gamma_from(result(10.0, 3.0)) == pytest.approx(0.3)
    assert gamma_from([result(10.0, 3.0), result(30.0, 5.0)]) == pytest.approx(4.0 / 20.0)
    assert result(1, 1).margin(0.5) == pytest.approx(0.4)
    assert math.isfinite(result(1, 1).margin(PAPER_GAMMA))


def test_resize_center_crop_matches_torchvision_geometry() -> None:
    import numpy as np

    from videorep.analysis.features import resize_center_crop

    rgb = np.zeros((300, 500, 3), dtype=np.uint8)
    rgb[:, 250:] = 255  # right half white
    x = resize_center_crop(rgb)
    assert x.shape == (3, 224, 224)
    # short side 300 -> 256, long 500 -> 426; crop columns 101..324, the edge at 213 -> 112
    white = x[0, 100] > 0
    assert not bool(white[100]) and bool(white[124])
