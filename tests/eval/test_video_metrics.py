"""Retrieval (Eq. 43-44), kNN, the linear probe sweep and chiral probes on hand-made features."""

from __future__ import annotations

import math

import pytest
import torch

from videorep.errors import VideorepError
from videorep.eval.video_metrics import (
    average_precision,
    chiral_pairs_accuracy,
    knn_accuracy,
    knn_scores,
    probe_with_sweep,
    retrieval_metrics,
    stratified_holdout,
    topk_accuracy,
)
from videorep.methods.bodvcl.probe import linear_probe


def _circle(degrees):
    a = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], dim=1)


def test_average_precision_hand_computed():
    assert average_precision(torch.tensor([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(torch.tensor([0, 1, 1, 0])) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert average_precision(torch.tensor([0, 0, 1])) == pytest.approx(1 / 3)
    with pytest.raises(VideorepError):
        average_precision(torch.tensor([0, 0]))


def test_retrieval_hand_made_rankings():
    x = _circle([0, 10, 90, 100])
    # labels 0,1,0,1: rankings (by angle) give APs 1/2, 1/3, 1/3, 1/2 and first positives at
    # ranks 2, 3, 3, 2
    m = retrieval_metrics(x, torch.tensor([0, 1, 0, 1]), ks=(1, 2, 3))
    assert m["mAP"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 3 + 1 / 2) / 4)
    assert (m["R@1"], m["R@2"], m["R@3"]) == (0.0, 0.5, 1.0)
    assert m["queries"] == 4 and m["queries_without_positive"] == 0
    # labels 0,0,1,1: every nearest neighbour is a positive
    m = retrieval_metrics(x, torch.tensor([0, 0, 1, 1]), ks=(1,))
    assert m["mAP"] == pytest.approx(1.0) and m["R@1"] == 1.0
    # scale does not matter (cosine), and a singleton class is left out of the average
    m = retrieval_metrics(
        torch.cat([x * 3, _circle([200])]), torch.tensor([0, 1, 0, 1, 2]), ks=(1, 2, 3)
    )
    assert m["queries"] == 4 and m["queries_without_positive"] == 1
    assert m["mAP"] == pytest.approx(5 / 12)


def test_retrieval_chunks_agree():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=g), torch.randint(0, 4, (50,), generator=g)
    assert retrieval_metrics(x, y, chunk=7) == pytest.approx(retrieval_metrics(x, y, chunk=1000))


def test_knn_temperature_weighted_votes():
    train = _circle([60, 60, 25]).float()  # sims to the query at 0 deg: 0.5, 0.5, 0.906
    labels = torch.tensor([0, 0, 1])
    query = _circle([0]).float()
    votes = knn_scores(train, labels, query, num_classes=2, k=3, temperature=0.07)
    assert votes[0, 0] == pytest.approx(2 * math.exp(0.5 / 0.07), rel=1e-4)
    assert votes[0, 1] == pytest.approx(math.exp(math.cos(math.radians(25)) / 0.07), rel=1e-4)
    assert votes.argmax().item() == 1  # the close neighbour outvotes the majority
    # with a high temperature the majority wins
    assert knn_scores(train, labels, query, 2, k=3, temperature=100.0).argmax().item() == 0


def test_knn_on_clustered_features():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 16, generator=g) * 4
    y = torch.arange(5).repeat_interleave(30)
    x = centres[y] + 0.3 * torch.randn(150, 16, generator=g)
    tr, te = torch.arange(150) % 3 != 0, torch.arange(150) % 3 == 0
    acc = knn_accuracy(x[tr], y[tr], x[te], y[te], num_classes=5)
    assert acc == {"top1": 1.0, "top5": 1.0}
    # random labels: about chance
    yr = torch.randint(0, 5, (150,), generator=g)
    assert knn_accuracy(x[tr], yr[tr], x[te], yr[te], 5)["top1"] < 0.5


def test_linear_probe_separable_features_reach_100():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(600, 12, generator=g)
    w = torch.randn(12, 4, generator=g)
    y = (x @ w).argmax(1)
    margin = (x @ w).topk(2, dim=1).values
    keep = (margin[:, 0] - margin[:, 1]) > 2.0  # a margin: linearly separable with room
    x, y = x[keep], y[keep]
    n = len(x) * 2 // 3
    out = probe_with_sweep(linear_probe, x[:n], y[:n], x[n:], y[n:], weight_decays=(1e-4, 1e-2))
    assert out["top1"] == 1.0 and out["top5"] == 1.0
    assert set(out["holdout_top1"]) == {"0.0001", "0.01"}
    assert out["weight_decay"] in (1e-4, 1e-2)


def test_sweep_picks_by_held_out_accuracy():
    calls = []

    def fake_fit(tx, ty, vx, vy, weight_decay):
        calls.append((len(tx), len(vx), weight_decay))
        return {"top1": {0.1: 0.9, 1.0: 0.5}.get(weight_decay, 0.7), "top5": 1.0}

    y = torch.arange(4).repeat_interleave(10)
    x = torch.zeros(40, 3)
    out = probe_with_sweep(fake_fit, x, y, x[:5], y[:5], weight_decays=(0.01, 0.1, 1.0))
    assert out["weight_decay"] == 0.1 and out["top1"] == 0.9
    assert calls[:3] == [(32, 8, 0.01), (32, 8, 0.1), (32, 8, 1.0)]  # 20 % of each class held out
    assert calls[3] == (40, 5, 0.1)  # refit on the whole training split


def test_stratified_holdout_keeps_every_class():
    y = torch.tensor([0] * 10 + [1] * 3 + [2])
    fit, held = stratified_holdout(y, 0.2)
    assert sorted(y[held].tolist()) == [0, 0, 1]
    assert set(y[fit].tolist()) == {0, 1, 2}
    assert len(set(fit.tolist()) | set(held.tolist())) == 14


def test_topk_accuracy():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    assert topk_accuracy(scores, torch.tensor([1, 1, 0]), (1, 2)) == {
        "top1": pytest.approx(1 / 3),
        "top2": pytest.approx(2 / 3),
    }


def test_chiral_pairs_identical_features_are_at_chance():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(20, 8, generator=g)
    # pair (0, 1): class 1 = the same features (time reversal invisible): chance
    # pair (2, 3): class 3 shifted: separable
    x = torch.cat([base, base, base, base + 5.0])
    y = torch.arange(4).repeat_interleave(20)
    tr = (torch.arange(80) % 20) < 14
    out = chiral_pairs_accuracy(linear_probe, x[tr], y[tr], x[~tr], y[~tr], [(0, 1), (2, 3)])
    assert out["pairs"][0]["accuracy"] == pytest.approx(0.5)
    assert out["pairs"][1]["accuracy"] == 1.0
    assert out["accuracy"] == pytest.approx(0.75)
    with pytest.raises(VideorepError, match="no training video"):
        chiral_pairs_accuracy(linear_probe, x[tr], y[tr], x[~tr], y[~tr], [(0, 7)])
