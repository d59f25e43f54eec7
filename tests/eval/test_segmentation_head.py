"""The MS-TCN-style head learns a frame labelling that is a function of the frame features."""

from __future__ import annotations

import pytest
import torch

from videorep.eval.segmentation import (
    SingleStageTCN,
    TCNConfig,
    fit_tcn,
    predict_tcn,
    segmentation_scores,
    smoothing_loss,
)


def synthetic_videos(n: int, seed: int, classes: int = 3, dim: int = 8):
    """Videos of 3-5 segments of 6-14 frames; a frame's feature is its class's random mean
    plus noise (std 0.5), so the class is a (noisy) function of the frame."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 1.5
    feats, labels = [], []
    for _ in range(n):
        segs = int(torch.randint(3, 6, (1,), generator=g))
        ys = []
        for _ in range(segs):
            c = int(torch.randint(0, classes, (1,), generator=g))
            ys += [c] * int(torch.randint(6, 15, (1,), generator=g))
        y = torch.tensor(ys)
        x = means[y].T + 0.5 * torch.randn(dim, len(ys), generator=g)
        feats.append(x)
        labels.append(y)
    return feats, labels


def test_shapes_and_smoothing() -> None:
    model = SingleStageTCN(8, 3, width=16, layers=3)
    assert model(torch.zeros(2, 8, 11)).shape == (2, 3, 11)
    # constant logits over time: no change between frames, no smoothing loss
    assert float(smoothing_loss(torch.ones(1, 3, 5))) == 0.0
    assert float(smoothing_loss(torch.randn(1, 3, 5))) > 0.0


@pytest.fixture
def one_thread():
    """Small convolutions: one thread is faster than several on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_head_learns_and_loss_falls(one_thread) -> None:
    train_x, train_y = synthetic_videos(10, seed=0)
    test_x, test_y = synthetic_videos(6, seed=1)
    cfg = TCNConfig(width=16, layers=4, dropout=0.1, epochs=15, lr=1e-2, batch=5)
    torch.manual_seed(cfg.seed)  # the weights fit_tcn starts from
    untrained = SingleStageTCN(8, 3, width=16, layers=4, dropout=0.1)
    before = segmentation_scores(predict_tcn(untrained, test_x), test_y)
    model, history = fit_tcn(train_x, train_y, classes=3, config=cfg)
    assert history[-1] < 0.5 * history[0]
    scores = segmentation_scores(predict_tcn(model, test_x), test_y)
    assert scores.acc > 95.0, scores
    assert scores.f1[0.5] > 80.0, scores
    assert scores.acc > before.acc + 30
