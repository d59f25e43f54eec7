"""The propagation engine: exactness against a brute-force dense version, and known motion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videorep.errors import VideorepError
from videorep.eval.propagation import (
    PRESETS,
    LabelPropagator,
    PropagationConfig,
    propagate,
    resolve_config,
)


def dense_oracle(ctx_feats, ctx_labels, target, cfg):
    """Brute force: all (target, source) pairs, vectorised (hw)^2 mask; tests only."""
    n, h, w, d = ctx_feats.shape
    src = F.normalize(ctx_feats, dim=-1).reshape(n * h * w, d)
    aff = F.normalize(target, dim=-1).reshape(h * w, d) @ src.T
    if cfg.radius > 0:
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ys, xs = ys.reshape(-1), xs.reshape(-1)
        dy, dx = ys[:, None] - ys[None], xs[:, None] - xs[None]
        if cfg.window == "square":
            m = (dy.abs() <= cfg.radius) & (dx.abs() <= cfg.radius)
        else:
            m = dy**2 + dx**2 < cfg.radius**2
        aff = aff.masked_fill(~m.repeat(1, n), float("-inf"))
    vals, idx = aff.topk(cfg.topk, dim=1)
    weights = torch.softmax(vals / cfg.temperature, dim=1)
    labels = ctx_labels.permute(0, 2, 3, 1).reshape(n * h * w, -1)
    return (weights[..., None] * labels[idx]).sum(1).T.reshape(-1, h, w)


@pytest.mark.parametrize(
    "h,w,radius,window,band,queue",
    [
        (9, 13, 3, "square", None, 3),
        (9, 13, 3, "disk", None, 3),
        (13, 9, 2, "square", 1, 2),  # taller than wide: no transposition
        (10, 40, 2, "square", None, 4),  # window much narrower than the grid
        (8, 8, 0, "square", None, 3),  # unrestricted
        (9, 13, 3, "square", 2, 0),  # first frame only
        (12, 17, 4, "disk", 3, 5),
    ],
)
def test_matches_dense_oracle(h, w, radius, window, band, queue):
    torch.manual_seed(h * w + radius)
    cfg = PropagationConfig(topk=5, queue=queue, radius=radius, temperature=0.1, window=window)
    feats = torch.randn(8, h, w, 16)
    label0 = torch.rand(3, h, w)
    prop = LabelPropagator(cfg, band=band)
    prop.reset(feats[0], label0)
    history: list[tuple[torch.Tensor, torch.Tensor]] = []
    for t in range(1, 8):
        ctx = [(feats[0], label0)] + history[-queue:] if queue else [(feats[0], label0)]
        expected = dense_oracle(
            torch.stack([f for f, _ in ctx]), torch.stack([lab for _, lab in ctx]), feats[t], cfg
        )
        got = prop.step(feats[t])
        assert got.shape == (3, h, w)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        history.append((feats[t], expected))


def translating_scene(h, w, steps, speed, square_at, size):
    """One-hot 'world position' features of a scene translating right by ``speed`` patches/frame.

    Patch (y, x) of frame t shows world point (y, x - speed * t); every world point has its own
    feature dimension, so the only perfect match of a patch is the same world point.
    """
    world_w = w + speed * steps
    feats = []
    for t in range(steps + 1):
        ids = torch.arange(h)[:, None] * world_w + (torch.arange(w)[None, :] - speed * t) % world_w
        feats.append(F.one_hot(ids, h * world_w).float())
    label0 = torch.zeros(2, h, w)
    label0[0] = 1
    y0, x0 = square_at
    label0[:, y0 : y0 + size, x0 : x0 + size] = torch.tensor([0.0, 1.0])[:, None, None]
    return feats, label0


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_label_moves_with_square(preset):
    h, w, steps, speed, size = 10, 24, 8, 1, 3
    feats, label0 = translating_scene(h, w, steps, speed, (4, 2), size)
    cfg = resolve_config(preset, "davis")
    for t, soft in enumerate(propagate(feats, label0, cfg), start=1):
        expected = torch.zeros(h, w, dtype=torch.long)
        expected[4 : 4 + size, 2 + speed * t : 2 + speed * t + size] = 1
        assert torch.equal(soft.argmax(0), expected), f"frame {t}"
        # the exact match dominates: exp(1/T) against exp(0/T) for the other kept sources
        # (columns < speed * t show world points not visible in frame 0: their labels are guesses)
        assert soft.max(0).values[:, speed * t :].min() > 0.99


def test_radius_limits_reach():
    """A one-patch square jumping 3 patches per frame is lost with radius 1, kept with radius 3."""
    feats, label0 = translating_scene(8, 30, 2, 3, (2, 2), 1)
    soft = next(iter(propagate(feats, label0, PropagationConfig(topk=3, queue=2, radius=1))))
    assert soft[1, 2, 5] == 0.0  # its new place (2, 5) only sees columns 4-6: no square there
    soft = next(iter(propagate(feats, label0, PropagationConfig(topk=3, queue=2, radius=3))))
    assert soft[1, 2, 5] > 0.99
    assert soft[1].argmax() == 2 * 30 + 5


def test_neighbourhood_cache_is_windowed():
    """The cached out-of-window biases grow with hw * region, never (hw)^2."""
    h = w = 60
    cfg = PropagationConfig(topk=3, queue=1, radius=2)
    prop = LabelPropagator(cfg)
    prop.reset(torch.randn(h, w, 4), torch.rand(2, h, w))
    prop.step(torch.randn(h, w, 4))
    cached = sum(b.numel() for b, _, _ in prop._geometry.values() if b is not None)
    assert 0 < cached <= h * w * (2 * 2 + 3) * w  # band rows (+2r) x full width per target
    assert cached < (h * w) ** 2 / 5


def test_queue_is_bounded():
    cfg = PropagationConfig(topk=2, queue=3, radius=2)
    prop = LabelPropagator(cfg)
    prop.reset(torch.randn(5, 6, 8), torch.rand(2, 5, 6))
    for _ in range(10):
        prop.step(torch.randn(5, 6, 8))
    assert prop._count == 4 and prop._feats.shape[0] == 4


def test_presets_and_overrides():
    old = PRESETS["dino-paper-params"]["davis"]  # the former "paper" preset
    assert old == PropagationConfig(7, 20, 20, 0.1)
    assert resolve_config("dino-paper-params", "vip").topk == 10
    assert resolve_config("dino-paper-params", "jhmdb").topk == 7
    assert resolve_config() == resolve_config("cropmae", "davis")  # the default
    crop = resolve_config("cropmae", "davis")
    assert (crop.topk, crop.queue, crop.radius, crop.temperature) == (7, 20, 20, 0.7)
    assert (crop.window, crop.window_first, crop.pad_queue) == ("disk", False, True)
    assert (crop.label_down, crop.label_up) == ("bilinear", "input")
    assert resolve_config("cropmae", "vip").topk == 10
    dino = resolve_config("dino", "davis")
    assert (dino.topk, dino.queue, dino.radius, dino.temperature) == (5, 7, 12, 0.1)
    assert (dino.window, dino.window_first, dino.pad_queue) == ("square", True, False)
    assert (dino.label_down, dino.label_up) == ("nearest", "input-normmask")
    crw = resolve_config("crw", "davis")
    assert (crw.topk, crw.temperature, crw.radius, crw.queue) == (10, 0.05, 12, 20)
    assert (crw.window, crw.window_first, crw.pad_queue) == ("disk", False, True)
    assert resolve_config("dino-paper-params", "davis", topk=3, radius=None).topk == 3
    with pytest.raises(VideorepError, match="renamed 'dino-paper-params'"):
        resolve_config("paper")
    with pytest.raises(VideorepError, match="preset 'nope'"):
        resolve_config("nope")
    with pytest.raises(VideorepError, match="topk 0"):
        PropagationConfig(topk=0)
